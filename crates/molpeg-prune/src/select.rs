//! Static selection: rank the training samples by a score and keep ⌊r·N⌋ of them.
//!
//! Rules ([`RULES`] has one line per rule for `--help` and the docs):
//! - `molpeg`: the largest MolPeg scores |loss_θ − loss_ξ| (Chen et al. 2024). The score is the absolute
//!   value of a signed discrepancy, so the kept set holds both tails: samples the online model fits
//!   much better than the reference (easy, being learned fast) and much worse (hard).
//!   `aggregate` picks the per-sample score: the last one seen (`last`) or the mean over epochs (`mean`).
//! - `random`: a seeded uniform subset (the baseline every rule must beat).
//! - `column:NAME`: any numeric column of the scores file, `order` desc (largest kept) or asc, so a
//!   score computed in pandas drives selection.
//! - every [`StaticRule`] (herding, k-means, k-center, uncertainty, forgetting, GraNd, EL2N,
//!   Moderate-DS): read from the proxy run's signal files in the score directory
//!   ([`crate::signals`]), written by `molpeg-score --signals`; the `kmeans-fp` rules read the
//!   featurize stage's `fingerprints.parquet` instead ([`crate::fingerprints`]), no proxy needed.
//!
//! Ties are broken by `mol_id` ascending, so every rule is deterministic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Float32Array, Float64Array, UInt32Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use molpeg_core::columns;
use molpeg_core::manifest::{Outcome, StageRun};
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::{coreset, fingerprints, sample_scores, split};
use molpeg_core::Error;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fingerprints::select_by_fingerprints;
use crate::keep::KeepFraction;
use crate::rules::{to_kept, StaticRule, STATIC_RULE_NAMES};
use crate::signals::{self, EpochSelection, PRODUCED_BY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Last,
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Keep the largest values.
    #[default]
    Desc,
    /// Keep the smallest values.
    Asc,
}

/// A parsed `--rule`; written as its name (e.g. `kmeans:10`) in manifests and `molpeg.select_params`.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Molpeg,
    Random,
    Column(String),
    Static(StaticRule),
}

/// Every `--rule` with one line on what it keeps and where it comes from; `[...]` names the score
/// directory file it reads.
pub const RULES: &[(&str, &str)] = &[
    ("molpeg", "largest MolPeg score |loss_online − loss_ref|: the easiest and the hardest samples (Chen et al. 2024) [sample_scores]"),
    ("random", "a seeded uniform subset"),
    ("column:NAME", "any numeric column of the scores file, --order desc keeps the largest, asc the smallest (your own score)"),
    ("herding", "greedy moment matching: the running mean of the kept embeddings tracks the mean embedding (Welling 2009) [embeddings]"),
    ("kmeans[:K]", "prototype pruning: farthest from their k-means centroid, K clusters (default 10), the hard ones (Sorscher et al. 2022) [embeddings]"),
    ("kmeans-easy[:K]", "nearest to their k-means centroid, the prototypical ones (Sorscher et al. 2022) [embeddings]"),
    ("kmeans-fp[:K]", "as kmeans on Morgan fingerprint bits (0/1 vectors), farthest from the centroid; no proxy model [featurize: fingerprints, --fingerprints]"),
    ("kmeans-fp-easy[:K]", "as kmeans-easy on Morgan fingerprint bits, nearest to the centroid [featurize: fingerprints, --fingerprints]"),
    ("kcenter", "greedy k-center coverage: a farthest-point traversal of the embeddings (Sener & Savarese 2018) [embeddings]"),
    ("least-confidence", "largest Σ over valid tasks of 1 − max(p, 1 − p) of the proxy model (Coleman et al. 2020) [embeddings: probs]"),
    ("entropy", "largest Σ over valid tasks of the binary entropy of p (Coleman et al. 2020) [embeddings: probs]"),
    ("margin", "largest Σ over valid tasks of 1 − |2p − 1| (Coleman et al. 2020) [embeddings: probs]"),
    ("forgetting", "most learned → forgotten transitions across epochs, never-learned first (Toneva et al. 2019) [outputs]"),
    ("grand", "largest last-layer loss-gradient norm, mean over --proxy-epochs (Paul et al. 2021) [outputs]"),
    ("el2n", "largest ‖p − y‖₂ over valid tasks, mean over --proxy-epochs (Paul et al. 2021) [outputs]"),
    ("moderate[:TASK]", "distance to the class centre closest to the median distance, Moderate-DS (Xia et al. 2023) [embeddings]"),
];

