//! The in-memory dataset, read once from `graphs.parquet` + `split.parquet` (+ `coreset.parquet`).
//!
//! [`GraphStore`] keeps every molecule in flat arrays with offsets, already in the form the collator
//! copies from: each node's incoming neighbours sorted with its self-loop included (so a batch's
//! adjacency is a CSR matrix by concatenation), and each node's counts of incoming bond types and
//! directions (so the per-layer edge-embedding sum is one small GEMM, see [`crate::model`]).
//! [`Dataset`] adds the split and the task description; [`load_coreset`] turns a coreset file into a
//! training plan of [`Sample`]s.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, GenericListArray, OffsetSizeTrait, PrimitiveArray};
use arrow::datatypes::{ArrowPrimitiveType, Float32Type, Schema, SchemaRef, UInt16Type, UInt32Type, UInt8Type};
use arrow::record_batch::RecordBatch;
use molpeg_core::columns;
use molpeg_core::parquet_io::ParquetSource;
use molpeg_core::schema::{coreset, graphs, meta, split};
use serde::{Deserialize, Serialize};

use crate::model::ModelKind;
use crate::{Error, Result};

/// Atom-type vocabulary: 0..=118 atomic-number indices (118 = other), 119 the pretraining mask token.
pub const ATOM_TYPES: usize = 120;
pub const ATOM_TYPE_MASK: u8 = 119;
const ATOM_TYPE_MAX_DATA: u8 = 118;
/// Chirality tags 0..=3 (3 = other).
pub const CHIRALITY_TAGS: usize = 4;
/// Bond-type vocabulary: 0 single, 1 double, 2 triple, 3 aromatic, 4 other, 5 self-loop, 6 mask.
pub const BOND_TYPES: usize = 7;
pub const BOND_SELF_LOOP: u8 = 5;
pub const BOND_MASK: u8 = 6;
const BOND_TYPE_MAX_DATA: u8 = 4;
/// Bond directions 0..=3 (3 = other); self-loops use direction 0 like Hu et al.
pub const BOND_DIRECTIONS: usize = 4;
/// Width of a node's incoming-edge feature counts: bond types, then bond directions.
pub const EDGE_FEATURES: usize = BOND_TYPES + BOND_DIRECTIONS;

/// What the labels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Binary,
    Regression,
}

impl TaskKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "binary" => Some(TaskKind::Binary),
            "regression" => Some(TaskKind::Regression),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Binary => "binary",
            TaskKind::Regression => "regression",
        }
    }
}

/// One training sample of an epoch plan: a row of the [`GraphStore`] and its loss weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub index: u32,
    pub weight: f32,
}

impl Sample {
    pub fn unweighted(indices: &[u32]) -> Vec<Sample> {
        indices.iter().map(|&index| Sample { index, weight: 1.0 }).collect()
    }
}

/// Every molecule of a dataset in flat arrays plus offsets. Graph `g` owns nodes
/// `node_offsets[g]..node_offsets[g + 1]`; node `v` (global) owns adjacency entries
/// `adj_offsets[v]..adj_offsets[v + 1]` holding its in-neighbours' local indices, sorted, self included.
#[derive(Debug, Clone, Default)]
pub struct GraphStore {
    pub mol_ids: Vec<u32>,
    pub num_tasks: usize,
    node_offsets: Vec<u32>,
    atoms: Vec<[u8; 2]>,
    adj_offsets: Vec<u32>,
    adj_src: Vec<u16>,
    edge_counts: Vec<[u8; EDGE_FEATURES]>,
    /// `len() × num_tasks`, NaN where a label is missing.
    labels: Vec<f32>,
    /// Morgan on-bits of every molecule, for the fingerprint model ([`attach_fingerprints`]).
    pub fingerprints: Option<FingerprintTokens>,
    /// Canonical SMILES tokens of every molecule, for the SMILES model ([`attach_smiles`]).
    pub smiles: Option<SmilesTokens>,
    /// 3D atoms (hydrogens included) of every molecule, for 3D models ([`attach_atoms3d`]).
    pub atoms3d: Option<Atoms3d>,
}

/// Every molecule's 3D atoms in flat arrays: molecule `g` owns atoms `offsets[g]..offsets[g + 1]`
/// of `atomic_numbers` and `positions` (ångström), hydrogens included, in the geometry's order
/// (`atoms3d.parquet`, [`molpeg_core::schema::atoms3d`]); not the 2D graph's atom order.
#[derive(Debug, Clone, PartialEq)]
pub struct Atoms3d {
    pub offsets: Vec<u32>,
    pub atomic_numbers: Vec<u8>,
    pub positions: Vec<[f32; 3]>,
}

impl Default for Atoms3d {
    fn default() -> Self {
        Atoms3d { offsets: vec![0], atomic_numbers: Vec::new(), positions: Vec::new() }
    }
}

impl Atoms3d {
    /// Appends one molecule; `atomic_numbers` and `positions` have one entry per atom.
    pub fn push(&mut self, atomic_numbers: &[u8], positions: &[[f32; 3]]) -> std::result::Result<(), String> {
        if atomic_numbers.len() != positions.len() {
            return Err(format!("{} atomic numbers but {} positions", atomic_numbers.len(), positions.len()));
        }
        if atomic_numbers.is_empty() {
            return Err("a molecule with no 3D atoms".into());
        }
        self.atomic_numbers.extend_from_slice(atomic_numbers);
        self.positions.extend_from_slice(positions);
        self.offsets.push(self.atomic_numbers.len() as u32);
        Ok(())
    }

    /// Molecules held.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Atoms of molecule `g`.
    pub fn range(&self, g: usize) -> std::ops::Range<usize> {
        self.offsets[g] as usize..self.offsets[g + 1] as usize
    }

