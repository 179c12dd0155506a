//! The fine-tuning stage: train a GIN on the train split (or a coreset of it), evaluate valid and test
//! every epoch, keep the weights of the best-valid epoch, and report test at that epoch.
//!
//! Inputs: `runs/<pipeline>/featurize/graphs.parquet`, `runs/<pipeline>/split/split.parquet`, and
//! optionally a coreset and a pretrained encoder. Outputs, in `runs/<pipeline>/finetune/` — or
//! `finetune-<tag>/` when a tag is set or a coreset is given (the tag then defaults to the coreset's
//! stage directory name, e.g. `select-molpeg-0.3`, or to its file stem when it is not named
//! `coreset.parquet`): `metrics.parquet` (long form: per epoch a train-loss row and a row per
//! metric for valid and test), `model.safetensors` (best-valid weights) and `summary.json`, then the
//! stage manifest, last.
//!
//! [`run`] is the stage; [`fit`] is the epoch loop alone (no file IO), for in-process drivers such
//! as a scaling sweep.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Array, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::record_batch::RecordBatch;
use indicatif::ProgressBar;
use molpeg_core::manifest::StageRun;
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::{self, meta};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::checkpoint::{self, Checkpoint, Scope};
use crate::batch::TokenCoverage;
use crate::data::{load_coreset, Dataset, Sample, TaskKind};
use crate::device::{describe, DeviceChoice};
use crate::dual_pace::{DualPace, ReferenceDropout, ReferenceHead, ReferenceInit, ReferenceOptions};
use crate::dynamic::PolicySchedule;
use crate::metrics;
use crate::model::{FingerprintInput, Jk, Model, ModelConfig, ModelKind, Pooling, SequenceConfig};
use crate::schnet::{Readout, SchnetConfig};
use molpeg_core::smiles_tokens::Vocabulary;
use crate::train::{shuffled, BatchOutcome, Evaluation, Objective, SampleLoss, TrainConfig, Trainer};
use crate::{Error, Result};

pub const STAGE: &str = "finetune";
pub const METRICS_FILE: &str = "metrics.parquet";
pub const MODEL_FILE: &str = "model.safetensors";
pub const SUMMARY_FILE: &str = "summary.json";
pub const PREDICTIONS_FILE: &str = schema::eval_predictions::FILE;
/// Checkpoint metadata keys written by this stage.
pub const META_OBJECTIVE: &str = "molpeg.objective";

/// Which validation number picks the best epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Monitor {
    /// ROC-AUC for binary tasks, RMSE for regression.
    #[default]
    Auto,
    Loss,
    RocAuc,
    AveragePrecision,
    Mae,
    Rmse,
}

impl Monitor {
    /// The metric name for `kind`, or an error if the metric does not apply to it.
    pub fn resolve(self, kind: TaskKind) -> Result<&'static str> {
        let name = match (self, kind) {
            (Monitor::Auto, TaskKind::Binary) => metrics::ROC_AUC,
            (Monitor::Auto, TaskKind::Regression) => metrics::RMSE,
            (Monitor::Loss, _) => metrics::LOSS,
            (Monitor::RocAuc, TaskKind::Binary) => metrics::ROC_AUC,
            (Monitor::AveragePrecision, TaskKind::Binary) => metrics::AVERAGE_PRECISION,
            (Monitor::Mae, TaskKind::Regression) => metrics::MAE,
            (Monitor::Rmse, TaskKind::Regression) => metrics::RMSE,
            (m, k) => return Err(Error::Config(format!("monitor {m:?} does not apply to {} tasks", k.as_str()))),
        };
        Ok(name)
    }
}

/// The `[finetune]` section of a pipeline file. Defaults are the paper's setting (Hu et al.'s GIN,
/// MolPeg's schedule): 5 × 300, dropout 0.5, mean pooling, batch 256, Adam 1e-3, 100 epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSettings {
    pub epochs: u32,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per physical core).
    pub threads: usize,
    pub layers: usize,
    pub width: usize,
    pub dropout: f64,
    pub pooling: Pooling,
    pub jk: Jk,
    pub monitor: Monitor,
    /// Collate the next batch on a second thread while the current one trains.
    pub prefetch: bool,
    /// Encoder checkpoint to start from (its `gnn.*` tensors; the head is re-initialized).
    pub pretrained: Option<PathBuf>,
    /// Train only on these ids, with these weights (`coreset.parquet`).
    pub coreset: Option<PathBuf>,
    /// Output directory suffix: the stage writes to `finetune-<tag>/`.
    pub tag: Option<String>,
    /// Dynamic pruning policy (`molpeg`, `soft-random`, `epsilon-greedy`, `ucb`, `infobatch`): the
    /// training samples of each epoch are chosen by the policy instead of being the whole split.
    pub dynamic: Option<String>,
    /// Keep fraction r ∈ (0, 1] of the dynamic policy.
    pub keep: Option<f64>,
    /// Train on the full split in the last fraction of epochs (dynamic policies; 0 = never).
    pub anneal: f64,
    /// EMA rate β of the reference model ξ ← β·ξ + (1 − β)·θ (MolPeg scoring, dynamic MolPeg).
    pub ema_beta: f64,
    /// Dropout masks of the reference model's forward pass: `independent` (its own, the official
    /// code) or `shared` (θ's masks of the same batch). See [`crate::dual_pace`].
    pub reference_dropout: ReferenceDropout,
    /// Head of the reference model: `online` (θ's current head, the official code) or `ema`.
    pub reference_head: ReferenceHead,
    /// Start of the reference model: `random` (its own seeded initialisation, the official code) or
    /// `online` (a copy of θ's starting weights).
    pub reference_init: ReferenceInit,
    /// Per-sample loss over tasks: `all-tasks` (÷ number of tasks, the official code) or
    /// `labelled-tasks` (÷ labelled tasks). Single-task datasets are unaffected.
    pub sample_loss: SampleLoss,
    /// Dynamic MolPeg's rank of never-scored samples: `score-one` (they rank with score 1, the official
    /// code's initial score) or `first` (above every scored sample).
    pub unscored: Unscored,
    /// Dynamic soft-random draws with replacement (the official code's `np.random.randint`).
    pub soft_random_replacement: bool,
    /// The encoder: `gin` (layers, width, dropout, pooling and jk above), `fingerprint` or `smiles`
    /// (the `[finetune.sequence]` table), or `schnet` (the `[finetune.schnet]` table; reads
    /// `atoms3d.parquet`).
    #[serde(skip_serializing_if = "is_default")]
    pub model: ModelKind,
    /// The token models' shape (`[finetune.sequence]`); unused by the GIN.
    #[serde(skip_serializing_if = "is_default")]
    pub sequence: SequenceSettings,
    /// SchNet's shape (`[finetune.schnet]`); unused by the other models.
    #[serde(skip_serializing_if = "is_default")]
    pub schnet: SchnetSettings,
}