/// [`RULES`] as aligned lines, for `molpeg-select --help`.
pub fn rules_help() -> String {
    let width = RULES.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
    RULES.iter().map(|(name, what)| format!("{name:<width$}  {what}")).collect::<Vec<_>>().join("\n")
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "molpeg" => return Ok(Rule::Molpeg),
            "random" => return Ok(Rule::Random),
            _ => {}
        }
        if let Some(name) = s.strip_prefix("column:") {
            return if name.is_empty() { Err("rule `column:` needs a column name: column:NAME".into()) } else { Ok(Rule::Column(name.to_string())) };
        }
        let base = s.split(':').next().unwrap_or_default();
        if STATIC_RULE_NAMES.contains(&base) {
            return s.parse().map(Rule::Static);
        }
        Err(format!("unknown rule `{s}`: expected molpeg, random, column:NAME, {}", STATIC_RULE_NAMES.join(", ")))
    }
}

impl Rule {
    /// Whether the rule reads `fingerprints.parquet` (the `kmeans-fp` rules).
    pub fn reads_fingerprints(&self) -> bool {
        matches!(self, Rule::Static(r) if r.reads_fingerprints())
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Molpeg => write!(f, "molpeg"),
            Rule::Random => write!(f, "random"),
            Rule::Column(name) => write!(f, "column:{name}"),
            Rule::Static(rule) => write!(f, "{rule}"),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One kept sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub mol_id: u32,
    pub rank: u32,
    pub score: Option<f64>,
    pub weight: f32,
}

/// Keeps the `keep.count(N)` best samples by `score` in `order`; ties by mol_id ascending.
/// NaN scores rank last whatever the order.
pub fn top_by_score(samples: &[(u32, f64)], order: Order, keep: KeepFraction, rescale: bool) -> Vec<Kept> {
    let mut ranked: Vec<&(u32, f64)> = samples.iter().collect();
    ranked.sort_by(|a, b| {
        let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else if order == Order::Desc { v } else { -v };
        key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0))
    });
    let weight = if rescale { keep.rescale_weight() } else { 1.0 };
    ranked
        .into_iter()
        .take(keep.count(samples.len()))
        .enumerate()
        .map(|(rank, &(mol_id, score))| Kept { mol_id, rank: rank as u32, score: Some(score), weight })
        .collect()
}

/// A seeded uniform subset; rank is the draw order.
pub fn random_subset(mol_ids: &[u32], keep: KeepFraction, seed: u64, rescale: bool) -> Vec<Kept> {
    let mut ids = mol_ids.to_vec();
    ids.sort_unstable();
    ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let weight = if rescale { keep.rescale_weight() } else { 1.0 };
    ids.into_iter()
        .take(keep.count(mol_ids.len()))
        .enumerate()
        .map(|(rank, mol_id)| Kept { mol_id, rank: rank as u32, score: None, weight })
        .collect()
}

