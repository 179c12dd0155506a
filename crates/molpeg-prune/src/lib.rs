//! Data pruning, pure Rust (no RDKit, no libtorch).
//!
//! - [`keep`]: the keep fraction r and the count ⌊r·N⌋ every rule returns.
//! - [`select`]: static rules ranking samples by a score column (MolPeg, random, any user column), and
//!   the `molpeg-select` stage writing `coreset.parquet`.
//! - [`policy`]: the one interface every dynamic (per-epoch) pruning policy implements, with MolPeg's.

pub mod keep;
pub mod policy;
pub mod rules;
pub mod select;
