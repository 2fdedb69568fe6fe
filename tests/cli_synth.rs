//! `realnet synth` end to end: outputs, exit codes and messages.
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

/// Runs `realnet synth ARGS`: (exit code, stdout, stderr).
fn synth(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .arg("synth")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn synth_writes_images_masks_index_and_preview() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let preview = t.path().join("preview.png");
    let bottle = shared("data/mvtec_ad/bottle");
    let textures = format!("textures:{}", shared("textures").display());
    let (code, stdout, stderr) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "3",
        "--seed",
        "5",
        "--source",
        &textures,
        "--preview",
        preview.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("otsu:gray:dark:close6:open6"), "{stdout}");
    for i in 0..3 {
        assert!(out.join(format!("images/{i:05}.png")).is_file());
        assert!(out.join(format!("masks/{i:05}.png")).is_file());
    }
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 3);
    assert!(index.contains("\"kind\":\"texture\""));
    assert!(preview.is_file());
    // Rerun: resumes, nothing new.
    let (code, stdout, _) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "3",
        "--seed",
        "5",
        "--source",
        &textures,
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("0 new, 3 from an earlier run"), "{stdout}");
}

#[test]
fn synth_bad_inputs_exit_3_with_a_clear_message() {
    let t = tempfile::tempdir().unwrap();
    let bottle = shared("data/mvtec_ad/bottle");
    let out = t.path().join("out");
    let (code, _, err) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "0",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--count"), "{err}");

    let empty = t.path().join("no_textures");
    std::fs::create_dir(&empty).unwrap();
    let src = format!("textures:{}", empty.display());
    let (code, _, err) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
        "--source",
        &src,
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&empty.display().to_string()) && err.contains("no readable image"),
        "{err}"
    );

    let file = t.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    let bad_out = file.join("out");
    let (code, _, err) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
        "--count",
        "2",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot write"), "{err}");

    let (code, _, err) = synth(&[
        "--data",
        t.path().join("missing").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("missing"), "{err}");

    // Malformed option values are usage errors (clap, exit 2) that say what is expected.
    let (code, _, err) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
        "--foreground",
        "otsu:purple:dark",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown channel"), "{err}");
    let (code, _, err) = synth(&[
        "--data",
        bottle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
        "--source",
        "dtd",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("textures:DIR"), "{err}");
}
