//! `molpeg-predict`: fine-tuned models applied to new molecules.
//!
//! Molecules come from a CSV / CSV.gz (any SMILES column, [`PredictConfig::smiles_column`]), a
//! Parquet table with such a column, or a pipeline's `graphs.parquet` (its `smiles` column, rows
//! numbered by `mol_id`). They are streamed in chunks of [`PredictConfig::chunk_rows`]: each chunk is
//! featurized in parallel by the same featurizer as the featurize stage (`molpeg_chem::Featurizer`),
//! collated and run through every model of the ensemble in eval mode, then appended to
//! `predictions.parquet` (and the failures to `rejects.parquet`), so memory does not grow with the
//! input. The checkpoints carry everything needed (task names and type, regression standardisation,
//! featurizer scheme and version, written by `molpeg-finetune`); no pipeline file is read.
//!
//! A 3D model (SchNet) needs every atom's position, hydrogens included: each molecule gets an RDKit
//! conformer ([`PredictConfig::geometry`]: ETKDGv3, optionally MMFF-relaxed, seeded) from the same
//! featurizer code as `[featurize] geometry = "etkdg"`, so a model trained on conformers sees the
//! conformers it was trained on (its checkpoint records the training geometry and seed, copied from
//! `atoms3d.parquet`). A model trained on a dataset's geometries (QM9's DFT ones) is applied to
//! conformers only when asked, and the summary says so.
//!
//! Outputs in [`PredictConfig::out_dir`], then `manifest.json` last: an unchanged rerun is skipped.
//!
//! **Boundary:** this crate links RDKit only through molpeg-chem and libtorch only through molpeg-nn;
//! it is the one binary that needs both (it featurizes and runs models).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, StringArray, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use indicatif::ProgressBar;
use molpeg_chem::fingerprint::MorganSpec;
use molpeg_chem::{Featurizer, MolGraph, Reject};
use molpeg_core::dataset;
use molpeg_core::manifest::StageRun;
use molpeg_core::shard::Shard;
use molpeg_core::parquet_io::{ParquetSink, ParquetSource};
use molpeg_core::schema::{self, meta};
use molpeg_data::dataset::{DatasetSpec, LabelColumns, TaskType};
use molpeg_data::source::RowReader;
use molpeg_chem::featurize::FeaturizeConfig;
use molpeg_chem::geometry::GeometryMode;
use molpeg_nn::checkpoint::{self, TaskInfo, TrainingGeometry, FEATURE_SCHEME};
use molpeg_nn::batch::TokenCoverage;
use molpeg_nn::data::{Atoms3d, FingerprintTokens, GraphStore, GraphView, SmilesTokens, TaskKind};
use molpeg_nn::device::{describe, DeviceChoice};
use molpeg_nn::finetune::output_to_prediction;
use molpeg_nn::model::{Model, ModelKind};
use molpeg_nn::tch::Device;
use molpeg_nn::train::{predict_with, Objective};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub const STAGE: &str = "predict";
pub const PREDICTIONS_FILE: &str = schema::predictions::FILE;
pub const REJECTS_FILE: &str = "rejects.parquet";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] molpeg_core::Error),
    #[error(transparent)]
    Nn(#[from] molpeg_nn::Error),
    #[error(transparent)]
    Data(#[from] molpeg_data::fetch::FetchError),
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One prediction run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictConfig {
    /// CSV, CSV.gz or Parquet with a SMILES column, or a pipeline's `graphs.parquet`.
    pub input: PathBuf,
    /// The SMILES column of a CSV or Parquet input (`graphs.parquet` always uses `smiles`).
    pub smiles_column: String,
    /// One checkpoint, or several (an ensemble: mean and standard deviation per task).
    pub models: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// Molecules featurized and predicted together; bounds memory.
    pub chunk_rows: usize,
    /// Graphs per forward pass.
    pub batch_size: usize,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    pub threads: usize,
    /// Only the first N input rows.
    pub limit: Option<usize>,
    #[serde(skip)]
    pub force: bool,
    #[serde(skip)]
    pub verbose: bool,
    /// Predict only this shard's contiguous slice of the input rows (after `limit`) and write its
    /// part of each table ([`molpeg_core::dataset`]).
    #[serde(default)]
    pub shard: Option<Shard>,
    /// 3D models (SchNet) only: how the new molecules get their 3D atoms, an RDKit conformer
    /// (`etkdg`, or `etkdg+mmff` relaxed with MMFF94) embedded by the featurize stage's code.
    /// `None`: the model's own training geometry when that was an RDKit conformer (same mode and
    /// seed), else an error (a model trained on a dataset's geometries, e.g. QM9's DFT ones, is
    /// applied to conformers only when asked).
    #[serde(default)]
    pub geometry: Option<GeometryMode>,
    /// The conformer seed; `None`: the model's training seed, else 42 (the featurize default).
    #[serde(default)]
    pub conformer_seed: Option<u32>,
    /// ETKDG attempts per molecule before it is a reject (the featurize default, 10).
    #[serde(default = "default_conformer_attempts")]
    pub conformer_attempts: u32,
}

fn default_conformer_attempts() -> u32 {
    FeaturizeConfig::default().conformer_attempts
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            input: PathBuf::new(),
            smiles_column: "smiles".into(),
            models: Vec::new(),
            out_dir: PathBuf::new(),
            chunk_rows: 4096,
            batch_size: 1024,
            device: DeviceChoice::Auto,
            threads: 0,
            limit: None,
            force: false,
            verbose: true,
            shard: None,
            geometry: None,
            conformer_seed: None,
            conformer_attempts: default_conformer_attempts(),
        }
    }
}

