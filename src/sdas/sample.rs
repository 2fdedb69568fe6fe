//! SDAS sampling (spec §2.6): the respaced ancestral sampler whose reverse-step deviation is
//! inflated by √(1 + s) (s = 0: plain sampling of normal images), and the DDIM variant with
//! √s·σ·z added. `realnet sdas sample` writes shards of SIA images; every image is a pure function
//! of (seed, index) — its strength, start noise and step noise come from its own stream, and images
//! are always computed in the same fixed groups of `batch` consecutive indices.
use super::dc_prior::DcPrior;
use super::noise;
use super::schedule::{space_timesteps, Schedule};
use super::train::load_model;
use super::unet::DiffusionUNet;
use crate::error::UserError;
use crate::precision::Precision;
use rand::Rng;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Ancestral DDPM steps, x = μ + √(1+s)·σ·z (the official SDAS sampler).
    Ddpm,
    /// Deterministic DDIM (η = 0) plus √s·σ·z, σ the η = 1 deviation (spec: s ∈ [0.01, 0.03]).
    Ddim,
}

impl Method {
    /// The name `FromStr` reads.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ddpm => "ddpm",
            Method::Ddim => "ddim",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Method::Ddpm, Method::Ddim]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("sampler '{s}': expected ddpm or ddim"))
    }
}

/// The respacing spec (`steps`, else the model's `sample.steps`) and its schedule.
pub fn sampling_schedule(
    cfg: &super::config::SdasConfig,
    steps: Option<&str>,
) -> Result<(String, Schedule), UserError> {
    let steps = steps.unwrap_or(&cfg.sample.steps).to_string();
    let keep = space_timesteps(cfg.diffusion.timesteps, &steps)?;
    Ok((
        steps,
        Schedule::linear(cfg.diffusion.timesteps).respaced(&keep),
    ))
}

/// The strength of image `index`: s ~ U(a, b) from the image's own stream.
pub fn strength_of(seed: u64, index: u64, range: [f64; 2]) -> f64 {
    if range[1] <= range[0] {
        return range[0];
    }
    noise::rng(seed, index, noise::STREAM_STRENGTH).gen_range(range[0]..range[1])
}

/// Which images to sample: `indices` of class `class` under `seed`, with their strengths.
pub struct Draw<'a> {
    pub class: i64,
    pub seed: u64,
    pub indices: &'a [u64],
    pub strengths: &'a [f64],
    pub method: Method,
    /// The class's mean colour, replacing the mean of ε̂ (`dc_prior`); `None`: ε̂ as predicted.
    pub dc: Option<&'a DcPrior>,
}

/// Samples the images of `d` (u8, N×3×S×S on the CPU).
pub fn sample(net: &DiffusionUNet, sched: &Schedule, d: &Draw, device: Device) -> Tensor {
    let Draw {
        class,
        seed,
        indices,
        strengths,
        method,
        dc,
    } = *d;
    let n = indices.len() as i64;
    let s = net.config.image_size;
    let mut rngs: Vec<_> = indices
        .iter()
        .map(|&i| noise::rng(seed, i, noise::STREAM_NOISE))
        .collect();
    let factor = |f: &dyn Fn(f64) -> f64| {
        let v: Vec<f32> = strengths.iter().map(|&x| f(x) as f32).collect();
        Tensor::from_slice(&v).view([n, 1, 1, 1]).to_device(device)
    };
    let ddpm_scale = factor(&|x| (1.0 + x).sqrt());
    let ddim_scale = factor(&|x| x.sqrt());
    let y = Tensor::full([n], class, (Kind::Int64, device));
    tch::no_grad(|| {
        let mut x = noise::normal_batch(&mut rngs, [3, s, s], device);
        for k in (0..sched.len()).rev() {
            let tk = vec![k as i64; n as usize];
            let t_model = Tensor::full([n], sched.timestep_map[k], (Kind::Int64, device));
            let mut out = net.forward(&x, &t_model, Some(&y));
            if let Some(p) = dc {
                let mut parts = out.split(3, 1);
                parts[0] = p.correct(&parts[0], &x, sched.alphas_cumprod[k]);
                out = Tensor::cat(&parts, 1);
            }
            let mv = sched.p_mean_variance(&out, &x, &tk, true);
            let (mean, dev) = match method {
                Method::Ddpm => {
                    let sd = (&mv.log_variance * 0.5).exp();
                    (mv.mean.shallow_clone(), sd * &ddpm_scale)
                }
                Method::Ddim => {
                    let (mean, sigma) = sched.ddim_step(&mv, &x, &tk);
                    (mean, sigma * &ddim_scale)
                }
            };
            x = if k > 0 {
                mean + dev * noise::normal_batch(&mut rngs, [3, s, s], device)
            } else {
                mean
            };
        }
        ((x + 1.0) * 127.5)
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu)
    })
}

