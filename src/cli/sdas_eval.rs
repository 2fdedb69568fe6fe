//! `realnet sdas eval`.
use clap::Args;
use realnet::model::backbone::BackboneKind;
use realnet::sdas::eval::{evaluate, EvalOptions};
use std::path::PathBuf;
use tch::Device;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A folder written by `realnet sdas train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The category folder (its train/ images are the normal reference, test/good the yardstick).
    #[arg(long)]
    pub data: PathBuf,
    /// Backbone whose features measure distance.
    #[arg(long, default_value = "efficientnet_lite2")]
    pub backbone: String,
    /// Its weights (default: $REALNET_CACHE/weights/<backbone>.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Samples per strength.
    #[arg(long, default_value_t = 32)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many training images (a seeded random choice) form the bank the distances are
    /// measured to; the search is exact over it.
    #[arg(long, default_value_t = 256)]
    pub bank_images: usize,
    /// At most this many good test images (a seeded random choice) give the yardstick.
    #[arg(long, default_value_t = 64)]
    pub real_images: usize,
    /// Respaced sampling steps, ddimN or N (default the model's, ddim20), as for `sdas sample`.
    #[arg(long)]
    pub steps: Option<String>,
    /// ddpm (official) or ddim, as for `sdas sample`.
    #[arg(long, default_value = "ddpm")]
    pub sampler: String,
    /// Compare at 256² instead of at the model's own resolution (all images are otherwise resized
    /// to the model's size and back, so a 64² model is not judged on detail it cannot draw).
    #[arg(long)]
    pub full_resolution: bool,
    /// true / false: overrides the model's `sample.dc_prior` (the class's mean colour as the
    /// prior of the predicted noise's mean), as for `sdas sample`.
    #[arg(long)]
    pub dc_prior: Option<bool>,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(
    a: EvalArgs,
    device: Device,
    precision: realnet::precision::Precision,
) -> anyhow::Result<i32> {
    let kind = BackboneKind::parse(&a.backbone)?;
    let weights = match a.weights {
        Some(w) => w,
        None => realnet::infer::default_weights(kind)?,
    };
    if a.count == 0 {
        return Err(realnet::error::UserError::BadInput("--count must be ≥ 1".into()).into());
    }
    let method: realnet::sdas::sample::Method = a
        .sampler
        .parse()
        .map_err(realnet::error::UserError::BadInput)?;
    let r = evaluate(&EvalOptions {
        model: a.model,
        data: a.data,
        backbone: kind,
        weights,
        strengths: vec![0.0, 0.1, 0.2, 0.3],
        count: a.count,
        seed: a.seed,
        bank_images: a.bank_images,
        real_images: a.real_images,
        compare_size: a.full_resolution.then_some(256),
        steps: a.steps,
        method,
        device,
        precision,
        dc_prior: a.dc_prior,
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "mean nearest-neighbour patch distance to {3} normal training images (all at {0}², then 256²; \
             samples: {1} steps, {2}, {4})",
            r.image_size, r.steps, r.sampler, r.bank_images, r.precision
        );
        println!(
            "  real good test images  {:.4}  ({} images)",
            r.real_good, r.real_images
        );
        for (s, d) in &r.samples {
            println!(
                "  samples, s = {s:<4}       {d:.4}  ({:+.1} % vs real)",
                100.0 * (d / r.real_good - 1.0)
            );
        }
    }
    Ok(0)
}
