//! `realnet backbone …` (owned by the backbone work; wired here).
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BackboneCmd {
    /// ImageNet top-5 of photos.
    Classify {
        #[arg(long)]
        backbone: String,
        #[arg(long)]
        weights: PathBuf,
        images: Vec<PathBuf>,
    },
}

pub fn run(cmd: BackboneCmd, _g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        BackboneCmd::Classify { backbone, .. } => anyhow::bail!("classify {backbone}: in progress"),
    }
}
