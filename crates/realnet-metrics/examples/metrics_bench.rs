//! Times `evaluate` (plus the RealNet image-score reduction) on a seeded synthetic test set comparable
//! with `../shared/bench/torch_reference.py --what metrics`: N maps of S×S, ~60 % anomalous with blob
//! masks of ~20 regions each, maps = 0.55·U(0,1) + 0.45·mask·U(0,1) per image (the reference's formula).
//!
//!   RAYON_NUM_THREADS=1 cargo run --release -p realnet-metrics --example bench -- --maps 83 --size 256 --json
use realnet_metrics::{evaluate, region_count, ImageScore, Map, Scored};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn blob_mask(rng: &mut Rng, s: usize) -> Vec<bool> {
    let mut m = vec![false; s * s];
    let n = 10 + (rng.next() % 34) as usize;
    for _ in 0..n {
        let (cy, cx) = (rng.range(0.0, s as f64), rng.range(0.0, s as f64));
        let r = s as f64 / 256.0;
        let (ry, rx) = (rng.range(2.0, 14.0) * r, rng.range(2.0, 14.0) * r);
        let (y0, y1) = ((cy - ry).max(0.0) as usize, ((cy + ry) as usize + 1).min(s));
        let (x0, x1) = ((cx - rx).max(0.0) as usize, ((cx + rx) as usize + 1).min(s));
        for y in y0..y1 {
            for x in x0..x1 {
                let (dy, dx) = ((y as f64 - cy) / ry, (x as f64 - cx) / rx);
                if dy * dy + dx * dx <= 1.0 {
                    m[y * s + x] = true;
                }
            }
        }
    }
    m
}

fn make_set(n: usize, s: usize, seed: u64) -> Vec<Scored> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let anomalous = rng.unit() < 0.6;
            let mask = anomalous.then(|| blob_mask(&mut rng, s));
            let gain = 0.45 * rng.unit();
            let data = (0..s * s)
                .map(|p| {
                    let m = mask.as_ref().is_some_and(|m| m[p]) as u8 as f64;
                    (0.55 * rng.unit() + gain * m) as f32
                })
                .collect();
            let defect = if anomalous {
                ["crack", "hole", "scratch"][i % 3]
            } else {
                "good"
            };
            let map = Map::new(s, s, data).expect("square map");
            Scored {
                defect: defect.into(),
                name: format!("{defect}/{i:03}"),
                map,
                mask,
                image_score: 0.0,
            }
        })
        .collect()
}

/// User + system CPU seconds of this process (Linux /proc; None elsewhere). Under a loaded machine the
/// wall time stretches, the CPU time much less.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str, default: usize| -> usize {
        match args.iter().position(|a| a == name) {
            Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
                Some(v) => v,
                None => {
                    eprintln!("{name} needs a number");
                    std::process::exit(2)
                }
            },
            None => default,
        }
    };
    let (n, s, iters, seed) = (
        get("--maps", 83),
        get("--size", 256),
        get("--iters", 7),
        get("--seed", 0),
    );
    let json = args.iter().any(|a| a == "--json");

    let mut items = make_set(n, s, seed as u64);
    let n_regions: usize = items
        .iter()
        .filter_map(|it| it.mask.as_ref())
        .map(|m| region_count(m, s))
        .sum();
    let (mut t_score, mut t_eval, mut t_total) = (Vec::new(), Vec::new(), Vec::new());
    let mut report = None;
    let mut cpu_start = None;
    for it in 0..iters + 1 {
        if it == 1 {
            cpu_start = cpu_seconds();
        }
        let t0 = Instant::now();
        for item in items.iter_mut() {
            item.image_score = ImageScore::REALNET.apply(&item.map);
        }
        let t1 = Instant::now();
        let r = evaluate(&items).expect("valid synthetic set");
        let t2 = Instant::now();
        if it > 0 {
            // the first call is a warm-up (page faults of the first large allocations)
            t_score.push((t1 - t0).as_secs_f64());
            t_eval.push((t2 - t1).as_secs_f64());
            t_total.push((t2 - t0).as_secs_f64());
        }
        report = Some(r);
    }
    let cpu_s = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
    let Some(r) = report else { return };
    let o = &r.overall;
    let threads = rayon::current_num_threads();
    let (ms, me, mt) = (
        median(&mut t_score),
        median(&mut t_eval),
        median(&mut t_total),
    );
    let min_t = t_total.iter().copied().fold(f64::INFINITY, f64::min);
    if json {
        let cpu = cpu_s.map(|c| c / iters.max(1) as f64);
        let v = serde_json::json!({
            "what": "metrics", "impl": "realnet-metrics", "maps": n, "size": s, "threads": threads,
            "iters": iters, "median_s": mt, "min_s": min_t, "image_score_median_s": ms,
            "evaluate_median_s": me, "cpu_s_per_iter": cpu, "n_regions": n_regions,
            "n_anomalous": o.n_anomalous, "n_defect_types": r.per_defect.len(),
            "values": {"image_auroc": o.image_auroc, "pixel_auroc": o.pixel_auroc, "aupro": o.aupro,
                       "pixel_ap": o.pixel_ap},
        });
        println!("{v}");
    } else {
        println!(
            "metrics on {n} maps {s}×{s} ({n_regions} regions, {} anomalous, {} defect types), {threads} thread(s), \
             {iters} iters: median {:.1} ms (image scores {:.1} ms + evaluate {:.1} ms), min {:.1} ms, cpu {:.1} ms/iter",
            o.n_anomalous,
            r.per_defect.len(),
            mt * 1e3,
            ms * 1e3,
            me * 1e3,
            min_t * 1e3,
            cpu_s.map_or(f64::NAN, |c| c / iters.max(1) as f64 * 1e3)
        );
        print!("{}", r.table());
    }
}
