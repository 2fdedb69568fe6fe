//! `realnet backbone …`: check that a weights file is the right one by classifying photos.
use clap::Subcommand;
use realnet::error::{exit, UserError};
use realnet::model::backbone::{imagenet, Backbone, BackboneKind};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BackboneCmd {
    /// ImageNet top-5 of photos (each backbone's own evaluation preprocessing).
    Classify {
        #[arg(long)]
        backbone: String,
        #[arg(long)]
        weights: PathBuf,
        /// One JSON document on stdout instead of text lines.
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
}

pub fn run(cmd: BackboneCmd, g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        BackboneCmd::Classify {
            backbone,
            weights,
            json,
            images,
        } => classify(&backbone, &weights, json, &images, g),
    }
}

fn classify(
    backbone: &str,
    weights: &std::path::Path,
    json: bool,
    images: &[PathBuf],
    g: &super::Global,
) -> anyhow::Result<i32> {
    let kind = BackboneKind::parse(backbone)?;
    let device = realnet::device::parse_device(&g.device)?;
    let net = Backbone::load(kind, weights, device)?;
    if !net.has_classifier() {
        return Err(UserError::BadModel(format!(
            "{}: these {kind} weights have no classifier head, so they cannot classify",
            weights.display()
        ))
        .into());
    }
    let mut results = Vec::new();
    let mut skipped = 0;
    for path in images {
        let x = match imagenet::load_input(path, kind) {
            Ok(x) => x.to_device(device),
            Err(e) => {
                eprintln!("skipped: {e}");
                skipped += 1;
                continue;
            }
        };
        let top = imagenet::top_k(&net.logits(&x), 5);
        if json {
            let t: Vec<_> = top
                .iter()
                .map(|(i, p)| serde_json::json!({"index": i, "probability": p}))
                .collect();
            results.push(serde_json::json!({"image": path.display().to_string(), "top5": t}));
        } else {
            let t: Vec<String> = top.iter().map(|(i, p)| format!("{i} ({p:.4})")).collect();
            println!("{}: {}", path.display(), t.join(", "));
        }
    }
    if json {
        let doc = serde_json::json!({
            "backbone": kind.name(),
            "weights_sha256": net.weights_sha256(),
            "crop": kind.native_resolution(),
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(match skipped {
        0 => exit::OK,
        n if n == images.len() => exit::BAD_INPUT,
        _ => exit::PARTIAL,
    })
}
