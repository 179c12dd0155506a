//! Synthetic molecules and writers for `graphs.parquet`, `split.parquet` and `coreset.parquet`, for
//! tests and benchmarks that must not depend on RDKit or downloads. The molecules are random trees
//! with ring closures, drawn from a few common elements, sized like MoleculeNet's HIV set (about 25
//! atoms and 54 directed edges on average); their labels are simple functions of composition so a
//! model can learn them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Float32Array, StringArray, UInt32Array};
use arrow::record_batch::RecordBatch;
use molpeg_core::graph_table;
use molpeg_core::parquet_io::write_batches;
use molpeg_core::schema::{coreset, graphs, meta, split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::TaskKind;
use crate::Result;

pub use molpeg_core::graph_table::GraphRecord;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub molecules: usize,
    pub min_atoms: usize,
    pub max_atoms: usize,
    pub tasks: usize,
    pub task_kind: TaskKind,
    /// Probability that a label is missing.
    pub missing: f64,
    pub seed: u64,
}

impl SyntheticSpec {
    /// HIV-sized molecules (15–35 atoms, mean 25), one binary task.
    pub fn hiv_like(molecules: usize, seed: u64) -> Self {
        SyntheticSpec { molecules, min_atoms: 15, max_atoms: 35, tasks: 1, task_kind: TaskKind::Binary, missing: 0.0, seed }
    }
}

// Atomic-number indices (atomic number − 1) and their sampling weights.
const ELEMENTS: [(u8, u32); 7] = [(5, 70), (6, 10), (7, 12), (8, 2), (15, 3), (16, 2), (34, 1)];
const NITROGEN: u8 = 6;
const OXYGEN: u8 = 7;
const SULFUR: u8 = 15;

fn pick_element(rng: &mut ChaCha8Rng) -> u8 {
    let total: u32 = ELEMENTS.iter().map(|e| e.1).sum();
    let mut x = rng.random_range(0..total);
    for (e, w) in ELEMENTS {
        if x < w {
            return e;
        }
        x -= w;
    }
    unreachable!("weights sum to total")
}

/// Generates `spec.molecules` molecules with ids `0..molecules`.
pub fn generate(spec: &SyntheticSpec) -> Vec<GraphRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    (0..spec.molecules).map(|id| molecule(&mut rng, id as u32, spec)).collect()
}

fn molecule(rng: &mut ChaCha8Rng, mol_id: u32, spec: &SyntheticSpec) -> GraphRecord {
    let n = rng.random_range(spec.min_atoms.max(1)..=spec.max_atoms.max(spec.min_atoms.max(1)));
    let atoms: Vec<[u8; 2]> = (0..n).map(|_| [pick_element(rng), if rng.random_bool(0.05) { 1 } else { 0 }]).collect();
    let mut degree = vec![0u8; n];
    let mut bonds: Vec<(usize, usize, u8)> = Vec::new();
    let bond_type = |rng: &mut ChaCha8Rng| match rng.random_range(0..10) {
        0..=5 => 0,
        6 => 1,
        _ => 3,
    };
    for v in 1..n {
        // Attach to an earlier atom with a free valence (a tree, like a molecule's skeleton).
        let mut u = rng.random_range(0..v);
        for _ in 0..8 {
            if degree[u] < 4 {
                break;
            }
            u = rng.random_range(0..v);
        }
        degree[u] += 1;
        degree[v] += 1;
        bonds.push((u, v, bond_type(rng)));
    }
    // Ring closures: about one per eight atoms, which gives HIV's ~2.15 directed edges per atom.
    for _ in 0..n / 8 {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b && degree[a] < 4 && degree[b] < 4 && !bonds.iter().any(|&(x, y, _)| (x, y) == (a, b) || (x, y) == (b, a)) {
            degree[a] += 1;
            degree[b] += 1;
            bonds.push((a, b, 3));
        }
    }
    let mut edges = Vec::with_capacity(2 * bonds.len());
    let mut bond_hu = Vec::with_capacity(2 * bonds.len());
    for &(a, b, t) in &bonds {
        let dir = if rng.random_bool(0.02) { 1 } else { 0 };
        edges.push([a as u16, b as u16]);
        edges.push([b as u16, a as u16]);
        bond_hu.push([t, dir]);
        bond_hu.push([t, dir]);
    }
    let count = |e: u8| atoms.iter().filter(|a| a[0] == e).count() as f32;
    let (nn, no, ns) = (count(NITROGEN), count(OXYGEN), count(SULFUR));
    let labels = (0..spec.tasks)
        .map(|k| {
            if rng.random_bool(spec.missing) {
                return None;
            }
            Some(match spec.task_kind {
                TaskKind::Binary => match k % 3 {
                    0 => (nn >= 3.0) as u8 as f32,
                    1 => (no + ns >= 4.0) as u8 as f32,
                    _ => (bonds.len() > n) as u8 as f32,
                },
                TaskKind::Regression => 0.5 * nn - 0.3 * no + 0.1 * n as f32 + k as f32 + rng.random_range(-0.1..0.1),
            })
        })
        .collect();
    GraphRecord {
        mol_id,
        atom_ogb: vec![[0; 9]; atoms.len()],
        bond_ogb: vec![[0; 3]; edges.len()],
        atom_hu: atoms,
        edge_index: edges,
        bond_hu,
        labels,
        ..Default::default()
    }
}

