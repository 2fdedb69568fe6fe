//! Inference precision: `f32` everywhere (the default), or `bf16` weights and activations through the
//! backbone and RealNet's networks, with the maps, the memory's search and the scores in f32.
//!
//! bf16 tensors are laid out channels-last (NHWC in memory, the NCHW shape unchanged): oneDNN's bf16
//! convolutions (AMX on CPUs that have it) run in that layout, and NCHW input costs a reorder before
//! and after every convolution.
//!
//! Training in bf16 is mixed precision (PyTorch's autocast recipe, by hand): the trainable weights
//! stay f32 masters, which Adam updates and checkpoints save; each step's forward and backward run on
//! bf16 copies of them ([`Precision::compute_weights`]), and the loss is taken in f32.
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!(
                "--precision '{other}' is not understood: use f32 or bf16"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// `t` in this precision; a 4-D bf16 tensor also channels-last.
    pub fn cast(self, t: &Tensor) -> Tensor {
        let t = t.to_kind(self.kind());
        if self == Precision::Bf16 && t.dim() == 4 {
            channels_last(&t)
        } else {
            t
        }
    }

    /// Casts the float variables of `vs` (RealNet's networks) to this precision, except those
    /// whose name starts with one of `keep` (stored indices: bf16 holds integers exactly only up
    /// to 256).
    pub fn cast_vars(self, vs: &nn::VarStore, keep: &[&str]) {
        if self == Precision::F32 {
            return;
        }
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                if v.is_floating_point() && !keep.iter().any(|k| name.starts_with(k)) {
                    v.set_data(&self.cast(&v));
                }
            }
        })
    }

    /// Swaps the trainable f32 weights of `vs` for copies in this precision until the returned guard
    /// is dropped (nothing for f32). Gradients taken meanwhile are in this precision: cast them to
    /// the masters' kind before the optimiser step.
    pub fn compute_weights(self, vs: &nn::VarStore) -> ComputeWeights {
        let mut swapped = Vec::new();
        if self != Precision::F32 {
            let vars = vs.variables();
            // A BatchNorm layer is the module that owns a running_mean.
            let bn: Vec<&str> = vars
                .keys()
                .filter_map(|n| n.strip_suffix("running_mean"))
                .collect();
            tch::no_grad(|| {
                for (name, v) in &vars {
                    if v.requires_grad()
                        && v.kind() == Kind::Float
                        && !bn.iter().any(|m| name.starts_with(m))
                    {
                        let master = v.detach();
                        let mut v = v.shallow_clone();
                        v.set_data(&self.cast(&master));
                        swapped.push((v, master));
                    }
                }
            });
        }
        ComputeWeights { swapped }
    }
}

/// While alive, the trainable weights of a VarStore hold bf16 copies (the forward and backward of one
/// training step run on them); dropping it puts the f32 masters back. Weights of BatchNorm layers
/// stay f32: libtorch's CPU batch norm takes bf16 input only with f32 affine weights and statistics.
#[must_use = "the bf16 weights are swapped back when this is dropped"]
pub struct ComputeWeights {
    /// (variable, its f32 master).
    swapped: Vec<(Tensor, Tensor)>,
}

impl Drop for ComputeWeights {
    fn drop(&mut self) {
        tch::no_grad(|| {
            for (v, master) in &mut self.swapped {
                v.set_data(master);
            }
        })
    }
}

/// Whether this CPU has AMX (`amx_bf16`), the matrix units on which oneDNN's bf16 kernels beat
/// f32; `None` where that cannot be read (not Linux on x86-64).
pub fn cpu_has_amx() -> Option<bool> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return None;
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags"))?;
    Some(flags.split_whitespace().any(|f| f == "amx_bf16"))
}

/// The warning for bf16 on a CPU without AMX (`amx`: e.g. [`cpu_has_amx`]), `None` when there is
/// nothing to warn about. Measured (`realnet bench --what infer`, small network, one thread):
/// without AMX, bf16 inference took 1.25–1.7× f32's time on an AVX-512-BF16 CPU and 14× on an
/// AVX2-only one, where libtorch emulates bf16 arithmetic.
pub fn slow_bf16_warning(
    precision: Precision,
    device: tch::Device,
    amx: impl FnOnce() -> Option<bool>,
) -> Option<String> {
    // `amx` is asked only for bf16 on a CPU: f32 runs never read /proc/cpuinfo.
    let cpu_bf16 = precision == Precision::Bf16 && device == tch::Device::Cpu;
    (cpu_bf16 && amx() == Some(false)).then(|| {
        "bf16 was asked for on a CPU without AMX (no `amx_bf16` in /proc/cpuinfo): libtorch's bf16 \
         kernels run slower than f32 here (measured 1.25–1.7× slower with AVX-512-BF16, 14× with \
         AVX2 only); use --precision f32 (train.precision = \"f32\") on this machine"
            .to_string()
    })
}

