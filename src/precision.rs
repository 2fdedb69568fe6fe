//! Inference precision: `f32` everywhere (the default), or `bf16` weights and activations through the
//! backbone and RealNet's networks, with the maps, the memory's search and the scores in f32.
//!
//! bf16 tensors are laid out channels-last (NHWC in memory, the NCHW shape unchanged): oneDNN's bf16
//! convolutions (AMX on CPUs that have it) run in that layout, and NCHW input costs a reorder before
//! and after every convolution. Training always runs in f32.
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
}

/// The same N×C×H×W tensor stored NHWC (strides C·H·W, 1, W·C, C).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
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
