//! Configuration: presets (`paper`, `lite`), TOML files and `--set key=value` overrides. The resolved
//! configuration is saved with every run, so a model folder says exactly how it was made.
use crate::error::UserError;
use crate::model::memory::MemoryConfig;
use crate::model::recon::ReconConfig;
use crate::model::rrs::RrsConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest network input side: far beyond the official 256, small enough that one image's tensors
/// fit in memory (a typo such as 2560000 is refused instead of aborting on allocation).
pub const MAX_IMAGE_SIZE: i64 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The preset this configuration started from.
    pub preset: String,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// The network (spec §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Backbone name, e.g. `wide_resnet50_2`, `efficientnet_lite2`, `mobilenet_v2`.
    pub backbone: String,
    /// Network input size (square); images are resized to it.
    pub image_size: i64,
    /// AFS: channels kept per block (strides 4, 8, 16, 32).
    pub afs_keep: Vec<i64>,
    /// Reconstruction UNet width per block (official: ½ · afs_keep).
    pub recon_base: Vec<i64>,
    pub channel_mult: Vec<i64>,
    pub num_res_blocks: usize,
    pub attention_mult: Vec<i64>,
    pub head_channels: i64,
    /// GroupNorm in the reconstruction UNets keeps at least this many channels per group (1 = the
    /// official 32-group rule, which at lite widths leaves one channel per group: an instance norm).
    /// Configs saved before this key load as 1.
    #[serde(default = "crate::model::layers::official_min_group_channels")]
    pub norm_min_group_channels: i64,
    pub rrs: RrsConfig,
    /// Image score = max of the anomaly map mean-pooled with this window (official 16).
    pub score_pool: i64,
    /// Windows validation may choose the image score's pool from instead (with `score_pool` the
    /// prior among ties); empty = always `score_pool`. Configs saved before the key load as empty.
    #[serde(default)]
    pub score_pool_choices: Vec<i64>,
    /// Patch memory fused into the map (beyond the paper; off in `paper`). Configs saved before
    /// the key load as off.
    #[serde(default)]
    pub memory: MemoryConfig,
}

/// Training (spec §4.6–4.7) and the honest-threshold validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: i64,
    /// Optimiser steps; 0 = derive from `epochs`.
    pub steps: usize,
    /// Epochs over the training images, used when `steps` = 0 (official: 1000).
    pub epochs: usize,
    pub lr: f64,
    /// `constant` (official) or `cosine`: decay from `lr` to 0 over the run after the warm-up.
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: String,
    /// Steps of linear warm-up from 0 to `lr` (official 0).
    #[serde(default)]
    pub warmup_steps: usize,
    pub seed: u64,
    /// Probability that a training sample stays normal (official 0.5).
    pub normal_prob: f64,
    /// Redraw empty Perlin × foreground masks (official: no).
    pub redraw_empty: bool,
    /// Share of the synthetic anomalies drawn as thin scratch/crack strokes instead of a Perlin
    /// region (beyond the paper; official 0).
    #[serde(default)]
    pub stroke_prob: f64,
    /// Share of the synthetic anomalies drawn as a large soft brightness/texture change of the
    /// image itself instead of a blended source (uneven surfaces; beyond the paper; official 0).
    #[serde(default)]
    pub shade_prob: f64,
    /// Range of |ln gain| of a shaded region's brightness (a product's uneven areas differ from
    /// their surroundings by this much; `docs/synthesis.md`).
    #[serde(default = "default_shade_gain")]
    pub shade_gain: (f64, f64),
    /// Share of shading among the *validation* anomalies; unset = `shade_prob`. Validation may
    /// want a product's uneven areas represented (so that the fusion weights and the image
    /// score's window are chosen with them in view) while training leaves them out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_shade_prob: Option<f64>,
    /// AFS: batches of synthetic anomalies scored before training (official `init_bsn` 64).
    pub afs_batches: usize,
    /// Fraction of the normal training images held out for the threshold and score normalisation.
    pub val_fraction: f64,
    /// Synthetic anomalies made from each held-out image for the validation set.
    pub val_anomalies_per_image: usize,
    /// Where the validation anomalies take their content from (`--source` syntax: `self`,
    /// `procedural`, `textures:DIR`, `sia:DIR`); empty: the training source. Validation on the
    /// very kind of anomaly the discriminator was trained on overrates RealNet's map against the
    /// memory's; another kind measures what real, unseen defects will see.
    #[serde(default)]
    pub val_source: String,
    /// Write a resumable checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Compute the clean images' features once and keep them (the official code recomputes them
    /// every step; same values).
    pub cache_clean_features: bool,
    /// Precision of the training steps: `f32` (official), or `bf16` mixed precision (f32 master
    /// weights and loss, bf16 forward and backward; pays on CPUs with AMX and on GPUs). AFS, the
    /// clean features, the memory and validation run in f32 either way.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Foreground rule (`all`, `otsu:gray:dark:close6:open6`, …); empty = the category's rule from
    /// spec §3.2 when its name is known, else the whole image.
    pub foreground: String,
}

