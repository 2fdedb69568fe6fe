//! Inference with a trained run folder: anomaly maps (softmax probability of the anomalous class at
//! the network size), image scores (max of the mean-pooled map), normalised scores and labels. The
//! one path used by `test`, `predict` and `serve`, so they agree on every image.
use crate::batch;
use crate::bundle::{self, Meta};
use crate::calibration;
use crate::config::Config;
use crate::error::UserError;
use crate::model::backbone::{Backbone, BackboneKind};
use crate::model::memory::{self, PatchMemory};
use crate::model::realnet::{self, RealNet};
use crate::precision::Precision;
use image::RgbImage;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

pub struct Detector {
    pub meta: Meta,
    pub config: Config,
    backbone: Backbone,
    net: RealNet,
    _vs: nn::VarStore,
    device: Device,
}

/// One image's result.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Row-major S×S anomaly map, values in [0, 1].
    pub map: Vec<f32>,
    pub size: u32,
    pub score: f64,
    pub normalised: f64,
    pub anomalous: bool,
}

impl Detector {
    /// Loads `run/` (config, weights, meta) and the backbone weights: `weights` if given, else the
    /// file recorded at training, else the default location. The backbone file must be the one the
    /// model was trained on (same sha256).
    pub fn load(run: &Path, weights: Option<&Path>, device: Device) -> anyhow::Result<Detector> {
        Self::load_as(run, weights, device, Precision::F32)
    }

    /// [`Detector::load`] with the networks in `precision` (see [`Precision`]).
    pub fn load_as(
        run: &Path,
        weights: Option<&Path>,
        device: Device,
        precision: Precision,
    ) -> anyhow::Result<Detector> {
        crate::precision::warn_if_slow(precision, device);
        let meta = bundle::read_meta(run)?;
        let config = Config::load(&run.join(bundle::CONFIG))?;
        let kind =
            BackboneKind::parse(&meta.backbone).map_err(|e| UserError::BadModel(e.to_string()))?;
        let wpath = resolve_weights(weights, &meta, kind)?;
        let backbone = Backbone::load_as(kind, &wpath, device, true, precision)?;
        if let (Some(want), Some(got)) = (&meta.backbone_sha256, backbone.weights_sha256()) {
            if want != got {
                return Err(UserError::BadModel(format!(
                    "{}: sha256 {got} differs from the backbone weights this model was trained on ({want}); \
                     pass the same {} weights file with --weights",
                    wpath.display(),
                    meta.backbone
                ))
                .into());
            }
        }
        let mut vs = nn::VarStore::new(device);
        let mut net = RealNet::new(&vs.root(), &config);
        let mpath = run.join(bundle::MODEL);
        let named = bundle::read_tensors(&mpath)?;
        bundle::load_vars(&vs, &named, &mpath)?;
        if config.model.memory.enabled {
            let dim = memory::patch_dim(kind.feature_channels());
            let m = PatchMemory::from_named(&named, &config.model.memory, dim, device)
                .map_err(|e| UserError::BadModel(format!("{}: {e}", mpath.display())))?;
            net.set_memory(m);
        }
        realnet::cast_networks(&vs, precision);
        vs.freeze();
        Ok(Detector {
            meta,
            config,
            backbone,
            net,
            _vs: vs,
            device,
        })
    }

    /// Chooses the fusion weight (every candidate of `memory::weight_grid`, the balance kept) and
    /// the thresholds anew from labelled images (`calibration::fit`); `meta` records them. With
    /// `blurs`, the memory map's blur σ too, and the balance is measured again on the good items
    /// (it belongs to a σ).
    pub fn calibrate(
        &mut self,
        items: &[calibration::Item],
        source: calibration::Source,
        blurs: &[f64],
    ) {
        let Detector {
            meta,
            config,
            backbone,
            net,
            device,
            ..
        } = self;
        let (mean, std, dev) = (meta.mean, meta.std, *device);
        let input = |imgs: &[&RgbImage]| batch::images_to_tensor(imgs, mean, std, dev);
        let features = |x: &Tensor| backbone.features(x);
        let keep = net.memory().map(|m| *m.balance());
        let plan = calibration::Plan {
            weights: &memory::weight_grid(),
            memory: &config.model.memory,
            score_pool: config.model.score_pool,
            pools: &config.model.score_pool_choices,
            blurs,
            keep_balance: keep,
            source,
        };
        let fitted = calibration::fit(net, &input, &features, items, &plan);
        meta.threshold = fitted.threshold;
        meta.score_pool = fitted.score_pool;
        meta.score_pool_candidates = fitted.pool_candidates;
        if fitted.choice.is_some() {
            meta.memory_weight = fitted.choice;
        }
    }

    /// The patch memory's tensors as they are now (after `calibrate`), for the model file.
    pub fn memory_named(&self) -> Vec<(String, Tensor)> {
        self.net
            .memory()
            .map(PatchMemory::named)
            .unwrap_or_default()
    }

    /// The patch memory, when the model has one.
    pub fn memory(&self) -> Option<&PatchMemory> {
        self.net.memory()
    }

    /// The networks' precision (`--precision`).
    pub fn precision(&self) -> Precision {
        self.backbone.precision()
    }

    pub fn image_size(&self) -> u32 {
        self.meta.image_size as u32
    }

    /// Maps and scores for images already at the network size.
    pub fn predict(&self, imgs: &[&RgbImage]) -> Vec<Prediction> {
        if imgs.is_empty() {
            return Vec::new();
        }
        tch::no_grad(|| {
            let x = batch::images_to_tensor(imgs, self.meta.mean, self.meta.std, self.device);
            let backbone = |x: &Tensor| self.backbone.features(x);
            let (maps, scores) = self
                .net
                .maps_and_scores(&x, &backbone, self.meta.score_pool);
            let scores: Vec<f32> =
                Vec::try_from(scores.to_device(Device::Cpu).to_kind(Kind::Float))
                    .unwrap_or_default();
            batch::maps_to_host(&maps)
                .into_iter()
                .zip(scores)
                .map(|(map, s)| {
                    let score = f64::from(s);
                    Prediction {
                        map,
                        size: self.image_size(),
                        score,
                        normalised: self.meta.threshold.normalise(score),
                        anomalous: score >= self.meta.threshold.image,
                    }
                })
                .collect()
        })
    }
}

/// Where the backbone weights come from: the explicit file, the one recorded at training, or the
/// default `$REALNET_CACHE/weights/<backbone>.safetensors`.
pub fn resolve_weights(
    explicit: Option<&Path>,
    meta: &Meta,
    kind: BackboneKind,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = meta.backbone_weights.as_ref().filter(|p| p.exists()) {
        return Ok(p.clone());
    }
    default_weights(kind)
}

/// `$REALNET_CACHE/weights/<name>.safetensors` (default cache `~/.cache/realnet`).
pub fn default_weights(kind: BackboneKind) -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("weights");
    let p = dir.join(format!("{}.safetensors", kind.name()));
    if p.exists() {
        return Ok(p);
    }
    Err(UserError::BadModel(format!(
        "no weights for backbone {}: pass --weights FILE.safetensors (convert a .pth with `realnet weights convert`), \
         or put it at {}",
        kind.name(),
        p.display()
    ))
    .into())
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("REALNET_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("realnet")
}
