//! `realnet calibrate`.
use crate::cli::Global;
use clap::Args;
use realnet::calibration::{calibrate, CalibrateOptions};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The run folder written by `realnet train` (left as it is).
    #[arg(long)]
    pub run: PathBuf,
    /// Category folder whose test/ split holds your labelled images: test/good/ and
    /// test/<defect>/, masks under ground_truth/<defect>/ where you have them. Not the images you
    /// will report metrics on.
    #[arg(long)]
    pub data: PathBuf,
    /// The calibrated run folder to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone weights (default: the file recorded at training, or the cache).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// One JSON object on stdout: the calibrated threshold, weight choice and calibration record.
    #[arg(long)]
    pub json: bool,
    /// Also choose the patch memory map's blur σ (pixels at the network size) from these, e.g.
    /// 4,8,16: real defects show how far to smooth, synthetic ones do not (docs/results.md). The
    /// fusion's balance is then measured again on the good images. Default: the model's σ.
    #[arg(long, value_delimiter = ',')]
    pub blur_choices: Vec<f64>,
}

pub fn run(a: CalibrateArgs, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    let det = calibrate(
        &CalibrateOptions {
            run: a.run,
            data: a.data,
            out: a.out.clone(),
            weights: a.weights,
            batch: a.batch,
            blurs: a.blur_choices,
        },
        device,
    )?;
    let m = &det.meta;
    let Some(c) = &m.calibration else {
        anyhow::bail!("calibration left no record");
    };
    if a.json {
        let out = serde_json::json!({
            "threshold": m.threshold, "memory_weight": m.memory_weight, "calibration": c,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "calibrated on {} good and {} defective images ({} with masks) of {}",
            c.good,
            c.defective,
            c.with_masks,
            c.data.display()
        );
        println!(
            "image threshold {:.4} (was {:.4}); separation of good and defective (image AUROC) {}",
            m.threshold.image,
            c.previous_threshold,
            m.threshold
                .val_auroc
                .map_or("n/a".into(), |v| format!("{v:.4}"))
        );
        if let Some(w) = &m.memory_weight {
            let was = |v: Option<f64>| v.map_or("n/a".into(), |v| v.to_string());
            println!(
                "patch memory fusion weight {} (was {}), for the image score {} (was {})",
                w.chosen,
                was(c.previous_weight),
                w.image_weight(),
                was(c.previous_image_weight)
            );
            for k in &w.candidates {
                println!(
                    "  w {:.1}: image AUROC {:.4}, pixel AUROC {:.4}",
                    k.weight, k.image_auroc, k.pixel_auroc
                );
            }
            if let (Some(s), Some(was)) = (w.blur_sigma, c.previous_blur_sigma) {
                println!("patch memory blur σ {s} (was {was}); each σ at its best weight:");
                for b in &w.blur_candidates {
                    println!(
                        "  σ {}: image AUROC {:.4}, pixel AUROC {:.4}",
                        b.sigma, b.image_auroc, b.pixel_auroc
                    );
                }
            }
        }
        println!("calibrated model: {}", a.out.display());
    }
    Ok(if c.skipped.is_empty() {
        realnet::error::exit::OK
    } else {
        realnet::error::exit::PARTIAL
    })
}