/// What [`run`] reports (and records in the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictSummary {
    pub out_dir: PathBuf,
    pub skipped: bool,
    pub input_rows: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub models: usize,
    pub task_names: Vec<String>,
    pub task_type: TaskKind,
    pub seconds: f64,
    pub molecules_per_second: f64,
    pub device: String,
    pub predictions: PathBuf,
    pub rejects: PathBuf,
    /// The shard this run predicted, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Per model (in `--model` order), for token models: tokens read, tokens not in the model's
    /// vocabulary (read as `<unk>`), molecules cut at its length limit; `null` for a GIN.
    #[serde(default)]
    pub token_coverage: Vec<Option<TokenCoverage>>,
    /// 3D models: the conformers made for the new molecules (`etkdg`, seed 42), and what the
    /// models were trained on when that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conformers: Option<ConformerReport>,
}

/// How a run with a 3D model embedded its molecules ([`PredictSummary::conformers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConformerReport {
    /// `etkdg` or `etkdg+mmff`.
    pub geometry: String,
    pub seed: u32,
    pub attempts: u32,
    /// Molecules embedded per second (embedding dominates a 3D prediction's time).
    pub conformers_per_second: f64,
    /// The training geometry of each model whose training geometry is not this run's, e.g.
    /// `dataset:XYZ_Ang` (DFT geometries): its predictions on conformers carry that shift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained_on_other_geometry: Vec<String>,
}

impl std::fmt::Display for PredictSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.skipped {
            return write!(f, "predict: up to date ({}), use --force to rerun", self.out_dir.display());
        }
        write!(
            f,
            "predict: {} rows -> {} predicted, {} rejected by {} model(s), {} {} task(s), in {:.1} s ({:.0} mol/s on {}) -> {}",
            self.input_rows,
            self.accepted,
            self.rejected,
            self.models,
            self.task_names.len(),
            self.task_type.as_str(),
            self.seconds,
            self.molecules_per_second,
            self.device,
            self.predictions.display()
        )?;
        if let Some(c) = &self.conformers {
            write!(f, "\n3D atoms: RDKit {} conformers (seed {}, {} attempts), {:.1} conformers/s", c.geometry, c.seed, c.attempts, c.conformers_per_second)?;
            for other in &c.trained_on_other_geometry {
                write!(f, "\nnote: a model was trained on {other} geometries, not on {} conformers: expect the shift between the two in its predictions", c.geometry)?;
            }
        }
        for (i, c) in self.token_coverage.iter().enumerate() {
            if let Some(c) = c.filter(|c| c.unknown > 0 || c.truncated_molecules > 0) {
                write!(f, "\nmodel {}: {} of {} tokens not in its vocabulary (read as <unk>), {} molecules cut at its length limit", i + 1, c.unknown, c.tokens, c.truncated_molecules)?;
            }
        }
        Ok(())
    }
}

