//! The featurize stage: a pipeline's dataset CSV → `runs/<pipeline>/featurize/graphs.parquet`
//! (one row per accepted molecule, [`molpeg_core::schema::graphs`]) and `rejects.parquet`
//! ([`molpeg_core::schema::rejects`]); with `fingerprints = true` also `fingerprints.parquet`
//! ([`molpeg_core::schema::fingerprints`]: the same molecules' Morgan bits, for `kmeans-fp`).
//!
//! The input is streamed in chunks of `chunk_rows`: a reader thread parses the CSV ahead, each chunk
//! is featurized in parallel on a rayon pool (order preserved), and a writer thread appends it to both
//! Parquet files. Memory stays bounded by a few chunks whatever the input size, and the output is
//! the same for any thread count. Input rows = accepted + rejected, checked before anything is kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, ListArray, PrimitiveArray, StringArray, UInt16Array, UInt32Array, UInt8Array};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float32Type, SchemaRef, UInt16Type, UInt8Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use indicatif::ProgressBar;
use molpeg_core::dataset;
use molpeg_core::manifest::{Outcome, StageRun};
use molpeg_core::parquet_io::ParquetSink;
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::{atoms3d, fingerprints, graphs, meta, rejects};
use molpeg_core::shard::Shard;
use molpeg_data::dataset::DatasetSpec;
use molpeg_data::fetch::{ensure_raw, FetchError, FetchOptions};
use molpeg_data::source::{LabeledRow, RowReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::OtherCounts;
use crate::fingerprint::MorganSpec;
use crate::geometry::GeometryMode;
use crate::graph::{rdkit_version, Featurizer, MolGraph, Reject, SizeLimits};
use crate::FEATURIZER_VERSION;

pub const STAGE: &str = "featurize";
pub const GRAPHS_FILE: &str = "graphs.parquet";
pub const REJECTS_FILE: &str = "rejects.parquet";
/// Parquet metadata key for [`FEATURIZER_VERSION`] (defined with the other keys in [`molpeg_core::schema::meta`]).
pub const FEATURIZER_VERSION_KEY: &str = molpeg_core::schema::meta::FEATURIZER_VERSION;

/// The `[featurize]` section of a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturizeConfig {
    /// Rows read, featurized in parallel and written together; bounds memory. Small chunks keep the
    /// reader, the workers and the writer busy at once (2048 beat 16384 by ~15% on HIV, 2 cores);
    /// Parquet row groups are sized separately.
    pub chunk_rows: usize,
    /// Worker threads; 0 = one per core (or `RAYON_NUM_THREADS`).
    pub threads: usize,
    /// Featurize only the first N rows of the source (quick runs).
    pub limit: Option<u64>,
    /// Also write `fingerprints.parquet` (Morgan bits of every accepted molecule, for the `kmeans-fp`
    /// rules). Off by default: it adds one RDKit call per molecule.
    pub fingerprints: bool,
    /// Morgan radius of `fingerprints.parquet`.
    pub fingerprint_radius: u32,
    /// Bits of each fingerprint (a multiple of 8).
    pub fingerprint_bits: u32,
    /// Size guards checked on the SMILES text before parsing ([`SizeLimits`]): a row over one is a
    /// reject with the reason, so one giant or hostile row cannot stall or crash a library run.
    /// Characters of a SMILES (default 10,000).
    pub max_characters: usize,
    /// Heavy-atom tokens of a SMILES (default 1,000).
    pub max_atoms: usize,
    /// Dot-separated fragments of a SMILES (default 64).
    pub max_fragments: usize,
    /// 3D atoms to write to `atoms3d.parquet` (for 3D models): `"auto"` (default: the dataset's
    /// geometry columns when `[dataset] geometry` names them, else none), `"none"`, `"dataset"`,
    /// `"etkdg"` (an RDKit ETKDGv3 conformer, hydrogens added) or `"etkdg+mmff"` (relaxed with
    /// MMFF94). A molecule whose geometry cannot be read, does not match its SMILES or cannot be
    /// embedded is a reject with the reason.
    pub geometry: GeometryMode,
    /// ETKDG's random seed, the same for every molecule (a molecule's conformer does not depend on
    /// its row, the threads or the shards).
    pub conformer_seed: u32,
    /// ETKDG embedding attempts per molecule before it is a reject (RDKit's `maxIterations`; its
    /// own default, 10 × atoms, which 0 selects, let one HIV metal porphyrin stall a run for minutes).
    pub conformer_attempts: u32,
}

