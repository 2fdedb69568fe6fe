//! `realnet weights …` (owned by the backbone work; wired here).
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum WeightsCmd {
    /// Convert a PyTorch checkpoint (.pth, zip or legacy format) to safetensors.
    Convert { input: PathBuf, output: PathBuf },
}

pub fn run(cmd: WeightsCmd, _g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        WeightsCmd::Convert { input, .. } => anyhow::bail!("convert {}: in progress", input.display()),
    }
}
