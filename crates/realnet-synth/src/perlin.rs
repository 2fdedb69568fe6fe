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
    let mut out = vec![0f32; h * w];
    perlin_noise_into(rng, h, w, ry, rx, &mut out);
    out
}

/// [`perlin_noise`] into `out` (length `h·w`).
fn perlin_noise_into<R: Rng + ?Sized>(
    rng: &mut R,
    h: usize,
    w: usize,
    ry: usize,
    rx: usize,
    out: &mut [f32],
) {
    if h == 0 || w == 0 {
        return;
    }
    let gw = rx + 1;
    let mut gy = Vec::with_capacity((ry + 1) * gw);
    let mut gx = Vec::with_capacity((ry + 1) * gw);
    for _ in 0..(ry + 1) * gw {
        let a = rng.gen::<f64>() * std::f64::consts::TAU;
        gy.push(a.cos() as f32); // component along axis 0 (rows), as DRAEM's grid[..., 0]
        gx.push(a.sin() as f32);
    }
    // Offset, offset − 1 and fade of every column (shared by all rows), as separate arrays so
    // the inner loop vectorises; columns grouped by lattice cell (cell, first col, end col):
    // within a cell the four corner gradients are constant.
    let (mut fxs, mut fx1s, mut txs) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for j in 0..w {
        let p = j as f64 * (rx as f64 / w as f64);
        let i = p as usize;
        let f = (p - i as f64) as f32;
        (fxs[j], fx1s[j], txs[j]) = (f, f - 1.0, fade(f));
        match spans.last_mut() {
            Some(last) if last.0 == i => last.2 = j + 1,
            _ => spans.push((i, j, j + 1)),
        }
    }
    for (r, row) in out.chunks_exact_mut(w).take(h).enumerate() {
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
            let cols = fxs[a..b].iter().zip(&fx1s[a..b]).zip(&txs[a..b]);
            for (o, ((&fx, &fx1), &tx)) in row[a..b].iter_mut().zip(cols) {
                let n00 = y00 + x00 * fx;
                let n10 = y10 + x10 * fx;
                let n01 = y01 + x01 * fx1;
                let n11 = y11 + x11 * fx1;
                let a = n00 + ty * (n10 - n00);
                let b = n01 + ty * (n11 - n01);
                *o = std::f32::consts::SQRT_2 * (a + tx * (b - a));
            }
        }
    }
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

/// The inverse map of a rotation by `degrees` about the centre of an `h×w` map: source
/// coordinates of output (row r, column q) are `(c·q + bx(r), −s·q + by(r))`.
#[derive(Clone, Copy)]
struct Rotation {
    s: f64,
    c: f64,
    cy: f64,
    cx: f64,
}

impl Rotation {
    fn new(h: usize, w: usize, degrees: f64) -> Rotation {
        let (s, c) = degrees.to_radians().sin_cos();
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        Rotation { s, c, cy, cx }
    }

    /// Row offsets (bx, by): sx = c·(q − cx) + s·yy + cx and sy = −s·(q − cx) + c·yy + cy are
    /// affine in q.
    #[inline]
    fn row(&self, r: usize) -> (f64, f64) {
        let yy = r as f64 - self.cy;
        (
            self.s * yy + self.cx - self.c * self.cx,
            self.c * yy + self.cy + self.s * self.cx,
        )
    }
}