/// Which sizes an unset `[finetune.schnet]` key takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SchnetPreset {
    /// PyTorch Geometric's `SchNet` defaults (Schütt et al.'s QM9 model): hidden 128, 128 filters,
    /// 6 interactions, 50 gaussians, cutoff 10 Å. For a GPU.
    #[default]
    Pyg,
    /// MolScaling's QM9 SchNet (`main_3d.py`'s defaults): hidden 128, 128 filters, 6 interactions,
    /// 51 gaussians, cutoff 5 Å. For a GPU; the scaling paper's 3D setting.
    Molscaling,
    /// A CPU-sized SchNet: hidden 64, 64 filters, 3 interactions, 50 gaussians, cutoff 5 Å (about an
    /// eighth of the work per molecule; see ARCHITECTURE.md, "SchNet").
    Cpu,
}

/// SchNet's shape (`[finetune.schnet]`): a preset, and any key set overrides it. `readout` is `sum`
/// for extensive targets (energies, ZPVE, heat capacity) and `mean` for intensive ones (HOMO, LUMO,
/// gap, dipole moment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchnetSettings {
    pub preset: SchnetPreset,
    pub hidden: Option<usize>,
    pub filters: Option<usize>,
    pub interactions: Option<usize>,
    pub gaussians: Option<usize>,
    /// Neighbour cutoff, Å.
    pub cutoff: Option<f64>,
    pub readout: Readout,
    /// Nearest neighbours per atom at most (none: every atom within the cutoff).
    pub max_neighbors: Option<usize>,
}

impl SchnetSettings {
    /// `(interactions, hidden, the rest)` after applying the preset.
    pub fn resolve(&self) -> (usize, usize, SchnetConfig) {
        let (hidden, filters, interactions, gaussians, cutoff) = match self.preset {
            SchnetPreset::Pyg => (128, 128, 6, 50, 10.0),
            SchnetPreset::Molscaling => (128, 128, 6, 51, 5.0),
            SchnetPreset::Cpu => (64, 64, 3, 50, 5.0),
        };
        let config = SchnetConfig {
            filters: self.filters.unwrap_or(filters),
            gaussians: self.gaussians.unwrap_or(gaussians),
            cutoff: self.cutoff.unwrap_or(cutoff),
            readout: self.readout,
            max_neighbors: self.max_neighbors,
        };
        (self.interactions.unwrap_or(interactions), self.hidden.unwrap_or(hidden), config)
    }

    /// The SchNet of these settings with `num_tasks` outputs.
    pub fn model_config(&self, num_tasks: usize) -> ModelConfig {
        let (layers, width, schnet) = self.resolve();
        ModelConfig { kind: ModelKind::Schnet, layers, width, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks, sequence: None, schnet: Some(schnet) }
    }
}

/// Whether `v` is its type's default: settings added after a release are left out of the stage
/// parameters while they keep their default, so upgrading does not invalidate cached runs.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The token models' shape (`[finetune.sequence]`). Defaults are the scaling paper's
/// (`Data-reindeer/MolScaling`, `model/fp_model.py`): one Transformer layer, 64-dim tokens, 8 heads,
/// feed-forward width 300 (its `dim_feedforward = emb_dim`), dropout 0.1 (PyTorch's default), at
/// most 510 SMILES tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceSettings {
    pub layers: usize,
    pub width: usize,
    pub heads: usize,
    pub ffn: usize,
    pub dropout: f64,
    /// SMILES tokens per molecule at most (longer SMILES are cut and counted in the summary).
    pub max_len: usize,
    /// A SMILES token enters the vocabulary when the training split has it this often; rarer ones
    /// read as `<unk>`.
    pub min_token_count: usize,
    /// Length-bucketed training batches: each window of this many batches of the shuffled epoch is
    /// sorted by token length before it is cut into batches, and the batches are then shuffled, so
    /// a batch pads to the length of similar molecules instead of the longest of 256 random ones
    /// (5–10× less attention work on HIV's SMILES). 0 or 1: plain random batches (MolScaling's).
    pub length_buckets: usize,
}

impl Default for SequenceSettings {
    fn default() -> Self {
        SequenceSettings { layers: 1, width: 64, heads: 8, ffn: 300, dropout: 0.1, max_len: 510, min_token_count: 1, length_buckets: 16 }
    }
}

/// Where dynamic MolPeg ranks samples it has not scored yet (`[finetune] unscored`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Unscored {
    /// As if their score were 1 (the official code initialises every score to 1).
    #[default]
    ScoreOne,
    /// Above every scored sample, so the first ⌈1/r⌉ epochs cover the split exactly once.
    First,
}

