//! The static pruning baselines of Chen et al. 2023 ("Neural scaling laws in molecular representation
//! learning") and Chen et al. 2024 (MolPeg) as pure functions: in-memory arrays in, a ranked selection of
//! exactly `keep.count(N)` samples out. No IO: the select stage reads Parquet and calls these.
//!
//! Main types: [`StaticRule`] (a parsed rule name with its options), [`RuleInputs`] (the arrays a rule may
//! read), [`Pick`] (one selected sample: its row index and the score that ranked it) and [`Matrix`]
//! (a row-major view with a checked shape). [`StaticRule::select`] is the single entry point;
//! [`StaticRule::scores`] gives the per-sample score of the score-based rules, for writing to Parquet.
//!
//! Rules (what each keeps, and where it comes from):
//! - `herding`: greedy moment matching, keeps the samples whose running mean best tracks the mean embedding (Welling 2009; Chen et al. 2018 coreset form).
//! - `kmeans[-easy][:K]`: keeps the samples farthest from (`-easy`: nearest to) their k-means centroid (Sorscher et al. 2022, prototype metric).
//! - `kmeans-fp[-easy][:K]`: the same on Morgan fingerprint bits instead of the proxy's embeddings (no proxy model needed).
//! - `kcenter`: greedy k-center coverage, keeps the farthest-point traversal of the embeddings (Sener & Savarese 2018).
//! - `least-confidence`: keeps the largest Σ_tasks 1 − max(p, 1 − p) (Coleman et al. 2020).
//! - `entropy`: keeps the largest Σ_tasks binary entropy of p (Coleman et al. 2020).
//! - `margin`: keeps the largest Σ_tasks 1 − |p − (1 − p)| (Coleman et al. 2020).
//! - `forgetting`: keeps the samples forgotten most often during training, never-learned first (Toneva et al. 2019).
//! - `grand`: keeps the largest last-layer loss-gradient norm, averaged over seeds (Paul et al. 2021).
//! - `el2n`: keeps the largest L2 norm of p − y, averaged over seeds (Paul et al. 2021).
//! - `moderate[:TASK]`: keeps the samples whose distance to their class centre is closest to the median distance (Xia et al. 2023, Moderate-DS).
//!
//! Conventions shared by every rule:
//! - Sample `i` is row `i` of every input; [`to_kept`] maps rows to `mol_id`s.
//! - Exactly `keep.count(N)` picks, in rank order; ties by row index ascending; NaN scores rank last.
//! - Multi-task binary labels come with a validity mask (`true` = label present). Every uncertainty or
//!   error score sums over valid tasks only; a sample with no valid task scores NaN, so it is kept only
//!   when every scored sample is already kept.
//! - Randomness (k-means++ only) comes from a `ChaCha8Rng` seeded with the `seed` argument.

pub mod dynamics;
pub mod geometry;
pub mod uncertainty;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keep::KeepFraction;
use crate::select::{Kept, Order};

pub use dynamics::{correctness, el2n_run, el2n_scores, forgetting_scores, grand_run, grand_scores, mean_over_runs};
pub use geometry::{herding, kcenter, kmeans, kmeans_scores, moderate_distances, moderate_scores, Coordinate, KMeansFit};
pub use uncertainty::{uncertainty_scores, Uncertainty};

/// A rule could not run on the inputs it was given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// Arrays whose shapes disagree (the message names both).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The rule needs an input that was not given.
    #[error("rule `{rule}` needs {input}")]
    MissingInput { rule: String, input: &'static str },
    /// A rule option out of range.
    #[error("invalid option: {0}")]
    Option(String),
}

/// A row-major matrix view: `data.len() == rows · cols`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matrix<'a, T> {
    data: &'a [T],
    cols: usize,
}

impl<'a, T> Matrix<'a, T> {
    /// `cols` must be positive and divide `data.len()`.
    pub fn new(data: &'a [T], cols: usize) -> Result<Self, RuleError> {
        if cols == 0 || !data.chunks_exact(cols).remainder().is_empty() {
            return Err(RuleError::Shape(format!("{} values do not form rows of {cols} columns", data.len())));
        }
        Ok(Matrix { data, cols })
    }