/// Writes `graphs.parquet` with the task metadata the trainer reads.
pub fn write_graphs(path: &Path, rows: &[GraphRecord], task_names: &[String], task_kind: TaskKind) -> Result<PathBuf> {
    let batch = graph_table::to_batch(rows).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    let extra = BTreeMap::from([
        (meta::TASK_NAMES.to_string(), serde_json::to_string(task_names).expect("strings serialize")),
        (meta::TASK_TYPE.to_string(), task_kind.as_str().to_string()),
    ]);
    Ok(write_batches(path, graphs::schema(), graphs::KIND, &extra, &[batch])?)
}

/// Writes `split.parquet` from `(mol_id, split name)` pairs.
pub fn write_split(path: &Path, rows: &[(u32, &str)]) -> Result<PathBuf> {
    let schema = split::schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, schema, split::KIND, &BTreeMap::new(), &[batch])?)
}

/// Writes `coreset.parquet` from `(mol_id, weight)` pairs (rank = position, score null).
pub fn write_coreset(path: &Path, rows: &[(u32, f32)]) -> Result<PathBuf> {
    let schema = coreset::schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from_iter_values(0..rows.len() as u32)),
            Arc::new(arrow::array::Float64Array::from(vec![None::<f64>; rows.len()])),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, schema, coreset::KIND, &BTreeMap::new(), &[batch])?)
}

/// The split every synthetic dataset uses: ids `i % 10 == 8` valid, `== 9` test, the rest train.
pub fn default_split(rows: &[GraphRecord]) -> Vec<(u32, &'static str)> {
    rows.iter()
        .map(|r| {
            let s = match r.mol_id % 10 {
                8 => split::VALID,
                9 => split::TEST,
                _ => split::TRAIN,
            };
            (r.mol_id, s)
        })
        .collect()
}

/// Generates a dataset and writes `graphs.parquet` and `split.parquet` into `dir`.
pub fn write_dataset(dir: &Path, spec: &SyntheticSpec) -> Result<(PathBuf, PathBuf)> {
    let rows = generate(spec);
    let names: Vec<String> = (0..spec.tasks).map(|k| format!("task{k}")).collect();
    let graphs_path = write_graphs(&dir.join("graphs.parquet"), &rows, &names, spec.task_kind)?;
    let split_path = write_split(&dir.join("split.parquet"), &default_split(&rows))?;
    Ok((graphs_path, split_path))
}

/// One molecule's 3D atoms (hydrogens included), as `atoms3d.parquet` stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Molecule3d {
    pub atomic_numbers: Vec<u8>,
    /// Ångström.
    pub positions: Vec<[f32; 3]>,
}

// QM9's heavy elements with their valences and sampling weights (C dominates, as in QM9).
const QM9_HEAVY: [(u8, u8, u32); 4] = [(6, 4, 70), (7, 3, 12), (8, 2, 15), (9, 1, 3)];

/// Random QM9-like molecules: 1–9 heavy atoms (C, N, O, F; 9 for three in four) grown as a tree with bonds of 1.4–1.55 Å,
/// each heavy atom's free valences filled with hydrogens at 1.09 Å, at most 29 atoms, no two atoms
/// closer than 0.9 Å. Not chemistry: a size and geometry distribution for tests and benchmarks.
pub fn qm9_like(molecules: usize, seed: u64) -> Vec<Molecule3d> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..molecules).map(|_| molecule3d(&mut rng)).collect()
}