impl Default for FinetuneSettings {
    fn default() -> Self {
        FinetuneSettings {
            epochs: 100,
            batch_size: 256,
            eval_batch_size: 1024,
            lr: 1e-3,
            weight_decay: 0.0,
            seed: 0,
            device: DeviceChoice::Auto,
            threads: 0,
            layers: 5,
            width: 300,
            dropout: 0.5,
            pooling: Pooling::Mean,
            jk: Jk::Last,
            monitor: Monitor::Auto,
            prefetch: true,
            pretrained: None,
            coreset: None,
            tag: None,
            dynamic: None,
            keep: None,
            anneal: 0.0,
            ema_beta: 0.5,
            reference_dropout: ReferenceDropout::default(),
            reference_head: ReferenceHead::default(),
            reference_init: ReferenceInit::default(),
            sample_loss: SampleLoss::default(),
            unscored: Unscored::default(),
            soft_random_replacement: true,
            model: ModelKind::Gin,
            sequence: SequenceSettings::default(),
            schnet: SchnetSettings::default(),
        }
    }
}

impl FinetuneSettings {
    /// The GIN of these settings (layers, width, dropout, pooling, jk).
    pub fn model_config(&self, num_tasks: usize) -> ModelConfig {
        ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: self.layers, width: self.width, dropout: self.dropout, pooling: self.pooling, jk: self.jk, num_tasks }
    }

    /// The model of these settings for `data`: the GIN, or a token model whose input (fingerprint
    /// width, SMILES vocabulary from the training split) comes from the data. The data must hold the
    /// model's inputs ([`Dataset::load_for`]).
    pub fn model_config_for(&self, data: &Dataset) -> Result<ModelConfig> {
        let num_tasks = data.num_tasks();
        let q = &self.sequence;
        // A fingerprint has at most `bits` set bits, so its length limit never cuts.
        let (fingerprint, vocabulary, max_len) = match self.model {
            ModelKind::Gin => return Ok(self.model_config(num_tasks)),
            ModelKind::Schnet => {
                if data.store.atoms3d.is_none() {
                    return Err(Error::Internal("3D atoms were not loaded".into()));
                }
                let config = self.schnet.model_config(num_tasks);
                config.validate()?;
                return Ok(config);
            }
            ModelKind::Fingerprint => {
                let fp = data.store.fingerprints.as_ref().ok_or_else(|| Error::Internal("fingerprints were not loaded".into()))?;
                (Some(FingerprintInput { bits: fp.bits, radius: fp.radius }), None, fp.bits)
            }
            ModelKind::Smiles => {
                let smiles = data.store.smiles.as_ref().ok_or_else(|| Error::Internal("SMILES tokens were not loaded".into()))?;
                (None, Some(Vocabulary::from_counts(smiles.counts(&data.train), q.min_token_count)), q.max_len)
            }
        };
        let config = ModelConfig {
            kind: self.model,
            layers: q.layers,
            width: q.width,
            dropout: q.dropout,
            pooling: Pooling::Mean,
            jk: Jk::Last,
            num_tasks,
            sequence: Some(SequenceConfig { heads: q.heads, ffn: q.ffn, max_len, fingerprint, vocabulary }),
            schnet: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the `[finetune.sequence]` shape without data.
    fn validate_sequence(&self) -> Result<()> {
        let q = &self.sequence;
        let what = format!("{} ([finetune.sequence])", self.model.as_str());
        let in_section = |e: Error| match e {
            Error::Config(m) => Error::Config(format!("[finetune.sequence] {m}")),
            other => other,
        };
        ModelConfig::gin(q.layers, q.width, q.dropout, 1).validate().map_err(in_section)?;
        crate::model::check_sequence_shape(&what, q.width, q.heads, q.ffn, q.max_len)
    }

    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch_size,
            eval_batch_size: self.eval_batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            prefetch: self.prefetch,
            seed: self.seed,
            length_buckets: self.sequence.length_buckets,
        }
    }

    /// MolPeg's reference-model settings.
    pub fn reference_options(&self) -> ReferenceOptions {
        ReferenceOptions { beta: self.ema_beta, dropout: self.reference_dropout, head: self.reference_head, init: self.reference_init }
    }

    /// Checks everything that does not need the data.
    pub fn validate(&self) -> Result<()> {
        self.model_config(1).validate()?;
        match self.model {
            ModelKind::Gin => {}
            ModelKind::Fingerprint | ModelKind::Smiles => self.validate_sequence()?,
            ModelKind::Schnet => self.schnet.model_config(1).validate().map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("[finetune.schnet] {m}")),
                other => other,
            })?,
        }
        if self.epochs == 0 {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
        self.train_config().validate()?;
        if self.dynamic.is_some() && self.coreset.is_some() {
            return Err(Error::Config("a run uses either a static coreset or a dynamic policy, not both".into()));
        }
        if self.dynamic.is_some() != self.keep.is_some() && self.dynamic.as_deref() != Some("infobatch") {
            return Err(Error::Config("--dynamic POLICY needs --keep R (and --keep needs --dynamic)".into()));
        }
        if !(0.0..=1.0).contains(&self.anneal) || !(0.0..=1.0).contains(&self.ema_beta) {
            return Err(Error::Config(format!("anneal ({}) and ema_beta ({}) must be in [0, 1]", self.anneal, self.ema_beta)));
        }
        if let Some(tag) = &self.tag {
            if tag.is_empty() || tag.contains(['/', '\\']) {
                return Err(Error::Config(format!("tag `{tag}` must be a non-empty name without slashes")));
            }
        }
        Ok(())
    }

    /// The stage directory name: `finetune`, or `finetune-<tag>` (see the module docs).
    pub fn stage_name(&self) -> String {
        let dynamic_tag = self.dynamic.as_ref().map(|policy| match self.keep {
            Some(keep) => format!("dynamic-{policy}-keep{keep}"),
            None => format!("dynamic-{policy}"),
        });
        let tag = self.tag.clone().or(dynamic_tag).or_else(|| {
            self.coreset.as_ref().map(|p| {
                let parent = p.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned());
                match (p.file_name().and_then(|f| f.to_str()), parent) {
                    (Some("coreset.parquet"), Some(dir)) => dir,
                    _ => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "coreset".into()),
                }
            })
        });
        match tag {
            Some(t) => format!("{STAGE}-{t}"),
            None => STAGE.to_string(),
        }
    }
}

