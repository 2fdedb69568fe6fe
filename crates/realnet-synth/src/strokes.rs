//! Stroke masks: thin random-walk lines shaped like scratches (straight) and cracks (jagged).
//! Beyond the paper: its Perlin blobs (spec §3.1) are at least tens of pixels across, so a
//! line one to a few pixels wide — the most common defect on machined and pressed parts — is
//! never among the synthetic anomalies. `prob = 0` (the default) leaves the official
//! synthesis, random stream included, unchanged.
use crate::rng::uniform;
use image::GrayImage;
use rand::Rng;

/// Stroke settings; widths are pixels of a 256-pixel image and scale with the image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrokeParams {
    /// Probability that an anomalous sample gets strokes instead of a Perlin region.
    pub prob: f64,
    /// Strokes per mask: UniformInt[1, max_strokes].
    pub max_strokes: u32,
    /// Line width range in pixels (at 256²).
    pub width: (f32, f32),
    /// Length range as a fraction of the shorter image side.
    pub length: (f32, f32),
    /// Upper bound of the per-stroke turn range in degrees per step (0 = straight scratches).
    pub max_turn: f32,
}

impl Default for StrokeParams {
    fn default() -> Self {
        StrokeParams {
            prob: 0.0,
            max_strokes: 3,
            width: (1.0, 5.0),
            length: (0.1, 0.5),
            max_turn: 30.0,
        }
    }
}

impl StrokeParams {
    pub fn validate(&self) -> Result<(), String> {
        let range_ok =
            |r: (f32, f32)| r.0.is_finite() && r.1.is_finite() && 0.0 < r.0 && r.0 <= r.1;
        if !(0.0..=1.0).contains(&self.prob) {
            return Err(format!(
                "strokes.prob must be in [0, 1] (got {})",
                self.prob
            ));
        }
        if self.max_strokes == 0 {
            return Err("strokes.max_strokes must be ≥ 1".into());
        }
        if !range_ok(self.width) || !range_ok(self.length) || self.length.1 > 2.0 {
            return Err(format!(
                "strokes.width and strokes.length must be ranges 0 < lo ≤ hi (length ≤ 2) (got {:?}, {:?})",
                self.width, self.length
            ));
        }
        if !(self.max_turn.is_finite() && (0.0..=180.0).contains(&self.max_turn)) {
            return Err(format!(
                "strokes.max_turn must be in [0, 180] degrees (got {})",
                self.max_turn
            ));
        }
        Ok(())
    }
}

/// One stroke mask of `w×h` (255 = anomalous). Draw order per stroke: start x, start y, heading,
/// width, length, turn range, then one turn per step.
pub fn stroke_mask<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, p: &StrokeParams) -> GrayImage {
    let mut m = GrayImage::new(w, h);
    if w == 0 || h == 0 {
        return m;
    }
    let scale = w.min(h) as f32 / 256.0;
    let n = rng.gen_range(1..=p.max_strokes.max(1));
    for _ in 0..n {
        let mut x = rng.gen_range(0.0..w as f32);
        let mut y = rng.gen_range(0.0..h as f32);
        let mut heading = rng.gen_range(0.0..std::f32::consts::TAU);
        let width = uniform(rng, p.width) * scale;
        let length = uniform(rng, p.length) * w.min(h) as f32;
        let turn = uniform(rng, (0.0, p.max_turn)).to_radians();
        let r = (width / 2.0).max(0.5);
        // Steps no longer than the radius keep the stamped discs overlapping.
        let step = r.clamp(0.5, 2.0);
        let steps = (length / step).ceil() as usize;
        for _ in 0..=steps {
            stamp(&mut m, x, y, r);
            if turn > 0.0 {
                heading += rng.gen_range(-turn..=turn);
            }
            x += step * heading.cos();
            y += step * heading.sin();
        }
    }
    m
}

/// Sets every pixel whose centre lies within `r` of (x, y); at least the pixel under (x, y).
fn stamp(m: &mut GrayImage, x: f32, y: f32, r: f32) {
    let (w, h) = (m.width() as i64, m.height() as i64);
    let (x0, x1) = ((x - r).floor() as i64, (x + r).ceil() as i64);
    let (y0, y1) = ((y - r).floor() as i64, (y + r).ceil() as i64);
    let (cx, cy) = (x.floor() as i64, y.floor() as i64);
    for py in y0.max(0)..=y1.min(h - 1) {
        for px in x0.max(0)..=x1.min(w - 1) {
            let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
            let centre = px == cx && py == cy;
            if centre || dx * dx + dy * dy <= r * r {
                m.put_pixel(px as u32, py as u32, image::Luma([255]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask_fraction;
    use crate::rng::sample_rng;

    #[test]
    fn strokes_are_thin_binary_and_seeded() {
        let p = StrokeParams::default();
        for i in 0..50 {
            let m = stroke_mask(&mut sample_rng(3, i), 256, 256, &p);
            assert!(m.iter().all(|&v| v == 0 || v == 255));
            let f = mask_fraction(&m);
            // At least one pixel; at most 3 strokes × 0.5 × 256 long × 5 wide (+ the caps).
            assert!(f > 0.0, "sample {i}: empty mask");
            assert!(
                f < 3.0 * (128.0 * 6.0) / 65536.0,
                "sample {i}: {f} is no line"
            );
            assert_eq!(m, stroke_mask(&mut sample_rng(3, i), 256, 256, &p));
        }
        let a = stroke_mask(&mut sample_rng(3, 0), 256, 256, &p);
        let b = stroke_mask(&mut sample_rng(3, 1), 256, 256, &p);
        assert_ne!(a, b);
    }

    #[test]
    fn a_straight_one_pixel_stroke_covers_its_length() {
        let p = StrokeParams {
            max_strokes: 1,
            width: (1.0, 1.0),
            length: (0.25, 0.25),
            max_turn: 0.0,
            ..Default::default()
        };
        let mut covered = Vec::new();
        for i in 0..40 {
            let m = stroke_mask(&mut sample_rng(9, i), 256, 256, &p);
            let n = m.iter().filter(|&&v| v == 255).count();
            // A 64-pixel line of width 1 covers 64–2·64 pixels unless it leaves the image.
            assert!(n <= 2 * 65 + 4, "sample {i}: {n} pixels");
            covered.push(n);
        }
        covered.sort();
        assert!(
            covered[covered.len() / 2] >= 60,
            "median cover {:?}",
            covered
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            StrokeParams {
                prob: 1.5,
                ..Default::default()
            },
            StrokeParams {
                max_strokes: 0,
                ..Default::default()
            },
            StrokeParams {
                width: (3.0, 1.0),
                ..Default::default()
            },
            StrokeParams {
                max_turn: f32::NAN,
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(StrokeParams::default().validate().is_ok());
    }
}
