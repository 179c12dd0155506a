//! The scaling-law study of Chen et al. (NeurIPS 2023): how the test metric grows with training data,
//! and whether pruning strategies beat random subsets.
//!
//! - [`config`]: the `[scaling]` section and the grid's axes (strategies `random`, `select:RULE`,
//!   `dynamic:POLICY`; capacities; splits; pretrained encoders).
//! - [`sweep`]: fine-tuning in-process over the grid, one `results.parquet` row per finished cell,
//!   resumable ([`sweep::run`]).
//! - [`results`]: reading and atomically rewriting `results.parquet`.
//! - [`fit`]: the power law `m = a·x^b` (log-log least squares) and a saturating law with an offset
//!   `m = c − a·x^(−α)` (Levenberg–Marquardt), R², and bootstrap confidence intervals over seeds.
//! - [`report`]: `fits.parquet`, `fits.md` and the figures.
//!
//! **Boundary:** links libtorch (through molpeg-nn) but not RDKit; splits come from molpeg-data.

pub mod config;
pub mod fit;
pub mod report;
pub mod results;
pub mod sweep;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] molpeg_core::Error),
    #[error(transparent)]
    Nn(#[from] molpeg_nn::Error),
    #[error("{0}")]
    Config(String),
    /// `results.parquet` holds rows of other settings.
    #[error("{path}: {message}")]
    Stale { path: std::path::PathBuf, message: String },
}
