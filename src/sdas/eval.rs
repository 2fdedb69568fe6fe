//! `realnet sdas eval`: how far SDAS samples lie from the normal images, measured the way
//! PatchCore scores a patch — locally aware backbone features at strides 8 and 16 (3×3 average
//! pooled, the stride-16 map upsampled and concatenated), each patch's Euclidean distance to its
//! nearest neighbour among the normal training images' patches — averaged over all patches of
//! all images. Real good test images give the yardstick: samples at s = 0 should be near it,
//! larger s further away.
//!
//! All images — the bank, the yardstick and the samples — first pass through the denoiser's own
//! resolution (resized to it and back to 256²): a model trained at 64² cannot draw 256² detail, and
//! without this the yardstick would measure the missing resolution rather than what the model learnt.
//! `compare_size` = 256 measures at full resolution instead.
use super::sample::{sample, strength_of, Draw, Method};
use super::train::load_model;
use crate::error::UserError;
use crate::model::backbone::{Backbone, BackboneKind};
use image::RgbImage;
use realnet_data::layout::Category;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub struct EvalOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub backbone: BackboneKind,
    pub weights: PathBuf,
    pub strengths: Vec<f64>,
    pub count: usize,
    pub seed: u64,
    /// Resolution every image passes through before features (`None`: the model's own).
    pub compare_size: Option<u32>,
    /// Respaced sampling steps (`None`: the model's `sample.steps`) and the sampler, as for
    /// `sdas sample`, so the figures describe the images a user will make.
    pub steps: Option<String>,
    pub method: Method,
    pub device: Device,
}

#[derive(Debug, serde::Serialize)]
pub struct EvalReport {
    /// The resolution all images passed through.
    pub image_size: u32,
    /// The sampling steps and sampler the samples were drawn with.
    pub steps: String,
    pub sampler: String,
    pub real_good: f64,
    pub samples: BTreeMap<String, f64>,
}

/// `img` at `via`² and back at 256² (PatchCore's input size); a plain resize when `via` = 256.
fn through(img: &RgbImage, via: u32) -> RgbImage {
    let small = realnet_data::image_io::resize_rgb(img, via, via);
    realnet_data::image_io::resize_rgb(&small, 256, 256)
}

/// Patch features of images (any size; brought through `via`² to 256²), P×D rows.
fn patches(bb: &Backbone, imgs: &[RgbImage], via: u32, device: Device) -> Tensor {
    let (mean, std) = bb.kind().normalization();
    let mut rows = Vec::new();
    for chunk in imgs.chunks(8) {
        let resized: Vec<RgbImage> = chunk.iter().map(|i| through(i, via)).collect();
        let refs: Vec<&RgbImage> = resized.iter().collect();
        let x = crate::batch::images_to_tensor(&refs, mean, std, device);
        let f = tch::no_grad(|| bb.features(&x));
        let pool = |t: &Tensor| t.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
        let f8 = pool(&f[1]);
        let (h, w) = (f8.size()[2], f8.size()[3]);
        let f16 = pool(&f[2]).upsample_bilinear2d([h, w], false, None, None);
        let e = Tensor::cat(&[f8, f16], 1);
        let d = e.size()[1];
        rows.push(e.permute([0, 2, 3, 1]).reshape([-1, d]));
    }
    Tensor::cat(&rows, 0)
}

/// Mean over the rows of `q` of the distance to the nearest row of `bank`.
fn mean_nn_distance(q: &Tensor, bank: &Tensor) -> f64 {
    let mut best: Option<Tensor> = None;
    for i in (0..bank.size()[0]).step_by(16384) {
        let n = 16384.min(bank.size()[0] - i);
        let d = Tensor::cdist(q, &bank.narrow(0, i, n), 2.0, None::<i64>)
            .min_dim(1, false)
            .0;
        best = Some(match best {
            Some(b) => b.minimum(&d),
            None => d,
        });
    }
    best.map_or(f64::NAN, |b| b.mean(Kind::Double).double_value(&[]))
}