fn default_shade_gain() -> (f64, f64) {
    realnet_synth::ShadeParams::default().gain
}

impl TrainConfig {
    /// `precision` parsed.
    pub fn precision(&self) -> Result<crate::precision::Precision, String> {
        train_precision(&self.precision)
    }

    /// The shading anomalies' settings (`shade_prob`, `shade_gain`; the rest as built in).
    pub fn shade_params(&self) -> realnet_synth::ShadeParams {
        realnet_synth::ShadeParams {
            prob: self.shade_prob,
            gain: self.shade_gain,
            ..Default::default()
        }
    }

    /// The validation anomalies' shading: `val_shade_prob` where set, else training's.
    pub fn val_shade_params(&self) -> realnet_synth::ShadeParams {
        realnet_synth::ShadeParams {
            prob: self.val_shade_prob.unwrap_or(self.shade_prob),
            ..self.shade_params()
        }
    }

    /// `val_source` parsed; `None` when empty (validation uses the training source).
    pub fn val_source_spec(&self) -> Result<Option<crate::sampling::SynthSource>, String> {
        if self.val_source.is_empty() {
            return Ok(None);
        }
        self.val_source
            .parse()
            .map(Some)
            .map_err(|e| format!("train.val_source = '{}': {e}", self.val_source))
    }
}

/// A `train.precision` value parsed (the detector's and the denoiser's key).
pub(crate) fn train_precision(value: &str) -> Result<crate::precision::Precision, String> {
    crate::precision::Precision::parse(value)
        .map_err(|_| format!("train.precision = '{value}': use f32 or bf16"))
}

/// f32 training; also what configs saved before `train.precision` existed load as.
pub(crate) fn default_precision() -> String {
    crate::precision::Precision::F32.name().into()
}

/// The official schedule; also what configs saved before `lr_schedule` existed load as.
pub(crate) fn default_lr_schedule() -> String {
    "constant".into()
}

impl Config {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Config, UserError> {
        match name {
            "paper" => Ok(Self::paper()),
            "lite" => Ok(Self::lite()),
            other => Err(UserError::BadModel(format!(
                "unknown preset '{other}': use paper or lite"
            ))),
        }
    }

    /// The official configuration (spec §4, §6.1) with WideResNet-50-2.
    pub fn paper() -> Config {
        Config {
            preset: "paper".into(),
            model: ModelConfig {
                backbone: "wide_resnet50_2".into(),
                image_size: 256,
                afs_keep: vec![256, 512, 512, 256],
                recon_base: vec![128, 256, 256, 128],
                channel_mult: vec![1, 2, 4],
                num_res_blocks: 2,
                attention_mult: vec![2, 4],
                head_channels: 64,
                norm_min_group_channels: 1,
                rrs: RrsConfig {
                    top_max: 256,
                    top_mean: 256,
                    residual_layers: 2,
                    hidden: 128,
                },
                score_pool: 16,
                score_pool_choices: Vec::new(),
                memory: MemoryConfig::default(),
            },
            train: TrainConfig {
                batch_size: 16,
                steps: 0,
                epochs: 1000,
                lr: 1e-4,
                lr_schedule: default_lr_schedule(),
                warmup_steps: 0,
                seed: 100,
                normal_prob: 0.5,
                redraw_empty: false,
                stroke_prob: 0.0,
                shade_prob: 0.0,
                val_shade_prob: None,
                shade_gain: default_shade_gain(),
                afs_batches: 64,
                val_fraction: 0.1,
                val_anomalies_per_image: 4,
                val_source: String::new(),
                checkpoint_every: 500,
                cache_clean_features: true,
                precision: default_precision(),
                foreground: String::new(),
            },
        }
    }