/// A loaded ensemble member.
struct Member {
    model: Model,
    objective: Objective,
    /// What a 3D model was trained on (from its checkpoint).
    geometry: Option<TrainingGeometry>,
}

/// What the featurizer must produce besides the graph for an ensemble's token models.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ExtraInputs {
    morgan: Option<MorganSpec>,
    smiles: bool,
    /// 3D models: the conformer every molecule gets.
    conformer: Option<Conformer>,
}

/// An RDKit conformer recipe (the featurize stage's `geometry`, `conformer_seed`, `conformer_attempts`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Conformer {
    mode: GeometryMode,
    seed: u32,
    attempts: u32,
}

impl ExtraInputs {
    fn of(members: &[Member], paths: &[PathBuf], config: &PredictConfig) -> Result<ExtraInputs> {
        let mut inputs = ExtraInputs { conformer: conformer_for(members, paths, config)?, ..Default::default() };
        for (m, path) in members.iter().zip(paths) {
            let c = &m.model.config;
            match c.kind {
                ModelKind::Gin | ModelKind::Schnet => {}
                ModelKind::Smiles => inputs.smiles = true,
                ModelKind::Fingerprint => {
                    let fp = c.sequence.as_ref().and_then(|q| q.fingerprint).ok_or_else(|| Error::Model { path: path.clone(), message: "a fingerprint model without its fingerprint settings".into() })?;
                    let radius = fp.radius.ok_or_else(|| Error::Model {
                        path: path.clone(),
                        message: "the model does not record its fingerprint's Morgan radius (its fingerprints.parquet had none); molpeg-predict cannot make the same fingerprints".into(),
                    })?;
                    let spec = MorganSpec { radius, bits: fp.bits as u32 };
                    if inputs.morgan.is_some_and(|m| m != spec) {
                        return Err(Error::Model { path: path.clone(), message: "the ensemble's fingerprint models read different fingerprints; predict with each separately".into() });
                    }
                    inputs.morgan = Some(spec);
                }
            }
        }
        Ok(inputs)
    }
}

/// Checks that `info` was trained on this build's featurizer.
fn check_featurizer(path: &Path, info: &TaskInfo) -> Result<()> {
    let fail = |message: String| Err(Error::Model { path: path.to_path_buf(), message });
    let Some(f) = &info.featurizer else {
        return fail(format!(
            "metadata has no `{}`: the model was written before checkpoints recorded their featurizer; re-run molpeg-finetune (--force) to predict with it",
            meta::FEATURIZER
        ));
    };
    if f.scheme != FEATURE_SCHEME {
        return fail(format!("the model reads `{}` features; molpeg-predict featurizes with `{FEATURE_SCHEME}`", f.scheme));
    }
    match &f.version {
        None => fail("the model was trained on graphs that record no featurizer version (synthetic data?); molpeg-predict cannot tell whether its featurizer matches".into()),
        Some(v) if v != molpeg_chem::FEATURIZER_VERSION => fail(format!(
            "the model was trained on graphs of featurizer version {v}, but this molpeg featurizes with version {}: its predictions would be wrong. Re-featurize and re-train with this molpeg, or predict with the molpeg version that trained it",
            molpeg_chem::FEATURIZER_VERSION
        )),
        Some(_) => Ok(()),
    }
}

