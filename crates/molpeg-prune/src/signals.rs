//! The proxy run's signal files, written by `molpeg-score --signals` and read by `molpeg-select` for the
//! baseline rules of [`crate::rules`]:
//!
//! - `outputs.parquet` (long form, every epoch): per training sample its loss, EL2N, GraNd and
//!   correctness, computed at scoring time with the rules' own functions ([`el2n_run`], [`grand_run`],
//!   [`correctness`]), so the per-epoch embeddings never need to be stored;
//! - `embeddings.parquet` (the last epoch): per training sample its labels, predicted probabilities
//!   and graph embedding.
//!
//! Main items: [`EpochSignals`] (one epoch's model outputs, the writer's input), [`OutputsWriter`],
//! [`write_embeddings`], [`EpochSelection`] (which epochs of `outputs.parquet` a rule averages) and
//! [`select_static`], which reads what a [`StaticRule`] needs, aligned to the caller's `mol_id`s, and
//! runs it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float32Array, ListArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, UInt32Type};
use arrow::record_batch::RecordBatch;
use molpeg_core::parquet_io::{write_batches, ParquetSink, ParquetSource};
use molpeg_core::schema::{self, embeddings, meta, outputs};
use molpeg_core::Error;
use serde::{Deserialize, Serialize};

use crate::keep::KeepFraction;
use crate::rules::{correctness, el2n_run, grand_run, mean_over_runs, rank_by_score, Matrix, Pick, RuleInputs, RunOutputs, StaticRule};

pub const OUTPUTS_FILE: &str = "outputs.parquet";
pub const EMBEDDINGS_FILE: &str = "embeddings.parquet";
/// What writes the signal files, for error messages.
pub const PRODUCED_BY: &str = "`molpeg-score --signals` (or `signals = true` in the pipeline's [score] section)";
/// `molpeg.task_type` value of binary tasks (the only kind the label-based rules accept).
pub const BINARY: &str = "binary";

/// One epoch's eval-mode outputs of the proxy model on N training samples; row i of every array
/// belongs to `mol_ids[i]`.
#[derive(Debug, Clone, Copy)]
pub struct EpochSignals<'a> {
    pub mol_ids: &'a [u32],
    pub tasks: usize,
    /// N×T labels, NaN where missing.
    pub labels: &'a [f32],
    /// N per-sample losses (mean over the valid tasks; any value where there is none).
    pub losses: &'a [f32],
    /// N×T σ(logit) for binary tasks; `None` for regression.
    pub probs: Option<&'a [f32]>,
    /// N×D graph representations (the linear head's input).
    pub embeddings: &'a [f32],
}

fn rule_bug(path: &Path, e: crate::rules::RuleError) -> Error {
    Error::invalid(path, format!("internal error (a bug): {e}"))
}

impl EpochSignals<'_> {
    fn mask(&self) -> Vec<bool> {
        self.labels.iter().map(|y| !y.is_nan()).collect()
    }

    fn dim(&self) -> usize {
        self.embeddings.len() / self.mol_ids.len().max(1)
    }

    /// The `outputs.parquet` rows of this epoch.
    fn outputs_batch(&self, path: &Path, epoch: u32) -> Result<RecordBatch, Error> {
        let n = self.mol_ids.len();
        let mask = self.mask();
        let labelled: Vec<bool> = mask.chunks(self.tasks).map(|m| m.contains(&true)).collect();
        let as_column = |v: Option<Vec<f64>>| -> ArrayRef {
            Arc::new(match v {
                Some(v) => Float32Array::from_iter(v.iter().map(|x| (!x.is_nan()).then_some(*x as f32))),
                None => Float32Array::new_null(n),
            })
        };
        let (el2n, grand, correct) = match self.probs {
            Some(probs) => {
                let bug = |e| rule_bug(path, e);
                let (p, y) = (Matrix::new(probs, self.tasks).map_err(bug)?, Matrix::new(self.labels, self.tasks).map_err(bug)?);
                let (m, h) = (Matrix::new(&mask, self.tasks).map_err(bug)?, Matrix::new(self.embeddings, self.dim()).map_err(bug)?);
                (Some(el2n_run(p, y, m).map_err(bug)?), Some(grand_run(p, h, y, m).map_err(bug)?), Some(correctness(p, y, m).map_err(bug)?))
            }
            None => (None, None, None),
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(self.mol_ids.to_vec())),
            Arc::new(UInt32Array::from(vec![epoch; n])),
            Arc::new(Float32Array::from_iter(self.losses.iter().zip(&labelled).map(|(&l, &any)| any.then_some(l)))),
            as_column(el2n),
            as_column(grand),
            Arc::new(match correct {
                Some(c) => BooleanArray::from(c),
                None => BooleanArray::new_null(n),
            }),
        ];
        RecordBatch::try_new(outputs::schema(), columns).map_err(|e| Error::arrow(path, e))
    }
}

