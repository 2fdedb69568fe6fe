//! MobileNetV2 (width 1.0) with torchvision state-dict names: `features.N…`, `classifier.1`.

use super::layers::{Act, ConvBn, Linear, Pad, Params};
use tch::Tensor;

const EPS: f64 = 1e-5;

/// (expand t, out channels c, repeats n, first stride s) of `features.1`…`features.17`.
const SETTINGS: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Indices of `features` whose outputs are the stride 4/8/16/32 feature maps.
pub const FEATURE_TAPS: [usize; 4] = [3, 6, 13, 18];
pub const FEATURE_CHANNELS: [i64; 4] = [24, 32, 96, 1280];

struct InvertedResidual {
    convs: Vec<ConvBn>,
    residual: bool,
}

pub struct MobileNetV2 {
    /// `features.0` … `features.18`, each a sequence of conv+BN(+ReLU6).
    features: Vec<InvertedResidual>,
    classifier: Option<Linear>,
}

impl MobileNetV2 {
    pub fn build(p: &mut Params) -> MobileNetV2 {
        let mut features = Vec::new();
        let stem = p.conv_bn(
            "features.0.0",
            "features.0.1",
            3,
            32,
            3,
            2,
            1,
            Pad::Sym(1),
            EPS,
            Act::Relu6,
        );
        features.push(InvertedResidual {
            convs: vec![stem],
            residual: false,
        });
        let mut cin = 32;
        for &(t, c, n, s) in &SETTINGS {
            for i in 0..n {
                let idx = features.len();
                let stride = if i == 0 { s } else { 1 };
                let pre = format!("features.{idx}.conv");
                let hidden = cin * t;
                let mut convs = Vec::new();
                // Sub-module index of the next layer inside `conv`.
                let mut j = 0;
                if t != 1 {
                    convs.push(p.conv_bn(
                        &format!("{pre}.0.0"),
                        &format!("{pre}.0.1"),
                        cin,
                        hidden,
                        1,
                        1,
                        1,
                        Pad::Sym(0),
                        EPS,
                        Act::Relu6,
                    ));
                    j = 1;
                }
                convs.push(p.conv_bn(
                    &format!("{pre}.{j}.0"),
                    &format!("{pre}.{j}.1"),
                    hidden,
                    hidden,
                    3,
                    stride,
                    hidden,
                    Pad::Sym(1),
                    EPS,
                    Act::Relu6,
                ));
                convs.push(p.conv_bn(
                    &format!("{pre}.{}", j + 1),
                    &format!("{pre}.{}", j + 2),
                    hidden,
                    c,
                    1,
                    1,
                    1,
                    Pad::Sym(0),
                    EPS,
                    Act::None,
                ));
                features.push(InvertedResidual {
                    convs,
                    residual: stride == 1 && cin == c,
                });
                cin = c;
            }
        }
        let last = p.conv_bn(
            "features.18.0",
            "features.18.1",
            cin,
            1280,
            1,
            1,
            1,
            Pad::Sym(0),
            EPS,
            Act::Relu6,
        );
        features.push(InvertedResidual {
            convs: vec![last],
            residual: false,
        });
        let classifier = p.linear("classifier.1", 1280, 1000);
        MobileNetV2 {
            features,
            classifier,
        }
    }

    /// Named endpoints `features.1`, `.3`, `.6`, `.13`, `.17`, `.18`, and the logits when asked for.
    pub fn forward(&self, x: &Tensor, logits: bool) -> (Vec<(String, Tensor)>, Option<Tensor>) {
        let mut x = x.shallow_clone();
        let mut taps = Vec::new();
        for (i, f) in self.features.iter().enumerate() {
            let mut y = x.shallow_clone();
            for c in &f.convs {
                y = c.forward(&y);
            }
            x = if f.residual { y + &x } else { y };
            if [1, 3, 6, 13, 17, 18].contains(&i) {
                taps.push((format!("features.{i}"), x.shallow_clone()));
            }
        }
        let out = match (&self.classifier, logits) {
            (Some(fc), true) => {
                Some(fc.forward(&x.mean_dim([2i64, 3].as_slice(), false, x.kind())))
            }
            _ => None,
        };
        (taps, out)
    }

    pub fn has_classifier(&self) -> bool {
        self.classifier.is_some()
    }
}
