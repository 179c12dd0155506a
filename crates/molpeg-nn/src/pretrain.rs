//! The pretraining stage: GraphMAE-style masked-atom reconstruction (Hou et al. 2022, as in its
//! `chem/` transfer-learning code and the MolScaling code) that produces the source model MolPeg
//! fine-tunes.
//!
//! Per batch: a fraction of each molecule's atoms ([`masked_count`]) gets the mask token (atom type
//! [`ATOM_TYPE_MASK`], chirality 0: GraphMAE's and Hu et al.'s `MaskAtom`); bonds are untouched. The
//! encoder (our GIN, [`Model`] with no head) computes node representations; the [`Decoder`] applies
//! PReLU and a bias-free linear encoder→decoder projection, **re-masks** by zeroing the masked
//! nodes' rows (GraphMAE's chem code zeroes them; its learnable `dec_token` is commented out there),
//! and runs one GIN convolution to [`RECONSTRUCTED_TYPES`] outputs. The loss is the scaled cosine
//! error over masked nodes, `mean (1 − cos(x̂, onehot(type)))^α` ([`sce_loss`]).
//!
//! The input `graphs.parquet` is streamed in chunks of rows ([`GraphChunks`]): each epoch visits the
//! chunks in a seeded random order and shuffles within a chunk, so memory holds one chunk (1.6M MOSES
//! molecules never sit in memory at once). Every random choice (chunk order, shuffles, masks, CPU
//! dropout masks) is a function of the seed and the position (epoch, chunk, optimizer step), and the
//! optimizer is our [`Adam`] whose state is saved, so a run resumed from a checkpoint continues
//! bit for bit (on the CPU) like an uninterrupted one.
//!
//! Outputs in `runs/<pipeline>/pretrain/`: `encoder.safetensors` (the encoder's `gnn.*` tensors: loads
//! into `molpeg-finetune --pretrained` and `molpeg-score`), `pretrain_log.parquet` (one row per
//! `log_every` steps and per epoch end), `resume.safetensors` (encoder, decoder, Adam moments and the
//! position: what `--resume` continues from), `summary.json`, then the stage manifest. The first three
//! are rewritten every `checkpoint_every` steps, the resume state last.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, Float64Array, UInt32Array, UInt64Array};
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use indicatif::ProgressBar;
use molpeg_core::manifest::{sha256_file, StageRun};
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::pretrain_log;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;
use crate::batch::{collate, for_each_prepared, mix_seed, Batch, DropoutSpec, HostBatch, HostTensors};
use crate::checkpoint::{self, Checkpoint};
use crate::data::{GraphChunks, GraphStore, Sample, ATOM_TYPE_MASK};
use crate::device::{describe, DeviceChoice};
use crate::model::{GinConv, Jk, Model, ModelConfig, Pooling};
use crate::train::{shuffled, use_prefetch};
use crate::{Error, Result};

pub const STAGE: &str = "pretrain";
pub const ENCODER_FILE: &str = "encoder.safetensors";
pub const RESUME_FILE: &str = "resume.safetensors";
pub const LOG_FILE: &str = "pretrain_log.parquet";
pub const SUMMARY_FILE: &str = "summary.json";
/// Atom types the decoder reconstructs: the data's atomic-number indices 0..=118, not the mask token.
pub const RECONSTRUCTED_TYPES: usize = ATOM_TYPE_MASK as usize;
/// Metadata keys of the checkpoints this stage writes.
pub const META_RECIPE: &str = "molpeg.pretrain_recipe";
pub const META_PROGRESS: &str = "molpeg.pretrain_progress";
pub const META_INPUT_SHA256: &str = "molpeg.pretrain_input_sha256";

// Independent random streams derived from the run seed.
const CHUNK_ORDER_STREAM: u64 = 0x6368_756e_6b73;
const MASK_STREAM: u64 = 0x6d61_736b;
const DROPOUT_STREAM: u64 = 0x6472_6f70;

/// The `[pretrain]` section of a pipeline file. Defaults: GraphMAE's setting for molecules on the
/// paper's GIN (5 × 300, no dropout, batch 256, Adam 1e-3, 100 epochs, mask rate 0.25 as GraphMAE's
/// chem `pretraining.py`; Hu et al.'s attribute masking used 0.15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSettings {
    /// Pipeline whose `featurize/graphs.parquet` is the input (default: this pipeline).
    pub source: Option<String>,
    /// Use only the first N molecules of the input (its rows are in source order).
    pub max_molecules: Option<usize>,
    pub epochs: u32,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Fraction of each molecule's atoms that is masked (at least one atom per molecule).
    pub mask_rate: f64,
    /// Exponent α of the scaled cosine error.
    pub alpha: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    pub threads: usize,
    pub layers: usize,
    pub width: usize,
    pub dropout: f64,
    pub jk: Jk,
    /// Molecules per streamed chunk (shuffling happens within a chunk; chunk order is shuffled too).
    pub chunk_molecules: usize,
    /// Write the checkpoints every N optimizer steps (and at the end).
    pub checkpoint_every: u64,
    /// One `pretrain_log.parquet` row every N steps (and one at every epoch end).
    pub log_every: u64,
    /// Collate and mask the next batch on a second thread (used on CUDA or with a spare core).
    pub prefetch: bool,
}

