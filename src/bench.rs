//! `realnet bench`: the measurements of `../shared/bench/torch_reference.py` on our networks, with
//! the same configurations, shapes, batch sizes, warm-up/median protocol, JSON keys and units, so
//! that both can run side by side on one machine (scripts/bench.sh, docs/performance.md).
//!
//! Everything is built from the library's own code: [`Backbone::random`], [`RealNet`] from a
//! [`Config`] with the reference's dimensions, [`DiffusionUNet`], [`crate::optim::Adam`],
//! `realnet_synth::perlin_mask` and `realnet_metrics::evaluate`. Weights are random (timing only).
use crate::config::Config;
use crate::model::backbone::{Backbone, BackboneKind};
use crate::model::realnet::{self, RealNet};
use crate::model::rrs::RrsConfig;
use crate::optim::Adam;
use crate::precision::Precision;
use crate::sdas::unet::{DiffusionUNet, UNetConfig};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The libtorch this crate is built against (tch 0.24; scripts/env.sh pins the same version).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// The reference's presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Paper,
    Small,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Preset> {
        match s {
            "paper" => Some(Preset::Paper),
            "small" => Some(Preset::Small),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Small => "small",
        }
    }

    pub fn backbone(self) -> BackboneKind {
        match self {
            Preset::Paper => BackboneKind::WideResNet50_2,
            Preset::Small => BackboneKind::MobileNetV2,
        }
    }

    /// Our [`Config`] with the reference's network dimensions. The RRS stack width is
    /// `top_max + top_mean` and the discriminator chain is (`rrs.hidden`, 32, 8) in our RRS, which
    /// is exactly the reference's `stack` / `disc_chain` for both presets.
    pub fn config(self) -> Config {
        let mut c = Config::paper();
        c.preset = self.name().into();
        if self == Preset::Small {
            c.model.backbone = "mobilenet_v2".into();
            c.model.afs_keep = vec![24, 32, 64, 128];
            c.model.recon_base = vec![32, 32, 64, 64];
            c.model.rrs = RrsConfig {
                top_max: 64,
                top_mean: 64,
                residual_layers: 2,
                hidden: 64,
            };
        }
        c
    }

    pub fn unet(self) -> UNetConfig {
        match self {
            Preset::Paper => UNetConfig::paper(15),
            Preset::Small => UNetConfig {
                image_size: 64,
                model_channels: 64,
                channel_mult: vec![1, 2, 2, 4],
                num_res_blocks: 2,
                attention_resolutions: vec![16, 8],
                num_head_channels: 64,
                num_classes: 15,
                // torch_reference.py's GroupNorm(32, C).
                norm_min_group_channels: 1,
            },
        }
    }

    pub fn train_batch(self) -> i64 {
        match self {
            Preset::Paper => 2,
            Preset::Small => 8,
        }
    }

    pub fn diff_batch(self) -> i64 {
        match self {
            Preset::Paper => 1,
            Preset::Small => 8,
        }
    }

    /// Default timed iterations (reference `PRESETS[...]["iters"]`).
    pub fn iters(self, what: What) -> usize {
        match (self, what) {
            (Preset::Paper, What::Infer) => 3,
            (Preset::Paper, What::Train | What::TrainCached) => 3,
            (Preset::Paper, What::Diffusion) => 2,
            (Preset::Small, What::Infer) => 10,
            (Preset::Small, What::Train | What::TrainCached) => 4,
            (Preset::Small, What::Diffusion) => 5,
            (_, What::Perlin) => 200,
            (_, What::Metrics) => 1,
        }
    }

    pub fn budget_s(self) -> f64 {
        match self {
            Preset::Paper => 120.0,
            Preset::Small => 20.0,
        }
    }
}

/// One kind of measurement. `TrainCached` is ours only: the training step with the clean images'
/// features taken from a cache (what `realnet train` does by default) instead of a second backbone
/// pass (what the reference, and the official trainer, do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Infer,
    Train,
    TrainCached,
    Diffusion,
    Perlin,
    Metrics,
}

