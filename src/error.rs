//! Errors that reach the user, with the documented process exit codes.

/// Process exit codes (documented in the README).
pub mod exit {
    /// Everything worked.
    pub const OK: i32 = 0;
    /// An unexpected failure (I/O error writing outputs, a libtorch error, …).
    pub const FAILURE: i32 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: i32 = 2;
    /// Input data is unusable: unreadable images, missing masks, an empty folder, bad maps.
    pub const BAD_INPUT: i32 = 3;
    /// A model, weights or configuration file is unusable.
    pub const BAD_MODEL: i32 = 4;
    /// The job finished, but some inputs were skipped (each one was reported).
    pub const PARTIAL: i32 = 5;
}

/// An error the user can act on, tagged with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    BadModel(String),
}

impl UserError {
    pub fn exit_code(&self) -> i32 {
        match self {
            UserError::BadInput(_) => exit::BAD_INPUT,
            UserError::BadModel(_) => exit::BAD_MODEL,
        }
    }
}

/// The exit code for any error chain: the first [`UserError`] (or a data-layer error) decides.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            return u.exit_code();
        }
        if cause.downcast_ref::<realnet_data::DataError>().is_some() {
            return exit::BAD_INPUT;
        }
    }
    exit::FAILURE
}
