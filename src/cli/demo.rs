//! `realnet demo`: draws a small dataset, trains on it, tests, and writes overlays.
use crate::cli::Global;
use clap::Args;
use realnet::config::Config;
use realnet::evaluate::{test, TestOptions};
use realnet::infer::Detector;
use realnet::sampling::SynthSource;
use realnet::train::{train, TrainOptions};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the dataset, the model and the overlays go.
    #[arg(long, default_value = "realnet-demo")]
    pub out: PathBuf,
    /// Training steps (the demo's budget; more steps, better maps).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Backbone weights (default: $REALNET_CACHE/weights/efficientnet_lite2.safetensors, made by the set-up).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

pub fn run(a: DemoArgs, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    let data = a.out.join("data/fabric");
    if !data.join("ground_truth").exists() {
        eprintln!("demo: drawing the built-in dataset into {}", data.display());
        realnet::demo::write_dataset(&data, 256, 60, 20, 10)?;
    }
    let config = Config::resolve(
        "lite",
        None,
        &[
            format!("train.steps={}", a.steps),
            "train.afs_batches=8".into(),
            "train.checkpoint_every=100".into(),
        ],
    )?;
    let kind = realnet::model::backbone::BackboneKind::parse(&config.model.backbone)
        .map_err(|e| realnet::error::UserError::BadModel(e.to_string()))?;
    let weights = match a.weights {
        Some(w) => w,
        None => realnet::infer::default_weights(kind)?,
    };
    let run = a.out.join("run");
    let resume = run.join(realnet::bundle::CHECKPOINT).exists();
    if !run.join(realnet::bundle::META).exists() {
        eprintln!(
            "demo: training ({} steps, {} on {})",
            a.steps,
            config.model.backbone,
            realnet::device::describe(device)
        );
        let s = train(&TrainOptions {
            data: data.clone(),
            out: run.clone(),
            config,
            source: SynthSource::Procedural,
            weights: weights.clone(),
            device,
            resume,
            stop_after: None,
        })?;
        eprintln!("demo: trained in {:.0} s", s.seconds);
    }
    let det = Detector::load(&run, Some(&weights), device)?;
    let overlays = a.out.join("overlays");
    let report = a.out.join("report");
    let out = test(
        &det,
        &TestOptions {
            data,
            maps_out: None,
            overlays_out: Some(overlays.clone()),
            report_out: Some(report.clone()),
            run: Some(run.clone()),
            batch: 8,
        },
    )?;
    println!("{}", out.report.table());
    println!(
        "threshold {:.4} (from held-out normal images and synthetic anomalies, not the test set)",
        det.meta.threshold.image
    );
    let correct = out
        .images
        .iter()
        .filter(|i| i.anomalous == (i.defect != "good"))
        .count();
    println!(
        "{correct}/{} test images labelled correctly at that threshold",
        out.images.len()
    );
    println!(
        "overlays: {}   report: {}   model: {}",
        overlays.display(),
        report.join(realnet::evaluate::REPORT_FILE).display(),
        run.display()
    );
    Ok(0)
}