impl What {
    pub fn name(self) -> &'static str {
        match self {
            What::Infer => "infer",
            What::Train => "train",
            What::TrainCached => "train_cached",
            What::Diffusion => "diffusion",
            What::Perlin => "perlin",
            What::Metrics => "metrics",
        }
    }

    pub fn parse(s: &str) -> Option<What> {
        Some(match s {
            "infer" => What::Infer,
            "train" => What::Train,
            "train_cached" => What::TrainCached,
            "diffusion" => What::Diffusion,
            "perlin" | "synth" => What::Perlin,
            "metrics" => What::Metrics,
            _ => return None,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            What::Infer => "s/image",
            What::Train | What::TrainCached => "s/step",
            What::Diffusion => "s/forward",
            What::Perlin => "s/mask",
            What::Metrics => "s/evaluation",
        }
    }

    fn default_warmup(self) -> usize {
        match self {
            What::Infer => 2,
            What::Train | What::TrainCached => 1,
            What::Diffusion => 1,
            What::Perlin => 5,
            What::Metrics => 0,
        }
    }
}

/// Options shared by every measurement (the reference's flags of the same names).
#[derive(Debug, Clone)]
pub struct Options {
    pub preset: Preset,
    pub iters: Option<usize>,
    pub warmup: Option<usize>,
    /// Cap on one measurement's timed loop (s); `Some(0.0)` = no cap.
    pub budget_s: Option<f64>,
    pub infer_batches: Option<Vec<i64>>,
    pub train_batch: Option<i64>,
    pub diff_batch: Option<i64>,
    pub seed: u64,
    pub device: Device,
    /// Precision of `infer`, of `diffusion` (the denoiser's weights and activations), and of
    /// `train`/`train_cached` (mixed: RealNet's passes in bf16, its master weights and the backbone
    /// f32); the other measurements are f32.
    pub precision: Precision,
    /// `infer` also times the backbone and the backbone + reconstruction alone ("phases_s").
    pub phases: bool,
}

impl Options {
    pub fn new(preset: Preset) -> Options {
        Options {
            preset,
            iters: None,
            warmup: None,
            budget_s: None,
            infer_batches: None,
            train_batch: None,
            diff_batch: None,
            seed: 0,
            device: Device::Cpu,
            precision: Precision::F32,
            phases: false,
        }
    }

    fn iters(&self, w: What) -> usize {
        self.iters.unwrap_or_else(|| self.preset.iters(w)).max(1)
    }

    fn warmup(&self, w: What) -> usize {
        self.warmup.unwrap_or_else(|| w.default_warmup())
    }

    fn budget(&self) -> Option<f64> {
        let b = self.budget_s.unwrap_or_else(|| self.preset.budget_s());
        (b > 0.0).then_some(b)
    }
}

/// One measurement: (what, batch), as the reference's `--_unit what:batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub what: What,
    pub batch: i64,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        let (w, b) = s.split_once(':')?;
        Some(Unit {
            what: What::parse(w)?,
            batch: b.parse().ok().filter(|&b: &i64| b >= 1)?,
        })
    }

    pub fn tag(&self) -> String {
        format!("{}:{}", self.what.name(), self.batch)
    }
}