fn load(
    samples: &[realnet_data::layout::Sample],
    what: &str,
    root: &Path,
) -> anyhow::Result<Vec<RgbImage>> {
    let imgs: Vec<RgbImage> = realnet_data::load::load_all(samples, None)
        .into_iter()
        .filter_map(|r| r.map_err(|e| tracing::warn!("skipping {e}")).ok())
        .map(|l| l.image)
        .collect();
    if imgs.is_empty() {
        return Err(
            UserError::BadInput(format!("{}: no readable {what} images", root.display())).into(),
        );
    }
    Ok(imgs)
}

pub fn evaluate(o: &EvalOptions) -> anyhow::Result<EvalReport> {
    let (cfg, meta, net, _vs) = load_model(&o.model, o.device)?;
    let cat = Category::open(&o.data)?;
    let class = meta
        .categories
        .iter()
        .position(|c| c == &cat.name)
        .ok_or_else(|| {
            UserError::BadInput(format!(
                "{}: category '{}' is not in this model (trained on {:?})",
                o.data.display(),
                cat.name,
                meta.categories
            ))
        })? as i64;
    let bb = Backbone::load(o.backbone, &o.weights, o.device)?;
    let train = load(&cat.train, "training", &cat.root)?;
    let good: Vec<_> = cat
        .test
        .iter()
        .filter(|s| s.defect == "good")
        .cloned()
        .collect();
    let good = load(&good, "good test", &cat.root)?;
    let via = o.compare_size.unwrap_or(cfg.model.image_size as u32);
    let bank = patches(&bb, &train, via, o.device);
    let real_good = tch::no_grad(|| mean_nn_distance(&patches(&bb, &good, via, o.device), &bank));
    let (steps, sched) = super::sample::sampling_schedule(&cfg, o.steps.as_deref())?;
    let mut samples = BTreeMap::new();
    let bar = crate::progress::bar(o.strengths.len() as u64, "sdas eval");
    for &s in &o.strengths {
        let mut imgs = Vec::new();
        let b = cfg.sample.batch_size;
        for start in (0..o.count).step_by(b) {
            let idx: Vec<u64> = (start as u64..(start + b).min(o.count) as u64).collect();
            let st: Vec<f64> = idx
                .iter()
                .map(|&i| strength_of(o.seed, i, [s, s]))
                .collect();
            let draw = Draw {
                class,
                seed: o.seed,
                indices: &idx,
                strengths: &st,
                method: o.method,
            };
            let x = sample(&net, &sched, &draw, o.device);
            imgs.extend(super::sample::to_images(&x));
        }
        let d = tch::no_grad(|| mean_nn_distance(&patches(&bb, &imgs, via, o.device), &bank));
        samples.insert(format!("{s}"), d);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(EvalReport {
        image_size: via,
        steps,
        sampler: o.method.name().into(),
        real_good,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(n: u32) -> RgbImage {
        RgbImage::from_fn(n, n, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn full_resolution_is_a_plain_resize() {
        let img = checker(300);
        assert_eq!(
            through(&img, 256),
            realnet_data::image_io::resize_rgb(&img, 256, 256)
        );
    }

    #[test]
    fn model_resolution_removes_detail_the_model_cannot_draw() {
        // A one-pixel checkerboard survives at 256² but averages to grey through 64².
        let img = checker(256);
        let spread = |i: &RgbImage| {
            let v: Vec<u8> = i.pixels().map(|p| p[0]).collect();
            v.iter().max().copied().unwrap_or(0) - v.iter().min().copied().unwrap_or(0)
        };
        assert_eq!(spread(&through(&img, 256)), 255);
        let low = through(&img, 64);
        assert_eq!(low.dimensions(), (256, 256));
        assert!(spread(&low) < 8, "spread {}", spread(&low));
    }

    #[test]
    fn nearest_neighbour_distance() {
        let bank = Tensor::from_slice(&[0f32, 0., 3., 4., 10., 0.]).reshape([3, 2]);
        let q = Tensor::from_slice(&[0f32, 1., 3., 4.]).reshape([2, 2]);
        // Rows: (0,1) → 1 from (0,0); (3,4) → 0.
        assert!((mean_nn_distance(&q, &bank) - 0.5).abs() < 1e-6);
        assert_eq!(mean_nn_distance(&bank, &bank), 0.0);
    }
}