impl Default for FeaturizeConfig {
    fn default() -> Self {
        let morgan = MorganSpec::default();
        let limits = SizeLimits::default();
        FeaturizeConfig {
            chunk_rows: 2048,
            threads: 0,
            limit: None,
            fingerprints: false,
            fingerprint_radius: morgan.radius,
            fingerprint_bits: morgan.bits,
            max_characters: limits.characters,
            max_atoms: limits.atoms,
            max_fragments: limits.fragments,
            geometry: GeometryMode::Auto,
            conformer_seed: 42,
            conformer_attempts: 10,
        }
    }
}

impl FeaturizeConfig {
    /// The fingerprint to write, if any.
    pub fn morgan(&self) -> Option<MorganSpec> {
        self.fingerprints.then_some(MorganSpec { radius: self.fingerprint_radius, bits: self.fingerprint_bits })
    }

    pub fn limits(&self) -> SizeLimits {
        SizeLimits { characters: self.max_characters, atoms: self.max_atoms, fragments: self.max_fragments }
    }

    /// The geometry this run writes for `spec`: `auto` resolved; `dataset` on a dataset without
    /// geometry columns is an error.
    pub fn geometry_for(&self, spec: &DatasetSpec) -> Result<GeometryMode, String> {
        match (self.geometry, &spec.geometry) {
            (GeometryMode::Auto, Some(_)) => Ok(GeometryMode::Dataset),
            (GeometryMode::Auto, None) => Ok(GeometryMode::None),
            (GeometryMode::Dataset, None) => {
                Err("[featurize] geometry = \"dataset\" but [dataset] names no geometry columns (geometry = { elements = \"...\", positions = \"...\" }); use \"etkdg\" for RDKit conformers".into())
            }
            (mode, _) => Ok(mode),
        }
    }
}

/// Stack of each featurize worker. RDKit recurses over the molecule graph (canonical ranking, ring
/// perception); rayon's default 2 MiB overflowed on a 3,000-atom ring and aborted the whole run. The
/// size guards keep rows far below that, and this leaves a wide margin; the memory is reserved, not
/// used, until a deep recursion touches it.
pub const WORKER_STACK_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FeaturizeError {
    #[error(transparent)]
    Core(#[from] molpeg_core::Error),
    /// Boxed: a fetch error is large and rare, and every `Result` here would carry its size.
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error("internal error in molpeg-featurize (a bug, please report it): {0}")]
    Internal(String),
}

impl From<FetchError> for FeaturizeError {
    fn from(e: FetchError) -> Self {
        FeaturizeError::Fetch(Box::new(e))
    }
}

/// What a featurize run did; printed by the binary and stored in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturizeSummary {
    pub input_rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejects per [`Reject::kind`].
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Atoms or bonds whose value went to a feature's "other"/"misc" slot, per `column.feature`.
    pub other_slots: BTreeMap<String, u64>,
    pub seconds: f64,
    pub molecules_per_second: f64,
    pub threads: usize,
    /// The shard this run featurized, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Where the 3D atoms came from (`dataset`, `etkdg`, `etkdg+mmff`), when written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<&'static str>,
    /// Accepted molecules per second of an RDKit-conformer run (embedding dominates its time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conformers_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atoms3d: Option<PathBuf>,
    pub rdkit_version: String,
    pub graphs: PathBuf,
    pub rejects: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<PathBuf>,
}

