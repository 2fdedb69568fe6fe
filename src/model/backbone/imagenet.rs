//! ImageNet classification preprocessing (torchvision's evaluation transform) and top-k, used to
//! check that a weights file is the right one.

use super::BackboneKind;
use image::RgbImage;
use realnet_data::image_io;
use std::path::Path;
use tch::{Kind, Tensor};

/// Shorter side after the resize: `int(crop / 0.875)` (256 for a 224 crop, 297 for 260).
pub fn resize_shorter_side(crop: u32) -> u32 {
    (crop as f64 / 0.875) as u32
}

/// Python's `round` (ties to even) of a non-negative half-integer offset.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        r as i64 - 1
    } else {
        r as i64
    }
}

/// torchvision `Resize(int(crop/0.875))` (Pillow bilinear, antialiased) then `CenterCrop(crop)`.
pub fn resize_and_crop(img: &RgbImage, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = resize_shorter_side(crop);
    // The longer side is truncated, as torchvision does.
    let (nw, nh) = if w <= h {
        (s, (s as u64 * h as u64 / w.max(1) as u64) as u32)
    } else {
        ((s as u64 * w as u64 / h.max(1) as u64) as u32, s)
    };
    let r = image_io::resize_rgb(img, nw, nh);
    let top = round_half_even((nh as f64 - crop as f64) / 2.0).max(0) as u32;
    let left = round_half_even((nw as f64 - crop as f64) / 2.0).max(0) as u32;
    image::imageops::crop_imm(&r, left, top, crop.min(nw), crop.min(nh)).to_image()
}

/// 1×3×H×W float tensor: `x / 255`, then the backbone's mean/std.
pub fn to_input(img: &RgbImage, kind: BackboneKind) -> Tensor {
    let (mean, std) = kind.normalization();
    let f = |a: [f64; 3]| a.map(|v| v as f32);
    let chw = image_io::normalize_chw(img, f(mean), f(std));
    Tensor::from_slice(&chw).view([1, 3, img.height() as i64, img.width() as i64])
}

/// The classification input of an image file at the backbone's native resolution.
pub fn load_input(path: &Path, kind: BackboneKind) -> Result<Tensor, realnet_data::DataError> {
    let img = image_io::load_rgb(path, None)?;
    Ok(to_input(
        &resize_and_crop(&img, kind.native_resolution()),
        kind,
    ))
}

/// The `k` most likely classes (index, softmax probability) of a 1000-logit vector.
pub fn top_k(logits: &Tensor, k: i64) -> Vec<(i64, f64)> {
    let p = logits
        .to_kind(Kind::Double)
        .view([-1])
        .softmax(0, Kind::Double);
    let (v, i) = p.topk(k, 0, true, true);
    let v: Vec<f64> = Vec::try_from(&v).unwrap_or_default();
    let i: Vec<i64> = Vec::try_from(&i).unwrap_or_default();
    i.into_iter().zip(v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_targets_and_crop_offsets() {
        assert_eq!(resize_shorter_side(224), 256);
        assert_eq!(resize_shorter_side(260), 297);
        assert_eq!(resize_shorter_side(300), 342);
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        // 600×400 → 384×256 → crop at left 80.
        let img = RgbImage::from_fn(600, 400, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let c = resize_and_crop(&img, 224);
        assert_eq!(c.dimensions(), (224, 224));
    }

    #[test]
    fn top_k_is_sorted_softmax() {
        let l = Tensor::from_slice(&[0.0f32, 2.0, 1.0]);
        let t = top_k(&l, 2);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        let e = [1.0f64, 2f64.exp(), 1f64.exp()];
        let s: f64 = e.iter().sum();
        assert!((t[0].1 - e[1] / s).abs() < 1e-12);
    }
}