/// The `[select]` section of a pipeline file (flags override it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    #[serde(default = "default_rule")]
    pub rule: String,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Keep fraction r ∈ (0, 1]; exactly one of `keep` / `prune`.
    #[serde(default)]
    pub keep: Option<f64>,
    /// Prune fraction p ∈ [0, 1), keep = 1 − p.
    #[serde(default)]
    pub prune: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    /// Weight kept samples' loss by 1/r (the paper's rescaling).
    #[serde(default = "default_true")]
    pub rescale: bool,
    /// Scores file; default `<score_dir>/sample_scores.parquet`.
    #[serde(default)]
    pub scores: Option<PathBuf>,
    /// The score stage's directory, where the signal files of the baseline rules are read; default
    /// `runs/<pipeline>/score`.
    #[serde(default)]
    pub score_dir: Option<PathBuf>,
    /// Epochs of `outputs.parquet` that `grand` and `el2n` average and `forgetting` counts over.
    #[serde(default)]
    pub proxy_epochs: EpochSelection,
    /// Fingerprint file of the `kmeans-fp` rules; default `runs/<pipeline>/featurize/fingerprints.parquet`.
    /// Left out of serialized configs when unset, so manifests that embed `[select]` keep their key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<PathBuf>,
}

fn default_rule() -> String {
    "molpeg".into()
}
fn default_true() -> bool {
    true
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            rule: default_rule(),
            order: Order::Desc,
            aggregate: Aggregate::Last,
            keep: None,
            prune: None,
            seed: 0,
            rescale: true,
            scores: None,
            score_dir: None,
            proxy_epochs: EpochSelection::All,
            fingerprints: None,
        }
    }
}

impl SelectConfig {
    /// The fingerprint file: `fingerprints`, or the featurize stage's under `runs_root`.
    pub fn fingerprints_path(&self, pipeline: &Pipeline, runs_root: &Path) -> PathBuf {
        self.fingerprints.clone().unwrap_or_else(|| pipeline.stage_dir(runs_root, "featurize").join(fingerprints::FILE))
    }