/// Runs the stage for `pipeline` (its `[dataset]` section says what to read), writing under
/// `<runs_root>/<pipeline>/featurize/`. Skipped when a previous run with the same inputs and
/// parameters left intact outputs, unless `force`.
///
/// With a `shard`, featurizes only its contiguous slice of the input rows
/// ([`molpeg_core::dataset::rows_of`] of the rows after `limit`) and writes its part of each table,
/// `graphs.parquet/part-IIIII-of-NNNNN.parquet` and so on, with its own manifest; the parts of all N
/// shards, read as one table, are row for row the output of a run without shards.
pub fn run(
    pipeline: &Pipeline,
    runs_root: &Path,
    config: &FeaturizeConfig,
    fetch: &FetchOptions,
    force: bool,
    shard: Option<Shard>,
) -> Result<Outcome<FeaturizeSummary>, FeaturizeError> {
    if config.chunk_rows == 0 {
        return Err(molpeg_core::Error::config(&pipeline.path, "[featurize] chunk_rows must be at least 1").into());
    }
    let morgan = config.morgan();
    if let Some(spec) = morgan {
        spec.validate().map_err(|m| molpeg_core::Error::config(&pipeline.path, format!("[featurize] {m}")))?;
    }
    let spec: DatasetSpec = pipeline.required_section("dataset")?;
    let geometry = config.geometry_for(&spec).map_err(|m| molpeg_core::Error::config(&pipeline.path, m))?;
    let raw = ensure_raw(&spec, fetch)?;
    let rdkit = rdkit_version();
    let dir = pipeline.stage_dir(runs_root, STAGE);
    // Everything that changes the output files; `threads` and `chunk_rows` do not. The fingerprint
    // key is present only when fingerprints are on, so runs without them keep their cache key.
    let mut params = serde_json::json!({
        "dataset": spec,
        "limit": config.limit,
        "featurizer_version": FEATURIZER_VERSION,
        "rdkit_version": rdkit,
        "limits": config.limits(),
    });
    if let Some(spec) = morgan {
        params["fingerprints"] = serde_json::json!({"kind": "morgan", "radius": spec.radius, "bits": spec.bits});
    }
    if let Some(shard) = shard {
        params["shard"] = serde_json::json!({"index": shard.index, "count": shard.count});
    }
    // Present only with 3D atoms, so runs without them keep their cache key.
    if geometry != GeometryMode::None {
        params["geometry"] = match geometry.embeds() {
            true => serde_json::json!({"mode": geometry.as_str(), "seed": config.conformer_seed, "attempts": config.conformer_attempts}),
            false => serde_json::json!({"mode": geometry.as_str()}),
        };
    }
    let stage = StageRun::new(STAGE, &dir, &params, &[&raw.path])?.with_manifest_name(dataset::manifest_name(shard));
    if !force && stage.cached().is_some() {
        return Ok(Outcome::UpToDate(dir));
    }
    let mut tables = vec![GRAPHS_FILE, REJECTS_FILE];
    tables.extend(morgan.map(|_| fingerprints::FILE));
    tables.extend((geometry != GeometryMode::None).then_some(atoms3d::FILE));
    dataset::prepare(&dir, &tables, shard)?;
    stage.begin()?;
    let started = Instant::now();
    // Fingerprints or 3D atoms from an earlier run with them on would outlive this run's manifest.
    if morgan.is_none() {
        remove_stale_table(&dir, fingerprints::FILE, shard)?;
    }
    if geometry == GeometryMode::None {
        remove_stale_table(&dir, atoms3d::FILE, shard)?;
    }

    let limit = config.limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let rows = match shard {
        None => 0..limit,
        Some(_) => dataset::rows_of(shard, count_rows(&raw.path, &spec, limit)?),
    };
    let reader = RowReader::open(&raw.path, &spec)?;
    let mut metadata = BTreeMap::from([
        (meta::RDKIT_VERSION.to_string(), rdkit.clone()),
        (meta::SOURCE_SHA256.to_string(), raw.sha256.clone()),
        (meta::SOURCE_PATH.to_string(), raw.path.display().to_string()),
        (meta::TASK_NAMES.to_string(), serde_json::to_string(reader.task_names()).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), spec.task_type.as_str().to_string()),
        (FEATURIZER_VERSION_KEY.to_string(), FEATURIZER_VERSION.to_string()),
    ]);
    if reader.task_units().iter().any(|u| !u.is_empty()) {
        metadata.insert(meta::TASK_UNITS.to_string(), serde_json::to_string(reader.task_units()).expect("strings serialize"));
    }
    let geometry_meta = (geometry != GeometryMode::None).then(|| {
        let source = match (&spec.geometry, geometry) {
            (Some(columns), GeometryMode::Dataset) => format!("dataset:{}", columns.positions),
            _ => geometry.as_str().to_string(),
        };
        (source, geometry.embeds().then_some(config.conformer_seed))
    });
    let sinks = Sinks::create(&dir, &metadata, morgan, geometry_meta, shard)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .thread_name(|i| format!("featurize-{i}"))
        .stack_size(WORKER_STACK_BYTES)
        .build()
        .map_err(|e| FeaturizeError::Internal(format!("cannot start the worker threads: {e}")))?;
    let bar = molpeg_core::progress::bar(0, "mol");
    bar.set_message(STAGE);

    let slice = reader.take(rows.end).skip(rows.start);
    let options = WorkerOptions { morgan, limits: config.limits(), geometry, seed: config.conformer_seed, attempts: config.conformer_attempts };
    let streamed = stream(slice, config.chunk_rows, options, &pool, sinks, &bar);
    bar.finish_and_clear();
    let (tally, sinks) = streamed?;

    if tally.accepted + tally.rejected() != tally.input_rows {
        return Err(FeaturizeError::Internal(format!(
            "{} input rows but {} accepted + {} rejected",
            tally.input_rows,
            tally.accepted,
            tally.rejected()
        )));
    }
    let (graphs_path, graph_rows) = sinks.graphs.finish()?;
    let (rejects_path, reject_rows) = sinks.rejects.finish()?;
    let fingerprints_path = match sinks.fingerprints {
        Some((sink, _, _)) => {
            let (path, rows) = sink.finish()?;
            if rows != graph_rows {
                return Err(FeaturizeError::Internal(format!("wrote {rows} fingerprints for {graph_rows} graphs")));
            }
            Some(path)
        }
        None => None,
    };
    let atoms3d_path = match sinks.atoms3d {
        Some((sink, _)) => {
            let (path, rows) = sink.finish()?;
            if rows != graph_rows {
                return Err(FeaturizeError::Internal(format!("wrote {rows} 3D molecules for {graph_rows} graphs")));
            }
            Some(path)
        }
        None => None,
    };
    if graph_rows as u64 != tally.accepted || reject_rows as u64 != tally.rejected() {
        return Err(FeaturizeError::Internal(format!(
            "wrote {graph_rows} graphs and {reject_rows} rejects for {} accepted and {} rejected rows",
            tally.accepted,
            tally.rejected()
        )));
    }

    let seconds = started.elapsed().as_secs_f64();
    let summary = FeaturizeSummary {
        input_rows: tally.input_rows,
        accepted: tally.accepted,
        rejected: tally.rejected(),
        other_slots: tally.other.nonzero().map(|(slot, n)| (slot.name().to_string(), n)).collect(),
        rejected_by_reason: tally.rejected_by_reason,
        seconds,
        molecules_per_second: tally.input_rows as f64 / seconds.max(1e-9),
        threads: pool.current_num_threads(),
        shard,
        geometry: (geometry != GeometryMode::None).then(|| geometry.as_str()),
        conformers_per_second: geometry.embeds().then(|| tally.accepted as f64 / seconds.max(1e-9)),
        atoms3d: atoms3d_path.clone(),
        rdkit_version: rdkit,
        graphs: graphs_path.clone(),
        rejects: rejects_path.clone(),
        fingerprints: fingerprints_path.clone(),
    };
    let mut outputs = vec![graphs_path.as_path(), rejects_path.as_path()];
    outputs.extend(fingerprints_path.as_deref());
    outputs.extend(atoms3d_path.as_deref());
    stage.finish(&outputs, &summary)?;
    Ok(Outcome::Ran(summary))
}

