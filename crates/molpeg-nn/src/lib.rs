//! GIN models, batch collation, the training loop, EMA, metrics and checkpoints: the only molpeg
//! crate that links libtorch.
//!
//! Layers, from the bottom: [`data`] (the in-memory [`data::GraphStore`] read once from Parquet),
//! [`batch`] (collation into tensors, prefetching loader), [`model`] (the GIN and
//! [`model::ema_update`]), [`checkpoint`] (safetensors), [`metrics`] (pure Rust, sklearn-compatible),
//! [`train`] (the reusable [`train::Trainer`]: one epoch over a caller-given plan of
//! (sample, weight), per-sample losses out), and [`finetune`] (the stage: [`finetune::run`]).
//! [`pretrain`] is the GraphMAE pretraining stage (streamed input, resumable, with its own
//! [`adam::Adam`] whose state can be saved).
//! [`interop`] imports and exports Hu et al. (pretrain-gnns) state dicts (`molpeg-checkpoint`).
//! [`synthetic`] writes fake datasets for tests and benchmarks.
//!
//! **Boundary:** no RDKit here; the binaries of this crate can run on a machine with libtorch only.

pub mod adam;
pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod dual_pace;
pub mod dynamic;
pub mod error;
pub mod finetune;
pub mod interop;
pub mod metrics;
pub mod model;
pub mod pretrain;
pub mod runtime;
pub mod schnet;
pub mod score;
pub mod synthetic;
pub mod train;

pub use error::{Error, Result};
pub use tch;