/// The conformer recipe for an ensemble's 3D models (`None` without one): `config.geometry`, or the
/// models' own training conformers; a model trained on other geometries (a dataset's DFT ones) is
/// applied to conformers only when `--geometry` asks, since its predictions then carry the shift.
fn conformer_for(members: &[Member], paths: &[PathBuf], config: &PredictConfig) -> Result<Option<Conformer>> {
    let trained: Vec<(&Path, Option<&TrainingGeometry>)> =
        members.iter().zip(paths).filter(|(m, _)| m.model.config.kind == ModelKind::Schnet).map(|(m, p)| (p.as_path(), m.geometry.as_ref())).collect();
    let Some(&(first_path, first)) = trained.first() else {
        return match config.geometry {
            Some(g) => Err(Error::Config(format!("--geometry {} is for 3D models (SchNet), and no model given is one", g.as_str()))),
            None => Ok(None),
        };
    };
    let as_conformer = |g: Option<&TrainingGeometry>| g.and_then(training_conformer);
    let mode = match config.geometry {
        Some(mode) if mode.embeds() => mode,
        Some(other) => {
            return Err(Error::Config(format!(
                "--geometry {}: molpeg-predict reads SMILES and makes the 3D atoms itself, as RDKit conformers: use etkdg or etkdg+mmff",
                other.as_str()
            )))
        }
        None => match as_conformer(first) {
            Some((mode, _)) if trained.iter().all(|(_, g)| as_conformer(*g).map(|c| c.0) == Some(mode)) => mode,
            _ => {
                let source = first.map_or("unrecorded".to_string(), |g| format!("`{}`", g.source));
                return Err(Error::Model {
                    path: first_path.to_path_buf(),
                    message: format!(
                        "is a SchNet (3D) model trained on {source} geometries, and molpeg-predict reads SMILES, which have none: pass --geometry etkdg \
                         (an RDKit ETKDGv3 conformer per molecule, seeded; etkdg+mmff relaxes it with MMFF94) to predict on conformers. \
                         A model trained on DFT geometries (QM9) then sees slightly different structures; to use the dataset's own geometries, featurize them and evaluate with the fine-tune stage"
                    ),
                });
            }
        },
    };
    let seed = config.conformer_seed.or_else(|| as_conformer(first).and_then(|c| c.1)).unwrap_or(FeaturizeConfig::default().conformer_seed);
    if config.conformer_attempts == 0 {
        return Err(Error::Config("--conformer-attempts must be at least 1".into()));
    }
    Ok(Some(Conformer { mode, seed, attempts: config.conformer_attempts }))
}

/// A training geometry that was an RDKit conformer: its mode and seed.
fn training_conformer(g: &TrainingGeometry) -> Option<(GeometryMode, Option<u32>)> {
    g.source.parse::<GeometryMode>().ok().filter(|m| m.embeds()).map(|m| (m, g.conformer_seed))
}

/// The training geometries of the ensemble's 3D models that are not `conformer`.
fn other_geometries(members: &[Member], conformer: &Conformer) -> Vec<String> {
    members
        .iter()
        .filter(|m| m.model.config.kind == ModelKind::Schnet)
        .filter_map(|m| match &m.geometry {
            None => Some("unrecorded".to_string()),
            Some(g) if training_conformer(g) == Some((conformer.mode, Some(conformer.seed))) => None,
            Some(g) => Some(match g.conformer_seed {
                Some(seed) => format!("{} (seed {seed})", g.source),
                None => g.source.clone(),
            }),
        })
        .collect()
}

/// Loads every model and checks that they agree on the tasks.
fn load_models(paths: &[PathBuf], device: Device) -> Result<(Vec<Member>, TaskInfo)> {
    let mut members = Vec::new();
    let mut first: Option<TaskInfo> = None;
    for path in paths {
        let (model, ckpt) = checkpoint::load_model(path, device)?;
        let info = ckpt.task_info()?;
        check_featurizer(path, &info)?;
        if model.num_tasks() != info.task_names.len() {
            return Err(Error::Model { path: path.clone(), message: format!("the model has {} outputs but its metadata names {} tasks", model.num_tasks(), info.task_names.len()) });
        }
        if let Some(f) = &first {
            if f.task_names != info.task_names || f.task_kind != info.task_kind {
                return Err(Error::Model {
                    path: path.clone(),
                    message: format!(
                        "an ensemble needs the same tasks: this model has {} {:?}, {} has {} {:?}",
                        info.task_kind.as_str(),
                        info.task_names,
                        paths[0].display(),
                        f.task_kind.as_str(),
                        f.task_names
                    ),
                });
            }
        }
        let objective = Objective { kind: info.task_kind, target_mean: info.target_mean.clone(), target_std: info.target_std.clone(), sample_loss: Default::default() };
        members.push(Member { model, objective, geometry: info.geometry.clone() });
        first.get_or_insert(info);
    }
    let info = first.ok_or_else(|| Error::Config("no model given (--model FILE, once per ensemble member)".into()))?;
    Ok((members, info))
}