/// Input rows a sharded run slices: the data rows of the source, at most `limit`. A malformed row is
/// the error a run without shards would stop on.
fn count_rows(path: &Path, spec: &DatasetSpec, limit: usize) -> Result<usize, FeaturizeError> {
    let mut rows = 0;
    for row in RowReader::open(path, spec)?.take(limit) {
        row?;
        rows += 1;
    }
    Ok(rows)
}

/// Removes an optional table (fingerprints, 3D atoms) of an earlier run that wrote it: the whole
/// table, or this shard's part (and the part directory once no other shard's part is left in it).
fn remove_stale_table(dir: &Path, file: &str, shard: Option<Shard>) -> Result<(), molpeg_core::Error> {
    let whole = dir.join(file);
    let stale = dataset::table_path(dir, file, shard);
    if whole.is_dir() && shard.is_none() {
        std::fs::remove_dir_all(&whole).map_err(|e| molpeg_core::Error::io(&whole, e))?;
    } else if stale.is_file() {
        std::fs::remove_file(&stale).map_err(|e| molpeg_core::Error::io(&stale, e))?;
    }
    if shard.is_some() {
        let _ = std::fs::remove_dir(&whole); // fails while other parts remain, as it should
    }
    Ok(())
}

/// Every output, still under its temporary name until the run is known to be complete.
struct Sinks {
    graphs: ParquetSink,
    rejects: ParquetSink,
    graphs_path: PathBuf,
    rejects_path: PathBuf,
    /// `fingerprints.parquet`, its final path and the bytes per fingerprint, when fingerprints are on.
    fingerprints: Option<(ParquetSink, PathBuf, i32)>,
    /// `atoms3d.parquet` and its final path, when 3D atoms are on.
    atoms3d: Option<(ParquetSink, PathBuf)>,
}

