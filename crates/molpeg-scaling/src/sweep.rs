//! The sweep: fine-tuning in-process over a grid of fractions × seeds × strategies (× the optional
//! split, model, pretrained and capacity axes), one row of `results.parquet` per finished cell, then
//! the report ([`crate::report`]).
//!
//! - Fraction 1 is the full training split for every strategy: one cell per seed (and axes), strategy
//!   `full`.
//! - Resuming: `results.parquet` is rewritten (temp file + rename) after every cell; on start the
//!   sweep reads it and skips every cell whose key (all axes + seed) and settings hash match.
//! - Settings hash (per row): the `[finetune]` settings that change what is measured (everything but
//!   the per-cell axes seed/model/layers/width/pretrained and the execution choices device, threads,
//!   prefetch, eval batch size), `rescale`, the sha256 of `graphs.parquet`, the content of the split,
//!   and the cell's own inputs (the scores file and `[select]` order/aggregate for `select:`, or the
//!   fingerprint file for `select:kmeans-fp`; the pretrained checkpoint; for a token model its
//!   `[finetune.sequence]` shape and, for the fingerprint model, the fingerprint file). GIN cells
//!   hash as they did before the model axis existed, so their rows stay valid.
//! - Models: the store is read once with the inputs of every model of the axis (fingerprint bits,
//!   SMILES tokens) attached; each cell builds its model from `[finetune]` with `model` and the
//!   capacity set. A SMILES cell's vocabulary comes from the whole training split, whatever the
//!   fraction, so the vocabulary does not change along a curve. A row whose hash differs from what the current settings give for its key
//!   is stale: the sweep refuses to mix it in and says how to proceed (`--discard-stale` drops such
//!   rows, or choose another `--out-dir`).
//! - Splits: without a split axis the split stage's `split.parquet` is used (its rows are labelled
//!   with the method in its metadata). Methods of the split axis are computed in-process with
//!   `molpeg_data::split::assign` (no RDKit: scaffolds come from `graphs.parquet`): the `[split]`
//!   section as it is for its own method; another method gets that method's default fractions and the
//!   section's seed and move fraction.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use molpeg_core::manifest::{sha256_file, StageRun};
use molpeg_core::shard::Shard;
use molpeg_core::parquet_io::ParquetSource;
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::split as split_schema;
use molpeg_data::split::{self, SplitConfig, SplitMethod};
use molpeg_nn::data::{self as nn_data, read_graphs, Dataset, GraphStore, Sample, TaskKind};
use molpeg_nn::finetune::{self, FinetuneSettings, SchnetSettings, SequenceSettings};
use molpeg_nn::model::ModelKind;
use molpeg_prune::keep::KeepFraction;
use molpeg_prune::select::{self as select_lib, Kept, SelectConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{parse_split, split_name, Capacity, Grid, ScalingSettings, Strategy, StrategyKind, FULL, SCRATCH};
use crate::report::{self, Report};
use crate::results::{self, CellKey, CellResult};
use crate::{Error, Result};

pub const STAGE: &str = "scaling";
pub const RESULTS_FILE: &str = "results.parquet";
/// Subdirectory of the out dir with one directory per shard (`part-00001-of-00004/`).
pub const SHARDS_DIR: &str = "shards";

/// A resolved sweep: the pipeline's sections with flags applied, and where things are.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The `dataset` column: the pipeline's name.
    pub dataset: String,
    pub pipeline_path: PathBuf,
    pub graphs: PathBuf,
    /// `fingerprints.parquet` of `select:kmeans-fp` strategies (`[select] fingerprints`, default the
    /// featurize stage's).
    pub fingerprints: PathBuf,
    /// The split stage's output, used when there is no split axis.
    pub split_file: PathBuf,
    pub split: SplitConfig,
    pub finetune: FinetuneSettings,
    /// `[select]`: order and aggregate of `select:` strategies (keep, seed and rescale are per cell).
    pub select: SelectConfig,
    pub scaling: ScalingSettings,
    pub out_dir: PathBuf,
    /// Ignore an up-to-date manifest and redo the pass (finished cells are still reused).
    pub force: bool,
    /// Drop stale rows (other settings) from `results.parquet` instead of refusing to run.
    pub discard_stale: bool,
    /// Only fit and plot the existing `results.parquet`.
    pub report_only: bool,
    /// Progress bar and one line per cell on stderr.
    pub verbose: bool,
    /// Run only this shard's cells (cell `i` of the planned grid belongs to shard `i mod N`), in
    /// `<out_dir>/shards/part-I-of-N/` with its own results file and manifest, and write no report;
    /// a run without a shard merges every part into `results.parquet` first.
    pub shard: Option<Shard>,
}

