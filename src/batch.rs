//! Host images ↔ device tensors for the networks.
use image::{GrayImage, RgbImage};
use tch::{Device, Kind, Tensor};

/// N×3×H×W float tensor, x/255 normalised per channel with (mean, std).
pub fn images_to_tensor(
    imgs: &[&RgbImage],
    mean: [f64; 3],
    std: [f64; 3],
    device: Device,
) -> Tensor {
    let (w, h) = imgs.first().map(|i| i.dimensions()).unwrap_or((0, 0));
    let mean = mean.map(|v| v as f32);
    let std = std.map(|v| v as f32);
    let mut data = Vec::with_capacity(imgs.len() * 3 * (w * h) as usize);
    for img in imgs {
        data.extend(realnet_data::image_io::normalize_chw(img, mean, std));
    }
    Tensor::from_slice(&data)
        .reshape([imgs.len() as i64, 3, h as i64, w as i64])
        .to_device(device)
}

/// N×1×H×W float tensor of 0/1 (any mask value > 0 is anomalous).
pub fn masks_to_tensor(masks: &[&GrayImage], device: Device) -> Tensor {
    let (w, h) = masks.first().map(|m| m.dimensions()).unwrap_or((0, 0));
    let mut data = Vec::with_capacity(masks.len() * (w * h) as usize);
    for m in masks {
        data.extend(m.as_raw().iter().map(|&v| if v > 0 { 1f32 } else { 0f32 }));
    }
    Tensor::from_slice(&data)
        .reshape([masks.len() as i64, 1, h as i64, w as i64])
        .to_device(device)
}

/// Rows of an N×H×W float tensor as host vectors.
pub fn maps_to_host(maps: &Tensor) -> Vec<Vec<f32>> {
    let maps = maps
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    (0..maps.size()[0])
        .map(|i| Vec::<f32>::try_from(maps.get(i).flatten(0, -1)).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_in_chw_order() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([255, 0, 51]));
        let t = images_to_tensor(&[&img], [0.5; 3], [0.5; 3], Device::Cpu);
        assert_eq!(t.size(), vec![1, 3, 1, 2]);
        let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        assert!((v[0] - 1.0).abs() < 1e-6); // R of pixel 0
        assert!((v[2] + 1.0).abs() < 1e-6); // G of pixel 0
        assert!((v[4] - (0.2 - 0.5) / 0.5).abs() < 1e-6); // B of pixel 0
    }

    #[test]
    fn masks_are_binary() {
        let m = GrayImage::from_raw(3, 1, vec![0, 1, 255]).unwrap();
        let t = masks_to_tensor(&[&m], Device::Cpu);
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![0.0, 1.0, 1.0]
        );
    }
}
