//! `realnet data …`: dataset inspection (a thin layer over `realnet_data::inspect`).
use clap::Subcommand;
use realnet::data::image_io::DecodeOptions;
use realnet::data::inspect::{inspect_dir, InspectOptions};
use realnet::error::exit;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Print what a category folder holds and every problem found.
    ///
    /// Shows the detected layout, image counts per split and defect type, masks found, image
    /// sizes and pixel kinds, then every problem file by file: missing masks, empty, truncated or
    /// non-image files, masks whose size differs from their image, masks with no anomalous pixel.
    /// Exit status: 0 when no problem was found, 3 when problems were found (all are listed) or
    /// the folder has no known layout.
    Inspect {
        /// The category folder (MVTec AD / MPDD / BTAD layout, or a VisA object folder).
        dir: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Read image headers only (faster; does not notice truncated pixel data). Masks are
        /// always decoded.
        #[arg(long)]
        quick: bool,
        /// Refuse images with more pixels than this (a corrupt header can claim 100000x100000).
        #[arg(long, default_value_t = realnet::data::image_io::DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
    },
}

pub fn run(cmd: DataCmd, _g: &super::Global) -> anyhow::Result<i32> {
    match cmd {
        DataCmd::Inspect {
            dir,
            json,
            quick,
            max_pixels,
        } => {
            let opts = InspectOptions {
                full_decode: !quick,
                decode: DecodeOptions { max_pixels },
            };
            let report = inspect_dir(&dir, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.problems.is_empty() {
                exit::OK
            } else {
                exit::BAD_INPUT
            })
        }
    }
}