impl SweepConfig {
    /// Reads `[split]`, `[finetune]`, `[select]` and `[scaling]`; outputs go to `runs/<pipeline>/scaling/`.
    pub fn for_pipeline(pipeline: &Pipeline, runs_dir: &Path) -> Result<SweepConfig> {
        let mut scaling: ScalingSettings = pipeline.section(STAGE)?;
        if scaling.scores.is_none() {
            scaling.scores = Some(pipeline.stage_dir(runs_dir, "score").join("sample_scores.parquet"));
        }
        let select: SelectConfig = pipeline.section("select")?;
        Ok(SweepConfig {
            dataset: pipeline.name.clone(),
            pipeline_path: pipeline.path.clone(),
            graphs: pipeline.stage_dir(runs_dir, "featurize").join("graphs.parquet"),
            fingerprints: select.fingerprints_path(pipeline, runs_dir),
            split_file: pipeline.stage_dir(runs_dir, "split").join("split.parquet"),
            split: pipeline.section("split")?,
            finetune: pipeline.section(finetune::STAGE)?,
            select,
            scaling,
            out_dir: pipeline.stage_dir(runs_dir, STAGE),
            force: false,
            discard_stale: false,
            report_only: false,
            verbose: true,
            shard: None,
        })
    }

    pub fn results_path(&self) -> PathBuf {
        self.out_dir.join(RESULTS_FILE)
    }

    /// Where the shards keep their parts: `<out_dir>/shards/part-I-of-N/`.
    pub fn shards_dir(&self) -> PathBuf {
        self.out_dir.join(SHARDS_DIR)
    }

    /// Where this run writes: its shard's directory, or the out dir.
    fn work_dir(&self) -> PathBuf {
        match &self.shard {
            Some(shard) => self.shards_dir().join(shard.part_name()),
            None => self.out_dir.clone(),
        }
    }


    fn scores_path(&self) -> PathBuf {
        self.scaling.scores.clone().unwrap_or_else(|| PathBuf::from("sample_scores.parquet"))
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    pub out_dir: PathBuf,
    /// The manifest matched: nothing ran and the report was not redone.
    pub skipped: bool,
    pub cells: usize,
    pub ran: usize,
    /// Cells found finished in `results.parquet`.
    pub reused: usize,
    /// Stale rows dropped by `--discard-stale`.
    pub discarded: usize,
    /// Mean wall time of the cells run now.
    pub mean_cell_seconds: Option<f64>,
    pub seconds: f64,
    pub report: Option<Report>,
}

impl fmt::Display for SweepSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            return write!(f, "{}: up to date, skipped (use --force to redo the pass)", self.out_dir.display());
        }
        write!(f, "scaling: {} cells: {} run now, {} already finished", self.cells, self.ran, self.reused)?;
        if self.discarded > 0 {
            write!(f, ", {} stale rows discarded", self.discarded)?;
        }
        if let Some(mean) = self.mean_cell_seconds {
            write!(f, "; {mean:.1} s per cell")?;
        }
        writeln!(f, "; {:.1} s in all", self.seconds)?;
        if let Some(report) = &self.report {
            write!(f, "{report}")?;
        }
        Ok(())
    }
}

/// One cell to run.
struct Cell {
    key: CellKey,
    strategy: Strategy,
    pretrained: Option<PathBuf>,
    hash: String,
    /// Training samples per epoch, for the progress bar and the results row.
    n_train: usize,
}

/// A split of the graphs and the hash of its content.
struct SplitData {
    data: Dataset,
    hash: String,
}

/// Loaded graphs, the splits computed so far and the file hashes, shared by all cells.
struct Context<'a> {
    config: &'a SweepConfig,
    store: Arc<GraphStore>,
    task_names: Vec<String>,
    task_kind: TaskKind,
    /// The label of the split stage's split, when the sweep uses it (no split axis).
    stage_label: Option<String>,
    scaffolds: Option<(Vec<u32>, Vec<String>)>,
    splits: HashMap<String, Option<Arc<SplitData>>>,
    file_hashes: HashMap<PathBuf, Option<String>>,
    common: serde_json::Value,
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..16].to_string()
}

