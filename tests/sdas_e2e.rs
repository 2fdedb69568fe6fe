//! SDAS end to end on a tiny built-in dataset and a tiny denoiser: train (interrupted and resumed
//! ends bit-identical to uninterrupted), sample in shards (the union equals a one-shard run byte for
//! byte, a rerun skips what exists), strengths in the index, and clear refusals.
mod common;
use common::*;
use std::path::Path;
use std::process::Output;

// Cosine with a warm-up, so that the resume check also covers the learning-rate schedule.
const TINY: [&str; 20] = [
    "--set",
    "model.image_size=16",
    "--set",
    "model.channel_mult=[1,2]",
    "--set",
    "train.steps=4",
    "--set",
    "train.batch_size=2",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.accumulate=2",
    "--set",
    "sample.steps=\"ddim4\"",
    "--set",
    "sample.batch_size=2",
    "--set",
    "train.lr_schedule=\"cosine\"",
    "--set",
    "train.warmup_steps=1",
];

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sdas",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(TINY);
    args.extend(extra);
    realnet(&args)
}

fn sample(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sdas",
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--category",
        "fabric",
        "--count",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "3",
    ];
    args.extend(extra);
    realnet(&args)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sdas_train_resume_sample_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 32, 6, 1, 1).unwrap();

    let a = tmp.path().join("a");
    ok(&train(&data, &a, &["--stop-after", "1"]));
    assert!(!a.join("model.safetensors").exists());
    ok(&train(&data, &a, &["--resume"]));
    let b = tmp.path().join("b");
    ok(&train(&data, &b, &[]));
    assert!(
        std::fs::read(a.join("model.safetensors")).unwrap()
            == std::fs::read(b.join("model.safetensors")).unwrap(),
        "resumed and uninterrupted SDAS runs differ"
    );
    // The schedule is applied: the same run at a constant rate ends elsewhere.
    let c = tmp.path().join("c");
    ok(&train(
        &data,
        &c,
        &["--set", "train.lr_schedule=\"constant\""],
    ));
    assert!(
        std::fs::read(c.join("model.safetensors")).unwrap()
            != std::fs::read(b.join("model.safetensors")).unwrap(),
        "the cosine schedule changed nothing"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["categories"][0], "fabric");

    // One shard, then the same job as 2 shards into another folder: identical files.
    let one = tmp.path().join("one");
    ok(&sample(&a, &one, &[]));
    let two = tmp.path().join("two");
    ok(&sample(&a, &two, &["--shard", "1/2"]));
    ok(&sample(&a, &two, &["--shard", "0/2"]));
    let f1 = files(&one.join("fabric"));
    assert_eq!(f1.len(), 5);
    assert_eq!(f1, files(&two.join("fabric")));
    let img = image::load_from_memory(&f1[0].1).unwrap();
    assert_eq!((img.width(), img.height()), (16, 16));
    // Rerun: nothing to do.
    let again = sample(&a, &one, &[]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 written, 5 already there"));
    // Index lines: one per image, strength in the default range.
    let idx = std::fs::read_to_string(one.join("fabric/index.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = idx
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], i as u64);
        let s = l["s"].as_f64().unwrap();
        assert!((0.1..0.2).contains(&s), "{s}");
    }
    // A bf16 denoiser: the index says so; the images are the same size.
    let half = tmp.path().join("half");
    let out = realnet(
        &[
            &[
                "--precision",
                "bf16",
                "sdas",
                "sample",
                "--model",
                a.to_str().unwrap(),
            ][..],
            &["--category", "fabric", "--count", "2", "--seed", "3"],
            &["--out", half.to_str().unwrap()],
        ]
        .concat(),
    );
    ok(&out);
    let idx = std::fs::read_to_string(half.join("fabric/index.jsonl")).unwrap();
    assert_eq!(idx.lines().count(), 2);
    assert!(
        idx.lines().all(|l| l.contains("\"precision\":\"bf16\"")),
        "{idx}"
    );
    let h = files(&half.join("fabric"));
    assert_eq!(image::load_from_memory(&h[0].1).unwrap().width(), 16);
    // s = 0 with the same seed changes the images (the strength enters the sampler).
    let zero = tmp.path().join("zero");
    ok(&sample(&a, &zero, &["--strength", "0"]));
    assert_ne!(files(&zero.join("fabric")), f1);

    // Refusals: unknown category, bad strength, not a model folder.
    let bad = realnet(&[
        "sdas",
        "sample",
        "--model",
        a.to_str().unwrap(),
        "--category",
        "bottle",
        "--count",
        "1",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(
        bad.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fabric"));
    let bad = sample(&a, &one, &["--strength", "0.3..0.1"]);
    assert_eq!(bad.status.code(), Some(3));
    let bad = sample(&data, &one, &[]);
    assert_eq!(
        bad.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // `sdas eval` with the sampler and steps a user samples with: reported back, figures finite.
    let Some(w) = lite2_or_skip() else { return };
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "sdas",
            "eval",
            "--model",
            a.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--count",
            "2",
            "--json",
        ];
        args.extend(extra);
        realnet(&args)
    };
    let out = eval(&["--steps", "2", "--sampler", "ddim"]);
    let r: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(r["steps"], "2");
    assert_eq!(r["sampler"], "ddim");
    assert_eq!(r["precision"], "f32");
    assert_eq!(r["image_size"], 16);
    let real = r["real_good"].as_f64().unwrap();
    assert!(real.is_finite() && real >= 0.0, "{r}");
    let samples = r["samples"].as_object().unwrap();
    assert_eq!(
        samples.keys().collect::<Vec<_>>(),
        ["0", "0.1", "0.2", "0.3"]
    );
    assert!(samples.values().all(|d| d.as_f64().unwrap() > 0.0), "{r}");
    // The whole category by default (6 training, 1 good test image); a smaller bank can only
    // move every patch's nearest neighbour farther away.
    assert_eq!(
        (r["bank_images"].as_u64(), r["real_images"].as_u64()),
        (Some(6), Some(1))
    );
    let out = eval(&["--steps", "2", "--sampler", "ddim", "--bank-images", "2"]);
    let small: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(small["bank_images"], 2);
    assert!(
        small["real_good"].as_f64().unwrap() >= real - 1e-9,
        "{small} vs {r}"
    );
    expect(
        "eval with an empty bank",
        &eval(&["--bank-images", "0"]),
        3,
        &["at least one image"],
    );
    expect(
        "eval with 0 steps",
        &eval(&["--steps", "0"]),
        3,
        &["sampling steps '0'"],
    );
    expect(
        "eval with an unknown sampler",
        &eval(&["--sampler", "euler"]),
        3,
        &["sampler 'euler'"],
    );
}

/// `--precision bf16` on `sdas train`: saved with the run, a resume must give it again, and the
/// model (f32 EMA weights, as in f32) is another one than the f32 run's.
#[test]
fn sdas_train_in_bf16_mixed_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 32, 6, 1, 1).unwrap();
    let bf16 = |out: &Path, extra: &[&str]| {
        let mut args = vec!["--precision", "bf16"];
        args.extend(extra);
        train(&data, out, &args)
    };
    let a = tmp.path().join("a");
    ok(&bf16(&a, &["--stop-after", "1"]));
    let cfg = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(cfg.contains("precision = \"bf16\""), "{cfg}");
    expect(
        "resume without --precision bf16",
        &train(&data, &a, &["--resume"]),
        4,
        &["train.precision"],
    );
    ok(&bf16(&a, &["--resume"]));
    let f = tmp.path().join("f");
    ok(&train(&data, &f, &[]));
    let (wa, wf) = (
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(f.join("model.safetensors")).unwrap(),
    );
    assert_eq!(wa.len(), wf.len(), "the bf16 run saves f32 weights too");
    assert_ne!(wa, wf, "bf16 steps computed the same weights as f32 steps");
    expect(
        "an unknown precision",
        &train(
            &data,
            &tmp.path().join("x"),
            &["--set", "train.precision=\"f16\""],
        ),
        4,
        &["train.precision", "f32 or bf16"],
    );
}