    /// Atomic numbers and positions of molecule `g`.
    pub fn molecule(&self, g: usize) -> (&[u8], &[[f32; 3]]) {
        let r = self.range(g);
        (&self.atomic_numbers[r.clone()], &self.positions[r])
    }
}

/// Token sequences of every molecule in one flat buffer: molecule `g` owns
/// `ids[offsets[g]..offsets[g + 1]]` (so batching copies slices, and nothing is allocated per molecule).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenTable {
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl Default for TokenTable {
    fn default() -> Self {
        TokenTable { offsets: vec![0], ids: Vec::new() }
    }
}

impl TokenTable {
    pub fn push(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.ids.extend(ids);
        self.offsets.push(self.ids.len() as u32);
    }
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn row(&self, g: usize) -> &[u32] {
        &self.ids[self.offsets[g] as usize..self.offsets[g + 1] as usize]
    }
}

/// The fingerprint model's input: the positions of the set bits of each molecule's Morgan
/// fingerprint (`fingerprints.parquet`, or the predict-time featurizer), ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintTokens {
    pub bits: usize,
    /// Morgan radius, when the file records it.
    pub radius: Option<u32>,
    pub table: TokenTable,
}

impl FingerprintTokens {
    pub fn new(bits: usize, radius: Option<u32>) -> Self {
        FingerprintTokens { bits, radius, table: TokenTable::default() }
    }

    /// Why a packed fingerprint cannot be a fingerprint model's input: it has no bit set, so the
    /// model would get no token.
    pub fn check(packed: &[u8]) -> std::result::Result<(), String> {
        if packed.iter().any(|&b| b != 0) {
            Ok(())
        } else {
            Err("the Morgan fingerprint has no bit set, so the fingerprint model has no input token".into())
        }
    }

    /// Appends one molecule's packed fingerprint (bit `i` at [`molpeg_core::schema::fingerprints::bit`]),
    /// or says why it cannot ([`FingerprintTokens::check`]) and appends nothing.
    pub fn push_packed(&mut self, packed: &[u8]) -> std::result::Result<(), String> {
        FingerprintTokens::check(packed)?;
        let bits = self.bits.min(8 * packed.len());
        self.table.push((0..bits).filter(|&i| molpeg_core::schema::fingerprints::bit(packed, i)).map(|i| i as u32));
        Ok(())
    }
}

/// The SMILES model's input: each molecule's canonical SMILES as atom-level tokens
/// ([`molpeg_core::smiles_tokens::tokenize`]), stored as ids into `names`, the dataset's own list of
/// distinct tokens. A model maps these ids to its vocabulary when it batches
/// ([`crate::model::Model::token_input`]), so one store serves vocabularies of any split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmilesTokens {
    pub names: Vec<String>,
    index: HashMap<String, u32>,
    pub table: TokenTable,
}

impl SmilesTokens {
    /// Appends one molecule's SMILES; an untokenizable string is an error saying where.
    pub fn push(&mut self, smiles: &str) -> std::result::Result<(), String> {
        let tokens = SmilesTokens::tokenize(smiles)?;
        self.push_tokens(&tokens);
        Ok(())
    }

    /// The tokens of `smiles`, or why it cannot be a SMILES model's input (it does not tokenize, or is
    /// empty).
    pub fn tokenize(smiles: &str) -> std::result::Result<Vec<&str>, String> {
        let tokens = molpeg_core::smiles_tokens::tokenize(smiles).map_err(|e| format!("SMILES `{smiles}` does not tokenize: {e}"))?;
        if tokens.is_empty() {
            return Err("empty SMILES".into());
        }
        Ok(tokens)
    }

    /// Appends one molecule's tokens (from [`SmilesTokens::tokenize`]).
    pub fn push_tokens(&mut self, tokens: &[&str]) {
        let (names, index) = (&mut self.names, &mut self.index);
        let ids: Vec<u32> = tokens
            .iter()
            .map(|&t| {
                *index.entry(t.to_string()).or_insert_with(|| {
                    names.push(t.to_string());
                    names.len() as u32 - 1
                })
            })
            .collect();
        self.table.push(ids);
    }

    /// Per-token counts over the molecules `indices`, by token name.
    pub fn counts(&self, indices: &[u32]) -> Vec<(&str, usize)> {
        let mut counts = vec![0usize; self.names.len()];
        for &g in indices {
            for &id in self.table.row(g as usize) {
                counts[id as usize] += 1;
            }
        }
        self.names.iter().map(String::as_str).zip(counts).filter(|&(_, n)| n > 0).collect()
    }
}

/// The parts of one graph, as read from a row of `graphs.parquet`.
#[derive(Debug, Clone, Copy)]
pub struct GraphView<'a> {
    pub atoms: &'a [[u8; 2]],
    /// Directed edges `[source, target]`, local node indices.
    pub edges: &'a [[u16; 2]],
    pub bonds: &'a [[u8; 2]],
    pub labels: &'a [f32],
}

