//! Perlin masks (spec §3.1): DRAEM's `rand_perlin_2d_np`, rotated by U(−90°, 90°) about the
//! centre (bilinear, zero fill), thresholded.
use image::GrayImage;
use rand::Rng;

/// Parameters of the Perlin mask: scales 2^a × 2^b with a, b ~ UniformInt[min_scale, max_scale).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerlinParams {
    pub min_scale: u32,
    /// Exclusive upper bound of the scale exponent (official `perlin_scale: 6`).
    pub max_scale: u32,
    pub threshold: f32,
    /// Rotation angle range in degrees, symmetric: U(−max_rotation, max_rotation).
    pub max_rotation: f32,
}

impl Default for PerlinParams {
    fn default() -> Self {
        PerlinParams {
            min_scale: 0,
            max_scale: 6,
            threshold: 0.5,
            max_rotation: 90.0,
        }
    }
}

impl PerlinParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_scale >= self.max_scale || self.max_scale > 12 {
            return Err(format!(
                "perlin scale exponents must satisfy min_scale < max_scale <= 12 (got {}..{})",
                self.min_scale, self.max_scale
            ));
        }
        if !self.threshold.is_finite() || !self.max_rotation.is_finite() {
            return Err("perlin threshold and rotation must be finite numbers".into());
        }
        Ok(())
    }
}

#[inline]
fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// Row-major `h×w` gradient noise with `res = (ry, rx)` lattice cells along (rows, columns);
/// `(ry+1)·(rx+1)` angles are drawn row-major, as numpy's `rng.random((ry+1, rx+1))`.
pub fn perlin_noise<R: Rng + ?Sized>(
    rng: &mut R,
    h: usize,
    w: usize,
    ry: usize,
    rx: usize,
) -> Vec<f32> {
    let gw = rx + 1;
    let mut gy = Vec::with_capacity((ry + 1) * gw);
    let mut gx = Vec::with_capacity((ry + 1) * gw);
    for _ in 0..(ry + 1) * gw {
        let a = rng.gen::<f64>() * std::f64::consts::TAU;
        gy.push(a.cos() as f32); // component along axis 0 (rows), as DRAEM's grid[..., 0]
        gx.push(a.sin() as f32);
    }
    // Cell index, offset and fade of every column (shared by all rows).
    let cols: Vec<(usize, f32, f32)> = (0..w)
        .map(|j| {
            let p = j as f64 * (rx as f64 / w as f64);
            let i = p as usize;
            let f = (p - i as f64) as f32;
            (i, f, fade(f))
        })
        .collect();
    // Columns grouped by lattice cell: within a cell the four corner gradients are constant,
    // so the inner loop is pure arithmetic over contiguous columns (vectorises).
    let mut spans: Vec<(usize, usize, usize)> = Vec::new(); // (cell, first col, end col)
    for (j, &(ix, _, _)) in cols.iter().enumerate() {
        match spans.last_mut() {
            Some(last) if last.0 == ix => last.2 = j + 1,
            _ => spans.push((ix, j, j + 1)),
        }
    }
    let mut out = vec![0f32; h * w];
    for (r, row) in out.chunks_exact_mut(w).enumerate() {
        let p = r as f64 * (ry as f64 / h as f64);
        let iy = p as usize;
        let fy = (p - iy as f64) as f32;
        let ty = fade(fy);
        let (g0, g1) = (iy * gw, (iy + 1) * gw);
        for &(ix, a, b) in &spans {
            // Row-constant parts of the four dot products.
            let (y00, x00) = (gy[g0 + ix] * fy, gx[g0 + ix]);
            let (y10, x10) = (gy[g1 + ix] * (fy - 1.0), gx[g1 + ix]);
            let (y01, x01) = (gy[g0 + ix + 1] * fy, gx[g0 + ix + 1]);
            let (y11, x11) = (gy[g1 + ix + 1] * (fy - 1.0), gx[g1 + ix + 1]);
            for (o, &(_, fx, tx)) in row[a..b].iter_mut().zip(&cols[a..b]) {
                let n00 = y00 + x00 * fx;
                let n10 = y10 + x10 * fx;
                let n01 = y01 + x01 * (fx - 1.0);
                let n11 = y11 + x11 * (fx - 1.0);
                let a = n00 + ty * (n10 - n00);
                let b = n01 + ty * (n11 - n01);
                *o = std::f32::consts::SQRT_2 * (a + tx * (b - a));
            }
        }
    }
    out
}

/// Rotates a row-major `h×w` map by `degrees` about its centre ((w−1)/2, (h−1)/2): inverse
/// mapping, bilinear sampling, 0 outside (cv2.warpAffine / imgaug `Affine` semantics, without
/// OpenCV's 1/32-pixel weight quantisation). Same convention as torch_reference.py.
pub fn rotate_bilinear(src: &[f32], h: usize, w: usize, degrees: f64) -> Vec<f32> {
    let mut out = vec![0f32; h * w];
    rotate_into(src, h, w, degrees, |v, o| *o = v, &mut out);
    out
}

