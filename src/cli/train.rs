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
    #[command(flatten)]
    pub run: super::RunFlags,
    /// Anomaly source: textures:DIR, sia:DIR, self (the category's own training images, augmented)
    /// or procedural (built in).
    #[arg(long, default_value = "procedural")]
    pub source: String,
    /// Backbone weights (safetensors). Default: $REALNET_CACHE/weights/<backbone>.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

pub fn run(a: TrainArgs, g: &Global) -> anyhow::Result<i32> {
    let mut config = Config::resolve(&a.run.preset, a.run.config.as_deref(), &a.run.sets())?;
    g.override_train_precision(&mut config.train.precision)?;
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
        resume: a.run.resume,
        stop_after: a.run.stop_after,
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