impl GraphStore {
    pub fn new(num_tasks: usize) -> Self {
        GraphStore { num_tasks, node_offsets: vec![0], adj_offsets: vec![0], ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.mol_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.mol_ids.is_empty()
    }
    pub fn num_nodes(&self, g: usize) -> usize {
        (self.node_offsets[g + 1] - self.node_offsets[g]) as usize
    }
    pub fn total_nodes(&self) -> usize {
        self.atoms.len()
    }
    /// Directed edges of the whole store, self-loops excluded.
    pub fn total_edges(&self) -> usize {
        self.adj_src.len() - self.atoms.len()
    }
    pub fn labels(&self, g: usize) -> &[f32] {
        &self.labels[g * self.num_tasks..(g + 1) * self.num_tasks]
    }
    pub fn node_range(&self, g: usize) -> std::ops::Range<usize> {
        self.node_offsets[g] as usize..self.node_offsets[g + 1] as usize
    }
    pub fn atoms(&self, g: usize) -> &[[u8; 2]] {
        &self.atoms[self.node_range(g)]
    }
    pub(crate) fn adjacency(&self, node: usize) -> &[u16] {
        &self.adj_src[self.adj_offsets[node] as usize..self.adj_offsets[node + 1] as usize]
    }
    pub(crate) fn adj_len(&self, g: usize) -> usize {
        let r = self.node_range(g);
        (self.adj_offsets[r.end] - self.adj_offsets[r.start]) as usize
    }
    pub(crate) fn edge_counts(&self, g: usize) -> &[[u8; EDGE_FEATURES]] {
        &self.edge_counts[self.node_range(g)]
    }

    /// Appends one molecule. The error message says what is wrong with it; the caller adds file and row.
    /// `scratch` is reused between calls so that loading allocates nothing per molecule.
    pub fn push(&mut self, mol_id: u32, graph: GraphView<'_>, scratch: &mut Vec<(u16, u16)>) -> std::result::Result<(), String> {
        let n = graph.atoms.len();
        if n == 0 {
            return Err("molecule has no atoms".into());
        }
        if n > u16::MAX as usize {
            return Err(format!("molecule has {n} atoms; at most {} are supported", u16::MAX));
        }
        if let Some((i, a)) = graph.atoms.iter().enumerate().find(|(_, a)| a[0] > ATOM_TYPE_MAX_DATA || a[1] as usize >= CHIRALITY_TAGS) {
            return Err(format!(
                "atom {i} has features {a:?}; expected an atomic-number index 0..={ATOM_TYPE_MAX_DATA} and a chirality tag 0..={}",
                CHIRALITY_TAGS - 1
            ));
        }
        if graph.edges.len() != graph.bonds.len() {
            return Err(format!("{} edges but {} bond feature rows", graph.edges.len(), graph.bonds.len()));
        }
        if graph.labels.len() != self.num_tasks {
            return Err(format!(
                "{} labels but the file's task list ({}) has {} tasks",
                graph.labels.len(),
                meta::TASK_NAMES,
                self.num_tasks
            ));
        }
        let node_base = self.atoms.len();
        let mut counts = vec![[0u8; EDGE_FEATURES]; n];
        scratch.clear();
        for (k, (&[s, t], &[bt, bd])) in graph.edges.iter().zip(graph.bonds).enumerate() {
            if s as usize >= n || t as usize >= n {
                return Err(format!("edge {k} ({s}→{t}) points past the molecule's {n} atoms"));
            }
            if s == t {
                return Err(format!("edge {k} is a self-loop on atom {s}; self-loops are added by the model, not stored"));
            }
            if bt > BOND_TYPE_MAX_DATA || bd as usize >= BOND_DIRECTIONS {
                return Err(format!(
                    "edge {k} has bond features [{bt}, {bd}]; expected a bond type 0..={BOND_TYPE_MAX_DATA} and a direction 0..={}",
                    BOND_DIRECTIONS - 1
                ));
            }
            let c = &mut counts[t as usize];
            if c[BOND_TYPES] as usize + c[BOND_TYPES + 1] as usize + c[BOND_TYPES + 2] as usize + c[BOND_TYPES + 3] as usize >= 254 {
                return Err(format!("atom {t} has more than 253 incoming edges"));
            }
            c[bt as usize] += 1;
            c[BOND_TYPES + bd as usize] += 1;
            scratch.push((t, s));
        }
        for (i, c) in counts.iter_mut().enumerate() {
            c[BOND_SELF_LOOP as usize] += 1;
            c[BOND_TYPES] += 1;
            scratch.push((i as u16, i as u16));
        }
        scratch.sort_unstable();
        if let Some(w) = scratch.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("duplicate directed edge {}→{}", w[0].1, w[0].0));
        }
        // Rows of the in-neighbour CSR, in node order (scratch is sorted by target).
        let mut pos = 0;
        for v in 0..n {
            while pos < scratch.len() && scratch[pos].0 as usize == v {
                self.adj_src.push(scratch[pos].1);
                pos += 1;
            }
            self.adj_offsets.push(self.adj_src.len() as u32);
        }
        debug_assert_eq!(self.adj_offsets.len(), node_base + n + 1);
        self.atoms.extend_from_slice(graph.atoms);
        self.edge_counts.extend_from_slice(&counts);
        self.node_offsets.push(self.atoms.len() as u32);
        self.labels.extend_from_slice(graph.labels);
        self.mol_ids.push(mol_id);
        Ok(())
    }

    /// Per-task mean and standard deviation of the labels of `indices` (missing labels skipped); used
    /// to standardize regression targets. A task without labels or variance gets mean 0 / std 1.
    pub fn label_moments(&self, indices: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let t = self.num_tasks;
        let (mut sum, mut sq, mut count) = (vec![0f64; t], vec![0f64; t], vec![0usize; t]);
        for &g in indices {
            for (j, &y) in self.labels(g as usize).iter().enumerate() {
                if !y.is_nan() {
                    sum[j] += y as f64;
                    sq[j] += (y as f64) * (y as f64);
                    count[j] += 1;
                }
            }
        }
        let mut mean = vec![0f32; t];
        let mut std = vec![1f32; t];
        for j in 0..t {
            if count[j] > 0 {
                let m = sum[j] / count[j] as f64;
                let var = (sq[j] / count[j] as f64 - m * m).max(0.0);
                mean[j] = m as f32;
                if var > 1e-12 {
                    std[j] = var.sqrt() as f32;
                }
            }
        }
        (mean, std)
    }
}