    /// For a 2-core CPU: EfficientNet-Lite2, narrower networks, a step budget (docs/results.md).
    pub fn lite() -> Config {
        let mut c = Self::paper();
        c.preset = "lite".into();
        c.model.backbone = "efficientnet_lite2".into();
        // Few stride-32 channels: coarse residuals smear every anomaly over the object, and the more of
        // them RRS can rank, the blurrier the map (bottle: 128 → 64 → 32 kept lifted AUPRO 0.911 →
        // 0.936 → 0.950, docs/results.md).
        c.model.afs_keep = vec![24, 48, 96, 32];
        c.model.recon_base = vec![16, 24, 32, 32];
        // Attention over 32×32 tokens (factor 2 on the stride-4 block) dominates CPU time; keep the
        // coarser one and the middle.
        c.model.attention_mult = vec![4];
        // RRS and optimiser as measured best on bottle within the 30-minute CPU budget
        // (docs/results.md): 64 + 64 residual channels, 5× the official rate with a cosine decay.
        c.model.rrs = RrsConfig {
            top_max: 64,
            top_mean: 64,
            residual_layers: 2,
            hidden: 64,
        };
        // RealNet's map fused with a patch memory's (beyond the paper): bottle seed 100 pixel AUROC /
        // AUPRO 0.9835 / 0.950 → 0.9857 / 0.957 (docs/results.md). The weights (RealNet's share of
        // the standardised logs; the map's, and the image score's own) are chosen on the validation
        // data: 0.5–0.8 / 0–0.5 on bottle, 0.5 / 0.2–0.3 on Magnetic Tile, whose RealNet maps are the
        // weaker part.
        c.model.memory.enabled = true;
        c.model.memory.auto_weight = true;
        // Validation anomalies cut from the category's own images, a kind the discriminator is not
        // trained on: with the training textures validation overrated RealNet's map (tiles seeds
        // 100 / 101 image AUROC 0.944 / 0.945 → 0.962 / 0.964, pixel 0.787 / 0.778 → 0.800 / 0.799
        // together with the image score's own weight; bottle level — docs/results.md).
        c.train.val_source = "self".into();
        c.train.batch_size = 8;
        c.train.steps = 900;
        c.train.lr = 5e-4;
        c.train.lr_schedule = "cosine".into();
        c.train.warmup_steps = 50;
        // 1024 synthetic samples for AFS, the official count (64 × 16): with 16 batches of 8 the kept
        // stride-32 channels changed with the seed (6–13 of 32 shared) and so did the maps (bottle pixel
        // AUROC 0.974–0.984 over four seeds); with 128 batches 23 of 32 are shared and the same seeds
        // give 0.982–0.9845 (docs/results.md). Costs ≈ 50 s.
        c.train.afs_batches = 128;
        c.train.checkpoint_every = 250;
        c
    }

    /// Preset, then the TOML file, then each `key=value` (dotted keys, TOML values; a bare word is a
    /// string). Unknown keys and wrong types are errors.
    pub fn resolve(
        preset: &str,
        file: Option<&Path>,
        sets: &[String],
    ) -> Result<Config, UserError> {
        resolve_layered(&Self::preset(preset)?, file, sets)
    }

