//! Command-line flags of the torch stages. Every flag is optional and, when given, overrides the
//! pipeline file's value; the binaries stay a parse → merge → `run` → print sequence.

use std::path::PathBuf;

use crate::device::DeviceChoice;
use crate::dual_pace::{ReferenceDropout, ReferenceHead, ReferenceInit};
use crate::finetune::{FinetuneSettings, Monitor, Unscored};
use crate::train::SampleLoss;
use crate::pretrain::PretrainSettings;
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
    pub eval_batch_size: Option<usize>,
    /// Validation number that picks the best epoch.
    #[arg(long, value_enum)]
    pub monitor: Option<Monitor>,
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
    /// MolPeg reference model's dropout masks: its own (independent, the official code) or θ's (shared).
    #[arg(long, value_enum)]
    pub reference_dropout: Option<ReferenceDropout>,
    /// MolPeg reference model's head: θ's current head (online, the official code) or its own EMA head.
    #[arg(long, value_enum)]
    pub reference_head: Option<ReferenceHead>,
    /// MolPeg reference model's start: its own seeded random weights (random, the official code) or a copy of θ (online).
    #[arg(long, value_enum)]
    pub reference_init: Option<ReferenceInit>,
    /// Per-sample loss over tasks: ÷ all tasks (all-tasks, the official code) or ÷ labelled tasks.
    #[arg(long, value_enum)]
    pub sample_loss: Option<SampleLoss>,
    /// Dynamic MolPeg's rank of unscored samples: at score 1 (score-one, the official code) or first.
    #[arg(long, value_enum)]
    pub unscored: Option<Unscored>,
    /// Dynamic soft-random draws each epoch without replacement (the official code draws with replacement).
    #[arg(long)]
    pub soft_random_without_replacement: bool,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Optimization and runtime flags, shared by every stage that trains.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub batch_size: Option<usize>,
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
    /// Collate batches on the training thread instead of a second one.
    #[arg(long)]
    pub no_prefetch: bool,
}

macro_rules! override_fields {
    ($src:expr, $dst:expr, $($field:ident),*) => {
        $( if let Some(v) = $src.$field.clone() { $dst.$field = v; } )*
    };
}

impl FinetuneArgs {
    /// Overwrites `settings` with every flag that was given.
    pub fn apply(&self, settings: &mut FinetuneSettings) {
        override_fields!(self.train, settings, epochs, batch_size, lr, weight_decay, seed, device, threads);
        override_fields!(self, settings, eval_batch_size, monitor, anneal, ema_beta, reference_dropout, reference_head, reference_init, sample_loss, unscored);
        if self.soft_random_without_replacement {
            settings.soft_random_replacement = false;
        }
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
        if self.train.no_prefetch {
            settings.prefetch = false;
        }
    }
}

/// Flags of `molpeg-pretrain`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PretrainArgs {
    /// Input graphs.parquet (default: <runs>/<[pretrain] source or this pipeline>/featurize/graphs.parquet).
    #[arg(long, value_name = "PARQUET")]
    pub graphs: Option<PathBuf>,
    /// Continue from <stage dir>/resume.safetensors (written every --checkpoint-every steps).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimizer steps in this invocation, leaving a checkpoint to --resume from.
    #[arg(long, value_name = "STEPS")]
    pub max_steps: Option<u64>,
    /// Use only the first N molecules of the input.
    #[arg(long, alias = "limit", value_name = "N")]
    pub max_molecules: Option<usize>,
    /// Fraction of each molecule's atoms replaced by the mask token.
    #[arg(long)]
    pub mask_rate: Option<f64>,
    /// Exponent α of the scaled cosine error (1 − cos)^α.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Molecules per streamed chunk (shuffled within; chunk order shuffled per epoch).
    #[arg(long)]
    pub chunk_molecules: Option<usize>,
    /// Write encoder.safetensors, pretrain_log.parquet and the resume state every N steps.
    #[arg(long, value_name = "STEPS")]
    pub checkpoint_every: Option<u64>,
    /// One log row every N steps (and one per epoch).
    #[arg(long, value_name = "STEPS")]
    pub log_every: Option<u64>,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl PretrainArgs {
    /// Overwrites `settings` with every flag that was given (`--pooling` has no effect: pretraining
    /// trains node representations).
    pub fn apply(&self, settings: &mut PretrainSettings) {
        override_fields!(self.train, settings, epochs, batch_size, lr, weight_decay, seed, device, threads);
        override_fields!(self, settings, mask_rate, alpha, chunk_molecules, checkpoint_every, log_every);
        override_fields!(self.model, settings, layers, width, dropout, jk);
        if self.max_molecules.is_some() {
            settings.max_molecules = self.max_molecules;
        }
        if self.train.no_prefetch {
            settings.prefetch = false;
        }
    }
}

/// How a stage binary ends: its summary on stdout and success, or the error with its causes (printed
/// once) on stderr and failure.
pub fn finish<T: std::fmt::Display>(result: anyhow::Result<T>) -> std::process::ExitCode {
    match result {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