/// A dataset ready for training: the graphs, the task description and the split (as store indices).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub store: Arc<GraphStore>,
    pub task_names: Vec<String>,
    pub task_kind: TaskKind,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
    pub graphs_path: PathBuf,
    pub split_path: PathBuf,
    index: HashMap<u32, u32>,
}

/// The columns of `graphs.parquet` the trainer reads, in the order [`append_rows`] expects; other
/// columns may be absent. Pretraining reads all but the last (labels).
const TRAIN_COLUMNS: [&str; 5] = [graphs::MOL_ID, graphs::ATOM_HU, graphs::EDGE_INDEX, graphs::BOND_HU, graphs::LABELS];

/// The schema subset a reader of `columns` checks the file against.
fn graphs_columns(columns: &[&str]) -> SchemaRef {
    let full = graphs::schema();
    Arc::new(Schema::new(columns.iter().map(|c| full.field_with_name(c).expect("schema module has the column").clone()).collect::<Vec<_>>()))
}

impl Dataset {
    /// Reads `graphs.parquet` and `split.parquet`. Molecules of `graphs` absent from `split` are ignored;
    /// a split id absent from `graphs` is an error (the split is stale).
    pub fn load(graphs_path: &Path, split_path: &Path) -> Result<Dataset> {
        Dataset::load_for(graphs_path, split_path, ModelKind::Gin)
    }

    /// [`Dataset::load`] with the inputs a `kind` model reads besides the graph
    /// ([`read_graphs_for`]).
    pub fn load_for(graphs_path: &Path, split_path: &Path, kind: ModelKind) -> Result<Dataset> {
        let (store, task_names, task_kind) = read_graphs_for(graphs_path, kind)?;
        let mut rows: Vec<(u32, String)> = Vec::new();
        let source = ParquetSource::open_user(split_path, &split::schema())?;
        for batch in source.collect_columns(&[split::MOL_ID, split::SPLIT])? {
            let first = rows.len();
            let ids = columns::u32_values(split_path, split::MOL_ID, batch.column(0), first)?;
            let names = columns::strings(split_path, split::SPLIT, batch.column(1), first)?;
            rows.extend(ids.into_iter().zip(names));
        }
        Dataset::with_split(Arc::new(store), task_names, task_kind, graphs_path, split_path, &rows)
    }

    /// A dataset over already-loaded graphs with a split given as `(mol_id, part name)` rows, e.g. one
    /// computed in memory by a sweep; `split_path` names the split in errors. Validated like
    /// [`Dataset::load`].
    pub fn with_split<S: AsRef<str>>(
        store: Arc<GraphStore>,
        task_names: Vec<String>,
        task_kind: TaskKind,
        graphs_path: &Path,
        split_path: &Path,
        rows: &[(u32, S)],
    ) -> Result<Dataset> {
        let index: HashMap<u32, u32> = store.mol_ids.iter().enumerate().map(|(i, &m)| (m, i as u32)).collect();
        let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = vec![false; store.len()];
        for (row, (id, name)) in rows.iter().enumerate() {
            let row_err = |message: String| Error::Row { path: split_path.to_path_buf(), row, mol_id: *id, message };
            let &g = index.get(id).ok_or_else(|| {
                row_err(format!("mol_id is not in {}; the split is stale: re-run the split stage (--force)", graphs_path.display()))
            })?;
            if std::mem::replace(&mut seen[g as usize], true) {
                return Err(row_err("mol_id appears twice in the split".into()));
            }
            match name.as_ref() {
                split::TRAIN => train.push(g),
                split::VALID => valid.push(g),
                split::TEST => test.push(g),
                other => {
                    return Err(row_err(format!(
                        "unknown split `{other}`; expected `{}`, `{}` or `{}`",
                        split::TRAIN,
                        split::VALID,
                        split::TEST
                    )))
                }
            }
        }
        if train.is_empty() {
            return Err(Error::data(split_path, "the train split is empty; nothing to train on"));
        }
        Ok(Dataset {
            store,
            task_names,
            task_kind,
            train,
            valid,
            test,
            graphs_path: graphs_path.to_path_buf(),
            split_path: split_path.to_path_buf(),
            index,
        })
    }

    pub fn num_tasks(&self) -> usize {
        self.task_names.len()
    }

    /// The store index of a molecule id.
    pub fn index_of(&self, mol_id: u32) -> Option<u32> {
        self.index.get(&mol_id).copied()
    }
}

/// [`read_graphs`], plus the inputs a `kind` model reads: the fingerprints next to `path`
/// ([`fingerprints_path`]), the SMILES tokens, or the 3D atoms next to `path` ([`atoms3d_path`]).
pub fn read_graphs_for(path: &Path, kind: ModelKind) -> Result<(GraphStore, Vec<String>, TaskKind)> {
    let (mut store, names, task_kind) = read_graphs(path)?;
    attach_inputs(&mut store, path, kind)?;
    Ok((store, names, task_kind))
}

/// Attaches what a `kind` model reads besides the graph to a store read from `graphs_path` (nothing for
/// the GIN; a table already attached is kept).
pub fn attach_inputs(store: &mut GraphStore, graphs_path: &Path, kind: ModelKind) -> Result<()> {
    match kind {
        ModelKind::Gin => Ok(()),
        ModelKind::Fingerprint if store.fingerprints.is_none() => attach_fingerprints(store, &fingerprints_path(graphs_path)),
        ModelKind::Smiles if store.smiles.is_none() => attach_smiles(store, graphs_path),
        ModelKind::Schnet if store.atoms3d.is_none() => attach_atoms3d(store, &atoms3d_path(graphs_path)),
        ModelKind::Fingerprint | ModelKind::Smiles | ModelKind::Schnet => Ok(()),
    }
}

/// Where the featurize stage writes the 3D atoms of `graphs_path`: the same directory.
pub fn atoms3d_path(graphs_path: &Path) -> PathBuf {
    graphs_path.with_file_name(molpeg_core::schema::atoms3d::FILE)
}

