//! The synth job on real data: MVTec AD bottle + the shared textures.
use realnet_synth::foreground::{foreground_mask, otsu_threshold, triangle_threshold};
use realnet_synth::job::{read_index, run_job, SynthJob};
use realnet_synth::{rule_for, ForegroundRule, SourceSpec};
use std::path::{Path, PathBuf};

const BOTTLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/mvtec_ad/bottle"
);
const TEXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/textures");

fn job(out: &Path, count: usize) -> SynthJob {
    SynthJob {
        seed: 42,
        sources: vec![
            SourceSpec::Textures(TEXTURES.into()),
            SourceSpec::Procedural,
        ],
        ..SynthJob::new(BOTTLE, out, count)
    }
}

fn run_with_threads(j: &SynthJob, threads: usize) -> realnet_synth::job::SynthReport {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| run_job(j, &|| {})).unwrap()
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for sub in ["images", "masks"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let b = std::fs::read(&p).unwrap();
            v.push((p.strip_prefix(dir).unwrap().to_path_buf(), b));
        }
    }
    v.push((
        "index.jsonl".into(),
        std::fs::read(dir.join("index.jsonl")).unwrap(),
    ));
    v
}

#[test]
fn stroke_masks_are_thin_inside_the_foreground_and_indexed() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("s");
    let j = SynthJob {
        stroke_prob: 1.0,
        ..job(&out, 4)
    };
    run_with_threads(&j, 1);
    let rule = rule_for("mvtec_ad", "bottle");
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert_eq!(index.matches("\"strokes\":true").count(), 4, "{index}");
    for (i, l) in read_index(&out, 4) {
        assert!(l.strokes);
        assert!(l.mask_fraction > 0.0 && l.mask_fraction < 0.04, "index {i}");
        let mask = image::open(out.join(&l.mask)).unwrap().to_luma8();
        let base = realnet_data::load_rgb(&l.base, Some((256, 256))).unwrap();
        let fg = foreground_mask(&rule, &base);
        assert!(mask
            .iter()
            .zip(fg.iter())
            .all(|(&m, &f)| m == 0 || f == 255));
    }
    // Without strokes the index keeps its former shape.
    let plain = t.path().join("p");
    run_with_threads(&job(&plain, 2), 1);
    let index = std::fs::read_to_string(plain.join("index.jsonl")).unwrap();
    assert!(!index.contains("strokes"), "{index}");
}

#[test]
fn shaded_samples_change_only_their_labelled_foreground_and_are_indexed() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("s");
    let j = SynthJob {
        shade_prob: 1.0,
        ..job(&out, 3)
    };
    run_with_threads(&j, 1);
    let rule = rule_for("mvtec_ad", "bottle");
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert_eq!(index.matches("\"kind\":\"shade\"").count(), 3, "{index}");
    for (i, l) in read_index(&out, 3) {
        assert!(l.source_file.is_none() && !l.strokes, "index {i}");
        assert!(l.mask_fraction > 0.0, "index {i}");
        let mask = image::open(out.join(&l.mask)).unwrap().to_luma8();
        let img = image::open(out.join(&l.image)).unwrap().to_rgb8();
        let base = realnet_data::load_rgb(&l.base, Some((256, 256))).unwrap();
        let fg = foreground_mask(&rule, &base);
        for ((&m, &f), (o, b)) in mask
            .iter()
            .zip(fg.iter())
            .zip(img.pixels().zip(base.pixels()))
        {
            assert!(
                m == 0 || f == 255,
                "index {i}: label outside the foreground"
            );
            assert!(m != 0 || o == b, "index {i}: changed outside the label");
        }
    }
}

