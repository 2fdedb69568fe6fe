//! `realnet bench`: the measurements of `../shared/bench/torch_reference.py` on our code (same
//! configurations, shapes, batches, warm-up/median protocol, JSON keys and units). Like the
//! reference, every measurement runs in its own child process (this binary again, with the hidden
//! `--unit`), so each `peak_rss_mib` is that measurement's own.
use clap::Args;
use realnet::bench::{self, Options, Preset, Unit};
use realnet::error::UserError;
use std::process::{Command, Stdio};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// paper (WRN-50-2, the official dimensions) or small (MobileNetV2, the reference's light preset).
    #[arg(long, default_value = "paper")]
    pub config: String,
    /// all, infer, train (also gives our cached-clean-features variant), diffusion, synth (= perlin),
    /// metrics.
    #[arg(long, default_value = "all")]
    pub what: String,
    /// One JSON object per measurement on stdout (logs go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Timed iterations of every selected measurement (default per config, as the reference).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Warm-up calls (default: infer 2, train 1, diffusion 1, perlin 5, metrics 0).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Cap (s) on one measurement's timed loop, ≥ 1 timed call kept (default 120 paper / 20 small;
    /// 0 = no cap).
    #[arg(long)]
    pub budget_s: Option<f64>,
    /// Inference batch sizes, comma-separated (default 1,8).
    #[arg(long, value_delimiter = ',')]
    pub infer_batches: Option<Vec<i64>>,
    /// Training batch (default 2 paper / 8 small).
    #[arg(long)]
    pub train_batch: Option<i64>,
    /// Denoiser batch (default 1 paper / 8 small).
    #[arg(long)]
    pub diff_batch: Option<i64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `infer` records also carry "phases_s": seconds per image in the backbone, in AFS +
    /// reconstruction + residuals, and in RRS + discriminator + maps + scores (each prefix of the
    /// forward timed on its own, as the whole); `train` records the same for the step: backbone
    /// + AFS, RealNet's forward and loss, backward, and Adam with the rest.
    #[arg(long)]
    pub phases: bool,
    /// Run every measurement in this process (peak RSS then accumulates).
    #[arg(long)]
    pub in_process: bool,
    /// Internal: run one measurement `what:batch` and print its JSON record.
    #[arg(long, hide = true)]
    pub unit: Option<String>,
}

pub fn run(a: BenchArgs, g: &super::Global) -> anyhow::Result<i32> {
    let bad = |m: String| -> anyhow::Error { UserError::BadInput(m).into() };
    let preset = Preset::parse(&a.config)
        .ok_or_else(|| bad(format!("--config '{}': use paper or small", a.config)))?;
    if [a.train_batch, a.diff_batch]
        .iter()
        .flatten()
        .chain(a.infer_batches.iter().flatten())
        .any(|&b| b < 1)
    {
        return Err(bad("batch sizes must be ≥ 1".into()));
    }
    if a.train_batch == Some(1) {
        return Err(bad(
            "--train-batch must be ≥ 2 (BatchNorm in training mode)".into(),
        ));
    }
    let opts = Options {
        preset,
        iters: a.iters,
        warmup: a.warmup,
        budget_s: a.budget_s,
        infer_batches: a.infer_batches.clone(),
        train_batch: a.train_batch,
        diff_batch: a.diff_batch,
        seed: a.seed,
        device: realnet::device::parse_device(&g.device)?,
        precision: g.precision()?,
        phases: a.phases,
    };
    if let Some(u) = &a.unit {
        let unit = Unit::parse(u).ok_or_else(|| bad(format!("--unit '{u}'")))?;
        let r = bench::run_unit(&opts, unit)?;
        println!("{r}");
        return Ok(0);
    }
    let units = bench::units(&opts, &a.what).ok_or_else(|| {
        bad(format!(
            "--what '{}': use all, infer, train, diffusion, synth, metrics",
            a.what
        ))
    })?;
    // Once, here: each measurement's child process runs the `--unit` branch above.
    realnet::precision::warn_if_slow(opts.precision, opts.device);
    eprintln!(
        "realnet bench: config={} threads={} libtorch={} device={}",
        preset.name(),
        tch::get_num_threads(),
        bench::LIBTORCH_VERSION,
        realnet::device::describe(opts.device)
    );
    let exe = std::env::current_exe()?;
    let t0 = std::time::Instant::now();
    let mut rc = 0;
    for unit in units {
        let r: serde_json::Value = if a.in_process {
            bench::run_unit(&opts, unit)?
        } else {
            let mut cmd = Command::new(&exe);
            cmd.args(["--device", &g.device, "--precision", opts.precision.name()]);
            if let Some(t) = g.threads {
                cmd.args(["--threads", &t.to_string()]);
            }
            cmd.args(["bench", "--config", preset.name(), "--unit", &unit.tag()]);
            cmd.args(["--seed", &a.seed.to_string()]);
            if a.phases {
                cmd.arg("--phases");
            }
            for (flag, v) in [
                ("--iters", a.iters.map(|v| v.to_string())),
                ("--warmup", a.warmup.map(|v| v.to_string())),
                ("--budget-s", a.budget_s.map(|v| v.to_string())),
            ] {
                if let Some(v) = v {
                    cmd.args([flag, &v]);
                }
            }
            let out = cmd.stderr(Stdio::inherit()).output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            match text
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .and_then(|l| serde_json::from_str(l).ok())
            {
                Some(v) if out.status.success() => v,
                _ => {
                    eprintln!("!! {} failed ({})", unit.tag(), out.status);
                    rc = 1;
                    continue;
                }
            }
        };
        if a.json {
            println!("{r}");
        } else {
            println!("{}", human(&r));
        }
    }
    eprintln!("total wall time {:.1}s", t0.elapsed().as_secs_f64());
    Ok(rc)
}

fn human(r: &serde_json::Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let mut s = format!(
        "{:5} {:12} batch {:3}: median {:.4} {}  (min {:.4}, max {:.4}; {} timed, {} warm-up)  peak RSS {:.0} MiB  threads {}",
        r["config"].as_str().unwrap_or(""),
        r["what"].as_str().unwrap_or(""),
        r["batch"],
        f("median_s"),
        r["unit"].as_str().unwrap_or(""),
        f("min_s"),
        f("max_s"),
        r["iters"],
        r["warmup"],
        f("peak_rss_mib"),
        r["threads"]
    );
    match r["what"].as_str().unwrap_or("") {
        "infer" => {
            s += &format!(
                "  | {:.2} images/s, {:.3} s/batch",
                1.0 / f("median_s"),
                f("batch_median_s")
            )
        }
        "train" | "train_cached" => {
            s += &format!(
                "  | loss {:.3}, clean features {}",
                f("last_loss"),
                r["clean_features"].as_str().unwrap_or("")
            )
        }
        "diffusion" => s += &format!("  | {} px, {:.3} s/image", r["image"], f("per_image_s")),
        "perlin" => {
            s += &format!(
                "  | {:.1} masks/s (noise {:.2} ms, rotate+threshold {:.2} ms)",
                f("masks_per_s"),
                f("noise_median_s") * 1e3,
                f("rotate_threshold_median_s") * 1e3
            )
        }
        "metrics" => s += &format!("  | values {}", r["values"]),
        _ => {}
    }
    s
}