/// A resolved stage run: settings plus the paths derived from the pipeline.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub settings: FinetuneSettings,
    pub graphs: PathBuf,
    pub split: PathBuf,
    pub out_dir: PathBuf,
    /// Rerun even when the manifest says the outputs are up to date.
    pub force: bool,
    /// Show a progress bar and one log line per epoch on stderr.
    pub verbose: bool,
}

impl FinetuneConfig {
    /// Paths of a pipeline's stage: inputs from `featurize/` and `split/`, output per [`FinetuneSettings::stage_name`].
    pub fn for_pipeline(pipeline: &Pipeline, runs_dir: &Path, settings: FinetuneSettings) -> Self {
        FinetuneConfig {
            graphs: pipeline.stage_dir(runs_dir, "featurize").join("graphs.parquet"),
            split: pipeline.stage_dir(runs_dir, "split").join("split.parquet"),
            out_dir: pipeline.stage_dir(runs_dir, &settings.stage_name()),
            settings,
            force: false,
            verbose: true,
        }
    }
}

/// One row of `metrics.parquet` (defined with its columns in the schema module).
pub use molpeg_core::schema::metrics::MetricRow;

/// What [`run`] reports (and writes to `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSummary {
    pub stage_dir: PathBuf,
    /// True when an up-to-date previous run was found and nothing was recomputed.
    pub skipped: bool,
    pub task_type: TaskKind,
    pub task_names: Vec<String>,
    pub train_samples: usize,
    pub valid_samples: usize,
    pub test_samples: usize,
    pub coreset: Option<PathBuf>,
    pub pretrained: Option<PathBuf>,
    pub epochs: u32,
    pub monitor: String,
    pub best_epoch: u32,
    pub best_valid: BTreeMap<String, Option<f64>>,
    pub test_at_best: BTreeMap<String, Option<f64>>,
    /// Test metrics of every task at the best epoch, each with its status (`ok`, or why a metric is
    /// undefined, e.g. one class only in the test split).
    #[serde(default)]
    pub test_per_task: Vec<metrics::TaskMetrics>,
    pub final_train_loss: f64,
    pub samples_seen: u64,
    pub train_seconds: f64,
    pub graphs_per_second: f64,
    pub device: String,
    pub parameters: i64,
    /// What makes the result weaker than it looks: an empty valid or test split, a monitored metric
    /// that was never defined (so "best epoch" is just the last one). Printed loudly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The encoder (`gin`, `fingerprint`, `smiles`).
    #[serde(default)]
    pub model: ModelKind,
    /// The token models' input: vocabulary size and how well it covers the valid and test molecules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSummary>,
}

/// [`FinetuneSummary::tokens`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSummary {
    /// Rows of the token embedding: fingerprint bits + 1 (padding), or the SMILES vocabulary's size
    /// with `<pad>` and `<unk>`.
    pub vocabulary: usize,
    /// Tokens of the train split read (after truncation).
    pub train: TokenCoverage,
    /// Tokens of the valid and test splits: how many are `<unk>` (not in the training vocabulary) and
    /// how many molecules were cut at the length limit.
    pub valid_test: TokenCoverage,
}

impl TokenSummary {
    /// The summary of `model`'s inputs on `data`, or `None` for the GIN.
    pub fn of(model: &Model, data: &Dataset) -> Result<Option<TokenSummary>> {
        let Some(input) = model.token_input(&data.store)? else { return Ok(None) };
        let held_out: Vec<u32> = data.valid.iter().chain(&data.test).copied().collect();
        let vocabulary = model.config.token_rows().unwrap_or(0);
        Ok(Some(TokenSummary { vocabulary, train: input.coverage(&data.store, &data.train), valid_test: input.coverage(&data.store, &held_out) }))
    }
}

/// The warnings of [`FinetuneSummary::warnings`].
fn evaluation_warnings(valid: usize, test: usize, monitor: &str, best_valid: &BTreeMap<String, Option<f64>>, test_at_best: &BTreeMap<String, Option<f64>>) -> Vec<String> {
    let mut warnings = Vec::new();
    if valid == 0 {
        warnings.push(format!("the valid split is empty: nothing selects the best epoch, so the last epoch is reported; valid {monitor} is n/a"));
    } else if best_valid.get(monitor).copied().flatten().is_none() {
        warnings.push(format!(
            "valid {monitor} was undefined in every epoch (e.g. every task has one class, or no labels, in the valid split): the last epoch is reported as best"
        ));
    }
    if test == 0 {
        warnings.push("the test split is empty: there is no test metric".into());
    } else if test_at_best.get(monitor).copied().flatten().is_none() {
        warnings.push(format!("test {monitor} is undefined (every task has one class, or no labels, in the test split)"));
    }
    warnings
}

impl fmt::Display for FinetuneSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |m: &BTreeMap<String, Option<f64>>| {
            m.iter().map(|(k, v)| format!("{k} {}", v.map_or("n/a".into(), |v| format!("{v:.4}")))).collect::<Vec<_>>().join(", ")
        };
        if self.skipped {
            writeln!(f, "{}: up to date, skipped (use --force to rerun)", self.stage_dir.display())?;
        }
        writeln!(
            f,
            "finetune: {} train / {} valid / {} test molecules, {} {} task(s), {} epochs on {}",
            self.train_samples,
            self.valid_samples,
            self.test_samples,
            self.task_names.len(),
            self.task_type.as_str(),
            self.epochs,
            self.device
        )?;
        writeln!(f, "best epoch {} by valid {}: valid {}", self.best_epoch, self.monitor, show(&self.best_valid))?;
        writeln!(f, "test at best epoch: {}", show(&self.test_at_best))?;
        let undefined: Vec<String> = self.test_per_task.iter().filter(|t| t.status != metrics::STATUS_OK).map(|t| format!("{} ({})", t.task, t.status)).collect();
        if self.test_per_task.len() > 1 || !undefined.is_empty() {
            writeln!(f, "per-task test metrics: {} task(s) in summary.json and metrics.parquet; undefined for {}", self.test_per_task.len(), if undefined.is_empty() { "none".into() } else { undefined.join(", ") })?;
        }
        if let Some(t) = &self.tokens {
            writeln!(
                f,
                "{} model: {} token ids; valid+test: {} tokens, {} unknown (<unk>), {} molecules cut at the length limit (train: {} cut)",
                self.model.as_str(),
                t.vocabulary,
                t.valid_test.tokens,
                t.valid_test.unknown,
                t.valid_test.truncated_molecules,
                t.train.truncated_molecules
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "WARNING: {warning}")?;
        }
        write!(f, "trained {} graphs in {:.1} s ({:.0} graphs/s); outputs in {}", self.samples_seen, self.train_seconds, self.graphs_per_second, self.stage_dir.display())
    }
}

