//! Heatmap overlays for people to look at: the image with the anomaly map in a fixed colour scale
//! (probability 0 → transparent blue, 1 → opaque red; the same scale for every image and model, so
//! pictures compare), the ground-truth outline in green and the predicted outline in yellow.
use image::{GrayImage, Rgb, RgbImage};

/// A perceptual "turbo"-like ramp for v in [0, 1] (piecewise-linear through 5 anchors).
pub fn colour(v: f32) -> [u8; 3] {
    const ANCHORS: [[f32; 3]; 5] = [
        [48.0, 18.0, 59.0],
        [40.0, 140.0, 240.0],
        [110.0, 230.0, 90.0],
        [250.0, 180.0, 40.0],
        [200.0, 20.0, 20.0],
    ];
    let v = v.clamp(0.0, 1.0) * 4.0;
    let i = (v.floor() as usize).min(3);
    let t = v - i as f32;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * t).round() as u8)
}

/// Blends the map over the image (alpha grows with the map value, at most 0.6).
pub fn overlay(
    img: &RgbImage,
    map: &[f32],
    gt: Option<&GrayImage>,
    pred_threshold: Option<f32>,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let v = map.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        let c = colour(v);
        let a = 0.15 + 0.45 * v;
        for (v, ck) in px.0.iter_mut().zip(c) {
            *v = (*v as f32 * (1.0 - a) + ck as f32 * a).round() as u8;
        }
    }
    if let Some(t) = pred_threshold {
        let pred: Vec<bool> = map.iter().map(|&v| v >= t).collect();
        draw_outline(&mut out, &pred, w, h, Rgb([255, 230, 0]));
    }
    if let Some(gt) = gt {
        let m: Vec<bool> = gt.as_raw().iter().map(|&v| v > 0).collect();
        draw_outline(&mut out, &m, w, h, Rgb([0, 255, 0]));
    }
    out
}

/// Marks the pixels of `mask` that have a 4-neighbour outside it.
pub fn draw_outline(img: &mut RgbImage, mask: &[bool], w: u32, h: u32, c: Rgb<u8>) {
    let (wi, hi) = (w as i64, h as i64);
    let at = |x: i64, y: i64| x >= 0 && y >= 0 && x < wi && y < hi && mask[(y * wi + x) as usize];
    for y in 0..hi {
        for x in 0..wi {
            if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                img.put_pixel(x as u32, y as u32, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_scale_ends() {
        assert_eq!(colour(0.0), [48, 18, 59]);
        assert_eq!(colour(1.0), [200, 20, 20]);
        assert_eq!(colour(2.0), colour(1.0));
    }

    #[test]
    fn outline_is_the_border_only() {
        let mut img = RgbImage::new(5, 5);
        let mut m = vec![false; 25];
        for y in 1..4 {
            for x in 1..4 {
                m[y * 5 + x] = true;
            }
        }
        draw_outline(&mut img, &m, 5, 5, Rgb([1, 2, 3]));
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]); // interior untouched
        assert_eq!(img.get_pixel(1, 1).0, [1, 2, 3]);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