fn molecule3d(rng: &mut ChaCha8Rng) -> Molecule3d {
    let unit = |rng: &mut ChaCha8Rng| loop {
        let v = [0; 3].map(|_: i32| rng.random_range(-1.0f32..1.0));
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if (0.1..=1.0).contains(&n) {
            break v.map(|c| c / n);
        }
    };
    let clear = |pos: &[[f32; 3]], p: &[f32; 3]| pos.iter().all(|q| (0..3).map(|c| (p[c] - q[c]).powi(2)).sum::<f32>() > 0.81);
    // Most QM9 molecules have the full 9 heavy atoms. With every free valence filled by a hydrogen
    // (no double bonds or rings) these average about 22 atoms, QM9 18.
    let heavy = if rng.random_bool(0.75) { 9 } else { rng.random_range(1..=8) };
    let (mut z, mut pos, mut free) = (Vec::new(), Vec::<[f32; 3]>::new(), Vec::new());
    for k in 0..heavy {
        let total: u32 = QM9_HEAVY.iter().map(|e| e.2).sum();
        let mut x = rng.random_range(0..total);
        let &(element, valence, _) = QM9_HEAVY.iter().find(|e| if x < e.2 { true } else { x -= e.2; false }).expect("weights sum to total");
        if k == 0 {
            (z, pos, free) = (vec![element], vec![[0.0; 3]], vec![valence]);
            continue;
        }
        // Bond to an earlier heavy atom with a free valence; give up on this atom after a few tries.
        for _ in 0..20 {
            let parent = rng.random_range(0..z.len());
            if free[parent] == 0 {
                continue;
            }
            let (d, len) = (unit(rng), rng.random_range(1.4f32..1.55));
            let p = [0, 1, 2].map(|c| pos[parent][c] + len * d[c]);
            if clear(&pos, &p) {
                free[parent] -= 1;
                z.push(element);
                pos.push(p);
                free.push(valence - 1);
                break;
            }
        }
    }
    for a in 0..z.len() {
        for _ in 0..free[a] {
            if z.len() == 29 {
                break;
            }
            for _ in 0..20 {
                let d = unit(rng);
                let p = [0, 1, 2].map(|c| pos[a][c] + 1.09 * d[c]);
                if clear(&pos, &p) {
                    z.push(1);
                    pos.push(p);
                    break;
                }
            }
        }
    }
    Molecule3d { atomic_numbers: z, positions: pos }
}

/// Writes `atoms3d.parquet` ([`molpeg_core::schema::atoms3d`]) for molecules `mol_ids`.
pub fn write_atoms3d(path: &Path, mol_ids: &[u32], molecules: &[Molecule3d]) -> Result<PathBuf> {
    use arrow::array::{FixedSizeListBuilder, Float32Builder, ListBuilder, UInt8Builder};
    use arrow::datatypes::{DataType, Field};
    use molpeg_core::schema::atoms3d;
    let mut numbers = ListBuilder::new(UInt8Builder::new()).with_field(Arc::new(Field::new("item", DataType::UInt8, false)));
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let mut positions = ListBuilder::new(FixedSizeListBuilder::new(Float32Builder::new(), 3).with_field(item.clone()))
        .with_field(Arc::new(Field::new("item", DataType::FixedSizeList(item, 3), false)));
    for m in molecules {
        numbers.values().append_slice(&m.atomic_numbers);
        numbers.append(true);
        for p in &m.positions {
            positions.values().values().append_slice(p);
            positions.values().append(true);
        }
        positions.append(true);
    }
    let columns: Vec<arrow::array::ArrayRef> = vec![Arc::new(UInt32Array::from(mol_ids.to_vec())), Arc::new(numbers.finish()), Arc::new(positions.finish())];
    let batch = RecordBatch::try_new(atoms3d::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    let extra = BTreeMap::from([(atoms3d::META_GEOMETRY.to_string(), "synthetic".to_string())]);
    Ok(write_batches(path, atoms3d::schema(), atoms3d::KIND, &extra, &[batch])?)
}

/// Regression targets of a synthetic 3D molecule that a SchNet can learn: `atoms` (the atom count,
/// extensive) and `pair_energy` (`Σ_{i<j} exp(−d_ij / 1.5 Å)`, a smooth function of the geometry).
pub const QM9_LIKE_TASKS: [&str; 2] = ["atoms", "pair_energy"];

fn qm9_like_labels(m: &Molecule3d) -> [f32; 2] {
    let p = &m.positions;
    let mut pair = 0f32;
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            pair += (-(0..3).map(|c| (p[i][c] - p[j][c]).powi(2)).sum::<f32>().sqrt() / 1.5).exp();
        }
    }
    [p.len() as f32, pair]
}

