//! Train/valid/test splits and the `molpeg-split` stage.
//!
//! Methods (indices are positions in `graphs.parquet`, which is in source-row order):
//! - `random`: seeded Fisher–Yates shuffle (ChaCha8); the first ⌊f_train·N⌋ go to train, the next
//!   ⌊f_valid·N⌋ to valid, the rest to test.
//! - `python-random`: the same bounds over pretrain-gnns' `random_split` permutation — Python's
//!   `random.seed(seed)` then `random.shuffle(list(range(N)))` ([`crate::python_random`]), index for
//!   index. MolPeg's paper split is this with seed 42 (`config.py`). Positions are `graphs.parquet`
//!   rows, which equal pretrain-gnns' dataset indices when featurize accepts every row (HIV: all
//!   41,127); with rejects the positions shift, and the stage says how many rows were rejected.
//! - `scaffold`: Hu et al. (2019) / DeepChem. Group by Murcko scaffold with chirality (acyclic molecules
//!   share the empty scaffold), sort groups by (size, first index) descending, and walk them: a group
//!   goes to train unless train would exceed f_train·N, then to valid unless train+valid would exceed
//!   (f_train+f_valid)·N, else to test. Deterministic; the seed is unused.
//! - `imbalanced-scaffold`: the "imbalanced" split of the scaling-law paper (Chen et al. 2023,
//!   MolScaling `imbalanced_split`): a scaffold split with fractions 0.7/0.15/0.15, then
//!   ⌊move_fraction·N⌋ (0.05) molecules drawn at random (seeded) from valid and as many from test are
//!   moved into train, so train (~80%) also holds a few molecules of the valid/test scaffolds. The
//!   reference code appends the valid draw to train twice and drops the test draw; we move both draws.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray, UInt32Array};
use arrow::datatypes::{Float32Type, UInt32Type};
use arrow::record_batch::RecordBatch;
use molpeg_core::manifest::{Outcome, StageRun};
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::{graphs, split as split_schema};
use molpeg_core::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Metadata key of `split.parquet`: the method, as a JSON string (`"scaffold"`).
pub const META_SPLIT_METHOD: &str = "molpeg.split_method";
/// Metadata key of `split.parquet`: the seed (JSON number; unused by `scaffold`).
pub const META_SPLIT_SEED: &str = "molpeg.split_seed";
/// Metadata key of `split.parquet`: the train/valid/test fractions (JSON array).
pub const META_SPLIT_FRACTIONS: &str = "molpeg.split_fractions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMethod {
    Random,
    PythonRandom,
    #[default]
    Scaffold,
    ImbalancedScaffold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Valid,
    Test,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Valid, Part::Test];
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Train => split_schema::TRAIN,
            Part::Valid => split_schema::VALID,
            Part::Test => split_schema::TEST,
        }
    }
}

/// The `[split]` section of a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    #[serde(default)]
    pub method: SplitMethod,
    /// Train/valid/test fractions; default 0.8/0.1/0.1 (0.7/0.15/0.15 for imbalanced-scaffold).
    #[serde(default)]
    pub fractions: Option<[f64; 3]>,
    #[serde(default)]
    pub seed: u64,
    /// imbalanced-scaffold only: fraction of N moved from valid, and again from test, into train.
    #[serde(default)]
    pub move_fraction: Option<f64>,
}

impl SplitConfig {
    pub fn resolved_fractions(&self) -> [f64; 3] {
        self.fractions.unwrap_or(match self.method {
            SplitMethod::ImbalancedScaffold => [0.7, 0.15, 0.15],
            _ => [0.8, 0.1, 0.1],
        })
    }

    pub fn resolved_move_fraction(&self) -> f64 {
        self.move_fraction.unwrap_or(0.05)
    }

    /// Checks fractions and move fraction; `path` (the pipeline file) names the error.
    pub fn validate(&self, path: &Path) -> Result<(), Error> {
        let f = self.resolved_fractions();
        if f.iter().any(|x| !(0.0..=1.0).contains(x)) || (f.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return Err(Error::config(path, format!("[split] fractions {f:?} must be in [0, 1] and sum to 1")));
        }
        let m = self.resolved_move_fraction();
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::config(path, format!("[split] move_fraction {m} must be in [0, 1]")));
        }
        Ok(())
    }
}

/// Assigns each of `n` items to a part at random.
pub fn random_split(n: usize, fractions: [f64; 3], seed: u64) -> Vec<Part> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed);
    let n_train = (fractions[0] * n as f64).floor() as usize;
    let n_valid = (fractions[1] * n as f64).floor() as usize;
    let mut parts = vec![Part::Test; n];
    for (rank, &i) in order.iter().enumerate() {
        parts[i] = if rank < n_train { Part::Train } else if rank < n_train + n_valid { Part::Valid } else { Part::Test };
    }
    parts
}

