//! `realnet sdas train` (spec §2.4): the class-conditional denoiser on the normal training images
//! of one or more categories, hybrid loss, Adam, gradient clipping, the official accumulation
//! rhythm, EMA weights; checkpoints with `--resume` that continue bit-identically on CPU.
use super::config::SdasConfig;
use super::dc_prior::DcPrior;
use super::noise;
use super::schedule::{LossTerms, Schedule};
use super::unet::DiffusionUNet;
use crate::bundle;
use crate::error::UserError;
use crate::optim::Adam;
use crate::precision::Precision;
use crate::sampling::permutation;
use anyhow::Context;
use rand::Rng;
use realnet_data::layout::Category;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

pub struct SdasTrainOptions {
    /// Category folders; the class id of a category is its position here.
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: SdasConfig,
    pub device: Device,
    pub resume: bool,
    pub stop_after: Option<usize>,
    /// A converted guided-diffusion checkpoint: every tensor whose name and shape match is copied.
    pub init: Option<PathBuf>,
}

/// `meta.json` of an SDAS model folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SdasMeta {
    pub kind: String,
    pub tool_version: String,
    /// Category names; class id = position.
    pub categories: Vec<String>,
    pub data: Vec<PathBuf>,
    pub image_size: i64,
    pub steps: usize,
    pub train_images: usize,
    pub train_seconds: f64,
    pub seed: u64,
    pub device: String,
    pub init: Option<PathBuf>,
    /// Each class's mean colour (`sdas::dc_prior`), by class id; models saved before it have none
    /// (the sampler then reads the class's training folder, `data`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dc_prior: Vec<Option<DcPrior>>,
}

pub struct SdasTrainSummary {
    pub steps: usize,
    pub finished: bool,
    pub seconds: f64,
    pub skipped_files: Vec<String>,
}

const EMA: &str = "ema.";
const MICRO_STEP: &str = "sdas.micro_step";

/// The normal training images of all categories.
pub(crate) struct TrainSet {
    /// u8, N×3×S×S.
    pub images: Tensor,
    /// Class id of each image.
    pub classes: Vec<i64>,
    /// Category names, by class id.
    names: Vec<String>,
    /// Unreadable files, reported and skipped.
    skipped: Vec<String>,
}

