//! Unusable weight files give one clear error naming the file and what is wrong, exit code 4.
use realnet::weights::pth::RawTensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

const MNV2: &str = "weights/mobilenet_v2_torchvision_imagenet1k_v1.safetensors";

/// The MobileNetV2 tensors, for editing.
fn mnv2_tensors() -> Vec<(String, RawTensor)> {
    let bytes = std::fs::read(shared(MNV2)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, RawTensor)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                RawTensor {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    data: t.data().to_vec(),
                },
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn write(path: &Path, tensors: &[(String, RawTensor)]) {
    realnet::weights::file::write_safetensors_atomic(path, tensors, HashMap::new()).unwrap();
}

/// `realnet weights check`: (exit code, stderr).
fn check(backbone: &str, file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["weights", "check", "--backbone", backbone])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn valid_file_passes() {
    let (code, err) = check("mobilenet_v2", &shared(MNV2));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn missing_and_wrongly_shaped_tensors_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = mnv2_tensors();
    t.retain(|(n, _)| n != "features.5.conv.1.0.weight" && n != "features.7.conv.3.running_var");
    let w = t
        .iter_mut()
        .find(|(n, _)| n == "features.2.conv.2.weight")
        .unwrap();
    w.1.shape = vec![24, 48, 2, 1]; // same number of elements, wrong shape
    t.push((
        "extra.weight".into(),
        RawTensor {
            dtype: safetensors::Dtype::F32,
            shape: vec![1],
            data: vec![0; 4],
        },
    ));
    let f = dir.path().join("edited.safetensors");
    write(&f, &t);
    let (code, err) = check("mobilenet_v2", &f);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("edited.safetensors"), "names the file: {err}");
    assert!(
        err.contains("2 missing, 1 unexpected, 1 wrongly shaped"),
        "{err}"
    );
    assert!(
        err.contains("features.5.conv.1.0.weight") && err.contains("features.7.conv.3.running_var"),
        "{err}"
    );
    assert!(
        err.contains("features.2.conv.2.weight is [24, 48, 2, 1], expected [24, 96, 1, 1]"),
        "{err}"
    );
    assert!(err.contains("extra.weight"), "{err}");
}

#[test]
fn classifier_may_be_absent_but_not_half_present() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = mnv2_tensors();
    t.retain(|(n, _)| !n.starts_with("classifier."));
    let f = dir.path().join("features_only.safetensors");
    write(&f, &t);
    let (code, err) = check("mobilenet_v2", &f);
    assert_eq!(code, 0, "features-only weights load: {err}");
    // classify needs the head: a clear error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args([
            "--device",
            "cpu",
            "backbone",
            "classify",
            "--backbone",
            "mobilenet_v2",
            "--weights",
        ])
        .arg(&f)
        .arg(shared("fixtures/images/coffee.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no classifier head"));

    let mut t = mnv2_tensors();
    t.retain(|(n, _)| n != "classifier.1.bias");
    let f = dir.path().join("half_head.safetensors");
    write(&f, &t);
    let (code, err) = check("mobilenet_v2", &f);
    assert_eq!(code, 4);
    assert!(err.contains("missing: classifier.1.bias"), "{err}");
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shared(MNV2)).unwrap();
    let f = dir.path().join("cut.safetensors");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let (code, err) = check("mobilenet_v2", &f);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("cut.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn not_a_safetensors_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.safetensors");
    std::fs::write(&f, b"hello, these are not weights\n").unwrap();
    let (code, err) = check("resnet18", &f);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("notes.safetensors") && err.contains("safetensors"),
        "{err}"
    );
    // A .pth given where safetensors is expected: say how to convert.
    let f = dir.path().join("model.pth");
    std::fs::write(&f, b"PK\x03\x04rest of a zip").unwrap();
    let (code, err) = check("resnet18", &f);
    assert_eq!(code, 4);
    assert!(err.contains("realnet weights convert"), "{err}");
}

#[test]
fn wrong_architecture_is_named() {
    let (code, err) = check("efficientnet_lite0", &shared(MNV2));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not valid efficientnet_lite0 weights"),
        "{err}"
    );
    assert!(
        err.contains("this looks like mobilenet_v2 weights"),
        "{err}"
    );
    let (code, err) = check(
        "lite2",
        &shared("weights/efficientnet_lite0_imagenet.safetensors"),
    );
    assert_eq!(code, 4);
    assert!(
        err.contains("this looks like efficientnet_lite0 weights"),
        "{err}"
    );
}

#[test]
fn unknown_backbone_name_is_bad_input() {
    let (code, err) = check("vgg16", &shared(MNV2));
    assert_eq!(code, 3);
    assert!(err.contains("wide_resnet50_2"), "lists the choices: {err}");
}