/// pretrain-gnns' `random_split(seed)`: Python's `random.shuffle` of `0..n` after `random.seed(seed)`;
/// train = order[:int(f_train·n)], valid = order[int(f_train·n):int(f_train·n) + int(f_valid·n)], test
/// the rest. Returns the part of each item and the permutation (`order[rank]` = item).
pub fn python_random_split(n: usize, fractions: [f64; 3], seed: u64) -> (Vec<Part>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    crate::python_random::PythonRandom::seed(seed).shuffle(&mut order);
    let n_train = (fractions[0] * n as f64) as usize;
    let n_valid = (fractions[1] * n as f64) as usize;
    let mut parts = vec![Part::Test; n];
    for (rank, &i) in order.iter().enumerate() {
        parts[i] = if rank < n_train { Part::Train } else if rank < n_train + n_valid { Part::Valid } else { Part::Test };
    }
    (parts, order)
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// Groups item indices by scaffold, sorted by (size, first index) descending as in DeepChem: largest
/// first, and among equal sizes the group that appears later comes first.
pub fn scaffold_sets<S: AsRef<str>>(scaffolds: &[S]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in scaffolds.iter().enumerate() {
        groups.entry(s.as_ref()).or_default().push(i);
    }
    let mut sets: Vec<Vec<usize>> = groups.into_values().collect();
    sets.sort_by(|a, b| (b.len(), b[0]).cmp(&(a.len(), a[0])));
    sets
}

/// The deterministic scaffold split of Hu et al. / DeepChem.
pub fn scaffold_split<S: AsRef<str>>(scaffolds: &[S], fractions: [f64; 3]) -> Vec<Part> {
    let n = scaffolds.len() as f64;
    let train_cutoff = fractions[0] * n;
    let valid_cutoff = (fractions[0] + fractions[1]) * n;
    let mut parts = vec![Part::Test; scaffolds.len()];
    let (mut n_train, mut n_valid) = (0usize, 0usize);
    for set in scaffold_sets(scaffolds) {
        let part = if (n_train + set.len()) as f64 > train_cutoff {
            if (n_train + n_valid + set.len()) as f64 > valid_cutoff {
                Part::Test
            } else {
                n_valid += set.len();
                Part::Valid
            }
        } else {
            n_train += set.len();
            Part::Train
        };
        for i in set {
            parts[i] = part;
        }
    }
    parts
}

/// Scaffold split, then ⌊move_fraction·N⌋ random molecules from valid and from test move to train.
pub fn imbalanced_scaffold_split<S: AsRef<str>>(scaffolds: &[S], fractions: [f64; 3], move_fraction: f64, seed: u64) -> Vec<Part> {
    let mut parts = scaffold_split(scaffolds, fractions);
    let n_move = (move_fraction * scaffolds.len() as f64).floor() as usize;
    for (k, from) in [Part::Valid, Part::Test].into_iter().enumerate() {
        let mut members: Vec<usize> = (0..parts.len()).filter(|&i| parts[i] == from).collect();
        shuffle(&mut members, seed.wrapping_add(k as u64));
        for &i in members.iter().take(n_move) {
            parts[i] = Part::Train;
        }
    }
    parts
}

/// Counts per part: molecules and positive labels (summed over tasks).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartCounts {
    pub molecules: usize,
    pub positive_labels: usize,
    pub scaffolds: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub method: SplitMethod,
    pub molecules: usize,
    pub parts: BTreeMap<Part, PartCounts>,
    pub output: PathBuf,
    pub seconds: f64,
}