    /// Reads a saved, resolved configuration (a run folder's `config.toml`).
    pub fn load(path: &Path) -> Result<Config, UserError> {
        load_validated(path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Range and consistency checks, each naming the key.
    pub fn validate(&self) -> Result<(), UserError> {
        let bad = |m: String| Err(UserError::BadModel(format!("configuration: {m}")));
        let m = &self.model;
        if m.afs_keep.len() != 4 || m.recon_base.len() != 4 {
            return bad(
                "model.afs_keep and model.recon_base need 4 entries (strides 4, 8, 16, 32)".into(),
            );
        }
        if m.afs_keep.iter().chain(&m.recon_base).any(|&c| c < 1) {
            return bad("model.afs_keep and model.recon_base must be ≥ 1".into());
        }
        if !(32..=MAX_IMAGE_SIZE).contains(&m.image_size) || m.image_size % 32 != 0 {
            return bad(format!(
                "model.image_size = {} must be a multiple of 32 in 32..={MAX_IMAGE_SIZE}",
                m.image_size
            ));
        }
        if m.channel_mult.is_empty() || m.channel_mult.iter().any(|&x| x < 1) {
            return bad("model.channel_mult needs positive entries".into());
        }
        let levels = m.channel_mult.len() as u32 - 1;
        if m.image_size / 32 < (1 << levels) {
            return bad(format!(
                "model.channel_mult has {} levels: the stride-32 map ({}×{}) is too small to halve {levels} times",
                m.channel_mult.len(),
                m.image_size / 32,
                m.image_size / 32
            ));
        }
        if m.score_pool < 1 || m.score_pool > m.image_size {
            return bad(format!(
                "model.score_pool = {} must be in 1..={}",
                m.score_pool, m.image_size
            ));
        }
        if let Some(k) = m
            .score_pool_choices
            .iter()
            .find(|&&k| k < 1 || k > m.image_size)
        {
            return bad(format!(
                "model.score_pool_choices holds {k}: every window must be in 1..={}",
                m.image_size
            ));
        }
        // Every block's attention (those at model.attention_mult, and the middle one) must split
        // its channels evenly into heads.
        for &base in &m.recon_base {
            for (level, &mult) in m.channel_mult.iter().enumerate() {
                let last = level + 1 == m.channel_mult.len();
                if last || m.attention_mult.contains(&(1 << level)) {
                    if let Err(e) =
                        crate::model::attention::check_heads(mult * base, m.head_channels)
                    {
                        return bad(format!("model.head_channels = {}: {e}", m.head_channels));
                    }
                }
            }
        }
        let kept: i64 = m.afs_keep.iter().sum();
        let r = &m.rrs;
        if !(0..=kept).contains(&r.top_max)
            || !(0..=kept).contains(&r.top_mean)
            || r.top_max + r.top_mean < 1
        {
            return bad(format!(
                "model.rrs.top_max = {} and model.rrs.top_mean = {} must each be in 0..={kept} (the \
                 channels model.afs_keep keeps), not both 0",
                r.top_max, r.top_mean
            ));
        }
        if m.norm_min_group_channels < 1 {
            return bad("model.norm_min_group_channels must be ≥ 1".into());
        }
        if r.hidden < 1 {
            return bad("model.rrs.hidden must be ≥ 1".into());
        }
        m.memory.validate().or_else(bad)?;
        let t = &self.train;
        if t.batch_size < 2 {
            return bad("train.batch_size must be ≥ 2 (BatchNorm)".into());
        }
        if t.steps == 0 && t.epochs == 0 {
            return bad("train.steps or train.epochs must be > 0".into());
        }
        let (n, sp, sh, v) = (t.normal_prob, t.stroke_prob, t.shade_prob, t.val_fraction);
        range_check("train.normal_prob", n, (0.0..1.0).contains(&n), "[0, 1)").or_else(bad)?;
        range_check("train.stroke_prob", sp, (0.0..=1.0).contains(&sp), "[0, 1]").or_else(bad)?;
        range_check("train.shade_prob", sh, (0.0..=1.0).contains(&sh), "[0, 1]").or_else(bad)?;
        if let Some(p) = t.val_shade_prob {
            range_check(
                "train.val_shade_prob",
                p,
                (0.0..=1.0).contains(&p),
                "[0, 1]",
            )
            .or_else(bad)?;
        }
        t.shade_params()
            .validate()
            .map_err(|e| format!("train.shade_gain = {:?}: {e}", t.shade_gain))
            .or_else(bad)?;
        range_check("train.val_fraction", v, (0.0..0.9).contains(&v), "[0, 0.9)").or_else(bad)?;
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad(format!("train.lr = {} must be positive", t.lr));
        }
        crate::optim::LrCurve::check(&t.lr_schedule).or_else(bad)?;
        t.val_source_spec().map(drop).or_else(bad)?;
        t.precision().map(drop).or_else(bad)?;
        if t.afs_batches == 0 {
            return bad("train.afs_batches must be ≥ 1 (AFS ranks channels on them)".into());
        }
        if t.checkpoint_every == 0 {
            return bad("train.checkpoint_every must be ≥ 1".into());
        }
        Ok(())
    }

    /// The four reconstruction UNets' shapes.
    pub fn recon_configs(&self) -> Vec<ReconConfig> {
        let m = &self.model;
        m.afs_keep
            .iter()
            .zip(&m.recon_base)
            .map(|(&c, &base)| ReconConfig {
                channels: c,
                base_channels: base,
                channel_mult: m.channel_mult.clone(),
                num_res_blocks: m.num_res_blocks,
                attention_mult: m.attention_mult.clone(),
                head_channels: m.head_channels,
                norm_min_group_channels: m.norm_min_group_channels,
            })
            .collect()
    }
}

/// `Err("KEY = VALUE must be in SHOWN")` unless `ok`: the one wording of the range checks.
pub(crate) fn range_check(key: &str, value: f64, ok: bool, shown: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{key} = {value} must be in {shown}"))
    }
}

