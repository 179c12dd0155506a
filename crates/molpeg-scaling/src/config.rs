//! The `[scaling]` section and the grid's axes: strategies, capacities, splits, pretrained encoders.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use molpeg_data::split::SplitMethod;
use molpeg_nn::model::ModelKind;
use molpeg_prune::policy::POLICY_NAMES;
use molpeg_prune::select::Rule;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The fractions of the scaling-law paper (Chen et al. 2023).
pub const PAPER_FRACTIONS: [f64; 9] = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0];
/// The `pretrained` axis value of a model trained from a random initialization.
pub const SCRATCH: &str = "scratch";

/// The `[scaling]` section of a pipeline file; command-line flags override each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingSettings {
    /// Fractions of the training split, each in (0, 1]. Fraction 1 is the full split, trained once
    /// per seed and shared by every strategy as the strategy `full`.
    pub fractions: Vec<f64>,
    pub seeds: Vec<u64>,
    /// `random`, `select:RULE` (a static rule of molpeg-select over the scores file), `dynamic:POLICY`
    /// (a dynamic policy with keep = fraction).
    pub strategies: Vec<String>,
    /// Split axis: methods (`random`, `scaffold`, `imbalanced-scaffold`) computed in-process with the
    /// `[split]` section's fractions and seed. Empty: the split stage's `split.parquet`.
    pub splits: Vec<String>,
    /// Modality axis: encoders (`gin`, `fingerprint`, `smiles`), each trained as `[finetune] model`
    /// would train it (the token models with `[finetune.sequence]`). Empty: `[finetune] model`.
    pub models: Vec<String>,
    /// Pretrained axis: `scratch` or encoder checkpoints. Empty: `[finetune] pretrained`.
    pub pretrained: Vec<String>,
    /// Capacity axis, `LAYERSxWIDTH` (e.g. `3x64`): GIN layers × hidden width, or a token model's
    /// Transformer layers × token width. Empty: `[finetune]` layers × width for the GIN,
    /// `[finetune.sequence]` layers × width for a token model.
    pub capacities: Vec<String>,
    /// Scores file of `select:` strategies; default `runs/<pipeline>/score/sample_scores.parquet`.
    pub scores: Option<PathBuf>,
    /// Weight the loss of `random` and `select:` subsets by 1/fraction. Off by default: the scaling
    /// study trains on a subset as on a smaller dataset. (Dynamic policies weight as they define.)
    pub rescale: bool,
    /// Bootstrap replicates of the confidence intervals.
    pub bootstrap: usize,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        ScalingSettings {
            fractions: PAPER_FRACTIONS.to_vec(),
            seeds: vec![0, 1, 2],
            strategies: vec!["random".into()],
            splits: Vec::new(),
            models: Vec::new(),
            pretrained: Vec::new(),
            capacities: Vec::new(),
            scores: None,
            rescale: false,
            bootstrap: 1000,
        }
    }
}

impl ScalingSettings {
    /// Checks the grid; returns the parsed axes.
    pub fn validate(&self) -> Result<Grid> {
        let bad = |m: String| Err(Error::Config(format!("[scaling] {m}")));
        if self.fractions.is_empty() || self.seeds.is_empty() || self.strategies.is_empty() {
            return bad("needs at least one fraction, one seed and one strategy".into());
        }
        if let Some(f) = self.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return bad(format!("fraction {f} is outside (0, 1]"));
        }
        if has_duplicates(&self.fractions.iter().map(|f| f.to_bits()).collect::<Vec<_>>()) || has_duplicates(&self.seeds) {
            return bad(format!("fractions {:?} and seeds {:?} must not repeat", self.fractions, self.seeds));
        }
        if self.bootstrap < 10 {
            return bad(format!("bootstrap = {} replicates is too few for an interval (use ≥ 100)", self.bootstrap));
        }
        let strategies: Vec<Strategy> = self.strategies.iter().map(|s| s.parse()).collect::<Result<_>>()?;
        let capacities: Vec<Capacity> = self.capacities.iter().map(|s| s.parse()).collect::<Result<_>>()?;
        let splits: Vec<SplitMethod> = self.splits.iter().map(|s| parse_split(s)).collect::<Result<_>>()?;
        let models: Vec<ModelKind> = self
            .models
            .iter()
            .map(|m| ModelKind::parse(m).ok_or_else(|| Error::Config(format!("[scaling] unknown model `{m}` in models: expected gin, fingerprint, smiles or schnet"))))
            .collect::<Result<_>>()?;
        for (name, list) in [("strategies", &self.strategies), ("splits", &self.splits), ("models", &self.models), ("pretrained", &self.pretrained), ("capacities", &self.capacities)] {
            if has_duplicates(list) {
                return bad(format!("{name} {list:?} must not repeat"));
            }
        }
        Ok(Grid { strategies, capacities, splits, models })
    }
}

/// The parsed axes of `[scaling]`; an empty axis takes the value of the pipeline's other sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub strategies: Vec<Strategy>,
    pub capacities: Vec<Capacity>,
    pub splits: Vec<SplitMethod>,
    pub models: Vec<ModelKind>,
}

fn has_duplicates<T: Ord + Clone>(items: &[T]) -> bool {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.windows(2).any(|w| w[0] == w[1])
}

/// A split method by its `[split] method` name.
pub fn parse_split(s: &str) -> Result<SplitMethod> {
    <SplitMethod as clap::ValueEnum>::from_str(s, false)
        .map_err(|_| Error::Config(format!("[scaling] unknown split `{s}`: expected random, python-random, scaffold or imbalanced-scaffold")))
}

