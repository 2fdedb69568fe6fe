//! `realnet weights …`: convert PyTorch checkpoints, check a file against a backbone.
use clap::Subcommand;
use realnet::error::exit;
use realnet::model::backbone::{check_weights, BackboneKind};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum WeightsCmd {
    /// Convert a PyTorch checkpoint (.pth, zip or legacy format) to safetensors, without Python.
    Convert { input: PathBuf, output: PathBuf },
    /// Check a safetensors file strictly against a backbone (names and shapes).
    Check {
        #[arg(long)]
        backbone: String,
        weights: PathBuf,
    },
}

pub fn run(cmd: WeightsCmd, _g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        WeightsCmd::Convert { input, output } => {
            let s = realnet::weights::convert(&input, &output)?;
            let nested = if s.nested_under.is_empty() {
                String::new()
            } else {
                format!(" (under '{}')", s.nested_under)
            };
            println!(
                "{}: {} tensors, {} parameters, {} format{nested} -> {}",
                input.display(),
                s.tensors,
                s.parameters,
                s.format,
                output.display()
            );
            if !s.skipped.is_empty() {
                println!("skipped non-tensor entries: {}", s.skipped.join(", "));
            }
            println!("source sha256 {}", s.source_sha256);
            Ok(exit::OK)
        }
        WeightsCmd::Check { backbone, weights } => {
            let kind = BackboneKind::parse(&backbone)?;
            let file = realnet::weights::read_safetensors(&weights)?;
            let map: HashMap<String, tch::Tensor> = file.tensors.into_iter().collect();
            check_weights(kind, &weights, &map)?;
            println!(
                "{}: valid {kind} weights (sha256 {})",
                weights.display(),
                file.sha256
            );
            Ok(exit::OK)
        }
    }
}