impl Default for PretrainSettings {
    fn default() -> Self {
        PretrainSettings {
            source: None,
            max_molecules: None,
            epochs: 100,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.0,
            mask_rate: 0.25,
            alpha: 1.0,
            seed: 0,
            device: DeviceChoice::Auto,
            threads: 0,
            layers: 5,
            width: 300,
            dropout: 0.0,
            jk: Jk::Last,
            chunk_molecules: 65_536,
            checkpoint_every: 1000,
            log_every: 100,
            prefetch: true,
        }
    }
}

impl PretrainSettings {
    /// The encoder's configuration (no head; pooling is the fine-tuning stage's business).
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: self.layers, width: self.width, dropout: self.dropout, pooling: Pooling::Mean, jk: self.jk, num_tasks: 0 }
    }

    pub fn validate(&self) -> Result<()> {
        self.model_config().validate()?;
        let checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0.0 && self.lr.is_finite(), "lr must be > 0"),
            (self.weight_decay >= 0.0 && self.weight_decay.is_finite(), "weight_decay must be ≥ 0"),
            (self.mask_rate > 0.0 && self.mask_rate < 1.0, "mask_rate must be in (0, 1)"),
            (self.alpha >= 1.0 && self.alpha.is_finite(), "alpha must be ≥ 1 (GraphMAE's scaled cosine error)"),
            (self.chunk_molecules >= 1, "chunk_molecules must be at least 1"),
            (self.checkpoint_every >= 1 && self.log_every >= 1, "checkpoint_every and log_every must be at least 1"),
            (self.max_molecules != Some(0), "max_molecules must be at least 1"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(Error::Config(format!("[pretrain] {message}"))),
            None => Ok(()),
        }
    }

    /// The settings that determine the weights at a given step: a resume state must agree on all of
    /// them. `epochs` may grow (to train longer); checkpointing, logging, threads, device and prefetch
    /// do not change the weights.
    fn recipe(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("settings serialize");
        let map = v.as_object_mut().expect("settings are a struct");
        for key in ["epochs", "checkpoint_every", "log_every", "threads", "device", "prefetch"] {
            map.remove(key);
        }
        v
    }
}

/// Atoms masked in a molecule of `atoms` atoms: `round(rate · atoms)`, at least 1 (GraphMAE's
/// `MaskAtom` uses `⌊rate · atoms⌋ + 1`, which overshoots the rate by up to one atom per molecule).
pub fn masked_count(atoms: usize, rate: f64) -> usize {
    ((rate * atoms as f64).round() as usize).clamp(1, atoms)
}

/// Masks atoms of a collated batch in place: in each graph, [`masked_count`] distinct atoms drawn
/// uniformly (from `seed`) get atom type [`ATOM_TYPE_MASK`] and chirality 0. Nothing else changes.
/// Returns the masked node indices (ascending) and their original atom types.
pub fn mask_atoms(host: &mut HostBatch, rate: f64, seed: u64) -> (Vec<i64>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut nodes, mut types) = (Vec::new(), Vec::new());
    for g in 0..host.num_graphs() {
        let (start, end) = (host.graph_ptr[g] as usize, host.graph_ptr[g + 1] as usize);
        let n = end - start;
        let mut picked = rand::seq::index::sample(&mut rng, n, masked_count(n, rate)).into_vec();
        picked.sort_unstable();
        for i in picked {
            let v = start + i;
            nodes.push(v as i64);
            types.push(host.atom_type[v]);
            host.atom_type[v] = ATOM_TYPE_MASK as i64;
            host.chirality[v] = 0;
        }
    }
    (nodes, types)
}

/// GraphMAE's scaled cosine error against one-hot targets: `mean_i (1 − cos(pred_i, e_{target_i}))^α`.
/// With a one-hot target the cosine is `pred_i[target_i] / ‖pred_i‖`.
pub fn sce_loss(pred: &Tensor, targets: &Tensor, alpha: f64) -> Tensor {
    let norm = pred.norm_scalaropt_dim(2, [-1], false).clamp_min(1e-12);
    let cos = pred.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1) / norm;
    let err = cos.neg() + 1.0;
    let err = if alpha == 1.0 { err } else { err.pow_tensor_scalar(alpha) };
    err.mean(Kind::Float)
}

/// GraphMAE's decoder for molecules (`GNNDecoder` with a GIN layer): PReLU, bias-free linear
/// projection, re-mask (zero rows), one GIN convolution to atom-type outputs. Variables are named
/// `decoder.activation.weight`, `decoder.enc_to_dec.weight`, `decoder.conv.*` after its attributes.
pub struct Decoder {
    pub vs: VarStore,
    activation: Tensor,
    enc_to_dec: Tensor,
    conv: GinConv,
}

