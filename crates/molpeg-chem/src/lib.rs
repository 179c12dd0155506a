//! The only molpeg crate that links RDKit: molecule featurization and the featurize stage.
//!
//! - [`graph`]: SMILES → [`MolGraph`] (Hu et al. 2019 and OGB features, directed edges, canonical
//!   SMILES, Murcko scaffold) or a [`Reject`] with its reason. [`Featurizer`] is the reusable form.
//! - [`features`]: the two schemes' vocabularies as pure functions of RDKit's raw values, and the
//!   [`OtherCounts`] of values that fell into an "other"/"misc" slot.
//! - [`fingerprint`]: Morgan bit vectors ([`MorganSpec`]), packed as `fingerprints.parquet` stores them.
//! - [`featurize`]: the `molpeg-featurize` stage: dataset CSV → `graphs.parquet` + `rejects.parquet`
//!   (+ `fingerprints.parquet` when asked).
//! - `bridge` (private): our cxx bridge to RDKit; one call per molecule.
//!
//! **Boundary:** RDKit is reached only through rdkit-sys (parsing) and `bridge` (everything else);
//! every C++ exception becomes a [`Reject`] or an error, never an abort.

mod bridge;
pub mod features;
pub mod featurize;
pub mod fingerprint;
pub mod geometry;
pub mod graph;

pub use features::{OtherCounts, OtherSlot};
pub use fingerprint::MorganSpec;
pub use graph::{featurize_smiles, rdkit_version, Featurizer, MolGraph, Reject};

/// Bumped whenever a feature's vocabulary, order or meaning changes; part of the featurize stage's
/// cache key and of the graph Parquet metadata.
pub const FEATURIZER_VERSION: &str = "1";