/// The name of a split method as written in results (`imbalanced-scaffold`).
pub fn split_name(method: SplitMethod) -> String {
    clap::ValueEnum::to_possible_value(&method).map(|v| v.get_name().to_string()).unwrap_or_else(|| format!("{method:?}"))
}

/// How a cell chooses its training data.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyKind {
    /// The whole training split (every strategy's cell at fraction 1).
    Full,
    /// A seeded uniform subset of ⌊f·N⌋ molecules.
    Random,
    /// A static rule of molpeg-select keeping ⌊f·N⌋ molecules by the scores file.
    Select(Rule),
    /// A dynamic policy keeping ⌊f·N⌋ molecules each epoch.
    Dynamic(String),
}

/// A strategy with the name it has in `results.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub name: String,
    pub kind: StrategyKind,
}

pub const FULL: &str = "full";

impl Strategy {
    pub fn full() -> Strategy {
        Strategy { name: FULL.into(), kind: StrategyKind::Full }
    }
}

impl FromStr for Strategy {
    type Err = Error;
    /// `random`, `select:RULE` (`molpeg`, `random`, `column:NAME`, ...), `dynamic:POLICY`. New kinds
    /// get a prefix here.
    fn from_str(s: &str) -> Result<Self> {
        let kind = if s == "random" {
            StrategyKind::Random
        } else if let Some(rule) = s.strip_prefix("select:") {
            StrategyKind::Select(rule.parse().map_err(|e| Error::Config(format!("[scaling] strategy `{s}`: {e}")))?)
        } else if let Some(policy) = s.strip_prefix("dynamic:") {
            if !POLICY_NAMES.contains(&policy) {
                return Err(Error::Config(format!("[scaling] strategy `{s}`: unknown dynamic policy; available: {}", POLICY_NAMES.join(", "))));
            }
            StrategyKind::Dynamic(policy.to_string())
        } else if s == FULL {
            return Err(Error::Config("[scaling] `full` is not a strategy to list: fraction 1.0 trains on the full split for every strategy".into()));
        } else {
            return Err(Error::Config(format!("[scaling] unknown strategy `{s}`: expected random, select:RULE (e.g. select:molpeg) or dynamic:POLICY (e.g. dynamic:molpeg)")));
        };
        Ok(Strategy { name: s.to_string(), kind })
    }
}

/// Model capacity: GIN layers × hidden width, or Transformer layers × token width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capacity {
    pub layers: usize,
    pub width: usize,
}

impl FromStr for Capacity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parsed = s.split_once('x').and_then(|(l, w)| Some(Capacity { layers: l.trim().parse().ok()?, width: w.trim().parse().ok()? }));
        match parsed {
            Some(c) if c.layers > 0 && c.width > 0 => Ok(c),
            _ => Err(Error::Config(format!("[scaling] capacity `{s}` must be LAYERSxWIDTH with positive numbers, e.g. 3x64"))),
        }
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.layers, self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_capacities_and_splits_parse_with_clear_errors() {
        assert_eq!("random".parse::<Strategy>().unwrap().kind, StrategyKind::Random);
        assert_eq!("select:molpeg".parse::<Strategy>().unwrap().kind, StrategyKind::Select(Rule::Molpeg));
        assert_eq!("select:column:el2n".parse::<Strategy>().unwrap().kind, StrategyKind::Select(Rule::Column("el2n".into())));
        assert_eq!("dynamic:molpeg".parse::<Strategy>().unwrap(), Strategy { name: "dynamic:molpeg".into(), kind: StrategyKind::Dynamic("molpeg".into()) });
        for (bad, says) in [("dynamic:nope", "unknown dynamic policy"), ("full", "fraction 1.0"), ("herding", "unknown strategy"), ("select:??", "strategy `select:??`")] {
            let err = bad.parse::<Strategy>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!("5x300".parse::<Capacity>().unwrap(), Capacity { layers: 5, width: 300 });
        assert_eq!(Capacity { layers: 3, width: 64 }.to_string(), "3x64");
        assert!("0x64".parse::<Capacity>().is_err() && "64".parse::<Capacity>().is_err());
        assert_eq!(parse_split("imbalanced-scaffold").unwrap(), SplitMethod::ImbalancedScaffold);
        assert_eq!(split_name(SplitMethod::ImbalancedScaffold), "imbalanced-scaffold");
        assert!(parse_split("stratified").unwrap_err().to_string().contains("expected random, python-random, scaffold"));
    }

    #[test]
    fn settings_validation() {
        let ok = ScalingSettings::default();
        assert_eq!(ok.validate().unwrap().strategies.len(), 1);
        let models = ScalingSettings { models: vec!["gin".into(), "smiles".into()], ..ok.clone() };
        assert_eq!(models.validate().unwrap().models, [ModelKind::Gin, ModelKind::Smiles]);
        let cases = [
            (ScalingSettings { fractions: vec![0.0, 1.0], ..ok.clone() }, "outside (0, 1]"),
            (ScalingSettings { seeds: vec![1, 1], ..ok.clone() }, "must not repeat"),
            (ScalingSettings { strategies: vec![], ..ok.clone() }, "at least one"),
            (ScalingSettings { capacities: vec!["3x64".into(), "3x64".into()], ..ok.clone() }, "capacities"),
            (ScalingSettings { bootstrap: 1, ..ok.clone() }, "too few"),
            (ScalingSettings { models: vec!["graph".into()], ..ok.clone() }, "unknown model `graph` in models: expected gin, fingerprint, smiles or schnet"),
            (ScalingSettings { models: vec!["gin".into(), "gin".into()], ..ok.clone() }, "models"),
        ];
        for (settings, says) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