    pub fn rows(&self) -> usize {
        self.data.len() / self.cols
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn data(&self) -> &'a [T] {
        self.data
    }
}

/// Checks that `m` has `rows` rows (and `cols` columns when given).
pub(crate) fn check_shape<T>(what: &str, m: &Matrix<T>, rows: usize, cols: Option<usize>) -> Result<(), RuleError> {
    if m.rows() != rows || cols.is_some_and(|c| c != m.cols()) {
        let want_cols = cols.map_or("any".to_string(), |c| c.to_string());
        return Err(RuleError::Shape(format!("{what} is {}×{}, expected {rows}×{want_cols}", m.rows(), m.cols())));
    }
    Ok(())
}

/// One model's outputs on the training set: one seed of a proxy run (or one early epoch).
#[derive(Debug, Clone, Copy)]
pub struct RunOutputs<'a> {
    /// Predicted probabilities σ(z), N×T.
    pub probs: Matrix<'a, f32>,
    /// The embeddings h fed to the linear head, N×D; needed by `grand` only.
    pub embeddings: Option<Matrix<'a, f32>>,
}

/// Everything a static rule may read; each rule checks that what it needs is present.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleInputs<'a> {
    /// N×D embeddings: herding, kmeans, kcenter, moderate.
    pub embeddings: Option<Matrix<'a, f32>>,
    /// N×B fingerprint bits, one 0/1 byte per bit: kmeans-fp.
    pub fingerprints: Option<Matrix<'a, u8>>,
    /// N×T binary labels (values where `mask` is false are ignored): grand, el2n, moderate.
    pub labels: Option<Matrix<'a, f32>>,
    /// N×T validity mask, `true` where the label is present: uncertainty rules, grand, el2n, moderate.
    pub mask: Option<Matrix<'a, bool>>,
    /// One entry per seed / early epoch: uncertainty rules, grand, el2n (scores are averaged over them).
    pub runs: &'a [RunOutputs<'a>],
    /// N×E correctness of each sample at each epoch, in epoch order: forgetting.
    pub correctness: Option<Matrix<'a, bool>>,
}

/// Which end of the k-means distance ranking `kmeans` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prototypicality {
    /// Farthest from the centroid ("hard" examples; Sorscher et al.'s choice for large data).
    Hard,
    /// Nearest to the centroid ("easy" examples; better for small data per Sorscher et al.).
    Easy,
}

/// The vectors `kmeans` clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSpace {
    /// The proxy model's graph embeddings (`kmeans`, `kmeans-easy`).
    Embedding,
    /// Morgan fingerprint bits as 0/1 vectors (`kmeans-fp`, `kmeans-fp-easy`).
    Fingerprint,
}

/// Options of the `kmeans` rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KMeansOptions {
    /// Number of clusters k (clamped to N).
    pub clusters: usize,
    /// Maximum Lloyd iterations after k-means++ initialisation.
    pub max_iter: usize,
    pub keep: Prototypicality,
    pub space: FeatureSpace,
}

impl KMeansOptions {
    pub const DEFAULT_CLUSTERS: usize = 10;
    pub const DEFAULT_MAX_ITER: usize = 100;
}

impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions { clusters: Self::DEFAULT_CLUSTERS, max_iter: Self::DEFAULT_MAX_ITER, keep: Prototypicality::Hard, space: FeatureSpace::Embedding }
    }
}

/// A parsed static rule. Names (see [`STATIC_RULE_NAMES`]) round-trip through `FromStr`/`Display`:
/// `herding`, `kmeans`, `kmeans:K`, `kmeans-easy`, `kmeans-easy:K`, `kmeans-fp`, `kmeans-fp:K`,
/// `kmeans-fp-easy`, `kmeans-fp-easy:K`, `kcenter`, `least-confidence`,
/// `entropy`, `margin`, `forgetting`, `grand`, `el2n`, `moderate`, `moderate:TASK`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StaticRule {
    Herding,
    KMeans(KMeansOptions),
    KCenter,
    Uncertainty(Uncertainty),
    Forgetting,
    Grand,
    El2n,
    /// `task`: the task whose label is the class; `None` = per sample, the first task with a valid label.
    Moderate { task: Option<usize> },
}

