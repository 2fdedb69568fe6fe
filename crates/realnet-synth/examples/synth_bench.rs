//! Throughput and Perlin statistics of realnet-synth, for scripts/bench_synth.sh.
//!
//!   cargo run --release -p realnet-synth --example bench -- bench [SECONDS] [TEXTURES_DIR]
//!   cargo run --release -p realnet-synth --example bench -- stats N [SEED]
//!
//! `bench` runs on ONE thread: masks/s, blended samples/s with a cached 256² SIA-style source
//! (the work the Python reference does), and for information textures (+3 augmentations) and
//! procedural sources. `stats` prints the coverage distribution of N Perlin masks as JSON.
use image::{GrayImage, RgbImage};
use rand::Rng;
use realnet_synth::{
    perlin_mask, sample_rng, PerlinParams, SourceSpec, SynthConfig, Synthesizer, WeightedSource,
};
use std::time::Instant;

fn rate(seconds: f64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..3 {
        f(i);
    }
    let (mut n, t0) = (0u64, Instant::now());
    while t0.elapsed().as_secs_f64() < seconds {
        f(n + 3);
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // numpy's default (linear) quantile.
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("bench");
    if mode == "stats" {
        let n: u64 = args
            .get(1)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(10_000);
        let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
        let p = PerlinParams::default();
        let mut cov: Vec<f64> = (0..n)
            .map(|i| {
                let m = perlin_mask(&mut sample_rng(seed, i), 256, 256, &p);
                m.iter().filter(|&&v| v != 0).count() as f64 / 65536.0
            })
            .collect();
        let mean = cov.iter().sum::<f64>() / n as f64;
        let std = (cov.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let empty = cov.iter().filter(|&&c| c == 0.0).count() as f64 / n as f64;
        cov.sort_by(|a, b| a.total_cmp(b));
        let q = |x| quantile(&cov, x);
        println!(
            "{{\"impl\": \"rust\", \"n\": {n}, \"mean\": {mean}, \"std\": {std}, \"empty\": {empty}, \"q10\": {}, \"q25\": {}, \"q50\": {}, \"q75\": {}, \"q90\": {}, \"q99\": {}}}",
            q(0.1), q(0.25), q(0.5), q(0.75), q(0.9), q(0.99)
        );
        return Ok(());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()?;
    let seconds: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let textures = args.get(2).cloned();
    let p = PerlinParams::default();
    let masks = rate(seconds, |i| {
        std::hint::black_box(perlin_mask(&mut sample_rng(0, i), 256, 256, &p));
    });

    // Inputs as in the Python reference: random base and source, foreground without 32 columns.
    let mut r = sample_rng(1, 0);
    let base = RgbImage::from_fn(256, 256, |_, _| image::Rgb([r.gen(), r.gen(), r.gen()]));
    let src = RgbImage::from_fn(256, 256, |_, _| image::Rgb([r.gen(), r.gen(), r.gen()]));
    let fg = GrayImage::from_fn(256, 256, |x, _| image::Luma([if x < 32 { 0 } else { 255 }]));
    let dir = std::env::temp_dir().join(format!("realnet-synth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    src.save(dir.join("sia.png"))?;
    let run = |spec: SourceSpec| -> Result<f64, Box<dyn std::error::Error>> {
        let s = Synthesizer::new(SynthConfig {
            sources: vec![WeightedSource {
                source: spec,
                weight: 1.0,
            }],
            normal_prob: 0.0,
            ..SynthConfig::default()
        })?;
        Ok(rate(seconds, |i| {
            std::hint::black_box(s.anomalous(&base, &fg, 0, i));
        }))
    };
    let sia = run(SourceSpec::Sia(dir.clone()))?;
    let procedural = run(SourceSpec::Procedural)?;
    let tex = match textures {
        Some(t) => format!("{:.1}", run(SourceSpec::Textures(t.into()))?),
        None => "null".into(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"impl\": \"rust\", \"masks_per_s\": {masks:.1}, \"samples_per_s\": {sia:.1}, \"texture_samples_per_s\": {tex}, \"procedural_samples_per_s\": {procedural:.1}}}"
    );
    Ok(())
}