impl Decoder {
    /// A decoder for encoder outputs of width `input` (the encoder's JK width) and hidden width `width`.
    pub fn new(input: usize, width: usize, device: Device) -> Result<Decoder> {
        let vs = VarStore::new(device);
        let root = vs.root().sub("decoder");
        let activation = root.sub("activation").f_var("weight", &[1], Init::Const(0.25))?;
        let bound = 1.0 / (input as f64).sqrt();
        let enc_to_dec = root.sub("enc_to_dec").f_var("weight", &[width as i64, input as i64], Init::Uniform { lo: -bound, up: bound })?;
        let conv = GinConv::new(&root.sub("conv"), width, RECONSTRUCTED_TYPES)?;
        Ok(Decoder { vs, activation, enc_to_dec, conv })
    }

    /// Atom-type outputs `[N, RECONSTRUCTED_TYPES]` from node representations `h`, with the rows of
    /// `masked` (node indices) zeroed before the convolution.
    pub fn forward(&self, h: &Tensor, masked: &Tensor, batch: &Batch) -> Tensor {
        let x = h.prelu(&self.activation).linear::<Tensor>(&self.enc_to_dec, None).index_fill(0, masked, 0.0);
        self.conv.forward(&x, batch)
    }
}

/// A batch prepared on the loader thread: tensors with masked atoms, the masked nodes and targets.
pub struct MaskedBatch {
    pub tensors: HostTensors,
    pub masked: Tensor,
    pub targets: Tensor,
    pub molecules: usize,
}

/// Collates `samples`, masks them with the seed of optimizer step `step`, and (CPU dropout) draws the
/// dropout masks of that step.
pub fn prepare_masked(store: &GraphStore, samples: &[Sample], settings: &PretrainSettings, step: u64, dropout: Option<&DropoutSpec>) -> MaskedBatch {
    let mut host = collate(store, samples);
    let (masked, targets) = mask_atoms(&mut host, settings.mask_rate, mix_seed(mix_seed(settings.seed, MASK_STREAM), step));
    let mut tensors = host.to_tensors();
    tensors.dropout = dropout.map(|spec| spec.mask_tensor(host.num_nodes(), step));
    MaskedBatch { tensors, masked: Tensor::from_slice(&masked), targets: Tensor::from_slice(&targets), molecules: samples.len() }
}

/// Encoder, decoder and optimizer.
pub struct GraphMae {
    pub encoder: Model,
    pub decoder: Decoder,
    pub adam: Adam,
    pub alpha: f64,
}

impl GraphMae {
    /// Fresh weights from libtorch's generator (seed it first with `tch::manual_seed`).
    pub fn new(settings: &PretrainSettings, device: Device) -> Result<GraphMae> {
        let encoder = Model::new(&settings.model_config(), device)?;
        let decoder = Decoder::new(encoder.config.graph_dim(), settings.width, device)?;
        let trainable = |vs: &VarStore| {
            let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let mut params = trainable(&encoder.vs);
        params.extend(trainable(&decoder.vs));
        let adam = Adam::new(params, settings.lr, settings.weight_decay);
        Ok(GraphMae { encoder, decoder, adam, alpha: settings.alpha })
    }

    /// The reconstruction loss of a masked batch (train mode, with gradient).
    pub fn loss(&self, batch: &Batch, masked: &Tensor, targets: &Tensor) -> Tensor {
        let h = self.encoder.node_representations(batch, true);
        let pred = self.decoder.forward(&h, masked, batch);
        sce_loss(&pred.index_select(0, masked), targets, self.alpha)
    }

    /// One optimizer step on a prepared batch; returns the loss (detached, on the device).
    pub fn train_step(&mut self, prepared: MaskedBatch) -> Result<Tensor> {
        let device = self.encoder.device();
        let batch = prepared.tensors.assemble(device);
        let loss = self.loss(&batch, &prepared.masked.to_device(device), &prepared.targets.to_device(device));
        self.adam.backward_step(&loss)?;
        Ok(loss.detach())
    }

    /// Encoder and decoder variables, then the Adam moments (all by name).
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut vars = self.encoder.named_variables();
        vars.extend(self.decoder.vs.variables());
        vars.extend(self.adam.state());
        vars
    }

