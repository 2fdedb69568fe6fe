//! Frozen ImageNet backbones with PyTorch state-dict names, so public checkpoints load unchanged:
//! WideResNet-50-2, ResNet-18/50 (torchvision/timm), EfficientNet-Lite0–4 (`efficientnet_lite_pytorch`),
//! MobileNetV2 (torchvision).
//!
//! Loading is strict (every missing, unexpected or wrongly shaped tensor is reported in one error)
//! and folds each BatchNorm into its convolution (in f64, then f32). The classifier head is
//! optional: features-only weights load, and [`Backbone::logits`] then panics; check
//! [`Backbone::has_classifier`] first (the CLI does).

pub mod efficientnet_lite;
pub mod imagenet;
pub mod layers;
pub mod mobilenet_v2;
pub mod resnet;

use crate::error::UserError;
use crate::precision::Precision;
use crate::weights::strict::{self, Expected};
use anyhow::Result;
use layers::{Params, Source};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackboneKind {
    WideResNet50_2,
    ResNet18,
    ResNet50,
    /// Lite0 … Lite4.
    EfficientNetLite(u8),
    MobileNetV2,
}

const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl BackboneKind {
    /// Every supported backbone, in documentation order.
    pub const ALL: [BackboneKind; 9] = [
        BackboneKind::WideResNet50_2,
        BackboneKind::ResNet18,
        BackboneKind::ResNet50,
        BackboneKind::EfficientNetLite(0),
        BackboneKind::EfficientNetLite(1),
        BackboneKind::EfficientNetLite(2),
        BackboneKind::EfficientNetLite(3),
        BackboneKind::EfficientNetLite(4),
        BackboneKind::MobileNetV2,
    ];

    /// `wide_resnet50_2`, `resnet18`, `resnet50`, `efficientnet_lite0`…`4` (also `lite2`),
    /// `mobilenet_v2`; case, `-` and `_` are not significant.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let norm: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect();
        let kind = match norm.as_str() {
            "wideresnet502" | "wrn502" | "wrn50" => BackboneKind::WideResNet50_2,
            "resnet18" => BackboneKind::ResNet18,
            "resnet50" => BackboneKind::ResNet50,
            "mobilenetv2" => BackboneKind::MobileNetV2,
            _ => {
                let v = norm
                    .strip_prefix("efficientnet")
                    .unwrap_or(&norm)
                    .strip_prefix("lite");
                match v.and_then(|d| d.parse::<u8>().ok()) {
                    Some(d) if d <= 4 => BackboneKind::EfficientNetLite(d),
                    _ => {
                        let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                        return Err(UserError::BadInput(format!(
                            "unknown backbone '{s}': use one of {}",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        Ok(kind)
    }

    pub fn name(&self) -> &'static str {
        match self {
            BackboneKind::WideResNet50_2 => "wide_resnet50_2",
            BackboneKind::ResNet18 => "resnet18",
            BackboneKind::ResNet50 => "resnet50",
            BackboneKind::EfficientNetLite(0) => "efficientnet_lite0",
            BackboneKind::EfficientNetLite(1) => "efficientnet_lite1",
            BackboneKind::EfficientNetLite(2) => "efficientnet_lite2",
            BackboneKind::EfficientNetLite(3) => "efficientnet_lite3",
            BackboneKind::EfficientNetLite(_) => "efficientnet_lite4",
            BackboneKind::MobileNetV2 => "mobilenet_v2",
        }
    }

    /// Channels of the stride 4, 8, 16, 32 feature maps.
    pub fn feature_channels(&self) -> [i64; 4] {
        match self {
            BackboneKind::WideResNet50_2 => resnet::WIDE_RESNET50_2.feature_channels(),
            BackboneKind::ResNet18 => resnet::RESNET18.feature_channels(),
            BackboneKind::ResNet50 => resnet::RESNET50.feature_channels(),
            BackboneKind::EfficientNetLite(v) => efficientnet_lite::feature_channels(*v),
            BackboneKind::MobileNetV2 => mobilenet_v2::FEATURE_CHANNELS,
        }
    }

    /// (mean, std) applied to `x / 255`: ImageNet statistics, or 0.5/0.5 for EfficientNet-Lite
    /// (trained on [-1, 1] input in TensorFlow).
    pub fn normalization(&self) -> ([f64; 3], [f64; 3]) {
        match self {
            BackboneKind::EfficientNetLite(_) => ([0.5; 3], [0.5; 3]),
            _ => (IMAGENET_MEAN, IMAGENET_STD),
        }
    }

    /// The ImageNet evaluation crop: 224, Lite1 240, Lite2 260, Lite3 280, Lite4 300.
    pub fn native_resolution(&self) -> u32 {
        match self {
            BackboneKind::EfficientNetLite(1) => 240,
            BackboneKind::EfficientNetLite(2) => 260,
            BackboneKind::EfficientNetLite(3) => 280,
            BackboneKind::EfficientNetLite(4) => 300,
            _ => 224,
        }
    }

    /// Every tensor the architecture has, with its PyTorch name and shape (classifier optional).
    pub fn expected_tensors(&self) -> Vec<Expected> {
        let mut p = Params::new(Source::Spec, Device::Cpu, false);
        let _ = Net::build(*self, &mut p);
        p.expected
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

enum Net {
    ResNet(resnet::ResNet),
    Lite(efficientnet_lite::EfficientNetLite),
    MobileNetV2(mobilenet_v2::MobileNetV2),
}

impl Net {
    fn build(kind: BackboneKind, p: &mut Params) -> Net {
        match kind {
            BackboneKind::WideResNet50_2 => {
                Net::ResNet(resnet::ResNet::build(p, &resnet::WIDE_RESNET50_2))
            }
            BackboneKind::ResNet18 => Net::ResNet(resnet::ResNet::build(p, &resnet::RESNET18)),
            BackboneKind::ResNet50 => Net::ResNet(resnet::ResNet::build(p, &resnet::RESNET50)),
            BackboneKind::EfficientNetLite(v) => {
                Net::Lite(efficientnet_lite::EfficientNetLite::build(p, v))
            }
            BackboneKind::MobileNetV2 => Net::MobileNetV2(mobilenet_v2::MobileNetV2::build(p)),
        }
    }

    fn forward(&self, x: &Tensor, logits: bool) -> (Vec<(String, Tensor)>, Option<Tensor>) {
        match self {
            Net::ResNet(n) => n.forward(x, logits),
            Net::Lite(n) => n.forward(x, logits),
            Net::MobileNetV2(n) => n.forward(x, logits),
        }
    }

    fn has_classifier(&self) -> bool {
        match self {
            Net::ResNet(n) => n.has_classifier(),
            Net::Lite(n) => n.has_classifier(),
            Net::MobileNetV2(n) => n.has_classifier(),
        }
    }
}

/// Names of the endpoints [`Backbone::features`] returns, strides 4, 8, 16, 32.
pub fn feature_endpoints(kind: BackboneKind) -> [String; 4] {
    match kind {
        BackboneKind::EfficientNetLite(v) => {
            efficientnet_lite::feature_blocks(v).map(|b| format!("blocks.{b}"))
        }
        BackboneKind::MobileNetV2 => mobilenet_v2::FEATURE_TAPS.map(|i| format!("features.{i}")),
        _ => [1, 2, 3, 4].map(|i| format!("layer{i}")),
    }
}

/// A frozen backbone in eval mode, BatchNorm folded.
pub struct Backbone {
    kind: BackboneKind,
    net: Net,
    precision: Precision,
    sha256: Option<String>,
    feature_names: [String; 4],
}

// SAFETY: a Backbone's tensors are created in `load`/`random` and never mutated afterwards; forward
// passes only read them, and libtorch supports concurrent read-only use of a tensor from several
// threads. (tch marks Tensor Send but not Sync because a Tensor *can* be mutated in place.)
unsafe impl Sync for Backbone {}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("kind", &self.kind)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Backbone {
    /// Loads a safetensors file strictly (see [`check_weights`]) and folds BatchNorm.
    pub fn load(kind: BackboneKind, weights: &Path, device: Device) -> Result<Backbone> {
        Self::load_with(kind, weights, device, true)
    }

    /// [`Backbone::load`] with BatchNorm folding switchable (off: conv then BatchNorm, to verify
    /// the folding).
    pub fn load_with(
        kind: BackboneKind,
        weights: &Path,
        device: Device,
        fold: bool,
    ) -> Result<Backbone> {
        Self::load_as(kind, weights, device, fold, Precision::F32)
    }

    /// [`Backbone::load_with`] with the weights in `precision` (features then come in it too).
    pub fn load_as(
        kind: BackboneKind,
        weights: &Path,
        device: Device,
        fold: bool,
        precision: Precision,
    ) -> Result<Backbone> {
        let file = crate::weights::read_safetensors(weights)?;
        let map: HashMap<String, Tensor> = file.tensors.into_iter().collect();
        check_weights(kind, weights, &map)?;
        let net = tch::no_grad(|| {
            let mut p = Params::new(Source::File(&map), device, fold).with_precision(precision);
            Net::build(kind, &mut p)
        });
        Ok(Backbone {
            kind,
            net,
            precision,
            sha256: Some(file.sha256),
            feature_names: feature_endpoints(kind),
        })
    }

    /// Random PyTorch-style initialisation (kaiming-normal convs, identity BatchNorm), seeded through
    /// tch's global generator.
    pub fn random(kind: BackboneKind, device: Device, seed: i64) -> Backbone {
        Self::random_as(kind, device, seed, Precision::F32)
    }

    /// [`Backbone::random`] in `precision` (the same values as f32, rounded).
    pub fn random_as(
        kind: BackboneKind,
        device: Device,
        seed: i64,
        precision: Precision,
    ) -> Backbone {
        tch::manual_seed(seed);
        let net = tch::no_grad(|| {
            let mut p = Params::new(Source::Random, device, true).with_precision(precision);
            Net::build(kind, &mut p)
        });
        Backbone {
            kind,
            net,
            precision,
            sha256: None,
            feature_names: feature_endpoints(kind),
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The four feature maps (strides 4, 8, 16, 32) of a normalised N×3×H×W batch, without
    /// gradients, in the backbone's precision.
    pub fn features(&self, x: &Tensor) -> Vec<Tensor> {
        let (taps, _) = tch::no_grad(|| self.net.forward(&self.precision.cast(x), false));
        let mut taps: HashMap<String, Tensor> = taps.into_iter().collect();
        self.feature_names
            .iter()
            .filter_map(|n| taps.remove(n))
            .collect()
    }

    /// Every named endpoint (stride 2 to 32, `head` for Lite) and the logits if there is a classifier.
    pub fn endpoints(&self, x: &Tensor) -> (Vec<(String, Tensor)>, Option<Tensor>) {
        tch::no_grad(|| self.net.forward(&self.precision.cast(x), true))
    }

    /// ImageNet logits, N×1000. Panics when the weights had no classifier: check
    /// [`Backbone::has_classifier`].
    pub fn logits(&self, x: &Tensor) -> Tensor {
        match self.endpoints(x).1 {
            Some(l) => l,
            None => panic!(
                "{} weights without a classifier head: logits are unavailable",
                self.kind
            ),
        }
    }

    pub fn has_classifier(&self) -> bool {
        self.net.has_classifier()
    }

    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// sha256 (lowercase hex) of the weights file, `None` for random weights.
    pub fn weights_sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }
}

/// The strict check: every missing, unexpected and wrongly shaped tensor in one `BadModel` error
/// naming the file, plus a guess of the architecture the file does fit. `num_batches_tracked` is
/// ignored; the classifier may be absent (all of it or nothing).
pub fn check_weights(
    kind: BackboneKind,
    file: &Path,
    map: &HashMap<String, Tensor>,
) -> Result<(), UserError> {
    let found: HashMap<String, Vec<i64>> = map.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let m = strict::compare(&kind.expected_tensors(), &found);
    if m.is_empty() {
        for (name, t) in map {
            if !strict::is_ignored(name) && !t.is_floating_point() {
                return Err(UserError::BadModel(format!(
                    "{}: tensor {name} is {:?}, not floating point",
                    file.display(),
                    t.kind()
                )));
            }
        }
        return Ok(());
    }
    let mut msg = format!(
        "{}: not valid {} weights: {}",
        file.display(),
        kind.name(),
        m.describe(8)
    );
    if let Some(hint) = guess_architecture(&found, kind) {
        msg += &format!("\n{hint}");
    }
    Err(UserError::BadModel(msg))
}

/// "this looks like X weights" when the file fits another architecture.
fn guess_architecture(found: &HashMap<String, Vec<i64>>, not: BackboneKind) -> Option<String> {
    let mut best: Option<(f64, bool, BackboneKind)> = None;
    for k in BackboneKind::ALL.into_iter().filter(|k| *k != not) {
        let (score, exact) = strict::fit(&k.expected_tensors(), found);
        if best.is_none_or(|(s, e, _)| (exact, score) > (e, s)) {
            best = Some((score, exact, k));
        }
    }
    match best {
        Some((_, true, k)) => Some(format!("this looks like {k} weights: use --backbone {k}")),
        Some((s, false, k)) if s >= 0.5 => Some(format!(
            "closest architecture: {k} ({:.0} % of the file's tensors fit it)",
            s * 100.0
        )),
        _ => Some(
            "no supported backbone matches these tensor names; is this a backbone checkpoint?"
                .into(),
        ),
    }
}