    pub fn keep_fraction(&self) -> Result<KeepFraction, String> {
        match (self.keep, self.prune) {
            (Some(_), Some(_)) => Err("give either keep or prune, not both".into()),
            (Some(k), None) => KeepFraction::new(k),
            (None, Some(p)) => KeepFraction::from_prune(p),
            (None, None) => Err("no keep fraction: pass --keep R (e.g. 0.4) or --prune P (e.g. 0.6)".into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SelectSummary {
    pub rule: Rule,
    pub keep: f64,
    pub candidates: usize,
    pub kept: usize,
    pub weight: f32,
    pub output: PathBuf,
}

/// Runs the select stage into `out_dir` (default `runs/<pipeline>/select`).
pub fn run(pipeline: &Pipeline, runs_root: &Path, config: &SelectConfig, out_dir: Option<&Path>, force: bool) -> Result<Outcome<SelectSummary>, Error> {
    let bad = |m: String| Error::config(&pipeline.path, format!("[select]: {m}"));
    let keep = config.keep_fraction().map_err(bad)?;
    let rule: Rule = config.rule.parse().map_err(bad)?;
    let split_path = pipeline.stage_dir(runs_root, "split").join("split.parquet");
    let score_dir = config.score_dir.clone().unwrap_or_else(|| pipeline.stage_dir(runs_root, "score"));
    let scores_path = config.scores.clone().unwrap_or_else(|| score_dir.join("sample_scores.parquet"));
    let fingerprints_path = config.fingerprints_path(pipeline, runs_root);
    let dir = out_dir.map(Path::to_path_buf).unwrap_or_else(|| pipeline.stage_dir(runs_root, "select"));
    let output = dir.join("coreset.parquet");

    if !split_path.exists() {
        return Err(Error::invalid(&split_path, "not found; run the split stage first"));
    }
    let mut inputs: Vec<PathBuf> = vec![split_path.clone()];
    match &rule {
        Rule::Random => {}
        Rule::Molpeg | Rule::Column(_) => {
            if !scores_path.exists() {
                return Err(Error::invalid(&scores_path, "not found; run the score stage first, or pass --scores FILE"));
            }
            inputs.push(scores_path.clone());
        }
        Rule::Static(r) if r.reads_fingerprints() => {
            if !fingerprints_path.exists() {
                return Err(Error::invalid(
                    &fingerprints_path,
                    format!("not found: rule `{r}` reads Morgan fingerprints, which {} writes; run it, or pass --fingerprints FILE", crate::fingerprints::PRODUCED_BY),
                ));
            }
            inputs.push(fingerprints_path.clone());
        }
        Rule::Static(r) => {
            for file in signals::files_for(r) {
                let path = score_dir.join(file);
                if !path.exists() {
                    return Err(Error::invalid(&path, format!("not found: rule `{r}` reads the proxy signals that {PRODUCED_BY} writes; run it, or pass --score-dir DIR")));
                }
                inputs.push(path);
            }
        }
    }
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let params = serde_json::json!({"rule": rule, "order": config.order, "aggregate": config.aggregate, "keep": keep.get(), "seed": config.seed, "rescale": config.rescale, "proxy_epochs": config.proxy_epochs});
    let stage = StageRun::new("select", &dir, &params, &inputs)?;
    if !force && stage.cached().is_some() {
        return Ok(Outcome::UpToDate(dir));
    }
    stage.begin()?;

    let train_ids = read_train_ids(&split_path)?;
    let kept = select_kept(&rule, config, keep, &train_ids, &RuleFiles { scores: &scores_path, score_dir: &score_dir, fingerprints: &fingerprints_path })?;

    let batch = RecordBatch::try_new(
        coreset::schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(kept.iter().map(|k| k.mol_id))),
            Arc::new(UInt32Array::from_iter_values(kept.iter().map(|k| k.rank))),
            Arc::new(Float64Array::from_iter(kept.iter().map(|k| k.score))),
            Arc::new(Float32Array::from_iter_values(kept.iter().map(|k| k.weight))),
        ],
    )
    .map_err(|e| Error::arrow(&output, e))?;
    let meta = [("molpeg.select_params".to_string(), params.to_string())].into();
    write_batches(&output, coreset::schema(), coreset::KIND, &meta, &[batch])?;
    let summary = SelectSummary { rule, keep: keep.get(), candidates: train_ids.len(), kept: kept.len(), weight: kept.first().map_or(1.0, |k| k.weight), output: output.clone() };
    stage.finish(&[&output], &summary)?;
    Ok(Outcome::Ran(summary))
}

/// The files the rules read, resolved by the caller.
#[derive(Debug, Clone, Copy)]
pub struct RuleFiles<'a> {
    /// Scores file of `molpeg` and `column:NAME`.
    pub scores: &'a Path,
    /// Directory of the proxy signal files of the baselines.
    pub score_dir: &'a Path,
    /// `fingerprints.parquet` of the `kmeans-fp` rules.
    pub fingerprints: &'a Path,
}

/// Applies `rule` to the training molecules `train_ids`, keeping `keep` of them (`config` gives the
/// order, aggregate, seed and rescaling; its `keep`/`prune` are not read). Rules other than `random`
/// read `files.scores`, the baselines (`Rule::Static`) the proxy signal files in `files.score_dir`
/// or, for `kmeans-fp`, `files.fingerprints`. The select stage and in-process drivers (the scaling
/// sweep) share this.
pub fn select_kept(rule: &Rule, config: &SelectConfig, keep: KeepFraction, train_ids: &[u32], files: &RuleFiles) -> Result<Vec<Kept>, Error> {
    let (scores_path, score_dir) = (files.scores, files.score_dir);
    Ok(match rule {
        Rule::Random => random_subset(train_ids, keep, config.seed, config.rescale),
        Rule::Molpeg => {
            let column = match config.aggregate {
                Aggregate::Last => sample_scores::SCORE_LAST,
                Aggregate::Mean => sample_scores::SCORE_MEAN,
            };
            let scored = read_scores_for(scores_path, column, train_ids)?;
            top_by_score(&scored, Order::Desc, keep, config.rescale)
        }
        Rule::Column(name) => {
            let scored = read_scores_for(scores_path, name, train_ids)?;
            top_by_score(&scored, config.order, keep, config.rescale)
        }
        Rule::Static(r) => {
            // Rows in mol_id order: the rules break ties by row, hence by mol_id.
            let mut ids = train_ids.to_vec();
            ids.sort_unstable();
            let picks = if r.reads_fingerprints() {
                select_by_fingerprints(r, files.fingerprints, &ids, keep, config.seed)?
            } else {
                signals::select_static(r, score_dir, &ids, keep, config.seed, &config.proxy_epochs)?
            };
            to_kept(&picks, &ids, keep, config.rescale)
        }
    })
}

fn read_train_ids(path: &Path) -> Result<Vec<u32>, Error> {
    let mut ids = Vec::new();
    let mut row = 0;
    for batch in ParquetSource::open_user(path, &split::schema())?.read_columns(&[split::MOL_ID, split::SPLIT])? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let mol_ids = columns::u32_values(path, split::MOL_ID, batch.column(0), row)?;
        let parts = columns::strings(path, split::SPLIT, batch.column(1), row)?;
        ids.extend(mol_ids.into_iter().zip(parts).filter(|(_, p)| p == split::TRAIN).map(|(id, _)| id));
        row += batch.num_rows();
    }
    if ids.is_empty() {
        return Err(Error::invalid(path, "has no training molecules to select from"));
    }
    Ok(ids)
}

