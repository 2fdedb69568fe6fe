//! `realnet data inspect` end to end, on the built binary.
use std::path::PathBuf;
use std::process::Command;

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).join(rel);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found", p.display());
        None
    }
}

fn realnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(args)
        .output()
        .expect("run realnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_bottle_text_and_json() {
    let Some(dir) = shared("mvtec_ad/bottle") else {
        return;
    };
    let d = dir.to_str().unwrap();
    let (code, out, err) = realnet(&["data", "inspect", d]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("MVTec AD / MPDD"), "{out}");
    assert!(out.contains("train     209 images"), "{out}");
    assert!(out.contains("83 images: 20 good, 63 defective"), "{out}");
    assert!(
        out.contains("broken_large 20, broken_small 22, contamination 21"),
        "{out}"
    );
    assert!(out.contains("63 of 63 defective images have one"), "{out}");
    assert!(out.contains("problems  none"), "{out}");

    let (code, out, _) = realnet(&["data", "inspect", d, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layout"], "mvtec");
    assert_eq!(v["train"]["total"], 209);
    assert_eq!(v["test"]["per_defect"]["good"], 20);
    assert_eq!(v["masks"]["found"], 63);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn inspect_magnetic_tile_quick() {
    let Some(dir) = shared("magnetic_tile") else {
        return;
    };
    let (code, out, err) = realnet(&[
        "data",
        "inspect",
        dir.to_str().unwrap(),
        "--quick",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["train"]["total"], 762);
    assert_eq!(v["test"]["per_defect"]["good"], 190);
    assert_eq!(v["masks"]["found"], 388);
    assert_eq!(v["images"]["kinds"]["jpeg gray8"], 1340);
}

#[test]
fn inspect_reports_problems_with_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("cat");
    std::fs::create_dir_all(cat.join("train/good")).unwrap();
    std::fs::create_dir_all(cat.join("test/scratch")).unwrap();
    let img = image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]));
    img.save(cat.join("train/good/ok.png")).unwrap();
    std::fs::write(cat.join("train/good/empty.png"), b"").unwrap();
    img.save(cat.join("test/scratch/000.png")).unwrap(); // no mask
    let (code, out, _) = realnet(&["data", "inspect", cat.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("empty.png [bad_image]: empty file"), "{out}");
    assert!(out.contains("000.png [missing_mask]"), "{out}");

    // No known layout: exit 3, and the message says what was expected.
    let (code, _, err) = realnet(&[
        "data",
        "inspect",
        tmp.path().join("cat/train").to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no known dataset layout"), "{err}");
}