#[test]
fn bottle_outputs_are_consistent_and_thread_independent() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let count = 6;
    let ra = run_with_threads(&job(&a, count), 1);
    let rb = run_with_threads(&job(&b, count), 2);
    assert_eq!((ra.written, ra.resumed), (count, 0));
    assert_eq!(rb.written, count);
    assert!(ra.foreground_known);
    assert_eq!(ra.foreground.to_string(), "otsu:gray:dark:close6:open6");
    // Same bytes with 1 and 2 threads.
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 2 * count + 1);
    assert_eq!(fa, fb);

    // The index matches the files; masks are non-empty, inside the foreground; outside the
    // mask every pixel is the base image's (Pillow bilinear to 256).
    let lines = read_index(&a, count);
    assert_eq!(lines.len(), count);
    let rule = rule_for("mvtec_ad", "bottle");
    let mut kinds = std::collections::BTreeSet::new();
    for (i, l) in &lines {
        let img = image::open(a.join(&l.image)).unwrap().to_rgb8();
        let mask = image::open(a.join(&l.mask)).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (256, 256));
        assert!(mask.iter().all(|&v| v == 0 || v == 255));
        let frac = mask.iter().filter(|&&v| v == 255).count() as f64 / 65536.0;
        assert!((frac - l.mask_fraction).abs() < 1e-12, "index {i}");
        assert!(frac > 0.0, "empty mask at {i}");
        assert_eq!(l.seed, 42);
        let base = realnet_data::load_rgb(&l.base, Some((256, 256))).unwrap();
        let fg = foreground_mask(&rule, &base);
        let mut changed = 0;
        for (k, (&m, &f)) in mask.iter().zip(fg.iter()).enumerate() {
            assert!(
                m == 0 || f == 255,
                "index {i}: mask pixel {k} outside the foreground"
            );
            let (x, y) = ((k % 256) as u32, (k / 256) as u32);
            if m == 0 {
                assert_eq!(
                    img.get_pixel(x, y),
                    base.get_pixel(x, y),
                    "index {i} pixel {k}"
                );
            } else if img.get_pixel(x, y) != base.get_pixel(x, y) {
                changed += 1;
            }
        }
        assert!(changed > 0, "index {i}: nothing blended");
        assert!((0.2..1.0).contains(&l.beta));
        assert!(!l.strokes);
        kinds.insert(format!("{:?}", l.kind));
        if let Some(src) = &l.source_file {
            assert!(src.starts_with(TEXTURES));
            assert_eq!(l.ops.len(), 3);
        }
    }
    assert!(!kinds.is_empty());
}

#[test]
fn resume_restores_missing_files_and_a_torn_index() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let j = SynthJob {
        sources: vec![SourceSpec::Procedural],
        ..job(&out, 4)
    };
    run_with_threads(&j, 2);
    let before = files(&out);
    // Simulate a crash: one image gone, a torn last index line, a stray temp file.
    std::fs::remove_file(out.join("images/00002.png")).unwrap();
    let idx = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    std::fs::write(out.join("index.jsonl"), &idx[..idx.len() - 20]).unwrap();
    let r = run_with_threads(&j, 1);
    assert_eq!(r.resumed, 2, "indices 0 and 1 are complete");
    assert_eq!(r.written, 2);
    assert_eq!(files(&out), before);
    // Nothing left to do: a third run writes nothing.
    let r = run_with_threads(&j, 2);
    assert_eq!((r.written, r.resumed), (0, 4));
    // A larger count extends the set, keeping the first samples.
    let r = run_with_threads(
        &SynthJob {
            count: 5,
            ..j.clone()
        },
        2,
    );
    assert_eq!((r.written, r.resumed), (1, 4));
}

#[test]
fn preview_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let preview = t.path().join("sheet.png");
    let j = SynthJob {
        preview: Some(preview.clone()),
        sources: vec![SourceSpec::Procedural],
        ..job(&out, 3)
    };
    run_with_threads(&j, 2);
    let sheet = image::open(&preview).unwrap().to_rgb8();
    assert_eq!(sheet.dimensions(), (3 * 256 + 2 * 4, 256));

    let err = |j: SynthJob| run_job(&j, &|| {}).unwrap_err().to_string();
    assert!(err(job(&out, 0)).contains("--count"));
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = err(SynthJob {
        sources: vec![SourceSpec::Textures(empty.clone())],
        ..job(&out, 2)
    });
    assert!(
        e.contains(&empty.display().to_string()) && e.contains("no readable image"),
        "{e}"
    );
    // An output path below a regular file cannot be created.
    let file = t.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = err(job(&file.join("sub"), 2));
    assert!(
        e.contains("cannot write") && e.contains(&file.display().to_string()),
        "{e}"
    );
    let e = err(SynthJob::new(t.path().join("nope"), &out, 2));
    assert!(e.contains("nope"), "{e}");
    // An explicit rule overrides the table.
    let r = run_job(
        &SynthJob {
            foreground: Some(ForegroundRule::All),
            sources: vec![SourceSpec::Procedural],
            ..job(&t.path().join("p"), 1)
        },
        &|| {},
    )
    .unwrap();
    assert_eq!(r.foreground, ForegroundRule::All);
}

