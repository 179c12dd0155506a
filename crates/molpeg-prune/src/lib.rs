//! Data pruning, pure Rust (no RDKit, no libtorch).
//!
//! - [`keep`]: the keep fraction r and the count ⌊r·N⌋ every rule returns.
//! - [`select`]: static rules ranking samples by a score column (MolPeg, random, any user column), and
//!   the `molpeg-select` stage writing `coreset.parquet`.
//! - [`policy`]: the one interface every dynamic (per-epoch) pruning policy implements, with MolPeg's.
//! - [`rules`]: the static baselines of both papers as pure functions over arrays.
//! - [`signals`]: the proxy run's signal files (`outputs.parquet`, `embeddings.parquet`) that the
//!   baselines read: written by `molpeg-score --signals`, read by `molpeg-select`.
//! - [`fingerprints`]: the featurize stage's `fingerprints.parquet`, read for the `kmeans-fp` rules.

pub mod fingerprints;
pub mod keep;
pub mod policy;
pub mod rules;
pub mod select;
pub mod signals;
