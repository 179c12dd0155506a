//! Command-line flags of the torch stages. Every flag is optional and, when given, overrides the
//! pipeline file's value; the binaries stay a parse → merge → `run` → print sequence.

use std::path::PathBuf;

use crate::device::DeviceChoice;
use crate::finetune::{FinetuneSettings, Monitor};
use crate::model::{Jk, Pooling};

/// Model-shape flags, shared by every stage that builds a GIN.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// Number of GIN layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden width of every layer.
    #[arg(long)]
    pub width: Option<usize>,
    /// Dropout probability after every layer.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Graph pooling.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Jumping knowledge: which layers' node representations are pooled.
    #[arg(long, value_enum)]
    pub jk: Option<Jk>,
}

/// Flags of `molpeg-finetune`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FinetuneArgs {
    /// Encoder checkpoint (safetensors) to start from; its head is not used.
    #[arg(long, value_name = "SAFETENSORS")]
    pub pretrained: Option<PathBuf>,
    /// Train only on the ids of this coreset, with its weights; output goes to finetune-<tag>/.
    #[arg(long, value_name = "PARQUET")]
    pub coreset: Option<PathBuf>,
    /// Output directory suffix: write to <runs>/<pipeline>/finetune-<TAG>/.
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// libtorch intra-op threads (0 = libtorch's default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Validation number that picks the best epoch.
    #[arg(long, value_enum)]
    pub monitor: Option<Monitor>,
    /// Collate batches on the training thread instead of a second one.
    #[arg(long)]
    pub no_prefetch: bool,
    /// Dynamic pruning policy: molpeg, soft-random, epsilon-greedy, ucb or infobatch.
    #[arg(long, value_name = "POLICY")]
    pub dynamic: Option<String>,
    /// Keep fraction r ∈ (0, 1] for --dynamic (each epoch trains on ⌊r·N⌋ samples, loss weight 1/r).
    #[arg(long)]
    pub keep: Option<f64>,
    /// With --dynamic: train on the full split in this last fraction of the epochs.
    #[arg(long)]
    pub anneal: Option<f64>,
    /// EMA rate β of the MolPeg reference model (ξ ← β·ξ + (1 − β)·θ).
    #[arg(long)]
    pub ema_beta: Option<f64>,
    #[command(flatten)]
    pub model: ModelArgs,
}

macro_rules! override_fields {
    ($src:expr, $dst:expr, $($field:ident),*) => {
        $( if let Some(v) = $src.$field.clone() { $dst.$field = v; } )*
    };
}

impl FinetuneArgs {
    /// Overwrites `settings` with every flag that was given.
    pub fn apply(&self, settings: &mut FinetuneSettings) {
        override_fields!(self, settings, epochs, batch_size, eval_batch_size, lr, weight_decay, seed, device, threads, monitor, anneal, ema_beta);
        if self.dynamic.is_some() {
            settings.dynamic = self.dynamic.clone();
        }
        if self.keep.is_some() {
            settings.keep = self.keep;
        }
        override_fields!(self.model, settings, layers, width, dropout, pooling, jk);
        if self.pretrained.is_some() {
            settings.pretrained = self.pretrained.clone();
        }
        if self.coreset.is_some() {
            settings.coreset = self.coreset.clone();
        }
        if self.tag.is_some() {
            settings.tag = self.tag.clone();
        }
        if self.no_prefetch {
            settings.prefetch = false;
        }
    }
}