    /// Restores [`GraphMae::state`] from a resume checkpoint, checking every name and shape.
    fn restore(&mut self, ckpt: &Checkpoint, steps: u64) -> Result<()> {
        let mut problems = Vec::new();
        let mut pairs = Vec::new();
        let mine: Vec<(String, Tensor)> = self.encoder.named_variables().into_iter().chain(self.decoder.vs.variables()).collect();
        for (name, var) in &mine {
            match ckpt.tensors.get(name) {
                None => problems.push(format!("{name} missing")),
                Some(t) if t.size() != var.size() => problems.push(format!("{name}: file {:?}, model {:?}", t.size(), var.size())),
                Some(t) => pairs.push((name.clone(), t.shallow_clone())),
            }
        }
        if !problems.is_empty() {
            return Err(Error::checkpoint(&ckpt.path, format!("does not fit the pretraining model: {}", problems.join("; "))));
        }
        self.encoder.restore(&pairs)?;
        tch::no_grad(|| -> Result<()> {
            let vars = self.decoder.vs.variables();
            for (name, t) in &pairs {
                if let Some(dst) = vars.get(name) {
                    dst.shallow_clone().f_copy_(t)?;
                }
            }
            Ok(())
        })?;
        self.adam.load_state(&ckpt.tensors, steps).map_err(|e| Error::checkpoint(&ckpt.path, e.to_string()))
    }
}

/// Where a run is: what a resume continues from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Optimizer steps done.
    pub step: u64,
    /// Current epoch (1-based); `epochs + 1` once training is complete.
    pub epoch: u32,
    /// Position in the epoch's chunk order, and batches of that chunk already trained on.
    pub chunk: usize,
    pub batch: usize,
    pub molecules: u64,
    /// Training wall time so far.
    pub seconds: f64,
    /// Loss sum and step count since the last log row (the sum as f64 bits, exact through JSON).
    pub interval_loss_bits: u64,
    pub interval_steps: u64,
}

/// One row of `pretrain_log.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub epoch: u32,
    pub loss: f64,
    pub molecules: u64,
    pub seconds: f64,
}

pub fn write_log(path: &Path, rows: &[LogRow]) -> Result<PathBuf> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.step))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.epoch))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.loss))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.molecules))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.seconds))),
    ];
    let batch = RecordBatch::try_new(pretrain_log::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, pretrain_log::schema(), pretrain_log::KIND, &BTreeMap::new(), &[batch])?)
}

pub fn read_log(path: &Path) -> Result<Vec<LogRow>> {
    let source = ParquetSource::open(path, &pretrain_log::schema())?;
    let mut rows = Vec::new();
    let columns = [pretrain_log::STEP, pretrain_log::EPOCH, pretrain_log::LOSS, pretrain_log::MOLECULES, pretrain_log::SECONDS];
    for b in source.collect_columns(&columns)? {
        let (step, epoch) = (b.column(0).as_primitive::<UInt64Type>(), b.column(1).as_primitive::<UInt32Type>());
        let (loss, molecules, seconds) = (b.column(2).as_primitive::<Float64Type>(), b.column(3).as_primitive::<UInt64Type>(), b.column(4).as_primitive::<Float64Type>());
        for i in 0..b.num_rows() {
            rows.push(LogRow { step: step.value(i), epoch: epoch.value(i), loss: loss.value(i), molecules: molecules.value(i), seconds: seconds.value(i) });
        }
    }
    Ok(rows)
}

/// A resolved stage run.
#[derive(Debug, Clone)]
pub struct PretrainConfig {
    pub settings: PretrainSettings,
    pub graphs: PathBuf,
    pub out_dir: PathBuf,
    /// Rerun even when the manifest says the outputs are up to date.
    pub force: bool,
    /// Continue from `resume.safetensors` in `out_dir` when there is one.
    pub resume: bool,
    /// Stop after this many optimizer steps in this invocation, with a checkpoint to resume from.
    pub max_steps: Option<u64>,
    /// Progress bar and one line per epoch on stderr.
    pub verbose: bool,
}

impl PretrainConfig {
    /// Input `<runs>/<source>/featurize/graphs.parquet` (source: the settings' `source`, else this
    /// pipeline); output `<runs>/<pipeline>/pretrain/`.
    pub fn for_pipeline(pipeline: &Pipeline, runs_dir: &Path, settings: PretrainSettings) -> Self {
        let source = settings.source.clone().unwrap_or_else(|| pipeline.name.clone());
        PretrainConfig {
            graphs: runs_dir.join(source).join("featurize").join("graphs.parquet"),
            out_dir: pipeline.stage_dir(runs_dir, STAGE),
            settings,
            force: false,
            resume: false,
            max_steps: None,
            verbose: true,
        }
    }
}

/// What [`run`] reports (and writes to `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainSummary {
    pub stage_dir: PathBuf,
    /// True when an up-to-date previous run was found and nothing was recomputed.
    pub skipped: bool,
    /// False when `max_steps` stopped the run early (resume it with `--resume`).
    pub complete: bool,
    pub graphs: PathBuf,
    pub molecules: usize,
    pub chunks: usize,
    pub epochs: u32,
    pub steps: u64,
    pub molecules_seen: u64,
    /// The step this invocation started from (0 for a fresh run).
    pub resumed_from_step: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Training seconds over all invocations, and molecules per second in this one.
    pub train_seconds: f64,
    pub molecules_per_second: f64,
    pub device: String,
    pub parameters: i64,
    pub encoder: PathBuf,
}

