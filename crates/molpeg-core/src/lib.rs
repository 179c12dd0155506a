//! Shared foundation of molpeg.
//!
//! Main pieces: [`schema`] (the single source of truth for every Parquet column name and type),
//! [`parquet_io`] (reading with schema checks, atomic writing), [`atomic`] (temp file + rename),
//! [`manifest`] (stage cache keys in the spirit of DVC's lock files), [`pipeline`] (the pipeline TOML)
//! [`versions`] (per-stage algorithm versions in every cache key) and [`cli`] (flags every stage binary
//! shares).
//!
//! **Boundary:** this crate links neither RDKit nor libtorch.

pub mod atomic;
pub mod cli;
pub mod columns;
pub mod dataset;
pub mod error;
pub mod fingerprint_file;
pub mod graph_table;
pub mod manifest;
pub mod parquet_io;
pub mod pipeline;
pub mod progress;
pub mod schema;
pub mod shard;
pub mod smiles_tokens;
pub mod versions;

pub use error::{Error, Result};

/// Version of the molpeg tools, recorded in every manifest and Parquet file.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