/// Result of [`fit`].
pub struct FitResult {
    pub rows: Vec<MetricRow>,
    pub best_epoch: u32,
    pub best_valid: Option<Evaluation>,
    pub best_test: Option<Evaluation>,
    /// CPU copies of the best epoch's variables.
    pub best_state: Vec<(String, Tensor)>,
    pub final_train_loss: f64,
    pub train_seconds: f64,
}

/// Whether `new` beats `best` for the monitored metric. An undefined value never replaces a defined
/// one, but replaces an undefined one, so with no defined value at all the last epoch wins.
fn improves(new: Option<f64>, best: Option<Option<f64>>, higher_better: bool) -> bool {
    match (new, best) {
        (_, None) => true,
        (None, Some(b)) => b.is_none(),
        (Some(_), Some(None)) => true,
        (Some(n), Some(Some(b))) => {
            if higher_better {
                n > b
            } else {
                n < b
            }
        }
    }
}

/// How [`fit`] runs.
pub struct FitOptions<'a> {
    pub epochs: u32,
    /// Seeds the per-epoch shuffles (and libtorch's generator, used by dropout on CUDA).
    pub seed: u64,
    /// Metric name (see [`Monitor::resolve`]) whose valid value picks the best epoch.
    pub monitor: &'a str,
    /// Advanced by the number of graphs trained on.
    pub bar: &'a ProgressBar,
    /// One line per epoch on stderr.
    pub log: bool,
    /// When the test split is evaluated.
    pub test: TestEvaluation,
}

/// When [`fit`] evaluates the test split. Either way the reported test metric is the best-valid
/// epoch's (evaluation uses no random numbers, so training is the same in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestEvaluation {
    /// After every epoch: `metrics.parquet` holds the whole test curve (the fine-tuning stage).
    EveryEpoch,
    /// Once, with the best-valid epoch's weights, after the last epoch: no test curve, half the
    /// evaluation cost (the scaling sweep, which keeps only the test metric at the best epoch).
    AtBestEpoch,
}

/// Trains for `epochs` epochs on `plan` (reshuffled each epoch), evaluating valid after each (and
/// test, per [`TestEvaluation`]); returns the metric rows and the best-valid epoch's weights. No file IO.
/// Decides each epoch's training plan and watches every batch: a fixed plan (the full training split
/// or a coreset, [`StaticPlan`]) or a dynamic pruning policy ([`crate::dynamic::PolicySchedule`]).
pub trait Schedule {
    /// The samples (store indices) and loss weights of epoch `epoch` (1-based) of `epochs`.
    fn plan(&mut self, epoch: u32, epochs: u32) -> Vec<Sample>;
    /// Called after every optimizer step.
    fn after_batch(&mut self, _outcome: &BatchOutcome) -> Result<()> {
        Ok(())
    }
}

/// The same plan every epoch.
pub struct StaticPlan(pub Vec<Sample>);

impl Schedule for StaticPlan {
    fn plan(&mut self, _epoch: u32, _epochs: u32) -> Vec<Sample> {
        self.0.clone()
    }
}

