//! `realnet synth`: synthetic anomalies (Perlin mask × texture / SIA / procedural source) for a
//! category, written as images, masks and a JSON-lines index. A thin layer over
//! `realnet_synth::job::run_job`.
use clap::Args;
use realnet::error::{exit, UserError};
use realnet_synth::job::{run_job, SynthJob};
use realnet_synth::{ForegroundRule, SourceSpec, SynthError};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// The category folder whose normal training images are the base images.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (images/, masks/, index.jsonl). An interrupted run resumes where it stopped.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of samples.
    #[arg(long)]
    pub count: usize,
    /// Random seed; every sample depends only on (seed, index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Anomaly source: textures:DIR (texture images, DTD-style, 3 random augmentations),
    /// sia:DIR (SIA/SDAS images of the category), self (the category's own training images,
    /// augmented as textures) or procedural (built-in). Repeat to mix
    /// sources with equal weights. Default: procedural.
    #[arg(long, value_parser = parse_source)]
    pub source: Vec<SourceSpec>,
    /// Write a PNG contact sheet of 16 samples with their mask outlines to FILE.
    #[arg(long, value_name = "FILE")]
    pub preview: Option<PathBuf>,
    /// Foreground rule instead of the category's official one: 'all' or
    /// METHOD:CHANNEL:POLARITY[:closeK|:openK]..., e.g. otsu:gray:dark:close6:open6.
    #[arg(long, value_parser = parse_rule)]
    pub foreground: Option<ForegroundRule>,
    /// Share of the anomalies drawn as thin scratch/crack strokes instead of Perlin regions
    /// (0–1; beyond the paper, whose masks are blobs).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub strokes: f64,
    /// Share of the anomalies drawn as large soft brightness/texture changes of the image itself
    /// (uneven surfaces; 0–1; beyond the paper). Their kind is `shade` in index.jsonl.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub shading: f64,
}

fn parse_source(s: &str) -> Result<SourceSpec, String> {
    s.parse()
}

fn parse_rule(s: &str) -> Result<ForegroundRule, String> {
    s.parse()
}

pub fn run(args: SynthArgs, _g: &super::Global) -> anyhow::Result<i32> {
    let job = SynthJob {
        seed: args.seed,
        sources: args.source,
        foreground: args.foreground,
        preview: args.preview,
        stroke_prob: args.strokes,
        shade_prob: args.shading,
        ..SynthJob::new(args.data, args.out, args.count)
    };
    let bar = progress_bar(job.count as u64);
    let tick = || bar.inc(1);
    let report = run_job(&job, &tick).map_err(|e| match e {
        // Bad data, bad settings and an unwritable output folder are all things the user fixes
        // in the command line: exit 3.
        SynthError::Data(d) => anyhow::Error::new(d),
        other => anyhow::Error::new(UserError::BadInput(other.to_string())),
    })?;
    bar.finish_and_clear();
    let total = report.written + report.resumed;
    println!(
        "synth: {} samples in {} ({} new, {} from an earlier run); foreground rule {}{}; mean mask fraction {:.4}",
        total,
        job.out.display(),
        report.written,
        report.resumed,
        report.foreground,
        if report.foreground_known { "" } else { " (category unknown: whole image)" },
        report.mean_mask_fraction
    );
    if report.foreground_ignored > 0 {
        println!(
            "synth: {} samples had no foreground room for a mask; their mask ignores the foreground",
            report.foreground_ignored
        );
    }
    if let Some(p) = &report.preview {
        println!("synth: preview {}", p.display());
    }
    if !report.skipped_inputs.is_empty() {
        for s in &report.skipped_inputs {
            eprintln!("skipped: {s}");
        }
        eprintln!(
            "synth: {} unreadable input images (base images or anomaly sources) were skipped",
            report.skipped_inputs.len()
        );
        return Ok(exit::PARTIAL);
    }
    Ok(exit::OK)
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("synth {bar:40} {pos}/{len} {eta}") {
        bar.set_style(style);
    }
    bar
}
