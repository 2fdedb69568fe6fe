//! Errors of the metrics layer; each one names the item or file at fault and what to do.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("nothing to evaluate: the list of scored images is empty")]
    Empty,
    /// An item's map or mask does not have the size it claims.
    #[error("{name}: {message}")]
    Shape { name: String, message: String },
    /// NaN or infinity in a map or an image score.
    #[error("{name}: {message}")]
    NonFinite { name: String, message: String },
    /// More pixels or connected regions than one evaluation can index (2^32).
    #[error("too large to evaluate in one call: {0}")]
    TooLarge(String),
    /// A map file that cannot be read or is not a float H×W map.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

impl MetricsError {
    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        MetricsError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