/// Reads `atoms3d.parquet` into `store.atoms3d`, aligned with the store's molecules by `mol_id`: a
/// molecule of the store without 3D atoms is an error naming it and what makes the file.
pub fn attach_atoms3d(store: &mut GraphStore, path: &Path) -> Result<()> {
    use molpeg_core::schema::atoms3d;
    if !molpeg_core::dataset::exists(path) {
        return Err(Error::data(path, "not found: a 3D model reads the featurize stage's atoms3d.parquet (3D atoms of every molecule); featurize a dataset with geometry columns, or with `geometry = \"etkdg\"` in [featurize]"));
    }
    let source = ParquetSource::open(path, &atoms3d::schema())?;
    let position: HashMap<u32, usize> = store.mol_ids.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    type Molecule = (Vec<u8>, Vec<[f32; 3]>);
    let mut rows: Vec<Option<Molecule>> = vec![None; store.len()];
    let mut first = 0;
    for batch in source.read_columns(&[atoms3d::MOL_ID, atoms3d::ATOMIC_NUMBERS, atoms3d::POSITIONS])? {
        let batch = batch.map_err(|e| molpeg_core::Error::arrow(path, e))?;
        let ids = columns::u32_values(path, atoms3d::MOL_ID, batch.column(0), first)?;
        let numbers = batch.column(1).as_any().downcast_ref::<arrow::array::ListArray>().ok_or_else(|| Error::data(path, "atomic_numbers is not a list"))?;
        let positions = batch.column(2).as_any().downcast_ref::<arrow::array::ListArray>().ok_or_else(|| Error::data(path, "positions is not a list"))?;
        let number_values = numbers.values().as_any().downcast_ref::<arrow::array::UInt8Array>().ok_or_else(|| Error::data(path, "atomic_numbers holds no uint8"))?;
        let xyz = positions.values().as_any().downcast_ref::<arrow::array::FixedSizeListArray>().ok_or_else(|| Error::data(path, "positions holds no fixed-size lists"))?;
        let xyz = xyz.values().as_any().downcast_ref::<arrow::array::Float32Array>().ok_or_else(|| Error::data(path, "positions holds no float32"))?;
        for (i, id) in ids.into_iter().enumerate() {
            let Some(&g) = position.get(&id) else { continue };
            let (a, b) = (numbers.value_offsets()[i] as usize, numbers.value_offsets()[i + 1] as usize);
            let (c, d) = (positions.value_offsets()[i] as usize, positions.value_offsets()[i + 1] as usize);
            let z = number_values.values()[a..b].to_vec();
            let pos = (c..d).map(|k| [xyz.value(3 * k), xyz.value(3 * k + 1), xyz.value(3 * k + 2)]).collect();
            rows[g] = Some((z, pos));
        }
        first += batch.num_rows();
    }
    let mut table = Atoms3d::default();
    for (g, row) in rows.into_iter().enumerate() {
        let (z, pos) = row.ok_or_else(|| Error::data(path, format!("mol_id {} has no 3D atoms here; re-run the featurize stage", store.mol_ids[g])))?;
        table.push(&z, &pos).map_err(|m| Error::data(path, format!("mol_id {}: {m}", store.mol_ids[g])))?;
    }
    store.atoms3d = Some(table);
    Ok(())
}

/// Where the featurize stage writes the fingerprints of `graphs_path`: the same directory.
pub fn fingerprints_path(graphs_path: &Path) -> PathBuf {
    graphs_path.with_file_name(molpeg_core::schema::fingerprints::FILE)
}

/// The files a `kind` model reads besides `graphs_path` (the SMILES model reads graphs.parquet
/// itself): a training stage's extra manifest inputs. A missing one is an error saying what makes it.
pub fn model_input_files(graphs_path: &Path, kind: ModelKind) -> Result<Vec<PathBuf>> {
    match kind {
        ModelKind::Gin | ModelKind::Smiles => Ok(Vec::new()),
        ModelKind::Fingerprint => {
            let path = fingerprints_path(graphs_path);
            require_fingerprints(&path)?;
            Ok(vec![path])
        }
        ModelKind::Schnet => {
            let path = atoms3d_path(graphs_path);
            if !molpeg_core::dataset::exists(&path) {
                return Err(Error::data(
                    &path,
                    "not found: the schnet model reads the featurize stage's atoms3d.parquet (3D atoms with hydrogens); featurize a dataset with 3D geometry (e.g. pipelines/qm9.toml: `just featurize qm9`)",
                ));
            }
            Ok(vec![path])
        }
    }
}

/// Reads the columns of `graphs.parquet` the trainer needs into a [`GraphStore`].
pub fn read_graphs(path: &Path) -> Result<(GraphStore, Vec<String>, TaskKind)> {
    let source = ParquetSource::open(path, &graphs_columns(&TRAIN_COLUMNS))?;
    let names_json = source.meta(meta::TASK_NAMES).ok_or_else(|| {
        Error::data(path, format!("file metadata has no `{}`; re-run the featurize stage with this molpeg version", meta::TASK_NAMES))
    })?;
    let task_names: Vec<String> = serde_json::from_str(names_json)
        .map_err(|e| Error::data(path, format!("metadata `{}` is not a JSON array of strings: {e}", meta::TASK_NAMES)))?;
    if task_names.is_empty() {
        return Err(Error::data(path, format!("metadata `{}` lists no task", meta::TASK_NAMES)));
    }
    let kind_str = source.meta(meta::TASK_TYPE).unwrap_or("binary");
    let task_kind = TaskKind::parse(kind_str)
        .ok_or_else(|| Error::data(path, format!("metadata `{}` is `{kind_str}`; expected `binary` or `regression`", meta::TASK_TYPE)))?;

    let mut store = GraphStore::new(task_names.len());
    let mut appender = Appender::default();
    let mut row = 0usize;
    for batch in source.read_columns(&TRAIN_COLUMNS)? {
        let batch = batch.map_err(|e| Error::Core(molpeg_core::Error::arrow(path, e)))?;
        appender.append(&mut store, &batch, 0..batch.num_rows(), row, path)?;
        row += batch.num_rows();
    }
    let mut ids = store.mol_ids.clone();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::data(path, format!("mol_id {} appears more than once", w[0])));
    }
    if store.is_empty() {
        return Err(Error::data(path, "the file holds no molecule"));
    }
    Ok((store, task_names, task_kind))
}