/// File metadata shared by both signal files.
fn task_meta(task_names: &[String], task_type: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), task_type.to_string()),
    ])
}

/// Streams `outputs.parquet`, one epoch at a time; nothing appears under the final name before
/// [`OutputsWriter::finish`].
pub struct OutputsWriter {
    sink: ParquetSink,
    path: PathBuf,
}

impl OutputsWriter {
    pub fn create(path: &Path, task_names: &[String], task_type: &str) -> Result<Self, Error> {
        Ok(OutputsWriter { sink: ParquetSink::create(path, outputs::schema(), outputs::KIND, &task_meta(task_names, task_type))?, path: path.to_path_buf() })
    }

    /// Appends the rows of `epoch` (1-based).
    pub fn write_epoch(&mut self, epoch: u32, signals: &EpochSignals) -> Result<(), Error> {
        self.sink.write(&signals.outputs_batch(&self.path, epoch)?)
    }

    pub fn finish(self) -> Result<PathBuf, Error> {
        Ok(self.sink.finish()?.0)
    }
}

fn float_list<'a>(rows: impl Iterator<Item = Option<&'a [f32]>>) -> ListArray {
    ListArray::from_iter_primitive::<Float32Type, _, _>(rows.map(|row| row.map(|r| r.iter().map(|&v| (!v.is_nan()).then_some(v)).collect::<Vec<_>>())))
}

/// Writes `embeddings.parquet` from the last epoch's signals.
pub fn write_embeddings(path: &Path, epoch: u32, signals: &EpochSignals, task_names: &[String], task_type: &str) -> Result<PathBuf, Error> {
    let (t, d) = (signals.tasks, signals.dim());
    let n = signals.mol_ids.len();
    let labels = float_list(signals.labels.chunks(t).map(Some));
    let probs = match signals.probs {
        Some(p) => float_list(p.chunks(t).map(Some)),
        None => float_list((0..n).map(|_| None)),
    };
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let embedding = FixedSizeListArray::try_new(item, d as i32, Arc::new(Float32Array::from(signals.embeddings.to_vec())), None).map_err(|e| Error::arrow(path, e))?;
    let schema = embeddings::schema(d as i32);
    let columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(signals.mol_ids.to_vec())), Arc::new(labels), Arc::new(probs), Arc::new(embedding)];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::arrow(path, e))?;
    let mut extra = task_meta(task_names, task_type);
    extra.insert(embeddings::META_EPOCH.to_string(), epoch.to_string());
    write_batches(path, schema, embeddings::KIND, &extra, &[batch])
}

/// Which epochs of `outputs.parquet` a rule reads (`all`, `last`, or a list of epochs and ranges such
/// as `1-5` or `1,3,5`): GraNd and EL2N average over them, forgetting counts events across them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EpochSelection {
    #[default]
    All,
    Last,
    /// Ascending, without duplicates.
    List(Vec<u32>),
}

impl FromStr for EpochSelection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => return Ok(EpochSelection::All),
            "last" => return Ok(EpochSelection::Last),
            _ => {}
        }
        let bad = || format!("epochs `{s}`: expected all, last, or epochs and ranges like 1-5 or 1,3,5");
        let mut epochs = Vec::new();
        for part in s.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (u32, u32) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a == 0 || b < a {
                return Err(bad());
            }
            epochs.extend(a..=b);
        }
        epochs.sort_unstable();
        epochs.dedup();
        Ok(EpochSelection::List(epochs))
    }
}