pub fn fit(trainer: &mut Trainer, data: &Dataset, schedule: &mut dyn Schedule, options: &FitOptions) -> Result<FitResult> {
    let FitOptions { epochs, seed, monitor, bar, log, test: test_evaluation } = *options;
    let test_every_epoch = test_evaluation == TestEvaluation::EveryEpoch;
    let store: &Arc<_> = &data.store;
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut best: Option<(u32, Option<f64>)> = None;
    let mut best_evals = (None, None);
    let mut best_state = Vec::new();
    let mut final_train_loss = 0.0;
    let mut train_seconds = 0.0;
    let higher = metrics::higher_is_better(monitor);
    for epoch in 1..=epochs {
        // Re-seeding libtorch (its dropout is used on CUDA) per epoch makes an epoch depend only on
        // (seed, epoch, weights).
        tch::manual_seed((crate::batch::mix_seed(seed, epoch as u64) >> 1) as i64);
        let order = shuffled(&schedule.plan(epoch, epochs), seed, epoch);
        let stats = trainer.train_epoch(store, &order, |outcome| {
            bar.inc(outcome.losses.len() as u64);
            schedule.after_batch(outcome)
        })?;
        train_seconds += stats.seconds;
        final_train_loss = stats.mean_loss;
        if !stats.mean_loss.is_finite() {
            return Err(Error::Diverged(format!(
                "training diverged in epoch {epoch}: the mean train loss is {} (not finite), so every later epoch and the metrics would be meaningless. \
                 Lower the learning rate (now {}), check the labels (regression targets of very large magnitude), or try another --seed",
                stats.mean_loss, trainer.config.lr
            )));
        }
        let seen = trainer.samples_seen;
        rows.push(MetricRow {
            epoch,
            split: schema::split::TRAIN.into(),
            metric: metrics::LOSS.into(),
            value: Some(stats.mean_loss),
            loss: Some(stats.mean_loss),
            samples_seen: seen,
            seconds: start.elapsed().as_secs_f64(),
            task: None,
        });
        // Size of the epoch's training set: below the split's size under pruning.
        rows.push(MetricRow {
            epoch,
            split: schema::split::TRAIN.into(),
            metric: metrics::KEPT.into(),
            value: Some(order.len() as f64),
            loss: None,
            samples_seen: seen,
            seconds: start.elapsed().as_secs_f64(),
            task: None,
        });
        let mut evals = Vec::new();
        for (name, indices) in [(schema::split::VALID, &data.valid), (schema::split::TEST, &data.test)] {
            let skip = indices.is_empty() || (name == schema::split::TEST && !test_every_epoch);
            let eval = if skip { None } else { Some(trainer.evaluate_named(store, indices, &data.task_names)?) };
            if let Some(e) = &eval {
                let seconds = start.elapsed().as_secs_f64();
                for &(metric, value) in &e.metrics {
                    rows.push(MetricRow { epoch, split: name.into(), metric: metric.into(), value, loss: e.loss, samples_seen: seen, seconds, task: None });
                }
                // Per-task rows after the averages, so that `task IS NULL` selects exactly the rows of
                // schema version 1.
                for t in &e.per_task {
                    for (metric, value) in &t.values {
                        let task = Some(t.task.clone());
                        rows.push(MetricRow { epoch, split: name.into(), metric: metric.clone(), value: *value, loss: None, samples_seen: seen, seconds, task });
                    }
                }
            }
            evals.push(eval);
        }
        let test = evals.pop().flatten();
        let valid = evals.pop().flatten();
        let score = valid.as_ref().and_then(|v| v.metric(monitor));
        if improves(score, best.map(|b| b.1), higher) {
            best = Some((epoch, score));
            best_state = trainer.model.snapshot();
            best_evals = (valid.clone(), test.clone());
        }
        if log {
            let fmt = |e: &Option<Evaluation>| e.as_ref().and_then(|e| e.metric(monitor)).map_or("n/a".into(), |v| format!("{v:.4}"));
            let line = format!(
                "epoch {epoch}/{epochs}: train loss {:.4}, valid {monitor} {}, test {monitor} {} ({:.1} s, {:.0} graphs/s)",
                stats.mean_loss,
                fmt(&valid),
                fmt(&test),
                stats.seconds,
                order.len() as f64 / stats.seconds.max(1e-9)
            );
            bar.suspend(|| eprintln!("{line}"));
        }
    }
    let (best_epoch, _) = best.ok_or_else(|| Error::Internal("no epoch was run".into()))?;
    if !test_every_epoch && !data.test.is_empty() {
        // Evaluate the best epoch's weights, then put the last epoch's back (callers may go on with them).
        let last = trainer.model.snapshot();
        trainer.model.restore(&best_state)?;
        let test = trainer.evaluate_named(store, &data.test, &data.task_names);
        trainer.model.restore(&last)?;
        best_evals.1 = Some(test?);
    }
    Ok(FitResult { rows, best_epoch, best_valid: best_evals.0, best_test: best_evals.1, best_state, final_train_loss, train_seconds })
}

/// A finished in-memory training run (see [`train`]).
pub struct Trained {
    pub fit: FitResult,
    pub trainer: Trainer,
    /// The dynamic policy's schedule with its sightings (MolPeg scores), when `settings.dynamic` is set.
    pub dynamic: Option<PolicySchedule>,
    /// Samples of the static plan (for a dynamic policy: of the split it prunes).
    pub train_samples: usize,
    pub parameters: i64,
    /// The monitored metric's name.
    pub monitor: &'static str,
}

/// One training run without file IO (apart from reading `settings.pretrained`): seeds libtorch with
/// `settings.seed`, builds the GIN on `device`, loads the pretrained encoder, and runs [`fit`] on `plan`
/// every epoch, or on what the policy `settings.dynamic` picks from the training split each epoch.
/// [`run`] writes its outputs; in-process drivers such as the scaling sweep call it directly.
pub fn train(data: &Dataset, s: &FinetuneSettings, plan: Vec<Sample>, device: Device, bar: &ProgressBar, log: bool, test: TestEvaluation) -> Result<Trained> {
    let monitor = s.monitor.resolve(data.task_kind)?;
    tch::manual_seed(s.seed as i64);
    let model = Model::new(&s.model_config_for(data)?, device)?;
    if let Some(p) = &s.pretrained {
        Checkpoint::read(p)?.load_into(&model, Scope::Encoder)?;
    }
    let parameters = model.num_parameters();
    let objective = Objective::for_task(data.task_kind, &data.store, &data.train).with_sample_loss(s.sample_loss);
    let mut trainer = Trainer::new(model, objective, s.train_config())?;
    let mut dynamic = s.dynamic.as_deref().map(|policy| PolicySchedule::new(policy, data, s)).transpose()?;
    if dynamic.as_ref().is_some_and(PolicySchedule::needs_reference) {
        trainer.reference = Some(DualPace::new(&trainer.model, s.reference_options(), s.seed)?);
    }
    let train_samples = plan.len();
    let mut fixed = StaticPlan(plan);
    let schedule: &mut dyn Schedule = match dynamic.as_mut() {
        Some(policy) => policy,
        None => &mut fixed,
    };
    let fit = fit(&mut trainer, data, schedule, &FitOptions { epochs: s.epochs, seed: s.seed, monitor, bar, log, test })?;
    Ok(Trained { fit, trainer, dynamic, train_samples, parameters, monitor })
}

fn require_input(path: &Path, what: &str) -> Result<()> {
    if molpeg_core::dataset::exists(path) {
        Ok(())
    } else {
        Err(Error::data(path, format!("{what} not found")))
    }
}

/// Writes `metrics.parquet`.
pub fn write_metrics(path: &Path, rows: &[MetricRow], data: &Dataset) -> Result<PathBuf> {
    let schema = schema::metrics::schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.epoch))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.split.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.metric.as_str()))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.value))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.loss))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.samples_seen))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.seconds))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.task.as_deref()))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    let extra = BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(&data.task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), data.task_kind.as_str().to_string()),
    ]);
    Ok(write_batches(path, schema, schema::metrics::KIND, &extra, &[batch])?)
}