/// Appends record-batch rows (columns as in [`TRAIN_COLUMNS`], labels optional) to a [`GraphStore`],
/// reusing its buffers so that loading allocates nothing per molecule.
#[derive(Default)]
struct Appender {
    scratch: Vec<(u16, u16)>,
    labels_row: Vec<f32>,
}

impl Appender {
    /// Appends `rows` of `batch`; `first_row` is the file row of the batch's row 0 (for errors).
    fn append(&mut self, store: &mut GraphStore, batch: &RecordBatch, rows: Range<usize>, first_row: usize, path: &Path) -> Result<()> {
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let atoms = FixedLists::<UInt8Type>::new(batch.column(1), graphs::ATOM_HU_WIDTH as usize, path)?;
        let edges = FixedLists::<UInt16Type>::new(batch.column(2), 2, path)?;
        let bonds = FixedLists::<UInt8Type>::new(batch.column(3), graphs::BOND_HU_WIDTH as usize, path)?;
        let labels = if batch.num_columns() > 4 { Some(LabelLists::new(batch.column(4), path)?) } else { None };
        for i in rows {
            let mol_id = ids.value(i);
            match &labels {
                Some(l) => l.row(i, &mut self.labels_row),
                None => self.labels_row.clear(),
            }
            let view = GraphView { atoms: as_pairs(atoms.row(i)), edges: as_pairs(edges.row(i)), bonds: as_pairs(bonds.row(i)), labels: &self.labels_row };
            store.push(mol_id, view, &mut self.scratch).map_err(|message| Error::Row { path: path.to_path_buf(), row: first_row + i, mol_id, message })?;
        }
        Ok(())
    }
}

/// A `graphs.parquet` read a range of rows at a time, for datasets that should not sit in memory
/// whole (pretraining on MOSES). Labels are not read: a chunk is a [`GraphStore`] with no tasks.
#[derive(Debug, Clone)]
pub struct GraphChunks {
    pub path: PathBuf,
    /// Molecules used: the file's rows, or the first `limit` of them.
    pub rows: usize,
    /// First file row of each row group, and the file's row count at the end.
    group_starts: Vec<usize>,
}

/// The columns a chunk reads (no labels).
const CHUNK_COLUMNS: [&str; 4] = [TRAIN_COLUMNS[0], TRAIN_COLUMNS[1], TRAIN_COLUMNS[2], TRAIN_COLUMNS[3]];

impl GraphChunks {
    /// Opens `path` (checking its columns) and uses its first `limit` rows, or all of them.
    pub fn open(path: &Path, limit: Option<usize>) -> Result<GraphChunks> {
        let source = ParquetSource::open(path, &graphs_columns(&CHUNK_COLUMNS))?;
        let mut group_starts = vec![0];
        for n in source.row_group_rows() {
            group_starts.push(group_starts.last().expect("starts non-empty") + n);
        }
        let rows = limit.map_or(source.num_rows, |l| l.min(source.num_rows));
        if rows == 0 {
            return Err(Error::data(path, "the file holds no molecule"));
        }
        Ok(GraphChunks { path: path.to_path_buf(), rows, group_starts })
    }

    /// The molecules split into consecutive row ranges of at most `chunk_rows` each.
    pub fn ranges(&self, chunk_rows: usize) -> Vec<Range<usize>> {
        let step = chunk_rows.max(1);
        (0..self.rows).step_by(step).map(|a| a..(a + step).min(self.rows)).collect()
    }

    /// Reads file rows `rows` into a store (store index `i` = file row `rows.start + i`), reading
    /// only the row groups that overlap them.
    pub fn read(&self, rows: Range<usize>) -> Result<GraphStore> {
        let groups: Vec<usize> = (0..self.group_starts.len() - 1).filter(|&g| self.group_starts[g] < rows.end && self.group_starts[g + 1] > rows.start).collect();
        let mut store = GraphStore::new(0);
        let Some(&first_group) = groups.first() else { return Ok(store) };
        let source = ParquetSource::open(&self.path, &graphs_columns(&CHUNK_COLUMNS))?;
        let mut row = self.group_starts[first_group];
        let mut appender = Appender::default();
        for batch in source.read_row_groups(&CHUNK_COLUMNS, groups)? {
            let batch = batch.map_err(|e| Error::Core(molpeg_core::Error::arrow(&self.path, e)))?;
            let (lo, hi) = (row, row + batch.num_rows());
            let wanted = rows.start.clamp(lo, hi) - lo..rows.end.clamp(lo, hi) - lo;
            appender.append(&mut store, &batch, wanted, row, &self.path)?;
            row += batch.num_rows();
        }
        Ok(store)
    }
}

fn as_pairs<T>(flat: &[T]) -> &[[T; 2]] {
    assert!(flat.len() % 2 == 0, "fixed-size lists of width 2 hold an even number of values");
    // SAFETY: `[T; 2]` has T's alignment and twice its size, and the length was checked to be even.
    unsafe { std::slice::from_raw_parts(flat.as_ptr().cast::<[T; 2]>(), flat.len() / 2) }
}

