//! Shading anomalies: a large soft-edged region whose brightness and fine-texture contrast change
//! — uneven grinding, coating or discolouration. Beyond the paper: its anomalies are a foreign
//! texture blended into a Perlin region, so a surface that is merely a little brighter and
//! smoother over a quarter of the part (Magnetic Tile's *uneven*: median area 25 % of the image,
//! brightness ±8 % against its surroundings) is never among them. `prob = 0` (the default) leaves
//! the official synthesis, random stream included, unchanged.
use crate::perlin::{perlin_mask, PerlinParams};
use crate::rng::uniform;
use image::{GrayImage, RgbImage};
use rand::Rng;

/// Shading settings; lengths are pixels of a 256-pixel image and scale with the image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadeParams {
    /// Probability that an anomalous sample is shaded instead of blended from a source.
    pub prob: f64,
    /// Range of |ln gain| of the brightness (sign drawn: darker or brighter).
    pub gain: (f64, f64),
    /// Range of |ln k| of the fine texture's contrast around its local mean (sign drawn).
    pub contrast: (f64, f64),
    /// Width of the soft inner edge, in pixels.
    pub feather: f32,
    /// Radius of the local mean that separates brightness from fine texture, in pixels.
    pub texture_radius: f32,
    /// The region's Perlin mask: coarse scales, so regions are large.
    pub perlin: PerlinParams,
}

impl Default for ShadeParams {
    fn default() -> Self {
        ShadeParams {
            prob: 0.0,
            gain: (0.05, 0.3),
            contrast: (0.0, 0.4),
            feather: 16.0,
            texture_radius: 6.0,
            perlin: PerlinParams {
                min_scale: 0,
                max_scale: 3,
                threshold: 0.2,
                ..PerlinParams::default()
            },
        }
    }
}

impl ShadeParams {
    pub fn validate(&self) -> Result<(), String> {
        let range_ok =
            |r: (f64, f64)| r.0.is_finite() && r.1.is_finite() && 0.0 <= r.0 && r.0 <= r.1;
        if !(0.0..=1.0).contains(&self.prob) {
            return Err(format!("shade.prob must be in [0, 1] (got {})", self.prob));
        }
        if !range_ok(self.gain)
            || !range_ok(self.contrast)
            || self.gain.1 > 2.0
            || self.contrast.1 > 2.0
        {
            return Err(format!(
                "shade.gain and shade.contrast must be ranges 0 ≤ lo ≤ hi ≤ 2 of |ln factor| (got {:?}, {:?})",
                self.gain, self.contrast
            ));
        }
        for (name, v) in [
            ("feather", self.feather),
            ("texture_radius", self.texture_radius),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err(format!("shade.{name} must be ≥ 1 pixel (got {v})"));
            }
        }
        self.perlin.validate()
    }
}

/// The region's mask (255 = inside), before the foreground is applied.
pub fn shade_mask<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, p: &ShadeParams) -> GrayImage {
    perlin_mask(rng, w, h, &p.perlin)
}

/// Shades `base` inside `mask`. Returns the image and its label: the shaded region (a subset of
/// `mask`; every pixel outside it equals `base`). The change ramps from 0 at
/// the region's edge to full strength `feather` pixels inside it, as real uneven surfaces fade
/// in. Draw order: gain sign, |ln gain|, contrast sign, |ln k|.
pub fn shade<R: Rng + ?Sized>(
    rng: &mut R,
    base: &RgbImage,
    mask: &GrayImage,
    p: &ShadeParams,
) -> (RgbImage, GrayImage) {
    let (w, h) = base.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let signed = |rng: &mut R, r: (f64, f64)| {
        let s = if rng.gen::<bool>() { 1.0 } else { -1.0 };
        s * uniform(rng, r)
    };
    let gain = signed(rng, p.gain).exp() as f32;
    let k = signed(rng, p.contrast).exp() as f32;
    let scale = w.min(h) as f32 / 256.0;
    // Weight: the mask's box mean is 1/2 on a straight edge and 1 a feather's width inside, so a
    // smoothstep over [1/2, 1] fades in inward only and is 0 outside the mask.
    let m: Vec<f32> = mask.as_raw().iter().map(|&v| f32::from(v != 0)).collect();
    let r_edge = ((p.feather * scale).round() as usize).max(1);
    let mean = box_mean(&m, wu, hu, r_edge);
    let weight: Vec<f32> = m
        .iter()
        .zip(&mean)
        .map(|(&mv, &b)| mv * smoothstep((b - 0.5) * 2.0))
        .collect();
    let r_tex = ((p.texture_radius * scale).round() as usize).max(1);
    let mut out = base.clone();
    let mut label = GrayImage::new(w, h);
    let src = base.as_raw();
    for c in 0..3 {
        let ch: Vec<f32> = src
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| f32::from(v))
            .collect();
        let local = box_mean(&ch, wu, hu, r_tex);
        for (i, &wt) in weight.iter().enumerate() {
            if wt <= 0.0 {
                continue;
            }
            let (v, l) = (ch[i], local[i]);
            let shaded = gain * (l + k * (v - l));
            let nv = (v + wt * (shaded - v)).round().clamp(0.0, 255.0) as u8;
            out.as_mut()[3 * i + c] = nv;
        }
    }
    // The label is the shaded region (a dark pixel may round to its old value inside it, as a
    // blend may leave one unchanged); the fade-in ring at its edge, left untouched, is not.
    for (l, &wt) in label.as_mut().iter_mut().zip(&weight) {
        *l = if wt > 0.0 { 255 } else { 0 };
    }
    (out, label)
}