/// Logs [`slow_bf16_warning`] for this machine, if any.
pub fn warn_if_slow(precision: Precision, device: tch::Device) {
    if let Some(w) = slow_bf16_warning(precision, device, cpu_has_amx) {
        tracing::warn!("{w}");
    }
}

/// Whether `t` is a 4-D tensor stored channels-last (NHWC) rather than NCHW.
pub fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && t.size()[1] > 1 && t.stride()[1] == 1
}

/// The same N×C×H×W tensor stored NHWC (strides C·H·W, 1, W·C, C).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_warning_only_for_bf16_on_a_cpu_known_to_lack_amx() {
        use tch::Device::{Cpu, Cuda};
        let w = slow_bf16_warning(Precision::Bf16, Cpu, || Some(false)).unwrap();
        assert!(w.contains("AMX") && w.contains("--precision f32"), "{w}");
        assert_eq!(slow_bf16_warning(Precision::Bf16, Cpu, || Some(true)), None);
        assert_eq!(slow_bf16_warning(Precision::Bf16, Cpu, || None), None);
        assert_eq!(
            slow_bf16_warning(Precision::Bf16, Cuda(0), || Some(false)),
            None
        );
        assert_eq!(slow_bf16_warning(Precision::F32, Cpu, || Some(false)), None);
    }
    use tch::nn::ModuleT;
    use tch::Device;

    #[test]
    fn parse_and_names_round_trip() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(Precision::parse(p.name()), Ok(p));
        }
        assert_eq!(Precision::parse(" BF16 "), Ok(Precision::Bf16));
        let e = Precision::parse("f16").unwrap_err();
        assert!(e.contains("f32 or bf16"), "{e}");
    }

    #[test]
    fn bf16_cast_keeps_shape_and_values_within_its_rounding_and_is_channels_last() {
        let t = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let b = Precision::Bf16.cast(&t);
        assert_eq!(b.kind(), Kind::BFloat16);
        assert_eq!(b.size(), [2, 3, 4, 5]);
        assert_eq!(b.stride(), [60, 1, 15, 3]);
        // bf16 keeps 8 significant bits: relative error ≤ 2⁻⁸.
        let rel = ((b.to_kind(Kind::Float) - &t).abs() / (t.abs() + 1e-12))
            .max()
            .double_value(&[]);
        assert!(rel <= 1.0 / 256.0, "{rel}");
        let f = Precision::F32.cast(&t);
        assert_eq!(f.stride(), t.stride());
        assert!(f.equal(&t));
    }

    #[test]
    fn compute_weights_swap_in_bf16_and_back_leaving_batch_norm_and_buffers_f32() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let conv = nn::conv2d(&root / "conv", 3, 4, 3, Default::default());
        let bn = nn::batch_norm2d(&root / "bn", 4, Default::default());
        let buf = root.zeros_no_train("scale", &[1]);
        let before = conv.ws.copy();
        {
            let _w = Precision::Bf16.compute_weights(&vs);
            assert_eq!(conv.ws.kind(), Kind::BFloat16);
            assert_eq!(conv.ws.stride(), [27, 1, 9, 3]);
            assert_eq!(conv.bs.as_ref().map(Tensor::kind), Some(Kind::BFloat16));
            assert_eq!(bn.ws.as_ref().map(Tensor::kind), Some(Kind::Float));
            assert_eq!(buf.kind(), Kind::Float);
            // The forward runs on the bf16 copy, and the gradient reaches it.
            let x = Precision::Bf16.cast(&Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)));
            let y = bn.forward_t(&x.apply(&conv), true).sum(Kind::Float);
            let g = Tensor::run_backward(&[&y], &[&conv.ws], false, false);
            assert_eq!(g[0].kind(), Kind::BFloat16);
        }
        assert_eq!(conv.ws.kind(), Kind::Float);
        assert!(conv.ws.requires_grad());
        assert!(conv.ws.equal(&before), "the master is restored unrounded");
        // f32 swaps nothing.
        let _w = Precision::F32.compute_weights(&vs);
        assert_eq!(conv.ws.kind(), Kind::Float);
    }

    #[test]
    fn cast_vars_leaves_kept_names_and_f32_alone() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.randn("w", &[2, 3, 3, 3], 0.0, 1.0);
        let idx = (&root / "afs").zeros_no_train("0", &[1]);
        tch::no_grad(|| {
            let _ = idx.shallow_clone().fill_(1025.0);
        });
        Precision::F32.cast_vars(&vs, &["afs"]);
        assert_eq!(w.kind(), Kind::Float);
        Precision::Bf16.cast_vars(&vs, &["afs"]);
        let vars = vs.variables();
        assert_eq!(vars["w"].kind(), Kind::BFloat16);
        assert_eq!(vars["w"].stride(), [27, 1, 9, 3]);
        // 1025 has no bf16 value (it would become 1024): the index stays f32.
        assert_eq!(vars["afs.0"].kind(), Kind::Float);
        assert_eq!(vars["afs.0"].double_value(&[0]), 1025.0);
    }
}
