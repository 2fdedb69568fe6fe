//! Heatmap overlays for people to look at: the image with the anomaly map in a FIXED colour scale, the
//! ground-truth outline in green and the predicted outline in yellow. The one implementation behind
//! `realnet predict --out`, `realnet test --overlays` and the gallery of `realnet test --report`.
//!
//! The scale: map values are probabilities in [0, 1] and the scale is always 0..1 — never stretched
//! per image or per model — so pictures compare. [`colour`] is a "turbo"-like ramp, piecewise linear
//! in sRGB through [`ANCHORS`] at 0, 0.25, 0.5, 0.75 and 1 (dark purple → blue → green → orange → red);
//! values outside [0, 1] are clamped. [`overlay`] blends that colour over the image with opacity
//! [`alpha`]`(v) = 0.15 + 0.45·v` (so 0 is a faint purple tint and 1 is 60 % red).
use image::{GrayImage, Rgb, RgbImage};

/// The colour scale's anchors, at v = 0, 0.25, 0.5, 0.75, 1 (sRGB).
pub const ANCHORS: [[u8; 3]; 5] = [
    [48, 18, 59],
    [40, 140, 240],
    [110, 230, 90],
    [250, 180, 40],
    [200, 20, 20],
];

/// Colour of the ground-truth outline.
pub const GT_OUTLINE: [u8; 3] = [0, 255, 0];
/// Colour of the predicted-mask outline (map ≥ the pixel threshold).
pub const PRED_OUTLINE: [u8; 3] = [255, 230, 0];

/// Opacity of the map colour over the image at value v (clamped to [0, 1]).
pub fn alpha(v: f32) -> f32 {
    0.15 + 0.45 * v.clamp(0.0, 1.0)
}

/// The colour scale at v (clamped to [0, 1]): piecewise linear through [`ANCHORS`].
pub fn colour(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v };
    let v = v.clamp(0.0, 1.0) * 4.0;
    let i = (v.floor() as usize).min(3);
    let t = v - i as f32;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    [0, 1, 2].map(|c| {
        let (a, b) = (f32::from(a[c]), f32::from(b[c]));
        (a + (b - a) * t).round() as u8
    })
}

/// Blends the row-major map (same size as `img`; missing values count as 0) over the image with the
/// fixed scale, then outlines the predicted mask (`map ≥ pred_threshold`, yellow) and the ground truth
/// (`gt > 0`, green, drawn last so it stays visible where both meet).
pub fn overlay(
    img: &RgbImage,
    map: &[f32],
    gt: Option<&GrayImage>,
    pred_threshold: Option<f32>,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let v = map.get(i).copied().unwrap_or(0.0);
        let c = colour(v);
        let a = alpha(if v.is_nan() { 0.0 } else { v });
        for (v, ck) in px.0.iter_mut().zip(c) {
            *v = (*v as f32 * (1.0 - a) + ck as f32 * a).round() as u8;
        }
    }
    if let Some(t) = pred_threshold {
        let pred: Vec<bool> = map.iter().map(|&v| v >= t).collect();
        draw_outline(&mut out, &pred, w, h, Rgb(PRED_OUTLINE));
    }
    if let Some(gt) = gt {
        let m: Vec<bool> = gt.as_raw().iter().map(|&v| v > 0).collect();
        if gt.dimensions() == (w, h) {
            draw_outline(&mut out, &m, w, h, Rgb(GT_OUTLINE));
        }
    }
    out
}

/// PNG bytes of an image (for `data:` URIs and files).
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// Marks the pixels of the row-major `w`×`h` `mask` that have a 4-neighbour outside it (pixels beyond
/// the mask's length count as outside).
pub fn draw_outline(img: &mut RgbImage, mask: &[bool], w: u32, h: u32, c: Rgb<u8>) {
    let (wi, hi) = (
        i64::from(w.min(img.width())),
        i64::from(h.min(img.height())),
    );
    let at = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < wi && y < hi && mask.get((y * wi + x) as usize) == Some(&true)
    };
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
    fn colour_scale_hits_its_anchors_and_is_fixed() {
        for (i, a) in ANCHORS.iter().enumerate() {
            assert_eq!(&colour(i as f32 / 4.0), a);
        }
        assert_eq!(colour(-1.0), ANCHORS[0]);
        assert_eq!(colour(f32::NAN), ANCHORS[0]);
        assert_eq!(alpha(0.0), 0.15);
        assert!((alpha(1.0) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn overlay_tints_by_value_and_draws_both_outlines() {
        let img = RgbImage::from_pixel(6, 6, Rgb([128, 128, 128]));
        let mut map = vec![0.0f32; 36];
        for y in 1..5 {
            for x in 1..5 {
                map[y * 6 + x] = 1.0;
            }
        }
        let mut gt = GrayImage::new(6, 6);
        gt.put_pixel(0, 0, image::Luma([255]));
        let o = overlay(&img, &map, Some(&gt), Some(0.5));
        assert_eq!(o.get_pixel(0, 0).0, GT_OUTLINE);
        assert_eq!(o.get_pixel(1, 1).0, PRED_OUTLINE);
        // interior of the predicted square: 60 % red over grey
        let want = [0, 1, 2].map(|c| (128.0 * 0.4 + f32::from(ANCHORS[4][c]) * 0.6).round() as u8);
        assert_eq!(o.get_pixel(2, 2).0, want);
        // a short map and a wrongly sized mask do not panic
        let _ = overlay(&img, &[0.5; 3], Some(&GrayImage::new(2, 2)), Some(0.5));
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