/// Writes a QM9-like dataset into `dir`: `atoms3d.parquet` ([`qm9_like`]), a `graphs.parquet` whose 2D
/// graphs are the heavy atoms in a chain (the GIN's input; SchNet reads only the 3D atoms), the
/// regression labels [`QM9_LIKE_TASKS`], and `split.parquet` ([`default_split`]).
pub fn write_qm9_like_dataset(dir: &Path, molecules: usize, seed: u64) -> Result<(PathBuf, PathBuf)> {
    let mols = qm9_like(molecules, seed);
    let rows: Vec<GraphRecord> = mols
        .iter()
        .enumerate()
        .map(|(id, m)| {
            let heavy: Vec<[u8; 2]> = m.atomic_numbers.iter().filter(|&&z| z > 1).map(|&z| [z - 1, 0]).collect();
            let mut edges = Vec::new();
            for v in 1..heavy.len() as u16 {
                edges.extend([[v - 1, v], [v, v - 1]]);
            }
            GraphRecord {
                mol_id: id as u32,
                atom_ogb: vec![[0; 9]; heavy.len()],
                bond_ogb: vec![[0; 3]; edges.len()],
                bond_hu: vec![[0, 0]; edges.len()],
                atom_hu: heavy,
                edge_index: edges,
                labels: qm9_like_labels(m).iter().map(|&y| Some(y)).collect(),
                ..Default::default()
            }
        })
        .collect();
    let names: Vec<String> = QM9_LIKE_TASKS.iter().map(|s| s.to_string()).collect();
    let graphs_path = write_graphs(&dir.join("graphs.parquet"), &rows, &names, TaskKind::Regression)?;
    let ids: Vec<u32> = rows.iter().map(|r| r.mol_id).collect();
    write_atoms3d(&dir.join(molpeg_core::schema::atoms3d::FILE), &ids, &mols)?;
    let split_path = write_split(&dir.join("split.parquet"), &default_split(&rows))?;
    Ok((graphs_path, split_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    #[test]
    fn hiv_like_sizes_and_round_trip() {
        let spec = SyntheticSpec { missing: 0.2, tasks: 2, ..SyntheticSpec::hiv_like(400, 1) };
        let rows = generate(&spec);
        let atoms: usize = rows.iter().map(|r| r.atom_hu.len()).sum();
        let edges: usize = rows.iter().map(|r| r.edge_index.len()).sum();
        let per_mol = atoms as f64 / rows.len() as f64;
        assert!((23.0..27.0).contains(&per_mol), "{per_mol} atoms per molecule");
        let ratio = edges as f64 / atoms as f64;
        assert!((2.0..2.3).contains(&ratio), "{ratio} directed edges per atom");

        let dir = tempfile::tempdir().unwrap();
        let (g, s) = write_dataset(dir.path(), &spec).unwrap();
        let data = Dataset::load(&g, &s).unwrap();
        assert_eq!(data.store.len(), 400);
        assert_eq!(data.train.len() + data.valid.len() + data.test.len(), 400);
        assert_eq!(data.store.total_nodes(), atoms);
        assert_eq!(data.store.total_edges(), edges);
        let first = &rows[0];
        let expect: Vec<f32> = first.labels.iter().map(|l| l.unwrap_or(f32::NAN)).collect();
        let got = data.store.labels(0);
        assert!(expect.iter().zip(got).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        assert_eq!(data.store.atoms(0), &first.atom_hu[..]);
    }

    #[test]
    fn qm9_like_molecules_round_trip_through_atoms3d() {
        let mols = qm9_like(200, 5);
        assert!(mols.iter().all(|m| (1..=29).contains(&m.atomic_numbers.len()) && m.atomic_numbers.iter().all(|z| [1, 6, 7, 8, 9].contains(z))));
        let mean = mols.iter().map(|m| m.atomic_numbers.len()).sum::<usize>() as f64 / 200.0;
        assert!((8.0..25.0).contains(&mean), "{mean} atoms per molecule");
        let dir = tempfile::tempdir().unwrap();
        let (g, s) = write_qm9_like_dataset(dir.path(), 200, 5).unwrap();
        let data = Dataset::load_for(&g, &s, crate::model::ModelKind::Schnet).unwrap();
        let atoms = data.store.atoms3d.as_ref().unwrap();
        assert_eq!(atoms.len(), 200);
        for (k, m) in mols.iter().enumerate() {
            assert_eq!(atoms.molecule(k), (&m.atomic_numbers[..], &m.positions[..]));
        }
        assert_eq!(data.store.labels(3)[0], mols[3].atomic_numbers.len() as f32);
    }
}