#[test]
fn self_source_draws_from_the_category_training_images() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("own");
    let r = run_with_threads(
        &SynthJob {
            sources: vec![SourceSpec::Own],
            ..job(&out, 4)
        },
        2,
    );
    assert_eq!(r.written, 4);
    let train = Path::new(BOTTLE).join("train").join("good");
    for line in read_index(&out, 4).values() {
        assert_eq!(line.kind, realnet_synth::Kind::Own);
        let src = line.source_file.as_ref().expect("a source file");
        assert!(src.starts_with(&train), "{}", src.display());
        // Outside the mask the sample is its base image, byte for byte.
        let img = image::open(out.join(&line.image)).unwrap().to_rgb8();
        let mask = image::open(out.join(&line.mask)).unwrap().to_luma8();
        let base = realnet_data::load_rgb(&line.base, Some((256, 256))).unwrap();
        assert!(mask.iter().any(|&m| m != 0));
        for (q, (o, b)) in img.pixels().zip(base.pixels()).enumerate() {
            if mask.as_raw()[q] == 0 {
                assert_eq!(o, b, "pixel {q} of {} changed outside the mask", line.image);
            }
        }
    }
}

/// OpenCV 5.0 thresholds and skimage-0.19 morphology, from scripts/fixtures/synth_foreground.py.
#[test]
fn foreground_matches_opencv_and_skimage() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/foreground_opencv.json"
    ))
    .unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stride = fx["meta"]["stride"].as_u64().unwrap() as u32;
    let size = fx["meta"]["size"].as_u64().unwrap() as u32;
    for case in fx["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let full = image::open(Path::new(BOTTLE).join("train/good").join(file))
            .unwrap()
            .to_rgb8();
        // Gray conversion: checksums of OpenCV's COLOR_RGB2GRAY.
        let gray =
            realnet_synth::foreground::channel(&full, realnet_synth::foreground::Channel::Gray);
        let sum: i64 = gray.iter().map(|&v| v as i64).sum();
        let wsum: i64 = gray
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 + 1) * v as i64)
            .sum();
        assert_eq!(sum, case["gray_sum"].as_i64().unwrap(), "{file}");
        assert_eq!(wsum, case["gray_weighted_sum"].as_i64().unwrap(), "{file}");
        use realnet_synth::foreground::Channel::*;
        for (name, ch) in [
            ("gray", Gray),
            ("red", Red),
            ("green", Green),
            ("blue", Blue),
        ] {
            let v = realnet_synth::foreground::channel(&full, ch);
            let want = &case["thresholds"][name];
            assert_eq!(
                otsu_threshold(&v) as f64,
                want["otsu"].as_f64().unwrap(),
                "{file} {name} otsu"
            );
            assert_eq!(
                triangle_threshold(&v) as f64,
                want["triangle"].as_f64().unwrap(),
                "{file} {name} triangle"
            );
        }
        let sub =
            image::RgbImage::from_fn(size, size, |x, y| *full.get_pixel(x * stride, y * stride));
        for (rule, packed) in case["masks_packbits"].as_object().unwrap() {
            let rule: ForegroundRule = rule.parse().unwrap();
            let bytes = base64_decode(packed.as_str().unwrap());
            let want: Vec<u8> = (0..(size * size) as usize)
                .map(|i| (bytes[i / 8] >> (7 - i % 8)) & 1)
                .collect();
            let got: Vec<u8> = foreground_mask(&rule, &sub)
                .iter()
                .map(|&v| u8::from(v != 0))
                .collect();
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "{file} {rule}: {diff} pixels differ");
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= (val(c) as u32) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}