/// `x.floor() as i64` without a libm call (baseline x86-64 has no SSE4.1 `roundsd`): truncate,
/// then step down for negative non-integers. Coordinates here are small, far from overflow.
#[inline]
fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    t - i64::from((t as f64) > x)
}

/// The columns q (as a range) with 1 <= a_x·q + b_x < n_x − 2 and 1 <= a_y·q + b_y < n_y − 2,
/// i.e. safely inside; empty when none.
fn interior(ax: f64, bx: f64, nx: usize, ay: f64, by: f64, ny: usize) -> (usize, usize) {
    let (mut lo, mut hi) = (0f64, f64::INFINITY);
    for (a, b, n) in [(ax, bx, nx), (ay, by, ny)] {
        let (l, u) = (1.0 - b, n as f64 - 2.0 - b);
        if a.abs() < 1e-12 {
            if !(l <= 0.0 && u > 0.0) {
                return (0, 0);
            }
            continue;
        }
        let (q1, q2) = (l / a, u / a);
        lo = lo.max(q1.min(q2));
        hi = hi.min(q1.max(q2));
    }
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return (0, 0);
    }
    let qa = (lo.ceil() + 1.0).max(0.0) as usize;
    let qb = ((hi.floor() - 1.0).max(0.0) as usize).min(nx);
    if qb > qa {
        (qa, qb)
    } else {
        (0, 0)
    }
}