/// Bilinear value at source position (sx, sy), 0 outside. The one formula for every pixel
/// (the loops below only skip work whose result this function fixes).
#[inline]
fn sample(src: &[f32], h: usize, w: usize, sx: f64, sy: f64) -> f32 {
    let (x0, y0) = (floor_i64(sx), floor_i64(sy));
    let (wx, wy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
    if x0 >= 0 && y0 >= 0 && ((x0 + 1) as usize) < w && ((y0 + 1) as usize) < h {
        let i = y0 as usize * w + x0 as usize;
        interp(src, i, w, wx, wy)
    } else if x0 < -1 || y0 < -1 || x0 >= w as i64 || y0 >= h as i64 {
        0.0 // all four taps outside
    } else {
        let at = |y: i64, x: i64| -> f32 {
            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                src[y as usize * w + x as usize]
            } else {
                0.0
            }
        };
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
}

/// Bilinear interpolation with all four taps inside (`i` = index of the top-left tap).
#[inline(always)]
fn interp(src: &[f32], i: usize, w: usize, wx: f32, wy: f32) -> f32 {
    let top = src[i] + wx * (src[i + 1] - src[i]);
    let bot = src[i + w] + wx * (src[i + w + 1] - src[i + w]);
    top + wy * (bot - top)
}

/// Columns `qa..` of an output row with offsets (bx, by), every one known to be safely inside
/// (`interior`): coordinates are >= 1, so truncation = floor, and i32 holds them.
#[inline(always)]
fn interior_span<T>(
    src: &[f32],
    w: usize,
    (c, s): (f64, f64),
    (bx, by): (f64, f64),
    orow: &mut [T],
    qa: usize,
    put: &impl Fn(f32, &mut T),
) {
    let mut qf = qa as f64; // = q as f64 exactly (integers < 2^53), without a u64 conversion
    for o in orow.iter_mut().skip(qa) {
        let sx = c * qf + bx;
        let sy = -s * qf + by;
        qf += 1.0;
        let (x0, y0) = (sx as i32, sy as i32);
        let (wx, wy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
        let i = y0 as usize * w + x0 as usize;
        let t = &src[i..i + w + 2]; // one bounds check for the four taps
        let top = t[0] + wx * (t[1] - t[0]);
        let bot = t[w] + wx * (t[w + 1] - t[w]);
        put(top + wy * (bot - top), o);
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
    if h == 0 || w == 0 {
        return;
    }
    let rot = Rotation::new(h, w, degrees);
    let (s, c) = (rot.s, rot.c);
    for (r, orow) in out.chunks_exact_mut(w).take(h).enumerate() {
        let (bx, by) = rot.row(r);
        // Columns whose four taps are all inside (shrunk by one for rounding): branch-light loop.
        let (qa, qb) = interior(c, bx, w, -s, by, h);
        for q in (0..qa).chain(qb..w) {
            put(
                sample(src, h, w, c * q as f64 + bx, -s * q as f64 + by),
                &mut orow[q],
            );
        }
        interior_span(src, w, (c, s), (bx, by), &mut orow[..qb], qa, &put);
    }
}

/// Side of the square source blocks whose "any value near the threshold" flags decide which
/// output pixels can be skipped.
const BLOCK: usize = 4;
/// Output tiles (TILE×TILE) are tested first, then row segments of SEG pixels inside hot tiles.
const TILE: usize = 16;
const SEG: usize = 8;
/// A block whose values are all below `threshold − MARGIN` cannot produce a pixel above the
/// threshold: bilinear interpolation is a convex combination of its taps, and for taps of
/// magnitude <= 2 (Perlin noise: each corner dot product is at most √2, times √2) the f32
/// rounding of the interpolation is below 1e-6.
const MARGIN: f32 = 1e-3;

/// Which source blocks hold a value >= a cut, as a summed-area table: `any(x0, x1, y0, y1)`
/// tells whether a source pixel rectangle (inclusive, clamped to the map) holds one.
struct HotBlocks {
    w: usize,
    h: usize,
    /// (nby + 1) × (nbx + 1) prefix sums of hot-block counts.
    sat: Vec<u32>,
    stride: usize,
}

impl HotBlocks {
    fn new(src: &[f32], h: usize, w: usize, cut: f32) -> HotBlocks {
        let (nbx, nby) = (w.div_ceil(BLOCK), h.div_ceil(BLOCK));
        let stride = nbx + 1;
        let mut hot = vec![false; nbx * nby];
        // Per block row: OR of the rows' `v >= cut` bytes, then any byte per block (vectorises).
        // A NaN tap is not "hot": it makes the pixel NaN, i.e. 0, with or without skipping.
        let mut acc = vec![0u8; nbx * BLOCK];
        for (by, rows) in src[..h * w].chunks(BLOCK * w).enumerate() {
            acc.iter_mut().for_each(|a| *a = 0);
            for row in rows.chunks_exact(w) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a |= u8::from(v >= cut);
                }
            }
            for (b, a) in hot[by * nbx..][..nbx]
                .iter_mut()
                .zip(acc.chunks_exact(BLOCK))
            {
                *b = a.iter().fold(0, |x, &y| x | y) != 0;
            }
        }
        let mut sat = vec![0u32; (nby + 1) * stride];
        for by in 0..nby {
            let mut run = 0u32;
            for bx in 0..nbx {
                run += u32::from(hot[by * nbx + bx]);
                sat[(by + 1) * stride + bx + 1] = sat[by * stride + bx + 1] + run;
            }
        }
        HotBlocks { w, h, sat, stride }
    }

    /// Whether any hot block meets the pixel rectangle [x0, x1] × [y0, y1] (clamped to the map).
    #[inline]
    fn any(&self, x0: i32, x1: i32, y0: i32, y1: i32) -> bool {
        let (w, h) = (self.w as i32, self.h as i32);
        if x1 < 0 || y1 < 0 || x0 >= w || y0 >= h {
            return false; // entirely outside: zero fill
        }
        let bx0 = x0.max(0) as usize / BLOCK;
        let bx1 = x1.min(w - 1) as usize / BLOCK + 1;
        let by0 = y0.max(0) as usize / BLOCK;
        let by1 = y1.min(h - 1) as usize / BLOCK + 1;
        let (s, k) = (&self.sat, self.stride);
        s[by1 * k + bx1] + s[by0 * k + bx0] != s[by0 * k + bx1] + s[by1 * k + bx0]
    }
}

/// (min, max) without NaN handling (the inputs are finite).
#[inline(always)]
fn order(a: f64, b: f64) -> (f64, f64) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Pixel range that surely contains every bilinear tap of source coordinates in [lo, hi]:
/// floor(lo) ..= floor(hi) + 1, widened by one on each side against rounding.
#[inline(always)]
fn tap_range(lo: f64, hi: f64) -> (i32, i32) {
    ((lo as i32).saturating_sub(2), (hi as i32).saturating_add(2))
}

/// `rotate_into(.., |v, o| *o = if v > thr { 255 } else { 0 }, out)` (exactly the same bytes),
/// skipping output pixels whose source neighbourhood lies entirely below the threshold: output
/// tiles, then row segments, whose source bounding box (affine map: corners bound it) meets no
/// block holding a value >= thr − MARGIN stay 0 without being interpolated. Most of a Perlin
/// mask is far below the threshold (mean coverage ≈ 5 %), so most pixels are skipped.
/// `src` must be a noise map (|values| <= 2, see MARGIN); `out` must hold zeros (skipped
/// pixels are not written).
fn rotate_threshold(src: &[f32], h: usize, w: usize, degrees: f64, thr: f32, out: &mut [u8]) {
    let put = |v: f32, o: &mut u8| *o = if v > thr { 255 } else { 0 };
    if thr.is_nan() || thr <= MARGIN || h == 0 || w == 0 {
        // Zero fill could exceed the threshold: no skipping.
        rotate_into(src, h, w, degrees, put, out);
        return;
    }
    let hot = HotBlocks::new(src, h, w, thr - MARGIN);
    let rot = Rotation::new(h, w, degrees);
    let (s, c) = (rot.s, rot.c);
    // Whether output rows with offsets (bx, by) in the given ranges, columns q0..=q1, may
    // sample a hot block. The source coordinates are affine in (r, q): x = c·q + bx(r).
    let may_be_hot = |bxs: (f64, f64), bys: (f64, f64), q0: usize, q1: usize| {
        let (qa, qb) = (q0 as f64, q1 as f64);
        let (xq, yq) = (order(c * qa, c * qb), order(-s * qa, -s * qb));
        let (xl, xh) = tap_range(xq.0 + bxs.0, xq.1 + bxs.1);
        let (yl, yh) = tap_range(yq.0 + bys.0, yq.1 + bys.1);
        hot.any(xl, xh, yl, yh)
    };
    for r0 in (0..h).step_by(TILE) {
        let r1 = (r0 + TILE).min(h);
        let ((bx0, by0), (bx1, by1)) = (rot.row(r0), rot.row(r1 - 1));
        let (bxs, bys) = (order(bx0, bx1), order(by0, by1));
        for q0 in (0..w).step_by(TILE) {
            let q1 = (q0 + TILE).min(w);
            if !may_be_hot(bxs, bys, q0, q1 - 1) {
                continue;
            }
            for r in r0..r1 {
                let (bx, by) = rot.row(r);
                let orow = &mut out[r * w..(r + 1) * w];
                let (ia, ib) = interior(c, bx, w, -s, by, h);
                for a in (q0..q1).step_by(SEG) {
                    let b = (a + SEG).min(q1);
                    if !may_be_hot((bx, bx), (by, by), a, b - 1) {
                        continue;
                    }
                    let (ja, jb) = (ia.clamp(a, b), ib.clamp(a, b));
                    let (ja, jb) = if jb > ja { (ja, jb) } else { (b, b) };
                    for q in (a..ja).chain(jb..b) {
                        let sx = c * q as f64 + bx;
                        put(sample(src, h, w, sx, -s * q as f64 + by), &mut orow[q]);
                    }
                    interior_span(src, w, (c, s), (bx, by), &mut orow[..jb], ja, &put);
                }
            }
        }
    }
}

thread_local! {
    static NOISE_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One Perlin mask of `w×h` (255 = anomalous region). Draw order: scale exponent of the rows,
/// of the columns, the gradient angles, the rotation angle (as torch_reference.py).
pub fn perlin_mask<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, p: &PerlinParams) -> GrayImage {
    let sy = 1usize << rng.gen_range(p.min_scale..p.max_scale);
    let sx = 1usize << rng.gen_range(p.min_scale..p.max_scale);
    let (hu, wu) = (h as usize, w as usize);
    let mut buf = vec![0u8; hu * wu];
    // The noise map lives in a per-thread scratch buffer: a fresh 256 KB allocation per mask
    // costs page faults whenever the allocator hands the memory back to the system.
    NOISE_SCRATCH.with(|scratch| {
        let mut fresh = Vec::new();
        let mut guard = scratch.try_borrow_mut();
        let noise = match guard.as_deref_mut() {
            Ok(v) => v,
            Err(_) => &mut fresh, // re-entered (cannot happen today): use a private buffer
        };
        noise.resize(hu * wu, 0.0);
        perlin_noise_into(rng, hu, wu, sy, sx, noise);
        let deg = if p.max_rotation > 0.0 {
            rng.gen_range(-(p.max_rotation as f64)..p.max_rotation as f64)
        } else {
            0.0
        };
        rotate_threshold(noise, hu, wu, deg, p.threshold, &mut buf);
    });
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
    fn skipping_cold_tiles_gives_the_same_bytes_as_the_full_rotation() {
        // Sizes that are not multiples of BLOCK/TILE/SEG, tiny maps, thresholds below MARGIN
        // (no skipping) and negative ones.
        for (i, &(h, w)) in [(256, 256), (37, 53), (16, 16), (5, 7), (100, 3)]
            .iter()
            .enumerate()
        {
            for deg in [-90.0, -61.3, -45.0, -7.5, 0.0, 12.0, 45.0, 89.9, 180.0] {
                for (k, thr) in [0.5f32, 0.2, 0.0005, -0.3].into_iter().enumerate() {
                    let noise = perlin_noise(&mut sample_rng(i as u64, k as u64), h, w, 4, 8);
                    let mut want = vec![0u8; h * w];
                    let put = |v: f32, o: &mut u8| *o = if v > thr { 255 } else { 0 };
                    rotate_into(&noise, h, w, deg, put, &mut want);
                    let mut got = vec![0u8; h * w];
                    rotate_threshold(&noise, h, w, deg, thr, &mut got);
                    assert_eq!(got, want, "{h}x{w} {deg} deg, threshold {thr}");
                }
            }
        }
        // Full masks: skipped pixels are exactly those the full path leaves at 0.
        let p = PerlinParams::default();
        for i in 0..50 {
            let mut rng = sample_rng(3, i);
            let m = perlin_mask(&mut rng.clone(), 256, 256, &p);
            let sy = 1usize << rng.gen_range(p.min_scale..p.max_scale);
            let sx = 1usize << rng.gen_range(p.min_scale..p.max_scale);
            let noise = perlin_noise(&mut rng, 256, 256, sy, sx);
            let deg = rng.gen_range(-90.0..90.0);
            let mut want = vec![0u8; 256 * 256];
            let put = |v: f32, o: &mut u8| *o = if v > 0.5 { 255 } else { 0 };
            rotate_into(&noise, 256, 256, deg, put, &mut want);
            assert_eq!(m.as_raw(), &want, "mask {i}");
        }
    }

    #[test]
    fn empty_maps_give_empty_masks() {
        let p = PerlinParams::default();
        assert_eq!(perlin_mask(&mut sample_rng(0, 0), 0, 7, &p).len(), 0);
        assert_eq!(perlin_mask(&mut sample_rng(0, 0), 7, 0, &p).len(), 0);
        assert!(rotate_bilinear(&[], 0, 3, 10.0).is_empty());
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
