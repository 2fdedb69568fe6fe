//! `realnet demo`: the whole job on a built-in dataset the program draws itself — a woven,
//! slightly varying surface ("fabric"), with scratches, stains and holes drawn into the test images
//! and their exact masks — so a new user sees training, testing and overlays with nothing to download
//! but the set-up.
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::Path;

/// splitmix64: tiny, seedable, good enough for drawing pictures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.f()
    }
}

/// A normal surface: a weave of two sinusoid families with per-image jitter, plus grain.
pub fn surface(size: u32, seed: u64) -> RgbImage {
    let mut r = Rng(seed);
    let tau = std::f32::consts::TAU;
    let (p1, p2) = (r.range(0.0, tau), r.range(0.0, tau));
    let freq = r.range(0.34, 0.38);
    let tint = r.range(-8.0, 8.0);
    let mut img = RgbImage::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let (xf, yf) = (x as f32, y as f32);
            let warp = (yf * freq * 0.5 + p1).sin() * (xf * freq * 0.5 + p2).sin();
            let weave = if ((x / 8) + (y / 8)) % 2 == 0 {
                (xf * freq + p1).sin()
            } else {
                (yf * freq + p2).sin()
            };
            let grain = r.range(-6.0, 6.0);
            let v = 150.0 + 28.0 * weave + 6.0 * warp + grain + tint;
            let px = [v + 18.0, v + 4.0, v - 22.0].map(|c| c.clamp(0.0, 255.0) as u8);
            img.put_pixel(x, y, Rgb(px));
        }
    }
    img
}

/// Draws one defect of the given kind into `img`; returns its exact mask.
pub fn draw_defect(img: &mut RgbImage, kind: &str, seed: u64) -> GrayImage {
    let mut r = Rng(seed ^ 0xDEFEC7);
    let s = img.width() as f32;
    let mut mask = GrayImage::new(img.width(), img.height());
    let (cx, cy) = (r.range(0.25, 0.75) * s, r.range(0.25, 0.75) * s);
    let inside: Box<dyn Fn(f32, f32) -> bool> = match kind {
        "scratch" => {
            let a = r.range(0.0, std::f32::consts::PI);
            let (dx, dy) = (a.cos(), a.sin());
            let half = r.range(0.12, 0.25) * s;
            let width = r.range(1.5, 3.0);
            Box::new(move |x, y| {
                let (px, py) = (x - cx, y - cy);
                let along = px * dx + py * dy;
                let across = (-px * dy + py * dx).abs();
                along.abs() <= half && across <= width
            })
        }
        "stain" => {
            let (rx, ry) = (r.range(0.05, 0.1) * s, r.range(0.04, 0.08) * s);
            Box::new(move |x, y| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0)
        }
        _ => {
            let rad = r.range(0.02, 0.045) * s;
            Box::new(move |x, y| (x - cx).powi(2) + (y - cy).powi(2) <= rad * rad)
        }
    };
    let colour: [f32; 3] = match kind {
        "scratch" => [235.0, 235.0, 225.0],
        "stain" => [95.0, 60.0, 40.0],
        _ => [25.0, 20.0, 20.0],
    };
    let strength = match kind {
        "stain" => 0.6,
        _ => 0.95,
    };
    for y in 0..img.height() {
        for x in 0..img.width() {
            if inside(x as f32 + 0.5, y as f32 + 0.5) {
                let p = img.get_pixel_mut(x, y);
                for (v, c) in p.0.iter_mut().zip(colour) {
                    *v = (*v as f32 * (1.0 - strength) + c * strength) as u8;
                }
                mask.put_pixel(x, y, Luma([255]));
            }
        }
    }
    mask
}

pub const DEFECTS: [&str; 3] = ["scratch", "stain", "hole"];

/// Writes the built-in category in MVTec AD layout under `dir`.
pub fn write_dataset(
    dir: &Path,
    size: u32,
    n_train: usize,
    n_good_test: usize,
    per_defect: usize,
) -> anyhow::Result<()> {
    let save = |img: &RgbImage, p: &Path| crate::evaluate::save_png_atomic(img, p);
    let mk = |p: &Path| std::fs::create_dir_all(p);
    mk(&dir.join("train/good"))?;
    mk(&dir.join("test/good"))?;
    for i in 0..n_train {
        save(
            &surface(size, i as u64),
            &dir.join(format!("train/good/{i:03}.png")),
        )?;
    }
    for i in 0..n_good_test {
        save(
            &surface(size, 10_000 + i as u64),
            &dir.join(format!("test/good/{i:03}.png")),
        )?;
    }
    for (k, kind) in DEFECTS.iter().enumerate() {
        mk(&dir.join(format!("test/{kind}")))?;
        mk(&dir.join(format!("ground_truth/{kind}")))?;
        for i in 0..per_defect {
            let seed = 20_000 + (k * 1000 + i) as u64;
            let mut img = surface(size, seed);
            let mask = draw_defect(&mut img, kind, seed);
            save(&img, &dir.join(format!("test/{kind}/{i:03}.png")))?;
            let mut buf = std::io::Cursor::new(Vec::new());
            mask.write_to(&mut buf, image::ImageFormat::Png)?;
            crate::bundle::write_atomic(
                &dir.join(format!("ground_truth/{kind}/{i:03}_mask.png")),
                buf.get_ref(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defects_change_exactly_the_masked_pixels() {
        for (k, kind) in DEFECTS.iter().enumerate() {
            let clean = surface(64, 5);
            let mut img = clean.clone();
            let mask = draw_defect(&mut img, kind, k as u64);
            let n = mask.pixels().filter(|p| p.0[0] > 0).count();
            assert!(n > 3, "{kind}: empty mask");
            for ((a, b), m) in clean.pixels().zip(img.pixels()).zip(mask.pixels()) {
                if m.0[0] == 0 {
                    assert_eq!(a, b, "{kind}: pixel outside the mask changed");
                }
            }
        }
    }

    #[test]
    fn surfaces_are_deterministic_and_vary() {
        assert_eq!(surface(32, 1), surface(32, 1));
        assert_ne!(surface(32, 1), surface(32, 2));
    }
}