/// `base` with the TOML file `file` and then each `key=value` of `sets` laid over it; unknown keys
/// and values of the wrong type are refused by name. Shared by every configurable command.
pub fn layer<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    file: Option<&Path>,
    sets: &[String],
) -> Result<T, UserError> {
    let text = match file {
        Some(path) => Some((
            path,
            std::fs::read_to_string(path).map_err(|e| {
                UserError::BadModel(format!("config {}: cannot read: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    layer_text(base, text.as_ref().map(|(p, t)| (*p, t.as_str())), sets)
}

/// [`layer`] on a config file's text (`path` only names it in errors); public for the fuzz target.
pub fn layer_text<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    file: Option<(&Path, &str)>,
    sets: &[String],
) -> Result<T, UserError> {
    let mut value = toml::Value::try_from(base)
        .map_err(|e| UserError::BadModel(format!("internal: preset to TOML: {e}")))?;
    if let Some((path, text)) = file {
        let over: toml::Value = toml::from_str(text).map_err(|e| {
            UserError::BadModel(format!("config {}: not valid TOML: {e}", path.display()))
        })?;
        merge(&mut value, over);
        // Unknown keys and values of the wrong type in the file are the file's fault: name it.
        value
            .clone()
            .try_into::<T>()
            .map_err(|e| UserError::BadModel(format!("config {}: {e}", path.display())))?;
    }
    for s in sets {
        let (key, raw) = s.split_once('=').ok_or_else(|| {
            UserError::BadModel(format!(
                "--set '{s}': expected key=value, e.g. train.steps=500"
            ))
        })?;
        let v = parse_value(raw.trim());
        set_path(&mut value, key.trim(), v)
            .map_err(|e| UserError::BadModel(format!("--set '{s}': {e}")))?;
    }
    value
        .try_into()
        .map_err(|e| UserError::BadModel(format!("configuration: {e}")))
}

/// A configuration that checks its own ranges: the detector's and SDAS's share layering and loading.
pub trait Validated: Serialize + serde::de::DeserializeOwned {
    fn check(&self) -> Result<(), UserError>;
}

impl Validated for Config {
    fn check(&self) -> Result<(), UserError> {
        self.validate()
    }
}

/// [`layer`] then validation. A range error names the `--config` file when the file alone (base +
/// file, no `--set`) already fails.
pub fn resolve_layered<T: Validated>(
    base: &T,
    file: Option<&Path>,
    sets: &[String],
) -> Result<T, UserError> {
    let c: T = layer(base, file, sets)?;
    let file_alone_fails = |path: &Path| {
        layer::<T>(base, Some(path), &[])
            .and_then(|c| c.check())
            .is_err()
    };
    match (c.check(), file) {
        (Ok(()), _) => Ok(c),
        (Err(e), Some(path)) if file_alone_fails(path) => Err(UserError::BadModel(format!(
            "config {}: {e}",
            path.display()
        ))),
        (Err(e), _) => Err(e),
    }
}

/// A saved, resolved configuration (a run folder's `config.toml`), validated; errors name the file.
pub fn load_validated<T: Validated>(path: &Path) -> Result<T, UserError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::BadModel(format!("{}: cannot read: {e}", path.display())))?;
    let c: T = toml::from_str(&text)
        .map_err(|e| UserError::BadModel(format!("{}: {e}", path.display())))?;
    c.check()
        .map_err(|e| UserError::BadModel(format!("{}: {e}", path.display())))?;
    Ok(c)
}

/// The configuration a run folder was started with, for `--resume` to compare against: `None`
/// when the folder has none yet; a file that cannot be read or parsed is an error (resuming
/// without the comparison could silently continue another run).
pub fn saved_for_resume<T: Validated>(out: &Path) -> Result<Option<T>, UserError> {
    let path = out.join(crate::bundle::CONFIG);
    if !path.exists() {
        return Ok(None);
    }
    load_validated(&path).map(Some).map_err(|e| {
        UserError::BadModel(format!(
            "{e}; --resume needs the configuration the run was started with (restore the file, \
             or train into a new folder)"
        ))
    })
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Keys that may be absent from a serialized configuration (unset options, which TOML cannot
/// write), so `--set` must not take their absence for an unknown key.
const OPTIONAL_KEYS: [&str; 1] = ["train.val_shade_prob"];

fn set_path(root: &mut toml::Value, key: &str, v: toml::Value) -> Result<(), String> {
    let mut cur = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("'{}' is not a section", parts[..i].join(".")))?;
        let last = i + 1 == parts.len();
        let optional = last && OPTIONAL_KEYS.contains(&key);
        if !(table.contains_key(*part) || optional) {
            let known: Vec<&String> = table.keys().collect();
            return Err(format!("unknown key '{key}' (known here: {known:?})"));
        }
        if last {
            table.insert(part.to_string(), v);
            return Ok(());
        }
        cur = table.get_mut(*part).ok_or("unreachable")?;
    }
    Err(format!("empty key '{key}'"))
}

/// Keys that do not change what a run computes (how often it checkpoints, whether the clean
/// features are cached: the same values), so a resumed run may differ in them.
pub const RESUME_FREE: [&str; 2] = ["train.checkpoint_every", "train.cache_clean_features"];

/// Every key under `name` whose value differs between a run's saved configuration section and
/// the one given to resume it, as `key: saved X, given Y`, except the keys in `free`.
pub fn differences<T: Serialize>(name: &str, saved: &T, given: &T, free: &[&str]) -> Vec<String> {
    fn walk(
        key: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
        free: &[&str],
        out: &mut Vec<String>,
    ) {
        use serde_json::Value::{Null, Object};
        match (a, b) {
            (Object(x), Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let (va, vb) = (x.get(k).unwrap_or(&Null), y.get(k).unwrap_or(&Null));
                    walk(&format!("{key}.{k}"), va, vb, free, out);
                }
            }
            _ if a != b && !free.contains(&key) => out.push(format!("{key}: saved {a}, given {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let (Ok(a), Ok(b)) = (serde_json::to_value(saved), serde_json::to_value(given)) {
        walk(name, &a, &b, free, &mut out);
    }
    out
}

/// What differs between a detector run's saved configuration and the one given to resume it
/// (empty: the run can continue as it started).
pub fn resume_differences(saved: &Config, given: &Config) -> Vec<String> {
    let mut d = differences("model", &saved.model, &given.model, &RESUME_FREE);
    d.extend(differences(
        "train",
        &saved.train,
        &given.train,
        &RESUME_FREE,
    ));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_differences_name_every_changed_key_but_the_harmless_ones() {
        let saved = Config::preset("lite").unwrap();
        assert!(resume_differences(&saved, &saved).is_empty());
        let mut given = saved.clone();
        given.train.seed = 101;
        given.model.memory.weight = 0.3;
        given.train.checkpoint_every += 1;
        given.train.cache_clean_features = !given.train.cache_clean_features;
        let d = resume_differences(&saved, &given);
        assert_eq!(
            d,
            vec![
                "model.memory.weight: saved 0.5, given 0.3".to_string(),
                format!("train.seed: saved {}, given 101", saved.train.seed),
            ]
        );
    }

    #[test]
    fn presets_validate_and_round_trip() {
        for p in ["paper", "lite"] {
            let c = Config::preset(p).unwrap();
            c.validate().unwrap();
            let back: Config = toml::from_str(&c.to_toml()).unwrap();
            assert_eq!(back, c);
        }
    }

    /// Saved runs from before the key keep their networks (one-channel groups at lite widths).
    #[test]
    fn norm_min_group_channels_defaults_to_official_for_old_configs() {
        let c = Config::resolve("lite", None, &["model.norm_min_group_channels=4".into()]).unwrap();
        assert!(c
            .recon_configs()
            .iter()
            .all(|r| r.norm_min_group_channels == 4));
        let old = c.to_toml().replace("norm_min_group_channels = 4\n", "");
        assert!(!old.contains("norm_min_group_channels"));
        let back: Config = toml::from_str(&old).unwrap();
        assert_eq!(back.model.norm_min_group_channels, 1);
        let e = Config::resolve("lite", None, &["model.norm_min_group_channels=0".into()]);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("norm_min_group_channels"));
    }

    /// The patch memory: on in `lite`, off in `paper` and in runs saved before the key existed;
    /// its values are range-checked by name.
    #[test]
    fn memory_is_lite_only_and_absent_means_off() {
        assert!(Config::lite().model.memory.enabled && Config::lite().model.memory.auto_weight);
        assert!(!Config::paper().model.memory.enabled);
        let c = Config::lite();
        let toml = c.to_toml();
        let start = toml.find("[model.memory]").unwrap();
        let end = toml[start + 1..]
            .find("\n[")
            .map_or(toml.len(), |i| start + 1 + i);
        let old = format!("{}{}", &toml[..start], &toml[end..]);
        assert!(!old.contains("memory"), "{old}");
        let back: Config = toml::from_str(&old).unwrap();
        assert!(!back.model.memory.enabled);
        for (set, key) in [
            ("model.memory.coreset=0", "model.memory.coreset"),
            ("model.memory.weight=1.5", "model.memory.weight"),
            ("model.memory.projection=0", "model.memory.projection"),
            (
                "model.memory.coreset_chunk=-1",
                "model.memory.coreset_chunk",
            ),
        ] {
            let e = Config::resolve("lite", None, &[set.into()]).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let off = Config::resolve("lite", None, &["model.memory.enabled=false".into()]).unwrap();
        assert!(!off.model.memory.enabled);
        // A memory saved before `auto_weight` existed keeps its fixed weight.
        let auto = Config::lite();
        let old = auto.to_toml().replace("auto_weight = true\n", "");
        assert!(!old.contains("auto_weight"), "{old}");
        let back: Config = toml::from_str(&old).unwrap();
        assert!(back.model.memory.enabled && !back.model.memory.auto_weight);
        // The finer grid: off in both presets and in configs saved before the key; `--set` turns it on.
        assert!(!Config::lite().model.memory.subgrid && !Config::paper().model.memory.subgrid);
        let old = Config::lite().to_toml().replace("subgrid = false\n", "");
        assert!(!old.contains("subgrid"), "{old}");
        let back: Config = toml::from_str(&old).unwrap();
        assert!(!back.model.memory.subgrid);
        let on = Config::resolve("lite", None, &["model.memory.subgrid=true".into()]).unwrap();
        assert!(on.model.memory.subgrid);
    }

    /// The documented Magnetic Tile overlay resolves over `lite` to the configuration measured in
    /// docs/results.md (a partial file: every other key stays the preset's).
    #[test]
    fn the_magnetic_tile_example_config_resolves_over_lite() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/magnetic_tile.toml");
        let c = Config::resolve("lite", Some(&file), &[]).unwrap();
        let m = &c.model.memory;
        assert!(m.enabled && m.auto_weight && m.subgrid);
        assert_eq!((m.coreset, m.coreset_chunk), (0.2, 65536));
        assert_eq!(c.model.score_pool_choices, vec![4, 8, 16, 32, 64, 128, 256]);
        assert_eq!(c.train.val_shade_prob, Some(0.3));
        let mut rest = c.clone();
        rest.model.memory = Config::lite().model.memory;
        rest.model.score_pool_choices = Vec::new();
        rest.train.val_shade_prob = None;
        assert_eq!(rest, Config::lite());
    }

    /// The image score's candidate windows: none in `paper` (the spec's 16) and in configs saved
    /// before the key; set from `--set`, range-checked.
    #[test]
    fn score_pool_choices_are_optional_and_checked() {
        assert!(Config::paper().model.score_pool_choices.is_empty());
        let old = Config::paper()
            .to_toml()
            .replace("score_pool_choices = []\n", "");
        assert!(!old.contains("score_pool_choices"), "{old}");
        let back: Config = toml::from_str(&old).unwrap();
        assert!(back.model.score_pool_choices.is_empty());
        let c = Config::resolve(
            "lite",
            None,
            &["model.score_pool_choices=[16,64,256]".into()],
        )
        .unwrap();
        assert_eq!(c.model.score_pool_choices, vec![16, 64, 256]);
        let again: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again.model.score_pool_choices, vec![16, 64, 256]);
        // The memory's blur choices likewise (configs saved before the key: none).
        let old = Config::lite().to_toml().replace("blur_choices = []\n", "");
        assert!(!old.contains("blur_choices"), "{old}");
        let back: Config = toml::from_str(&old).unwrap();
        assert!(back.model.memory.blur_choices.is_empty());
        let c = Config::resolve("lite", None, &["model.memory.blur_choices=[2,8]".into()]).unwrap();
        assert_eq!(c.model.memory.blur_choices, vec![2.0, 8.0]);
        for bad in ["[4,-1]", "[4,65]"] {
            let e = Config::resolve("lite", None, &[format!("model.memory.blur_choices={bad}")])
                .unwrap_err();
            assert!(e.to_string().contains("blur_choices"), "{e}");
        }
        for bad in ["[16,0]", "[16,257]"] {
            let e = Config::resolve("lite", None, &[format!("model.score_pool_choices={bad}")])
                .unwrap_err();
            assert!(e.to_string().contains("model.score_pool_choices"), "{e}");
        }
    }

    #[test]
    fn set_overrides_and_rejects_unknown_keys() {
        let c = Config::resolve(
            "lite",
            None,
            &["train.steps=7".into(), "model.backbone=mobilenet_v2".into()],
        )
        .unwrap();
        assert_eq!(c.train.steps, 7);
        assert_eq!(c.model.backbone, "mobilenet_v2");
        let e = Config::resolve("lite", None, &["train.stepz=7".into()]).unwrap_err();
        assert!(e.to_string().contains("unknown key 'train.stepz'"), "{e}");
        let e = Config::resolve("lite", None, &["train.lr=-1".into()]).unwrap_err();
        assert!(e.to_string().contains("train.lr"), "{e}");
        let e = Config::resolve("lite", None, &["train.steps=abc".into()]).unwrap_err();
        assert!(e.to_string().contains("steps"), "{e}");
        let c = Config::resolve("lite", None, &["train.stroke_prob=0.5".into()]).unwrap();
        assert_eq!(c.train.stroke_prob, 0.5);
        let e = Config::resolve("lite", None, &["train.stroke_prob=2".into()]).unwrap_err();
        assert!(e.to_string().contains("train.stroke_prob"), "{e}");
        let e = Config::resolve("lite", None, &["train.lr_schedule=\"step\"".into()]).unwrap_err();
        assert!(e.to_string().contains("train.lr_schedule"), "{e}");
        // Configs saved before the key existed still load (no strokes, as they trained).
        let old = c.to_toml().replace("stroke_prob = 0.5\n", "");
        assert!(!old.contains("stroke_prob"));
        assert_eq!(
            toml::from_str::<Config>(&old).unwrap().train.stroke_prob,
            0.0
        );
        let c = Config::resolve("lite", None, &["train.shade_prob=0.3".into()]).unwrap();
        assert_eq!(c.train.shade_prob, 0.3);
        let e = Config::resolve("lite", None, &["train.shade_prob=-1".into()]).unwrap_err();
        assert!(e.to_string().contains("train.shade_prob"), "{e}");
        let old = c.to_toml().replace("shade_prob = 0.3\n", "");
        assert!(!old.contains("shade_prob"));
        assert_eq!(
            toml::from_str::<Config>(&old).unwrap().train.shade_prob,
            0.0
        );
        // Validation's shading: unset (and not written) = training's; set, checked and kept.
        assert_eq!(c.train.val_shade_prob, None);
        assert!(!c.to_toml().contains("val_shade_prob"));
        assert_eq!(c.train.val_shade_params().prob, 0.3);
        let v = Config::resolve("lite", None, &["train.val_shade_prob=0.5".into()]).unwrap();
        assert_eq!(
            (v.train.shade_prob, v.train.val_shade_params().prob),
            (0.0, 0.5)
        );
        assert_eq!(toml::from_str::<Config>(&v.to_toml()).unwrap(), v);
        let e = Config::resolve("lite", None, &["train.val_shade_prob=2".into()]).unwrap_err();
        assert!(e.to_string().contains("train.val_shade_prob"), "{e}");
        let c = Config::resolve("lite", None, &["train.shade_gain=[0.12, 0.3]".into()]).unwrap();
        assert_eq!(c.train.shade_gain, (0.12, 0.3));
        assert_eq!(c.train.shade_params().gain, (0.12, 0.3));
        let e = Config::resolve("lite", None, &["train.shade_gain=[0.3, 0.1]".into()]).unwrap_err();
        assert!(e.to_string().contains("train.shade_gain"), "{e}");
        let mut old: toml::Value = toml::from_str(&c.to_toml()).unwrap();
        let train = old
            .get_mut("train")
            .and_then(toml::Value::as_table_mut)
            .unwrap();
        assert!(train.remove("shade_gain").is_some());
        assert_eq!(
            old.try_into::<Config>().unwrap().train.shade_gain,
            default_shade_gain()
        );
        // lite validates on the category's own images; a config saved before the key validated
        // on the training source, and still does.
        assert_eq!(Config::lite().train.val_source, "self");
        assert_eq!(Config::paper().train.val_source, "");
        let old = Config::lite()
            .to_toml()
            .replace("val_source = \"self\"\n", "");
        assert!(!old.contains("val_source"), "{old}");
        assert_eq!(toml::from_str::<Config>(&old).unwrap().train.val_source, "");
        let e = Config::resolve("lite", None, &["train.val_source=\"dtd\"".into()]).unwrap_err();
        assert!(e.to_string().contains("train.val_source"), "{e}");
    }

    #[test]
    fn file_with_unknown_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[train]\nsteps = 3\nbogus = 1\n").unwrap();
        let e = Config::resolve("lite", Some(&p), &[]).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        std::fs::write(&p, "[train]\nsteps = 3\n").unwrap();
        assert_eq!(
            Config::resolve("lite", Some(&p), &[]).unwrap().train.steps,
            3
        );
    }
}
