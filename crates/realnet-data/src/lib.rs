//! realnet's data layer: dataset layouts (MVTec AD / MPDD, BTAD, VisA, plain folders), image and
//! mask decoding, PIL-compatible resizing to the network size. No libtorch.

/// Everything that can go wrong reading data; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    File { path: std::path::PathBuf, message: String },
    #[error("{0}")]
    Layout(String),
}