/// Converts an N×3×S×S u8 tensor into images.
pub fn to_images(x: &Tensor) -> Vec<image::RgbImage> {
    let (n, _, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    let hwc = x.permute([0, 2, 3, 1]).contiguous();
    (0..n)
        .filter_map(|i| {
            let v = Vec::<u8>::try_from(hwc.get(i).view([-1])).ok()?;
            image::RgbImage::from_raw(w as u32, h as u32, v)
        })
        .collect()
}

/// The prior the sampler uses for class `class`: `None` when `sample.dc_prior` (or `choice`, which
/// overrides it) is off.
pub fn dc_prior_of(
    cfg: &super::config::SdasConfig,
    meta: &super::train::SdasMeta,
    class: usize,
    choice: Option<bool>,
) -> anyhow::Result<Option<DcPrior>> {
    if !choice.unwrap_or(cfg.sample.dc_prior) {
        return Ok(None);
    }
    DcPrior::of_model(meta, class, cfg.model.image_size as u32).map(Some)
}

pub struct SampleJob {
    pub model: PathBuf,
    pub category: String,
    pub count: usize,
    pub strength: Option<[f64; 2]>,
    pub out: PathBuf,
    /// (i, n): this process makes the batches b with b mod n = i.
    pub shard: (usize, usize),
    pub seed: u64,
    pub batch: Option<usize>,
    pub steps: Option<String>,
    pub method: Method,
    pub device: Device,
    /// The denoiser's weights and activations (the chain itself stays f32).
    pub precision: Precision,
    /// Overrides the model's `sample.dc_prior`.
    pub dc_prior: Option<bool>,
}

pub struct SampleReport {
    pub written: usize,
    pub existing: usize,
    pub seconds: f64,
    pub dir: PathBuf,
}

#[derive(serde::Serialize)]
struct IndexLine<'a> {
    index: u64,
    file: String,
    s: f64,
    seed: u64,
    category: &'a str,
    class: i64,
    method: &'a str,
    steps: &'a str,
    precision: &'a str,
    /// Drawn with the class's mean colour as prior (`sample.dc_prior`).
    dc_prior: bool,
}

pub fn file_name(index: u64) -> String {
    format!("{index:06}.png")
}

/// Parses `A..B` or a single `A` into a strength range.
pub fn parse_strength(s: &str) -> Result<[f64; 2], UserError> {
    let bad = || {
        UserError::BadInput(format!(
            "--strength '{s}': expected A..B (e.g. 0.1..0.2) or one value, all ≥ 0"
        ))
    };
    let r = match s.split_once("..") {
        Some((a, b)) => [
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ],
        None => {
            let v: f64 = s.trim().parse().map_err(|_| bad())?;
            [v, v]
        }
    };
    if !(r[0] >= 0.0 && r[0] <= r[1] && r[1].is_finite()) {
        return Err(bad());
    }
    Ok(r)
}

