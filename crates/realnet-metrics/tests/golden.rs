//! Golden values from scikit-learn and ../shared/bench/ad_metrics.py
//! (scripts/fixtures/make_metrics_fixture.py → tests/fixtures/metrics_golden.json).
use realnet_metrics::{evaluate, Map, Metrics, Report, Scored};
use serde_json::Value;

fn load() -> (Vec<Scored>, Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_golden.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let size = v["size"].as_u64().unwrap() as usize;
    let scale = v["scale"].as_f64().unwrap() as f32;
    let items = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            let data = it["map"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q.as_f64().unwrap() as f32 / scale)
                .collect();
            let mask: Vec<bool> = it["mask"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_str()
                        .unwrap()
                        .bytes()
                        .map(|b| b == b'1')
                        .collect::<Vec<_>>()
                })
                .collect();
            Scored {
                defect: it["defect"].as_str().unwrap().into(),
                name: it["name"].as_str().unwrap().into(),
                map: Map::new(size, size, data).unwrap(),
                mask: mask.iter().any(|&b| b).then_some(mask),
                image_score: it["image_score"].as_f64().unwrap() as f32,
            }
        })
        .collect();
    (items, v["expected"].clone())
}

/// Asserts one metrics set; returns the AUPRO difference to the reference.
fn check(set: &str, got: &Metrics, want: &Value) -> f64 {
    let f = |k: &str| want[k].as_f64().unwrap();
    let near = |k: &str, g: Option<f64>, tol: f64| {
        let g = g.unwrap_or_else(|| panic!("{set} {k}: None"));
        assert!((g - f(k)).abs() <= tol, "{set} {k}: got {g}, want {}", f(k));
    };
    near("image_auroc", got.image_auroc, 1e-6);
    near("pixel_auroc", got.pixel_auroc, 1e-6);
    near("pixel_ap", got.pixel_ap, 1e-6);
    near("image_f1_max", got.image_f1_max, 1e-6);
    near("image_f1_threshold", got.image_f1_threshold, 1e-6); // scores are f32 in Scored
    near("aupro", got.aupro, 2e-3);
    assert_eq!(
        got.n_images as u64,
        want["n_images"].as_u64().unwrap(),
        "{set}"
    );
    assert_eq!(
        got.n_anomalous as u64,
        want["n_anomalous"].as_u64().unwrap(),
        "{set}"
    );
    (got.aupro.unwrap() - f("aupro")).abs()
}

#[test]
fn matches_sklearn_and_ad_metrics() {
    let (items, want) = load();
    let r = evaluate(&items).unwrap();
    let mut worst = check("all", &r.overall, &want);
    let per = want["per_defect"].as_object().unwrap();
    assert_eq!(
        r.per_defect.keys().collect::<Vec<_>>(),
        per.keys().collect::<Vec<_>>()
    );
    for (d, w) in per {
        worst = worst.max(check(d, &r.per_defect[d], w));
    }
    eprintln!("largest AUPRO difference to ad_metrics.py: {worst:e}");
    // the exact sweep should agree far better than the 2e-3 contract
    assert!(worst < 1e-9, "AUPRO differs by {worst}");
}

#[test]
fn per_defect_equals_evaluating_the_subset() {
    let (items, _) = load();
    let r = evaluate(&items).unwrap();
    for (d, m) in &r.per_defect {
        let sub: Vec<Scored> = items
            .iter()
            .filter(|i| i.defect == *d || i.defect == "good")
            .cloned()
            .collect();
        let alone = evaluate(&sub).unwrap().overall;
        let (a, b) = (
            serde_json::to_value(&alone).unwrap(),
            serde_json::to_value(m).unwrap(),
        );
        for (k, va) in a.as_object().unwrap() {
            let vb = &b[k];
            match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() < 1e-12, "{d} {k}: {x} vs {y}"),
                _ => assert_eq!(va, vb, "{d} {k}"),
            }
        }
    }
}

#[test]
fn json_has_exactly_the_agreed_keys_and_round_trips() {
    let (items, _) = load();
    let r = evaluate(&items).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "pixel_ap",
        "image_f1_max",
        "image_f1_threshold",
        "n_images",
        "n_anomalous",
        "per_defect",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["per_defect"]["crack"].as_object().unwrap().len(), 8);
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}