/// The base names accepted by [`StaticRule::from_str`].
pub const STATIC_RULE_NAMES: &[&str] = &[
    "herding",
    "kmeans",
    "kmeans-easy",
    "kmeans-fp",
    "kmeans-fp-easy",
    "kcenter",
    "least-confidence",
    "entropy",
    "margin",
    "forgetting",
    "grand",
    "el2n",
    "moderate",
];

impl FromStr for StaticRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (s, None),
        };
        let number = |what: &str| -> Result<usize, String> {
            let arg = arg.unwrap_or_default();
            arg.parse::<usize>().map_err(|_| format!("rule `{s}`: `{arg}` is not a {what}"))
        };
        let no_arg = |rule: StaticRule| if arg.is_some() { Err(format!("rule `{name}` takes no `:` argument")) } else { Ok(rule) };
        match name {
            "kmeans" | "kmeans-easy" | "kmeans-fp" | "kmeans-fp-easy" => {
                let keep = if name.ends_with("-easy") { Prototypicality::Easy } else { Prototypicality::Hard };
                let space = if name.starts_with("kmeans-fp") { FeatureSpace::Fingerprint } else { FeatureSpace::Embedding };
                let clusters = if arg.is_some() { number("cluster count")? } else { KMeansOptions::DEFAULT_CLUSTERS };
                if clusters == 0 {
                    return Err(format!("rule `{s}`: k-means needs at least one cluster"));
                }
                Ok(StaticRule::KMeans(KMeansOptions { clusters, keep, space, ..KMeansOptions::default() }))
            }
            "moderate" => Ok(StaticRule::Moderate { task: if arg.is_some() { Some(number("task index")?) } else { None } }),
            "herding" => no_arg(StaticRule::Herding),
            "kcenter" => no_arg(StaticRule::KCenter),
            "least-confidence" => no_arg(StaticRule::Uncertainty(Uncertainty::LeastConfidence)),
            "entropy" => no_arg(StaticRule::Uncertainty(Uncertainty::Entropy)),
            "margin" => no_arg(StaticRule::Uncertainty(Uncertainty::Margin)),
            "forgetting" => no_arg(StaticRule::Forgetting),
            "grand" => no_arg(StaticRule::Grand),
            "el2n" => no_arg(StaticRule::El2n),
            _ => Err(format!("unknown static rule `{s}`; available: {}", STATIC_RULE_NAMES.join(", "))),
        }
    }
}

impl fmt::Display for StaticRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaticRule::Herding => write!(f, "herding"),
            StaticRule::KMeans(o) => {
                let space = if o.space == FeatureSpace::Fingerprint { "-fp" } else { "" };
                let keep = if o.keep == Prototypicality::Easy { "-easy" } else { "" };
                write!(f, "kmeans{space}{keep}:{}", o.clusters)
            }
            StaticRule::KCenter => write!(f, "kcenter"),
            StaticRule::Uncertainty(u) => write!(f, "{}", u.name()),
            StaticRule::Forgetting => write!(f, "forgetting"),
            StaticRule::Grand => write!(f, "grand"),
            StaticRule::El2n => write!(f, "el2n"),
            StaticRule::Moderate { task: None } => write!(f, "moderate"),
            StaticRule::Moderate { task: Some(t) } => write!(f, "moderate:{t}"),
        }
    }
}

impl Serialize for StaticRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StaticRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// One selected sample: its row in the inputs and the score that ranked it (NaN where it had none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub index: usize,
    pub score: f64,
}

