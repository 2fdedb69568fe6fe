//! Building blocks of the backbones and where their tensors come from.
//!
//! An architecture is written once, as calls to [`Params::conv_bn`] / [`Params::linear`] with the
//! PyTorch state-dict names. The same code then lists the tensors it expects ([`Source::Spec`]),
//! makes random ones ([`Source::Random`]) or takes them from a loaded file ([`Source::File`]).

use crate::precision::Precision;
use crate::weights::strict::Expected;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pad {
    /// PyTorch `padding=p` on every side.
    Sym(i64),
    /// TensorFlow "SAME", from the actual input size: extra pixel at the bottom/right.
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    None,
    Relu,
    Relu6,
}

impl Act {
    pub fn apply(self, x: Tensor) -> Tensor {
        match self {
            Act::None => x,
            Act::Relu => x.relu(),
            Act::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// TF "SAME" padding (before, after) of one dimension.
pub fn same_pad(input: i64, k: i64, stride: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + k - input).max(0);
    (total / 2, total - total / 2)
}

/// BatchNorm parameters and statistics, kept only when not folded.
struct Bn {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
}

/// A bias-free convolution followed by BatchNorm and an activation. The BatchNorm is normally folded
/// into the convolution's weight and bias (one conv instead of conv + normalisation at inference).
pub struct ConvBn {
    weight: Tensor,
    bias: Option<Tensor>,
    bn: Option<Bn>,
    stride: i64,
    groups: i64,
    pad: Pad,
    act: Act,
}

impl ConvBn {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let k = self.weight.size();
        let y = match self.pad {
            Pad::Sym(p) => x.conv2d(
                &self.weight,
                self.bias.as_ref(),
                [self.stride],
                [p],
                [1],
                self.groups,
            ),
            Pad::Same => {
                let s = x.size();
                let (t, b) = same_pad(s[2], k[2], self.stride);
                let (l, r) = same_pad(s[3], k[3], self.stride);
                if t == b && l == r {
                    x.conv2d(
                        &self.weight,
                        self.bias.as_ref(),
                        [self.stride],
                        [t, l],
                        [1],
                        self.groups,
                    )
                } else {
                    x.constant_pad_nd([l, r, t, b]).conv2d(
                        &self.weight,
                        self.bias.as_ref(),
                        [self.stride],
                        [0],
                        [1],
                        self.groups,
                    )
                }
            }
        };
        let y = match &self.bn {
            Some(bn) => y.batch_norm(
                Some(&bn.weight),
                Some(&bn.bias),
                Some(&bn.mean),
                Some(&bn.var),
                false,
                0.0,
                bn.eps,
                false,
            ),
            None => y,
        };
        self.act.apply(y)
    }
}

/// `y = x Wᵀ + b`.
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// Where the tensors come from.
pub enum Source<'a> {
    /// Only list the expected names and shapes; layers hold empty placeholders.
    Spec,
    /// PyTorch-style random initialisation (from the global tch generator).
    Random,
    /// A loaded state dict (already checked: every name is present with the right shape).
    File(&'a HashMap<String, Tensor>),
}

/// Collects the expected tensors of an architecture while handing out its layers.
pub struct Params<'a> {
    source: Source<'a>,
    device: Device,
    fold: bool,
    precision: Precision,
    pub expected: Vec<Expected>,
}

impl<'a> Params<'a> {
    pub fn new(source: Source<'a>, device: Device, fold: bool) -> Self {
        Params {
            source,
            device,
            fold,
            precision: Precision::F32,
            expected: Vec::new(),
        }
    }

