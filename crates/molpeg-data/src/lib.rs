//! Dataset acquisition and splitting; no RDKit, no libtorch.
//!
//! - [`dataset::DatasetSpec`]: the `[dataset]` section of a pipeline file.
//! - [`fetch`]: resolves the raw file (local path, `data/raw` cache, offline mirror, canonical URL)
//!   and verifies its checksum.
//! - [`source::RowReader`]: streams `(row, smiles, labels)` from a CSV or gzipped CSV.
//! - [`split`]: random, python-random (pretrain-gnns / MolPeg, index for index), scaffold and
//!   imbalanced-scaffold splits, and the `molpeg-split` stage; [`python_random`]: Python's Mersenne
//!   Twister `seed`/`shuffle`.

pub mod dataset;
pub mod fetch;
pub mod python_random;
pub mod source;
pub mod split;