/// Reads `mol_id` and a numeric `column` of any scores file and returns the training samples' values.
fn read_scores_for(path: &Path, column: &str, train_ids: &[u32]) -> Result<Vec<(u32, f64)>, Error> {
    let expected = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(sample_scores::MOL_ID, DataType::UInt32, false)]));
    let source = ParquetSource::open_user(path, &expected)?;
    if source.schema().field_with_name(column).is_err() {
        let found: Vec<String> = source.schema().fields().iter().map(|f| f.name().clone()).collect();
        return Err(Error::invalid(path, format!("has no column `{column}`; its columns: {}", found.join(", "))));
    }
    let mut by_id = HashMap::new();
    let mut row = 0;
    for batch in source.read_columns(&[sample_scores::MOL_ID, column])? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let ids = columns::u32_values(path, sample_scores::MOL_ID, batch.column(0), row)?;
        let values = columns::f64_values(path, column, batch.column(1))?;
        for (id, v) in ids.into_iter().zip(values) {
            by_id.insert(id, v.unwrap_or(f64::NAN));
        }
        row += batch.num_rows();
    }
    let missing: Vec<u32> = train_ids.iter().filter(|id| !by_id.contains_key(id)).copied().collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            path,
            format!("{} training molecules have no `{column}` (first mol_ids: {:?}); rerun the score stage for this split", missing.len(), &missing[..missing.len().min(5)]),
        ));
    }
    Ok(train_ids.iter().map(|id| (*id, by_id[id])).collect())
}

