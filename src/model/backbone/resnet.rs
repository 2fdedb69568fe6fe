//! ResNet-18/50 and WideResNet-50-2 with torchvision/timm state-dict names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer1.0.downsample.0`, …, `fc`). Stride on the 3×3 conv (v1.5), as both
//! torchvision and timm do.

use super::layers::{Act, ConvBn, Linear, Pad, Params};
use tch::Tensor;

const EPS: f64 = 1e-5;

/// Residual block: Basic (two 3×3) or Bottleneck (1×1, 3×3, 1×1).
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.shallow_clone();
        for c in &self.convs {
            y = c.forward(&y);
        }
        let id = match &self.downsample {
            Some(d) => d.forward(x),
            None => x.shallow_clone(),
        };
        (y + id).relu()
    }
}

pub struct ResNet {
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
    fc: Option<Linear>,
}

/// Blocks per stage, bottleneck or not, and the bottleneck width factor (2 for the wide variant).
pub struct Config {
    pub blocks: [usize; 4],
    pub bottleneck: bool,
    pub width_factor: i64,
}

pub const RESNET18: Config = Config {
    blocks: [2, 2, 2, 2],
    bottleneck: false,
    width_factor: 1,
};
pub const RESNET50: Config = Config {
    blocks: [3, 4, 6, 3],
    bottleneck: true,
    width_factor: 1,
};
pub const WIDE_RESNET50_2: Config = Config {
    blocks: [3, 4, 6, 3],
    bottleneck: true,
    width_factor: 2,
};

impl Config {
    pub fn feature_channels(&self) -> [i64; 4] {
        let e = if self.bottleneck { 4 } else { 1 };
        [64 * e, 128 * e, 256 * e, 512 * e]
    }
}

impl ResNet {
    pub fn build(p: &mut Params, cfg: &Config) -> ResNet {
        let stem = p.conv_bn("conv1", "bn1", 3, 64, 7, 2, 1, Pad::Sym(3), EPS, Act::Relu);
        let expansion = if cfg.bottleneck { 4 } else { 1 };
        let mut inplanes = 64;
        let mut layers = Vec::new();
        for (li, &n) in cfg.blocks.iter().enumerate() {
            let planes = 64 << li;
            let mut blocks = Vec::new();
            for bi in 0..n {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let pre = format!("layer{}.{bi}", li + 1);
                let out = planes * expansion;
                let c = |p: &mut Params, i: usize, cin, cout, k, s, act| {
                    p.conv_bn(
                        &format!("{pre}.conv{i}"),
                        &format!("{pre}.bn{i}"),
                        cin,
                        cout,
                        k,
                        s,
                        1,
                        Pad::Sym(k / 2),
                        EPS,
                        act,
                    )
                };
                let convs = if cfg.bottleneck {
                    let width = planes * cfg.width_factor;
                    vec![
                        c(p, 1, inplanes, width, 1, 1, Act::Relu),
                        c(p, 2, width, width, 3, stride, Act::Relu),
                        c(p, 3, width, out, 1, 1, Act::None),
                    ]
                } else {
                    vec![
                        c(p, 1, inplanes, planes, 3, stride, Act::Relu),
                        c(p, 2, planes, planes, 3, 1, Act::None),
                    ]
                };
                let downsample = (stride != 1 || inplanes != out).then(|| {
                    p.conv_bn(
                        &format!("{pre}.downsample.0"),
                        &format!("{pre}.downsample.1"),
                        inplanes,
                        out,
                        1,
                        stride,
                        1,
                        Pad::Sym(0),
                        EPS,
                        Act::None,
                    )
                });
                blocks.push(Block { convs, downsample });
                inplanes = out;
            }
            layers.push(blocks);
        }
        let fc = p.linear("fc", inplanes, 1000);
        ResNet { stem, layers, fc }
    }

    /// Named endpoints: `layer1`…`layer4` (strides 4–32), and the logits when asked for.
    pub fn forward(&self, x: &Tensor, logits: bool) -> (Vec<(String, Tensor)>, Option<Tensor>) {
        let mut x = self
            .stem
            .forward(x)
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut taps = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for b in layer {
                x = b.forward(&x);
            }
            taps.push((format!("layer{}", i + 1), x.shallow_clone()));
        }
        let out = match (&self.fc, logits) {
            (Some(fc), true) => {
                Some(fc.forward(&x.mean_dim([2i64, 3].as_slice(), false, x.kind())))
            }
            _ => None,
        };
        (taps, out)
    }

    pub fn has_classifier(&self) -> bool {
        self.fc.is_some()
    }
}
