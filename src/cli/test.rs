//! `realnet test`.
use crate::cli::Global;
use anyhow::Context;
use clap::Args;
use realnet::evaluate::{test, TestOptions};
use realnet::infer::Detector;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The run folder written by `realnet train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Category folder (default: the one the model was trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Backbone weights (default: the file recorded at training, or the cache).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write each anomaly map as DIR/<defect>/<stem>.npy (float32, S×S).
    #[arg(long)]
    pub maps_out: Option<PathBuf>,
    /// Write heatmap overlays as DIR/<defect>/<stem>.png.
    #[arg(long)]
    pub overlays: Option<PathBuf>,
    /// Write a self-contained HTML report (metrics, ROC/PRO curves, score histogram, gallery of the
    /// most/least anomalous images and every miss, model metadata) as DIR/report.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Write one JSON line per test image here (path, defect, score, normalised_score, label,
    /// threshold: the keys of `realnet predict`).
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(a: TestArgs, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    let det = Detector::load_as(&a.run, a.weights.as_deref(), device, g.precision()?)?;
    let data = a.data.unwrap_or_else(|| det.meta.data.clone());
    let out = test(
        &det,
        &TestOptions {
            data,
            maps_out: a.maps_out,
            overlays_out: a.overlays,
            report_out: a.report.clone(),
            run: Some(a.run.clone()),
            batch: a.batch,
        },
    )?;
    if let Some(dir) = &a.report {
        eprintln!(
            "report: {}",
            dir.join(realnet::evaluate::REPORT_FILE).display()
        );
    }
    if let Some(path) = &a.scores {
        let mut text = String::new();
        for im in &out.images {
            let line = serde_json::json!({
                "path": im.path, "defect": im.defect, "score": im.score,
                "normalised_score": im.normalised,
                "label": if im.anomalous { "anomalous" } else { "normal" },
                "threshold": det.meta.threshold.image,
            });
            text.push_str(&format!("{line}\n"));
        }
        realnet::bundle::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out.report)?);
    } else {
        println!("{}", out.report.table());
    }
    Ok(if out.skipped.is_empty() {
        0
    } else {
        realnet::error::exit::PARTIAL
    })
}
