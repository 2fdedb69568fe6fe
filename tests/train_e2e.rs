//! End to end on a tiny built-in dataset: train (interrupted and resumed), test, predict, and the
//! promises around them — a resumed CPU run ends bit-identical to an uninterrupted one, a copied run
//! folder predicts the same scores, unreadable images are reported and skipped, and another
//! backbone's weights are refused.
mod common;
use common::*;
use std::path::Path;
use std::process::Output;

const TINY: [&str; 12] = [
    "--set",
    "model.image_size=128",
    "--set",
    "train.steps=4",
    "--set",
    "train.batch_size=2",
    "--set",
    "train.afs_batches=1",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.val_anomalies_per_image=1",
];

/// A temporary folder with the tiny built-in dataset in it (`fabric`); `None` (the test skips)
/// without the EfficientNet-Lite2 weights.
fn tiny_dataset() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    lite2_or_skip()?;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 128, 8, 2, 1).unwrap();
    Some((tmp, data))
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let weights = lite2();
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(["--weights", weights.to_str().unwrap()]);
    args.extend(TINY);
    if !extra.contains(&"--source") {
        args.extend(["--source", "procedural"]);
    }
    args.extend(extra);
    realnet(&args)
}

#[test]
fn train_resume_test_predict() {
    let Some((tmp, data)) = tiny_dataset() else {
        return;
    };

    // Interrupted after 2 steps, then resumed…
    let a = tmp.path().join("a");
    let out = train(&data, &a, &["--stop-after", "2"]);
    ok(&out);
    assert!(
        !a.join("model.safetensors").exists(),
        "an unfinished run has no model yet"
    );
    assert!(a.join("checkpoints/last.safetensors").exists());
    // Training again into the same folder without --resume is refused, not overwritten.
    let again = train(&data, &a, &[]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Resuming with another seed would silently continue another run: refused, naming the key.
    let other = train(&data, &a, &["--resume", "--set", "train.seed=99"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(4), "{err}");
    assert!(err.contains("train.seed: saved"), "{err}");
    // A saved configuration that cannot be read is refused too (nothing to compare with).
    let config = a.join("config.toml");
    let saved = std::fs::read(&config).unwrap();
    std::fs::write(&config, [&saved[..], b"\nbroken = [\n"].concat()).unwrap();
    let broken = train(&data, &a, &["--resume"]);
    let err = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(4), "{err}");
    assert!(
        err.contains("config.toml") && err.contains("--resume"),
        "{err}"
    );
    std::fs::write(&config, saved).unwrap();
    ok(&train(&data, &a, &["--resume"]));
    // …ends with the same model as an uninterrupted run.
    let b = tmp.path().join("b");
    ok(&train(&data, &b, &[]));
    let ma = std::fs::read(a.join("model.safetensors")).unwrap();
    let mb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(ma == mb, "resumed and uninterrupted runs differ");
    let steps: Vec<u64> = std::fs::read_to_string(a.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![2, 4], "history keeps one line per logged step");

    // test --json: the documented keys, per defect type.
    let json = ok(&realnet(&["test", "--run", a.to_str().unwrap(), "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for k in [
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "pixel_ap",
        "image_f1_max",
        "n_images",
        "n_anomalous",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {json}");
    }
    assert_eq!(v["n_images"], 5);
    assert_eq!(v["per_defect"].as_object().unwrap().len(), 3);

    // --report adds DIR/report.html and changes nothing on stdout; its overlays are test --overlays'.
    let report = tmp.path().join("report");
    let overlays = tmp.path().join("overlays");
    let with_report = ok(&realnet(&[
        "test",
        "--run",
        a.to_str().unwrap(),
        "--json",
        "--report",
        report.to_str().unwrap(),
        "--overlays",
        overlays.to_str().unwrap(),
    ]));
    assert_eq!(with_report, json, "--report must not change the JSON");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<figure class=\"plot\"").count(), 3);
    assert!(html.contains("<img src=\"data:image/png;base64,"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("efficientnet_lite2"), "metadata: backbone");
    assert!(
        html.contains("<td>inference precision</td><td>f32</td>"),
        "metadata: precision"
    );
    assert_eq!(
        std::fs::read_dir(&report).unwrap().count(),
        1,
        "no temporary file left"
    );

    // predict: one unreadable file is reported, the rest are scored (exit 5).
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::copy(data.join("test/scratch/000.png"), imgs.join("scratch.png")).unwrap();
    std::fs::copy(data.join("test/good/000.png"), imgs.join("good.png")).unwrap();
    std::fs::write(imgs.join("broken.png"), b"not a png").unwrap();
    let scores_with = |run: &Path, extra: &[&str]| -> Vec<(String, f64)> {
        let mut args = vec!["predict", "--run", run.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(imgs.to_str().unwrap());
        let out = realnet(&args);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Vec<(String, f64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                let name = Path::new(j["path"].as_str()?)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                if name == "broken.png" {
                    assert!(j["error"].as_str().unwrap().contains("broken.png"), "{l}");
                    return None;
                }
                assert!(j["label"] == "normal" || j["label"] == "anomalous");
                Some((name, j["score"].as_f64()?))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let scores = |run: &Path| scores_with(run, &[]);
    let here = scores(&a);
    assert_eq!(here.len(), 2);
    // bf16 inference scores the same images (and reports the broken one), not bit-identically.
    // How close it comes is a property of a trained model — on bottle every score within 0.013 of
    // f32 (docs/performance.md); this model's few steps leave RealNet's map nearly constant, and
    // the fusion's standardisation magnifies bf16's rounding of it.
    let bf16 = scores_with(&a, &["--precision", "bf16"]);
    assert_eq!(bf16.len(), 2);
    for ((n, s), (m, t)) in here.iter().zip(&bf16) {
        assert_eq!(n, m);
        assert!((0.0..=1.0).contains(t) && s != t, "{n}: f32 {s}, bf16 {t}");
    }
    expect(
        "unknown precision",
        &realnet(&[
            "predict",
            "--run",
            a.to_str().unwrap(),
            "--precision",
            "f16",
            imgs.to_str().unwrap(),
        ]),
        3,
        &["--precision 'f16'", "f32 or bf16"],
    );
    // --threshold moves labels and normalised scores, not raw scores; out of (0, 1) is refused.
    let good = imgs.join("good.png");
    let predict_at = |t: &str| {
        realnet(&[
            "predict",
            "--run",
            a.to_str().unwrap(),
            "--threshold",
            t,
            good.to_str().unwrap(),
        ])
    };
    let at =
        |t: &str| -> serde_json::Value { serde_json::from_str(ok(&predict_at(t)).trim()).unwrap() };
    let (low, high) = (at("0.000001"), at("0.999999"));
    assert_eq!(
        (low["label"].as_str(), high["label"].as_str()),
        (Some("anomalous"), Some("normal"))
    );
    assert_eq!(low["threshold"], 0.000001);
    assert_eq!(low["score"], high["score"]);
    let raw = low["score"].as_f64().unwrap().to_string();
    assert_eq!(
        at(&raw)["normalised_score"],
        0.5,
        "the threshold maps to 0.5"
    );
    expect(
        "threshold out of range",
        &predict_at("1.5"),
        3,
        &["--threshold 1.5", "(0, 1)"],
    );
    // predict --out draws the same overlay as test --overlays (no ground truth for a good image).
    let pred_out = tmp.path().join("pred_out");
    let out = realnet(&[
        "predict",
        "--run",
        a.to_str().unwrap(),
        "--out",
        pred_out.to_str().unwrap(),
        imgs.join("good.png").to_str().unwrap(),
    ]);
    ok(&out);
    let p = image::open(pred_out.join("good.png")).unwrap().to_rgb8();
    let t = image::open(overlays.join("good/000.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(p.dimensions(), t.dimensions());
    // another batch may round a few map values differently; the pictures agree otherwise
    let differ = p.pixels().zip(t.pixels()).filter(|(x, y)| x != y).count();
    assert!(differ * 1000 <= p.len() / 3, "{differ} pixels differ");
    // A run folder copied elsewhere predicts the same scores.
    let moved = tmp.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    for f in ["config.toml", "model.safetensors", "meta.json"] {
        std::fs::copy(a.join(f), moved.join(f)).unwrap();
    }
    assert_eq!(scores(&moved), here);

    // calibrate: threshold and fusion weight chosen again on labelled images, into a new folder.
    let calibrate_with = |labelled: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "calibrate",
            "--run",
            a.to_str().unwrap(),
            "--data",
            labelled.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        realnet(&args)
    };
    let calibrate = |labelled: &Path, out: &Path| calibrate_with(labelled, out, &[]);
    let meta_before = std::fs::read(a.join("meta.json")).unwrap();
    let c = tmp.path().join("calibrated");
    let json = ok(&calibrate(&data, &c));
    let cal: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rec = &cal["calibration"];
    let (good, defective) = (
        rec["good"].as_u64().unwrap(),
        rec["defective"].as_u64().unwrap(),
    );
    assert_eq!(
        good + defective,
        5,
        "every test image of the calibration folder"
    );
    assert_eq!(rec["with_masks"].as_u64(), Some(defective));
    // The record keeps both weights the run had before.
    let before: serde_json::Value = serde_json::from_slice(&meta_before).unwrap();
    let was = &before["memory_weight"];
    assert_eq!(rec["previous_weight"], was["chosen"]);
    assert_eq!(rec["previous_image_weight"], was["image_chosen"]);
    assert!(rec["previous_image_weight"].is_f64());
    assert_eq!(
        cal["memory_weight"]["candidates"].as_array().unwrap().len(),
        11
    );
    assert!(cal["threshold"]["method"]
        .as_str()
        .unwrap()
        .contains("calibration set"));
    assert_eq!(
        std::fs::read(a.join("meta.json")).unwrap(),
        meta_before,
        "the run is left as it was"
    );
    let meta_a: serde_json::Value = serde_json::from_slice(&meta_before).unwrap();
    assert_eq!(
        cal["memory_weight"]["balance"], meta_a["memory_weight"]["balance"],
        "balance kept"
    );
    // Only the fusion weights change in the model file, and they are the chosen ones.
    let (ta, tc) = (
        realnet::bundle::read_tensors(&a.join("model.safetensors")).unwrap(),
        realnet::bundle::read_tensors(&c.join("model.safetensors")).unwrap(),
    );
    assert_eq!(ta.len(), tc.len());
    for (k, t) in &ta {
        if k != "memory.weight" && k != "memory.image_weight" {
            assert!(t.equal(&tc[k]), "{k} changed");
        }
    }
    assert_eq!(
        tc["memory.weight"].double_value(&[0]),
        cal["memory_weight"]["chosen"].as_f64().unwrap()
    );
    assert_eq!(
        tc["memory.image_weight"].double_value(&[0]),
        cal["memory_weight"]["image_chosen"].as_f64().unwrap()
    );
    // Calibrated on the very images `test` scores, the threshold is test's F1-optimal one and the
    // separation its image AUROC: the same scores, the same metrics code.
    let tj: serde_json::Value = serde_json::from_str(&ok(&realnet(&[
        "test",
        "--run",
        c.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    let close = |x: &serde_json::Value, y: &serde_json::Value| {
        (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6
    };
    assert!(
        close(&cal["threshold"]["image"], &tj["image_f1_threshold"]),
        "{json}\n{tj}"
    );
    assert!(
        close(&cal["threshold"]["val_auroc"], &tj["image_auroc"]),
        "{json}\n{tj}"
    );
    // --blur-choices: the memory map's blur σ is chosen on the labelled images too (recorded with
    // every candidate, written into the model); an impossible σ is refused before any work.
    let calibrate_blur =
        |out: &Path, blurs: &str| calibrate_with(&data, out, &["--blur-choices", blurs]);
    let cb = tmp.path().join("calibrated_blur");
    let cal_b: serde_json::Value =
        serde_json::from_str(&ok(&calibrate_blur(&cb, "0,4,16"))).unwrap();
    let wb = &cal_b["memory_weight"];
    let sigmas: Vec<f64> = wb["blur_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sigma"].as_f64().unwrap())
        .collect();
    assert_eq!(sigmas, [0.0, 4.0, 16.0]);
    assert_eq!(
        cal_b["calibration"]["previous_blur_sigma"],
        meta_a["memory_weight"]["blur_sigma"]
    );
    let tb = realnet::bundle::read_tensors(&cb.join("model.safetensors")).unwrap();
    assert_eq!(
        tb["memory.blur_sigma"].double_value(&[0]),
        wb["blur_sigma"].as_f64().unwrap()
    );
    expect(
        "blur σ out of range",
        &calibrate_blur(&tmp.path().join("cb2"), "4,99"),
        3,
        &["--blur-choices holds 99", "[0, 64]"],
    );
    // An existing folder is not overwritten; a set without defects cannot calibrate.
    let again = calibrate(&data, &c);
    expect("calibrate into a used folder", &again, 3, &["not empty"]);
    let only_good = tmp.path().join("only_good");
    std::fs::create_dir_all(only_good.join("test")).unwrap();
    copy_dir(&data.join("test/good"), &only_good.join("test/good"));
    let out = calibrate(&only_good, &tmp.path().join("c2"));
    expect(
        "calibration set without defects",
        &out,
        3,
        &["good and defective", "0 defective"],
    );
    // Defects without masks: the image threshold is calibrated, the pixel threshold kept.
    let no_masks = tmp.path().join("no_masks");
    for d in ["good", "scratch"] {
        copy_dir(&data.join("test").join(d), &no_masks.join("test").join(d));
    }
    let json = ok(&calibrate(&no_masks, &tmp.path().join("c3")));
    let cal: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(cal["calibration"]["with_masks"], 0);
    assert_eq!(
        cal["threshold"]["pixel"], meta_a["threshold"]["pixel"],
        "{json}"
    );

    // The lite preset's patch memory travels in model.safetensors; a model without it is refused
    // by name instead of scoring with half a model.
    let mut named = realnet::bundle::read_tensors(&a.join("model.safetensors")).unwrap();
    assert_eq!(
        named["memory.bank"].size()[1],
        48 + 120,
        "Lite2 strides 8 + 16"
    );
    // The fusion weight chosen on the validation data is in meta.json with every candidate, and
    // the one in the model is what inference uses.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("meta.json")).unwrap()).unwrap();
    let chosen = meta["memory_weight"]["chosen"].as_f64().unwrap();
    assert_eq!(
        meta["memory_weight"]["candidates"]
            .as_array()
            .unwrap()
            .len(),
        11
    );
    let stored = named["memory.weight"].double_value(&[0]);
    assert_eq!(stored, chosen);
    // The image score's own weight, chosen by validation image AUROC, also travels in the model.
    let image_chosen = meta["memory_weight"]["image_chosen"].as_f64().unwrap();
    assert_eq!(
        named["memory.image_weight"].double_value(&[0]),
        image_chosen
    );
    let other = |w: f64| if w > 0.5 { 0.0f32 } else { 1.0 };
    let reweighted: Vec<(String, tch::Tensor)> = named
        .iter()
        .map(|(k, t)| match k.as_str() {
            "memory.weight" => (k.clone(), tch::Tensor::from_slice(&[other(chosen)])),
            "memory.image_weight" => (k.clone(), tch::Tensor::from_slice(&[other(image_chosen)])),
            _ => (k.clone(), t.shallow_clone()),
        })
        .collect();
    realnet::bundle::save_tensors(&moved.join("model.safetensors"), &reweighted).unwrap();
    assert_ne!(scores(&moved), here, "the stored weight is not used");
    // The memory map's blur σ travels in the model too (validation may choose it).
    assert_eq!(
        named["memory.blur_sigma"].double_value(&[0]),
        meta["memory_weight"]["blur_sigma"].as_f64().unwrap()
    );
    let reblurred: Vec<(String, tch::Tensor)> = named
        .iter()
        .map(|(k, t)| match k.as_str() {
            "memory.blur_sigma" => (k.clone(), tch::Tensor::from_slice(&[0.0f64])),
            _ => (k.clone(), t.shallow_clone()),
        })
        .collect();
    realnet::bundle::save_tensors(&moved.join("model.safetensors"), &reblurred).unwrap();
    assert_ne!(scores(&moved), here, "the stored blur is not used");
    named.remove("memory.bank");
    let named: Vec<(String, tch::Tensor)> = named.into_iter().collect();
    realnet::bundle::save_tensors(&moved.join("model.safetensors"), &named).unwrap();
    let out = realnet(&["test", "--run", moved.to_str().unwrap()]);
    expect("model without its memory", &out, 4, &["memory.bank"]);

    // Another backbone's weights are refused with a clear error (exit 4).
    let mnv2 = shared("weights/mobilenet_v2_torchvision_imagenet1k_v1.safetensors");
    let out = realnet(&[
        "test",
        "--run",
        a.to_str().unwrap(),
        "--weights",
        mnv2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mobilenet_v2"), "{err}");
}

/// `--source self` trains on anomalies cut from the category's own training images.
#[test]
fn train_with_the_self_source() {
    let Some((tmp, data)) = tiny_dataset() else {
        return;
    };
    let out = tmp.path().join("own");
    ok(&train(
        &data,
        &out,
        &[
            "--source",
            "self",
            "--set",
            "train.steps=2",
            "--set",
            "model.score_pool_choices=[4,16,128]",
            "--set",
            "model.memory.blur_choices=[0,4,16]",
            "--set",
            "model.memory.subgrid=true",
        ],
    ));
    assert!(out.join("model.safetensors").exists());
    // The image score's window is chosen on validation from the candidates, each recorded with
    // its best validation image AUROC; the chosen one is among the best (0.001 tie band).
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    let cands = meta["score_pool_candidates"].as_array().unwrap();
    let pools: Vec<i64> = cands.iter().map(|c| c["pool"].as_i64().unwrap()).collect();
    assert_eq!(pools, [16, 4, 128], "the prior window first");
    let auroc = |c: &serde_json::Value| c["image_auroc"].as_f64().unwrap();
    let best = cands.iter().map(auroc).fold(0.0, f64::max);
    let pool = meta["score_pool"].as_i64().unwrap();
    let chosen = cands.iter().find(|c| c["pool"] == pool).unwrap();
    assert!(auroc(chosen) >= best - 0.001, "{meta}");
    // The memory's blur likewise: every candidate recorded with its best map weight's validation
    // AUROCs, the chosen one among the best by their mean, and it is the model's.
    let choice = &meta["memory_weight"];
    let blurs = choice["blur_candidates"].as_array().unwrap();
    let sigmas: Vec<f64> = blurs.iter().map(|c| c["sigma"].as_f64().unwrap()).collect();
    assert_eq!(sigmas, [0.0, 4.0, 16.0]);
    let merit = |c: &serde_json::Value| {
        (c["image_auroc"].as_f64().unwrap() + c["pixel_auroc"].as_f64().unwrap()) / 2.0
    };
    let best = blurs.iter().map(merit).fold(0.0, f64::max);
    let sigma = choice["blur_sigma"].as_f64().unwrap();
    let chosen = blurs.iter().find(|c| c["sigma"] == sigma).unwrap();
    assert!(merit(chosen) >= best - 0.001, "{meta}");
    // The chosen σ's own candidate row is the weight table's chosen row.
    let row = choice["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["weight"] == choice["chosen"])
        .unwrap();
    assert_eq!(merit(row), merit(chosen), "{meta}");
    let named = realnet::bundle::read_tensors(&out.join("model.safetensors")).unwrap();
    assert_eq!(named["memory.blur_sigma"].double_value(&[0]), sigma);
    // The memory's finer grid is the run's: the same model with it turned off in its saved
    // configuration scores the test images otherwise (the grid it searches is not the same).
    let coarse = tmp.path().join("own-coarse");
    copy_dir(&out, &coarse);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("subgrid = true"), "{config}");
    std::fs::write(
        coarse.join("config.toml"),
        config.replace("subgrid = true", "subgrid = false"),
    )
    .unwrap();
    let scores = |run: &Path| -> Vec<f64> {
        let out = realnet(&[
            "predict",
            "--run",
            run.to_str().unwrap(),
            data.join("test").to_str().unwrap(),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["score"].as_f64().unwrap()
            })
            .collect()
    };
    let (fine, plain) = (scores(&out), scores(&coarse));
    assert!(!fine.is_empty() && fine.len() == plain.len());
    assert!(fine.iter().all(|s| s.is_finite()), "{fine:?}");
    assert_ne!(fine, plain);
}

/// `--precision bf16` trains with mixed precision: saved in the config (a resume must ask for it
/// again), the model keeps f32 weights (same file layout as an f32 run) and differs from f32's.
#[test]
fn train_in_bf16_mixed_precision() {
    let Some((tmp, data)) = tiny_dataset() else {
        return;
    };
    let bf = tmp.path().join("bf16");
    ok(&train(
        &data,
        &bf,
        &["--precision", "bf16", "--stop-after", "2"],
    ));
    let config = std::fs::read_to_string(bf.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    let other = train(&data, &bf, &["--resume"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(4), "{err}");
    assert!(err.contains("train.precision: saved \"bf16\""), "{err}");
    ok(&train(&data, &bf, &["--resume", "--precision", "bf16"]));
    let f = tmp.path().join("f32");
    ok(&train(&data, &f, &[]));
    let (mb, mf) = (
        std::fs::read(bf.join("model.safetensors")).unwrap(),
        std::fs::read(f.join("model.safetensors")).unwrap(),
    );
    assert_eq!(mb.len(), mf.len(), "f32 master weights, as an f32 run's");
    assert!(mb != mf, "bf16 steps compute other weights");
    let bad = train(
        &data,
        &tmp.path().join("x"),
        &["--set", "train.precision=\"f16\""],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_ne!(bad.status.code(), Some(0), "{err}");
    assert!(err.contains("train.precision = 'f16'"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