impl Sinks {
    /// `geometry`: the 3D atoms' source and conformer seed, when they are written.
    fn create(
        dir: &Path,
        metadata: &BTreeMap<String, String>,
        morgan: Option<MorganSpec>,
        geometry: Option<(String, Option<u32>)>,
        shard: Option<Shard>,
    ) -> Result<Self, molpeg_core::Error> {
        let (graphs_path, rejects_path) = (dataset::table_path(dir, GRAPHS_FILE, shard), dataset::table_path(dir, REJECTS_FILE, shard));
        let fingerprints = match morgan {
            Some(spec) => {
                let path = dataset::table_path(dir, fingerprints::FILE, shard);
                let mut metadata = metadata.clone();
                metadata.insert(fingerprints::META_RADIUS.to_string(), spec.radius.to_string());
                metadata.insert(fingerprints::META_BITS.to_string(), spec.bits.to_string());
                let bytes = spec.bytes() as i32;
                Some((ParquetSink::create(&path, fingerprints::schema(bytes), fingerprints::KIND, &metadata)?, path, bytes))
            }
            None => None,
        };
        let atoms3d = match geometry {
            Some((source, seed)) => {
                let path = dataset::table_path(dir, atoms3d::FILE, shard);
                let mut metadata = metadata.clone();
                metadata.insert(atoms3d::META_GEOMETRY.to_string(), source);
                if let Some(seed) = seed {
                    metadata.insert(atoms3d::META_SEED.to_string(), seed.to_string());
                }
                Some((ParquetSink::create(&path, atoms3d::schema(), atoms3d::KIND, &metadata)?, path))
            }
            None => None,
        };
        Ok(Sinks {
            graphs: ParquetSink::create(&graphs_path, graphs::schema(), graphs::KIND, metadata)?,
            rejects: ParquetSink::create(&rejects_path, rejects::schema(), rejects::KIND, metadata)?,
            graphs_path,
            rejects_path,
            fingerprints,
            atoms3d,
        })
    }
}

/// What every worker's [`Featurizer`] is made with.
#[derive(Clone, Copy)]
struct WorkerOptions {
    morgan: Option<MorganSpec>,
    limits: SizeLimits,
    geometry: GeometryMode,
    seed: u32,
    attempts: u32,
}

impl WorkerOptions {
    fn featurizer(&self) -> Featurizer {
        Featurizer::with_fingerprint(self.morgan).with_limits(self.limits).with_geometry(self.geometry, self.seed, self.attempts)
    }
}

/// One input row and what became of it.
type Featurized = (LabeledRow, Result<MolGraph, Reject>);

#[derive(Default)]
struct Tally {
    input_rows: u64,
    accepted: u64,
    rejected_by_reason: BTreeMap<String, u64>,
    other: OtherCounts,
}

impl Tally {
    fn rejected(&self) -> u64 {
        self.rejected_by_reason.values().sum()
    }

    fn add(&mut self, chunk: &[Featurized]) {
        for (_, result) in chunk {
            match result {
                Ok(graph) => {
                    self.accepted += 1;
                    self.other.add(&graph.other);
                }
                Err(reject) => *self.rejected_by_reason.entry(reject.kind().to_string()).or_default() += 1,
            }
        }
    }
}

/// Reader thread → featurize on `pool` (this thread waits) → writer thread, chunk by chunk. Returns
/// the unfinished sinks only when every row went through, so a failed run leaves no output behind.
fn stream(
    rows: impl Iterator<Item = Result<LabeledRow, FetchError>> + Send,
    chunk_rows: usize,
    options: WorkerOptions,
    pool: &rayon::ThreadPool,
    sinks: Sinks,
    bar: &ProgressBar,
) -> Result<(Tally, Sinks), FeaturizeError> {
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel(1);
        let (done_tx, done_rx) = sync_channel(1);
        let reader = scope.spawn(move || read_chunks(rows, chunk_rows, chunk_tx, bar));
        let writer = scope.spawn(move || write_chunks(done_rx, sinks));

        let mut tally = Tally::default();
        let mut failure = None;
        for chunk in chunk_rx.iter() {
            let rows: Vec<LabeledRow> = match chunk {
                Ok(rows) => rows,
                Err(e) => {
                    failure = Some(FeaturizeError::from(e));
                    break;
                }
            };
            let featurized: Vec<Featurized> = pool.install(|| {
                rows.into_par_iter()
                    .map_init(|| options.featurizer(), |featurizer, row| {
                        let cells = row.geometry.as_ref().map(|(e, p)| (e.as_str(), p.as_str()));
                        let result = featurizer.featurize_row(&row.smiles, cells);
                        (row, result)
                    })
                    .collect()
            });
            tally.add(&featurized);
            bar.inc(featurized.len() as u64);
            if done_tx.send(featurized).is_err() {
                break; // The writer stopped on an error, which its join below returns.
            }
        }
        drop(done_tx);
        drop(chunk_rx); // Unblocks the reader if we stopped early.
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        tally.input_rows = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Some(e) = failure {
            return Err(e);
        }
        Ok((tally, written?))
    })
}