/// A `list<fixed_size_list<T, W>>` column as row offsets (in elements of T) into one flat slice.
struct FixedLists<'a, T: ArrowPrimitiveType> {
    offsets: Vec<usize>,
    values: &'a [T::Native],
}

impl<'a, T: ArrowPrimitiveType> FixedLists<'a, T> {
    fn new(col: &'a ArrayRef, width: usize, path: &Path) -> Result<Self> {
        fn parts<O: OffsetSizeTrait>(l: &GenericListArray<O>) -> (Vec<usize>, &ArrayRef) {
            (l.value_offsets().iter().map(|o| o.as_usize()).collect(), l.values())
        }
        let (offsets, child) = if let Some(l) = col.as_list_opt::<i32>() {
            parts(l)
        } else if let Some(l) = col.as_list_opt::<i64>() {
            parts(l)
        } else {
            return Err(Error::Internal(format!("{}: column type {} passed the schema check", path.display(), col.data_type())));
        };
        let fsl: &FixedSizeListArray = child.as_fixed_size_list();
        let prim: &PrimitiveArray<T> = fsl.values().as_primitive();
        let offsets = offsets.into_iter().map(|o| o * width).collect();
        Ok(FixedLists { offsets, values: prim.values() })
    }
    fn row(&self, i: usize) -> &'a [T::Native] {
        &self.values[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// The `labels` column: `list<f32>` whose nulls mean missing labels (written as NaN).
struct LabelLists<'a> {
    offsets: Vec<usize>,
    values: &'a PrimitiveArray<Float32Type>,
}

impl<'a> LabelLists<'a> {
    fn new(col: &'a ArrayRef, path: &Path) -> Result<Self> {
        let (offsets, child): (Vec<usize>, &ArrayRef) = if let Some(l) = col.as_list_opt::<i32>() {
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values())
        } else if let Some(l) = col.as_list_opt::<i64>() {
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values())
        } else {
            return Err(Error::Internal(format!("{}: labels type {} passed the schema check", path.display(), col.data_type())));
        };
        Ok(LabelLists { offsets, values: child.as_primitive() })
    }
    fn row(&self, i: usize, out: &mut Vec<f32>) {
        out.clear();
        out.extend((self.offsets[i]..self.offsets[i + 1]).map(|k| if self.values.is_null(k) { f32::NAN } else { self.values.value(k) }));
    }
}

/// An error saying what makes `path` when the fingerprint file is missing.
fn require_fingerprints(path: &Path) -> Result<()> {
    if molpeg_core::dataset::exists(path) {
        return Ok(());
    }
    Err(Error::data(path, format!("not found: the fingerprint model reads the featurize stage's fingerprints; run {} first", molpeg_core::fingerprint_file::PRODUCED_BY)))
}

/// Reads the Morgan fingerprints of every molecule of `store` from `path` (the featurize stage's
/// `fingerprints.parquet`) into [`GraphStore::fingerprints`].
pub fn attach_fingerprints(store: &mut GraphStore, path: &Path) -> Result<()> {
    require_fingerprints(path)?;
    let packed = molpeg_core::fingerprint_file::read_packed(path, &store.mol_ids, "molecules of graphs.parquet")?;
    let mut fp = FingerprintTokens::new(packed.bits(), packed.radius);
    for i in 0..store.len() {
        fp.push_packed(packed.row(i)).map_err(|message| Error::Row { path: path.to_path_buf(), row: i, mol_id: store.mol_ids[i], message })?;
    }
    store.fingerprints = Some(fp);
    Ok(())
}

/// Reads the canonical SMILES of every molecule of `store` from `graphs_path` (the file the store
/// was read from, so the rows are the store's) and tokenizes them into [`GraphStore::smiles`].
pub fn attach_smiles(store: &mut GraphStore, graphs_path: &Path) -> Result<()> {
    let wanted = [graphs::MOL_ID, graphs::CANONICAL_SMILES];
    let source = ParquetSource::open(graphs_path, &graphs_columns(&wanted))?;
    let mut tokens = SmilesTokens::default();
    let mut row = 0usize;
    for batch in source.collect_columns(&wanted)? {
        let ids = columns::u32_values(graphs_path, graphs::MOL_ID, batch.column(0), row)?;
        let smiles = columns::strings(graphs_path, graphs::CANONICAL_SMILES, batch.column(1), row)?;
        for (mol_id, s) in ids.into_iter().zip(smiles) {
            let row_err = |message: String| Error::Row { path: graphs_path.to_path_buf(), row, mol_id, message };
            if store.mol_ids.get(row) != Some(&mol_id) {
                return Err(row_err("the file's rows changed since its graphs were read; rerun the stage".into()));
            }
            tokens.push(&s).map_err(row_err)?;
            row += 1;
        }
    }
    if row != store.len() {
        return Err(Error::data(graphs_path, format!("{row} SMILES rows for {} graphs", store.len())));
    }
    store.smiles = Some(tokens);
    Ok(())
}

