//! Typed errors shared by the library crates. Each variant names the file (and row where one applies)
//! and, where the fix is not obvious, what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the message and deliberately not a `source`, so `{:#}` prints it once.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: Parquet error: {cause}")]
    Parquet { path: PathBuf, cause: parquet::errors::ParquetError },
    #[error("{path}: Arrow error: {cause}")]
    Arrow { path: PathBuf, cause: arrow::error::ArrowError },
    #[error(
        "{path}: schema mismatch: {problem}.\n  expected columns: {expected}\n  found columns:    {found}\n  \
         (re-run the stage that writes this file with --force, or check that it came from this molpeg version)"
    )]
    Schema {
        path: PathBuf,
        problem: String,
        expected: String,
        found: String,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
    pub fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet { path: path.into(), cause: source }
    }
    /// An Arrow error while handling `path`. A molpeg error carried inside (a corrupted-file error
    /// from [`crate::parquet_io::Batches`]) comes back out whole, so its message is not wrapped twice.
    pub fn arrow(path: impl Into<PathBuf>, source: arrow::error::ArrowError) -> Self {
        match source {
            arrow::error::ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
                Ok(mine) => *mine,
                Err(other) => Error::Arrow { path: path.into(), cause: arrow::error::ArrowError::ExternalError(other) },
            },
            other => Error::Arrow { path: path.into(), cause: other },
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Invalid { path: path.into(), message: message.into() }
    }
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), message: message.into() }
    }
}