/// The `count` best rows by `scores` in `order`; NaN last whatever the order; ties by row ascending.
pub fn rank_by_score(scores: &[f64], order: Order, count: usize) -> Vec<Pick> {
    let key = |v: f64| if order == Order::Desc { v } else { -v };
    let (mut defined, nan): (Vec<usize>, Vec<usize>) = (0..scores.len()).partition(|&i| !scores[i].is_nan());
    // A stable sort on the key alone keeps equal keys in row order: the index tie-break.
    defined.sort_by(|&a, &b| key(scores[b]).partial_cmp(&key(scores[a])).expect("NaN was partitioned out"));
    defined.extend(nan);
    defined.into_iter().take(count).map(|index| Pick { index, score: scores[index] }).collect()
}

/// Maps picks to coreset rows: `mol_ids[index]`, rank = position, weight 1/r when `rescale`.
/// A NaN score is written as null.
pub fn to_kept(picks: &[Pick], mol_ids: &[u32], keep: KeepFraction, rescale: bool) -> Vec<Kept> {
    let weight = if rescale { keep.rescale_weight() } else { 1.0 };
    picks
        .iter()
        .enumerate()
        .map(|(rank, p)| Kept { mol_id: mol_ids[p.index], rank: rank as u32, score: (!p.score.is_nan()).then_some(p.score), weight })
        .collect()
}

impl StaticRule {
    /// Whether the rule reads `fingerprints.parquet` (featurize) instead of the proxy's signal files.
    pub fn reads_fingerprints(&self) -> bool {
        matches!(self, StaticRule::KMeans(o) if o.space == FeatureSpace::Fingerprint)
    }

    /// Whether larger scores are kept ([`Order::Desc`]) or smaller ([`Order::Asc`]); `None` for the
    /// greedy rules (herding, kcenter) whose picks depend on earlier picks rather than a score.
    pub fn order(&self) -> Option<Order> {
        match self {
            StaticRule::Herding | StaticRule::KCenter => None,
            StaticRule::KMeans(o) if o.keep == Prototypicality::Easy => Some(Order::Asc),
            StaticRule::Moderate { .. } => Some(Order::Asc),
            _ => Some(Order::Desc),
        }
    }

    /// Per-sample scores of the score-based rules (kept in [`Self::order`]); `None` for herding and
    /// kcenter. NaN marks a sample the rule cannot score (no valid label).
    pub fn scores(&self, inputs: &RuleInputs, seed: u64) -> Result<Option<Vec<f64>>, RuleError> {
        let need = |input: &'static str| RuleError::MissingInput { rule: self.to_string(), input };
        let embeddings = || inputs.embeddings.ok_or_else(|| need("embeddings"));
        let fingerprints = || inputs.fingerprints.ok_or_else(|| need("fingerprints"));
        let mask = || inputs.mask.ok_or_else(|| need("a label mask"));
        let labels = || inputs.labels.ok_or_else(|| need("labels"));
        let runs = || if inputs.runs.is_empty() { Err(need("at least one run's predictions")) } else { Ok(inputs.runs) };
        let scores = match *self {
            StaticRule::Herding | StaticRule::KCenter => return Ok(None),
            StaticRule::KMeans(options) => match options.space {
                FeatureSpace::Embedding => kmeans_scores(embeddings()?, options, seed)?,
                FeatureSpace::Fingerprint => kmeans_scores(fingerprints()?, options, seed)?,
            },
            StaticRule::Moderate { task } => moderate_scores(embeddings()?, labels()?, mask()?, task)?,
            StaticRule::Uncertainty(kind) => {
                let mask = mask()?;
                let per_run = runs()?.iter().map(|r| uncertainty_scores(kind, r.probs, mask)).collect::<Result<Vec<_>, _>>()?;
                mean_over_runs(&per_run)
            }
            StaticRule::Forgetting => forgetting_scores(inputs.correctness.ok_or_else(|| need("a correctness matrix (samples × epochs)"))?),
            StaticRule::El2n => el2n_scores(runs()?, labels()?, mask()?)?,
            StaticRule::Grand => {
                let runs = runs()?;
                if runs.iter().any(|r| r.embeddings.is_none()) {
                    return Err(need("each run's embeddings (the linear head's input)"));
                }
                grand_scores(runs, labels()?, mask()?)?
            }
        };
        Ok(Some(scores))
    }