/// Normal training images at the model size, with their class ids.
pub(crate) fn load_images(dirs: &[PathBuf], size: u32) -> anyhow::Result<TrainSet> {
    let mut data = Vec::new();
    let mut classes = Vec::new();
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    for (id, dir) in dirs.iter().enumerate() {
        let cat = Category::open(dir)?;
        if cat.train.is_empty() {
            return Err(UserError::BadInput(format!(
                "{}: no training images found (expected normal images under train/good or train/ok)",
                cat.root.display()
            ))
            .into());
        }
        for r in realnet_data::load::load_all(&cat.train, Some((size, size))) {
            match r {
                Ok(l) => {
                    data.extend_from_slice(l.image.as_raw());
                    classes.push(id as i64);
                }
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    skipped.push(e.to_string());
                }
            }
        }
        names.push(cat.name);
    }
    if classes.is_empty() {
        return Err(
            UserError::BadInput("no readable training image in any --data folder".into()).into(),
        );
    }
    let s = size as i64;
    let t = Tensor::from_slice(&data)
        .view([classes.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .contiguous();
    Ok(TrainSet {
        images: t,
        classes,
        names,
        skipped,
    })
}

/// The images, timesteps and noise of micro-step `m`: a pure function of (seed, m). Images are
/// taken in a fresh seeded permutation per epoch, as a shuffling data loader does.
fn micro_batch(
    seed: u64,
    m: usize,
    b: usize,
    n: usize,
    timesteps: usize,
) -> (Vec<usize>, Vec<i64>, rand_chacha::ChaCha8Rng) {
    let idx = (0..b)
        .map(|j| {
            let pos = m * b + j;
            permutation(n, seed.wrapping_add((pos / n) as u64))[pos % n]
        })
        .collect();
    let mut r = noise::rng(seed, m as u64, noise::STREAM_TRAIN);
    let t = (0..b).map(|_| r.gen_range(0..timesteps as i64)).collect();
    (idx, t, r)
}

/// A micro-batch noised to its timesteps.
struct Noised {
    /// Clean images in [−1, 1].
    x0: Tensor,
    /// x₀ noised to `t` with `eps`.
    xt: Tensor,
    t: Vec<i64>,
    eps: Tensor,
    /// Class ids.
    y: Tensor,
    /// The ε MSE's weight per sample (`Schedule::p2_weights`; all 1 for the official loss).
    mse_weights: Vec<f64>,
}

/// The mean loss of one micro-batch, its terms, and the loss's gradients in `params`' order. In
/// bf16 (mixed precision) the forward and backward run on bf16 copies of the weights, swapped back
/// before this returns, and the loss terms are taken in f32; in f32 it is the official step.
fn micro_step(
    net: &DiffusionUNet,
    vs: &nn::VarStore,
    params: &[Tensor],
    sched: &Schedule,
    b: &Noised,
    precision: Precision,
) -> (Tensor, LossTerms, Vec<Tensor>) {
    let _weights = precision.compute_weights(vs);
    let t_dev = Tensor::from_slice(&b.t).to_device(b.xt.device());
    let out = net.forward(&b.xt, &t_dev, Some(&b.y));
    let terms = sched.training_terms(&out, &b.x0, &b.xt, &b.t, &b.eps);
    let loss = terms.weighted_loss(&b.mse_weights).mean(Kind::Float);
    let grads = Tensor::run_backward(&[&loss], params, false, false);
    (loss, terms, grads)
}

/// Scales `grads` in place so that their global L2 norm is at most `max` (`clip_grad_norm_`).
fn clip_grad_norm(grads: &[Tensor], max: f64) {
    tch::no_grad(|| {
        let grads: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
        let total = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt();
        let coef = (max / (total + 1e-6)).clamp_max(1.0);
        for g in grads {
            let _ = g.shallow_clone().g_mul_(&coef);
        }
    });
}

/// Adds one micro-batch's gradients (any precision) to the f32 sums since the last optimiser
/// step, which play the part of PyTorch's accumulating `.grad` (empty `sums`: none yet).
fn accumulate(sums: &mut Vec<Tensor>, grads: Vec<Tensor>) {
    let f32 = |g: Tensor| {
        if g.defined() {
            g.to_kind(Kind::Float)
        } else {
            g
        }
    };
    if sums.is_empty() {
        *sums = grads.into_iter().map(f32).collect();
        return;
    }
    tch::no_grad(|| {
        for (s, g) in sums.iter_mut().zip(grads) {
            if !g.defined() {
                continue;
            }
            if s.defined() {
                let _ = s.g_add_(&g);
            } else {
                *s = f32(g);
            }
        }
    });
}

pub fn train(opts: &SdasTrainOptions) -> anyhow::Result<SdasTrainSummary> {
    let t0 = Instant::now();
    let out = &opts.out;
    bundle::open_run_dir(out, opts.resume)?;
    let size = opts.config.model.image_size as u32;
    let TrainSet {
        images,
        classes,
        names: categories,
        skipped,
    } = load_images(&opts.data, size)?;
    let dc_prior = DcPrior::per_class(&images, &classes, categories.len());
    let mut cfg = opts.config.clone();
    cfg.model.num_classes = categories.len() as i64;
    if opts.resume {
        if let Some(saved) = crate::config::saved_for_resume::<SdasConfig>(out)? {
            use crate::config::{differences, RESUME_FREE};
            let mut diff = differences("model", &saved.model, &cfg.model, &RESUME_FREE);
            diff.extend(differences(
                "diffusion",
                &saved.diffusion,
                &cfg.diffusion,
                &[],
            ));
            diff.extend(differences("train", &saved.train, &cfg.train, &RESUME_FREE));
            if !diff.is_empty() {
                return Err(UserError::BadModel(format!(
                    "{}: the run was started with another configuration ({}); resume with the \
                     same preset, --config, --set values and --data",
                    out.join(bundle::CONFIG).display(),
                    diff.join("; ")
                ))
                .into());
            }
        }
    }
    let precision = cfg.train.precision().map_err(UserError::BadModel)?;
    crate::precision::warn_if_slow(precision, opts.device);
    let n = classes.len();
    tracing::info!(
        "SDAS: {n} training images of {categories:?} at {size}², {} skipped",
        skipped.len()
    );

    tch::manual_seed(cfg.train.seed as i64);
    let mut vs = nn::VarStore::new(opts.device);
    let net = DiffusionUNet::new(&vs.root(), &cfg.model);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    let vars = vs.variables();
    let params: Vec<Tensor> = names.iter().map(|k| vars[k].shallow_clone()).collect();
    let mut adam = Adam::new(&params, cfg.train.lr);
    let ckpt = out.join(bundle::CHECKPOINT);
    let mut step = 0usize;
    let ema: Vec<Tensor>;
    if opts.resume && ckpt.exists() {
        let named = bundle::read_tensors(&ckpt)?;
        bundle::load_vars(&vs, &named, &ckpt)?;
        adam.load_state(&named).ok_or_else(|| {
            UserError::BadModel(format!(
                "{}: optimiser state missing or mis-shaped",
                ckpt.display()
            ))
        })?;
        ema = names
            .iter()
            .map(|k| {
                named
                    .get(&format!("{EMA}{k}"))
                    .map(|t| t.to_device(opts.device))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                UserError::BadModel(format!("{}: EMA weights missing", ckpt.display()))
            })?;
        step = named
            .get(MICRO_STEP)
            .map(|t| t.int64_value(&[0]) as usize)
            .ok_or_else(|| UserError::BadModel(format!("{}: step missing", ckpt.display())))?;
        bundle::truncate_history(&out.join(bundle::HISTORY), step)?;
        tracing::info!("resuming at micro-step {step}/{}", cfg.train.steps);
    } else {
        let _ = std::fs::remove_file(out.join(bundle::HISTORY));
        if let Some(init) = &opts.init {
            let copied = init_from(&vs, init)?;
            tracing::info!(
                "initialised {copied} of {} tensors from {}",
                names.len(),
                init.display()
            );
        }
        ema = params.iter().map(|p| p.detach().copy()).collect();
    }
    std::fs::write(out.join(bundle::CONFIG), cfg.to_toml())?;

    let sched = Schedule::linear(cfg.diffusion.timesteps);
    let total = cfg.train.steps;
    let lr_curve = crate::optim::LrCurve::new(
        cfg.train.lr,
        &cfg.train.lr_schedule,
        cfg.train.warmup_steps,
        total,
    );
    let budget_end = opts.stop_after.map_or(total, |k| (step + k).min(total));
    let bar = crate::progress::bar(total as u64, "sdas train");
    bar.set_position(step as u64);
    let mut history = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join(bundle::HISTORY))?;
    let classes_t = Tensor::from_slice(&classes);
    let b = cfg.train.batch_size;
    let s = size as i64;
    let t_loop = Instant::now();
    let first = step;
    let (mut sum_loss, mut sum_mse, mut sum_vb, mut count) = (0.0, 0.0, 0.0, 0usize);
    let mut grads: Vec<Tensor> = Vec::new();
    while step < budget_end {
        let (idx, t, mut r) = micro_batch(cfg.train.seed, step, b, n, cfg.diffusion.timesteps);
        let idx_t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let x0 = (images
            .index_select(0, &idx_t)
            .to_device(opts.device)
            .to_kind(Kind::Float)
            / 127.5)
            - 1.0;
        let y = classes_t.index_select(0, &idx_t).to_device(opts.device);
        let eps = noise::normal_batch(
            std::slice::from_mut(&mut r),
            [b as i64 * 3, s, s],
            opts.device,
        )
        .view([b as i64, 3, s, s]);
        let xt = sched.q_sample(&x0, &t, &eps);
        let mse_weights = sched.p2_weights(&t, cfg.train.p2_gamma, cfg.train.p2_k);
        let batch = Noised {
            x0,
            xt,
            t,
            eps,
            y,
            mse_weights,
        };
        let (loss, terms, g) = micro_step(&net, &vs, &params, &sched, &batch, precision);
        accumulate(&mut grads, g);
        if cfg.train.clip_grad_norm > 0.0 {
            clip_grad_norm(&grads, cfg.train.clip_grad_norm);
        }
        if step.is_multiple_of(cfg.train.accumulate) {
            adam.lr = lr_curve.at(step);
            adam.step_with(&params, &grads);
            grads.clear();
            let d = cfg.train.ema_decay;
            tch::no_grad(|| {
                for (e, p) in ema.iter().zip(&params) {
                    let _ = e.shallow_clone().lerp_(p, 1.0 - d);
                }
            });
        }
        step += 1;
        let l = loss.double_value(&[]);
        sum_loss += l;
        sum_mse += terms.mse.mean(Kind::Float).double_value(&[]);
        sum_vb += terms.vb.mean(Kind::Float).double_value(&[]);
        count += 1;
        let ips = ((step - first) * b) as f64 / t_loop.elapsed().as_secs_f64();
        bar.set_position(step as u64);
        bar.set_prefix(format!("loss {l:.4} ({ips:.1} img/s)"));
        if step.is_multiple_of(10) || step == budget_end {
            let c = count.max(1) as f64;
            let line = serde_json::json!({
                "step": step, "loss": sum_loss / c, "mse": sum_mse / c, "vb": sum_vb / c,
                "images_per_s": ips, "elapsed_s": t0.elapsed().as_secs_f64(),
            });
            writeln!(history, "{line}")?;
            (sum_loss, sum_mse, sum_vb, count) = (0.0, 0.0, 0.0, 0);
        }
        if step.is_multiple_of(cfg.train.checkpoint_every) || step == budget_end {
            let mut named: Vec<(String, Tensor)> = names
                .iter()
                .zip(&params)
                .map(|(k, p)| (k.clone(), p.shallow_clone()))
                .collect();
            named.extend(
                names
                    .iter()
                    .zip(&ema)
                    .map(|(k, e)| (format!("{EMA}{k}"), e.shallow_clone())),
            );
            named.extend(adam.state());
            named.push((MICRO_STEP.into(), Tensor::from_slice(&[step as i64])));
            bundle::save_tensors(&ckpt, &named)?;
            bundle::write_atomic(
                &out.join(bundle::CHECKPOINT_STATE),
                serde_json::json!({ "step": step }).to_string().as_bytes(),
            )?;
        }
        if !l.is_finite() {
            anyhow::bail!("SDAS training diverged at micro-step {step} (loss {l}); lower train.lr");
        }
    }
    bar.finish_and_clear();
    drop(history);
    if step < total {
        return Ok(SdasTrainSummary {
            steps: step,
            finished: false,
            seconds: t0.elapsed().as_secs_f64(),
            skipped_files: skipped,
        });
    }
    vs.freeze();
    let named: Vec<(String, Tensor)> = names
        .iter()
        .cloned()
        .zip(ema.iter().map(|e| e.shallow_clone()))
        .collect();
    bundle::save_tensors(&out.join(bundle::MODEL), &named)?;
    let meta = SdasMeta {
        kind: "sdas".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        categories,
        data: opts
            .data
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or(d.clone()))
            .collect(),
        image_size: cfg.model.image_size,
        steps: total,
        train_images: n,
        train_seconds: t0.elapsed().as_secs_f64(),
        seed: cfg.train.seed,
        device: crate::device::describe(opts.device),
        init: opts.init.clone(),
        dc_prior,
    };
    bundle::write_atomic(
        &out.join(bundle::META),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    Ok(SdasTrainSummary {
        steps: total,
        finished: true,
        seconds: t0.elapsed().as_secs_f64(),
        skipped_files: skipped,
    })
}