/// `[finetune]` with the per-cell axes and the execution-only fields blanked: what the hash covers.
fn measured_settings(f: &FinetuneSettings) -> FinetuneSettings {
    FinetuneSettings {
        seed: 0,
        layers: 0,
        width: 0,
        pretrained: None,
        coreset: None,
        tag: None,
        dynamic: None,
        keep: None,
        threads: 0,
        device: Default::default(),
        prefetch: true,
        eval_batch_size: 0,
        model: ModelKind::Gin,
        sequence: SequenceSettings::default(),
        schnet: SchnetSettings::default(),
        ..f.clone()
    }
}

/// `[finetune.sequence]` without the capacity axis (layers, width): what a token cell's hash covers.
fn measured_sequence(q: &SequenceSettings) -> SequenceSettings {
    SequenceSettings { layers: 0, width: 0, ..q.clone() }
}

impl<'a> Context<'a> {
    /// Reads the graphs with the inputs of every model in `models` attached.
    fn new(config: &'a SweepConfig, use_stage_split: bool, models: &[ModelKind]) -> Result<Self> {
        let (mut store, task_names, task_kind) = read_graphs(&config.graphs)?;
        for &kind in models {
            nn_data::attach_inputs(&mut store, &config.graphs, kind)?;
        }
        let stage_label = if use_stage_split {
            let source = ParquetSource::open(&config.split_file, &split_schema::schema())?;
            let method = source.meta(split::META_SPLIT_METHOD).and_then(|m| serde_json::from_str::<String>(m).ok());
            // A split file without the method in its metadata is labelled by its file name.
            Some(method.unwrap_or_else(|| config.split_file.file_name().map_or_else(|| "split".into(), |n| n.to_string_lossy().into_owned())))
        } else {
            None
        };
        let mut context = Context {
            config,
            store: Arc::new(store),
            task_names,
            task_kind,
            stage_label,
            scaffolds: None,
            splits: HashMap::new(),
            file_hashes: HashMap::new(),
            common: serde_json::Value::Null,
        };
        let graphs_hash = context.file_hash(&config.graphs).ok_or_else(|| Error::Config(format!("cannot hash {}", config.graphs.display())))?;
        context.common = serde_json::json!({
            "finetune": measured_settings(&config.finetune),
            "rescale": config.scaling.rescale,
            "graphs": graphs_hash,
        });
        Ok(context)
    }

    /// sha256 of a file, once; `None` when it cannot be read.
    fn file_hash(&mut self, path: &Path) -> Option<String> {
        self.file_hashes.entry(path.to_path_buf()).or_insert_with(|| sha256_file(path).ok()).clone()
    }

