//! ResNet-18/50 and WideResNet-50-2: a torchvision-format checkpoint with random weights, written by
//! the venv's torch at test time (scripts/fixtures/make_resnet_fixture.py), converts with
//! `realnet weights convert`, loads strictly and gives torch's features and logits.
//! Skipped, with a note, when the Python venv is missing.
use realnet::model::backbone::{Backbone, BackboneKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Tensor};

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("REALNET_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/realnet/venv"))
        })?;
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// Runs the fixture generator for `arch` into a fresh tempdir.
fn fixture(arch: &str) -> Option<tempfile::TempDir> {
    let Some(py) = python() else {
        eprintln!("NOTE: skipped: no Python venv with torch (run scripts/setup.sh)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/make_resnet_fixture.py");
    let st = Command::new(py)
        .arg(script)
        .arg(dir.path())
        .arg(arch)
        .status()
        .unwrap();
    assert!(st.success(), "fixture generator failed");
    Some(dir)
}

fn convert(input: &Path, output: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["weights", "convert"])
        .arg(input)
        .arg(output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1.0)
}

fn check(arch: &str, kind: BackboneKind) -> Option<tempfile::TempDir> {
    let dir = fixture(arch)?;
    let st = dir.path().join(format!("{arch}.safetensors"));
    convert(&dir.path().join(format!("{arch}.pth")), &st);
    let net = Backbone::load(kind, &st, Device::Cpu).unwrap();
    let reference: HashMap<String, Tensor> = realnet::weights::read_safetensors(
        &dir.path().join(format!("{arch}_features.safetensors")),
    )
    .unwrap()
    .tensors
    .into_iter()
    .collect();
    let f = net.features(&reference["input"]);
    for (i, got) in f.iter().enumerate() {
        let e = rel_err(got, &reference[&format!("layer{}", i + 1)]);
        println!("{arch} layer{}: {e:.2e}", i + 1);
        assert!(e <= 1e-4, "{arch} layer{}: {e}", i + 1);
    }
    let e = rel_err(&net.logits(&reference["input"]), &reference["logits"]);
    println!("{arch} logits: {e:.2e}");
    assert!(e <= 1e-4, "{arch} logits: {e}");
    assert_eq!(net.weights_sha256().map(str::len), Some(64));
    Some(dir)
}

#[test]
fn resnet18_legacy_and_nested_checkpoints_too() {
    let Some(dir) = check("resnet18", BackboneKind::ResNet18) else {
        return;
    };
    let p = |n: &str| dir.path().join(n);
    convert(&p("resnet18_legacy.pth"), &p("legacy.safetensors"));
    convert(&p("resnet18_nested.pth"), &p("nested.safetensors"));
    let read = |n: &str| -> Vec<(String, Tensor)> {
        realnet::weights::read_safetensors(&p(n)).unwrap().tensors
    };
    let base = read("resnet18.safetensors");
    for other in ["legacy.safetensors", "nested.safetensors"] {
        let o: HashMap<String, Tensor> = read(other).into_iter().collect();
        assert_eq!(o.len(), base.len(), "{other}");
        for (name, t) in &base {
            let u = o
                .get(name)
                .unwrap_or_else(|| panic!("{other}: {name} missing"));
            assert!(t.equal(u), "{other}: {name} differs");
        }
    }
}

#[test]
fn resnet50_matches_torchvision() {
    check("resnet50", BackboneKind::ResNet50);
}

#[test]
fn wide_resnet50_2_matches_torchvision() {
    check("wide_resnet50_2", BackboneKind::WideResNet50_2);
}
