//! Readers for what the stages left in a pipeline directory: manifests, `metrics.parquet`, the score
//! files, coresets, the split and the graphs' scaffolds and labels, and the scaling sweep's results.
//! Every Parquet file is opened through `molpeg_core::parquet_io` against the column definitions of
//! `molpeg_core::schema`; string columns are cast to plain UTF-8 so other writers' string types pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use molpeg_core::manifest::{Manifest, MANIFEST_FILE};
use molpeg_core::parquet_io::ParquetSource;
use molpeg_core::schema::{self, meta};
use molpeg_core::versions;
use molpeg_core::{Error, Result};

/// The stage kinds a pipeline normally has; the report lists each one that has no directory as "not
/// run". Pretrain runs in its own pipeline and predict on new molecules, so neither is expected.
pub fn expected_stages() -> impl Iterator<Item = &'static str> {
    versions::STAGES.iter().map(|(name, _)| *name).filter(|name| !matches!(*name, "pretrain" | "predict"))
}

/// Position of a stage kind in the "what ran" table: the order of `versions::STAGES`, which lists
/// the stages in pipeline order (unknown kinds come last).
fn kind_order(kind: &str) -> usize {
    versions::STAGES.iter().position(|(name, _)| *name == kind).unwrap_or(versions::STAGES.len())
}

/// One directory of `runs/<pipeline>/`.
#[derive(Debug, Clone)]
pub struct StageDir {
    /// Directory name, e.g. `finetune-dynamic-molpeg-keep0.3`.
    pub name: String,
    pub path: PathBuf,
    /// The stage kind: the manifest's `stage`, else the name's prefix before the first `-`.
    pub kind: String,
    /// `None` when the stage did not finish (interrupted or running: the manifest is written last).
    pub manifest: Option<Manifest>,
    /// Modification time of `manifest.json`: when the stage finished.
    pub finished: Option<SystemTime>,
    /// Why the manifest could not be read, if it exists but is broken.
    pub problem: Option<String>,
    /// A stage run as `--shard I/N` (featurize, predict) has no `manifest.json` but one
    /// `manifest-part-IIIII-of-NNNNN.json` per finished shard.
    pub shards: Option<ShardManifests>,
}

/// The shard manifests of a sharded stage directory.
#[derive(Debug, Clone)]
pub struct ShardManifests {
    /// N of `--shard I/N`.
    pub count: usize,
    /// The finished shards' manifests with their modification times, by shard index.
    pub finished: BTreeMap<usize, (Manifest, SystemTime)>,
}

impl ShardManifests {
    pub fn complete(&self) -> bool {
        self.finished.len() == self.count
    }

    /// Reads `manifest-part-IIIII-of-NNNNN.json` of `dir` (one count N: the stages remove parts of
    /// another count before they write); `None` when there are none.
    fn read(dir: &Path) -> Option<ShardManifests> {
        let mut count = None;
        let mut finished = BTreeMap::new();
        for entry in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((index, n)) = name.strip_prefix("manifest-part-").and_then(|r| r.strip_suffix(".json")).and_then(|r| r.split_once("-of-")) else { continue };
            let (Ok(index), Ok(n)) = (index.parse::<usize>(), n.parse::<usize>()) else { continue };
            if count.is_some_and(|c| c != n) || index >= n {
                continue;
            }
            count = Some(n);
            let manifest = std::fs::read_to_string(entry.path()).ok().and_then(|t| serde_json::from_str::<Manifest>(&t).ok());
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            if let (Some(m), Some(t)) = (manifest, modified) {
                finished.insert(index, (m, t));
            }
        }
        Some(ShardManifests { count: count?, finished })
    }
}

impl StageDir {
    /// `params.settings` of a torch stage's manifest (finetune, score), or `params` itself.
    pub fn settings(&self) -> Option<&serde_json::Value> {
        let params = &self.manifest.as_ref()?.params;
        Some(params.get("settings").unwrap_or(params))
    }
}