/// Sends the rows in chunks; a CSV error is sent in place of a chunk and ends reading. Returns the
/// number of rows read.
fn read_chunks(
    mut rows: impl Iterator<Item = Result<LabeledRow, FetchError>>,
    chunk_rows: usize,
    chunks: SyncSender<Result<Vec<LabeledRow>, FetchError>>,
    bar: &ProgressBar,
) -> u64 {
    let mut read = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(chunk_rows);
        for row in rows.by_ref().take(chunk_rows) {
            match row {
                Ok(row) => chunk.push(row),
                Err(e) => {
                    let _ = chunks.send(Err(e));
                    return read;
                }
            }
        }
        if chunk.is_empty() {
            return read;
        }
        read += chunk.len() as u64;
        bar.inc_length(chunk.len() as u64);
        if chunks.send(Ok(chunk)).is_err() {
            return read;
        }
    }
}

/// Appends every featurized chunk to the two files; hands the sinks back when the input ends.
fn write_chunks(chunks: Receiver<Vec<Featurized>>, mut sinks: Sinks) -> Result<Sinks, FeaturizeError> {
    for chunk in chunks {
        let (accepted, rejected): (Vec<_>, Vec<_>) = chunk.iter().partition(|(_, result)| result.is_ok());
        if !accepted.is_empty() {
            let molecules = accepted.iter().map(|(row, result)| (row, result.as_ref().expect("partitioned"))).collect::<Vec<_>>();
            let batch = graphs_batch(&molecules).map_err(|e| molpeg_core::Error::arrow(&sinks.graphs_path, e))?;
            sinks.graphs.write(&batch)?;
            if let Some((sink, path, bytes)) = sinks.fingerprints.as_mut() {
                let batch = fingerprints_batch(&molecules, *bytes).map_err(|e| molpeg_core::Error::arrow(path.as_path(), e))?;
                sink.write(&batch)?;
            }
            if let Some((sink, path)) = sinks.atoms3d.as_mut() {
                let batch = atoms3d_batch(&molecules).map_err(|e| molpeg_core::Error::arrow(path.as_path(), e))?;
                sink.write(&batch)?;
            }
        }
        if !rejected.is_empty() {
            let reasons = rejected.iter().map(|(row, result)| (row, result.as_ref().expect_err("partitioned"))).collect::<Vec<_>>();
            let batch = rejects_batch(&reasons).map_err(|e| molpeg_core::Error::arrow(&sinks.rejects_path, e))?;
            sinks.rejects.write(&batch)?;
        }
    }
    Ok(sinks)
}

/// One `graphs.parquet` batch, in input order.
fn graphs_batch(molecules: &[(&LabeledRow, &MolGraph)]) -> Result<RecordBatch, ArrowError> {
    let schema = graphs::schema();
    let column_type = |name: &str| schema.field_with_name(name).map(|f| f.data_type().clone());
    let graphs = || molecules.iter().map(|(_, g)| *g);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(molecules.iter().map(|(row, _)| row.row))),
        Arc::new(StringArray::from_iter_values(molecules.iter().map(|(row, _)| &row.smiles))),
        Arc::new(StringArray::from_iter_values(graphs().map(|g| &g.canonical_smiles))),
        Arc::new(StringArray::from_iter_values(graphs().map(|g| &g.scaffold))),
        // Counts fit: featurization rejects molecules over u16::MAX atoms or bonds.
        Arc::new(UInt16Array::from_iter_values(graphs().map(|g| g.num_atoms() as u16))),
        Arc::new(UInt16Array::from_iter_values(graphs().map(|g| g.num_bonds() as u16))),
        list_of_fixed::<UInt8Type, 2>(&column_type(graphs::ATOM_HU)?, graphs().map(|g| g.atom_hu.as_slice()))?,
        list_of_fixed::<UInt8Type, 9>(&column_type(graphs::ATOM_OGB)?, graphs().map(|g| g.atom_ogb.as_slice()))?,
        list_of_fixed::<UInt16Type, 2>(&column_type(graphs::EDGE_INDEX)?, graphs().map(|g| g.edge_index.as_slice()))?,
        list_of_fixed::<UInt8Type, 2>(&column_type(graphs::BOND_HU)?, graphs().map(|g| g.bond_hu.as_slice()))?,
        list_of_fixed::<UInt8Type, 3>(&column_type(graphs::BOND_OGB)?, graphs().map(|g| g.bond_ogb.as_slice()))?,
        labels_column(&column_type(graphs::LABELS)?, molecules.iter().map(|(row, _)| row.labels.as_slice()))?,
    ];
    RecordBatch::try_new(schema, columns)
}