fn index_flags(dir: &Path) -> Vec<bool> {
    std::fs::read_to_string(dir.join("fabric/index.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dc_prior"] == true)
        .collect()
}

#[test]
fn sdas_sample_with_the_mean_colour_prior() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 32, 6, 1, 1).unwrap();
    let m = tmp.path().join("m");
    ok(&train(&data, &m, &[]));
    // The lite preset samples with it; the class's mean colour is stored with the model.
    let cfg = std::fs::read_to_string(m.join("config.toml")).unwrap();
    assert!(cfg.contains("dc_prior = true"), "{cfg}");
    let meta_path = m.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["dc_prior"][0]["mean"].as_array().unwrap().len(), 3);
    assert!(meta["dc_prior"][0]["std"][0].as_f64().unwrap() > 0.0);

    let on = tmp.path().join("on");
    ok(&sample(&m, &on, &[]));
    assert_eq!(index_flags(&on), vec![true; 5]);
    let off = tmp.path().join("off");
    ok(&sample(&m, &off, &["--dc-prior", "false"]));
    assert_eq!(index_flags(&off), vec![false; 5]);
    assert_ne!(files(&on.join("fabric")), files(&off.join("fabric")));

    // A model saved before the prior was stored reads it from its training folder: the same
    // images give the same prior, so the same samples byte for byte.
    meta.as_object_mut().unwrap().remove("dc_prior");
    std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    let old = tmp.path().join("old");
    ok(&sample(&m, &old, &[]));
    assert_eq!(files(&on.join("fabric")), files(&old.join("fabric")));
    // ... and without that folder it refuses, saying how to sample without the prior.
    std::fs::rename(&data, tmp.path().join("moved")).unwrap();
    expect(
        "no stored prior, training folder gone",
        &sample(&m, &tmp.path().join("gone"), &[]),
        4,
        &["dc_prior", "--dc-prior false"],
    );
    ok(&sample(
        &m,
        &tmp.path().join("gone"),
        &["--dc-prior", "false"],
    ));
}
