//! realnet's data layer: dataset layouts (MVTec AD / MPDD, BTAD, VisA, plain folders), image and
//! mask decoding, PIL-compatible resizing to the network size. No libtorch.
//!
//! - [`image_io`]: decode any PNG/JPEG/BMP/TIFF to 8-bit RGB, masks to binary, Pillow-exact resizes,
//!   normalisation to CHW floats.
//! - [`layout`]: find the train/test samples and masks of one category folder.
//! - [`load`]: decode many samples on all cores; one bad file never stops the rest.
//! - [`inspect`]: what a category folder holds and every problem in it (`realnet data inspect`).

use std::path::{Path, PathBuf};

pub mod image_io;
pub mod inspect;
pub mod layout;
pub mod load;

pub use image_io::{load_mask, load_rgb, normalize_chw, resize_mask, resize_rgb};
pub use layout::{Category, LayoutKind, Sample};
pub use load::{load_all, Loaded};

/// Everything that can go wrong reading data; every variant names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// One file is unusable (missing, empty, truncated, not an image, too large, …).
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A folder does not have a layout we know, or a split is empty.
    #[error("{0}")]
    Layout(String),
}

impl DataError {
    /// A [`DataError::File`] for `path`.
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        DataError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// The file this error is about, if it is about one file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::File { path, .. } => Some(path),
            DataError::Layout(_) => None,
        }
    }
}