/// Runs the split stage: `runs/<p>/featurize/graphs.parquet` → `runs/<p>/split/split.parquet`.
pub fn run(pipeline: &Pipeline, runs_root: &Path, config: &SplitConfig, force: bool) -> Result<Outcome<SplitSummary>, Error> {
    config.validate(&pipeline.path)?;
    let input = pipeline.stage_dir(runs_root, "featurize").join("graphs.parquet");
    if !input.exists() {
        return Err(Error::invalid(&input, "not found; run the featurize stage first (`just featurize <pipeline>`)"));
    }
    let dir = pipeline.stage_dir(runs_root, "split");
    let output = dir.join("split.parquet");
    let params = serde_json::json!({
        "method": config.method,
        "fractions": config.resolved_fractions(),
        "seed": config.seed,
        "move_fraction": (config.method == SplitMethod::ImbalancedScaffold).then(|| config.resolved_move_fraction()),
    });
    let stage = StageRun::new("split", &dir, &params, &[&input])?;
    if !force && stage.cached().is_some() {
        return Ok(Outcome::UpToDate(dir));
    }
    stage.begin()?;
    let started = std::time::Instant::now();

    let table = read_graph_keys(&input)?;
    if table.mol_ids.is_empty() {
        return Err(Error::invalid(&input, "holds no molecules; nothing to split"));
    }
    let parts = assign(&table.scaffolds, config);

    let batch = RecordBatch::try_new(
        split_schema::schema(),
        vec![
            Arc::new(UInt32Array::from(table.mol_ids.clone())),
            Arc::new(StringArray::from(parts.iter().map(|p| p.as_str()).collect::<Vec<_>>())),
        ],
    )
    .map_err(|e| Error::arrow(&output, e))?;
    let meta = BTreeMap::from([
        (META_SPLIT_METHOD.to_string(), serde_json::to_string(&config.method).unwrap_or_default()),
        (META_SPLIT_SEED.to_string(), config.seed.to_string()),
        (META_SPLIT_FRACTIONS.to_string(), serde_json::to_string(&config.resolved_fractions()).unwrap_or_default()),
    ]);
    write_batches(&output, split_schema::schema(), split_schema::KIND, &meta, &[batch])?;

    let mut counts: BTreeMap<Part, PartCounts> = Part::ALL.iter().map(|p| (*p, PartCounts::default())).collect();
    let mut scaffolds_seen: HashMap<Part, std::collections::HashSet<&str>> = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        let c = counts.get_mut(part).expect("all parts present");
        c.molecules += 1;
        c.positive_labels += table.positives[i] as usize;
        scaffolds_seen.entry(*part).or_default().insert(&table.scaffolds[i]);
    }
    for (part, set) in scaffolds_seen {
        counts.get_mut(&part).expect("all parts present").scaffolds = set.len();
    }
    let summary = SplitSummary { method: config.method, molecules: parts.len(), parts: counts, output: output.clone(), seconds: started.elapsed().as_secs_f64() };
    stage.finish(&[&output], &summary)?;
    Ok(Outcome::Ran(summary))
}

/// The part of every molecule under `config`, in the order of `scaffolds` (graphs.parquet rows). The
/// split stage writes this; in-process drivers (the scaling sweep's split axis) call it directly.
pub fn assign<S: AsRef<str>>(scaffolds: &[S], config: &SplitConfig) -> Vec<Part> {
    let fractions = config.resolved_fractions();
    match config.method {
        SplitMethod::Random => random_split(scaffolds.len(), fractions, config.seed),
        SplitMethod::PythonRandom => python_random_split(scaffolds.len(), fractions, config.seed).0,
        SplitMethod::Scaffold => scaffold_split(scaffolds, fractions),
        SplitMethod::ImbalancedScaffold => imbalanced_scaffold_split(scaffolds, fractions, config.resolved_move_fraction(), config.seed),
    }
}

/// What a split needs from `graphs.parquet`, in file order.
pub struct GraphKeys {
    pub mol_ids: Vec<u32>,
    pub scaffolds: Vec<String>,
    /// Positive labels per molecule, summed over tasks.
    pub positives: Vec<u32>,
}