/// A model output as `predictions.parquet` stores it: σ(logit) for binary tasks (the same f32
/// formula as `molpeg-predict`, so both files hold the same bits), the value itself for regression.
pub fn output_to_prediction(kind: TaskKind, output: f32) -> f32 {
    match kind {
        TaskKind::Binary => 1.0 / (1.0 + (-output).exp()),
        TaskKind::Regression => output,
    }
}

/// Writes `predictions.parquet`: the best epoch's valid and test outputs, one row per (molecule, task).
pub fn write_eval_predictions(path: &Path, data: &Dataset, epoch: u32, valid: &Option<Evaluation>, test: &Option<Evaluation>) -> Result<PathBuf> {
    use schema::eval_predictions as ep;
    let tasks = data.num_tasks();
    let (mut ids, mut splits, mut task_col, mut labels, mut preds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (name, indices, eval) in [(schema::split::VALID, &data.valid, valid), (schema::split::TEST, &data.test, test)] {
        let Some(e) = eval else { continue };
        for (r, &g) in indices.iter().enumerate() {
            for (j, task) in data.task_names.iter().enumerate() {
                let k = r * tasks + j;
                ids.push(data.store.mol_ids[g as usize]);
                splits.push(name);
                task_col.push(task.as_str());
                labels.push((!e.labels[k].is_nan()).then_some(e.labels[k]));
                preds.push(output_to_prediction(data.task_kind, e.outputs[k]));
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(ids)),
        Arc::new(StringArray::from(splits)),
        Arc::new(StringArray::from(task_col)),
        Arc::new(Float32Array::from(labels)),
        Arc::new(Float32Array::from(preds)),
    ];
    let batch = RecordBatch::try_new(ep::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    let extra = BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(&data.task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), data.task_kind.as_str().to_string()),
        (ep::META_EPOCH.to_string(), epoch.to_string()),
    ]);
    Ok(write_batches(path, ep::schema(), ep::KIND, &extra, &[batch])?)
}

fn as_map(e: &Option<Evaluation>) -> BTreeMap<String, Option<f64>> {
    let mut m = BTreeMap::new();
    if let Some(e) = e {
        m.insert(metrics::LOSS.to_string(), e.loss);
        for &(k, v) in &e.metrics {
            m.insert(k.to_string(), v);
        }
    }
    m
}