/// Input rows `(row, smiles)` in file order.
type RowSource = Box<dyn Iterator<Item = Result<(u32, String)>>>;

fn is_parquet(path: &Path) -> Result<bool> {
    use std::io::Read;
    if path.is_dir() {
        return Ok(true); // a dataset directory of Parquet parts
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| molpeg_core::Error::io(path, e))?;
    let n = file.read(&mut magic).map_err(|e| molpeg_core::Error::io(path, e))?;
    Ok(n == 4 && &magic == b"PAR1")
}

/// Opens the input; returns its rows and their number when known up front (Parquet).
fn open_rows(config: &PredictConfig) -> Result<(RowSource, Option<usize>)> {
    let path = config.input.clone();
    if !dataset::exists(&path) {
        return Err(molpeg_core::Error::invalid(&path, "input file not found").into());
    }
    if !is_parquet(&path)? {
        let spec = DatasetSpec {
            name: "predict".into(),
            url: None,
            file: path.display().to_string(),
            mirror_names: vec![],
            sha256: vec![],
            path: Some(path.clone()),
            smiles_column: config.smiles_column.clone(),
            label_columns: LabelColumns::Named(vec![]),
            ignore_columns: vec![],
            task_type: TaskType::Binary,
            missing: vec![],
            geometry: None,
            label_units: Default::default(),
        };
        let reader = RowReader::open(&path, &spec)?;
        return Ok((Box::new(reader.map(|r| r.map(|row| (row.row, row.smiles)).map_err(Error::from))), None));
    }
    let probe = ParquetSource::open(&path, &Arc::new(arrow::datatypes::Schema::empty()))?;
    let graphs = probe.meta(meta::KIND) == Some(schema::graphs::KIND);
    let column = if graphs { schema::graphs::SMILES.to_string() } else { config.smiles_column.clone() };
    let mut expected = schema::molecules::schema(&column);
    if graphs {
        expected = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new(schema::graphs::MOL_ID, arrow::datatypes::DataType::UInt32, false),
            expected.field(0).clone(),
        ]));
    }
    let source = ParquetSource::open_user(&path, &expected)?;
    let rows = source.num_rows;
    let names: Vec<&str> = expected.fields().iter().map(|f| f.name().as_str()).collect();
    let reader = source.read_columns(&names)?;
    let mut next_row = 0usize;
    let iter = reader.flat_map(move |batch| {
        let items: Vec<Result<(u32, String)>> = match batch {
            Err(e) => vec![Err(molpeg_core::Error::arrow(&path, e).into())],
            Ok(batch) => {
                let first = next_row;
                next_row += batch.num_rows();
                let smiles_col = batch.column(batch.num_columns() - 1);
                let smiles = match arrow::compute::cast(smiles_col, &arrow::datatypes::DataType::Utf8) {
                    Ok(s) => s,
                    Err(e) => return vec![Err(molpeg_core::Error::arrow(&path, e).into())],
                };
                let smiles = smiles.as_string::<i32>();
                let ids = if graphs { molpeg_core::columns::u32_values(&path, schema::graphs::MOL_ID, batch.column(0), first).map(Some) } else { Ok(None) };
                match ids {
                    Err(e) => vec![Err(e.into())],
                    Ok(ids) => (0..batch.num_rows())
                        .map(|i| {
                            let row = match &ids {
                                Some(ids) => ids[i],
                                None => u32::try_from(first + i).map_err(|_| molpeg_core::Error::invalid(&path, "more than 2^32 rows"))?,
                            };
                            Ok((row, if smiles.is_null(i) { String::new() } else { smiles.value(i).trim().to_string() }))
                        })
                        .collect(),
                }
            }
        };
        items
    });
    Ok((Box::new(iter), Some(rows)))
}