/// Copies every tensor of `file` whose name and shape match a variable (the official
/// `load_pertrain_weights`); returns how many were copied. The class embedding of an ImageNet
/// checkpoint (1000 rows) does not match and keeps its initialisation.
fn init_from(vs: &nn::VarStore, file: &Path) -> anyhow::Result<usize> {
    let named: HashMap<String, Tensor> = bundle::read_tensors(file)?;
    let mut copied = 0;
    tch::no_grad(|| {
        for (k, v) in vs.variables() {
            if let Some(t) = named.get(&k) {
                if t.size() == v.size() {
                    let mut v = v;
                    v.copy_(&t.to_kind(v.kind()));
                    copied += 1;
                }
            }
        }
    });
    if copied == 0 {
        return Err(UserError::BadModel(format!(
            "{}: no tensor matches the denoiser by name and shape; is it a guided-diffusion UNet checkpoint converted with `realnet weights convert`?",
            file.display()
        ))
        .into());
    }
    Ok(copied)
}

/// Loads a finished SDAS model folder: config, meta and the EMA weights, cast to `precision`.
pub fn load_model(
    dir: &Path,
    device: Device,
    precision: Precision,
) -> anyhow::Result<(SdasConfig, SdasMeta, DiffusionUNet, nn::VarStore)> {
    crate::precision::warn_if_slow(precision, device);
    let cfg = SdasConfig::load(&dir.join(bundle::CONFIG))?;
    let mp = dir.join(bundle::META);
    let text = std::fs::read_to_string(&mp).map_err(|e| {
        UserError::BadModel(format!(
            "{}: cannot read ({e}); is {} a finished `realnet sdas train` folder?",
            mp.display(),
            dir.display()
        ))
    })?;
    let meta: SdasMeta = serde_json::from_str(&text)
        .map_err(|e| UserError::BadModel(format!("{}: {e}", mp.display())))?;
    if meta.kind != "sdas" {
        return Err(UserError::BadModel(format!(
            "{}: not an SDAS model (kind '{}')",
            mp.display(),
            meta.kind
        ))
        .into());
    }
    let mut vs = nn::VarStore::new(device);
    let net = DiffusionUNet::new(&vs.root(), &cfg.model);
    let wp = dir.join(bundle::MODEL);
    let named = bundle::read_tensors(&wp)?;
    bundle::load_vars(&vs, &named, &wp).context("loading the SDAS weights")?;
    vs.freeze();
    precision.cast_vars(&vs, &[]);
    Ok((cfg, meta, net, vs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(g: &[Tensor]) -> Tensor {
        Tensor::cat(
            &g.iter()
                .map(|t| t.to_kind(Kind::Float).flatten(0, -1))
                .collect::<Vec<_>>(),
            0,
        )
    }

    #[test]
    fn bf16_micro_step_follows_the_f32_step() {
        let mut cfg = super::super::unet::UNetConfig::lite(2);
        cfg.image_size = 16;
        cfg.channel_mult = vec![1, 2];
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = DiffusionUNet::new(&vs.root(), &cfg);
        let params = vs.trainable_variables();
        // Off the zero-initialised output layers, so that every weight has a gradient.
        tch::no_grad(|| {
            for p in &params {
                let _ = p.shallow_clone().g_add_(&(p.randn_like() * 0.05));
            }
        });
        let before: Vec<Tensor> = params.iter().map(Tensor::copy).collect();
        let sched = Schedule::linear(1000);
        let x0 = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let eps = x0.randn_like();
        let t = vec![0i64, 500];
        let xt = sched.q_sample(&x0, &t, &eps);
        let b = Noised {
            x0,
            xt,
            t,
            eps,
            y: Tensor::from_slice(&[0i64, 1]),
            mse_weights: vec![1.0; 2],
        };
        let (_, t32, g32) = micro_step(&net, &vs, &params, &sched, &b, Precision::F32);
        let (_, t16, g16) = micro_step(&net, &vs, &params, &sched, &b, Precision::Bf16);
        // The masters are back, unrounded, and the gradients are the bf16 copies'.
        for (p, w) in params.iter().zip(&before) {
            assert_eq!(p.kind(), Kind::Float);
            assert!(p.equal(w));
        }
        assert!(g32.iter().all(|g| g.defined() && g.kind() == Kind::Float));
        assert!(g16
            .iter()
            .all(|g| g.defined() && g.kind() == Kind::BFloat16));
        let (l32, l16) = (
            t32.loss().mean(Kind::Float).double_value(&[]),
            t16.loss().mean(Kind::Float).double_value(&[]),
        );
        assert!((l16 - l32).abs() < 0.02 * l32, "loss {l16} vs {l32}");
        let (a, c) = (flat(&g32), flat(&g16));
        let rel = (&c - &a).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(a.norm().double_value(&[]) > 0.0);
        eprintln!("loss {l32} / {l16}, relative gradient difference {rel}");
        assert!(rel < 0.05, "relative gradient difference {rel}");
    }

    #[test]
    fn accumulated_gradients_are_f32_sums_and_clipping_bounds_their_norm() {
        let g = |v: f32| Tensor::from_slice(&[v, 2.0 * v]).to_kind(Kind::BFloat16);
        let mut sums = Vec::new();
        accumulate(&mut sums, vec![g(1.0), Tensor::new()]);
        accumulate(&mut sums, vec![g(2.0), g(1.0)]);
        assert_eq!(sums[0].kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(&sums[0]).unwrap(), vec![3.0, 6.0]);
        assert_eq!(Vec::<f32>::try_from(&sums[1]).unwrap(), vec![1.0, 2.0]);
        clip_grad_norm(&sums, 1.0);
        let norm = flat(&sums).norm().double_value(&[]);
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        // Under the bound: unchanged.
        let small = vec![Tensor::from_slice(&[0.3f32, 0.4])];
        clip_grad_norm(&small, 1.0);
        assert_eq!(Vec::<f32>::try_from(&small[0]).unwrap(), vec![0.3, 0.4]);
    }
}