/// Expands a `--what` value (`all`, `infer`, `train`, `diffusion`, `synth`/`perlin`, `metrics`) into
/// units, in the reference's order; `train` also gives our cached-features variant.
pub fn units(opts: &Options, what: &str) -> Option<Vec<Unit>> {
    let p = opts.preset;
    let whats: Vec<What> = match what {
        "all" => vec![
            What::Infer,
            What::Train,
            What::Diffusion,
            What::Perlin,
            What::Metrics,
        ],
        "pyref" => vec![What::Perlin, What::Metrics],
        w => vec![What::parse(w)?],
    };
    let mut out = Vec::new();
    for w in whats {
        match w {
            What::Infer => {
                let bs = opts.infer_batches.clone().unwrap_or_else(|| vec![1, 8]);
                out.extend(bs.into_iter().map(|batch| Unit { what: w, batch }));
            }
            What::Train | What::TrainCached => {
                let batch = opts.train_batch.unwrap_or_else(|| p.train_batch());
                if w == What::Train {
                    out.push(Unit { what: w, batch });
                }
                out.push(Unit {
                    what: What::TrainCached,
                    batch,
                });
            }
            What::Diffusion => out.push(Unit {
                what: w,
                batch: opts.diff_batch.unwrap_or_else(|| p.diff_batch()),
            }),
            What::Perlin => out.push(Unit { what: w, batch: 1 }),
            What::Metrics => out.push(Unit { what: w, batch: 83 }),
        }
    }
    Some(out)
}

/// Peak resident set of this process in MiB (`VmHWM` of /proc/self/status; 0 where unavailable).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// The reference's `time_calls`: `warmup` untimed calls, then up to `iters` timed ones; stops early
/// (after ≥ 1 timed call) when the next call would likely push the timed loop past `budget_s`.
pub fn time_calls(
    mut f: impl FnMut(),
    warmup: usize,
    iters: usize,
    budget_s: Option<f64>,
) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    let mut ts = Vec::with_capacity(iters);
    let begin = Instant::now();
    for i in 0..iters {
        let t0 = Instant::now();
        f();
        let dt = t0.elapsed().as_secs_f64();
        ts.push(dt);
        if let Some(b) = budget_s {
            if i + 1 < iters && begin.elapsed().as_secs_f64() + dt > b {
                break;
            }
        }
    }
    ts
}

/// Times a forward pass whose first call (the shape check) already ran, counting it as one of the
/// reference's warm-up calls for `what`. Returns the times, the warm-up and the iteration count.
fn time_forward<T>(opts: &Options, what: What, fwd: impl Fn() -> T) -> (Vec<f64>, usize, usize) {
    let warmup = opts.warmup(what);
    let iters = opts.iters(what);
    let times = time_calls(
        || {
            let _ = fwd();
            wait_for(opts.device);
        },
        warmup.saturating_sub(1),
        iters,
        opts.budget(),
    );
    (times, warmup, iters)
}