/// Output sinks of one run.
struct Sinks {
    predictions: ParquetSink,
    rejects: ParquetSink,
    schema: SchemaRef,
}

/// Predictions of one chunk: `(row, smiles, graph)` accepted, `(row, smiles, reason)` rejected.
#[allow(clippy::too_many_arguments)]
fn predict_chunk(
    members: &[Member],
    info: &TaskInfo,
    extra: &ExtraInputs,
    chunk: Vec<(u32, String)>,
    batch_size: usize,
    sinks: &mut Sinks,
    coverage: &mut [Option<TokenCoverage>],
    path: &Path,
) -> Result<(usize, usize)> {
    let tasks = info.task_names.len();
    let featurized: Vec<(u32, String, Result<MolGraph, Reject>)> = chunk
        .into_par_iter()
        .map_init(
            || {
                let f = Featurizer::with_fingerprint(extra.morgan);
                match extra.conformer {
                    Some(c) => f.with_geometry(c.mode, c.seed, c.attempts),
                    None => f,
                }
            },
            |f, (row, smiles)| {
                let g = f.featurize(&smiles);
                (row, smiles, g)
            },
        )
        .collect();
    let mut store = GraphStore::new(tasks);
    if let Some(spec) = extra.morgan {
        store.fingerprints = Some(FingerprintTokens::new(spec.bits as usize, Some(spec.radius)));
    }
    if extra.smiles {
        store.smiles = Some(SmilesTokens::default());
    }
    if extra.conformer.is_some() {
        store.atoms3d = Some(Atoms3d::default());
    }
    let nan = vec![f32::NAN; tasks];
    let mut scratch = Vec::new();
    let (mut rows, mut smiles, mut canonical) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rej_rows, mut rej_smiles, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for (row, s, graph) in featurized {
        let pushed = graph.map_err(|r| r.to_string()).and_then(|g| {
            // Token inputs are checked before the graph goes in, so the store's tables stay aligned.
            let tokens = if extra.smiles { SmilesTokens::tokenize(&g.canonical_smiles)? } else { Vec::new() };
            let packed = g.fingerprint.as_deref().unwrap_or(&[]);
            if extra.morgan.is_some() {
                FingerprintTokens::check(packed)?;
            }
            let geometry = match (&extra.conformer, &g.geometry) {
                (None, _) => None,
                (Some(_), Some(geometry)) if !geometry.atomic_numbers.is_empty() => Some(geometry),
                (Some(_), _) => return Err("the conformer has no atoms".to_string()),
            };
            let view = GraphView { atoms: &g.atom_hu, edges: &g.edge_index, bonds: &g.bond_hu, labels: &nan };
            store.push(row, view, &mut scratch)?;
            if let Some(fp) = store.fingerprints.as_mut() {
                fp.push_packed(packed)?;
            }
            if let Some(table) = store.smiles.as_mut() {
                table.push_tokens(&tokens);
            }
            if let (Some(table), Some(geometry)) = (store.atoms3d.as_mut(), geometry) {
                table.push(&geometry.atomic_numbers, &geometry.positions)?;
            }
            Ok(g.canonical_smiles)
        });
        match pushed {
            Ok(c) => {
                rows.push(row);
                smiles.push(s);
                canonical.push(c);
            }
            Err(reason) => {
                rej_rows.push(row);
                rej_smiles.push(s);
                reasons.push(reason);
            }
        }
    }
    if !rej_rows.is_empty() {
        let batch = RecordBatch::try_new(
            schema::rejects::schema(),
            vec![Arc::new(UInt32Array::from(rej_rows.clone())), Arc::new(StringArray::from(rej_smiles)), Arc::new(StringArray::from(reasons))],
        )
        .map_err(|e| molpeg_core::Error::arrow(path, e))?;
        sinks.rejects.write(&batch)?;
    }
    if rows.is_empty() {
        return Ok((0, rej_rows.len()));
    }
    let indices: Vec<u32> = (0..store.len() as u32).collect();
    let mut per_model: Vec<Vec<f32>> = Vec::with_capacity(members.len());
    for (m, total) in members.iter().zip(coverage.iter_mut()) {
        if let (Some(input), Some(total)) = (m.model.token_input(&store)?, total.as_mut()) {
            let c = input.coverage(&store, &indices);
            total.tokens += c.tokens;
            total.unknown += c.unknown;
            total.truncated_molecules += c.truncated_molecules;
        }
        let out = predict_with(&m.model, &m.objective, &store, &indices, batch_size, false)?.outputs;
        per_model.push(out.into_iter().map(|v| output_to_prediction(info.task_kind, v)).collect());
    }
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(rows)), Arc::new(StringArray::from(smiles)), Arc::new(StringArray::from(canonical))];
    for j in 0..tasks {
        if members.len() == 1 {
            columns.push(Arc::new(Float32Array::from_iter_values((0..n).map(|i| per_model[0][i * tasks + j]))));
            continue;
        }
        let k = members.len() as f64;
        let mut mean = Vec::with_capacity(n);
        let mut std = Vec::with_capacity(n);
        for i in 0..n {
            let values = per_model.iter().map(|p| p[i * tasks + j] as f64);
            let mu = values.clone().sum::<f64>() / k;
            let var = values.map(|v| (v - mu).powi(2)).sum::<f64>() / k;
            mean.push(mu as f32);
            std.push(var.sqrt() as f32);
        }
        columns.push(Arc::new(Float32Array::from(mean)));
        columns.push(Arc::new(Float32Array::from(std)));
    }
    let batch = RecordBatch::try_new(sinks.schema.clone(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    sinks.predictions.write(&batch)?;
    Ok((n, rej_rows.len()))
}

/// Runs a prediction (see the module docs). An unchanged rerun is skipped unless `config.force`.
pub fn run(config: &PredictConfig) -> Result<PredictSummary> {
    if config.chunk_rows == 0 || config.batch_size == 0 {
        return Err(Error::Config("chunk_rows and batch_size must be at least 1".into()));
    }
    if config.models.is_empty() {
        return Err(Error::Config("no model given (--model FILE, once per ensemble member)".into()));
    }
    let mut inputs: Vec<&Path> = vec![&config.input];
    inputs.extend(config.models.iter().map(PathBuf::as_path));
    if !dataset::exists(&config.input) {
        return Err(molpeg_core::Error::invalid(&config.input, "file not found").into());
    }
    for p in &config.models {
        if !p.is_file() {
            return Err(molpeg_core::Error::invalid(p, "file not found").into());
        }
    }
    if config.threads > 0 {
        molpeg_nn::tch::set_num_threads(config.threads as i32);
    }
    let device = config.device.resolve()?;
    let params = serde_json::json!({ "config": config, "device": if device.is_cuda() { "cuda" } else { "cpu" }, "featurizer_version": molpeg_chem::FEATURIZER_VERSION });
    let stage = StageRun::new(STAGE, &config.out_dir, &params, &inputs)?.with_manifest_name(dataset::manifest_name(config.shard));
    if !config.force {
        if let Some(cached) = stage.cached() {
            if let Ok(mut summary) = serde_json::from_value::<PredictSummary>(cached.summary) {
                summary.skipped = true;
                return Ok(summary);
            }
        }
    }
    let (members, info) = load_models(&config.models, device)?;
    let extra_inputs = ExtraInputs::of(&members, &config.models, config)?;
    let mut coverage: Vec<Option<TokenCoverage>> = members.iter().map(|m| matches!(m.model.config.kind, ModelKind::Fingerprint | ModelKind::Smiles).then(TokenCoverage::default)).collect();
    let ensemble = members.len() > 1;
    let out_schema = schema::predictions::schema(&info.task_names, ensemble).map_err(Error::Config)?;
    let (rows, known) = open_rows(config)?;
    let limit = config.limit.unwrap_or(usize::MAX);
    let slice = match config.shard {
        None => 0..limit,
        Some(shard) => {
            let total = match known {
                Some(n) => n.min(limit),
                None => open_rows(config)?.0.take(limit).try_fold(0usize, |n, row| row.map(|_| n + 1))?,
            };
            dataset::rows_of(Some(shard), total)
        }
    };
    dataset::prepare(&config.out_dir, &[PREDICTIONS_FILE, REJECTS_FILE], config.shard)?;
    stage.begin()?;

    let predictions_path = dataset::table_path(&config.out_dir, PREDICTIONS_FILE, config.shard);
    let rejects_path = dataset::table_path(&config.out_dir, REJECTS_FILE, config.shard);
    let models_json = serde_json::to_string(&config.models).expect("paths serialize");
    let mut extra = BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(&info.task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), info.task_kind.as_str().to_string()),
        (meta::FEATURIZER_VERSION.to_string(), molpeg_chem::FEATURIZER_VERSION.to_string()),
        (meta::RDKIT_VERSION.to_string(), molpeg_chem::rdkit_version()),
        (meta::SOURCE_PATH.to_string(), config.input.display().to_string()),
        (schema::predictions::META_MODELS.to_string(), models_json),
    ]);
    if let Some(c) = &extra_inputs.conformer {
        extra.insert(schema::atoms3d::META_GEOMETRY.to_string(), c.mode.as_str().to_string());
        extra.insert(schema::atoms3d::META_SEED.to_string(), c.seed.to_string());
    }
    let mut sinks = Sinks {
        predictions: ParquetSink::create(&predictions_path, out_schema.clone(), schema::predictions::KIND, &extra)?,
        rejects: ParquetSink::create(&rejects_path, schema::rejects::schema(), schema::rejects::KIND, &extra)?,
        schema: out_schema,
    };
    let total = match (known, config.limit) {
        _ if config.shard.is_some() => Some(slice.len()),
        (Some(n), Some(l)) => Some(n.min(l)),
        (n, l) => n.or(l),
    };
    let bar = if config.verbose {
        match total {
            Some(n) => molpeg_core::progress::bar(n as u64, "mol"),
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(indicatif::ProgressStyle::with_template("{msg} {spinner} {human_pos} mol ({per_sec})").expect("valid template"));
                b
            }
        }
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("predict");
    let start = Instant::now();
    let (mut input_rows, mut accepted, mut rejected) = (0usize, 0usize, 0usize);
    let mut chunk = Vec::with_capacity(config.chunk_rows);
    for item in rows.take(slice.end).skip(slice.start) {
        chunk.push(item?);
        if chunk.len() == config.chunk_rows {
            let n = chunk.len();
            let (a, r) = predict_chunk(&members, &info, &extra_inputs, std::mem::take(&mut chunk), config.batch_size, &mut sinks, &mut coverage, &predictions_path)?;
            (input_rows, accepted, rejected) = (input_rows + n, accepted + a, rejected + r);
            bar.inc(n as u64);
        }
    }
    if !chunk.is_empty() {
        let n = chunk.len();
        let (a, r) = predict_chunk(&members, &info, &extra_inputs, chunk, config.batch_size, &mut sinks, &mut coverage, &predictions_path)?;
        (input_rows, accepted, rejected) = (input_rows + n, accepted + a, rejected + r);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let (predictions, _) = sinks.predictions.finish()?;
    let (rejects, _) = sinks.rejects.finish()?;
    let summary = PredictSummary {
        out_dir: config.out_dir.clone(),
        skipped: false,
        input_rows,
        accepted,
        rejected,
        models: members.len(),
        task_names: info.task_names.clone(),
        task_type: info.task_kind,
        seconds,
        molecules_per_second: input_rows as f64 / seconds.max(1e-9),
        device: describe(device),
        predictions: predictions.clone(),
        rejects: rejects.clone(),
        shard: config.shard,
        token_coverage: coverage,
        conformers: extra_inputs.conformer.map(|c| ConformerReport {
            geometry: c.mode.as_str().to_string(),
            seed: c.seed,
            attempts: c.attempts,
            conformers_per_second: accepted as f64 / seconds.max(1e-9),
            trained_on_other_geometry: other_geometries(&members, &c),
        }),
    };
    stage.finish(&[&predictions, &rejects], &summary)?;
    Ok(summary)
}