/// Every stage directory of a pipeline directory, in pipeline order then by name. Directories with
/// neither a manifest nor a stage-like name (e.g. the report's own figures) are left out.
pub fn stage_dirs(pipeline_dir: &Path) -> Vec<StageDir> {
    let Ok(entries) = std::fs::read_dir(pipeline_dir) else { return Vec::new() };
    let mut dirs: Vec<StageDir> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let manifest_path = path.join(MANIFEST_FILE);
            let finished = std::fs::metadata(&manifest_path).and_then(|m| m.modified()).ok();
            let (manifest, problem) = match std::fs::read_to_string(&manifest_path) {
                Ok(text) => match serde_json::from_str::<Manifest>(&text) {
                    Ok(m) => (Some(m), None),
                    Err(err) => (None, Some(format!("{}: unreadable manifest: {err}", manifest_path.display()))),
                },
                Err(_) => (None, None),
            };
            let shards = if manifest.is_none() && problem.is_none() { ShardManifests::read(&path) } else { None };
            let prefix = name.split('-').next().unwrap_or(&name).to_string();
            let shard_stage = shards.as_ref().and_then(|s| s.finished.values().next()).map(|(m, _)| m.stage.clone());
            let kind = manifest.as_ref().map(|m| m.stage.clone()).or(shard_stage).unwrap_or(prefix);
            if manifest.is_none() && problem.is_none() && shards.is_none() && kind_order(&kind) == versions::STAGES.len() {
                return None;
            }
            Some(StageDir { name, path, kind, manifest, finished, problem, shards })
        })
        .collect();
    dirs.sort_by(|a, b| (kind_order(&a.kind), &a.name).cmp(&(kind_order(&b.kind), &b.name)));
    dirs
}

/// A column as plain UTF-8 (other writers use large or view strings for the same logical type).
fn utf8(path: &Path, col: &ArrayRef) -> Result<ArrayRef> {
    arrow::compute::cast(col, &DataType::Utf8).map_err(|e| Error::arrow(path, e))
}

fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::invalid(path, format!("column `{name}` missing from a batch")))
}

fn collect(path: &Path, expected: &arrow::datatypes::SchemaRef, columns: &[&str]) -> Result<(Vec<RecordBatch>, BTreeMap<String, String>)> {
    let source = ParquetSource::open(path, expected)?;
    let metadata = source.metadata.clone();
    Ok((source.collect_columns(columns)?, metadata))
}

pub use molpeg_core::schema::metrics::MetricRow;

/// `metrics.parquet`: the rows, in file order. Reads the current schema and the one with the nullable
/// `task` column (null = the average row, non-null = one task's row).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    use schema::metrics::*;
    // Files from before per-task rows (schema version 1) have no `task` column: check the rest only.
    let without_task: Vec<Field> = schema().fields().iter().filter(|f| f.name() != TASK).map(|f| f.as_ref().clone()).collect();
    let source = ParquetSource::open(path, &Arc::new(arrow::datatypes::Schema::new(without_task)))?;
    let has_task = source.schema().field_with_name(TASK).is_ok();
    let mut columns = vec![EPOCH, SPLIT, METRIC, VALUE, LOSS, SAMPLES_SEEN, SECONDS];
    if has_task {
        columns.push(TASK);
    }
    let mut rows = Vec::new();
    for batch in source.collect_columns(&columns)? {
        let epoch = column(path, &batch, EPOCH)?.as_primitive::<UInt32Type>().clone();
        let split = utf8(path, column(path, &batch, SPLIT)?)?;
        let metric = utf8(path, column(path, &batch, METRIC)?)?;
        let value = column(path, &batch, VALUE)?.as_primitive::<Float64Type>().clone();
        let loss = column(path, &batch, LOSS)?.as_primitive::<Float64Type>().clone();
        let seen = column(path, &batch, SAMPLES_SEEN)?.as_primitive::<UInt64Type>().clone();
        let seconds = column(path, &batch, SECONDS)?.as_primitive::<Float64Type>().clone();
        let task = if has_task { Some(utf8(path, column(path, &batch, TASK)?)?) } else { None };
        let (split, metric) = (split.as_string::<i32>(), metric.as_string::<i32>());
        let opt = |a: &arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            rows.push(MetricRow {
                epoch: epoch.value(i),
                split: split.value(i).to_string(),
                metric: metric.value(i).to_string(),
                value: opt(&value, i),
                loss: opt(&loss, i),
                samples_seen: seen.value(i),
                seconds: seconds.value(i),
                task: task.as_ref().map(|t| t.as_string::<i32>()).and_then(|t| (!t.is_null(i)).then(|| t.value(i).to_string())),
            });
        }
    }
    Ok(rows)
}