/// Shared inverse-mapping loop; `put` stores the interpolated value.
pub(crate) fn rotate_into<T>(
    src: &[f32],
    h: usize,
    w: usize,
    degrees: f64,
    put: impl Fn(f32, &mut T),
    out: &mut [T],
) {
    let th = degrees.to_radians();
    let (s, c) = th.sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let at = |y: i64, x: i64| -> f32 {
        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
            src[y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    for r in 0..h {
        let yy = r as f64 - cy;
        // sx = c·(q − cx) + s·yy + cx and sy = −s·(q − cx) + c·yy + cy are affine in q.
        let (bx, by) = (s * yy + cx - c * cx, c * yy + cy + s * cx);
        let orow = &mut out[r * w..(r + 1) * w];
        // Columns whose four taps are all inside (shrunk by one for rounding): branch-light loop.
        let (qa, qb) = interior(c, bx, w, -s, by, h);
        let sample = |q: usize| -> f32 {
            let sx = c * q as f64 + bx;
            let sy = -s * q as f64 + by;
            let (x0, y0) = (floor_i64(sx), floor_i64(sy));
            let (wx, wy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            if x0 >= 0 && y0 >= 0 && ((x0 + 1) as usize) < w && ((y0 + 1) as usize) < h {
                let i = y0 as usize * w + x0 as usize;
                let top = src[i] + wx * (src[i + 1] - src[i]);
                let bot = src[i + w] + wx * (src[i + w + 1] - src[i + w]);
                top + wy * (bot - top)
            } else if x0 < -1 || y0 < -1 || x0 >= w as i64 || y0 >= h as i64 {
                0.0 // all four taps outside
            } else {
                let (v00, v01, v10, v11) = (
                    at(y0, x0),
                    at(y0, x0 + 1),
                    at(y0 + 1, x0),
                    at(y0 + 1, x0 + 1),
                );
                v00 * (1.0 - wx) * (1.0 - wy)
                    + v01 * wx * (1.0 - wy)
                    + v10 * (1.0 - wx) * wy
                    + v11 * wx * wy
            }
        };
        for q in (0..qa).chain(qb..w) {
            put(sample(q), &mut orow[q]);
        }
        for (q, o) in orow.iter_mut().enumerate().take(qb).skip(qa) {
            let sx = c * q as f64 + bx;
            let sy = -s * q as f64 + by;
            let (x0, y0) = (sx as usize, sy as usize); // both >= 0 here: truncation = floor
            let (wx, wy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let i = y0 * w + x0;
            let top = src[i] + wx * (src[i + 1] - src[i]);
            let bot = src[i + w] + wx * (src[i + w + 1] - src[i + w]);
            put(top + wy * (bot - top), o);
        }
    }
}

/// One Perlin mask of `w×h` (255 = anomalous region). Draw order: scale exponent of the rows,
/// of the columns, the gradient angles, the rotation angle (as torch_reference.py).
pub fn perlin_mask<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, p: &PerlinParams) -> GrayImage {
    let sy = 1usize << rng.gen_range(p.min_scale..p.max_scale);
    let sx = 1usize << rng.gen_range(p.min_scale..p.max_scale);
    let (hu, wu) = (h as usize, w as usize);
    let noise = perlin_noise(rng, hu, wu, sy, sx);
    let deg = if p.max_rotation > 0.0 {
        rng.gen_range(-(p.max_rotation as f64)..p.max_rotation as f64)
    } else {
        0.0
    };
    let thr = p.threshold;
    let mut buf = vec![0u8; hu * wu];
    rotate_into(
        &noise,
        hu,
        wu,
        deg,
        |v, o: &mut u8| *o = if v > thr { 255 } else { 0 },
        &mut buf,
    );
    // Length is h*w by construction.
    GrayImage::from_raw(w, h, buf).unwrap_or_else(|| GrayImage::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn noise_is_zero_on_lattice_points_and_bounded() {
        let mut rng = sample_rng(0, 0);
        let n = perlin_noise(&mut rng, 64, 64, 4, 8);
        // Lattice points (every 16 rows, 8 columns) carry zero noise: the dot products vanish.
        for r in (0..64).step_by(16) {
            for c in (0..64).step_by(8) {
                assert!(n[r * 64 + c].abs() < 1e-6, "({r},{c}) = {}", n[r * 64 + c]);
            }
        }
        // Perlin 2-D noise times sqrt(2) stays within [-1, 1].
        assert!(n.iter().all(|v| v.abs() <= 1.0 + 1e-5));
        assert!(n.iter().any(|v| v.abs() > 0.2));
    }

    #[test]
    fn interior_columns_equal_the_checked_path() {
        // The interior loop must give exactly what the checked per-pixel path gives.
        let src: Vec<f32> = (0..40 * 30)
            .map(|v| ((v * 37) % 101) as f32 / 7.0)
            .collect();
        for deg in [-89.0f64, -45.0, -10.0, 0.0, 3.0, 30.0, 90.0] {
            let got = rotate_bilinear(&src, 30, 40, deg);
            let (s, c) = deg.to_radians().sin_cos();
            for r in 0..30 {
                for q in 0..40 {
                    let (xx, yy) = (q as f64 - 19.5, r as f64 - 14.5);
                    let (sx, sy) = (c * xx + s * yy + 19.5, -s * xx + c * yy + 14.5);
                    let (x0, y0) = (sx.floor(), sy.floor());
                    let (wx, wy) = ((sx - x0) as f32, (sy - y0) as f32);
                    let at = |y: f64, x: f64| {
                        if y >= 0.0 && x >= 0.0 && y < 30.0 && x < 40.0 {
                            src[y as usize * 40 + x as usize]
                        } else {
                            0.0
                        }
                    };
                    let want = at(y0, x0) * (1.0 - wx) * (1.0 - wy)
                        + at(y0, x0 + 1.0) * wx * (1.0 - wy)
                        + at(y0 + 1.0, x0) * (1.0 - wx) * wy
                        + at(y0 + 1.0, x0 + 1.0) * wx * wy;
                    assert!(
                        (got[r * 40 + q] - want).abs() < 1e-3,
                        "{deg} ({r},{q}) {} vs {want}",
                        got[r * 40 + q]
                    );
                }
            }
        }
    }

    #[test]
    fn fast_floor_matches_floor() {
        for x in [
            -2.5, -1.0, -0.999, -1e-12, 0.0, 1e-12, 0.5, 1.0, 254.99999, 255.0, -300.25,
        ] {
            assert_eq!(floor_i64(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn rotation_by_zero_is_identity_and_by_180_reverses() {
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(rotate_bilinear(&src, 3, 4, 0.0), src);
        let r = rotate_bilinear(&src, 3, 4, 180.0);
        let rev: Vec<f32> = src.iter().rev().copied().collect();
        for (a, b) in r.iter().zip(&rev) {
            assert!((a - b).abs() < 1e-4, "{r:?}");
        }
    }

    #[test]
    fn rotation_by_90_maps_corners_and_fills_zero() {
        // 2x4 map rotated 90 degrees: most of the output falls outside the source -> zeros.
        let src = vec![1f32; 8];
        let r = rotate_bilinear(&src, 2, 4, 90.0);
        assert!(r.contains(&0.0));
        // Square maps keep their full support under a 90-degree rotation.
        let sq: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let r = rotate_bilinear(&sq, 3, 3, 90.0);
        let mut a = r.clone();
        a.sort_by(|x, y| x.total_cmp(y));
        for (i, v) in a.iter().enumerate() {
            assert!((v - i as f32).abs() < 1e-4);
        }
        // Source (x, y) = (c*xx + s*yy + cx, ...) with s = 1: out[0][0] samples src row 2, col 0.
        assert!((r[0] - 6.0).abs() < 1e-4, "{r:?}");
    }

    #[test]
    fn masks_are_binary_and_reproducible() {
        let p = PerlinParams::default();
        let a = perlin_mask(&mut sample_rng(5, 9), 256, 256, &p);
        let b = perlin_mask(&mut sample_rng(5, 9), 256, 256, &p);
        assert_eq!(a, b);
        assert!(a.pixels().all(|v| v.0[0] == 0 || v.0[0] == 255));
        let mut covers = 0.0;
        for i in 0..200 {
            let m = perlin_mask(&mut sample_rng(1, i), 256, 256, &p);
            covers += m.pixels().filter(|v| v.0[0] == 255).count() as f64 / 65536.0;
        }
        let mean = covers / 200.0;
        // Python reference: mean coverage 0.0486, std 0.030 over 10,000 masks (docs/synthesis.md);
        // 200 masks give a standard error of 0.0021, so this band is about ±6 standard errors.
        assert!((0.036..0.062).contains(&mean), "mean coverage {mean}");
    }
}