/// Parses `I/N` (0 ≤ I < N).
pub fn parse_shard(s: &str) -> Result<(usize, usize), UserError> {
    let bad = || {
        UserError::BadInput(format!(
            "--shard '{s}': expected I/N with 0 ≤ I < N, e.g. 3/16"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

pub fn run_job(job: &SampleJob) -> anyhow::Result<SampleReport> {
    let t0 = Instant::now();
    let (cfg, meta, net, _vs) = load_model(&job.model, job.device, job.precision)?;
    let class = meta
        .categories
        .iter()
        .position(|c| c == &job.category)
        .ok_or_else(|| {
            UserError::BadInput(format!(
                "category '{}' is not in this model (trained on {:?})",
                job.category, meta.categories
            ))
        })? as i64;
    if job.count == 0 {
        return Err(UserError::BadInput("--count must be ≥ 1".into()).into());
    }
    let (steps, sched) = sampling_schedule(&cfg, job.steps.as_deref())?;
    let dc = dc_prior_of(&cfg, &meta, class as usize, job.dc_prior)?;
    let strength = job.strength.unwrap_or(cfg.sample.strength);
    let batch = job.batch.unwrap_or(cfg.sample.batch_size).max(1);
    let dir = job.out.join(&job.category);
    std::fs::create_dir_all(&dir).map_err(|e| {
        UserError::BadInput(format!(
            "{}: cannot create the output folder: {e}",
            dir.display()
        ))
    })?;
    let (si, sn) = job.shard;
    let index_path = dir.join(if sn == 1 {
        "index.jsonl".to_string()
    } else {
        format!("index-{si}-of-{sn}.jsonl")
    });
    let method = job.method.name();
    let blocks: Vec<usize> = (0..job.count.div_ceil(batch))
        .filter(|b| b % sn == si)
        .collect();
    let bar = crate::progress::bar(blocks.len() as u64, "sdas sample");
    let (mut written, mut existing) = (0, 0);
    let mut lines = String::new();
    for &b in &blocks {
        let idx: Vec<u64> = ((b * batch) as u64..((b + 1) * batch).min(job.count) as u64).collect();
        let missing: Vec<bool> = idx
            .iter()
            .map(|&i| !dir.join(file_name(i)).exists())
            .collect();
        let s: Vec<f64> = idx
            .iter()
            .map(|&i| strength_of(job.seed, i, strength))
            .collect();
        if missing.iter().any(|&m| m) {
            // The whole group is sampled even when only part is missing, so every image is
            // computed in the same group as in an uninterrupted run.
            let draw = Draw {
                class,
                seed: job.seed,
                indices: &idx,
                strengths: &s,
                method: job.method,
                dc: dc.as_ref(),
            };
            let x = sample(&net, &sched, &draw, job.device);
            for ((img, &i), &m) in to_images(&x).iter().zip(&idx).zip(&missing) {
                if m {
                    crate::evaluate::save_png_atomic(img, &dir.join(file_name(i)))?;
                    written += 1;
                } else {
                    existing += 1;
                }
            }
        } else {
            existing += idx.len();
        }
        for (&i, &sv) in idx.iter().zip(&s) {
            let line = IndexLine {
                index: i,
                file: file_name(i),
                s: sv,
                seed: job.seed,
                category: &job.category,
                class,
                method,
                steps: &steps,
                precision: job.precision.name(),
                dc_prior: dc.is_some(),
            };
            lines.push_str(&serde_json::to_string(&line)?);
            lines.push('\n');
        }
        crate::bundle::write_atomic(&index_path, lines.as_bytes())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if blocks.is_empty() {
        crate::bundle::write_atomic(&index_path, b"")?;
    }
    Ok(SampleReport {
        written,
        existing,
        seconds: t0.elapsed().as_secs_f64(),
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strengths_and_shards_parse() {
        assert_eq!(parse_strength("0.1..0.2").unwrap(), [0.1, 0.2]);
        assert_eq!(parse_strength("0").unwrap(), [0.0, 0.0]);
        assert!(parse_strength("0.3..0.2").is_err());
        assert!(parse_strength("-1").is_err());
        assert_eq!(parse_shard("3/16").unwrap(), (3, 16));
        assert!(parse_shard("16/16").is_err());
        assert!(parse_shard("1").is_err());
    }

    #[test]
    fn strength_is_a_function_of_seed_and_index() {
        let a = strength_of(5, 9, [0.1, 0.2]);
        assert!((0.1..0.2).contains(&a));
        assert_eq!(a, strength_of(5, 9, [0.1, 0.2]));
        assert_ne!(a, strength_of(5, 10, [0.1, 0.2]));
        assert_eq!(strength_of(5, 9, [0.0, 0.0]), 0.0);
    }
}
