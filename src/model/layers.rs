//! Small building blocks shared by the reconstruction UNets and the RRS head, with PyTorch's default
//! initialisation (the official code never re-initialises: `models/initializer.py` is unused).
use tch::nn::{self, Init};
use tch::Tensor;

/// PyTorch's default conv/linear weight init: kaiming_uniform(a = √5), i.e. U(±1/√fan_in).
pub const TORCH_DEFAULT_W: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Uniform,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ExplicitGain(0.577_350_269_189_625_8), // √(1/3)
};

/// PyTorch's default bias init, U(±1/√fan_in).
pub fn torch_default_bias(fan_in: i64) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// `nn.Conv2d(cin, cout, k, stride, padding=k/2)` with PyTorch's default init.
pub fn conv2d(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, bias: bool) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias,
        ws_init: TORCH_DEFAULT_W,
        bs_init: torch_default_bias(cin * k * k),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// The forward of a 3×3, stride-1, padding-1 layer built by [`conv2d`] or [`zero_conv2d`]: by
/// Winograd F(4,3) where that is faster (wide f32 layers on the CPU, outside autograd; see
/// [`super::winograd`]), by libtorch's kernel everywhere else.
pub fn conv3x3_fwd(conv: &nn::Conv2D, x: &Tensor) -> Tensor {
    use tch::nn::Module;
    // Shape checks first: the grad-mode query makes a tiny tensor op, which every narrow layer
    // of a training step would otherwise pay for nothing.
    if super::winograd::enabled() && super::winograd::worth_it(x, &conv.ws) && !grad_enabled() {
        super::winograd::conv3x3(x, &conv.ws, conv.bs.as_ref())
    } else {
        conv.forward(x)
    }
}

/// Whether autograd records operations now (false inside `tch::no_grad`). tch keeps libtorch's
/// grad-mode query private and views keep `requires_grad` even in no-grad mode, so this asks an
/// arithmetic op on a one-element leaf (well under a microsecond next to a wide convolution).
pub fn grad_enabled() -> bool {
    thread_local! {
        static LEAF: Tensor = Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    }
    LEAF.with(|t| t.neg().requires_grad())
}

