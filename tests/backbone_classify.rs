//! `realnet backbone classify` gives the expected ImageNet classes of the fixture photos
//! (`expected_imagenet_top1.json`): exact top-1 on stable entries, top-1 within the reference top-5
//! otherwise.
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

fn classify(backbone: &str, weights: &str, json_key: &str) {
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(shared("fixtures/images/expected_imagenet_top1.json")).unwrap(),
    )
    .unwrap();
    let images = ["coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png"];
    let out = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args([
            "--device",
            "cpu",
            "backbone",
            "classify",
            "--json",
            "--backbone",
            backbone,
            "--weights",
        ])
        .arg(shared(&format!("weights/{weights}")))
        .args(
            images
                .iter()
                .map(|i| shared(&format!("fixtures/images/{i}"))),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), images.len());
    for (img, r) in images.iter().zip(results) {
        let e = &expected["images"][img]["models"][json_key];
        let top1 = r["top5"][0]["index"].as_i64().unwrap();
        let p1 = r["top5"][0]["probability"].as_f64().unwrap();
        println!(
            "{backbone} {img}: top1 {top1} p {p1:.4} (expected {} p {})",
            e["top1"], e["top1_prob"]
        );
        if e["stable"].as_bool().unwrap() {
            assert_eq!(top1, e["top1"].as_i64().unwrap(), "{backbone} {img}");
            let pe = e["top1_prob"].as_f64().unwrap();
            assert!(
                (p1 - pe).abs() < 0.02,
                "{backbone} {img}: probability {p1} vs {pe}"
            );
        } else {
            let top5: Vec<i64> = e["top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert!(
                top5.contains(&top1),
                "{backbone} {img}: {top1} not in {top5:?}"
            );
        }
    }
}

#[test]
fn mobilenet_v2_classifies_the_fixture_photos() {
    classify(
        "mobilenet_v2",
        "mobilenet_v2_torchvision_imagenet1k_v1.safetensors",
        "mobilenet_v2_torchvision_imagenet1k_v1",
    );
}

#[test]
fn efficientnet_lite0_classifies_the_fixture_photos() {
    classify(
        "efficientnet_lite0",
        "efficientnet_lite0_imagenet.safetensors",
        "efficientnet_lite0_imagenet",
    );
}

#[test]
fn efficientnet_lite2_classifies_the_fixture_photos() {
    classify(
        "lite2",
        "efficientnet_lite2_imagenet.safetensors",
        "efficientnet_lite2_imagenet",
    );
}
