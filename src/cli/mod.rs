//! Subcommands, one module each; every one is a thin layer over a library call.
use clap::{Args, Parser, Subcommand};

pub mod backbone;
pub mod bench;
pub mod calibrate;
pub mod data;
pub mod demo;
pub mod metrics;
pub mod predict;
pub mod sdas;
pub mod sdas_eval;
pub mod serve;
pub mod synth;
pub mod test;
pub mod train;
pub mod weights;

#[derive(Parser, Debug)]
#[command(
    name = "realnet",
    version,
    about = "RealNet industrial anomaly detection (CVPR 2024) in Rust"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// Threads for libtorch and the data pipeline (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Precision: f32 (default) or bf16. For `test`, `predict`, `serve` and `bench --what infer`:
    /// the networks' weights and activations (maps, memory search and scores stay f32). For
    /// `train`, `sdas train` (and `bench --what train`): mixed-precision training steps (f32 master
    /// weights and loss), overriding `train.precision`; AFS, validation and `calibrate` run in f32.
    /// For `sdas sample` and `sdas eval`: the denoiser's weights and activations (the reverse chain
    /// and the evaluation's backbone stay f32).
    #[arg(long, global = true)]
    pub precision: Option<String>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    /// An explicit --precision decides a training run's `train.precision` (saved with its config).
    pub fn override_train_precision(
        &self,
        key: &mut String,
    ) -> Result<(), realnet::error::UserError> {
        if self.precision.is_some() {
            *key = self.precision()?.name().to_string();
        }
        Ok(())
    }

    /// The precision asked for (f32 when none is).
    pub fn precision(&self) -> Result<realnet::precision::Precision, realnet::error::UserError> {
        self.precision
            .as_deref()
            .map_or(Ok(realnet::precision::Precision::F32), |p| {
                realnet::precision::Precision::parse(p).map_err(realnet::error::UserError::BadInput)
            })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job on a built-in dataset: draw it, train, test, write overlays.
    Demo(demo::DemoArgs),
    /// Train a model on one category's normal images.
    Train(train::TrainArgs),
    /// Metrics of a trained model on the category's test split.
    Test(test::TestArgs),
    /// Score any images or folders; one JSON line per image.
    Predict(predict::PredictArgs),
    /// Choose a run's threshold and fusion weight again on your own labelled images (real
    /// defects), into a new run folder.
    Calibrate(calibrate::CalibrateArgs),
    /// Serve a trained model over HTTP (JSON API, batched inference).
    Serve(serve::ServeArgs),
    /// Inspect datasets.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Metrics (AUROC, AUPRO, AP, F1) of anomaly maps from any method.
    Metrics(metrics::MetricsArgs),
    /// SDAS: train the diffusion model, sample SIA images, evaluate samples.
    #[command(subcommand)]
    Sdas(sdas::SdasCmd),
    /// Write synthetic anomalies (Perlin mask x texture / SIA source) for a category.
    Synth(synth::SynthArgs),
    /// ImageNet backbones: check that a weights file is the right one.
    #[command(subcommand)]
    Backbone(backbone::BackboneCmd),
    /// Weight files: convert PyTorch checkpoints to safetensors (no Python needed).
    #[command(subcommand)]
    Weights(weights::WeightsCmd),
    /// Timings side by side with ../shared/bench/torch_reference.py (same networks, same JSON).
    Bench(bench::BenchArgs),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    if matches!(
        cli.command,
        Command::Demo(_)
            | Command::Train(_)
            | Command::Test(_)
            | Command::Predict(_)
            | Command::Calibrate(_)
            | Command::Serve(_)
    ) {
        // The detector's tensors above glibc's 32 MiB mmap cap are reused too (realnet::alloc).
        realnet::alloc::reuse_large_blocks();
    }
    realnet::device::set_threads(cli.global.threads);
    match cli.command {
        Command::Demo(a) => demo::run(a, &cli.global),
        Command::Train(a) => train::run(a, &cli.global),
        Command::Test(a) => test::run(a, &cli.global),
        Command::Predict(a) => predict::run(a, &cli.global),
        Command::Calibrate(a) => calibrate::run(a, &cli.global),
        Command::Serve(a) => serve::run(a, &cli.global),
        Command::Data(cmd) => data::run(cmd, &cli.global),
        Command::Metrics(args) => metrics::run(args, &cli.global),
        Command::Synth(args) => synth::run(args, &cli.global),
        Command::Sdas(cmd) => sdas::run(cmd, &cli.global),
        Command::Backbone(cmd) => backbone::run(cmd, &cli.global),
        Command::Weights(cmd) => weights::run(cmd, &cli.global),
        Command::Bench(a) => bench::run(a, &cli.global),
    }
}

/// What a training command says when it stops, and its exit code (5 when files were skipped).
fn training_done(
    finished: bool,
    steps: usize,
    seconds: f64,
    out: &std::path::Path,
    clean: bool,
) -> i32 {
    if finished {
        eprintln!(
            "trained {steps} steps in {seconds:.0} s → {}",
            out.display()
        );
    } else {
        eprintln!("stopped at step {steps} (resume with --resume)");
    }
    if clean {
        0
    } else {
        realnet::error::exit::PARTIAL
    }
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The flags both training commands (`train`, `sdas train`) share: which configuration, and how
/// this invocation relates to the run folder.
#[derive(Args, Debug)]
pub struct RunFlags {
    /// Preset: lite (CPU-sized) or paper (the official sizes).
    #[arg(long, default_value = "lite")]
    pub preset: String,
    /// TOML file with overrides of the preset.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Override one value, e.g. --set train.steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
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

impl RunFlags {
    /// The `--set` overrides, with `--seed` as the last one.
    pub fn sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(s) = self.seed {
            sets.push(format!("train.seed={s}"));
        }
        sets
    }
}
