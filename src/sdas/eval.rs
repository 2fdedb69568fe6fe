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
//!
//! The bank holds at most `bank_images` training images and the yardstick at most `real_images`
//! good test images, each a seeded random choice: the search is exact over the bank, and every
//! training image of a large category (Magnetic Tile: 762 at 256², ≈ 780k patches) made it take
//! longer than sampling. Both numbers are in the report.
use super::sample::{sample, strength_of, Draw, Method};
use super::train::load_model;
use crate::error::UserError;
use crate::model::backbone::{Backbone, BackboneKind};
use crate::model::memory;
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
    /// At most this many training images form the nearest-neighbour bank (seeded random choice).
    pub bank_images: usize,
    /// At most this many good test images form the yardstick (seeded random choice).
    pub real_images: usize,
    /// Resolution every image passes through before features (`None`: the model's own).
    pub compare_size: Option<u32>,
    /// Respaced sampling steps (`None`: the model's `sample.steps`) and the sampler, as for
    /// `sdas sample`, so the figures describe the images a user will make.
    pub steps: Option<String>,
    pub method: Method,
    pub device: Device,
    /// The denoiser's precision while sampling (the backbone and the search stay f32).
    pub precision: crate::precision::Precision,
    /// Overrides the model's `sample.dc_prior`, as for `sdas sample`.
    pub dc_prior: Option<bool>,
}

#[derive(Debug, serde::Serialize)]
pub struct EvalReport {
    /// The resolution all images passed through.
    pub image_size: u32,
    /// The sampling steps and sampler the samples were drawn with.
    pub steps: String,
    pub sampler: String,
    /// The denoiser's precision while sampling.
    pub precision: String,
    /// Whether the samples were drawn with the class's mean colour as prior (`sample.dc_prior`).
    pub dc_prior: bool,
    /// How many training images the bank held and how many good test images were measured.
    pub bank_images: usize,
    pub real_images: usize,
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
        rows.push(memory::rows(&memory::embed(&f)));
    }
    Tensor::cat(&rows, 0)
}

/// Mean over the rows of `q` of the distance to the nearest row of `bank`.
fn mean_nn_distance(q: &Tensor, bank: &Tensor) -> f64 {
    if q.size()[0] == 0 || bank.size()[0] == 0 {
        return f64::NAN;
    }
    memory::nn_distance(q, bank)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Up to `max` of `0..n`, in ascending order: all of them when `n ≤ max`, otherwise the first `max`
/// of the seeded permutation training uses for its epochs.
fn choose(n: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut v = crate::sampling::permutation(n, seed);
    v.truncate(max);
    v.sort_unstable();
    v
}

fn subset<T: Clone>(all: &[T], max: usize, seed: u64) -> Vec<T> {
    choose(all.len(), max, seed)
        .into_iter()
        .map(|i| all[i].clone())
        .collect()
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
    if o.bank_images == 0 || o.real_images == 0 {
        return Err(UserError::BadInput(
            "the bank and the yardstick need at least one image each".into(),
        )
        .into());
    }
    let (cfg, meta, net, _vs) = load_model(&o.model, o.device, o.precision)?;
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
    // Different streams for the two choices, so that neither depends on the other's size.
    let train = subset(&cat.train, o.bank_images, o.seed ^ 0xB0B);
    let train = load(&train, "training", &cat.root)?;
    let good: Vec<_> = cat
        .test
        .iter()
        .filter(|s| s.defect == "good")
        .cloned()
        .collect();
    let good = load(
        &subset(&good, o.real_images, o.seed ^ 0x600D),
        "good test",
        &cat.root,
    )?;
    let via = o.compare_size.unwrap_or(cfg.model.image_size as u32);
    let bank = patches(&bb, &train, via, o.device);
    let real_good = tch::no_grad(|| mean_nn_distance(&patches(&bb, &good, via, o.device), &bank));
    let (steps, sched) = super::sample::sampling_schedule(&cfg, o.steps.as_deref())?;
    let dc = super::sample::dc_prior_of(&cfg, &meta, class as usize, o.dc_prior)?;
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
                dc: dc.as_ref(),
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
        precision: o.precision.name().into(),
        dc_prior: dc.is_some(),
        bank_images: train.len(),
        real_images: good.len(),
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
    fn choice_of_images() {
        assert_eq!(choose(5, 8, 1), vec![0, 1, 2, 3, 4]);
        let c = choose(100, 10, 7);
        assert_eq!(c.len(), 10);
        assert!(c.windows(2).all(|w| w[0] < w[1]) && c[9] < 100);
        assert_eq!(c, choose(100, 10, 7));
        assert_ne!(c, choose(100, 10, 8));
    }
}