impl fmt::Display for EpochSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpochSelection::All => write!(f, "all"),
            EpochSelection::Last => write!(f, "last"),
            EpochSelection::List(e) => write!(f, "{}", e.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl Serialize for EpochSelection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EpochSelection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl EpochSelection {
    /// The selected epochs among those `available` (ascending); an epoch that is not there is an error.
    fn resolve(&self, available: &[u32]) -> Result<Vec<u32>, String> {
        match self {
            EpochSelection::All => Ok(available.to_vec()),
            EpochSelection::Last => Ok(available.last().into_iter().copied().collect()),
            EpochSelection::List(wanted) => match wanted.iter().find(|e| !available.contains(e)) {
                Some(e) => Err(format!("has no epoch {e}; its epochs are {}", EpochSelection::List(available.to_vec()))),
                None => Ok(wanted.clone()),
            },
        }
    }
}

/// Which signal files a rule reads (none for the fingerprint rules, see [`crate::fingerprints`]).
pub fn files_for(rule: &StaticRule) -> &'static [&'static str] {
    match rule {
        _ if rule.reads_fingerprints() => &[],
        StaticRule::Forgetting | StaticRule::Grand | StaticRule::El2n => &[EMBEDDINGS_FILE, OUTPUTS_FILE],
        _ => &[EMBEDDINGS_FILE],
    }
}

/// Whether a rule reads labels or probabilities of binary tasks.
fn needs_binary(rule: &StaticRule) -> bool {
    !matches!(rule, StaticRule::Herding | StaticRule::KCenter | StaticRule::KMeans(_))
}

/// What `embeddings.parquet` holds for the requested samples, in the requested order.
struct SampleSignals {
    task_type: String,
    tasks: usize,
    labels: Vec<f32>,
    probs: Option<Vec<f32>>,
    embeddings: Option<(Vec<f32>, usize)>,
}

/// Position of every requested `mol_id`.
fn positions(mol_ids: &[u32]) -> HashMap<u32, usize> {
    mol_ids.iter().enumerate().map(|(i, &m)| (m, i)).collect()
}

fn missing_error(path: &Path, mol_ids: &[u32], seen: &[bool], what: &str) -> Result<(), Error> {
    let missing: Vec<u32> = mol_ids.iter().zip(seen).filter(|(_, &s)| !s).map(|(&m, _)| m).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        path,
        format!(
            "{} training molecules have no row{what} (first mol_ids: {:?}); the file comes from another split: rerun {PRODUCED_BY} with --force",
            missing.len(),
            &missing[..missing.len().min(5)]
        ),
    ))
}

/// Copies a list row into `dst` (null items as NaN); its length must be `dst.len()`.
fn copy_list_row(path: &Path, list: &ListArray, row: usize, dst: &mut [f32], what: &str, mol_id: u32) -> Result<(), Error> {
    let values = list.value(row);
    let values = values.as_primitive::<Float32Type>();
    if values.len() != dst.len() {
        return Err(Error::invalid(path, format!("mol_id {mol_id}: `{what}` has {} values, expected {} (one per task)", values.len(), dst.len())));
    }
    for (k, d) in dst.iter_mut().enumerate() {
        *d = if values.is_null(k) { f32::NAN } else { values.value(k) };
    }
    Ok(())
}

fn read_embeddings(path: &Path, mol_ids: &[u32], with_probs: bool, with_embedding: bool) -> Result<SampleSignals, Error> {
    let source = ParquetSource::open(path, &embeddings::base_schema())?;
    let task_type = source.meta(meta::TASK_TYPE).unwrap_or(BINARY).to_string();
    let task_names: Vec<String> = source
        .meta(meta::TASK_NAMES)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| Error::invalid(path, format!("no readable `{}` metadata; rerun {PRODUCED_BY} with --force", meta::TASK_NAMES)))?;
    let tasks = task_names.len();
    // Regression files hold no probabilities; the caller reports the task type instead.
    let with_probs = with_probs && task_type == BINARY;
    let dim = match with_embedding {
        true => {
            let found = source.schema();
            let d = embeddings::dim(&found)
                .ok_or_else(|| Error::invalid(path, format!("column `{}` is missing or not a fixed-size list of float32", embeddings::EMBEDDING)))?;
            schema::check(path, &embeddings::schema(d), &found)?;
            d as usize
        }
        false => 0,
    };
    let mut columns = vec![embeddings::MOL_ID, embeddings::LABELS];
    if with_probs {
        columns.push(embeddings::PROBS);
    }
    if with_embedding {
        columns.push(embeddings::EMBEDDING);
    }
    let at = positions(mol_ids);
    let n = mol_ids.len();
    let mut labels = vec![f32::NAN; n * tasks];
    let mut probs = with_probs.then(|| vec![f32::NAN; n * tasks]);
    let mut emb = vec![0f32; n * dim];
    let mut seen = vec![false; n];
    for batch in source.read_columns(&columns)? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let label_lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let mol_id = ids.value(row);
            let Some(&i) = at.get(&mol_id) else { continue };
            if std::mem::replace(&mut seen[i], true) {
                return Err(Error::invalid(path, format!("mol_id {mol_id} appears twice")));
            }
            copy_list_row(path, label_lists, row, &mut labels[i * tasks..(i + 1) * tasks], embeddings::LABELS, mol_id)?;
            if let Some(probs) = probs.as_mut() {
                let list = batch.column(2).as_list::<i32>();
                if list.is_null(row) {
                    return Err(Error::invalid(path, format!("mol_id {mol_id} has no `{}` (regression tasks have none)", embeddings::PROBS)));
                }
                copy_list_row(path, list, row, &mut probs[i * tasks..(i + 1) * tasks], embeddings::PROBS, mol_id)?;
            }
            if with_embedding {
                let list = batch.column(columns.len() - 1).as_fixed_size_list();
                let values = list.value(row);
                emb[i * dim..(i + 1) * dim].copy_from_slice(values.as_primitive::<Float32Type>().values());
            }
        }
    }
    missing_error(path, mol_ids, &seen, "")?;
    Ok(SampleSignals { task_type, tasks, labels, probs, embeddings: with_embedding.then_some((emb, dim)) })
}