/// CUDA kernels run asynchronously: without this a timed forward would measure only the launches.
/// (The training step needs none: it reads its loss back to the host.)
pub fn wait_for(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// The common keys of every record (the reference's `result`).
fn record(
    opts: &Options,
    unit: Unit,
    times: &[f64],
    per: f64,
    params: i64,
    iters_requested: usize,
    warmup: usize,
) -> Map<String, Value> {
    let per_t: Vec<f64> = times.iter().map(|t| t / per).collect();
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("config", json!(opts.preset.name()));
    put("what", json!(unit.what.name()));
    put("batch", json!(unit.batch));
    put("median_s", json!(median(&per_t)));
    put(
        "min_s",
        json!(per_t.iter().copied().fold(f64::INFINITY, f64::min)),
    );
    put(
        "max_s",
        json!(per_t.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
    );
    put("threads", json!(tch::get_num_threads()));
    put("torch_version", json!(LIBTORCH_VERSION));
    put("params", json!(params));
    put("unit", json!(unit.what.unit()));
    put("iters", json!(times.len()));
    put("warmup", json!(warmup));
    put("attn", json!("matmul"));
    put("impl", json!("realnet"));
    // The reference measures f32 only; a bf16 inference or training record says so.
    if matches!(
        unit.what,
        What::Infer | What::Train | What::TrainCached | What::Diffusion
    ) && opts.precision != Precision::F32
    {
        put("precision", json!(opts.precision.name()));
    }
    if iters_requested != times.len() {
        put("iters_requested", json!(iters_requested));
    }
    m
}

/// Runs one measurement in this process and returns its JSON record (with `peak_rss_mib`).
pub fn run_unit(opts: &Options, unit: Unit) -> anyhow::Result<Value> {
    if matches!(unit.what, What::Infer | What::Train | What::TrainCached) {
        // As `realnet train`/`test`/`predict` run the detector (crate::alloc).
        crate::alloc::reuse_large_blocks();
    }
    let mut m = match unit.what {
        What::Infer => measure_infer(opts, unit)?,
        What::Train | What::TrainCached => measure_train(opts, unit)?,
        What::Diffusion => measure_diffusion(opts, unit)?,
        What::Perlin => measure_perlin(opts, unit),
        What::Metrics => measure_metrics(opts, unit)?,
    };
    m.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
    Ok(Value::Object(m))
}

fn count(vars: &[(String, Tensor)], pred: impl Fn(&str) -> bool) -> i64 {
    vars.iter()
        .filter(|(n, t)| t.requires_grad() && pred(n))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

/// Parameters of the backbone as PyTorch counts them (before BatchNorm folding, no classifier).
pub fn backbone_params(kind: BackboneKind) -> i64 {
    kind.expected_tensors()
        .iter()
        .filter(|e| {
            !e.optional
                && !e.name.ends_with("running_mean")
                && !e.name.ends_with("running_var")
                && !e.name.ends_with("num_batches_tracked")
        })
        .map(|e| e.shape.iter().product::<i64>())
        .sum()
}

/// The RealNet of a preset: random frozen backbone, random ascending AFS indices, random weights.
pub struct Model {
    pub backbone: Backbone,
    pub vs: nn::VarStore,
    pub net: RealNet,
    pub table: Value,
    pub total: i64,
    pub trainable: i64,
}

/// The model in `precision` (a bf16 training step casts per step: see `measure_train`).
pub fn build_model(opts: &Options, precision: Precision) -> Model {
    let p = opts.preset;
    let cfg = p.config();
    let kind = p.backbone();
    let backbone = Backbone::random_as(kind, opts.device, opts.seed as i64, precision);
    tch::manual_seed(opts.seed as i64);
    let vs = nn::VarStore::new(opts.device);
    let net = RealNet::new(&vs.root(), &cfg);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let idx: Vec<Vec<i64>> = kind
        .feature_channels()
        .iter()
        .zip(&cfg.model.afs_keep)
        .map(|(&c, &keep)| {
            let mut all: Vec<i64> = (0..c).collect();
            for i in 0..keep as usize {
                let j = rng.gen_range(i..c as usize);
                all.swap(i, j);
            }
            let mut v = all[..keep as usize].to_vec();
            v.sort_unstable();
            v
        })
        .collect();
    net.set_afs(&idx);
    realnet::cast_networks(&vs, precision);
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let recon: Vec<i64> = (0..4)
        .map(|k| count(&vars, |n| n.starts_with(&format!("recon.{k}."))))
        .collect();
    let head = count(&vars, |n| n.starts_with("rrs."));
    let trainable = count(&vars, |_| true);
    let bb = backbone_params(kind);
    let table = json!({"backbone": bb, "recon": recon, "head": head, "trainable": trainable,
                       "total": bb + trainable});
    Model {
        backbone,
        vs,
        net,
        table,
        total: bb + trainable,
        trainable,
    }
}

fn randn(shape: &[i64], device: Device) -> Tensor {
    Tensor::randn(shape, (Kind::Float, device))
}

fn measure_infer(opts: &Options, unit: Unit) -> anyhow::Result<Map<String, Value>> {
    let model = build_model(opts, opts.precision);
    let b = unit.batch;
    let size = opts.preset.config().model.image_size;
    let pool = opts.preset.config().model.score_pool;
    let x = randn(&[b, 3, size, size], opts.device);
    let backbone = |x: &Tensor| model.backbone.features(x);
    let fwd = || model.net.maps_and_scores(&x, &backbone, pool);
    let (maps, scores) = fwd();
    anyhow::ensure!(
        maps.size() == [b, size, size] && scores.size() == [b],
        "unexpected output shapes {:?} {:?}",
        maps.size(),
        scores.size()
    );
    let (times, warmup, iters) = time_forward(opts, What::Infer, fwd);
    let mut m = record(opts, unit, &times, b as f64, model.total, iters, warmup);
    m.insert("batch_median_s".into(), json!(median(&times)));
    m.insert("params_detail".into(), model.table.clone());
    if opts.phases {
        // Prefixes of the forward, each timed as the whole (its own warm-up and median): the
        // differences say where the time goes.
        let backbone = || tch::no_grad(|| model.backbone.features(&x));
        let recon = || {
            tch::no_grad(|| {
                let feats = model.backbone.features(&x);
                model.net.reconstruct(&model.net.select(&feats))
            })
        };
        let per = |t: &[f64]| median(t) / b as f64;
        let t_backbone = per(&time_forward(opts, What::Infer, backbone).0);
        let t_recon = per(&time_forward(opts, What::Infer, recon).0);
        let t_all = per(&times);
        m.insert(
            "phases_s".into(),
            json!({
                "backbone": t_backbone,
                "afs_recon_residuals": t_recon - t_backbone,
                "rrs_discriminator_maps_scores": t_all - t_recon,
            }),
        );
    }
    Ok(m)
}

fn measure_train(opts: &Options, unit: Unit) -> anyhow::Result<Map<String, Value>> {
    // bf16 training is mixed precision, as `realnet train`: the frozen backbone in f32, RealNet's
    // passes on bf16 copies of its f32 master weights.
    let mut model = build_model(opts, Precision::F32);
    let b = unit.batch;
    let cached = unit.what == What::TrainCached;
    let size = opts.preset.config().model.image_size;
    let x_anom = randn(&[b, 3, size, size], opts.device);
    let x_clean = randn(&[b, 3, size, size], opts.device);
    let mask = Tensor::rand([b, 1, size, size], (Kind::Float, opts.device))
        .gt(0.5)
        .to_kind(Kind::Float);
    model.vs.unfreeze();
    let params = model.vs.trainable_variables();
    let mut adam = Adam::new(&params, 1e-4);
    let net = &model.net;
    let bb = &model.backbone;
    let vs = &model.vs;
    let clean_features = || tch::no_grad(|| net.select(&bb.features(&x_clean)));
    // `realnet train`'s cache holds the clean features of every training image; the step gathers
    // the batch's rows from it (index_select), as here.
    let cache: Option<Vec<Tensor>> = cached.then(clean_features);
    let rows = Tensor::arange(b, (Kind::Int64, opts.device));
    let mut losses = Vec::new();
    // The step's inputs: the anomalous batch's features and the clean ones (MSE targets).
    let inputs = || {
        let feats = tch::no_grad(|| net.select(&bb.features(&x_anom)));
        let clean: Vec<Tensor> = match &cache {
            Some(c) => c.iter().map(|t| t.index_select(0, &rows)).collect(),
            None => clean_features(),
        };
        (feats, clean)
    };
    let mut step = || {
        let (feats, clean) = inputs();
        let (l, grads) = net.forward_backward(vs, &params, &feats, &mask, &clean, opts.precision);
        adam.step_with(&params, &grads);
        losses.push(l.total);
    };
    let warmup = opts.warmup(unit.what);
    let iters = opts.iters(unit.what);
    let times = time_calls(&mut step, warmup, iters, opts.budget());
    anyhow::ensure!(
        losses.iter().all(|l| l.is_finite()),
        "non-finite loss {losses:?}"
    );
    let mut m = record(opts, unit, &times, 1.0, model.total, iters, warmup);
    if opts.phases && opts.precision == Precision::F32 {
        // Prefixes of the step (f32), each timed on its own as the whole: the backbone + AFS pass(es),
        // then also RealNet's forward and loss, then also the backward (the rest is Adam).
        let forward = || {
            let (feats, clean) = inputs();
            let out = net.forward_t(&feats, true);
            realnet::loss(&out, &mask, &clean).0.double_value(&[])
        };
        let fwd_bwd = || {
            let (feats, clean) = inputs();
            net.forward_backward(vs, &params, &feats, &mask, &clean, opts.precision)
        };
        let t = |f: &mut dyn FnMut()| median(&time_calls(f, warmup, iters, opts.budget()));
        let t_features = t(&mut || {
            inputs();
        });
        let t_forward = t(&mut || {
            forward();
        });
        let t_fwd_bwd = t(&mut || {
            fwd_bwd();
        });
        m.insert(
            "phases_s".into(),
            json!({
                "backbone_afs": t_features,
                "realnet_forward_loss": t_forward - t_features,
                "backward": t_fwd_bwd - t_forward,
                "adam_and_rest": median(&times) - t_fwd_bwd,
            }),
        );
    }
    m.insert("trainable_params".into(), json!(model.trainable));
    m.insert("last_loss".into(), json!(losses.last().copied()));
    m.insert("params_detail".into(), model.table.clone());
    m.insert(
        "clean_features".into(),
        json!(if cached { "cached" } else { "recomputed" }),
    );
    Ok(m)
}

fn measure_diffusion(opts: &Options, unit: Unit) -> anyhow::Result<Map<String, Value>> {
    let cfg = opts.preset.unet();
    tch::manual_seed(opts.seed as i64);
    let vs = nn::VarStore::new(opts.device);
    let net = DiffusionUNet::new(&vs.root(), &cfg);
    let npar: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    // As `sdas sample --precision bf16`: bf16 weights, the forward casts its input.
    opts.precision.cast_vars(&vs, &[]);
    let b = unit.batch;
    let s = cfg.image_size;
    let x = randn(&[b, 3, s, s], opts.device);
    let t = Tensor::randint(1000, [b], (Kind::Int64, opts.device));
    let y = Tensor::randint(cfg.num_classes.max(1), [b], (Kind::Int64, opts.device));
    let fwd = || tch::no_grad(|| net.forward(&x, &t, Some(&y)));
    let out = fwd();
    anyhow::ensure!(
        out.size() == [b, 6, s, s],
        "unexpected denoiser output {:?}",
        out.size()
    );
    let (times, warmup, iters) = time_forward(opts, What::Diffusion, fwd);
    let mut m = record(opts, unit, &times, 1.0, npar, iters, warmup);
    m.insert("image".into(), json!(s));
    m.insert("per_image_s".into(), json!(median(&times) / b as f64));
    Ok(m)
}

fn measure_perlin(opts: &Options, unit: Unit) -> Map<String, Value> {
    use realnet_synth::perlin::{perlin_noise, rotate_bilinear};
    use realnet_synth::{perlin_mask, PerlinParams};
    let p = PerlinParams::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let n = opts.iters(What::Perlin);
    let warmup = opts.warmup(What::Perlin);
    let mut cover = Vec::new();
    let t_all = Instant::now();
    let times = time_calls(
        || {
            let m = perlin_mask(&mut rng, 256, 256, &p);
            cover.push(m.iter().filter(|&&v| v != 0).count() as f64 / 65536.0);
        },
        warmup,
        n,
        None,
    );
    let wall = t_all.elapsed().as_secs_f64();
    let (mut t_noise, mut t_rot) = (Vec::new(), Vec::new());
    for _ in 0..n.min(50) {
        let t0 = Instant::now();
        let ry = 1usize << rng.gen_range(0..6u32);
        let rx = 1usize << rng.gen_range(0..6u32);
        let z = perlin_noise(&mut rng, 256, 256, ry, rx);
        let t1 = Instant::now();
        let r = rotate_bilinear(&z, 256, 256, rng.gen_range(-90.0..90.0));
        let above = r.iter().filter(|&&v| v > 0.5).count();
        std::hint::black_box(above);
        t_noise.push((t1 - t0).as_secs_f64());
        t_rot.push(t1.elapsed().as_secs_f64());
    }
    let mut m = record(opts, unit, &times, 1.0, 0, n, warmup);
    let med = median(&times);
    m.insert("python_reference".into(), json!(false));
    m.insert("masks_per_s".into(), json!(1.0 / med));
    m.insert(
        "masks_per_s_mean".into(),
        json!(times.len() as f64 / times.iter().sum::<f64>()),
    );
    m.insert("noise_median_s".into(), json!(median(&t_noise)));
    m.insert("rotate_threshold_median_s".into(), json!(median(&t_rot)));
    m.insert(
        "mean_coverage".into(),
        json!(cover.iter().sum::<f64>() / cover.len().max(1) as f64),
    );
    m.insert("size".into(), json!(256));
    m.insert("wall_s".into(), json!((wall * 100.0).round() / 100.0));
    m
}

/// The reference's `make_eval_set` recipe with our Perlin generator: ~60 % anomalous images with
/// Perlin GT masks (scales 2^2..2^5, half of them multiplied by a coarse mask), maps =
/// 0.55·U(0,1) + 0.45·mask·U(0,1) per image. Same statistics, not the same numbers (the reference
/// draws from numpy's PCG64).
pub fn make_eval_set(
    n: usize,
    size: u32,
    seed: u64,
) -> Result<Vec<realnet_metrics::Scored>, realnet_metrics::MetricsError> {
    use realnet_synth::{perlin_mask, PerlinParams};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let fine = PerlinParams {
        min_scale: 2,
        max_scale: 6,
        ..Default::default()
    };
    let coarse = PerlinParams {
        min_scale: 0,
        max_scale: 2,
        ..Default::default()
    };
    let px = (size * size) as usize;
    let masks: Vec<Option<Vec<bool>>> = (0..n)
        .map(|_| {
            if rng.gen::<f64>() >= 0.6 {
                return None;
            }
            let m = perlin_mask(&mut rng, size, size, &fine);
            let mut v: Vec<bool> = m.iter().map(|&p| p != 0).collect();
            if rng.gen::<f64>() < 0.5 {
                let c = perlin_mask(&mut rng, size, size, &coarse);
                for (a, &b) in v.iter_mut().zip(c.iter()) {
                    *a = *a && b != 0;
                }
            }
            v.iter().any(|&b| b).then_some(v)
        })
        .collect();
    let gains: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
    masks
        .into_iter()
        .zip(gains)
        .enumerate()
        .map(|(i, (mask, g))| {
            let data: Vec<f32> = (0..px)
                .map(|p| {
                    let on = mask.as_ref().is_some_and(|m| m[p]) as u8 as f64;
                    (0.55 * rng.gen::<f64>() + 0.45 * on * g) as f32
                })
                .collect();
            let defect = if mask.is_some() { "perlin" } else { "good" };
            Ok(realnet_metrics::Scored {
                defect: defect.into(),
                name: format!("{defect}/{i:03}"),
                map: realnet_metrics::Map::new(size as usize, size as usize, data)?,
                mask,
                image_score: 0.0,
            })
        })
        .collect()
}

fn measure_metrics(opts: &Options, unit: Unit) -> anyhow::Result<Map<String, Value>> {
    use realnet_metrics::{evaluate, region_count, ImageScore};
    let mut items = make_eval_set(unit.batch as usize, 256, opts.seed)?;
    let n_regions: usize = items
        .iter()
        .filter_map(|it| it.mask.as_ref())
        .map(|m| region_count(m, 256))
        .sum();
    let (mut t_score, mut t_eval) = (Vec::new(), Vec::new());
    let mut report = None;
    let warmup = opts.warmup(What::Metrics);
    let iters = opts.iters(What::Metrics);
    let mut err = None;
    let times = time_calls(
        || {
            let t0 = Instant::now();
            for it in items.iter_mut() {
                it.image_score = ImageScore::REALNET.apply(&it.map);
            }
            let t1 = Instant::now();
            match evaluate(&items) {
                Ok(r) => report = Some(r),
                Err(e) => err = Some(e),
            }
            t_score.push((t1 - t0).as_secs_f64());
            t_eval.push(t1.elapsed().as_secs_f64());
        },
        warmup,
        iters,
        None,
    );
    if let Some(e) = err {
        return Err(e.into());
    }
    let r = report.ok_or_else(|| anyhow::anyhow!("no evaluation ran"))?;
    let o = &r.overall;
    let mut m = record(opts, unit, &times, 1.0, 0, iters, warmup);
    m.insert("python_reference".into(), json!(false));
    m.insert("image_score_s".into(), json!(median(&t_score[warmup..])));
    m.insert("evaluate_s".into(), json!(median(&t_eval[warmup..])));
    m.insert(
        "values".into(),
        json!({"image_auroc": o.image_auroc, "pixel_auroc": o.pixel_auroc, "aupro_0.3": o.aupro,
               "pixel_ap": o.pixel_ap, "n_regions": n_regions}),
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_backbone_endpoints_and_param_counts_match_the_reference() {
        // torch_reference.py: mobilenet_v2 features 2,223,872; wide_resnet50_2 66,834,240.
        assert_eq!(backbone_params(BackboneKind::MobileNetV2), 2_223_872);
        assert_eq!(backbone_params(BackboneKind::WideResNet50_2), 66_834_240);
        assert_eq!(
            BackboneKind::MobileNetV2.feature_channels(),
            [24, 32, 96, 1280]
        );
        let names = crate::model::backbone::feature_endpoints(BackboneKind::MobileNetV2);
        assert_eq!(
            names,
            ["features.3", "features.6", "features.13", "features.18"].map(String::from)
        );
    }

    #[test]
    fn units_follow_the_reference() {
        let o = Options::new(Preset::Small);
        let u: Vec<String> = units(&o, "all").unwrap().iter().map(Unit::tag).collect();
        assert_eq!(
            u,
            [
                "infer:1",
                "infer:8",
                "train:8",
                "train_cached:8",
                "diffusion:8",
                "perlin:1",
                "metrics:83"
            ]
        );
        assert_eq!(Unit::parse("synth:1").map(|u| u.what), Some(What::Perlin));
        assert!(Unit::parse("infer:0").is_none());
        assert!(units(&o, "bogus").is_none());
    }

    /// The reference's JSON keys for a denoiser record (tiny run: batch 1, one timed call).
    #[test]
    fn diffusion_record_has_the_reference_keys() {
        let mut o = Options::new(Preset::Small);
        o.iters = Some(1);
        o.warmup = Some(1);
        let r = run_unit(
            &o,
            Unit {
                what: What::Diffusion,
                batch: 1,
            },
        )
        .unwrap();
        for k in [
            "config",
            "what",
            "batch",
            "median_s",
            "min_s",
            "max_s",
            "threads",
            "torch_version",
            "params",
            "unit",
            "iters",
            "warmup",
            "peak_rss_mib",
            "attn",
            "image",
            "per_image_s",
        ] {
            assert!(r.get(k).is_some(), "missing key {k} in {r}");
        }
        assert_eq!(r["what"], "diffusion");
        assert_eq!(r["unit"], "s/forward");
        assert_eq!(r["image"], 64);
        // torch_reference.py --config small: SDAS denoiser 21,061,958 parameters.
        assert_eq!(r["params"], 21_061_958);
    }

    /// The small preset's trainable parts have the reference's parameter counts.
    #[test]
    fn small_realnet_parameter_counts_match_the_reference() {
        let m = build_model(&Options::new(Preset::Small), Precision::F32);
        assert_eq!(
            m.table["recon"],
            json!([3_227_864, 3_232_480, 12_901_824, 12_975_616])
        );
        assert_eq!(m.table["head"], 422_742);
        assert_eq!(m.trainable, 32_760_526);
    }
}