/// One `fingerprints.parquet` batch, in input order (the rows of the matching `graphs.parquet` batch).
fn fingerprints_batch(molecules: &[(&LabeledRow, &MolGraph)], bytes: i32) -> Result<RecordBatch, ArrowError> {
    let mut packed = Vec::with_capacity(molecules.len() * bytes as usize);
    for (row, graph) in molecules {
        let fingerprint = graph.fingerprint.as_deref().ok_or_else(|| ArrowError::InvalidArgumentError(format!("row {} has no fingerprint", row.row)))?;
        if fingerprint.len() != bytes as usize {
            return Err(ArrowError::InvalidArgumentError(format!("row {}: {} fingerprint bytes, expected {bytes}", row.row, fingerprint.len())));
        }
        packed.extend_from_slice(fingerprint);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(molecules.iter().map(|(row, _)| row.row))),
        Arc::new(FixedSizeBinaryArray::try_new(bytes, Buffer::from_vec(packed), None)?),
    ];
    RecordBatch::try_new(fingerprints::schema(bytes), columns)
}

/// One `rejects.parquet` batch, in input order.
fn rejects_batch(rejected: &[(&LabeledRow, &Reject)]) -> Result<RecordBatch, ArrowError> {
    let schema: SchemaRef = rejects::schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rejected.iter().map(|(row, _)| row.row))),
        Arc::new(StringArray::from_iter_values(rejected.iter().map(|(row, _)| &row.smiles))),
        Arc::new(StringArray::from_iter_values(rejected.iter().map(|(_, reason)| reason.to_string()))),
    ];
    RecordBatch::try_new(schema, columns)
}

/// Splits `list<item>` into its item field.
fn list_item(list_type: &DataType) -> Result<&Arc<arrow::datatypes::Field>, ArrowError> {
    match list_type {
        DataType::List(item) => Ok(item),
        other => Err(ArrowError::SchemaError(format!("expected a list column, the schema says {other}"))),
    }
}

/// A `list<fixed_size_list<T, W>>` column with one list per molecule, typed exactly as the schema says.
fn list_of_fixed<'a, T, const W: usize>(
    list_type: &DataType,
    per_molecule: impl Iterator<Item = &'a [[T::Native; W]]>,
) -> Result<ArrayRef, ArrowError>
where
    T: ArrowPrimitiveType,
{
    let list_field = list_item(list_type)?;
    let DataType::FixedSizeList(value_field, width) = list_field.data_type() else {
        return Err(ArrowError::SchemaError(format!("expected list<fixed_size_list>, the schema says {list_type}")));
    };
    debug_assert_eq!(*width as usize, W);
    let mut lengths = Vec::new();
    let mut values = Vec::new();
    for rows in per_molecule {
        lengths.push(rows.len());
        values.extend(rows.iter().flatten().copied());
    }
    let values = PrimitiveArray::<T>::from_iter_values(values);
    let rows = FixedSizeListArray::try_new(value_field.clone(), *width, Arc::new(values), None)?;
    Ok(Arc::new(ListArray::try_new(list_field.clone(), OffsetBuffer::from_lengths(lengths), Arc::new(rows), None)?))
}

/// One `atoms3d.parquet` batch, in input order (the rows of the matching `graphs.parquet` batch).
fn atoms3d_batch(molecules: &[(&LabeledRow, &MolGraph)]) -> Result<RecordBatch, ArrowError> {
    let schema = atoms3d::schema();
    let mut geometries = Vec::with_capacity(molecules.len());
    for (row, graph) in molecules {
        geometries.push(graph.geometry.as_ref().ok_or_else(|| ArrowError::InvalidArgumentError(format!("row {} has no 3D atoms", row.row)))?);
    }
    let numbers_field = list_item(schema.field_with_name(atoms3d::ATOMIC_NUMBERS)?.data_type())?;
    let numbers = UInt8Array::from_iter_values(geometries.iter().flat_map(|g| g.atomic_numbers.iter().copied()));
    let offsets = OffsetBuffer::from_lengths(geometries.iter().map(|g| g.atomic_numbers.len()));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(molecules.iter().map(|(row, _)| row.row))),
        Arc::new(ListArray::try_new(numbers_field.clone(), offsets, Arc::new(numbers), None)?),
        list_of_fixed::<Float32Type, 3>(schema.field_with_name(atoms3d::POSITIONS)?.data_type(), geometries.iter().map(|g| g.positions.as_slice()))?,
    ];
    RecordBatch::try_new(schema, columns)
}