/// One numeric column of `outputs.parquet` for the requested samples: one vector per selected epoch
/// (null as NaN), epochs ascending.
fn read_outputs(path: &Path, mol_ids: &[u32], column: &str, epochs: &EpochSelection) -> Result<Vec<Vec<f64>>, Error> {
    let source = ParquetSource::open(path, &outputs::schema())?;
    let at = positions(mol_ids);
    let n = mol_ids.len();
    // Per epoch: the values and which samples were seen.
    let mut by_epoch: BTreeMap<u32, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for batch in source.read_columns(&[outputs::MOL_ID, outputs::EPOCH, column])? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let epoch_col = batch.column(1).as_primitive::<UInt32Type>();
        let values = cast(batch.column(2), &DataType::Float64).map_err(|e| Error::arrow(path, e))?;
        let values = values.as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let Some(&i) = at.get(&ids.value(row)) else { continue };
            let (vals, seen) = by_epoch.entry(epoch_col.value(row)).or_insert_with(|| (vec![f64::NAN; n], vec![false; n]));
            if std::mem::replace(&mut seen[i], true) {
                return Err(Error::invalid(path, format!("mol_id {} appears twice in epoch {}", ids.value(row), epoch_col.value(row))));
            }
            vals[i] = if values.is_null(row) { f64::NAN } else { values.value(row) };
        }
    }
    let available: Vec<u32> = by_epoch.keys().copied().collect();
    if available.is_empty() {
        return Err(Error::invalid(path, format!("holds no rows for the training split; rerun {PRODUCED_BY} with --force")));
    }
    let chosen = epochs.resolve(&available).map_err(|m| Error::invalid(path, m))?;
    let mut result = Vec::with_capacity(chosen.len());
    for epoch in chosen {
        let (vals, seen) = by_epoch.remove(&epoch).expect("resolved epochs exist");
        missing_error(path, mol_ids, &seen, &format!(" in epoch {epoch}"))?;
        result.push(vals);
    }
    Ok(result)
}

