//! Winograd F(4×4, 3×3) convolution for the wide 3×3 layers at inference (Lavin & Gray 2016).
//!
//! Why: the paper preset's reconstruction UNets and RRS head spend most of an inference in 3×3
//! convolutions with 128–512 channels, which libtorch's CPU kernels run as GEMMs already near the
//! machine's peak (about 36 GMAC/s per core here). F(4,3) computes each 4×4 output tile from a
//! 6×6 input tile with 36 multiplies per channel pair instead of 144, i.e. 4× fewer multiplies,
//! at the cost of three small transforms. Measured on the paper preset's shapes (one thread, batch 1) the
//! layers of 128–512 channels on 32² and 64² maps took 0.52–0.87 of the direct kernel's time;
//! narrow layers and small maps gain nothing, so [`worth_it`] keeps them on the direct kernel.
//!
//! Accuracy: F(4,3)'s transforms have entries up to 8 and 1/24, so the result differs from the
//! direct convolution by rounding only (relative error ≈ 1e-5 in f32, tested below).
//!
//! Scope: CPU, f32, NCHW, no autograd. Training keeps the direct kernel: its backward would run
//! through these transforms as generic ops, which measured slower than libtorch's own backward.
use tch::{Device, Kind, Tensor};

/// Output tile side m and input tile side m + r − 1 of F(m×m, 3×3).
const M: i64 = 4;
const A: i64 = M + 2;

/// Bᵀ (6×6): input tile transform.
const BT: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// G (6×3): filter transform.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Aᵀ (4×6): output tile transform.
const AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// The smallest channel count (of input and output) and map side that gain from F(4,3) with the
/// filter transform made per call (`cargo run --release --example winograd_shapes`, one thread,
/// batch 1, direct → Winograd ms): 128→128 at 64² 11.9 → 10.4, at 32² 3.0 → 2.6; 256→256 at 64²
/// 43 → 28, at 32² 11.2 → 9.1; 512→256 at 32² 21.9 → 16.9; 512→512 at 64² 170 → 88. At 16² the
/// filter transform (36·K·C values per call) eats the gain (256→256 3.1 → 4.6, 512→512 12.5 →
/// 20), and 64-channel layers or a 128→64 conv gain nothing (3.0 → 3.5, 5.9 → 6.3).
pub const MIN_CHANNELS: i64 = 128;
pub const MIN_SIDE: i64 = 32;

/// The largest filter transform (36·K·C values) made per call: 16 M floats = 64 MB, i.e. up to
/// 768 → 512 channels. The paper denoiser's 1024 → 512 and 1536 → 512 decoder layers would need
/// 75 and 113 MB, which raised its peak RSS above the PyTorch reference's.
pub const MAX_FILTER_VALUES: i64 = 1 << 24;

/// Whether the wide layers use Winograd: `REALNET_CONV=direct` never (bit-for-bit comparisons
/// with the PyTorch reference, A/B timing in one build), `REALNET_CONV=winograd` always, otherwise
/// only on CPUs without AVX-512. Measured per layer (`examples/winograd_shapes.rs`, one thread,
/// batch 1): on an AVX2 CPU 0.52–0.87 of the direct kernel's time for every layer the rule picks,
/// on an AVX-512 CPU 1.02–1.59 — oneDNN's AVX-512 direct kernel wins there at every shape.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| choose(std::env::var("REALNET_CONV").ok().as_deref(), has_avx512()))
}