    /// The split labelled `label`: the stage's split, or a method computed in-process; `None` when the
    /// label names neither (rows of such a split are stale).
    fn split(&mut self, label: &str) -> Result<Option<Arc<SplitData>>> {
        if let Some(found) = self.splits.get(label) {
            return Ok(found.clone());
        }
        let rows: Option<(PathBuf, Vec<(u32, String)>)> = if self.stage_label.as_deref() == Some(label) {
            let source = ParquetSource::open(&self.config.split_file, &split_schema::schema())?;
            let mut rows = Vec::new();
            for batch in source.collect_columns(&[split_schema::MOL_ID, split_schema::SPLIT])? {
                use arrow::array::AsArray;
                let ids = batch.column(0).as_primitive::<arrow::datatypes::UInt32Type>();
                let parts = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Utf8).map_err(|e| molpeg_core::Error::arrow(&self.config.split_file, e))?;
                rows.extend(ids.values().iter().zip(parts.as_string::<i32>().iter()).map(|(&id, p)| (id, p.unwrap_or("").to_string())));
            }
            Some((self.config.split_file.clone(), rows))
        } else if let Ok(method) = parse_split(label) {
            let config = self.split_config(method);
            config.validate(&self.config.pipeline_path)?;
            if self.scaffolds.is_none() {
                let keys = split::read_graph_keys(&self.config.graphs)?;
                self.scaffolds = Some((keys.mol_ids, keys.scaffolds));
            }
            let (ids, scaffolds) = self.scaffolds.as_ref().expect("just read");
            let parts = split::assign(&scaffolds[..], &config);
            let rows = ids.iter().zip(&parts).map(|(&id, part)| (id, part.as_str().to_string())).collect();
            Some((PathBuf::from(format!("{} ({label} split computed in-process)", self.config.graphs.display())), rows))
        } else {
            None
        };
        let found = match rows {
            Some((name, rows)) => {
                let data = Dataset::with_split(self.store.clone(), self.task_names.clone(), self.task_kind, &self.config.graphs, &name, &rows)?;
                let mut hasher = Sha256::new();
                for (part, indices) in [("train", &data.train), ("valid", &data.valid), ("test", &data.test)] {
                    let mut ids: Vec<u32> = indices.iter().map(|&g| data.store.mol_ids[g as usize]).collect();
                    ids.sort_unstable();
                    hasher.update(part.as_bytes());
                    ids.iter().for_each(|id| hasher.update(id.to_le_bytes()));
                }
                Some(Arc::new(SplitData { data, hash: hex::encode(hasher.finalize()) }))
            }
            None => None,
        };
        self.splits.insert(label.to_string(), found.clone());
        Ok(found)
    }

    /// The `[split]` section for `method`: as written for its own method; another method keeps the
    /// section's seed and move fraction but its own default fractions.
    fn split_config(&self, method: SplitMethod) -> SplitConfig {
        let section = &self.config.split;
        if section.method == method {
            section.clone()
        } else {
            SplitConfig { method, fractions: None, ..section.clone() }
        }
    }

    /// The settings hash the current configuration gives the cell `key`; `None` when its split,
    /// checkpoint or strategy cannot be reproduced (the row is then stale).
    fn cell_hash(&mut self, key: &CellKey) -> Result<Option<String>> {
        if key.dataset != self.config.dataset {
            return Ok(None);
        }
        let Some(split) = self.split(&key.split)? else { return Ok(None) };
        let pretrained = match key.pretrained.as_str() {
            SCRATCH => None,
            path => match self.file_hash(Path::new(path)) {
                Some(h) => Some(h),
                None => return Ok(None),
            },
        };
        let strategy = if key.strategy == FULL {
            serde_json::Value::Null
        } else {
            match key.strategy.parse::<Strategy>().map(|s| s.kind) {
                Err(_) => return Ok(None),
                Ok(StrategyKind::Select(rule)) if rule.reads_fingerprints() => {
                    let path = self.config.fingerprints.clone();
                    let Some(fingerprints) = self.file_hash(&path) else { return Ok(None) };
                    serde_json::json!({"fingerprints": fingerprints})
                }
                Ok(StrategyKind::Select(_)) => {
                    let scores = self.config.scores_path();
                    let Some(scores) = self.file_hash(&scores) else { return Ok(None) };
                    serde_json::json!({"scores": scores, "order": self.config.select.order, "aggregate": self.config.select.aggregate})
                }
                Ok(_) => serde_json::Value::Null,
            }
        };
        let mut all = serde_json::json!({"common": self.common, "split": split.hash, "pretrained": pretrained, "strategy": strategy});
        // GIN cells add nothing, so that their hashes are those from before the model axis.
        let Some(model) = ModelKind::parse(&key.model) else { return Ok(None) };
        match model {
            ModelKind::Gin => {}
            ModelKind::Fingerprint | ModelKind::Smiles => {
                let mut inputs = serde_json::json!({"model": model, "sequence": measured_sequence(&self.config.finetune.sequence)});
                if model == ModelKind::Fingerprint {
                    let Some(fingerprints) = self.file_hash(&nn_data::fingerprints_path(&self.config.graphs)) else { return Ok(None) };
                    inputs["fingerprints"] = fingerprints.into();
                }
                all["model"] = inputs;
            }
            ModelKind::Schnet => {
                // The resolved shape without the capacity axis (interactions × hidden are the cell's).
                let Some(atoms3d) = self.file_hash(&nn_data::atoms3d_path(&self.config.graphs)) else { return Ok(None) };
                all["model"] = serde_json::json!({"model": model, "schnet": self.config.finetune.schnet.resolve().2, "atoms3d": atoms3d});
            }
        }
        Ok(Some(hex_digest(all.to_string().as_bytes())))
    }
}

/// The grid's axes other than strategy, fraction and seed.
struct AxisValues {
    split: String,
    model: ModelKind,
    pretrained: Option<PathBuf>,
    capacity: Capacity,
}