/// Score statistics of one epoch of a long-form `scores.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochScores {
    pub epoch: u32,
    /// Samples scored in the epoch (the kept set under dynamic pruning).
    pub samples: usize,
    pub mean: f64,
    pub q10: f64,
    pub median: f64,
    pub q90: f64,
    /// Jaccard overlap of this epoch's scored set with the previous epoch's.
    pub overlap_prev: Option<f64>,
    /// Distinct samples scored so far, cumulative.
    pub seen_so_far: usize,
}

fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * (pos - lo as f64)
}

/// Per-epoch statistics of `scores.parquet` (score stage, or a dynamic fine-tuning run).
pub fn read_score_epochs(path: &Path) -> Result<Vec<EpochScores>> {
    use schema::scores::*;
    let (batches, _) = collect(path, &schema(), &[MOL_ID, EPOCH, SCORE])?;
    let mut by_epoch: BTreeMap<u32, (Vec<f32>, HashSet<u32>)> = BTreeMap::new();
    for b in &batches {
        let (ids, epochs, scores) = (b.column(0).as_primitive::<UInt32Type>(), b.column(1).as_primitive::<UInt32Type>(), b.column(2).as_primitive::<Float32Type>());
        for i in 0..b.num_rows() {
            let e = by_epoch.entry(epochs.value(i)).or_default();
            e.0.push(scores.value(i));
            e.1.insert(ids.value(i));
        }
    }
    let mut out = Vec::new();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut prev: Option<HashSet<u32>> = None;
    for (epoch, (mut scores, ids)) in by_epoch {
        scores.retain(|s| s.is_finite());
        scores.sort_by(f32::total_cmp);
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len().max(1) as f64;
        let overlap_prev = prev.as_ref().map(|p| p.intersection(&ids).count() as f64 / p.union(&ids).count().max(1) as f64);
        seen.extend(ids.iter().copied());
        out.push(EpochScores { epoch, samples: ids.len(), mean, q10: quantile(&scores, 0.1), median: quantile(&scores, 0.5), q90: quantile(&scores, 0.9), overlap_prev, seen_so_far: seen.len() });
        prev = Some(ids);
    }
    Ok(out)
}

/// `score_last` of every sample in `sample_scores.parquet`.
pub fn read_sample_scores(path: &Path) -> Result<Vec<f32>> {
    use schema::sample_scores::*;
    let (batches, _) = collect(path, &schema(), &[SCORE_LAST])?;
    Ok(batches.iter().flat_map(|b| b.column(0).as_primitive::<Float32Type>().values().to_vec()).collect())
}

/// A coreset: its ids and the selection parameters recorded in its metadata.
#[derive(Debug, Clone)]
pub struct Coreset {
    pub ids: Vec<u32>,
    /// `molpeg.select_params` (rule, keep, seed, ...), when the file came from `molpeg-select`.
    pub params: Option<serde_json::Value>,
}

pub fn read_coreset(path: &Path) -> Result<Coreset> {
    use schema::coreset::*;
    let (batches, metadata) = collect(path, &schema(), &[MOL_ID])?;
    let ids = batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt32Type>().values().to_vec()).collect();
    let params = metadata.get("molpeg.select_params").and_then(|t| serde_json::from_str(t).ok());
    Ok(Coreset { ids, params })
}

/// `split.parquet`: mol_id → split name.
pub fn read_split(path: &Path) -> Result<HashMap<u32, String>> {
    use schema::split::*;
    let (batches, _) = collect(path, &schema(), &[MOL_ID, SPLIT])?;
    let mut out = HashMap::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<UInt32Type>();
        let names = utf8(path, b.column(1))?;
        let names = names.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i), names.value(i).to_string());
        }
    }
    Ok(out)
}

/// What composition needs of `graphs.parquet`: each molecule's scaffold and labels.
#[derive(Debug, Clone, Default)]
pub struct Molecules {
    pub task_names: Vec<String>,
    /// `binary` or `regression`.
    pub task_type: String,
    /// mol_id → (Bemis–Murcko scaffold, "" for acyclic; labels, NaN = missing).
    pub rows: HashMap<u32, (String, Vec<f32>)>,
}