impl fmt::Display for PretrainSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            writeln!(f, "{}: up to date, skipped (use --force to rerun)", self.stage_dir.display())?;
        }
        let loss = |l: Option<f64>| l.map_or("n/a".into(), |v| format!("{v:.4}"));
        writeln!(
            f,
            "pretrain: {} molecules in {} chunk(s) from {}, {} epochs on {} ({} parameters)",
            self.molecules,
            self.chunks,
            self.graphs.display(),
            self.epochs,
            self.device,
            self.parameters
        )?;
        writeln!(f, "step {} ({} molecules seen): loss {} → {}", self.steps, self.molecules_seen, loss(self.first_loss), loss(self.last_loss))?;
        if !self.complete {
            writeln!(f, "stopped early at step {}; continue with --resume", self.steps)?;
        }
        write!(f, "{:.0} molecules/s; encoder in {}", self.molecules_per_second, self.encoder.display())
    }
}

/// Reads chunks, the next one on a background thread while the current one trains (with prefetching).
struct ChunkReader {
    chunks: Arc<GraphChunks>,
    ranges: Vec<std::ops::Range<usize>>,
    pending: Option<(usize, std::thread::JoinHandle<Result<GraphStore>>)>,
}

impl ChunkReader {
    fn get(&mut self, id: usize) -> Result<GraphStore> {
        match self.pending.take() {
            Some((pending, handle)) if pending == id => handle.join().map_err(|_| Error::Internal("the chunk reader thread panicked".into()))?,
            _ => self.chunks.read(self.ranges[id].clone()),
        }
    }

    fn prefetch(&mut self, id: usize) {
        let (chunks, range) = (self.chunks.clone(), self.ranges[id].clone());
        self.pending = Some((id, std::thread::spawn(move || chunks.read(range))));
    }
}

/// Writes the log, the encoder and the resume state (last, so it never points past the others).
fn save_checkpoints(dir: &Path, mae: &GraphMae, position: &Position, log: &[LogRow], recipe: &str, input_sha: &str) -> Result<[PathBuf; 3]> {
    let log_path = write_log(&dir.join(LOG_FILE), log)?;
    let encoder_path = dir.join(ENCODER_FILE);
    let meta = BTreeMap::from([(META_RECIPE.to_string(), recipe.to_string()), ("molpeg.pretrain_step".to_string(), position.step.to_string())]);
    checkpoint::save_model(&encoder_path, &mae.encoder, &meta)?;
    let mut meta = meta;
    meta.insert(META_PROGRESS.to_string(), serde_json::to_string(position).expect("position serializes"));
    meta.insert(META_INPUT_SHA256.to_string(), input_sha.to_string());
    let resume_path = dir.join(RESUME_FILE);
    checkpoint::save(&resume_path, &mae.state(), &mae.encoder.config, &meta)?;
    Ok([log_path, encoder_path, resume_path])
}

/// Reads a resume state and checks that it belongs to this input and recipe.
fn read_resume(path: &Path, recipe: &str, input_sha: &str) -> Result<(Checkpoint, Position)> {
    let ckpt = Checkpoint::read(path)?;
    let get = |key: &str| ckpt.metadata.get(key).ok_or_else(|| Error::checkpoint(path, format!("metadata has no `{key}`; not a molpeg-pretrain resume state")));
    let saved: serde_json::Value = serde_json::from_str(get(META_RECIPE)?).map_err(|e| Error::checkpoint(path, format!("bad `{META_RECIPE}`: {e}")))?;
    let wanted: serde_json::Value = serde_json::from_str(recipe).expect("recipe is JSON");
    if saved != wanted {
        return Err(Error::checkpoint(
            path,
            format!("was written with other settings ({saved}); this run has {wanted}. Use the same settings (only epochs may change), or run without --resume to start over"),
        ));
    }
    if get(META_INPUT_SHA256)? != input_sha {
        return Err(Error::checkpoint(path, "was written for a different input graphs.parquet; run without --resume to start over"));
    }
    let position: Position = serde_json::from_str(get(META_PROGRESS)?).map_err(|e| Error::checkpoint(path, format!("bad `{META_PROGRESS}`: {e}")))?;
    Ok((ckpt, position))
}