pub fn read_graph_keys(path: &Path) -> Result<GraphKeys, Error> {
    let source = ParquetSource::open(path, &graphs::schema())?;
    let mut keys = GraphKeys { mol_ids: Vec::new(), scaffolds: Vec::new(), positives: Vec::new() };
    for batch in source.read_columns(&[graphs::MOL_ID, graphs::SCAFFOLD, graphs::LABELS])? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let column = |name: &str| batch.column_by_name(name).expect("projected column present");
        keys.mol_ids.extend(column(graphs::MOL_ID).as_primitive::<UInt32Type>().values().iter().copied());
        keys.scaffolds.extend(column(graphs::SCAFFOLD).as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()));
        let labels = column(graphs::LABELS).as_list::<i32>();
        for row in 0..labels.len() {
            let values = labels.value(row);
            let values = values.as_primitive::<Float32Type>();
            keys.positives.push(values.iter().filter(|v| *v == Some(1.0)).count() as u32);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffold_split_follows_the_reference_walk() {
        // Sets: "a" ×4 (first 0), "b" ×2 (first 4), "c" ×2 (first 6), "" ×1 (8), "d" ×1 (9).
        let s = ["a", "a", "a", "a", "b", "b", "c", "c", "", "d"];
        let sets = scaffold_sets(&s);
        assert_eq!(sets, vec![vec![0, 1, 2, 3], vec![6, 7], vec![4, 5], vec![9], vec![8]]);
        let parts = scaffold_split(&s, [0.6, 0.2, 0.2]);
        // a → train (4 ≤ 6); c → train (6 ≤ 6); b → 8 > 6, valid? 6+0+2=8 ≤ 8 → valid;
        // d → 6+2+1 = 9 > 8 → test; "" → test.
        use Part::*;
        assert_eq!(parts, vec![Train, Train, Train, Train, Valid, Valid, Train, Train, Test, Test]);
    }

    #[test]
    fn random_split_is_seeded_disjoint_and_sized() {
        let a = random_split(1000, [0.8, 0.1, 0.1], 7);
        assert_eq!(a, random_split(1000, [0.8, 0.1, 0.1], 7));
        assert_ne!(a, random_split(1000, [0.8, 0.1, 0.1], 8));
        let count = |p| a.iter().filter(|&&x| x == p).count();
        assert_eq!((count(Part::Train), count(Part::Valid), count(Part::Test)), (800, 100, 100));
    }

    /// Python's `random_split` of pretrain-gnns / MolPeg, computed by the venv's Python itself, for
    /// several seeds and sizes (HIV's 41,127 included).
    #[test]
    fn python_random_split_equals_python_for_every_seed_and_size() {
        let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
        let cases = [(41_127usize, 42u64), (41_127, 0), (2_039, 42), (10, 1), (1, 5), (100_000, 123_456_789_012)];
        let script = "import random, sys, json\nout = []\nfor n, seed in json.loads(sys.argv[1]):\n    random.seed(seed); idx = list(range(n)); random.shuffle(idx)\n    out.append([idx[:int(0.8 * n)], idx[int(0.8 * n):int(0.1 * n) + int(0.8 * n)]])\nprint(json.dumps(out))";
        let arg = serde_json::to_string(&cases).unwrap();
        let out = std::process::Command::new(&python).args(["-c", script, &arg]).output().expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expected: Vec<(Vec<usize>, Vec<usize>)> = serde_json::from_slice(&out.stdout).unwrap();
        for (&(n, seed), (train, valid)) in cases.iter().zip(expected) {
            let (parts, order) = python_random_split(n, [0.8, 0.1, 0.1], seed);
            assert_eq!(&order[..train.len()], &train[..], "train order, n = {n}, seed = {seed}");
            assert_eq!(&order[train.len()..train.len() + valid.len()], &valid[..], "valid order, n = {n}, seed = {seed}");
            for (i, part) in parts.iter().enumerate() {
                let want = if train.contains(&i) { Part::Train } else if valid.contains(&i) { Part::Valid } else { Part::Test };
                if n <= 2_039 {
                    assert_eq!(*part, want, "item {i}, n = {n}, seed = {seed}");
                }
            }
            let count = |p| parts.iter().filter(|&&x| x == p).count();
            assert_eq!((count(Part::Train), count(Part::Valid)), (train.len(), valid.len()));
        }
        // HIV with seed 42: the paper's sizes.
        let (parts, _) = python_random_split(41_127, [0.8, 0.1, 0.1], 42);
        let count = |p| parts.iter().filter(|&&x| x == p).count();
        assert_eq!((count(Part::Train), count(Part::Valid), count(Part::Test)), (32_901, 4_112, 4_114));
    }

    #[test]
    fn imbalanced_moves_the_requested_count_into_train() {
        let scaffolds: Vec<String> = (0..200).map(|i| format!("s{}", i / 3)).collect();
        let base = scaffold_split(&scaffolds, [0.7, 0.15, 0.15]);
        let moved = imbalanced_scaffold_split(&scaffolds, [0.7, 0.15, 0.15], 0.05, 1);
        let count = |v: &[Part], p| v.iter().filter(|&&x| x == p).count();
        assert_eq!(count(&moved, Part::Train), count(&base, Part::Train) + 20);
        assert_eq!(count(&moved, Part::Valid), count(&base, Part::Valid) - 10);
        assert_eq!(count(&moved, Part::Test), count(&base, Part::Test) - 10);
        // Only valid/test molecules moved, and only into train.
        assert!(base.iter().zip(&moved).all(|(b, m)| b == m || (*m == Part::Train && *b != Part::Train)));
        assert_eq!(moved, imbalanced_scaffold_split(&scaffolds, [0.7, 0.15, 0.15], 0.05, 1));
    }
}