pub fn read_molecules(path: &Path) -> Result<Molecules> {
    use schema::graphs::*;
    let (batches, metadata) = collect(path, &schema(), &[MOL_ID, SCAFFOLD, LABELS])?;
    let task_names = metadata.get(meta::TASK_NAMES).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let task_type = metadata.get(meta::TASK_TYPE).cloned().unwrap_or_else(|| "binary".into());
    let mut rows = HashMap::new();
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    for b in &batches {
        let ids = b.column(0).as_primitive::<UInt32Type>();
        let scaffolds = utf8(path, b.column(1))?;
        let scaffolds = scaffolds.as_string::<i32>();
        let labels = arrow::compute::cast(b.column(2), &list_type).map_err(|e| Error::arrow(path, e))?;
        let labels = labels.as_list::<i32>();
        for i in 0..b.num_rows() {
            let l = labels.value(i);
            let l = l.as_primitive::<Float32Type>();
            let values = (0..l.len()).map(|k| if l.is_null(k) { f32::NAN } else { l.value(k) }).collect();
            rows.insert(ids.value(i), (scaffolds.value(i).to_string(), values));
        }
    }
    Ok(Molecules { task_names, task_type, rows })
}

/// A coreset against its training split: class shares and scaffold coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct Composition {
    pub kept: usize,
    pub train: usize,
    /// Per task: share of positives among labelled samples (binary tasks; `None` without labels).
    pub train_positive: Vec<Option<f64>>,
    pub kept_positive: Vec<Option<f64>>,
    pub train_scaffolds: usize,
    pub kept_scaffolds: usize,
    /// Share of training molecules whose scaffold occurs in the coreset.
    pub molecules_covered: f64,
    /// Coreset ids that are not training molecules (a coreset from another split or dataset).
    pub outside_train: usize,
}

fn positive_shares<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, tasks: usize) -> Vec<Option<f64>> {
    let mut pos = vec![0usize; tasks];
    let mut labelled = vec![0usize; tasks];
    for labels in rows {
        for (t, &y) in labels.iter().enumerate().take(tasks) {
            if y.is_finite() {
                labelled[t] += 1;
                pos[t] += (y > 0.5) as usize;
            }
        }
    }
    pos.iter().zip(&labelled).map(|(&p, &n)| (n > 0).then(|| p as f64 / n as f64)).collect()
}

pub fn composition(molecules: &Molecules, split: &HashMap<u32, String>, coreset: &[u32]) -> Composition {
    let train: Vec<u32> = split.iter().filter(|(_, s)| s.as_str() == schema::split::TRAIN).map(|(&id, _)| id).collect();
    let train_set: HashSet<u32> = train.iter().copied().collect();
    let kept: Vec<u32> = coreset.iter().copied().filter(|id| train_set.contains(id)).collect();
    let tasks = molecules.task_names.len().max(molecules.rows.values().next().map_or(0, |r| r.1.len()));
    let binary = molecules.task_type == "binary";
    let shares = |ids: &[u32]| if binary { positive_shares(ids.iter().filter_map(|id| molecules.rows.get(id).map(|r| &r.1)), tasks) } else { vec![None; tasks] };
    let scaffolds = |ids: &[u32]| ids.iter().filter_map(|id| molecules.rows.get(id).map(|r| r.0.as_str())).collect::<HashSet<&str>>();
    let (train_scaffolds, kept_scaffolds) = (scaffolds(&train), scaffolds(&kept));
    let covered = train.iter().filter(|id| molecules.rows.get(id).is_some_and(|r| kept_scaffolds.contains(r.0.as_str()))).count();
    Composition {
        kept: kept.len(),
        train: train.len(),
        train_positive: shares(&train),
        kept_positive: shares(&kept),
        train_scaffolds: train_scaffolds.len(),
        kept_scaffolds: kept_scaffolds.len(),
        molecules_covered: covered as f64 / train.len().max(1) as f64,
        outside_train: coreset.len() - kept.len(),
    }
}

/// One finished cell of a scaling sweep's `results.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingCell {
    pub strategy: String,
    pub pretrained: String,
    pub fraction: f64,
    pub seed: u64,
    pub metric: String,
    pub test: Option<f64>,
}

