//! EfficientNet-Lite0…4 with the state-dict names of the `efficientnet_lite_pytorch` package
//! (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_conv_head`, `_bn1`, `_fc`).
//!
//! Lite differs from EfficientNet: ReLU6, no squeeze-excitation, stem (32) and head (1280) not
//! width-scaled, first and last stages not depth-scaled. Every convolution uses TensorFlow "SAME"
//! padding computed from the actual input size, so any input size behaves as in TensorFlow.

use super::layers::{Act, ConvBn, Linear, Pad, Params};
use tch::Tensor;

const EPS: f64 = 1e-3;

/// (kernel, first stride, expand ratio, output channels, repeats) of the seven stages (Lite0).
const STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];

/// Stages whose last block ends at stride 4, 8, 16, 32.
const FEATURE_STAGES: [usize; 4] = [1, 2, 4, 6];

/// (width, depth) multipliers of Lite0…Lite4.
pub fn multipliers(variant: u8) -> (f64, f64) {
    match variant {
        0 => (1.0, 1.0),
        1 => (1.0, 1.1),
        2 => (1.1, 1.2),
        3 => (1.2, 1.4),
        _ => (1.4, 1.8),
    }
}

/// TF `round_filters`: scale, round to a multiple of 8, never more than 10 % down.
pub fn round_filters(c: i64, width: f64) -> i64 {
    let f = c as f64 * width;
    let mut n = (((f + 4.0) as i64) / 8 * 8).max(8);
    if (n as f64) < 0.9 * f {
        n += 8;
    }
    n
}

/// Blocks per stage for a depth multiplier (`ceil`, first and last stages fixed).
pub fn stage_repeats(depth: f64) -> [usize; 7] {
    let mut r = [0; 7];
    for (i, s) in STAGES.iter().enumerate() {
        r[i] = if i == 0 || i == 6 {
            s.4
        } else {
            (depth * s.4 as f64).ceil() as usize
        };
    }
    r
}

/// Index of the last block of each stride-4/8/16/32 stage (Lite0: 2, 4, 10, 15).
pub fn feature_blocks(variant: u8) -> [usize; 4] {
    let r = stage_repeats(multipliers(variant).1);
    FEATURE_STAGES.map(|s| r[..=s].iter().sum::<usize>() - 1)
}

pub fn feature_channels(variant: u8) -> [i64; 4] {
    let w = multipliers(variant).0;
    FEATURE_STAGES.map(|s| round_filters(STAGES[s].3, w))
}

struct MbConv {
    convs: Vec<ConvBn>,
    residual: bool,
}

pub struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    fc: Option<Linear>,
    taps: [usize; 4],
}

impl EfficientNetLite {
    pub fn build(p: &mut Params, variant: u8) -> EfficientNetLite {
        let (width, depth) = multipliers(variant);
        let stem = p.conv_bn(
            "_conv_stem",
            "_bn0",
            3,
            32,
            3,
            2,
            1,
            Pad::Same,
            EPS,
            Act::Relu6,
        );
        let repeats = stage_repeats(depth);
        // Channels actually flowing in: the first block sees the unscaled 32-channel stem, as in TF.
        let mut cin = 32;
        let mut blocks = Vec::new();
        for (si, &(k, s, e, c, _)) in STAGES.iter().enumerate() {
            let cout = round_filters(c, width);
            for i in 0..repeats[si] {
                let pre = format!("_blocks.{}", blocks.len());
                let stride = if i == 0 { s } else { 1 };
                let hidden = cin * e;
                let mut convs = Vec::new();
                if e != 1 {
                    convs.push(p.conv_bn(
                        &format!("{pre}._expand_conv"),
                        &format!("{pre}._bn0"),
                        cin,
                        hidden,
                        1,
                        1,
                        1,
                        Pad::Same,
                        EPS,
                        Act::Relu6,
                    ));
                }
                convs.push(p.conv_bn(
                    &format!("{pre}._depthwise_conv"),
                    &format!("{pre}._bn1"),
                    hidden,
                    hidden,
                    k,
                    stride,
                    hidden,
                    Pad::Same,
                    EPS,
                    Act::Relu6,
                ));
                convs.push(p.conv_bn(
                    &format!("{pre}._project_conv"),
                    &format!("{pre}._bn2"),
                    hidden,
                    cout,
                    1,
                    1,
                    1,
                    Pad::Same,
                    EPS,
                    Act::None,
                ));
                blocks.push(MbConv {
                    convs,
                    residual: stride == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        let head = p.conv_bn(
            "_conv_head",
            "_bn1",
            cin,
            1280,
            1,
            1,
            1,
            Pad::Same,
            EPS,
            Act::Relu6,
        );
        let fc = p.linear("_fc", 1280, 1000);
        EfficientNetLite {
            stem,
            blocks,
            head,
            fc,
            taps: feature_blocks(variant),
        }
    }

    /// Named endpoints `blocks.0` (stride 2) and the four feature blocks; `head` and the logits when
    /// asked for.
    pub fn forward(&self, x: &Tensor, logits: bool) -> (Vec<(String, Tensor)>, Option<Tensor>) {
        let mut x = self.stem.forward(x);
        let mut taps = Vec::new();
        let last = if logits {
            self.blocks.len() - 1
        } else {
            self.taps[3]
        };
        for (i, b) in self.blocks.iter().enumerate().take(last + 1) {
            let mut y = x.shallow_clone();
            for c in &b.convs {
                y = c.forward(&y);
            }
            x = if b.residual { y + &x } else { y };
            if i == 0 || self.taps.contains(&i) {
                taps.push((format!("blocks.{i}"), x.shallow_clone()));
            }
        }
        if !logits {
            return (taps, None);
        }
        let h = self.head.forward(&x);
        taps.push(("head".to_string(), h.shallow_clone()));
        let out = self
            .fc
            .as_ref()
            .map(|fc| fc.forward(&h.mean_dim([2i64, 3].as_slice(), false, h.kind())));
        (taps, out)
    }

    pub fn has_classifier(&self) -> bool {
        self.fc.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_endpoints_and_widths() {
        assert_eq!(feature_blocks(0), [2, 4, 10, 15]);
        assert_eq!(feature_blocks(2), [3, 6, 14, 20]);
        assert_eq!(feature_channels(0), [24, 40, 112, 320]);
        assert_eq!(feature_channels(2), [24, 48, 120, 352]);
        // Lite2 stage widths from the weights README.
        let w: Vec<i64> = STAGES.iter().map(|s| round_filters(s.3, 1.1)).collect();
        assert_eq!(w, vec![16, 24, 48, 88, 120, 208, 352]);
        assert_eq!(stage_repeats(1.2).iter().sum::<usize>(), 21);
        // Lite1/3/4 (no weights here): derived from the TF multipliers, pinned in docs/backbones.md.
        assert_eq!(
            (feature_blocks(1), feature_channels(1)),
            ([3, 6, 14, 20], [24, 40, 112, 320])
        );
        assert_eq!(
            (feature_blocks(3), feature_channels(3)),
            ([3, 6, 16, 23], [32, 48, 136, 384])
        );
        assert_eq!(
            (feature_blocks(4), feature_channels(4)),
            ([4, 8, 20, 29], [32, 56, 160, 448])
        );
    }
}
