//! `realnet metrics` end to end on a tiny MVTec-layout category built in a temp folder.
mod common;
use common::write_npy as npy;
use std::path::Path;
use std::process::Command;

const W: u32 = 8;
const H: u32 = 8;

fn png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

/// Category: 2 good + 2 crack test images; crack masks are 16×16 (twice the map size) with a
/// square in the top-left quarter (x, y < 8 in mask pixels → < 4 in map pixels).
/// Maps: perfect (1.0 inside the defect, 0.1 elsewhere).
fn setup(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cat = root.join("widget");
    let maps = root.join("maps");
    png(&cat.join("train/good/000.png"), W, H, |_, _| 128);
    for i in 0..2 {
        png(&cat.join(format!("test/good/{i:03}.png")), W, H, |_, _| 128);
        npy(
            &maps.join(format!("good/{i:03}.npy")),
            W as usize,
            H as usize,
            &[0.1; (W * H) as usize],
        );
        // Image and mask at 16², maps at 8²: masks are resized to the map (nearest).
        png(
            &cat.join(format!("test/crack/{i:03}.png")),
            16,
            16,
            |_, _| 128,
        );
        png(
            &cat.join(format!("ground_truth/crack/{i:03}_mask.png")),
            16,
            16,
            |x, y| {
                if x < 8 && y < 8 {
                    255
                } else {
                    0
                }
            },
        );
        let map: Vec<f32> = (0..W * H)
            .map(|p| if p % W < 4 && p / W < 4 { 1.0 } else { 0.1 })
            .collect();
        npy(
            &maps.join(format!("crack/{i:03}.npy")),
            W as usize,
            H as usize,
            &map,
        );
    }
    (cat, maps)
}

fn realnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(cat: &Path, maps: &Path, extra: &[&str]) -> (i32, String, String) {
    let (c, m) = (cat.to_str().unwrap(), maps.to_str().unwrap());
    let mut args = vec!["metrics", "--maps", m, "--data", c];
    args.extend_from_slice(extra);
    realnet(&args)
}

#[test]
fn perfect_maps_give_ones_in_json_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, maps) = setup(dir.path());
    let (code, out, err) = run(&cat, &maps, &["--json", "--image-score", "max"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "pixel_ap",
        "image_f1_max",
    ] {
        assert_eq!(v[k].as_f64(), Some(1.0), "{k}: {out}");
        assert_eq!(
            v["per_defect"]["crack"][k].as_f64(),
            Some(1.0),
            "crack {k}: {out}"
        );
    }
    assert_eq!(v["n_images"], 4);
    assert_eq!(v["n_anomalous"], 2);
    assert_eq!(v["image_f1_threshold"].as_f64(), Some(1.0));

    // meanpool:4 finds the 4×4 defect exactly; the table names every set
    let (code, out, err) = run(&cat, &maps, &["--image-score", "meanpool:4"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("all") && out.contains("crack") && out.contains("1.0000"),
        "{out}"
    );
}

#[test]
fn reversed_maps_are_reported_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, maps) = setup(dir.path());
    for i in 0..2 {
        let map: Vec<f32> = (0..W * H)
            .map(|p| if p % W < 4 && p / W < 4 { 0.0 } else { 0.5 })
            .collect();
        npy(
            &maps.join(format!("crack/{i:03}.npy")),
            W as usize,
            H as usize,
            &map,
        );
    }
    let (code, out, err) = run(&cat, &maps, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pixel_auroc"].as_f64(), Some(0.0), "not flipped: {out}");
}

#[test]
fn bad_inputs_exit_3_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, maps) = setup(dir.path());

    // a missing map
    std::fs::remove_file(maps.join("good/001.npy")).unwrap();
    let (code, _, err) = run(&cat, &maps, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("test/good/001.png") && err.contains("no map"),
        "{err}"
    );

    // NaN in a map, and a map of no test image: both reported in one run
    npy(
        &maps.join("good/001.npy"),
        W as usize,
        H as usize,
        &[f32::NAN; (W * H) as usize],
    );
    npy(
        &maps.join("crack/007.npy"),
        W as usize,
        H as usize,
        &[0.0; (W * H) as usize],
    );
    let (code, _, err) = run(&cat, &maps, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("good/001.npy") && err.contains("not finite"),
        "{err}"
    );
    assert!(
        err.contains("crack/007.npy") && err.contains("no test image"),
        "{err}"
    );

    // a defective image without its mask
    npy(
        &maps.join("good/001.npy"),
        W as usize,
        H as usize,
        &[0.1; (W * H) as usize],
    );
    std::fs::remove_file(maps.join("crack/007.npy")).unwrap();
    std::fs::remove_file(cat.join("ground_truth/crack/001_mask.png")).unwrap();
    let (code, _, err) = run(&cat, &maps, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("test/crack/001.png") && err.contains("mask"),
        "{err}"
    );

    // not a maps folder; a bad --image-score is a usage error
    let (code, _, err) = run(&cat, &dir.path().join("nowhere"), &[]);
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = run(&cat, &maps, &["--image-score", "median"]);
    assert_eq!(code, 2);
}