pub fn read_scaling_results(path: &Path) -> Result<Vec<ScalingCell>> {
    use schema::scaling_results::*;
    let (batches, _) = collect(path, &schema(), &[STRATEGY, PRETRAINED, FRACTION, SEED, METRIC, TEST_METRIC])?;
    let mut out = Vec::new();
    for b in &batches {
        // By name: a projection keeps the file's column order, not the requested one.
        let text = |name: &str| column(path, b, name).and_then(|c| utf8(path, c));
        let (strategy, pretrained, metric) = (text(STRATEGY)?, text(PRETRAINED)?, text(METRIC)?);
        let (strategy, pretrained, metric) = (strategy.as_string::<i32>(), pretrained.as_string::<i32>(), metric.as_string::<i32>());
        let fraction = column(path, b, FRACTION)?.as_primitive::<Float64Type>();
        let seed = column(path, b, SEED)?.as_primitive::<UInt64Type>();
        let test = column(path, b, TEST_METRIC)?.as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push(ScalingCell {
                strategy: strategy.value(i).to_string(),
                pretrained: pretrained.value(i).to_string(),
                fraction: fraction.value(i),
                seed: seed.value(i),
                metric: metric.value(i).to_string(),
                test: (!test.is_null(i)).then(|| test.value(i)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, UInt32Array, UInt64Array};
    use arrow::datatypes::Schema;
    use molpeg_core::parquet_io::write_batches;

    /// The schema another branch adds (issue 15): the current columns plus a nullable `task`.
    fn metrics_file(dir: &Path, with_task: bool) -> PathBuf {
        use schema::metrics::*;
        let mut fields: Vec<Field> = schema().fields().iter().filter(|f| f.name() != TASK).map(|f| f.as_ref().clone()).collect();
        let n = 4;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(vec![1, 1, 1, 1])),
            Arc::new(StringArray::from(vec!["train", "test", "test", "test"])),
            Arc::new(StringArray::from(vec!["loss", "roc_auc", "roc_auc", "roc_auc"])),
            Arc::new(Float64Array::from(vec![Some(0.7), Some(0.6), Some(0.5), None])),
            Arc::new(Float64Array::from(vec![Some(0.7), Some(0.65), None, None])),
            Arc::new(UInt64Array::from(vec![10; n])),
            Arc::new(Float64Array::from(vec![1.5; n])),
        ];
        if with_task {
            fields.push(Field::new(TASK, DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec![None, None, Some("NR-AR"), Some("SR-MMP")])));
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let path = dir.join(if with_task { "with_task.parquet" } else { "plain.parquet" });
        write_batches(&path, schema, KIND, &BTreeMap::new(), &[batch]).unwrap();
        path
    }

    #[test]
    fn metrics_with_and_without_a_task_column() {
        let dir = tempfile::tempdir().unwrap();
        let plain = read_metrics(&metrics_file(dir.path(), false)).unwrap();
        assert_eq!(plain.len(), 4);
        assert!(plain.iter().all(|r| r.task.is_none()));
        assert_eq!(plain[1].value, Some(0.6));
        assert_eq!(plain[3].value, None);
        let tasks = read_metrics(&metrics_file(dir.path(), true)).unwrap();
        assert_eq!(tasks.iter().filter(|r| r.task.is_none()).count(), 2);
        assert_eq!(tasks[2].task.as_deref(), Some("NR-AR"));
        assert_eq!(tasks[2].value, Some(0.5));
    }

    #[test]
    fn composition_counts_class_shares_and_scaffolds() {
        let rows: HashMap<u32, (String, Vec<f32>)> = [
            (0, ("c1ccccc1", vec![1.0])),
            (1, ("c1ccccc1", vec![0.0])),
            (2, ("C1CC1", vec![0.0])),
            (3, ("", vec![f32::NAN])),
            (4, ("C1CC1", vec![1.0])),
        ]
        .into_iter()
        .map(|(id, (s, l))| (id, (s.to_string(), l)))
        .collect();
        let molecules = Molecules { task_names: vec!["y".into()], task_type: "binary".into(), rows };
        let split: HashMap<u32, String> = [(0, "train"), (1, "train"), (2, "train"), (3, "train"), (4, "test")].into_iter().map(|(i, s)| (i, s.to_string())).collect();
        let c = composition(&molecules, &split, &[0, 4]);
        assert_eq!((c.kept, c.train, c.outside_train), (1, 4, 1));
        assert_eq!(c.train_positive, vec![Some(1.0 / 3.0)]);
        assert_eq!(c.kept_positive, vec![Some(1.0)]);
        assert_eq!((c.train_scaffolds, c.kept_scaffolds), (3, 1));
        assert_eq!(c.molecules_covered, 0.5);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert!((quantile(&v, 0.1) - 0.4).abs() < 1e-9);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