/// The rule of [`enabled`], given the variable's value and the CPU.
fn choose(var: Option<&str>, avx512: bool) -> bool {
    match var {
        Some("direct") => false,
        Some("winograd") => true,
        _ => !avx512,
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Kron(T, T)` as a dense f32 matrix: applied to a row-major flattened tile d (i·cols + j) it
/// gives the flattened T·d·Tᵀ, so a 2-D transform of many tiles is one GEMM.
fn kron<const R: usize, const C: usize>(t: &[[f64; C]; R]) -> Tensor {
    let mut v = Vec::with_capacity(R * R * C * C);
    for p in 0..R {
        for q in 0..R {
            for i in 0..C {
                for j in 0..C {
                    v.push((t[p][i] * t[q][j]) as f32);
                }
            }
        }
    }
    Tensor::from_slice(&v).reshape([(R * R) as i64, (C * C) as i64])
}

/// Whether a 3×3, stride-1, padding-1 convolution of `x` with `weight` (K×C×3×3) is run faster by
/// [`conv3x3`] than by libtorch's direct kernel here.
pub fn worth_it(x: &Tensor, weight: &Tensor) -> bool {
    let (xs, ws) = (x.size(), weight.size());
    xs.len() == 4
        && ws.len() == 4
        && ws[2] == 3
        && ws[3] == 3
        && ws[1] == xs[1]
        && ws[0].min(ws[1]) >= MIN_CHANNELS
        && xs[2].min(xs[3]) >= MIN_SIDE
        && A * A * ws[0] * ws[1] <= MAX_FILTER_VALUES
        && x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && weight.kind() == Kind::Float
        && !crate::precision::is_channels_last(x)
}

/// The filter transform U = G·w·Gᵀ for every (output, input) channel pair: 36×K×C.
pub fn filter_transform(weight: &Tensor) -> Tensor {
    let s = weight.size();
    let (k, c) = (s[0], s[1]);
    let gg = kron(&G).to_device(weight.device());
    // (G⊗G)·wᵀ lands directly in the 36×(K·C) layout the batched GEMM wants (BLAS reads the
    // transposed operand in place), so no copy of the 36·K·C result is made.
    gg.matmul(&weight.reshape([k * c, 9]).tr())
        .reshape([A * A, k, c])
}

/// `x.conv2d(weight, bias, stride 1, padding 1)` by F(4×4, 3×3), one image and one band of tile
/// rows at a time, so that the tile buffers stay near the cache ([`BAND_VALUES`]): a whole batch's
/// did not (batch 8 measured slower than the direct kernel), nor would one 256-channel 256² map's
/// (≈ 150 MB per buffer, the paper denoiser's first level).
pub fn conv3x3(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    conv3x3_transformed(x, &filter_transform(weight), bias)
}

/// [`conv3x3`] with the filter transform `u` of [`filter_transform`] already made.
pub fn conv3x3_transformed(x: &Tensor, u: &Tensor, bias: Option<&Tensor>) -> Tensor {
    banded(x, u, bias, BAND_VALUES)
}

fn banded(x: &Tensor, u: &Tensor, bias: Option<&Tensor>, band_values: i64) -> Tensor {
    let bt = kron(&BT);
    let at = kron(&AT);
    let s = x.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let k = u.size()[1];
    // Each band's tiles are written straight into the output, and the bias added in place: the
    // output is the one map-sized allocation, as with the direct kernel (a stack of per-image
    // results, a cat of bands and a bias sum made three more: +170 MB peak on the paper denoiser).
    let mut out = Tensor::empty([n, k, h, w], (x.kind(), x.device()));
    let (th, tw) = ((h + M - 1) / M, (w + M - 1) / M);
    let rows = (band_values / (A * A * c * tw)).clamp(1, th);
    for i in 0..n {
        // Pad 1 on the top/left (the convolution's own padding) and enough on the bottom/right
        // that the tiles cover the map; the extra rows/columns' outputs are not copied out.
        let xp = x
            .get(i)
            .constant_pad_nd([1, M * tw + 1 - w, 1, M * th + 1 - h]);
        let out_i = out.get(i);
        for r0 in (0..th).step_by(rows as usize) {
            let r = rows.min(th - r0);
            let y = band(&xp.narrow(1, M * r0, M * r + 2), u, &bt, &at); // K×r×4×tw×4 view
            let valid = (M * r).min(h - M * r0);
            let mut dst = out_i.narrow(1, M * r0, valid);
            if valid == M * r && M * tw == w {
                dst.view([k, r, M, tw, M]).copy_(&y);
            } else {
                let y = y.reshape([k, M * r, M * tw]);
                dst.copy_(&y.narrow(1, 0, valid).narrow(2, 0, w));
            }
        }
    }
    if let Some(b) = bias {
        out += b.reshape([1, k, 1, 1]);
    }
    out
}

/// The most values one band's transformed input (36 · C · tiles) may hold: 2 M floats = 8 MB.
pub const BAND_VALUES: i64 = 1 << 21;

/// One band of padded input, C × (4r + 2) × (4tw + 2) → its outputs as a K × r × 4 × tw × 4 view.
fn band(xp: &Tensor, u: &Tensor, bt: &Tensor, at: &Tensor) -> Tensor {
    let s = xp.size();
    let (c, th, tw) = (s[0], (s[1] - 2) / M, (s[2] - 2) / M);
    let k = u.size()[1];
    // C×th×tw×6×6 overlapping tiles → 36 × (C·tiles), then V = (Bᵀ⊗Bᵀ)·d: 36 × C × tiles.
    let d = xp
        .unfold(1, A, M)
        .unfold(2, A, M)
        .permute([3, 4, 0, 1, 2])
        .reshape([A * A, c * th * tw]);
    let v = bt.matmul(&d).reshape([A * A, c, th * tw]);
    // Per tile position: K×C · C×tiles, the 4×-smaller GEMM this is for.
    let m = u.bmm(&v).reshape([A * A, k * th * tw]);
    // Y = (Aᵀ⊗Aᵀ)·m: 4 × 4 × K × th × tw, seen as K × th × 4 × tw × 4.
    at.matmul(&m)
        .reshape([M, M, k, th, tw])
        .permute([2, 3, 0, 4, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `direct` and `winograd` force the choice; unset (or anything else) follows the CPU.
    #[test]
    fn the_variable_forces_and_the_cpu_decides_otherwise() {
        for avx512 in [false, true] {
            assert!(!choose(Some("direct"), avx512));
            assert!(choose(Some("winograd"), avx512));
            assert_eq!(choose(None, avx512), !avx512);
            assert_eq!(choose(Some("auto"), avx512), !avx512);
        }
    }

    fn direct(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.conv2d(w, b, [1, 1], [1, 1], [1, 1], 1)
    }

    fn max_rel_err(got: &Tensor, want: &Tensor) -> f64 {
        let scale = f64::try_from(want.abs().max()).unwrap();
        f64::try_from((got - want).abs().max()).unwrap() / scale
    }

    /// Every map side modulo the tile (exact tiles, 1–3 extra rows/columns), with and without bias,
    /// batch > 1, non-square maps: the same numbers as the direct convolution up to rounding.
    #[test]
    fn matches_the_direct_convolution() {
        tch::manual_seed(7);
        for &(n, c, k, h, w) in &[
            (1, 3, 5, 8, 8),
            (2, 4, 6, 9, 7),
            (1, 8, 3, 10, 13),
            (3, 2, 2, 11, 4),
            (1, 16, 16, 5, 6),
        ] {
            let x = Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu));
            let wt = Tensor::randn([k, c, 3, 3], (Kind::Float, Device::Cpu));
            let b = Tensor::randn([k], (Kind::Float, Device::Cpu));
            for bias in [Some(&b), None] {
                let got = conv3x3(&x, &wt, bias);
                let want = direct(&x, &wt, bias);
                assert_eq!(got.size(), want.size());
                let e = max_rel_err(&got, &want);
                assert!(e < 2e-5, "{n}×{c}→{k} {h}×{w} bias {}: {e}", bias.is_some());
            }
        }
    }

    /// Bands of 1, 2 and 5 tile rows give the direct convolution as one band does: on a map the
    /// tiles cover exactly (written through the 5-D view) and on one they overhang (13 tile rows:
    /// the last band shorter, rows and columns cropped), with bias.
    #[test]
    fn bands_give_the_one_band_result() {
        tch::manual_seed(11);
        let wt = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([4], (Kind::Float, Device::Cpu));
        let u = filter_transform(&wt);
        for (h, w) in [(52, 24), (50, 22)] {
            let x = Tensor::randn([2, 3, h, w], (Kind::Float, Device::Cpu));
            let want = direct(&x, &wt, Some(&b));
            let one = banded(&x, &u, Some(&b), i64::MAX);
            assert!(max_rel_err(&one, &want) < 2e-5);
            // 36 · 3 channels · 6 tiles per row = 648 values per tile row.
            for rows in [1, 2, 5] {
                let got = banded(&x, &u, Some(&b), rows * 648);
                assert_eq!(got.size(), want.size());
                // Rounding only (another GEMM width may sum in another order); a wrong band is O(1).
                let e = max_rel_err(&got, &want);
                assert!(e < 2e-5, "{h}×{w}, {rows} rows per band: {e}");
            }
        }
    }

    /// A single impulse reproduces the (correlation-oriented) kernel around it: a transposed or
    /// flipped transform would pass a random-data test only by luck, never this one.
    #[test]
    fn impulse_gives_the_kernel() {
        let x = Tensor::zeros([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let _ = x.get(0).get(0).get(4).get(5).fill_(1.0);
        let wt = Tensor::arange(9, (Kind::Float, Device::Cpu)).reshape([1, 1, 3, 3]);
        let y = conv3x3(&x, &wt, None);
        // y[i, j] = Σ w[a, b]·x[i+a−1, j+b−1], so around (4, 5) the kernel appears flipped.
        for a in 0..3i64 {
            for b in 0..3i64 {
                let got = f64::try_from(y.get(0).get(0).get(5 - a).get(6 - b)).unwrap();
                assert!((got - (3 * a + b) as f64).abs() < 1e-5, "({a},{b}) {got}");
            }
        }
        // Nothing leaks outside the 3×3 neighbourhood.
        let total = f64::try_from(y.abs().sum(Kind::Double)).unwrap();
        assert!((total - 36.0).abs() < 1e-4, "{total}");
    }

    #[test]
    fn shape_rule_keeps_narrow_small_and_non_f32_layers_on_the_direct_kernel() {
        let opts = (Kind::Float, Device::Cpu);
        let w = |k, c| Tensor::zeros([k, c, 3, 3], opts);
        let x = |c, s| Tensor::zeros([1, c, s, s], opts);
        assert!(worth_it(&x(128, 64), &w(128, 128)));
        assert!(worth_it(&x(512, 32), &w(256, 512)));
        assert!(!worth_it(&x(512, 16), &w(512, 512)), "16² map");
        assert!(worth_it(&x(768, 32), &w(512, 768)));
        assert!(
            !worth_it(&x(1024, 32), &w(512, 1024)),
            "filter transform too large"
        );
        assert!(!worth_it(&x(128, 64), &w(64, 128)), "narrow output");
        assert!(!worth_it(&x(64, 64), &w(64, 64)), "narrow");

        assert!(
            !worth_it(&x(128, 64), &w(128, 128).narrow(2, 0, 1)),
            "1×3 kernel"
        );
        let xb = x(128, 64).to_kind(Kind::BFloat16);
        assert!(!worth_it(&xb, &w(128, 128)), "bf16");
    }
}