/// A convolution whose weights and bias start at zero (output heads, attention projections).
pub fn zero_conv2d(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        padding: k / 2,
        ws_init: Init::Const(0.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// `nn.ConvTranspose2d(c, c, 4, stride 2, padding 1)`: exact ×2 upsampling.
pub fn up_conv(p: nn::Path, cin: i64, cout: i64) -> nn::ConvTranspose2D {
    let cfg = nn::ConvTransposeConfig {
        stride: 2,
        padding: 1,
        ws_init: TORCH_DEFAULT_W,
        // PyTorch computes the transposed conv's fan_in from weight.size(1) = cout.
        bs_init: torch_default_bias(cout * 16),
        ..Default::default()
    };
    nn::conv_transpose2d(p, cin, cout, 4, cfg)
}

/// GroupNorm with 32 groups as the paper; narrower layers (light presets) use the largest group
/// count ≤ 32 that divides the channel count and leaves ≥ `min_per_group` channels per group
/// (1 = the official rule). One channel per group is an instance norm: it removes every channel's
/// spatial mean, so a network normalised that way right before its output head cannot track global
/// levels (a denoiser then cannot estimate the noise's mean colour).
pub fn group_norm(p: nn::Path, channels: i64, min_per_group: i64) -> nn::GroupNorm {
    let g = norm_groups(channels, min_per_group);
    nn::group_norm(p, g, channels, Default::default())
}

/// `norm(x)` computed in NCHW: libtorch's channels-last GroupNorm kernels, the backward above all,
/// are several times slower than its NCHW ones (bf16, 8×32×64×64, forward + backward, one thread:
/// 55 ms channels-last against 12 ms through NCHW, the two copies included), so a channels-last
/// input (the bf16 path) is normalised as NCHW and handed back channels-last.
pub fn group_norm_fwd(norm: &nn::GroupNorm, x: &Tensor) -> Tensor {
    use tch::nn::Module;
    if crate::precision::is_channels_last(x) {
        crate::precision::channels_last(&norm.forward(&x.contiguous()))
    } else {
        norm.forward(x)
    }
}

/// The group count of [`group_norm`] (1 when no count leaves `min_per_group` channels per group).
pub fn norm_groups(channels: i64, min_per_group: i64) -> i64 {
    let most = 32.min(channels / min_per_group.max(1)).max(1);
    (1..=most).rev().find(|g| channels % g == 0).unwrap_or(1)
}

/// Serde default of the `norm_min_group_channels` keys: configs saved before them keep the
/// official rule.
pub fn official_min_group_channels() -> i64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wide layer: Winograd outside autograd where enabled (same numbers up to rounding),
    /// libtorch's kernel with gradients inside it (so training's backward is libtorch's own).
    #[test]
    fn conv3x3_fwd_uses_winograd_only_outside_autograd() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let conv = conv2d(vs.root(), 128, 128, 3, 1, true);
        let x = Tensor::randn([2, 128, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        let direct = x.conv2d(&conv.ws, conv.bs.as_ref(), [1, 1], [1, 1], [1, 1], 1);
        let diff = |y: &Tensor| f64::try_from((y - &direct).abs().max()).unwrap();
        let with_grad = conv3x3_fwd(&conv, &x);
        assert!(with_grad.requires_grad());
        assert_eq!(diff(&with_grad), 0.0, "autograd runs libtorch's kernel");
        let inference = tch::no_grad(|| conv3x3_fwd(&conv, &x));
        let d = diff(&inference);
        if crate::model::winograd::enabled() {
            assert!(
                d > 0.0 && d < 1e-4,
                "winograd differs by rounding only: {d}"
            );
        } else {
            assert_eq!(
                d, 0.0,
                "off (REALNET_CONV or an AVX-512 CPU): the direct kernel"
            );
        }
        assert!(grad_enabled());
        assert!(!tch::no_grad(grad_enabled));
        assert!(grad_enabled(), "no_grad restores the mode");
    }

    #[test]
    fn groups_divide_channels() {
        assert_eq!(norm_groups(256, 1), 32);
        assert_eq!(norm_groups(24, 1), 24);
        assert_eq!(norm_groups(48, 1), 24);
        assert_eq!(norm_groups(60, 1), 30);
        assert_eq!(norm_groups(7, 1), 7);
        // At least 4 channels per group: paper widths keep 32 groups, narrow ones get fewer.
        assert_eq!(norm_groups(256, 4), 32);
        assert_eq!(norm_groups(128, 4), 32);
        assert_eq!(norm_groups(64, 4), 16);
        assert_eq!(norm_groups(32, 4), 8);
        assert_eq!(norm_groups(24, 4), 6);
        assert_eq!(norm_groups(3, 4), 1);
        for c in 1..600 {
            assert_eq!(c % norm_groups(c, 1), 0);
        }
    }

    /// A channels-last input is normalised as NCHW: same values as libtorch's own kernel, handed
    /// back channels-last; NCHW input goes through unchanged.
    #[test]
    fn group_norm_fwd_matches_and_keeps_the_layout() {
        use tch::{nn::Module, Device, Kind};
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = group_norm(vs.root() / "n", 16, 1);
        let x = Tensor::randn([2, 16, 8, 8], (Kind::Float, Device::Cpu));
        let cl = crate::precision::channels_last(&x);
        assert!(crate::precision::is_channels_last(&cl) && !crate::precision::is_channels_last(&x));
        let y = group_norm_fwd(&norm, &cl);
        assert!(crate::precision::is_channels_last(&y));
        let want = norm.forward(&x);
        assert!(y.allclose(&want, 1e-5, 1e-5, false));
        assert!(group_norm_fwd(&norm, &x).equal(&want));
    }
}