/// Runs the stage (see the module docs). An unchanged rerun is skipped unless `config.force`.
pub fn run(config: &PretrainConfig) -> Result<PretrainSummary> {
    let s = &config.settings;
    s.validate()?;
    if !molpeg_core::dataset::exists(&config.graphs) {
        let hint = match &s.source {
            Some(src) => format!("featurize pipeline `{src}` first (just featurize {src})"),
            None => "run the featurize stage first, or set [pretrain] source to the pipeline that featurizes the data".into(),
        };
        return Err(Error::data(&config.graphs, format!("graphs.parquet not found: {hint}")));
    }
    if s.threads > 0 {
        tch::set_num_threads(s.threads as i32);
    }
    let device = s.device.resolve()?;
    let params = serde_json::json!({ "settings": s, "device": if device.is_cuda() { "cuda" } else { "cpu" } });
    let stage = StageRun::new(STAGE, &config.out_dir, &params, &[&config.graphs])?;
    if !config.force {
        if let Some(cached) = stage.cached() {
            if let Ok(mut summary) = serde_json::from_value::<PretrainSummary>(cached.summary) {
                summary.skipped = true;
                return Ok(summary);
            }
        }
    }
    stage.begin()?;
    crate::runtime::tune_allocator();

    let chunks = GraphChunks::open(&config.graphs, s.max_molecules)?;
    let ranges = chunks.ranges(s.chunk_molecules);
    let recipe = s.recipe().to_string();
    let input_sha = sha256_file(&config.graphs)?;
    tch::manual_seed(s.seed as i64);
    let mut mae = GraphMae::new(s, device)?;
    let parameters = mae.encoder.num_parameters();

    let resume_path = config.out_dir.join(RESUME_FILE);
    let mut pos = Position { epoch: 1, ..Default::default() };
    let mut log = Vec::new();
    if config.resume && resume_path.is_file() {
        let (ckpt, saved) = read_resume(&resume_path, &recipe, &input_sha)?;
        mae.restore(&ckpt, saved.step)?;
        pos = saved;
        let log_path = config.out_dir.join(LOG_FILE);
        if log_path.is_file() {
            log = read_log(&log_path)?.into_iter().filter(|r| r.step <= pos.step).collect();
        }
        if config.verbose {
            eprintln!("pretrain: resuming from step {} (epoch {}, chunk {}, batch {})", pos.step, pos.epoch, pos.chunk, pos.batch);
        }
    } else if config.resume && config.verbose {
        eprintln!("pretrain: no resume state in {}; starting from step 0", config.out_dir.display());
    } else if resume_path.is_file() && config.verbose {
        eprintln!("pretrain: starting over; {} holds an earlier run's checkpoint (pass --resume to continue it)", resume_path.display());
    }
    let start = pos;

    let prefetch = use_prefetch(s.prefetch, device);
    let dropout = (device == Device::Cpu && s.dropout > 0.0).then(|| DropoutSpec { layers: s.layers, width: s.width, p: s.dropout, seed: mix_seed(s.seed, DROPOUT_STREAM) });
    let bar = if config.verbose { molpeg_core::progress::bar(s.epochs as u64 * chunks.rows as u64, "mol") } else { ProgressBar::hidden() };
    bar.set_message("pretrain");
    bar.set_position(pos.molecules.min(bar.length().unwrap_or(0)));
    let started = Instant::now();
    let mut interval_loss = Tensor::from(f64::from_bits(pos.interval_loss_bits)).to_device(device);
    let mut budget = config.max_steps.unwrap_or(u64::MAX);
    let mut stopped = false;
    let mut epoch_started = Instant::now();

    // Reads the interval's mean loss and appends a log row.
    let log_row = |pos: &mut Position, interval_loss: &mut Tensor, log: &mut Vec<LogRow>, seconds: f64| {
        if pos.interval_steps == 0 {
            return;
        }
        let loss = interval_loss.double_value(&[]) / pos.interval_steps as f64;
        log.push(LogRow { step: pos.step, epoch: pos.epoch, loss, molecules: pos.molecules, seconds });
        *interval_loss = interval_loss.zeros_like();
        pos.interval_steps = 0;
        bar.set_message(format!("pretrain loss {loss:.4}"));
    };

    let chunk_order = |epoch: u32| -> Vec<u32> {
        let ids = Sample::unweighted(&(0..ranges.len() as u32).collect::<Vec<_>>());
        shuffled(&ids, mix_seed(s.seed, CHUNK_ORDER_STREAM), epoch).into_iter().map(|c| c.index).collect()
    };
    let mut reader = ChunkReader { chunks: Arc::new(chunks.clone()), ranges: ranges.clone(), pending: None };
    'epochs: while pos.epoch <= s.epochs {
        let order = chunk_order(pos.epoch);
        while pos.chunk < order.len() {
            if budget == 0 {
                stopped = true;
                break 'epochs;
            }
            let chunk_id = order[pos.chunk];
            let store = reader.get(chunk_id as usize)?;
            if prefetch {
                let next = if pos.chunk + 1 < order.len() { Some(order[pos.chunk + 1]) } else { (pos.epoch < s.epochs).then(|| chunk_order(pos.epoch + 1)[0]) };
                if let Some(next) = next {
                    reader.prefetch(next as usize);
                }
            }
            // libtorch's own dropout (CUDA) draws from its generator: seeded per chunk.
            tch::manual_seed((mix_seed(mix_seed(s.seed, pos.epoch as u64), chunk_id as u64) >> 1) as i64);
            let plan = shuffled(&Sample::unweighted(&(0..store.len() as u32).collect::<Vec<_>>()), mix_seed(s.seed, pos.epoch as u64), chunk_id);
            let done = (pos.batch * s.batch_size).min(plan.len());
            let left = (plan.len() - done).div_ceil(s.batch_size);
            let take = (left as u64).min(budget) as usize;
            let rest = &plan[done..(done + take * s.batch_size).min(plan.len())];
            let first_step = pos.step;
            for_each_prepared(
                rest,
                s.batch_size,
                prefetch,
                |samples, k| prepare_masked(&store, samples, s, first_step + k as u64 + 1, dropout.as_ref()),
                |prepared| {
                    let molecules = prepared.molecules as u64;
                    let loss = mae.train_step(prepared)?;
                    interval_loss += loss.to_kind(Kind::Double);
                    pos.step += 1;
                    pos.batch += 1;
                    pos.molecules += molecules;
                    pos.interval_steps += 1;
                    bar.inc(molecules);
                    if pos.step % s.log_every == 0 {
                        log_row(&mut pos, &mut interval_loss, &mut log, start.seconds + started.elapsed().as_secs_f64());
                    }
                    if pos.step % s.checkpoint_every == 0 {
                        pos.seconds = start.seconds + started.elapsed().as_secs_f64();
                        pos.interval_loss_bits = interval_loss.double_value(&[]).to_bits();
                        save_checkpoints(&config.out_dir, &mae, &pos, &log, &recipe, &input_sha)?;
                    }
                    Ok(())
                },
            )?;
            budget -= take as u64;
            if take < left {
                stopped = true;
                break 'epochs;
            }
            pos.chunk += 1;
            pos.batch = 0;
        }
        log_row(&mut pos, &mut interval_loss, &mut log, start.seconds + started.elapsed().as_secs_f64());
        if let Some(row) = log.last().filter(|r| !r.loss.is_finite()) {
            return Err(Error::Diverged(format!(
                "pretraining diverged: the mean loss up to step {} (epoch {}) is {} (not finite). Lower the learning rate (now {}) and rerun with --force",
                row.step, row.epoch, row.loss, s.lr
            )));
        }
        if config.verbose {
            let loss = log.last().map_or("n/a".into(), |r| format!("{:.4}", r.loss));
            let rate = chunks.rows as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9);
            bar.suspend(|| eprintln!("epoch {}/{}: loss {loss} at step {} ({rate:.0} molecules/s)", pos.epoch, s.epochs, pos.step));
        }
        epoch_started = Instant::now();
        pos.epoch += 1;
        pos.chunk = 0;
        pos.batch = 0;
    }
    bar.finish_and_clear();
    let seconds_here = started.elapsed().as_secs_f64();
    pos.seconds = start.seconds + seconds_here;
    pos.interval_loss_bits = interval_loss.double_value(&[]).to_bits();
    let [log_path, encoder_path, _] = save_checkpoints(&config.out_dir, &mae, &pos, &log, &recipe, &input_sha)?;
    let summary = PretrainSummary {
        stage_dir: config.out_dir.clone(),
        skipped: false,
        complete: !stopped,
        graphs: config.graphs.clone(),
        molecules: chunks.rows,
        chunks: ranges.len(),
        epochs: s.epochs,
        steps: pos.step,
        molecules_seen: pos.molecules,
        resumed_from_step: start.step,
        first_loss: log.first().map(|r| r.loss),
        last_loss: log.last().map(|r| r.loss),
        train_seconds: pos.seconds,
        molecules_per_second: (pos.molecules - start.molecules) as f64 / seconds_here.max(1e-9),
        device: describe(device),
        parameters,
        encoder: encoder_path.clone(),
    };
    let summary_path = config.out_dir.join(SUMMARY_FILE);
    molpeg_core::atomic::write_atomic(&summary_path, serde_json::to_string_pretty(&summary).expect("summary serializes").as_bytes())?;
    if !stopped {
        stage.finish(&[&encoder_path, &log_path, &summary_path], &summary)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{generate, SyntheticSpec};

    fn store(molecules: usize, seed: u64) -> GraphStore {
        let mut store = GraphStore::new(0);
        let mut scratch = Vec::new();
        for r in generate(&SyntheticSpec { tasks: 0, ..SyntheticSpec::hiv_like(molecules, seed) }) {
            let view = crate::data::GraphView { atoms: &r.atom_hu, edges: &r.edge_index, bonds: &r.bond_hu, labels: &[] };
            store.push(r.mol_id, view, &mut scratch).unwrap();
        }
        store
    }

    #[test]
    fn masking_touches_exactly_the_fraction_and_only_atom_features() {
        let store = store(64, 1);
        let samples = Sample::unweighted(&(0..64).collect::<Vec<_>>());
        let original = collate(&store, &samples);
        for rate in [0.15, 0.5] {
            let mut host = original.clone();
            let (masked, types) = mask_atoms(&mut host, rate, 7);
            // Per molecule: exactly round(rate · atoms) distinct atoms (≥ 1).
            for g in 0..host.num_graphs() {
                let (a, b) = (host.graph_ptr[g], host.graph_ptr[g + 1]);
                let in_graph = masked.iter().filter(|&&v| v >= a && v < b).count();
                assert_eq!(in_graph, masked_count((b - a) as usize, rate));
            }
            let total = host.num_nodes() as f64;
            assert!((masked.len() as f64 / total - rate).abs() < 0.02, "{} of {total}", masked.len());
            assert!(masked.windows(2).all(|w| w[0] < w[1]), "distinct, ascending");
            for v in 0..host.num_nodes() {
                let is_masked = masked.binary_search(&(v as i64)).is_ok();
                let expect = if is_masked { (ATOM_TYPE_MASK as i64, 0) } else { (original.atom_type[v], original.chirality[v]) };
                assert_eq!((host.atom_type[v], host.chirality[v]), expect, "node {v}");
            }
            let originals: Vec<i64> = masked.iter().map(|&v| original.atom_type[v as usize]).collect();
            assert_eq!(types, originals);
            // Bonds, adjacency and everything else are untouched.
            assert_eq!((&host.adj_crow, &host.adj_col, &host.edge_counts), (&original.adj_crow, &original.adj_col, &original.edge_counts));
            assert_eq!((&host.graph_ptr, &host.samples), (&original.graph_ptr, &original.samples));
            // Deterministic in the seed.
            let mut again = original.clone();
            assert_eq!(mask_atoms(&mut again, rate, 7).0, masked);
            assert_ne!(mask_atoms(&mut original.clone(), rate, 8).0, masked);
        }
        assert_eq!((masked_count(1, 0.15), masked_count(10, 0.15), masked_count(25, 0.15), masked_count(30, 0.15)), (1, 2, 4, 5));
    }

    #[test]
    fn sce_is_the_scaled_cosine_error_of_normalized_vectors() {
        let pred = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[0i64, 4, 2, 2, 1, 3]);
        let onehot = targets.one_hot(5).to_kind(Kind::Float);
        let unit = |x: &Tensor| x / x.norm_scalaropt_dim(2, [-1], true);
        let cos = (unit(&pred) * unit(&onehot)).sum_dim_intlist(-1, false, Kind::Float);
        for alpha in [1.0, 2.0, 3.0] {
            let expected = (cos.neg() + 1.0).pow_tensor_scalar(alpha).mean(Kind::Float);
            assert!(sce_loss(&pred, &targets, alpha).allclose(&expected, 1e-6, 1e-6, false));
        }
        // A perfect reconstruction (any positive scale) has zero loss.
        assert!(sce_loss(&(onehot * 3.0), &targets, 1.0).double_value(&[]).abs() < 1e-6);
    }

    #[test]
    fn loss_decreases_on_a_small_set() {
        tch::set_num_threads(1);
        let store = store(96, 2);
        let settings = PretrainSettings { layers: 2, width: 32, batch_size: 32, lr: 3e-3, ..Default::default() };
        tch::manual_seed(0);
        let mut mae = GraphMae::new(&settings, Device::Cpu).unwrap();
        let plan = Sample::unweighted(&(0..96).collect::<Vec<_>>());
        let mut per_epoch = Vec::new();
        let mut step = 0;
        for epoch in 0..12 {
            let mut sum = 0.0;
            for batch in shuffled(&plan, 0, epoch).chunks(32) {
                step += 1;
                sum += mae.train_step(prepare_masked(&store, batch, &settings, step, None)).unwrap().double_value(&[]);
            }
            per_epoch.push(sum / 3.0);
        }
        let (first, last) = (per_epoch[0], per_epoch[per_epoch.len() - 1]);
        // Synthetic elements are drawn independently of the graph with frequencies f, so the best
        // prediction is ∝ f, with loss 1 − ‖f‖ ≈ 0.28; a fresh model is far above it.
        assert!(first > 0.6 && last < 0.33, "loss per epoch {per_epoch:?}");
    }

    #[test]
    fn settings_validate() {
        assert!(PretrainSettings::default().validate().is_ok());
        for bad in [PretrainSettings { mask_rate: 0.0, ..Default::default() }, PretrainSettings { alpha: 0.5, ..Default::default() }, PretrainSettings { max_molecules: Some(0), ..Default::default() }] {
            assert!(bad.validate().unwrap_err().to_string().contains("[pretrain]"));
        }
        let p = Pipeline::parse(Path::new("p.toml"), "[pretrain]\nepochs = 2\nmask_rat = 0.2\n").unwrap();
        assert!(p.section::<PretrainSettings>(STAGE).unwrap_err().to_string().contains("mask_rat"));
    }
}