/// Test fixture: the pipeline `p` under `root`, whose split stage holds mol_ids `0..total`, the first
/// `train` of them in the training split and the rest in the test split.
#[cfg(test)]
pub(crate) fn pipeline_with_split(root: &Path, total: u32, train: u32) -> Pipeline {
    let pipeline = Pipeline::parse(&root.join("p.toml"), "name = \"p\"\n").unwrap();
    let split_dir = pipeline.stage_dir(root, "split");
    std::fs::create_dir_all(&split_dir).unwrap();
    let ids: Vec<u32> = (0..total).collect();
    let parts: Vec<&str> = ids.iter().map(|&i| if i < train { split::TRAIN } else { split::TEST }).collect();
    let batch = RecordBatch::try_new(split::schema(), vec![Arc::new(UInt32Array::from(ids)), Arc::new(arrow::array::StringArray::from(parts))]).unwrap();
    write_batches(split_dir.join("split.parquet"), split::schema(), split::KIND, &Default::default(), &[batch]).unwrap();
    pipeline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(r: f64) -> KeepFraction {
        KeepFraction::new(r).unwrap()
    }

    #[test]
    fn molpeg_keeps_both_tails_of_the_signed_discrepancy() {
        // Signed loss_online − loss_ref: very negative = online fits far better (easy); very positive = hard.
        let deltas = [-3.0, -0.1, 0.05, 0.2, 2.5, -0.3, 0.0, 1.0];
        let samples: Vec<(u32, f64)> = deltas.iter().enumerate().map(|(i, d): (usize, &f64)| (i as u32, d.abs())).collect();
        let kept = top_by_score(&samples, Order::Desc, keep(0.25), true);
        let ids: Vec<u32> = kept.iter().map(|k| k.mol_id).collect();
        assert_eq!(ids, vec![0, 4], "keeps the most negative and the most positive discrepancy");
        assert!(kept.iter().all(|k| k.weight == 4.0));
        assert_eq!(kept.iter().map(|k| k.rank).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn exact_counts_ties_and_determinism() {
        let samples: Vec<(u32, f64)> = (0..100u32).rev().map(|i| (i, (i % 5) as f64)).collect();
        for r in [0.01, 0.1, 0.33, 0.5, 1.0] {
            let a = top_by_score(&samples, Order::Desc, keep(r), false);
            assert_eq!(a.len(), keep(r).count(100));
            assert_eq!(a, top_by_score(&samples, Order::Desc, keep(r), false));
        }
        // Ties (score 4) broken by mol_id ascending.
        let first: Vec<u32> = top_by_score(&samples, Order::Desc, keep(0.05), false).iter().map(|k| k.mol_id).collect();
        assert_eq!(first, vec![4, 9, 14, 19, 24]);
        let asc: Vec<u32> = top_by_score(&samples, Order::Asc, keep(0.03), false).iter().map(|k| k.mol_id).collect();
        assert_eq!(asc, vec![0, 5, 10]);
    }

    #[test]
    fn random_subset_is_seeded_and_exact() {
        let ids: Vec<u32> = (0..200).collect();
        let a = random_subset(&ids, keep(0.3), 5, true);
        assert_eq!(a.len(), 60);
        assert_eq!(a, random_subset(&ids, keep(0.3), 5, true));
        assert_ne!(a, random_subset(&ids, keep(0.3), 6, true));
        let mut unique: Vec<u32> = a.iter().map(|k| k.mol_id).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 60);
    }

    #[test]
    fn rule_parsing() {
        assert_eq!("column:el2n".parse::<Rule>().unwrap(), Rule::Column("el2n".into()));
        assert!("column:".parse::<Rule>().is_err());
        assert!("herding?".parse::<Rule>().unwrap_err().contains("molpeg, random, column:NAME, herding, kmeans"));
        assert!("kmeans:0".parse::<Rule>().unwrap_err().contains("at least one cluster"));
        for name in ["molpeg", "random", "column:x", "kcenter", "kmeans:4", "kmeans-fp:4", "kmeans-fp-easy:10", "moderate:1", "least-confidence"] {
            let rule: Rule = name.parse().unwrap();
            assert_eq!(rule.to_string(), name);
            assert_eq!(serde_json::to_value(&rule).unwrap(), serde_json::json!(name));
        }
    }

    #[test]
    fn help_has_one_line_per_rule() {
        let help = rules_help();
        assert_eq!(help.lines().count(), RULES.len());
        for name in ["molpeg", "random", "column"].iter().chain(STATIC_RULE_NAMES) {
            let lines = help.lines().filter(|l| l.split([' ', ':', '[']).next() == Some(*name)).count();
            assert_eq!(lines, 1, "`{name}` needs exactly one help line:\n{help}");
        }
    }
}
