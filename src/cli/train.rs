//! `realnet train`.
use crate::cli::Global;
use clap::Args;
use realnet::config::Config;
use realnet::sampling::SynthSource;
use realnet::train::{train, TrainOptions};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Category folder (MVTec AD / MPDD / BTAD / VisA layout) with normal training images.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder to create (the model bundle).
    #[arg(long)]
    pub out: PathBuf,
    /// Preset: lite (EfficientNet-Lite2, CPU-sized) or paper (WideResNet-50-2, official sizes).
    #[arg(long, default_value = "lite")]
    pub preset: String,
    /// TOML file with overrides of the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one value, e.g. --set train.steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Anomaly source: textures:DIR, sia:DIR or procedural (built in).
    #[arg(long, default_value = "procedural")]
    pub source: String,
    /// Backbone weights (safetensors). Default: $REALNET_CACHE/weights/<backbone>.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Training seed (overrides train.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps (the run stays resumable).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

pub fn run(a: TrainArgs, g: &Global) -> anyhow::Result<i32> {
    let mut sets = a.sets.clone();
    if let Some(s) = a.seed {
        sets.push(format!("train.seed={s}"));
    }
    let config = Config::resolve(&a.preset, a.config.as_deref(), &sets)?;
    let source: SynthSource = a
        .source
        .parse()
        .map_err(realnet::error::UserError::BadInput)?;
    let device = realnet::device::parse_device(&g.device)?;
    let kind = realnet::model::backbone::BackboneKind::parse(&config.model.backbone)
        .map_err(|e| realnet::error::UserError::BadModel(e.to_string()))?;
    let weights = match a.weights {
        Some(w) => w,
        None => realnet::infer::default_weights(kind)?,
    };
    let opts = TrainOptions {
        data: a.data,
        out: a.out.clone(),
        config,
        source,
        weights,
        device,
        resume: a.resume,
        stop_after: a.stop_after,
    };
    let s = train(&opts)?;
    Ok(super::training_done(
        s.finished,
        s.steps,
        s.seconds,
        &a.out,
        s.skipped_files.is_empty(),
    ))
}
