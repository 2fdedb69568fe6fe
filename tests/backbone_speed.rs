//! Timing of `Backbone::features` at one thread (random weights, BatchNorm folded), to compare with
//! scripts/fixtures/bench_backbone.py. Ignored by default:
//! `cargo test --release --test backbone_speed -- --ignored --nocapture`
//! (env BENCH_ARCH=wide_resnet50_2|mobilenet_v2|…, BENCH_SIZE=256, BENCH_REPS=5).
use realnet::model::backbone::{Backbone, BackboneKind};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[test]
#[ignore]
fn features_timing_one_thread() {
    let arch = std::env::var("BENCH_ARCH").unwrap_or_else(|_| "wide_resnet50_2".into());
    let size: i64 = std::env::var("BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    tch::set_num_threads(1);
    let kind = BackboneKind::parse(&arch).unwrap();
    let net = Backbone::random(kind, Device::Cpu, 0);
    let x = Tensor::randn([1, 3, size, size], (Kind::Float, Device::Cpu));
    let _ = net.features(&x);
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let f = net.features(&x);
            assert_eq!(f.len(), 4);
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "realnet {arch} 1x3x{size}x{size} features, 1 thread: median {:.1} ms, min {:.1} ms",
        t[t.len() / 2] * 1e3,
        t[0] * 1e3
    );
}
