//! Typed errors of molpeg-nn. Each variant names the file (and row, where one applies) and, where the
//! fix is not obvious, what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] molpeg_core::Error),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A record of an input file breaks an invariant of its schema.
    #[error("{path}: row {row} (mol_id {mol_id}): {message}")]
    Row {
        path: PathBuf,
        row: usize,
        mol_id: u32,
        message: String,
    },
    /// An input file is readable but its content cannot be used (empty split, unknown ids, ...).
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    /// The loss became NaN or infinite.
    #[error("{0}")]
    Diverged(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error (this is a bug in molpeg-nn, please report it): {0}")]
    Internal(String),
}

impl Error {
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data { path: path.into(), message: message.into() }
    }
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }
}