/// `labels: list<f32>`, a missing label being a null item.
fn labels_column<'a>(list_type: &DataType, per_molecule: impl Iterator<Item = &'a [Option<f32>]>) -> Result<ArrayRef, ArrowError> {
    let item_field = list_item(list_type)?;
    let mut lengths = Vec::new();
    let mut values = Vec::new();
    for labels in per_molecule {
        lengths.push(labels.len());
        values.extend_from_slice(labels);
    }
    let values = Float32Array::from(values);
    Ok(Arc::new(ListArray::try_new(item_field.clone(), OffsetBuffer::from_lengths(lengths), Arc::new(values), None)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn row(row: u32, smiles: &str, labels: Vec<Option<f32>>) -> LabeledRow {
        LabeledRow { row, smiles: smiles.to_string(), labels, geometry: None }
    }

    #[test]
    fn graph_batch_matches_the_schema_and_keeps_order() {
        let rows = [row(3, "CCO", vec![Some(1.0), None]), row(7, "c1ccccc1", vec![None, Some(0.0)])];
        let graphs: Vec<MolGraph> = rows.iter().map(|r| crate::featurize_smiles(&r.smiles).unwrap()).collect();
        let molecules: Vec<_> = rows.iter().zip(&graphs).collect();
        let batch = graphs_batch(&molecules).unwrap();
        assert_eq!(batch.schema(), graphs::schema());
        assert_eq!(batch.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values(), &[3, 7]);
        let edges = batch.column_by_name(graphs::EDGE_INDEX).unwrap().as_list::<i32>();
        assert_eq!(edges.value_length(0), 4);
        assert_eq!(edges.value_length(1), 12);
        let labels = batch.column_by_name(graphs::LABELS).unwrap().as_list::<i32>();
        let first = labels.value(0);
        assert_eq!((first.len(), first.null_count()), (2, 1));
    }

    #[test]
    fn fingerprint_batch_matches_the_schema_and_the_graph_rows() {
        let rows = [row(3, "CCO", vec![]), row(7, "OCC", vec![]), row(9, "c1ccccc1", vec![])];
        let mut featurizer = Featurizer::with_fingerprint(Some(MorganSpec::default()));
        let graphs: Vec<MolGraph> = rows.iter().map(|r| featurizer.featurize(&r.smiles).unwrap()).collect();
        let molecules: Vec<_> = rows.iter().zip(&graphs).collect();
        let batch = fingerprints_batch(&molecules, 256).unwrap();
        assert_eq!(batch.schema(), fingerprints::schema(256));
        assert_eq!(batch.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values(), &[3, 7, 9]);
        let bits = batch.column(1).as_fixed_size_binary();
        assert_eq!(bits.value(0), bits.value(1), "CCO and OCC are one molecule");
        assert_eq!(bits.value(2).iter().map(|b| b.count_ones()).sum::<u32>(), 3, "benzene");
        // A graph without a fingerprint is a bug, reported rather than written as zeros.
        let plain = crate::featurize_smiles("CCO").unwrap();
        assert!(fingerprints_batch(&[(&rows[0], &plain)], 256).is_err());
    }

    #[test]
    fn reject_batch_carries_row_smiles_and_reason() {
        let rows = [row(5, "xyz", vec![])];
        let reject = Reject::Unparsable("syntax error while parsing: xyz".into());
        let batch = rejects_batch(&[(&rows[0], &reject)]).unwrap();
        assert_eq!(batch.schema(), rejects::schema());
        assert_eq!(batch.column(2).as_string::<i32>().value(0), "RDKit could not parse SMILES: syntax error while parsing: xyz");
    }

    #[test]
    fn config_defaults_and_typos() {
        let pipeline = Pipeline::parse(Path::new("p.toml"), "[featurize]\nlimit = 10\n[split]\nchunk_row = 1\n").unwrap();
        let config: FeaturizeConfig = pipeline.section("featurize").unwrap();
        assert_eq!(config, FeaturizeConfig { limit: Some(10), ..FeaturizeConfig::default() });
        assert!(pipeline.section::<FeaturizeConfig>("split").is_err(), "`chunk_row` is a typo");
        assert_eq!(config.morgan(), None, "fingerprints are off by default");
        let pipeline = Pipeline::parse(Path::new("p.toml"), "[featurize]\nfingerprints = true\nfingerprint_bits = 1024\n").unwrap();
        let config: FeaturizeConfig = pipeline.section("featurize").unwrap();
        assert_eq!(config.morgan(), Some(MorganSpec { radius: 2, bits: 1024 }));
    }
}