/// Runs `rule` on the signal files in `dir`, with the rows of every input in `mol_ids` order (so ties
/// between rows break by that order). `epochs` selects the epochs of `outputs.parquet` that GraNd and
/// EL2N average and forgetting counts over; the other rules read the last epoch (`embeddings.parquet`).
pub fn select_static(rule: &StaticRule, dir: &Path, mol_ids: &[u32], keep: KeepFraction, seed: u64, epochs: &EpochSelection) -> Result<Vec<Pick>, Error> {
    let emb_path = dir.join(EMBEDDINGS_FILE);
    let out_path = dir.join(OUTPUTS_FILE);
    let with_embedding = matches!(rule, StaticRule::Herding | StaticRule::KCenter | StaticRule::KMeans(_) | StaticRule::Moderate { .. });
    let with_probs = matches!(rule, StaticRule::Uncertainty(_));
    let samples = read_embeddings(&emb_path, mol_ids, with_probs, with_embedding)?;
    if needs_binary(rule) && samples.task_type != BINARY {
        return Err(Error::invalid(
            &emb_path,
            format!("rule `{rule}` needs binary labels, but these are {} tasks; herding, kmeans, kcenter, random, molpeg and column:NAME apply to them", samples.task_type),
        ));
    }
    let bad = |e: crate::rules::RuleError| Error::invalid(&emb_path, e.to_string());
    let t = samples.tasks;
    let mask: Vec<bool> = samples.labels.iter().map(|y| !y.is_nan()).collect();
    let runs: Vec<RunOutputs> = match &samples.probs {
        Some(p) => vec![RunOutputs { probs: Matrix::new(p, t).map_err(bad)?, embeddings: None }],
        None => Vec::new(),
    };
    let mut inputs = RuleInputs { labels: Some(Matrix::new(&samples.labels, t).map_err(bad)?), mask: Some(Matrix::new(&mask, t).map_err(bad)?), runs: &runs, ..RuleInputs::default() };
    if let Some((e, d)) = &samples.embeddings {
        inputs.embeddings = Some(Matrix::new(e, *d).map_err(bad)?);
    }
    match rule {
        StaticRule::Grand | StaticRule::El2n => {
            let column = if *rule == StaticRule::Grand { outputs::GRAND } else { outputs::EL2N };
            let per_epoch = read_outputs(&out_path, mol_ids, column, epochs)?;
            let order = rule.order().expect("score-based rule");
            Ok(rank_by_score(&mean_over_runs(&per_epoch), order, keep.count(mol_ids.len())))
        }
        StaticRule::Forgetting => {
            let per_epoch = read_outputs(&out_path, mol_ids, outputs::CORRECT, epochs)?;
            let correct: Vec<bool> = (0..mol_ids.len()).flat_map(|i| per_epoch.iter().map(move |e| e[i] > 0.5)).collect();
            let inputs = RuleInputs { correctness: Some(Matrix::new(&correct, per_epoch.len()).map_err(bad)?), ..inputs };
            rule.select(&inputs, keep, seed).map_err(bad)
        }
        _ => rule.select(&inputs, keep, seed).map_err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::{self, SelectConfig};
    use molpeg_core::manifest::Outcome;

    fn keep(r: f64) -> KeepFraction {
        KeepFraction::new(r).unwrap()
    }

    fn names(t: usize) -> Vec<String> {
        (0..t).map(|k| format!("task{k}")).collect()
    }

    /// Writes the last epoch's `embeddings.parquet` for one-task samples.
    fn embeddings_file(dir: &Path, ids: &[u32], labels: &[f32], probs: Option<&[f32]>, emb: &[f32], task_type: &str) {
        let losses = vec![0.0; ids.len()];
        let s = EpochSignals { mol_ids: ids, tasks: labels.len() / ids.len(), labels, losses: &losses, probs, embeddings: emb };
        write_embeddings(&dir.join(EMBEDDINGS_FILE), 1, &s, &names(s.tasks), task_type).unwrap();
    }

    /// Writes `outputs.parquet` with one epoch per entry of `probs` (one task, embeddings all zero).
    fn outputs_file(dir: &Path, ids: &[u32], labels: &[f32], probs: &[&[f32]]) {
        let mut w = OutputsWriter::create(&dir.join(OUTPUTS_FILE), &names(1), BINARY).unwrap();
        let (losses, emb) = (vec![0.5; ids.len()], vec![0.0; ids.len()]);
        for (e, p) in probs.iter().enumerate() {
            let s = EpochSignals { mol_ids: ids, tasks: 1, labels, losses: &losses, probs: Some(p), embeddings: &emb };
            w.write_epoch(e as u32 + 1, &s).unwrap();
        }
        w.finish().unwrap();
    }

    fn ids_of(picks: &[Pick], ids: &[u32]) -> Vec<u32> {
        picks.iter().map(|p| ids[p.index]).collect()
    }

    #[test]
    fn geometry_rules_read_embeddings_aligned_by_mol_id() {
        let dir = tempfile::tempdir().unwrap();
        // The k-center line of the rules' tests, written in a shuffled row order.
        let points = [(105, 10.0), (100, -10.0), (103, 0.1), (101, -0.2), (107, -0.1), (102, 0.0), (106, 0.05), (104, 0.3)];
        let ids: Vec<u32> = points.iter().map(|p| p.0).collect();
        let emb: Vec<f32> = points.iter().map(|p| p.1).collect();
        embeddings_file(dir.path(), &ids, &[1.0; 8], Some(&[0.5; 8]), &emb, BINARY);
        let sorted: Vec<u32> = (100..108).collect();
        let all = EpochSelection::All;
        let kcenter = select_static(&StaticRule::KCenter, dir.path(), &sorted, keep(3.0 / 8.0), 0, &all).unwrap();
        assert_eq!(ids_of(&kcenter, &sorted), vec![102, 100, 105], "nearest the mean, then both extremes");
        let herding = select_static(&StaticRule::Herding, dir.path(), &sorted, keep(0.5), 0, &all).unwrap();
        assert_eq!(herding.len(), 4);
        assert_eq!(herding[0].index, 2, "herding starts at the point nearest the mean (0.01875)");
        // Only the requested samples are read: a subset is a smaller problem, not an error.
        let subset = select_static(&StaticRule::KCenter, dir.path(), &[100, 101, 105], keep(1.0), 0, &all).unwrap();
        assert_eq!(subset.len(), 3);
        // A training molecule without a row is an error that says what to rerun.
        let err = select_static(&StaticRule::KCenter, dir.path(), &[100, 999], keep(1.0), 0, &all).unwrap_err().to_string();
        assert!(err.contains("embeddings.parquet") && err.contains("[999]") && err.contains("--signals"), "{err}");
    }

    #[test]
    fn forgetting_counts_scripted_events_over_the_chosen_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [0, 1, 2, 3];
        let labels = [1.0, 1.0, 0.0, 1.0];
        // Correct / wrong per epoch: s0 T F T F, s1 F T F T, s2 always right, s3 never.
        let epochs: [&[f32]; 4] = [&[0.9, 0.2, 0.1, 0.2], &[0.1, 0.8, 0.2, 0.3], &[0.9, 0.3, 0.3, 0.1], &[0.2, 0.9, 0.4, 0.4]];
        outputs_file(dir.path(), &ids, &labels, &epochs);
        embeddings_file(dir.path(), &ids, &labels, Some(epochs[3]), &[0.0; 4], BINARY);
        let rule = StaticRule::Forgetting;
        let all = select_static(&rule, dir.path(), &ids, keep(1.0), 0, &EpochSelection::All).unwrap();
        assert_eq!(ids_of(&all, &ids), vec![3, 0, 1, 2]);
        assert_eq!(all.iter().map(|p| p.score).collect::<Vec<_>>(), vec![f64::INFINITY, 2.0, 1.0, 0.0]);
        // Epochs 1-2 only: s0 forgets once, s1 is learned and kept; ties by row.
        let early = select_static(&rule, dir.path(), &ids, keep(1.0), 0, &"1-2".parse().unwrap()).unwrap();
        assert_eq!(early.iter().map(|p| p.score).collect::<Vec<_>>(), vec![f64::INFINITY, 1.0, 0.0, 0.0]);
        let err = select_static(&rule, dir.path(), &ids, keep(1.0), 0, &"7".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("no epoch 7") && err.contains("1,2,3,4"), "{err}");
    }

    #[test]
    fn el2n_and_grand_average_the_chosen_epochs_and_rank_unlabelled_last() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [10, 11, 12];
        let labels = [1.0, 1.0, f32::NAN]; // sample 12 has no label
        outputs_file(dir.path(), &ids, &labels, &[&[0.5, 0.8, 0.5], &[0.9, 0.7, 0.5]]);
        embeddings_file(dir.path(), &ids, &labels, Some(&[0.9, 0.7, 0.5]), &[0.0; 3], BINARY);
        // EL2N per epoch: s10 0.5, 0.1 (mean 0.3); s11 0.2, 0.3 (mean 0.25). Embeddings are zero, so GraNd = EL2N.
        for rule in [StaticRule::El2n, StaticRule::Grand] {
            let all = select_static(&rule, dir.path(), &ids, keep(1.0), 0, &EpochSelection::All).unwrap();
            assert_eq!(ids_of(&all, &ids), vec![10, 11, 12], "{rule}");
            assert!((all[0].score - 0.3).abs() < 1e-6 && (all[1].score - 0.25).abs() < 1e-6 && all[2].score.is_nan(), "{all:?}");
            let last = select_static(&rule, dir.path(), &ids, keep(2.0 / 3.0), 0, &EpochSelection::Last).unwrap();
            assert_eq!(ids_of(&last, &ids), vec![11, 10], "{rule}");
        }
        // Uncertainty reads the last epoch's probabilities: 0.5 is the most uncertain but has no label.
        let entropy = select_static(&"entropy".parse().unwrap(), dir.path(), &ids, keep(1.0), 0, &EpochSelection::All).unwrap();
        assert_eq!(ids_of(&entropy, &ids), vec![11, 10, 12]);
    }

    #[test]
    fn regression_files_serve_geometry_rules_only() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [1, 2, 3, 4];
        embeddings_file(dir.path(), &ids, &[0.3, 1.2, -2.0, 5.0], None, &[0.0, 1.0, 2.0, 3.0], "regression");
        let all = EpochSelection::All;
        assert_eq!(select_static(&StaticRule::KCenter, dir.path(), &ids, keep(0.5), 0, &all).unwrap().len(), 2);
        for name in ["entropy", "moderate", "el2n", "forgetting"] {
            let err = select_static(&name.parse().unwrap(), dir.path(), &ids, keep(0.5), 0, &all).unwrap_err().to_string();
            assert!(err.contains(&format!("rule `{name}` needs binary labels")) && err.contains("regression"), "{err}");
        }
    }

    #[test]
    fn epoch_selection_parses_and_round_trips() {
        assert_eq!("all".parse::<EpochSelection>().unwrap(), EpochSelection::All);
        assert_eq!("3-5,1,4".parse::<EpochSelection>().unwrap(), EpochSelection::List(vec![1, 3, 4, 5]));
        assert_eq!("3-5,1".parse::<EpochSelection>().unwrap().to_string(), "1,3,4,5");
        for bad in ["0", "5-3", "x", "1,", ""] {
            assert!(bad.parse::<EpochSelection>().is_err(), "{bad}");
        }
        assert_eq!(EpochSelection::Last.resolve(&[1, 2, 3]).unwrap(), vec![3]);
    }

    /// The stage: a missing signal file names the option that writes it; the signal files are
    /// manifest inputs, so changing one reruns the stage.
    #[test]
    fn select_stage_reads_the_score_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pipeline = select::pipeline_with_split(root, 10, 8);
        let ids: Vec<u32> = (0..10).collect();
        let config = SelectConfig { rule: "forgetting".into(), keep: Some(0.5), ..SelectConfig::default() };
        let err = select::run(&pipeline, root, &config, None, false).err().unwrap().to_string();
        assert!(err.contains("score/embeddings.parquet") && err.contains("molpeg-score --signals") && err.contains("--score-dir"), "{err}");

        let score_dir = pipeline.stage_dir(root, "score");
        std::fs::create_dir_all(&score_dir).unwrap();
        let labels = [1.0; 10];
        let emb: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
        embeddings_file(&score_dir, &ids, &labels, Some(&[0.6; 10]), &emb, BINARY);
        let err = select::run(&pipeline, root, &config, None, false).err().unwrap().to_string();
        assert!(err.contains("score/outputs.parquet") && err.contains("--signals"), "{err}");

        // s0 forgets once, s1 is never learned, the rest stay learned.
        outputs_file(&score_dir, &ids, &labels, &[&[0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], &[0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]]);
        let Outcome::Ran(summary) = select::run(&pipeline, root, &config, None, false).unwrap() else { panic!("first run") };
        assert_eq!((summary.candidates, summary.kept), (8, 4));
        let coreset = || {
            let source = ParquetSource::open(&summary.output, &schema::coreset::schema()).unwrap();
            let batches = source.collect_columns(&[schema::coreset::MOL_ID, schema::coreset::WEIGHT]).unwrap();
            let ids = batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt32Type>().values().to_vec()).collect::<Vec<_>>();
            let weights = batches.iter().flat_map(|b| b.column(1).as_primitive::<Float32Type>().values().to_vec()).collect::<Vec<_>>();
            (ids, weights)
        };
        assert_eq!(coreset(), (vec![1, 0, 2, 3], vec![2.0; 4]), "never learned, forgotten once, then ties by mol_id; weight 1/r");
        assert!(matches!(select::run(&pipeline, root, &config, None, false).unwrap(), Outcome::UpToDate(_)));
        outputs_file(&score_dir, &ids, &labels, &[&[0.9; 10]]);
        assert!(matches!(select::run(&pipeline, root, &config, None, false).unwrap(), Outcome::Ran(_)), "a changed outputs.parquet reruns");
        assert_eq!(coreset().0, vec![0, 1, 2, 3]);
    }
}