/// Reads `coreset.parquet` into a training plan. Every id must belong to the dataset's train split
/// (a coreset selected on another split or dataset is an error); weights must be finite and ≥ 0.
pub fn load_coreset(path: &Path, data: &Dataset) -> Result<Vec<Sample>> {
    let source = ParquetSource::open_user(path, &coreset::schema())?;
    let mut in_train = vec![false; data.store.len()];
    for &g in &data.train {
        in_train[g as usize] = true;
    }
    let mut taken = vec![false; data.store.len()];
    let mut plan = Vec::new();
    let mut row = 0;
    for batch in source.collect_columns(&[coreset::MOL_ID, coreset::WEIGHT])? {
        let ids = columns::u32_values(path, coreset::MOL_ID, batch.column(0), row)?;
        let weights = columns::f32_required(path, coreset::WEIGHT, batch.column(1), row)?;
        for (mol_id, weight) in ids.into_iter().zip(weights) {
            let row_err = |message: String| Error::Row { path: path.to_path_buf(), row, mol_id, message };
            let g = data.index_of(mol_id).filter(|&g| in_train[g as usize]).ok_or_else(|| {
                row_err(format!(
                    "mol_id is not in the train split of {}; was the coreset selected for another dataset or split?",
                    data.split_path.display()
                ))
            })?;
            if std::mem::replace(&mut taken[g as usize], true) {
                return Err(row_err("mol_id appears twice in the coreset".into()));
            }
            if !weight.is_finite() || weight < 0.0 {
                return Err(row_err(format!("weight {weight} must be finite and non-negative")));
            }
            plan.push(Sample { index: g, weight });
            row += 1;
        }
    }
    if plan.is_empty() {
        return Err(Error::data(path, "the coreset is empty; nothing to train on"));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_builds_sorted_adjacency_with_self_loops_and_counts() {
        let mut store = GraphStore::new(1);
        let mut scratch = Vec::new();
        // 0-1 single bond, 1-2 double bond (both directions), direction tag 1 on the 1→2 edge.
        let view = GraphView {
            atoms: &[[5, 0], [6, 1], [7, 0]],
            edges: &[[0, 1], [1, 0], [1, 2], [2, 1]],
            bonds: &[[0, 0], [0, 0], [1, 1], [1, 0]],
            labels: &[1.0],
        };
        store.push(42, view, &mut scratch).unwrap();
        assert_eq!(store.adjacency(0), &[0, 1]);
        assert_eq!(store.adjacency(1), &[0, 1, 2]);
        assert_eq!(store.adjacency(2), &[1, 2]);
        // Node 2 receives the 1→2 double bond with direction 1, plus its self-loop (type 5, direction 0).
        let c = store.edge_counts(0)[2];
        assert_eq!(&c[..BOND_TYPES], &[0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(&c[BOND_TYPES..], &[1, 1, 0, 0]);
        assert_eq!(store.total_edges(), 4);
        assert_eq!(store.adj_len(0), 7);
    }

    #[test]
    fn push_rejects_bad_graphs_with_a_reason() {
        let mut store = GraphStore::new(2);
        let mut s = Vec::new();
        let ok_atoms = [[5u8, 0u8], [6, 0]];
        let cases: Vec<(GraphView, &str)> = vec![
            (GraphView { atoms: &[], edges: &[], bonds: &[], labels: &[0.0, 1.0] }, "no atoms"),
            (GraphView { atoms: &ok_atoms, edges: &[], bonds: &[], labels: &[0.0] }, "1 labels but"),
            (GraphView { atoms: &ok_atoms, edges: &[[0, 2]], bonds: &[[0, 0]], labels: &[0.0, 1.0] }, "points past"),
            (GraphView { atoms: &ok_atoms, edges: &[[0, 1], [0, 1]], bonds: &[[0, 0], [0, 0]], labels: &[0.0, 1.0] }, "duplicate"),
            (GraphView { atoms: &ok_atoms, edges: &[[0, 1]], bonds: &[[5, 0]], labels: &[0.0, 1.0] }, "bond features"),
            (GraphView { atoms: &[[119, 0]], edges: &[], bonds: &[], labels: &[0.0, 1.0] }, "atom 0 has features"),
            (GraphView { atoms: &ok_atoms, edges: &[[0, 1]], bonds: &[], labels: &[0.0, 1.0] }, "1 edges but 0 bond"),
        ];
        for (view, expected) in cases {
            let err = store.push(1, view, &mut s).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        assert!(store.is_empty());
    }

    /// Chunks are exact row ranges whatever the row groups: 20,000 molecules are two row groups here.
    #[test]
    fn chunks_read_exact_row_ranges_across_row_groups() {
        use crate::synthetic::{generate, write_graphs, SyntheticSpec};
        let spec = SyntheticSpec { min_atoms: 1, max_atoms: 4, tasks: 1, ..SyntheticSpec::hiv_like(20_000, 3) };
        let rows = generate(&spec);
        let dir = tempfile::tempdir().unwrap();
        let path = write_graphs(&dir.path().join("graphs.parquet"), &rows, &["t".into()], TaskKind::Binary).unwrap();
        assert_eq!(ParquetSource::open(&path, &graphs::schema()).unwrap().row_group_rows(), vec![16_384, 3_616]);
        let chunks = GraphChunks::open(&path, Some(19_000)).unwrap();
        assert_eq!(chunks.rows, 19_000);
        let ranges = chunks.ranges(7_000);
        assert_eq!(ranges, vec![0..7_000, 7_000..14_000, 14_000..19_000]);
        for range in ranges {
            let store = chunks.read(range.clone()).unwrap();
            assert_eq!(store.mol_ids, range.clone().map(|i| i as u32).collect::<Vec<_>>());
            assert_eq!(store.num_tasks, 0, "labels are not read");
            for (g, i) in range.enumerate().step_by(997) {
                assert_eq!(store.atoms(g), &rows[i].atom_hu[..]);
            }
        }
        assert_eq!(GraphChunks::open(&path, None).unwrap().rows, 20_000);
    }

    #[test]
    fn label_moments_skip_missing() {
        let mut store = GraphStore::new(1);
        let mut s = Vec::new();
        for (i, y) in [1.0, 3.0, f32::NAN].into_iter().enumerate() {
            store.push(i as u32, GraphView { atoms: &[[5, 0]], edges: &[], bonds: &[], labels: &[y] }, &mut s).unwrap();
        }
        let (m, sd) = store.label_moments(&[0, 1, 2]);
        assert_eq!((m[0], sd[0]), (2.0, 1.0));
    }
}