/// Runs the stage (see the module docs). An unchanged rerun is skipped unless `config.force`.
pub fn run(config: &FinetuneConfig) -> Result<FinetuneSummary> {
    let s = &config.settings;
    s.validate()?;
    require_input(&config.graphs, "graphs.parquet (run the featurize stage first)")?;
    require_input(&config.split, "split.parquet (run the split stage first)")?;
    let mut inputs: Vec<&Path> = vec![&config.graphs, &config.split];
    if let Some(p) = &s.coreset {
        require_input(p, "coreset file")?;
        inputs.push(p);
    }
    if let Some(p) = &s.pretrained {
        require_input(p, "pretrained checkpoint")?;
        inputs.push(p);
    }
    let model_inputs = crate::data::model_input_files(&config.graphs, s.model)?;
    inputs.extend(model_inputs.iter().map(PathBuf::as_path));
    if s.threads > 0 {
        tch::set_num_threads(s.threads as i32);
    }
    let device = s.device.resolve()?;
    let params = serde_json::json!({ "settings": s, "device": if device.is_cuda() { "cuda" } else { "cpu" } });
    let stage = StageRun::new(STAGE, &config.out_dir, &params, &inputs)?;
    let summary_path = config.out_dir.join(SUMMARY_FILE);
    if !config.force {
        if let Some(cached) = stage.cached() {
            if let Ok(mut summary) = serde_json::from_value::<FinetuneSummary>(cached.summary) {
                summary.skipped = true;
                return Ok(summary);
            }
        }
    }
    stage.begin()?;

    let data = Dataset::load_for(&config.graphs, &config.split, s.model)?;
    let plan = match &s.coreset {
        Some(p) => load_coreset(p, &data)?,
        None => Sample::unweighted(&data.train),
    };
    // For a dynamic policy this is an upper bound: pruned epochs finish early.
    let bar = if config.verbose { molpeg_core::progress::bar(s.epochs as u64 * plan.len() as u64, "graphs") } else { ProgressBar::hidden() };
    bar.set_message("finetune");
    let Trained { fit, trainer, dynamic, train_samples, parameters, monitor } = train(&data, s, plan, device, &bar, config.verbose, TestEvaluation::EveryEpoch)?;
    bar.finish_and_clear();

    let metrics_path = write_metrics(&config.out_dir.join(METRICS_FILE), &fit.rows, &data)?;
    let predictions_path = write_eval_predictions(&config.out_dir.join(PREDICTIONS_FILE), &data, fit.best_epoch, &fit.best_valid, &fit.best_test)?;
    let model_path = config.out_dir.join(MODEL_FILE);
    let graphs_meta = ParquetSource::open(&config.graphs, &Arc::new(arrow::datatypes::Schema::empty()))?.metadata;
    let mut ckpt_meta = BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(&data.task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), data.task_kind.as_str().to_string()),
        (META_OBJECTIVE.to_string(), serde_json::json!({"target_mean": trainer.objective.target_mean, "target_std": trainer.objective.target_std}).to_string()),
        ("molpeg.best_epoch".to_string(), fit.best_epoch.to_string()),
        (meta::FEATURIZER.to_string(), checkpoint::featurizer_metadata(graphs_meta.get(meta::FEATURIZER_VERSION).map(String::as_str))),
    ]);
    if let Some(v) = graphs_meta.get(meta::RDKIT_VERSION) {
        ckpt_meta.insert(meta::RDKIT_VERSION.to_string(), v.clone());
    }
    if s.model == ModelKind::Schnet {
        // Where the training geometries came from, so molpeg-predict can embed new molecules the
        // same way (or say that it does not).
        let atoms_meta = ParquetSource::open(crate::data::atoms3d_path(&config.graphs), &Arc::new(arrow::datatypes::Schema::empty()))?.metadata;
        for key in [schema::atoms3d::META_GEOMETRY, schema::atoms3d::META_SEED] {
            if let Some(v) = atoms_meta.get(key) {
                ckpt_meta.insert(key.to_string(), v.clone());
            }
        }
    }
    checkpoint::save(&model_path, &fit.best_state, &trainer.model.config, &ckpt_meta)?;
    let summary = FinetuneSummary {
        stage_dir: config.out_dir.clone(),
        skipped: false,
        task_type: data.task_kind,
        task_names: data.task_names.clone(),
        train_samples,
        valid_samples: data.valid.len(),
        test_samples: data.test.len(),
        coreset: s.coreset.clone(),
        pretrained: s.pretrained.clone(),
        epochs: s.epochs,
        monitor: monitor.to_string(),
        best_epoch: fit.best_epoch,
        best_valid: as_map(&fit.best_valid),
        test_at_best: as_map(&fit.best_test),
        test_per_task: fit.best_test.as_ref().map(|e| e.per_task.clone()).unwrap_or_default(),
        final_train_loss: fit.final_train_loss,
        samples_seen: trainer.samples_seen,
        train_seconds: fit.train_seconds,
        graphs_per_second: trainer.samples_seen as f64 / fit.train_seconds.max(1e-9),
        device: describe(device),
        parameters,
        warnings: evaluation_warnings(data.valid.len(), data.test.len(), monitor, &as_map(&fit.best_valid), &as_map(&fit.best_test)),
        model: s.model,
        tokens: TokenSummary::of(&trainer.model, &data)?,
    };
    for warning in &summary.warnings {
        eprintln!("finetune: WARNING: {warning}");
    }
    let text = serde_json::to_string_pretty(&summary).expect("summary serializes");
    molpeg_core::atomic::write_atomic(&summary_path, text.as_bytes())?;
    let mut outputs = vec![metrics_path, predictions_path, model_path, summary_path];
    if let Some(policy) = dynamic.filter(|p| !p.sightings.is_empty()) {
        outputs.push(crate::score::write_scores(&config.out_dir.join(crate::score::SCORES_FILE), &policy.sightings)?);
    }
    stage.finish(&outputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        let mut s = FinetuneSettings::default();
        assert_eq!(s.stage_name(), "finetune");
        s.coreset = Some("runs/hiv/select-molpeg-0.3/coreset.parquet".into());
        assert_eq!(s.stage_name(), "finetune-select-molpeg-0.3");
        s.coreset = Some("elsewhere/random30.parquet".into());
        assert_eq!(s.stage_name(), "finetune-random30");
        s.tag = Some("x".into());
        assert_eq!(s.stage_name(), "finetune-x");
    }

    #[test]
    fn improvement_rules() {
        assert!(improves(None, None, true));
        assert!(improves(Some(0.5), Some(None), true));
        assert!(!improves(None, Some(Some(0.5)), true));
        assert!(improves(None, Some(None), true));
        assert!(improves(Some(0.6), Some(Some(0.5)), true));
        assert!(!improves(Some(0.5), Some(Some(0.5)), true));
        assert!(improves(Some(0.4), Some(Some(0.5)), false));
    }

    #[test]
    fn test_evaluated_once_at_the_best_epoch_equals_the_per_epoch_curve() {
        use crate::synthetic::{write_dataset, SyntheticSpec};
        let dir = tempfile::tempdir().unwrap();
        let (graphs, split) = write_dataset(dir.path(), &SyntheticSpec::hiv_like(160, 3)).unwrap();
        let data = Dataset::load_for(&graphs, &split, ModelKind::Gin).unwrap();
        let s = FinetuneSettings { epochs: 6, batch_size: 16, layers: 2, width: 16, prefetch: false, ..Default::default() };
        let run = |test| train(&data, &s, Sample::unweighted(&data.train), Device::Cpu, &ProgressBar::hidden(), false, test).unwrap();
        let (every, once) = (run(TestEvaluation::EveryEpoch), run(TestEvaluation::AtBestEpoch));
        assert_eq!(every.fit.best_epoch, once.fit.best_epoch);
        assert!(every.fit.best_epoch < s.epochs, "the best epoch should not be the last, or restoring its weights is not exercised (best {})", every.fit.best_epoch);
        let outputs = |t: &Trained| t.fit.best_test.as_ref().expect("a test evaluation").outputs.clone();
        assert_eq!(outputs(&every), outputs(&once), "the best epoch's test outputs");
        assert!(once.fit.rows.iter().all(|r| r.split != schema::split::TEST), "no per-epoch test rows");
        assert!(every.fit.rows.iter().filter(|r| r.split == schema::split::TEST && r.task.is_none()).count() >= s.epochs as usize);
        // The trainer ends with the last epoch's weights in both runs.
        let last = |t: &Trained| t.trainer.model.snapshot().into_iter().map(|(_, v)| v.sum(tch::Kind::Double).double_value(&[])).collect::<Vec<_>>();
        assert_eq!(last(&every), last(&once));
    }

    #[test]
    fn settings_reject_unknown_keys_and_bad_values() {
        let p = Pipeline::parse(Path::new("pipelines/t.toml"), "[finetune]\nepochs = 3\nwidht = 64\n").unwrap();
        let err = p.section::<FinetuneSettings>("finetune").unwrap_err().to_string();
        assert!(err.contains("widht"), "{err}");
        let p = Pipeline::parse(Path::new("pipelines/t.toml"), "[finetune]\nepochs = 3\nwidth = 64\npooling = \"max\"\njk = \"concat\"\nmonitor = \"average_precision\"\n").unwrap();
        let s: FinetuneSettings = p.section("finetune").unwrap();
        assert_eq!((s.epochs, s.width, s.pooling, s.jk, s.monitor), (3, 64, Pooling::Max, Jk::Concat, Monitor::AveragePrecision));
        assert!(FinetuneSettings { dropout: 1.0, ..Default::default() }.validate().is_err());
        assert!(FinetuneSettings { tag: Some("a/b".into()), ..Default::default() }.validate().is_err());
        assert!(Monitor::RocAuc.resolve(TaskKind::Regression).is_err());
    }
}
