//! `realnet synth` (owned by the synthesis work; wired here).
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// The category folder whose normal training images are the base images.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of samples.
    #[arg(long)]
    pub count: usize,
}

pub fn run(args: SynthArgs, _g: &super::Global) -> anyhow::Result<i32> {
    anyhow::bail!("synth into {}: in progress", args.out.display())
}