    /// Selects exactly `keep.count(N)` samples in rank order. `seed` drives k-means++ only; every
    /// other rule is deterministic from its inputs.
    pub fn select(&self, inputs: &RuleInputs, keep: KeepFraction, seed: u64) -> Result<Vec<Pick>, RuleError> {
        match self {
            StaticRule::Herding | StaticRule::KCenter => {
                let embeddings = inputs.embeddings.ok_or_else(|| RuleError::MissingInput { rule: self.to_string(), input: "embeddings" })?;
                let count = keep.count(embeddings.rows());
                Ok(if *self == StaticRule::Herding { herding(embeddings, count) } else { kcenter(embeddings, count) })
            }
            _ => {
                let scores = self.scores(inputs, seed)?.expect("score-based rule");
                let order = self.order().expect("score-based rule");
                Ok(rank_by_score(&scores, order, keep.count(scores.len())))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn keep(r: f64) -> KeepFraction {
        KeepFraction::new(r).unwrap()
    }

    /// A deterministic pseudo-random stream in [0, 1) for synthetic inputs.
    pub(crate) fn uniform(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32) / (1u64 << 24) as f32
            })
            .collect()
    }

    #[test]
    fn names_round_trip_and_reject_unknowns() {
        for name in ["herding", "kmeans:10", "kmeans-easy:4", "kmeans-fp:10", "kmeans-fp-easy:3", "kcenter", "least-confidence", "entropy", "margin", "forgetting", "grand", "el2n", "moderate", "moderate:2"] {
            let rule: StaticRule = name.parse().unwrap();
            assert_eq!(rule.to_string(), name);
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(serde_json::from_str::<StaticRule>(&json).unwrap(), rule);
        }
        assert_eq!("kmeans".parse::<StaticRule>().unwrap(), StaticRule::KMeans(KMeansOptions::default()));
        let fp = KMeansOptions { space: FeatureSpace::Fingerprint, ..KMeansOptions::default() };
        assert_eq!("kmeans-fp".parse::<StaticRule>().unwrap(), StaticRule::KMeans(fp));
        assert_eq!("kmeans-fp-easy:4".parse::<StaticRule>().unwrap(), StaticRule::KMeans(KMeansOptions { clusters: 4, keep: Prototypicality::Easy, ..fp }));
        assert!("kmeans-fp".parse::<StaticRule>().unwrap().reads_fingerprints());
        assert!(!"kmeans".parse::<StaticRule>().unwrap().reads_fingerprints());
        assert!("kmeans-fp:0".parse::<StaticRule>().is_err());
        assert!("kmeans:0".parse::<StaticRule>().is_err());
        assert!("herding:3".parse::<StaticRule>().is_err());
        assert!("craig".parse::<StaticRule>().unwrap_err().contains("available: herding"));
    }

    #[test]
    fn ranking_puts_nan_last_and_breaks_ties_by_row() {
        let scores = [1.0, f64::NAN, 3.0, 3.0, f64::NEG_INFINITY, 0.5];
        let desc: Vec<usize> = rank_by_score(&scores, Order::Desc, 6).iter().map(|p| p.index).collect();
        assert_eq!(desc, vec![2, 3, 0, 5, 4, 1]);
        let asc: Vec<usize> = rank_by_score(&scores, Order::Asc, 6).iter().map(|p| p.index).collect();
        assert_eq!(asc, vec![4, 5, 0, 2, 3, 1]);
        let kept = to_kept(&rank_by_score(&scores, Order::Asc, 6), &[10, 11, 12, 13, 14, 15], keep(0.5), true);
        assert_eq!(kept[5].mol_id, 11);
        assert_eq!(kept[5].score, None);
        assert!(kept.iter().all(|k| k.weight == 2.0));
    }

