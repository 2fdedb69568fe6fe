//! `realnet metrics` (owned by the metrics work; wired here).
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Folder of maps: DIR/<defect>/<stem>.npy or .tiff.
    #[arg(long)]
    pub maps: PathBuf,
    /// The category folder with the test split and masks.
    #[arg(long)]
    pub data: PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: MetricsArgs, _g: &super::Global) -> anyhow::Result<i32> {
    anyhow::bail!("metrics on {}: in progress", args.maps.display())
}
