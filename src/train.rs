//! Training one category (spec §4.3–4.7): load and split the normal images, AFS before training,
//! then reconstruction + segmentation training on synthetic anomalies, resumable checkpoints, and
//! honest thresholds from held-out normal images and synthetic anomalies on them.
use crate::batch;
use crate::bundle::{self, Meta};
use crate::calibration::{self, Item};
use crate::config::Config;
use crate::error::UserError;
use crate::model::afs::AfsScores;
use crate::model::backbone::{Backbone, BackboneKind};
use crate::model::memory::{self, PatchMemory};
use crate::model::realnet::{self, RealNet};
use crate::optim::Adam;
use crate::precision::Precision;
use crate::sampling::{self, SynthSource};
use anyhow::Context;
use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use realnet_data::layout::Category;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Salts that separate the random streams derived from the one seed.
const SALT_VAL_SPLIT: u64 = 0x5EED_0001;
const SALT_AFS: u64 = 0x5EED_0002;
const SALT_VAL_SYNTH: u64 = 0x5EED_0003;
const SALT_SHUFFLE: u64 = 0x5EED_0004;
const SALT_MEMORY: u64 = 0x5EED_0005;

pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    pub config: Config,
    pub source: SynthSource,
    pub weights: PathBuf,
    pub device: Device,
    pub resume: bool,
    /// Stop after this many steps in this invocation (tests of resume); the run stays resumable.
    pub stop_after: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub finished: bool,
    pub seconds: f64,
    pub skipped_files: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
}

/// A normal training image and its foreground mask, at network size.
pub struct TrainImage {
    pub path: PathBuf,
    /// Shared with the `self` anomaly source, which draws from the same images.
    pub rgb: Arc<RgbImage>,
    pub fg: GrayImage,
}

/// Everything the training loop reads.
struct Ctx<'a> {
    cfg: &'a Config,
    backbone: Backbone,
    /// The training steps' precision. The frozen backbone runs in f32 whatever it is: its bf16
    /// activations are 3–5 % RMS off f32's, and RealNet trained on them tested worse on f32
    /// features (bottle AUPRO −0.0037 against −0.0004 with f32 features cast once at RealNet's
    /// input, docs/performance.md).
    precision: Precision,
    mean: [f64; 3],
    std: [f64; 3],
    device: Device,
    synth: sampling::Sampler,
}

