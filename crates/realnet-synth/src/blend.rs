//! Blending (spec §3): out = (1 − M)·I + M·(β·A + (1 − β)·I), in f32, cast to u8 by truncation
//! (the official `astype(np.uint8)`).
use image::{GrayImage, RgbImage};

/// Blends `source` into `base` where `mask` is non-zero. All three must have the same size
/// (the caller guarantees it; mismatched sizes are a programming error, checked in debug).
pub fn blend(base: &RgbImage, mask: &GrayImage, source: &RgbImage, beta: f32) -> RgbImage {
    debug_assert_eq!(base.dimensions(), mask.dimensions());
    debug_assert_eq!(base.dimensions(), source.dimensions());
    let mut out = base.clone();
    let (o, a) = (&mut *out, source.as_raw());
    let mask = mask.as_raw();
    // Masks are mostly empty: skip 16 zero mask bytes at a time.
    const RUN: usize = 16;
    for (r, ms) in mask.chunks(RUN).enumerate() {
        let zero = match <[u8; RUN]>::try_from(ms) {
            Ok(a) => u128::from_ne_bytes(a) == 0, // one 16-byte load and test
            Err(_) => ms.iter().all(|&m| m == 0), // the last, shorter chunk
        };
        if zero {
            continue; // (1 − 0)·I + 0 = I exactly
        }
        for (j, &m) in ms.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let i = r * RUN + j;
            for c in 0..3 {
                let k = 3 * i + c;
                let (iv, av) = (o[k] as f32, a[k] as f32);
                // Official operation order: β·(M·A) + (1−β)·(M·I), then + (1−M)·I.
                let v = beta * av + (1.0 - beta) * iv + 0.0 * iv;
                o[k] = v as u8; // `as` truncates toward zero and saturates
            }
        }
    }
    out
}

/// Whether every pixel has R = G = B: an image from a grayscale camera (e.g. Magnetic Tile), as
/// the loader expands it to three channels.
pub fn is_gray(img: &RgbImage) -> bool {
    img.as_raw()
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2])
}

/// The anomaly source as a grayscale camera would see it (OpenCV luma in all three channels).
/// Blending a colour texture into a gray image would teach the detector that "coloured" means
/// "anomalous", a cue no real defect on a grayscale line has.
pub fn gray_rgb(img: &RgbImage) -> RgbImage {
    let luma = crate::foreground::channel(img, crate::foreground::Channel::Gray);
    let (w, h) = img.dimensions();
    RgbImage::from_raw(w, h, luma.iter().flat_map(|&v| [v, v, v]).collect())
        .unwrap_or_else(|| img.clone()) // sizes agree by construction
}

/// Fraction of non-zero mask pixels.
pub fn mask_fraction(mask: &GrayImage) -> f64 {
    let n = mask.as_raw().len();
    if n == 0 {
        return 0.0;
    }
    mask.as_raw().iter().filter(|&&v| v != 0).count() as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gray_base_with_a_gray_source_stays_gray() {
        let base = RgbImage::from_fn(8, 4, |x, y| {
            let v = (x * 30 + y) as u8;
            image::Rgb([v, v, v])
        });
        let src = RgbImage::from_fn(8, 4, |x, y| {
            image::Rgb([255, (x * 20) as u8, (y * 50) as u8])
        });
        let mask = GrayImage::from_fn(8, 4, |x, _| image::Luma([if x < 5 { 255 } else { 0 }]));
        assert!(is_gray(&base) && !is_gray(&src));
        let g = gray_rgb(&src);
        assert!(is_gray(&g));
        // Pure red (255, 0, 0) has OpenCV luma round(0.299·255) = 76.
        assert_eq!(g.get_pixel(0, 0).0, [76, 76, 76]);
        let out = blend(&base, &mask, &g, 0.7);
        assert!(is_gray(&out));
        assert_ne!(out, base);
        // The colour source itself would have broken grayness.
        assert!(!is_gray(&blend(&base, &mask, &src, 0.7)));
    }

    #[test]
    fn blend_truncates_and_keeps_outside() {
        let base = RgbImage::from_pixel(2, 1, image::Rgb([100, 0, 255]));
        let src = RgbImage::from_pixel(2, 1, image::Rgb([201, 255, 0]));
        let mask = GrayImage::from_raw(2, 1, vec![0, 255]).unwrap();
        let out = blend(&base, &mask, &src, 0.5);
        assert_eq!(out.get_pixel(0, 0).0, [100, 0, 255]);
        // 0.5·201 + 0.5·100 = 150.5 -> 150; 127.5 -> 127; 127.5 -> 127.
        assert_eq!(out.get_pixel(1, 0).0, [150, 127, 127]);
        let full = blend(&base, &mask, &src, 1.0);
        assert_eq!(full.get_pixel(1, 0).0, [201, 255, 0]);
        assert!((mask_fraction(&mask) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn blend_equals_the_per_pixel_formula_for_sparse_masks() {
        // 37×5 = 185 pixels: eleven 16-pixel chunks and a shorter last one; zero runs, isolated
        // pixels and dense stretches.
        let (w, h) = (37u32, 5u32);
        let base = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 50) as u8, 9]));
        let src = RgbImage::from_fn(w, h, |x, y| image::Rgb([200, (x * y) as u8, (x + y) as u8]));
        let mask = GrayImage::from_fn(w, h, |x, y| {
            let i = y * w + x;
            image::Luma([if i % 23 == 0 || (60..90).contains(&i) || i == 184 {
                255
            } else {
                0
            }])
        });
        let beta = 0.37f32;
        let out = blend(&base, &mask, &src, beta);
        for ((o, b), (s, m)) in out
            .pixels()
            .zip(base.pixels())
            .zip(src.pixels().zip(mask.pixels()))
        {
            let want = if m.0[0] == 0 {
                b.0
            } else {
                std::array::from_fn(|c| {
                    let (iv, av) = (b.0[c] as f32, s.0[c] as f32);
                    (beta * av + (1.0 - beta) * iv + 0.0 * iv) as u8
                })
            };
            assert_eq!(o.0, want);
        }
    }
}