    /// The layers' tensors in `precision` (folding still runs in f64 first).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn is_spec(&self) -> bool {
        matches!(self.source, Source::Spec)
    }

    /// One named tensor; `init` makes a random one.
    fn tensor(
        &mut self,
        name: &str,
        shape: &[i64],
        optional: bool,
        init: impl FnOnce() -> Tensor,
    ) -> Option<Tensor> {
        self.expected.push(Expected {
            name: name.to_string(),
            shape: shape.to_vec(),
            optional,
        });
        let t = match &self.source {
            Source::Spec => return Some(Tensor::empty([0], (Kind::Float, Device::Cpu))),
            Source::Random => init(),
            // f64 while folding; cast to f32 at the end.
            Source::File(map) => map.get(name)?.to_kind(Kind::Double),
        };
        Some(t)
    }

    /// `{conv}.weight` [cout, cin/groups, k, k] followed by BatchNorm `{bn}.*` with `eps`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
        pad: Pad,
        eps: f64,
        act: Act,
    ) -> ConvBn {
        let shape = [cout, cin / groups, k, k];
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        let std = (2.0 / (cout * k * k) as f64).sqrt();
        let w = self.tensor(&format!("{conv}.weight"), &shape, false, || {
            Tensor::randn(shape, (Kind::Double, Device::Cpu)) * std
        });
        let c = [cout];
        let g = self.tensor(&format!("{bn}.weight"), &c, false, || {
            Tensor::ones(c, (Kind::Double, Device::Cpu))
        });
        let b = self.tensor(&format!("{bn}.bias"), &c, false, || {
            Tensor::zeros(c, (Kind::Double, Device::Cpu))
        });
        let m = self.tensor(&format!("{bn}.running_mean"), &c, false, || {
            Tensor::zeros(c, (Kind::Double, Device::Cpu))
        });
        let v = self.tensor(&format!("{bn}.running_var"), &c, false, || {
            Tensor::ones(c, (Kind::Double, Device::Cpu))
        });
        let empty = || Tensor::empty([0], (Kind::Float, Device::Cpu));
        let (w, g, b, m, v) = match (w, g, b, m, v) {
            (Some(w), Some(g), Some(b), Some(m), Some(v)) => (w, g, b, m, v),
            // Unreachable after the strict check; empty tensors rather than a panic.
            _ => (empty(), empty(), empty(), empty(), empty()),
        };
        let (dev, precision) = (self.device, self.precision);
        let cast = |t: Tensor| precision.cast(&t.to_device(dev));
        if self.is_spec() || w.numel() == 0 {
            return ConvBn {
                weight: w,
                bias: None,
                bn: None,
                stride,
                groups,
                pad,
                act,
            };
        }
        if self.fold {
            let (wf, bf) = fold_bn(&w, &g, &b, &m, &v, eps);
            ConvBn {
                weight: cast(wf),
                bias: Some(cast(bf)),
                bn: None,
                stride,
                groups,
                pad,
                act,
            }
        } else {
            let bn = Bn {
                weight: cast(g),
                bias: cast(b),
                mean: cast(m),
                var: cast(v),
                eps,
            };
            ConvBn {
                weight: cast(w),
                bias: None,
                bn: Some(bn),
                stride,
                groups,
                pad,
                act,
            }
        }
    }

    /// An optional classifier `{name}.weight` [out, in] and `{name}.bias`; `None` when the file
    /// has no classifier (features-only weights) or in Spec mode.
    pub fn linear(&mut self, name: &str, cin: i64, cout: i64) -> Option<Linear> {
        let bound = 1.0 / (cin as f64).sqrt();
        let ws = [cout, cin];
        let w = self.tensor(&format!("{name}.weight"), &ws, true, || {
            Tensor::rand(ws, (Kind::Double, Device::Cpu)) * (2.0 * bound) - bound
        });
        let b = self.tensor(&format!("{name}.bias"), &[cout], true, || {
            Tensor::rand([cout], (Kind::Double, Device::Cpu)) * (2.0 * bound) - bound
        });
        if self.is_spec() {
            return None;
        }
        let (dev, precision) = (self.device, self.precision);
        match (w, b) {
            (Some(w), Some(b)) => Some(Linear {
                weight: precision.cast(&w.to_device(dev)),
                bias: precision.cast(&b.to_device(dev)),
            }),
            _ => None,
        }
    }
}

/// Folds inference BatchNorm into the preceding bias-free convolution, in f64:
/// `w' = w · γ/√(σ²+ε)` per output channel, `b' = β − μ · γ/√(σ²+ε)`.
pub fn fold_bn(
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> (Tensor, Tensor) {
    let d = |t: &Tensor| t.to_kind(Kind::Double);
    let scale = d(gamma) / (d(var) + eps).sqrt();
    let wf = d(w) * scale.view([-1, 1, 1, 1]);
    let bf = d(beta) - d(mean) * &scale;
    (wf, bf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_the_tf_rule() {
        assert_eq!(same_pad(224, 3, 1), (1, 1));
        assert_eq!(same_pad(224, 5, 1), (2, 2));
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(224, 5, 2), (1, 2));
        assert_eq!(same_pad(65, 3, 2), (1, 1));
        assert_eq!(same_pad(65, 5, 2), (2, 2));
        assert_eq!(same_pad(7, 1, 1), (0, 0));
    }

    #[test]
    fn folded_conv_equals_conv_then_batchnorm() {
        tch::manual_seed(3);
        let opts = (Kind::Double, Device::Cpu);
        let w = Tensor::randn([4, 3, 3, 3], opts);
        let g = Tensor::rand([4], opts) + 0.5;
        let b = Tensor::randn([4], opts);
        let m = Tensor::randn([4], opts);
        let v = Tensor::rand([4], opts) + 0.1;
        let x = Tensor::randn([2, 3, 8, 8], opts);
        let y = x.conv2d(&w, None::<Tensor>, [1], [1], [1], 1);
        let y = y.batch_norm(
            Some(&g),
            Some(&b),
            Some(&m),
            Some(&v),
            false,
            0.0,
            1e-3,
            false,
        );
        let (wf, bf) = fold_bn(&w, &g, &b, &m, &v, 1e-3);
        let z = x.conv2d(&wf, Some(&bf), [1], [1], [1], 1);
        let err = (y - z).abs().max().double_value(&[]);
        assert!(err < 1e-12, "{err}");
    }
}