fn pretrained_label(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or_else(|| SCRATCH.to_string(), |p| p.display().to_string())
}

fn plan_cells(context: &mut Context, strategies: &[Strategy], axes: &[AxisValues]) -> Result<Vec<Cell>> {
    let config = context.config;
    let mut cells = Vec::new();
    for axis in axes {
        let split = context.split(&axis.split)?.ok_or_else(|| Error::Config(format!("split `{}` cannot be built", axis.split)))?;
        let n = split.data.train.len();
        for &seed in &config.scaling.seeds {
            for &fraction in &config.scaling.fractions {
                let at_fraction: Vec<Strategy> = if fraction == 1.0 { vec![Strategy::full()] } else { strategies.to_vec() };
                for strategy in at_fraction {
                    let key = CellKey {
                        dataset: config.dataset.clone(),
                        split: axis.split.clone(),
                        model: axis.model.as_str().to_string(),
                        pretrained: pretrained_label(&axis.pretrained),
                        layers: axis.capacity.layers as u32,
                        width: axis.capacity.width as u32,
                        strategy: strategy.name.clone(),
                        fraction,
                        seed,
                    };
                    let hash = context.cell_hash(&key)?.ok_or_else(|| Error::Config(format!("cannot hash the inputs of cell {key:?} (is a file missing?)")))?;
                    let n_train = KeepFraction::new(fraction).map_err(Error::Config)?.count(n);
                    cells.push(Cell { key, strategy, pretrained: axis.pretrained.clone(), hash, n_train });
                }
            }
        }
    }
    Ok(cells)
}

/// `results.parquet` of the out dir (when present), then every shard's part, sorted by name.
fn result_files(config: &SweepConfig) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Some(config.results_path()).filter(|p| p.is_file()).into_iter().collect();
    let shards = config.shards_dir();
    if shards.is_dir() {
        let entries = std::fs::read_dir(&shards).map_err(|e| molpeg_core::Error::io(&shards, e))?;
        let mut parts: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path().join(RESULTS_FILE)).filter(|p| p.is_file()).collect();
        parts.sort();
        files.extend(parts);
    }
    Ok(files)
}