pub fn train(opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let cfg = &opts.config;
    let t0 = Instant::now();
    prepare_out(opts)?;
    let cat = Category::open(&opts.data)?;
    let (images, skipped) = load_train_images(&cat, cfg)?;
    let (fit, val) = split(
        images,
        cfg.train.val_fraction,
        cfg.train.seed ^ SALT_VAL_SPLIT,
    );
    tracing::info!(
        "{}: {} training images ({} held out for thresholds), {} skipped",
        cat.name,
        fit.len(),
        val.len(),
        skipped.len()
    );

    let kind =
        BackboneKind::parse(&cfg.model.backbone).map_err(|e| UserError::BadModel(e.to_string()))?;
    let backbone = Backbone::load(kind, &opts.weights, opts.device)?;
    let precision = cfg.train.precision().map_err(UserError::BadModel)?;
    crate::precision::warn_if_slow(precision, opts.device);
    let (mean, std) = kind.normalization();
    let synth = sampling::Sampler::new(
        &opts.source,
        cfg,
        &cat.root.join("train"),
        fit.iter().map(|t| (t.path.as_path(), &t.rgb)),
    )?;
    let ctx = Ctx {
        cfg,
        backbone,
        precision,
        mean,
        std,
        device: opts.device,
        synth,
    };

    // The networks' initial weights come from libtorch's generator: seed it, so the same data,
    // config and seed give the same model.
    tch::manual_seed(cfg.train.seed as i64);
    let mut vs = nn::VarStore::new(opts.device);
    let mut net = RealNet::new(&vs.root(), cfg);
    let params = vs.trainable_variables();
    let mut adam = Adam::new(&params, cfg.train.lr);
    let total = total_steps(cfg, fit.len());
    let lr_curve = crate::optim::LrCurve::new(
        cfg.train.lr,
        &cfg.train.lr_schedule,
        cfg.train.warmup_steps,
        total,
    );

    let ckpt = opts.out.join(bundle::CHECKPOINT);
    let mut step = 0;
    if opts.resume && ckpt.exists() {
        step = load_checkpoint(&opts.out, &vs, &mut adam)?;
        bundle::truncate_history(&opts.out.join(bundle::HISTORY), step)?;
        tracing::info!("resuming at step {step}/{total}");
    } else {
        let _ = std::fs::remove_file(opts.out.join(bundle::HISTORY));
        let idx = run_afs(&ctx, &fit)?;
        net.set_afs(&idx);
        tracing::info!(
            "AFS kept {:?} channels per block",
            idx.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    std::fs::write(opts.out.join(bundle::CONFIG), cfg.to_toml())?;
    crate::alloc::release_free_memory();

    let mut clean = clean_feature_cache(&ctx, &net, &fit);
    if step == 0 {
        // Unit RMS per block (see RealNet::scale); a resumed run has its scale in the checkpoint.
        let factor: Vec<f64> = clean
            .iter()
            .map(|c| {
                1.0 / c
                    .square()
                    .mean(Kind::Float)
                    .sqrt()
                    .double_value(&[])
                    .max(1e-12)
            })
            .collect();
        net.rescale(&factor);
        clean = clean.iter().zip(&factor).map(|(c, f)| c * *f).collect();
    }
    let clean = cfg.train.cache_clean_features.then_some(clean);
    let budget_end = opts.stop_after.map_or(total, |n| (step + n).min(total));
    let bar = crate::progress::bar((total) as u64, "train");
    bar.set_position(step as u64);
    let mut history = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.out.join(bundle::HISTORY))?;
    vs.unfreeze();
    let batch_size = cfg.train.batch_size as usize;
    let t_loop = Instant::now();
    let first = step;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // The data pipeline runs ahead in its own thread so the model never waits for synthesis.
        let (tx, rx) = std::sync::mpsc::sync_channel::<HostBatch>(2);
        let synth = &ctx.synth;
        let fit_ref = &fit;
        let seed = cfg.train.seed;
        scope.spawn(move || {
            for s in step..budget_end {
                let b = make_batch(synth, seed, fit_ref, s, batch_size);
                if tx.send(b).is_err() {
                    break;
                }
            }
        });
        while step < budget_end {
            let t_wait = Instant::now();
            let hb = rx.recv().context("data pipeline stopped")?;
            let t_step = Instant::now();
            let (losses, grads) = train_step(&ctx, &vs, &params, &net, &fit, clean.as_ref(), &hb);
            let (loss, ce, mse) = (losses.total, losses.ce, losses.mse);
            adam.lr = lr_curve.at(step);
            adam.step_with(&params, &grads);
            tracing::debug!(
                "step {}: waited {:.3} s for data, {:.3} s compute, loss {loss:.4}",
                step + 1,
                (t_step - t_wait).as_secs_f64(),
                t_step.elapsed().as_secs_f64()
            );
            step += 1;
            let ips = ((step - first) * batch_size) as f64 / t_loop.elapsed().as_secs_f64();
            bar.set_position(step as u64);
            bar.set_prefix(format!("loss {loss:.4} ({ips:.1} img/s)"));
            if step % 10 == 0 || step == budget_end {
                let line = serde_json::json!({
                    "step": step, "loss": loss, "ce": ce, "mse": mse, "lr": adam.lr,
                    "images_per_s": ips, "elapsed_s": t0.elapsed().as_secs_f64(),
                });
                writeln!(history, "{line}")?;
            }
            if step % cfg.train.checkpoint_every == 0 || step == budget_end {
                save_checkpoint(&opts.out, &vs, &adam, step)?;
            }
            if !loss.is_finite() {
                anyhow::bail!("training diverged at step {step} (loss {loss}); lower train.lr");
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    drop(history);
    let skipped_files: Vec<String> = skipped
        .iter()
        .map(|e| e.to_string())
        .chain(ctx.synth.skipped_sources())
        .collect();
    if step < total {
        return Ok(TrainSummary {
            steps: step,
            finished: false,
            seconds: t0.elapsed().as_secs_f64(),
            skipped_files,
        });
    }

    // What only the steps needed goes before the memory and validation passes allocate theirs.
    drop((clean, adam));
    crate::alloc::release_free_memory();
    vs.freeze();
    if cfg.model.memory.enabled {
        let t = Instant::now();
        let m = build_memory(&ctx, &fit);
        tracing::info!(
            "patch memory: {} patches kept ({:.1} s)",
            m.bank_size(),
            t.elapsed().as_secs_f64()
        );
        net.set_memory(m);
        crate::alloc::release_free_memory();
    }
    let fitted = validate(&ctx, &mut net, &val)?;
    let (threshold, memory_weight) = (fitted.threshold, fitted.choice);
    if fitted.score_pool != cfg.model.score_pool {
        tracing::info!(
            "image score: max of the {0}×{0} mean-pooled map (chosen on validation)",
            fitted.score_pool
        );
    }
    if let Some(c) = &memory_weight {
        tracing::info!(
            "patch memory fusion weight {} (image score {})",
            c.chosen,
            c.image_weight()
        );
    }
    let mut named = bundle::named_vars(&vs);
    named.extend(net.memory().map(PatchMemory::named).unwrap_or_default());
    bundle::save_tensors(&opts.out.join(bundle::MODEL), &named)?;
    let meta = Meta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        backbone: kind.name().into(),
        backbone_sha256: ctx.backbone.weights_sha256().map(str::to_string),
        backbone_weights: Some(
            std::fs::canonicalize(&opts.weights).unwrap_or(opts.weights.clone()),
        ),
        image_size: cfg.model.image_size,
        mean,
        std,
        score_pool: fitted.score_pool,
        score_pool_candidates: fitted.pool_candidates,
        category: cat.name.clone(),
        data: std::fs::canonicalize(&opts.data).unwrap_or(opts.data.clone()),
        seed: cfg.train.seed,
        steps: total,
        train_images: fit.len(),
        val_images: val.len(),
        train_seconds: t0.elapsed().as_secs_f64(),
        device: crate::device::describe(opts.device),
        threshold,
        memory_weight,
        calibration: None,
    };
    bundle::write_atomic(
        &opts.out.join(bundle::META),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    Ok(TrainSummary {
        steps: total,
        finished: true,
        seconds: t0.elapsed().as_secs_f64(),
        skipped_files,
    })
}

fn prepare_out(opts: &TrainOptions) -> anyhow::Result<()> {
    let out = &opts.out;
    bundle::open_run_dir(out, opts.resume)?;
    if opts.resume {
        if let Some(saved) = crate::config::saved_for_resume::<Config>(out)? {
            // A resumed run must continue the run that was started: another seed would change its
            // later batches, its validation split and its bank without a word.
            let diff = crate::config::resume_differences(&saved, &opts.config);
            if !diff.is_empty() {
                return Err(UserError::BadModel(format!(
                    "{}: the run was started with another configuration ({}); resume with the \
                     same preset, --config and --set values",
                    out.join(bundle::CONFIG).display(),
                    diff.join("; ")
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// Decodes the training images (in parallel); unreadable ones are reported and skipped.
fn load_train_images(
    cat: &Category,
    cfg: &Config,
) -> anyhow::Result<(Vec<TrainImage>, Vec<realnet_data::DataError>)> {
    if cat.train.is_empty() {
        return Err(UserError::BadInput(format!(
            "{}: no training images found (expected normal images under train/good or train/ok)",
            cat.root.display()
        ))
        .into());
    }
    let s = cfg.model.image_size as u32;
    let rule = sampling::foreground_rule(cfg, cat)?;
    let loaded = realnet_data::load::load_all(&cat.train, Some((s, s)));
    let mut skipped = Vec::new();
    let mut ok = Vec::new();
    for (sample, r) in cat.train.iter().zip(loaded) {
        match r {
            Ok(l) => ok.push((sample.path.clone(), l.image)),
            Err(e) => {
                tracing::warn!("skipping {e}");
                skipped.push(e);
            }
        }
    }
    if ok.len() < 4 {
        return Err(UserError::BadInput(format!(
            "{}: only {} readable training image(s); at least 4 are needed",
            cat.root.display(),
            ok.len()
        ))
        .into());
    }
    let images = ok
        .into_par_iter()
        .map(|(path, rgb)| {
            let fg = realnet_synth::foreground_mask(&rule, &rgb);
            TrainImage {
                path,
                rgb: Arc::new(rgb),
                fg,
            }
        })
        .collect();
    Ok((images, skipped))
}

/// Seeded split into (fit, held-out validation); at least 2 held out when a fraction is asked for.
pub fn split<T>(items: Vec<T>, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let n = items.len();
    let n_val = if fraction <= 0.0 {
        0
    } else {
        ((n as f64 * fraction).round() as usize)
            .clamp(2.min(n / 2), n.saturating_sub(2).max(2.min(n / 2)))
    };
    let order = sampling::permutation(n, seed);
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let mut val = Vec::with_capacity(n_val);
    let mut fit = Vec::with_capacity(n - n_val);
    for (rank, &i) in order.iter().enumerate() {
        if let Some(item) = slots[i].take() {
            if rank < n_val {
                val.push(item)
            } else {
                fit.push(item)
            }
        }
    }
    (fit, val)
}

pub fn total_steps(cfg: &Config, n_fit: usize) -> usize {
    if cfg.train.steps > 0 {
        cfg.train.steps
    } else {
        cfg.train.epochs * n_fit.div_ceil(cfg.train.batch_size as usize)
    }
}

/// Host-side batch from the data pipeline.
struct HostBatch {
    images: Vec<RgbImage>,
    masks: Vec<GrayImage>,
    /// Index into the fit images of each sample's clean source.
    sources: Vec<i64>,
}

/// The samples of step `step`: a stream over seeded epoch permutations; sample q is synthesised
/// from (seed, q) alone, so batches do not depend on threads or on where a run was resumed.
fn make_batch(
    synth: &sampling::Sampler,
    seed: u64,
    fit: &[TrainImage],
    step: usize,
    b: usize,
) -> HostBatch {
    let n = fit.len();
    let items: Vec<(RgbImage, GrayImage, i64)> = (0..b)
        .into_par_iter()
        .map(|j| {
            let q = (step * b + j) as u64;
            let epoch = q / n as u64;
            let perm = sampling::permutation(
                n,
                seed ^ SALT_SHUFFLE ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let src = perm[(q % n as u64) as usize];
            let img = &fit[src];
            let (image, mask) = synth.sample(&img.rgb, &img.fg, seed, q);
            (image, mask, src as i64)
        })
        .collect();
    let mut hb = HostBatch {
        images: Vec::with_capacity(b),
        masks: Vec::with_capacity(b),
        sources: Vec::with_capacity(b),
    };
    for (i, m, s) in items {
        hb.images.push(i);
        hb.masks.push(m);
        hb.sources.push(s);
    }
    hb
}

fn backbone_features(ctx: &Ctx, imgs: &[&RgbImage]) -> Vec<Tensor> {
    ctx.backbone.features(&input(ctx, imgs))
}

/// The normalised batch of `imgs` on the device.
fn input(ctx: &Ctx, imgs: &[&RgbImage]) -> Tensor {
    batch::images_to_tensor(imgs, ctx.mean, ctx.std, ctx.device)
}

/// One step's losses and gradients (of `params`, in their order).
fn train_step(
    ctx: &Ctx,
    vs: &nn::VarStore,
    params: &[Tensor],
    net: &RealNet,
    fit: &[TrainImage],
    clean: Option<&Vec<Tensor>>,
    hb: &HostBatch,
) -> (realnet::Losses, Vec<Tensor>) {
    let imgs: Vec<&RgbImage> = hb.images.iter().collect();
    let masks: Vec<&GrayImage> = hb.masks.iter().collect();
    let feats = tch::no_grad(|| net.select(&backbone_features(ctx, &imgs)));
    let clean_sel: Vec<Tensor> = match clean {
        Some(cache) => {
            let idx = Tensor::from_slice(&hb.sources).to_device(ctx.device);
            cache.iter().map(|c| c.index_select(0, &idx)).collect()
        }
        None => {
            let src: Vec<&RgbImage> = hb.sources.iter().map(|&i| &*fit[i as usize].rgb).collect();
            tch::no_grad(|| net.select(&backbone_features(ctx, &src)))
        }
    };
    let m = batch::masks_to_tensor(&masks, ctx.device);
    net.forward_backward(vs, params, &feats, &m, &clean_sel, ctx.precision)
}

/// AFS (spec §4.3): `afs_batches` batches of synthetic anomalies only, one pass for all blocks.
fn run_afs(ctx: &Ctx, fit: &[TrainImage]) -> anyhow::Result<Vec<Vec<i64>>> {
    let cfg = ctx.cfg;
    let n = fit.len();
    let b = cfg.train.batch_size as usize;
    let seed = cfg.train.seed ^ SALT_AFS;
    let mut scores: Option<AfsScores> = None;
    let synth = &ctx.synth;
    let bar = crate::progress::bar(cfg.train.afs_batches as u64, "AFS");
    for k in 0..cfg.train.afs_batches {
        let items: Vec<(RgbImage, GrayImage, usize)> = (0..b)
            .into_par_iter()
            .map(|j| {
                let q = (k * b + j) as u64;
                let perm = sampling::permutation(n, seed ^ (q / n as u64));
                let src = perm[(q % n as u64) as usize];
                let (img, mask) = synth.anomalous(&fit[src].rgb, &fit[src].fg, seed, q);
                (img, mask, src)
            })
            .collect();
        let anom: Vec<&RgbImage> = items.iter().map(|i| &i.0).collect();
        let clean: Vec<&RgbImage> = items.iter().map(|i| &*fit[i.2].rgb).collect();
        let masks: Vec<&GrayImage> = items.iter().map(|i| &i.1).collect();
        tch::no_grad(|| {
            let fa = backbone_features(ctx, &anom);
            let fc = backbone_features(ctx, &clean);
            let s = scores.get_or_insert_with(|| {
                let ch: Vec<i64> = fa.iter().map(|t| t.size()[1]).collect();
                AfsScores::new(&ch, ctx.device)
            });
            s.add_batch(&fa, &fc, &batch::masks_to_tensor(&masks, ctx.device));
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let scores = scores.context("AFS needs at least one batch (train.afs_batches)")?;
    let channels = ctx.backbone.kind().feature_channels();
    for (k, (&keep, &have)) in cfg.model.afs_keep.iter().zip(&channels).enumerate() {
        if keep > have {
            return Err(UserError::BadModel(format!(
                "model.afs_keep[{k}] = {keep}, but {} has only {have} channels at that stride",
                cfg.model.backbone
            ))
            .into());
        }
    }
    Ok(scores.select(&cfg.model.afs_keep))
}

/// The backbone's features of the fit images, 16 at a time, each batch handed to `f`.
fn over_fit<T>(ctx: &Ctx, fit: &[TrainImage], f: impl Fn(Vec<Tensor>) -> T) -> Vec<T> {
    fit.chunks(16)
        .map(|chunk| {
            let imgs: Vec<&RgbImage> = chunk.iter().map(|t| &*t.rgb).collect();
            tch::no_grad(|| f(backbone_features(ctx, &imgs)))
        })
        .collect()
}

/// AFS-selected features of every clean fit image, kept on the device (computed once; the
/// official code recomputes them every step).
fn clean_feature_cache(ctx: &Ctx, net: &RealNet, fit: &[TrainImage]) -> Vec<Tensor> {
    let parts = over_fit(ctx, fit, |f| net.select(&f));
    let blocks = parts.first().map_or(0, Vec::len);
    (0..blocks)
        .map(|k| Tensor::cat(&parts.iter().map(|p| &p[k]).collect::<Vec<_>>(), 0))
        .collect()
}

/// The patch memory's bank from the patches of every fit image (beyond the paper; `model.memory`).
/// Built after training: it depends only on the frozen backbone, and a resumed run builds it too.
fn build_memory(ctx: &Ctx, fit: &[TrainImage]) -> PatchMemory {
    let rows = over_fit(ctx, fit, |f| memory::rows(&memory::embed(&f)));
    PatchMemory::build(
        &Tensor::cat(&rows, 0),
        &ctx.cfg.model.memory,
        ctx.cfg.train.seed ^ SALT_MEMORY,
    )
}

/// Scores held-out normal images and synthetic anomalies made from them (`calibration::fit`): the
/// fusion balance from the normals, the weight (with `model.memory.auto_weight`) and the
/// F1-optimal thresholds, all set in `net` / returned.
fn validate(
    ctx: &Ctx,
    net: &mut RealNet,
    val: &[TrainImage],
) -> anyhow::Result<calibration::Fitted> {
    let cfg = ctx.cfg;
    let per = cfg.train.val_anomalies_per_image.max(1);
    let seed = cfg.train.seed ^ SALT_VAL_SYNTH;
    let synth = &ctx.synth;
    let mut items: Vec<Item> = val
        .iter()
        .map(|v| Item {
            image: (*v.rgb).clone(),
            anomalous: false,
            mask: None,
        })
        .collect();
    let synth: Vec<Item> = (0..val.len() * per)
        .into_par_iter()
        .map(|q| {
            let v = &val[q / per];
            let (image, mask) = synth.anomalous_nonempty(&v.rgb, &v.fg, seed, q as u64);
            Item {
                image,
                anomalous: true,
                mask: Some(mask),
            }
        })
        .collect();
    items.extend(synth);
    let mcfg = &cfg.model.memory;
    let weights = if mcfg.auto_weight {
        memory::weight_grid()
    } else {
        Vec::new()
    };
    let input = |imgs: &[&RgbImage]| input(ctx, imgs);
    let features = |x: &Tensor| ctx.backbone.features(x);
    let anomalies = format!(
        "synthetic anomalies on them (source {})",
        ctx.synth.val_source()
    );
    let plan = calibration::Plan {
        weights: &weights,
        memory: mcfg,
        score_pool: cfg.model.score_pool,
        pools: &cfg.model.score_pool_choices,
        blurs: &mcfg.blur_choices,
        keep_balance: None,
        source: calibration::Source {
            normals: "held-out normal images",
            anomalies: &anomalies,
        },
    };
    Ok(calibration::fit(net, &input, &features, &items, &plan))
}

fn save_checkpoint(out: &Path, vs: &nn::VarStore, adam: &Adam, step: usize) -> anyhow::Result<()> {
    let mut named = bundle::named_vars(vs);
    named.extend(adam.state());
    bundle::save_tensors(&out.join(bundle::CHECKPOINT), &named)?;
    let state = serde_json::to_string(&CheckpointState { step })?;
    bundle::write_atomic(&out.join(bundle::CHECKPOINT_STATE), state.as_bytes())?;
    Ok(())
}

fn load_checkpoint(out: &Path, vs: &nn::VarStore, adam: &mut Adam) -> anyhow::Result<usize> {
    let path = out.join(bundle::CHECKPOINT);
    let named = bundle::read_tensors(&path)?;
    bundle::load_vars(vs, &named, &path)?;
    adam.load_state(&named).ok_or_else(|| {
        UserError::BadModel(format!(
            "{}: optimiser state missing or mis-shaped",
            path.display()
        ))
    })?;
    // The step count lives in the tensor file itself, so the pair can never disagree.
    Ok(adam.step as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (fit, val) = split((0..20).collect(), 0.1, 7);
        assert_eq!(val.len(), 2);
        assert_eq!(fit.len(), 18);
        let mut all: Vec<i32> = fit.iter().chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        assert_eq!(split((0..20).collect::<Vec<i32>>(), 0.1, 7).1, val);
        assert_eq!(split((0..20).collect::<Vec<i32>>(), 0.0, 7).1.len(), 0);
    }
}