fn smoothstep(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Mean over a (2r+1)² window clipped to the image (row pass, then column pass, running sums).
fn box_mean(v: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let pass = |src: &[f32], n: usize, stride: usize, lines: usize, step: usize| {
        let mut dst = vec![0f32; src.len()];
        for l in 0..lines {
            let at = |i: usize| l * step + i * stride;
            let mut sum = 0f64;
            let (mut lo, mut hi) = (0usize, 0usize); // window [lo, hi)
            for i in 0..n {
                let (want_lo, want_hi) = (i.saturating_sub(r), (i + r + 1).min(n));
                while hi < want_hi {
                    sum += f64::from(src[at(hi)]);
                    hi += 1;
                }
                while lo < want_lo {
                    sum -= f64::from(src[at(lo)]);
                    lo += 1;
                }
                dst[at(i)] = (sum / (hi - lo) as f64) as f32;
            }
        }
        dst
    };
    let rows = pass(v, w, 1, h, w);
    pass(&rows, h, w, w, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = 100 + ((x * 7 + y * 13) % 31) as u8;
            image::Rgb([v, v, v])
        })
    }

    fn square_mask(w: u32, h: u32, a: u32, b: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if (a..b).contains(&x) && (a..b).contains(&y) {
                255
            } else {
                0
            }])
        })
    }

    #[test]
    fn changes_only_labelled_pixels_inside_the_mask() {
        let base = textured(128, 96);
        let p = ShadeParams::default();
        for i in 0..20 {
            let mut rng = sample_rng(3, i);
            let mask = shade_mask(&mut rng, 128, 96, &p);
            let (out, label) = shade(&mut rng, &base, &mask, &p);
            for ((o, b), (&l, &m)) in out
                .pixels()
                .zip(base.pixels())
                .zip(label.as_raw().iter().zip(mask.as_raw()))
            {
                assert!(m != 0 || l == 0, "label outside the mask");
                assert!(o == b || l != 0, "a changed pixel outside the label");
            }
        }
    }

    #[test]
    fn the_interior_gets_the_drawn_gain_and_the_edge_fades_in() {
        let base = RgbImage::from_pixel(256, 256, image::Rgb([100, 100, 100]));
        let mask = square_mask(256, 256, 64, 192);
        let p = ShadeParams {
            gain: (0.2, 0.2),
            contrast: (0.0, 0.0),
            ..ShadeParams::default()
        };
        let mut rng = sample_rng(1, 0);
        let (out, label) = shade(&mut rng, &base, &mask, &p);
        let centre = out.get_pixel(128, 128)[0];
        assert!(
            centre == 122 || centre == 82,
            "gain e^±0.2 on 100: {centre}"
        );
        // Just inside the edge the change is small, outside it is none.
        let edge = out.get_pixel(65, 128)[0];
        assert!((i32::from(edge) - 100).abs() <= 2, "{edge}");
        assert_eq!(out.get_pixel(62, 128)[0], 100);
        assert_eq!(label.get_pixel(128, 128)[0], 255);
        assert_eq!(label.get_pixel(62, 128)[0], 0);
    }

    #[test]
    fn contrast_scales_the_fine_texture_and_gray_stays_gray() {
        let base = textured(256, 256);
        let mask = square_mask(256, 256, 32, 224);
        let p = ShadeParams {
            gain: (0.0, 0.0),
            contrast: (0.5, 0.5),
            ..ShadeParams::default()
        };
        let spread = |img: &RgbImage| {
            let v: Vec<f64> = (96..160)
                .flat_map(|y| (96..160).map(move |x| (x, y)))
                .map(|(x, y)| f64::from(img.get_pixel(x, y)[0]))
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let (mut higher, mut lower) = (0, 0);
        for i in 0..8 {
            let (out, _) = shade(&mut sample_rng(5, i), &base, &mask, &p);
            assert!(crate::blend::is_gray(&out));
            let ratio = spread(&out) / spread(&base);
            if ratio > 1.0 {
                assert!((ratio - 0.5f64.exp()).abs() < 0.15, "{ratio}");
                higher += 1;
            } else {
                assert!((ratio - (-0.5f64).exp()).abs() < 0.15, "{ratio}");
                lower += 1;
            }
        }
        assert!(
            higher > 0 && lower > 0,
            "both signs drawn: {higher} / {lower}"
        );
    }

    #[test]
    fn same_draws_give_the_same_image() {
        let base = textured(64, 64);
        let p = ShadeParams::default();
        let run = || {
            let mut rng = sample_rng(9, 4);
            let m = shade_mask(&mut rng, 64, 64, &p);
            shade(&mut rng, &base, &m, &p)
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn box_mean_matches_a_direct_window_mean() {
        let (w, h, r) = (9, 7, 2);
        let v: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32).collect();
        let fast = box_mean(&v, w, h, r);
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        s += v[yy * w + xx];
                        n += 1.0;
                    }
                }
                assert!((fast[y * w + x] - s / n).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn validate_rejects_bad_settings() {
        assert!(ShadeParams::default().validate().is_ok());
        for bad in [
            ShadeParams {
                prob: 1.5,
                ..ShadeParams::default()
            },
            ShadeParams {
                gain: (0.3, 0.1),
                ..ShadeParams::default()
            },
            ShadeParams {
                contrast: (-0.1, 0.1),
                ..ShadeParams::default()
            },
            ShadeParams {
                feather: 0.0,
                ..ShadeParams::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
