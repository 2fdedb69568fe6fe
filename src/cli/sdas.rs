//! `realnet sdas train|sample|eval`: the SDAS diffusion model (spec §2).
use crate::cli::Global;
use clap::{Args, Subcommand};
use realnet::sdas::config::SdasConfig;
use realnet::sdas::sample::{parse_shard, parse_strength, run_job, Method, SampleJob};
use realnet::sdas::train::{train, SdasTrainOptions};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SdasCmd {
    /// Train the denoiser on the normal training images of one or more categories.
    Train(TrainArgs),
    /// Write SIA images: OUT/<category>/<index>.png and an index of (index, s, seed).
    Sample(SampleArgs),
    /// How far samples at s = 0, 0.1, 0.2, 0.3 lie from the normal images, next to real good images.
    Eval(super::sdas_eval::EvalArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Category folders (class id = order given).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub run: super::RunFlags,
    /// Initial weights: a guided-diffusion checkpoint converted with `realnet weights convert`
    /// (e.g. OpenAI's 256x256_diffusion.pt); tensors matching by name and shape are copied.
    #[arg(long)]
    pub init: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A folder written by `realnet sdas train`.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub category: String,
    #[arg(long)]
    pub count: usize,
    /// Strength range A..B (s ~ U(A, B) per image) or one value; default the model's (0.1..0.2).
    #[arg(long)]
    pub strength: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    /// I/N: make only this shard's groups (any order, any machine).
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per group (default the model's sample.batch_size; keep it equal on every shard).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Respaced steps, ddimN or N (default the model's, ddim20).
    #[arg(long)]
    pub steps: Option<String>,
    /// ddpm (official) or ddim.
    #[arg(long, default_value = "ddpm")]
    pub sampler: String,
    /// true / false: overrides the model's `sample.dc_prior` — the class's mean colour (stored with
    /// the model, or read from its training folder) as the prior of the predicted noise's mean.
    #[arg(long)]
    pub dc_prior: Option<bool>,
}

pub fn run(cmd: SdasCmd, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    match cmd {
        SdasCmd::Train(a) => {
            let mut config =
                SdasConfig::resolve(&a.run.preset, a.run.config.as_deref(), &a.run.sets())?;
            g.override_train_precision(&mut config.train.precision)?;
            let s = train(&SdasTrainOptions {
                data: a.data,
                out: a.out.clone(),
                config,
                device,
                resume: a.run.resume,
                stop_after: a.run.stop_after,
                init: a.init,
            })?;
            Ok(super::training_done(
                s.finished,
                s.steps,
                s.seconds,
                &a.out,
                s.skipped_files.is_empty(),
            ))
        }
        SdasCmd::Sample(a) => {
            let method: Method = a
                .sampler
                .parse()
                .map_err(realnet::error::UserError::BadInput)?;
            let r = run_job(&SampleJob {
                model: a.model,
                category: a.category,
                count: a.count,
                strength: a.strength.as_deref().map(parse_strength).transpose()?,
                out: a.out,
                shard: parse_shard(&a.shard)?,
                seed: a.seed,
                batch: a.batch,
                steps: a.steps,
                method,
                device,
                precision: g.precision()?,
                dc_prior: a.dc_prior,
            })?;
            eprintln!(
                "{} written, {} already there, in {:.1} s → {}",
                r.written,
                r.existing,
                r.seconds,
                r.dir.display()
            );
            Ok(0)
        }
        SdasCmd::Eval(a) => super::sdas_eval::run(a, device, g.precision()?),
    }
}
