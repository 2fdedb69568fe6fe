//! `realnet data …` (owned by the data-layer work; wired here).
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Print what a category folder holds and every problem found.
    Inspect {
        /// The category folder (MVTec AD / MPDD / BTAD / VisA layout).
        dir: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCmd, _g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        DataCmd::Inspect { dir, .. } => anyhow::bail!("data inspect {}: in progress", dir.display()),
    }
}
