//! Per-layer timing behind `model::winograd::{MIN_CHANNELS, MIN_SIDE}`: libtorch's direct 3×3
//! convolution against Winograd F(4,3) on the shapes of the paper and small presets, one thread
//! unless told, median of alternating runs.
//!   cargo run --release --example winograd_shapes [-- BATCH [ROUNDS [THREADS]]]
use realnet::model::winograd;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let threads: i32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    realnet::alloc::keep_freed_memory();
    tch::set_num_threads(threads);
    let _guard = tch::no_grad_guard();
    println!("batch {batch}, {rounds} rounds, {threads} thread(s); ms per call (median)");
    println!("| Cin → Cout | side | direct | winograd | ratio | winograd, U given | ratio | chosen | max rel. diff |");
    println!("|---|---|---|---|---|---|---|---|---|");
    // (Cin, Cout, side): the recon UNets' and RRS head's layers (paper: 256/512/1024 selected
    // channels at 64/32/16; head 512 at 64²), the small denoiser's (64–256 channels, 8²–64²), the paper denoiser's first levels
    // (256 channels at 256² and 128²).
    let shapes = [
        (64, 64, 64),
        (128, 64, 64),
        (128, 128, 64),
        (128, 128, 32),
        (128, 128, 16),
        (256, 256, 64),
        (256, 256, 32),
        (256, 256, 16),
        (256, 256, 8),
        (512, 256, 32),
        (512, 512, 16),
        (512, 128, 64),
        (512, 512, 64),
        (256, 256, 128),
        (256, 256, 256),
    ];
    let opts = (Kind::Float, Device::Cpu);
    for (cin, cout, side) in shapes {
        let x = Tensor::randn([batch, cin, side, side], opts);
        let w = Tensor::randn([cout, cin, 3, 3], opts) * (1.0 / (9.0 * cin as f64).sqrt());
        let b = Tensor::randn([cout], opts);
        let direct = || x.conv2d(&w, Some(&b), [1, 1], [1, 1], [1, 1], 1);
        let wino = || winograd::conv3x3(&x, &w, Some(&b));
        let u = winograd::filter_transform(&w);
        let wino_u = || winograd::conv3x3_transformed(&x, &u, Some(&b));
        let (mut td, mut tw, mut tu) = (Vec::new(), Vec::new(), Vec::new());
        let _ = (direct(), wino(), wino_u());
        for _ in 0..rounds {
            td.push(time(direct));
            tw.push(time(wino));
            tu.push(time(wino_u));
        }
        let want = direct();
        let diff = f64::try_from((wino() - &want).abs().max()).unwrap_or(f64::NAN)
            / f64::try_from(want.abs().max()).unwrap_or(f64::NAN);
        let (d, g, gu) = (median(&mut td), median(&mut tw), median(&mut tu));
        println!(
            "| {cin} → {cout} | {side} | {d:.2} | {g:.2} | {:.2} | {gu:.2} | {:.2} | {} | {diff:.1e} |",
            g / d,
            gu / d,
            if winograd::worth_it(&x, &w) { "winograd" } else { "direct" },
        );
    }
}

fn time(f: impl Fn() -> Tensor) -> f64 {
    let t = Instant::now();
    let _ = f();
    t.elapsed().as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