    /// Every rule returns exactly keep.count(N) distinct rows, identically on a rerun.
    #[test]
    fn every_rule_gives_exact_counts_and_is_deterministic() {
        let (n, d, t, epochs) = (37, 4, 3, 5);
        let emb = uniform(1, n * d);
        let probs_a = uniform(2, n * t);
        let probs_b = uniform(3, n * t);
        let labels: Vec<f32> = uniform(4, n * t).iter().map(|v| (*v > 0.5) as u8 as f32).collect();
        let mut mask: Vec<bool> = uniform(5, n * t).iter().map(|v| *v > 0.2).collect();
        mask[0..t].fill(false); // sample 0 has no valid label
        let correct: Vec<bool> = uniform(6, n * epochs).iter().map(|v| *v > 0.4).collect();
        let bits: Vec<u8> = uniform(7, n * 64).iter().map(|v| (*v > 0.9) as u8).collect();
        let emb = Matrix::new(&emb, d).unwrap();
        let runs = [
            RunOutputs { probs: Matrix::new(&probs_a, t).unwrap(), embeddings: Some(emb) },
            RunOutputs { probs: Matrix::new(&probs_b, t).unwrap(), embeddings: Some(emb) },
        ];
        let inputs = RuleInputs {
            embeddings: Some(emb),
            labels: Some(Matrix::new(&labels, t).unwrap()),
            mask: Some(Matrix::new(&mask, t).unwrap()),
            runs: &runs,
            correctness: Some(Matrix::new(&correct, epochs).unwrap()),
            fingerprints: Some(Matrix::new(&bits, 64).unwrap()),
        };
        let names = ["herding", "kmeans:3", "kmeans-easy:3", "kmeans-fp:3", "kmeans-fp-easy:3", "kcenter", "least-confidence", "entropy", "margin", "forgetting", "grand", "el2n", "moderate", "moderate:1"];
        for name in names {
            let rule: StaticRule = name.parse().unwrap();
            for r in [0.01, 0.3, 0.5, 1.0] {
                let picks = rule.select(&inputs, keep(r), 7).unwrap();
                assert_eq!(picks.len(), keep(r).count(n), "{name} at r = {r}");
                let mut rows: Vec<usize> = picks.iter().map(|p| p.index).collect();
                rows.sort_unstable();
                rows.dedup();
                assert_eq!(rows.len(), picks.len(), "{name} picked a row twice");
                let bits = |picks: &[Pick]| picks.iter().map(|p| (p.index, p.score.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(&picks), bits(&rule.select(&inputs, keep(r), 7).unwrap()), "{name} is not deterministic");
            }
            if matches!(rule, StaticRule::Uncertainty(_) | StaticRule::Grand | StaticRule::El2n) {
                let picks = rule.select(&inputs, keep(1.0), 7).unwrap();
                assert_eq!(picks.last().unwrap().index, 0, "{name}: the sample without labels ranks last");
                assert!(picks.last().unwrap().score.is_nan());
            }
        }
    }

    #[test]
    fn missing_inputs_and_bad_shapes_are_errors() {
        let emb = [0.0f32; 6];
        let inputs = RuleInputs { embeddings: Some(Matrix::new(&emb, 2).unwrap()), ..RuleInputs::default() };
        let err = StaticRule::El2n.select(&inputs, keep(0.5), 0).unwrap_err();
        assert!(matches!(err, RuleError::MissingInput { .. }), "{err}");
        assert!(Matrix::new(&emb, 4).is_err());
        let probs = [0.5f32; 4];
        let mask = [true; 6];
        let runs = [RunOutputs { probs: Matrix::new(&probs, 2).unwrap(), embeddings: None }];
        let inputs = RuleInputs { mask: Some(Matrix::new(&mask, 2).unwrap()), runs: &runs, ..RuleInputs::default() };
        let err = StaticRule::Uncertainty(Uncertainty::Entropy).select(&inputs, keep(0.5), 0).unwrap_err();
        assert!(matches!(err, RuleError::Shape(_)), "{err}");
    }
}