/// The rows of `files`, the first row of each cell key kept (a cell is in one file unless the shard
/// count changed between runs, and then both rows are the same cell).
fn read_union(files: &[PathBuf]) -> Result<Vec<CellResult>> {
    let mut rows: Vec<CellResult> = Vec::new();
    for file in files {
        for row in results::read(file)? {
            if !rows.iter().any(|r| r.key.same(&row.key)) {
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// `stale` of the `rows` of `path` have other settings hashes than the current settings give; the
/// first is `rows[first]`.
fn stale_error(path: &Path, rows: &[CellResult], stale: usize, first: usize) -> Error {
    let first = &rows[first];
    Error::Stale {
        path: path.to_path_buf(),
        message: format!(
            "{} of its {} rows were computed with other settings or inputs than the current ones (first: {} fraction {} seed {}, settings hash {}); \
             they are not mixed with new cells. Rerun with --discard-stale to drop them, or choose another --out-dir",
            stale,
            rows.len(),
            first.key.strategy,
            first.key.fraction,
            first.key.seed,
            first.settings_hash
        ),
    }
}

fn require(path: &Path, what: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::Config(format!("{} not found; {what}", path.display())))
    }
}

/// Runs the sweep (see the module docs) and writes the report.
pub fn run(config: &SweepConfig) -> Result<SweepSummary> {
    let started = Instant::now();
    let results_path = config.results_path();
    if config.report_only {
        if config.shard.is_some() {
            return Err(Error::Config("--report-only reads every shard's part: run it without --shard".into()));
        }
        let files = result_files(config)?;
        if files.is_empty() {
            require(&results_path, "run the sweep first (without --report-only)")?;
        }
        let rows = read_union(&files)?;
        let report = report::write(&rows, &config.out_dir, config.scaling.bootstrap)?;
        return Ok(SweepSummary {
            out_dir: config.out_dir.clone(),
            skipped: false,
            cells: rows.len(),
            ran: 0,
            reused: rows.len(),
            discarded: 0,
            mean_cell_seconds: None,
            seconds: started.elapsed().as_secs_f64(),
            report: Some(report),
        });
    }

    let Grid { strategies, capacities, splits: split_methods, models } = config.scaling.validate()?;
    let models = if models.is_empty() { vec![config.finetune.model] } else { models };
    for &model in &models {
        FinetuneSettings { model, ..config.finetune.clone() }.validate()?;
    }
    require(&config.graphs, "run the featurize stage first (`just featurize <pipeline>`)")?;
    let mut inputs: Vec<PathBuf> = vec![config.graphs.clone()];
    if split_methods.is_empty() {
        require(&config.split_file, "run the split stage first (`just split <pipeline>`), or give a split axis (--splits)")?;
        inputs.push(config.split_file.clone());
    }
    if strategies.iter().any(|s| matches!(&s.kind, StrategyKind::Select(rule) if !rule.reads_fingerprints())) {
        require(&config.scores_path(), "select: strategies need a scores file: run the score stage or pass --scores FILE")?;
        inputs.push(config.scores_path());
    }
    if strategies.iter().any(|s| matches!(&s.kind, StrategyKind::Select(rule) if rule.reads_fingerprints())) {
        require(&config.fingerprints, "select:kmeans-fp strategies need fingerprints: run `molpeg-featurize --fingerprints`")?;
        inputs.push(config.fingerprints.clone());
    }
    let pretrained: Vec<Option<PathBuf>> = if config.scaling.pretrained.is_empty() {
        vec![config.finetune.pretrained.clone()]
    } else {
        config.scaling.pretrained.iter().map(|p| (p != SCRATCH).then(|| PathBuf::from(p))).collect()
    };
    for p in pretrained.iter().flatten() {
        require(p, "pretrained checkpoint of the pretrained axis")?;
        inputs.push(p.clone());
    }
    for &model in &models {
        inputs.extend(nn_data::model_input_files(&config.graphs, model)?);
    }
    // Without a capacity axis each model has the shape its own section gives it.
    let capacities_of = |model: ModelKind| match (capacities.is_empty(), model) {
        (false, _) => capacities.clone(),
        (true, ModelKind::Gin) => vec![Capacity { layers: config.finetune.layers, width: config.finetune.width }],
        (true, ModelKind::Schnet) => {
            let (interactions, hidden, _) = config.finetune.schnet.resolve();
            vec![Capacity { layers: interactions, width: hidden }]
        }
        (true, _) => vec![Capacity { layers: config.finetune.sequence.layers, width: config.finetune.sequence.width }],
    };

    if config.finetune.threads > 0 {
        molpeg_nn::tch::set_num_threads(config.finetune.threads as i32);
    }
    let device = config.finetune.device.resolve()?;
    let mut params = serde_json::json!({
        "dataset": config.dataset,
        "scaling": config.scaling,
        "finetune": config.finetune,
        "split": config.split,
        "select": config.select,
        "device": if device.is_cuda() { "cuda" } else { "cpu" },
    });
    let input_refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    if let Some(shard) = &config.shard {
        params["shard"] = serde_json::json!(shard);
    }
    let work_dir = config.work_dir();
    let own_path = work_dir.join(RESULTS_FILE);
    let stage = StageRun::new(STAGE, &work_dir, &params, &input_refs)?;
    if !config.force && stage.cached().is_some() {
        return Ok(SweepSummary {
            out_dir: work_dir.clone(),
            skipped: true,
            cells: 0,
            ran: 0,
            reused: 0,
            discarded: 0,
            mean_cell_seconds: None,
            seconds: started.elapsed().as_secs_f64(),
            report: None,
        });
    }
    stage.begin_resumable()?;

    let mut context = Context::new(config, split_methods.is_empty(), &models)?;
    let split_labels: Vec<String> = match &context.stage_label {
        Some(label) => vec![label.clone()],
        None => split_methods.iter().map(|&m| split_name(m)).collect(),
    };
    let mut axes = Vec::new();
    for split in &split_labels {
        for &model in &models {
            for p in &pretrained {
                for capacity in capacities_of(model) {
                    axes.push(AxisValues { split: split.clone(), model, pretrained: p.clone(), capacity });
                }
            }
        }
    }
    let cells = plan_cells(&mut context, &strategies, &axes)?;

    // Finished cells, and rows that other settings produced: this run's own file first (the out
    // dir's results.parquet, or the shard's part), then every other result file of the out dir.
    let mut rows: Vec<CellResult> = Vec::new();
    let mut discarded = 0;
    let mut elsewhere: Vec<CellResult> = Vec::new();
    for file in std::iter::once(own_path.clone()).chain(result_files(config)?.into_iter().filter(|f| f != &own_path)) {
        let mut file_rows = if file.is_file() { results::read(&file)? } else { Vec::new() };
        let mut current: Vec<bool> = file_rows.iter().map(|row| Ok(context.cell_hash(&row.key)?.as_deref() == Some(row.settings_hash.as_str()))).collect::<Result<_>>()?;
        let stale = current.iter().filter(|&&c| !c).count();
        // A shard leaves the stale rows of other files to the merge (and never counts them as done).
        let others_of_shard = config.shard.is_some() && file != own_path;
        if stale > 0 && !others_of_shard {
            if !config.discard_stale {
                let first = current.iter().position(|&c| !c).expect("a stale row");
                return Err(stale_error(&file, &file_rows, stale, first));
            }
            discarded += stale;
            file_rows = file_rows.into_iter().zip(&current).filter(|(_, &c)| c).map(|(row, _)| row).collect();
            results::write(&file, &file_rows)?;
            current = vec![true; file_rows.len()];
        }
        if file == own_path {
            rows = file_rows;
        } else {
            for (row, &c) in file_rows.into_iter().zip(&current) {
                if c && !rows.iter().chain(&elsewhere).any(|r| r.key.same(&row.key)) {
                    elsewhere.push(row);
                }
            }
        }
    }
    // Without a shard: the shards' cells join results.parquet (the merge; parts stay as they are).
    let merged = if config.shard.is_none() { elsewhere.len() } else { 0 };
    if merged > 0 {
        rows.append(&mut elsewhere);
        results::write(&own_path, &rows)?;
    }
    let owned: Vec<&Cell> = cells.iter().enumerate().filter(|(i, _)| config.shard.as_ref().is_none_or(|s| s.owns(*i))).map(|(_, c)| c).collect();
    let todo: Vec<&Cell> = owned.iter().copied().filter(|c| !rows.iter().chain(&elsewhere).any(|r| r.key.same(&c.key))).collect();
    let reused = owned.len() - todo.len();

    let planned: Vec<u64> = todo.iter().map(|c| config.finetune.epochs as u64 * c.n_train as u64).collect();
    let bar = if config.verbose { molpeg_core::progress::bar(planned.iter().sum(), "graphs") } else { ProgressBar::hidden() };
    let log = |line: String| {
        if config.verbose {
            bar.suspend(|| eprintln!("{line}"));
        }
    };
    let shard_text = config.shard.map_or(String::new(), |s| format!(" (shard {s} of {} cells)", cells.len()));
    let merged_text = if merged > 0 { format!(", {merged} merged from shards") } else { String::new() };
    log(format!("scaling: {} cells{shard_text} ({} finished before{merged_text}), {} to run, results in {}", owned.len(), reused, todo.len(), own_path.display()));
    let show_axes = axes.len() > 1;
    let mut done_graphs = 0;
    let mut cell_seconds = Vec::new();
    for (i, (cell, planned)) in todo.iter().zip(&planned).enumerate() {
        let k = &cell.key;
        let axes_text = if show_axes { format!(" [{} split, {}, {}, {}x{}]", k.split, k.model, k.pretrained, k.layers, k.width) } else { String::new() };
        let what = format!("{axes_text}: {} fraction {} seed {} (n_train {})", k.strategy, k.fraction, k.seed, cell.n_train);
        bar.set_message(format!("cell {}/{}{what}", i + 1, todo.len()));
        // A log file has no progress bar: say which cell is under way.
        if !std::io::stderr().is_terminal() {
            log(format!("cell {}/{}{what} started", i + 1, todo.len()));
        }
        let result = run_cell(&mut context, cell, device, &bar)?;
        done_graphs += planned;
        bar.set_position(done_graphs);
        log(format!(
            "cell {}/{}{what}: test {} {}, best epoch {}, {:.1} s",
            i + 1,
            todo.len(),
            result.metric,
            result.test_metric.map_or("n/a".into(), |v| format!("{v:.4}")),
            result.best_epoch,
            result.seconds
        ));
        cell_seconds.push(result.seconds);
        rows.push(result);
        results::write(&own_path, &rows)?;
    }
    bar.finish_and_clear();
    if !own_path.exists() {
        // A shard that owns no cell still leaves its (empty) part, so the merge sees it finished.
        results::write(&own_path, &rows)?;
    }

    // A shard writes no report: the run without --shard merges every part and reports.
    let report = match config.shard {
        None => Some(report::write(&rows, &config.out_dir, config.scaling.bootstrap)?),
        Some(_) => None,
    };
    let mut outputs = vec![own_path.clone()];
    outputs.extend(report.iter().flat_map(|r| r.files.iter().cloned()));
    let summary = SweepSummary {
        out_dir: work_dir.clone(),
        skipped: false,
        cells: owned.len(),
        ran: todo.len(),
        reused,
        discarded,
        mean_cell_seconds: (!cell_seconds.is_empty()).then(|| cell_seconds.iter().sum::<f64>() / cell_seconds.len() as f64),
        seconds: started.elapsed().as_secs_f64(),
        report,
    };
    stage.finish(&outputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &summary)?;
    Ok(summary)
}

/// Trains one cell in-process and returns its row.
fn run_cell(context: &mut Context, cell: &Cell, device: molpeg_nn::tch::Device, bar: &ProgressBar) -> Result<CellResult> {
    let config = context.config;
    let split = context.split(&cell.key.split)?.expect("planned cells have a split");
    let data = &split.data;
    let key = &cell.key;
    let keep = KeepFraction::new(key.fraction).map_err(Error::Config)?;
    let mut settings = FinetuneSettings { seed: key.seed, pretrained: cell.pretrained.clone(), coreset: None, tag: None, dynamic: None, keep: None, ..config.finetune.clone() };
    settings.model = ModelKind::parse(&key.model).expect("planned cells name a known model");
    let (layers, width) = (key.layers as usize, key.width as usize);
    match settings.model {
        ModelKind::Gin => (settings.layers, settings.width) = (layers, width),
        ModelKind::Schnet => (settings.schnet.interactions, settings.schnet.hidden) = (Some(layers), Some(width)),
        _ => (settings.sequence.layers, settings.sequence.width) = (layers, width),
    }
    let train_ids: Vec<u32> = data.train.iter().map(|&g| data.store.mol_ids[g as usize]).collect();
    let as_plan = |kept: Vec<Kept>| -> Vec<Sample> {
        kept.iter().map(|k| Sample { index: data.index_of(k.mol_id).expect("kept ids come from the train split"), weight: k.weight }).collect()
    };
    let plan = match &cell.strategy.kind {
        StrategyKind::Full => Sample::unweighted(&data.train),
        StrategyKind::Random => as_plan(select_lib::random_subset(&train_ids, keep, key.seed, config.scaling.rescale)),
        StrategyKind::Select(rule) => {
            let select = SelectConfig { seed: key.seed, rescale: config.scaling.rescale, ..config.select.clone() };
            {
                // Baselines read the proxy signal files that sit next to the scores file.
                let scores = config.scores_path();
                let score_dir = scores.parent().map(Path::to_path_buf).unwrap_or_default();
                let files = select_lib::RuleFiles { scores: &scores, score_dir: &score_dir, fingerprints: &config.fingerprints };
                as_plan(select_lib::select_kept(rule, &select, keep, &train_ids, &files)?)
            }
        }
        StrategyKind::Dynamic(policy) => {
            settings.dynamic = Some(policy.clone());
            settings.keep = Some(key.fraction);
            Sample::unweighted(&data.train)
        }
    };
    settings.validate()?;
    let started = Instant::now();
    // Only the test metric at the best epoch is kept: test is evaluated once, with those weights.
    let trained = finetune::train(data, &settings, plan, device, bar, false, finetune::TestEvaluation::AtBestEpoch)?;
    let metric = |e: &Option<molpeg_nn::train::Evaluation>| e.as_ref().and_then(|e| e.metric(trained.monitor));
    Ok(CellResult {
        key: key.clone(),
        n_train: cell.n_train as u32,
        best_epoch: trained.fit.best_epoch,
        metric: trained.monitor.to_string(),
        valid_metric: metric(&trained.fit.best_valid),
        test_metric: metric(&trained.fit.best_test),
        samples_seen: trained.trainer.samples_seen,
        seconds: started.elapsed().as_secs_f64(),
        settings_hash: cell.hash.clone(),
    })
}
