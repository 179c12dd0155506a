//! SchNet (Schütt et al. 2017), the 3D model behind [`crate::model::Model`] (`[finetune] model =
//! "schnet"`), with PyTorch Geometric's `torch_geometric.nn.models.SchNet` semantics and variable names:
//!
//! - `h⁰_i = E[Z_i]` (atomic number embedding, 100 rows as PyG's, row 0 zero);
//! - for every ordered pair (i, j), i ≠ j, of one molecule with `d_ij < cutoff` (the neighbour list,
//!   built by the collator: [`neighbour_pairs`]), the radial basis `e_k(d) = exp(−γ (d − μ_k)²)` with
//!   `μ_k` evenly spaced on `[0, cutoff]` (`gaussians` of them, `γ = 0.5 / Δμ²`) and the cosine cutoff
//!   `C(d) = ½ (cos(π d / cutoff) + 1)`;
//! - `interactions` blocks: filter `W_ij = (Linear ∘ ssp ∘ Linear)(e(d_ij)) · C(d_ij)`, continuous-filter
//!   convolution `m_i = Σ_j lin1(h_j) ⊙ W_ij`, then `v_i = lin(ssp(lin2(m_i)))` and `h_i ← h_i + v_i`;
//! - the per-atom output MLP `lin2(ssp(lin1(h_i)))` (hidden → hidden/2 → tasks), summed (extensive
//!   targets) or averaged (intensive) over each molecule's atoms ([`Readout`]); the sum adds a learnt
//!   per-task offset (see [`SchnetHead`]: molpeg's one deviation in the function computed).
//!
//! `ssp(x) = softplus(x) − ln 2`. The molecule embedding of the model interface (herding, k-center and
//! k-means embeddings, [`crate::model::Model::graph_representations`]) is the last `h_i` pooled with
//! the same readout (sum or mean), i.e. the input of the output MLP, pooled.
//!
//! Distances are computed in libtorch on the batch's device from the positions; the collator only
//! decides which pairs exist. The aggregation over a receiving atom's pairs and the readout are sparse
//! CSR products (rows = receiving atoms / molecules), like the GIN's, so the forward pass has no
//! scatter with atomics.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::nn::{Init, Path};
use tch::{Device, Kind, Tensor};

use crate::batch::Batch;
use crate::data::GraphStore;
use crate::{Error, Result};

/// Prefix of SchNet's encoder variables (embedding and interaction blocks): what `--pretrained` loads.
pub const SCHNET_PREFIX: &str = "schnet.";
const SCHNET_ROOT: &str = "schnet";
/// Root of the per-atom output MLP (`schnet_output.lin1`, `schnet_output.lin2`): PyG's `lin1`/`lin2`.
pub const SCHNET_HEAD: &str = "schnet_output";
/// Rows of the atom-type embedding: atomic numbers 1..=99 (PyG's `Embedding(100, hidden, padding_idx=0)`).
pub const MAX_ATOMIC_NUMBER: u8 = 99;

/// How the per-atom outputs (and hidden states) become one value per molecule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// Sum over atoms: extensive targets (energies U0, U, H, G; ZPVE; heat capacity), PyG's `add`.
    #[default]
    Sum,
    /// Mean over atoms: intensive targets (HOMO, LUMO, gap, dipole moment).
    Mean,
}

/// What SchNet needs besides `layers` (interaction blocks) and `width` (hidden size) of
/// [`crate::model::ModelConfig`]; stored in the checkpoint's `molpeg.model`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchnetConfig {
    /// Width of the continuous filters.
    pub filters: usize,
    /// Gaussians of the radial basis on `[0, cutoff]`.
    pub gaussians: usize,
    /// Neighbour cutoff in ångström.
    pub cutoff: f64,
    pub readout: Readout,
    /// Keep at most this many nearest neighbours per atom (`None`: every atom within the cutoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_neighbors: Option<usize>,
}

impl SchnetConfig {
    /// Checks the shape; `hidden` is the model's width.
    pub fn validate(&self, hidden: usize) -> Result<()> {
        if hidden < 2 {
            return Err(Error::Config(format!("SchNet's hidden width {hidden} must be at least 2 (its output MLP has hidden/2 units)")));
        }
        if self.filters == 0 {
            return Err(Error::Config("SchNet's filters must be at least 1".into()));
        }
        if self.gaussians < 2 {
            return Err(Error::Config(format!("SchNet needs at least 2 gaussians (it has {}): their spacing sets their width", self.gaussians)));
        }
        if !(self.cutoff > 0.0 && self.cutoff.is_finite()) {
            return Err(Error::Config(format!("SchNet's cutoff {} Å must be a positive number", self.cutoff)));
        }
        if self.max_neighbors == Some(0) {
            return Err(Error::Config("SchNet's max_neighbors must be at least 1 (leave it out for no limit)".into()));
        }
        Ok(())
    }

    /// What the collator needs to build neighbour lists.
    pub fn geometry_input(&self) -> GeometryInput {
        GeometryInput { cutoff: self.cutoff as f32, max_neighbors: self.max_neighbors }
    }
}

/// What the collator adds to a batch for a 3D model: atoms, positions and the neighbour pairs within
/// `cutoff` ([`crate::model::Model::geometry_input`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeometryInput {
    pub cutoff: f32,
    pub max_neighbors: Option<usize>,
}

impl GeometryInput {
    /// Checks that `store` has 3D atoms SchNet can read: attached, atomic numbers in 1..=99, finite
    /// positions. The error names the first bad molecule.
    pub fn check(&self, store: &GraphStore) -> Result<()> {
        let atoms = store.atoms3d.as_ref().ok_or_else(|| {
            Error::Config("the SchNet model needs the molecules' 3D atoms (atoms3d.parquet of the featurize stage), which were not loaded".into())
        })?;
        if atoms.len() != store.len() {
            return Err(Error::Internal(format!("{} molecules but 3D atoms for {}", store.len(), atoms.len())));
        }
        let bad_z = atoms.atomic_numbers.iter().position(|&z| z == 0 || z > MAX_ATOMIC_NUMBER);
        let bad_pos = atoms.positions.iter().position(|p| !p.iter().all(|c| c.is_finite()));
        for (atom, what) in [(bad_z, "an atomic number outside 1..=99 (SchNet's embedding has 100 rows, as PyG's)"), (bad_pos, "a non-finite position")] {
            if let Some(a) = atom {
                let g = atoms.offsets.partition_point(|&o| o as usize <= a) - 1;
                return Err(Error::Config(format!("mol_id {} has {what}", store.mol_ids[g])));
            }
        }
        Ok(())
    }
}

/// Reusable buffers of [`neighbour_pairs`], so a batch allocates nothing per molecule.
#[derive(Debug, Default)]
pub struct NeighbourScratch {
    /// `(cell, atom)` of every atom of a large molecule, sorted.
    cells: Vec<([i32; 3], u32)>,
    /// Candidate `(squared distance, j)` of the current receiving atom.
    candidates: Vec<(f32, u32)>,
}

/// Molecules up to this size compare all pairs; larger ones use a cell list (cells of the cutoff's
/// size, so a neighbour is in one of the 27 cells around an atom's own).
const ALL_PAIRS_MAX_ATOMS: usize = 64;

/// Appends the neighbour pairs of one molecule with atom positions `positions`, atoms numbered from
/// `base` in the batch: for every receiving atom i in order, its neighbours j (i ≠ j, squared
/// distance < cutoff²) in increasing order go to `src` (j) and `dst` (i). With `max_neighbors = k`
/// only i's k nearest are kept (ties by index). The pairs are the same whatever the algorithm
/// (all pairs, or a cell list for large molecules).
pub fn neighbour_pairs(positions: &[[f32; 3]], input: &GeometryInput, base: i64, scratch: &mut NeighbourScratch, src: &mut Vec<i64>, dst: &mut Vec<i64>) {
    let n = positions.len();
    let r2 = input.cutoff * input.cutoff;
    let d2 = |a: &[f32; 3], b: &[f32; 3]| {
        let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
        x * x + y * y + z * z
    };
    let cell_of = |p: &[f32; 3]| p.map(|c| (c / input.cutoff).floor() as i32);
    let large = n > ALL_PAIRS_MAX_ATOMS;
    if large {
        scratch.cells.clear();
        scratch.cells.extend(positions.iter().enumerate().map(|(i, p)| (cell_of(p), i as u32)));
        scratch.cells.sort_unstable();
    }
    for i in 0..n {
        let pi = &positions[i];
        scratch.candidates.clear();
        if large {
            let c = cell_of(pi);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for dz in -1..=1 {
                        let key = [c[0].saturating_add(dx), c[1].saturating_add(dy), c[2].saturating_add(dz)];
                        let start = scratch.cells.partition_point(|(k, _)| *k < key);
                        for &(k, j) in &scratch.cells[start..] {
                            if k != key {
                                break;
                            }
                            let d = d2(pi, &positions[j as usize]);
                            if j as usize != i && d < r2 {
                                scratch.candidates.push((d, j));
                            }
                        }
                    }
                }
            }
        } else {
            for (j, pj) in positions.iter().enumerate() {
                let d = d2(pi, pj);
                if j != i && d < r2 {
                    scratch.candidates.push((d, j as u32));
                }
            }
        }
        if let Some(k) = input.max_neighbors {
            if scratch.candidates.len() > k {
                scratch.candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                scratch.candidates.truncate(k);
            }
        }
        scratch.candidates.sort_unstable_by_key(|c| c.1);
        src.extend(scratch.candidates.iter().map(|&(_, j)| base + j as i64));
        dst.extend(std::iter::repeat_n(base + i as i64, scratch.candidates.len()));
    }
}

/// A batch's 3D atoms in host memory (part of [`crate::batch::HostBatch`]).
#[derive(Debug, Clone, Default)]
pub struct HostGeometry {
    /// Atomic number of every 3D atom of the batch, molecule after molecule.
    pub atomic_numbers: Vec<i64>,
    /// `atoms × 3` positions (Å).
    pub positions: Vec<f32>,
    /// Atom offset of each molecule (`num_graphs + 1`).
    pub atom_ptr: Vec<i64>,
    /// `1 / n` for each atom of an `n`-atom molecule (mean readout).
    pub inv_atoms: Vec<f32>,
    /// Neighbour pairs, sorted by receiving atom: sender j, receiver i (batch atom indices).
    pub src: Vec<i64>,
    pub dst: Vec<i64>,
    /// Pair offset of each receiving atom (`atoms + 1`): the CSR rows of the aggregation.
    pub pair_ptr: Vec<i64>,
}

impl HostGeometry {
    /// The 3D atoms and neighbour pairs of `samples` (store indices), without per-molecule allocations.
    pub fn collate(store: &GraphStore, samples: impl Iterator<Item = usize> + Clone, input: &GeometryInput) -> HostGeometry {
        let atoms = store.atoms3d.as_ref().expect("checked by Model::geometry_input");
        let total: usize = samples.clone().map(|g| atoms.range(g).len()).sum();
        let mut out = HostGeometry {
            atomic_numbers: Vec::with_capacity(total),
            positions: Vec::with_capacity(3 * total),
            atom_ptr: Vec::with_capacity(samples.clone().count() + 1),
            inv_atoms: Vec::with_capacity(total),
            // QM9-sized molecules within 5–10 Å: nearly all pairs; a first guess, grown as needed.
            src: Vec::with_capacity(total * 16),
            dst: Vec::with_capacity(total * 16),
            pair_ptr: Vec::with_capacity(total + 1),
        };
        let mut scratch = NeighbourScratch::default();
        out.atom_ptr.push(0);
        out.pair_ptr.push(0);
        for g in samples {
            let (z, pos) = atoms.molecule(g);
            let base = out.atomic_numbers.len() as i64;
            out.atomic_numbers.extend(z.iter().map(|&z| z as i64));
            out.positions.extend(pos.iter().flatten());
            out.inv_atoms.extend(std::iter::repeat_n(1.0 / z.len() as f32, z.len()));
            let first = out.dst.len();
            neighbour_pairs(pos, input, base, &mut scratch, &mut out.src, &mut out.dst);
            // Pair offsets per receiving atom from the (sorted) receivers just appended.
            let mut k = first;
            for i in 0..z.len() as i64 {
                while k < out.dst.len() && out.dst[k] == base + i {
                    k += 1;
                }
                out.pair_ptr.push(k as i64);
            }
            out.atom_ptr.push(out.atomic_numbers.len() as i64);
        }
        out
    }

    pub fn num_atoms(&self) -> usize {
        self.atomic_numbers.len()
    }

    pub fn to_tensors(&self) -> HostGeometryTensors {
        let a = self.num_atoms() as i64;
        HostGeometryTensors {
            atomic_numbers: Tensor::from_slice(&self.atomic_numbers),
            positions: Tensor::from_slice(&self.positions).view([a, 3]),
            atom_ptr: Tensor::from_slice(&self.atom_ptr),
            inv_atoms: Tensor::from_slice(&self.inv_atoms),
            src: Tensor::from_slice(&self.src),
            dst: Tensor::from_slice(&self.dst),
            pair_ptr: Tensor::from_slice(&self.pair_ptr),
        }
    }
}

/// [`HostGeometry`] as CPU tensors (built on the loader thread).
pub struct HostGeometryTensors {
    atomic_numbers: Tensor,
    positions: Tensor,
    atom_ptr: Tensor,
    inv_atoms: Tensor,
    src: Tensor,
    dst: Tensor,
    pair_ptr: Tensor,
}

/// A batch's 3D atoms on the training device.
#[derive(Debug)]
pub struct GeometryBatch {
    /// `[A]` int64 atomic numbers, `[A, 3]` positions (Å).
    pub atomic_numbers: Tensor,
    pub positions: Tensor,
    /// `[E]` int64 neighbour pairs: sender j, receiver i, sorted by receiver.
    pub src: Tensor,
    pub dst: Tensor,
    /// `[A, E]` sparse CSR: row i sums the pairs i receives.
    pub aggregate: Tensor,
    /// `[B, A]` sparse CSR readouts (values 1 and `1/n`).
    pub pool_sum: Tensor,
    pub pool_mean: Tensor,
}

impl HostGeometryTensors {
    pub fn assemble(self, device: Device) -> GeometryBatch {
        let mv = |t: Tensor| if device == Device::Cpu { t } else { t.to_device(device) };
        let a = self.atomic_numbers.size()[0];
        let e = self.src.size()[0];
        let b = self.atom_ptr.size()[0] - 1;
        let ones = |n: i64| Tensor::ones([n], (Kind::Float, device));
        let pair_ptr = mv(self.pair_ptr);
        let aggregate = Tensor::sparse_csr_tensor_crow_col_value_size(&pair_ptr, &Tensor::arange(e, (Kind::Int64, device)), &ones(e), [a, e], (Kind::Float, device));
        let atom_ptr = mv(self.atom_ptr);
        let atom_ids = Tensor::arange(a, (Kind::Int64, device));
        let pool_sum = Tensor::sparse_csr_tensor_crow_col_value_size(&atom_ptr, &atom_ids, &ones(a), [b, a], (Kind::Float, device));
        let pool_mean = Tensor::sparse_csr_tensor_crow_col_value_size(&atom_ptr, &atom_ids, &mv(self.inv_atoms), [b, a], (Kind::Float, device));
        GeometryBatch { atomic_numbers: mv(self.atomic_numbers), positions: mv(self.positions), src: mv(self.src), dst: mv(self.dst), aggregate, pool_sum, pool_mean }
    }
}

/// `softplus(x) − ln 2`, SchNet's activation (0 at 0).
fn ssp(x: &Tensor) -> Tensor {
    x.softplus() - std::f64::consts::LN_2
}

/// `torch.nn.init.xavier_uniform_` on an `[out, in]` weight.
fn xavier(out: usize, inp: usize) -> Init {
    let bound = (6.0 / (out + inp) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

fn linear(path: &Path, name: &str, out: usize, inp: usize, bias: bool) -> Result<(Tensor, Option<Tensor>)> {
    let p = path.sub(name);
    let w = p.f_var("weight", &[out as i64, inp as i64], xavier(out, inp))?;
    // PyG's reset_parameters: xavier-uniform weights, zero biases.
    let b = if bias { Some(p.f_var("bias", &[out as i64], Init::Const(0.0))?) } else { None };
    Ok((w, b))
}

struct Interaction {
    /// The filter network `mlp.0`, `mlp.2` (PyG's `InteractionBlock.mlp`, shared with `conv.nn`).
    filter1: (Tensor, Option<Tensor>),
    filter2: (Tensor, Option<Tensor>),
    /// `conv.lin1` (no bias), `conv.lin2`, `lin`.
    conv_lin1: Tensor,
    conv_lin2: (Tensor, Option<Tensor>),
    lin: (Tensor, Option<Tensor>),
}

/// SchNet's encoder: embedding and interaction blocks, under [`SCHNET_PREFIX`].
pub struct SchnetEncoder {
    embedding: Tensor,
    interactions: Vec<Interaction>,
    /// `[gaussians]` centres `μ_k` (a constant, not a variable).
    offsets: Tensor,
    coeff: f64,
    cutoff: f64,
    pub readout: Readout,
}

/// The per-atom output MLP (`hidden → hidden/2 → tasks`), under [`SCHNET_HEAD`], and with the sum
/// readout a per-task molecule offset (`schnet_output.offset`, 0 at initialization).
///
/// The offset is molpeg's, not PyG's: molpeg standardizes every model's targets per molecule,
/// `(y − μ)/σ` with the train split's μ, σ, and for an extensive target (U0 grows with the atom count)
/// that is `y/σ − μ/σ`, whose constant part a sum of per-atom terms can only approximate through the
/// atoms' neighbour counts. One bias per task after the sum gives it exactly, and leaves the
/// outputs extensive up to that constant.
pub struct SchnetHead {
    lin1: (Tensor, Option<Tensor>),
    lin2: (Tensor, Option<Tensor>),
    offset: Option<Tensor>,
}

impl SchnetEncoder {
    /// Variables initialized as PyG's `SchNet.reset_parameters` (embedding N(0, 1) with row 0 zero,
    /// xavier-uniform weights, zero biases).
    pub fn new(root: &Path, hidden: usize, interactions: usize, config: &SchnetConfig, device: Device) -> Result<SchnetEncoder> {
        let path = root.sub(SCHNET_ROOT);
        let embedding = path.sub("embedding").f_var("weight", &[MAX_ATOMIC_NUMBER as i64 + 1, hidden as i64], Init::Randn { mean: 0.0, stdev: 1.0 })?;
        // Row 0 (no element) is zero, as PyG's padding_idx=0.
        tch::no_grad(|| {
            let _ = embedding.get(0).zero_();
        });
        let mut blocks = Vec::with_capacity(interactions);
        for l in 0..interactions {
            let p = path.sub("interactions").sub(l);
            let mlp = p.sub("mlp");
            let conv = p.sub("conv");
            blocks.push(Interaction {
                filter1: linear(&mlp, "0", config.filters, config.gaussians, true)?,
                filter2: linear(&mlp, "2", config.filters, config.filters, true)?,
                conv_lin1: linear(&conv, "lin1", config.filters, hidden, false)?.0,
                conv_lin2: linear(&conv, "lin2", hidden, config.filters, true)?,
                lin: linear(&p, "lin", hidden, hidden, true)?,
            });
        }
        // GaussianSmearing(0, cutoff, gaussians): torch.linspace in f32, coeff from its first spacing.
        let offsets = Tensor::linspace(0.0, config.cutoff, config.gaussians as i64, (Kind::Float, device));
        let spacing = config.cutoff / (config.gaussians - 1) as f64;
        Ok(SchnetEncoder { embedding, interactions: blocks, offsets, coeff: -0.5 / (spacing * spacing), cutoff: config.cutoff, readout: config.readout })
    }

    /// Per-atom hidden states `[A, hidden]` after the last interaction block.
    // `h = h + v`, not `h += v`: an in-place add would overwrite the `h` autograd keeps for lin1's backward.
    #[allow(clippy::assign_op_pattern)]
    pub fn atom_representations(&self, g: &GeometryBatch) -> Tensor {
        let mut h = self.embedding.index_select(0, &g.atomic_numbers);
        let diff = g.positions.index_select(0, &g.dst) - g.positions.index_select(0, &g.src);
        let d = diff.square().sum_dim_intlist(1, false, Kind::Float).sqrt();
        let rbf = ((d.unsqueeze(1) - self.offsets.unsqueeze(0)).square() * self.coeff).exp();
        let envelope = (((&d * (PI / self.cutoff)).cos() + 1.0) * 0.5).unsqueeze(1);
        for block in &self.interactions {
            let w = ssp(&rbf.linear(&block.filter1.0, block.filter1.1.as_ref())).linear(&block.filter2.0, block.filter2.1.as_ref()) * &envelope;
            let x = h.linear::<Tensor>(&block.conv_lin1, None);
            let messages = x.index_select(0, &g.src) * w;
            let m = g.aggregate.mm(&messages).linear(&block.conv_lin2.0, block.conv_lin2.1.as_ref());
            h = h + ssp(&m).linear(&block.lin.0, block.lin.1.as_ref());
        }
        h
    }

    /// Per-atom values `[A, D]` reduced per molecule `[B, D]` with the readout.
    pub fn pool(&self, g: &GeometryBatch, atoms: &Tensor) -> Tensor {
        match self.readout {
            Readout::Sum => g.pool_sum.mm(atoms),
            Readout::Mean => g.pool_mean.mm(atoms),
        }
    }
}

impl SchnetHead {
    pub fn new(root: &Path, hidden: usize, num_tasks: usize, readout: Readout) -> Result<SchnetHead> {
        let path = root.sub(SCHNET_HEAD);
        let offset = match readout {
            Readout::Sum => Some(path.f_var("offset", &[num_tasks as i64], Init::Const(0.0))?),
            // lin2's bias already is a per-molecule constant under the mean.
            Readout::Mean => None,
        };
        Ok(SchnetHead { lin1: linear(&path, "lin1", hidden / 2, hidden, true)?, lin2: linear(&path, "lin2", num_tasks, hidden / 2, true)?, offset })
    }

    /// Per-atom outputs `[A, tasks]`.
    pub fn forward(&self, atoms: &Tensor) -> Tensor {
        ssp(&atoms.linear(&self.lin1.0, self.lin1.1.as_ref())).linear(&self.lin2.0, self.lin2.1.as_ref())
    }

    /// Molecule outputs `[B, tasks]` from per-atom hidden states: the MLP, the readout, the offset.
    pub fn outputs(&self, encoder: &SchnetEncoder, g: &GeometryBatch, atoms: &Tensor) -> Tensor {
        let pooled = encoder.pool(g, &self.forward(atoms));
        match &self.offset {
            Some(offset) => pooled + offset,
            None => pooled,
        }
    }
}

/// The batch's 3D part, or a panic that says how to collate for SchNet (a programming error).
pub fn geometry(batch: &Batch) -> &GeometryBatch {
    batch.geometry.as_ref().expect("a SchNet batch carries 3D atoms: collate with Model::geometry_input")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every ordered pair within the cutoff, the obvious way.
    fn brute_force(pos: &[[f32; 3]], cutoff: f32, max_neighbors: Option<usize>) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for i in 0..pos.len() {
            let mut near: Vec<(f32, usize)> = (0..pos.len())
                .filter(|&j| j != i)
                .map(|j| ((0..3).map(|c| (pos[i][c] - pos[j][c]).powi(2)).sum::<f32>(), j))
                .filter(|&(d, _)| d < cutoff * cutoff)
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            near.truncate(max_neighbors.unwrap_or(usize::MAX));
            near.sort_by_key(|x| x.1);
            out.extend(near.iter().map(|&(_, j)| (j as i64, i as i64)));
        }
        out
    }

    #[test]
    fn schnet_neighbour_list_matches_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut scratch = NeighbourScratch::default();
        let mut cut_some = 0;
        // Sizes on both sides of the all-pairs limit (the cell list runs above 64 atoms).
        for &n in &[1usize, 2, 5, 29, 64, 65, 200, 500] {
            let side = 1.5 * (n as f32).cbrt();
            let pos: Vec<[f32; 3]> = (0..n).map(|_| [0; 3].map(|_: i32| rng.random_range(-side..side))).collect();
            for (cutoff, k) in [(2.5f32, None), (1.0, None), (4.0, Some(5)), (100.0, None)] {
                let input = GeometryInput { cutoff, max_neighbors: k };
                let (mut src, mut dst) = (vec![7], vec![7]); // appends after what is there
                neighbour_pairs(&pos, &input, 10, &mut scratch, &mut src, &mut dst);
                let got: Vec<(i64, i64)> = src[1..].iter().zip(&dst[1..]).map(|(&s, &d)| (s - 10, d - 10)).collect();
                let want = brute_force(&pos, cutoff, k);
                assert_eq!(got, want, "{n} atoms, cutoff {cutoff}, max {k:?}");
                let all = n * n.saturating_sub(1);
                cut_some += (!want.is_empty() && want.len() < all) as usize;
            }
        }
        assert!(cut_some >= 10, "the cutoffs must drop some pairs and keep others ({cut_some} cases did)");
    }

    use crate::batch::{collate_inputs, Batch};
    use crate::data::{Atoms3d, GraphView, Sample};
    use crate::model::{Jk, Model, ModelConfig, ModelKind, Pooling};
    use crate::synthetic::{qm9_like, Molecule3d};

    fn config(readout: Readout, cutoff: f64, tasks: usize) -> ModelConfig {
        let schnet = SchnetConfig { filters: 12, gaussians: 20, cutoff, readout, max_neighbors: None };
        ModelConfig { kind: ModelKind::Schnet, layers: 2, width: 16, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: tasks, sequence: None, schnet: Some(schnet) }
    }

    /// A store holding `mols` as 3D atoms (the 2D graphs are one dummy atom each) with labels.
    fn store_of(mols: &[Molecule3d], labels: impl Fn(&Molecule3d) -> Vec<f32>, tasks: usize) -> GraphStore {
        let mut store = GraphStore::new(tasks);
        let mut atoms = Atoms3d::default();
        let mut s = Vec::new();
        for (id, m) in mols.iter().enumerate() {
            store.push(id as u32, GraphView { atoms: &[[5, 0]], edges: &[], bonds: &[], labels: &labels(m) }, &mut s).unwrap();
            atoms.push(&m.atomic_numbers, &m.positions).unwrap();
        }
        store.atoms3d = Some(atoms);
        store
    }

    fn batch_of(model: &Model, store: &GraphStore) -> Batch {
        let samples = Sample::unweighted(&(0..store.len() as u32).collect::<Vec<_>>());
        let input = model.geometry_input(store).unwrap();
        assert!(input.is_some());
        collate_inputs(store, &samples, None, input.as_ref()).to_device(Device::Cpu)
    }

    fn outputs(model: &Model, store: &GraphStore) -> (Vec<f32>, Vec<f32>) {
        let (out, h) = tch::no_grad(|| model.forward_with_representations(&batch_of(model, store), false));
        (Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(h.flatten(0, -1)).unwrap())
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// A random rotation (unit quaternion) and translation.
    fn rigid_motion(rng: &mut rand_chacha::ChaCha8Rng) -> impl Fn(&[f32; 3]) -> [f32; 3] {
        let q: [f64; 4] = [0; 4].map(|_: i32| rng.random_range(-1.0..1.0));
        let n = q.iter().map(|x| x * x).sum::<f64>().sqrt();
        let [w, x, y, z] = q.map(|v| v / n);
        let r = [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
        ];
        let t: [f64; 3] = [0; 3].map(|_: i32| rng.random_range(-20.0..20.0));
        move |p: &[f32; 3]| [0, 1, 2].map(|i| (r[i][0] * p[0] as f64 + r[i][1] * p[1] as f64 + r[i][2] * p[2] as f64 + t[i]) as f32)
    }

    #[test]
    fn schnet_is_invariant_to_rotation_translation_and_atom_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mols = qm9_like(6, 2);
        let labels = |_: &Molecule3d| vec![0.0, 0.0];
        for readout in [Readout::Sum, Readout::Mean] {
            tch::manual_seed(1);
            // A 3 Å cutoff drops pairs of these molecules, so the cutoff's envelope is exercised.
            let model = Model::new(&config(readout, 3.0, 2), Device::Cpu).unwrap();
            let (out, h) = outputs(&model, &store_of(&mols, labels, 2));
            assert!(out.iter().all(|v| v.is_finite()) && out.iter().any(|v| v.abs() > 1e-3), "{out:?}");
            let moved: Vec<Molecule3d> = mols
                .iter()
                .map(|m| {
                    let f = rigid_motion(&mut rng);
                    Molecule3d { atomic_numbers: m.atomic_numbers.clone(), positions: m.positions.iter().map(&f).collect() }
                })
                .collect();
            let (out2, h2) = outputs(&model, &store_of(&moved, labels, 2));
            assert!(max_diff(&out, &out2) < 1e-4 && max_diff(&h, &h2) < 1e-4, "rotation + translation moved outputs by {}", max_diff(&out, &out2));
            let shuffled: Vec<Molecule3d> = mols
                .iter()
                .map(|m| {
                    let mut order: Vec<usize> = (0..m.atomic_numbers.len()).collect();
                    rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
                    Molecule3d { atomic_numbers: order.iter().map(|&i| m.atomic_numbers[i]).collect(), positions: order.iter().map(|&i| m.positions[i]).collect() }
                })
                .collect();
            let (out3, h3) = outputs(&model, &store_of(&shuffled, labels, 2));
            assert!(max_diff(&out, &out3) < 1e-4 && max_diff(&h, &h3) < 1e-4, "an atom permutation moved outputs by {}", max_diff(&out, &out3));
            // The batch does not leak between molecules: each molecule alone gives the same output.
            let (alone, _) = outputs(&model, &store_of(&mols[2..3], labels, 2));
            assert!(max_diff(&out[4..6], &alone) < 1e-5);
        }
    }

    #[test]
    fn schnet_trains_a_step_with_molpeg_reference_and_checkpoint_round_trips() {
        use crate::dual_pace::{DualPace, ReferenceOptions};
        use crate::train::{Objective, TrainConfig, Trainer};
        let mols = qm9_like(40, 4);
        let store = store_of(&mols, |m| vec![m.atomic_numbers.len() as f32], 1);
        let train: Vec<u32> = (0..40).collect();
        tch::manual_seed(5);
        let model = Model::new(&config(Readout::Sum, 5.0, 1), Device::Cpu).unwrap();
        let before = model.snapshot();
        let objective = Objective::for_task(crate::data::TaskKind::Regression, &store, &train);
        let tc = TrainConfig { batch_size: 16, eval_batch_size: 16, lr: 1e-2, weight_decay: 0.0, prefetch: false, seed: 0, length_buckets: 0 };
        let mut trainer = Trainer::new(model, objective, tc).unwrap();
        // MolPeg's dual-pace scoring over SchNet's variables, with a shared-dropout request (no
        // dropout in SchNet, so it is accepted).
        let mut options = ReferenceOptions::official(0.5);
        options.dropout = crate::dual_pace::ReferenceDropout::Shared;
        trainer.reference = Some(DualPace::new(&trainer.model, options, 0).unwrap());
        let reference_before = trainer.reference.as_ref().unwrap().reference.snapshot();
        let mut reference_losses = 0;
        let stats = trainer
            .train_epoch(&store, &Sample::unweighted(&train), |o| {
                let r = o.reference_losses.expect("the reference scores every batch");
                assert!(r.iter().all(|l| l.is_finite()) && r.len() == o.losses.len());
                reference_losses += r.len();
                Ok(())
            })
            .unwrap();
        assert_eq!(reference_losses, 40);
        assert!(stats.mean_loss.is_finite() && stats.mean_loss > 0.0);
        let after = trainer.model.snapshot();
        let moved = |a: &[(String, Tensor)], b: &[(String, Tensor)]| a.iter().zip(b).filter(|(x, y)| !x.1.equal(&y.1)).map(|(x, _)| x.0.clone()).collect::<Vec<_>>();
        let changed = moved(&before, &after);
        // Every variable gets a gradient (row 0 of the embedding is not a variable of its own).
        assert_eq!(changed.len(), before.len(), "unchanged: {:?}", before.iter().map(|v| &v.0).filter(|n| !changed.contains(n)).collect::<Vec<_>>());
        assert!(before.iter().any(|(n, _)| n == "schnet.interactions.1.conv.lin1.weight") && before.iter().any(|(n, _)| n == "schnet_output.lin2.bias"));
        // ξ moved towards θ in every variable.
        assert_eq!(moved(&reference_before, &trainer.reference.as_ref().unwrap().reference.snapshot()).len(), before.len());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        crate::checkpoint::save_model(&path, &trainer.model, &Default::default()).unwrap();
        let (loaded, ckpt) = crate::checkpoint::load_model(&path, Device::Cpu).unwrap();
        assert_eq!(ckpt.model_config().unwrap(), trainer.model.config);
        assert_eq!(loaded.config.schnet.unwrap().cutoff, 5.0);
        let (a, ha) = outputs(&trainer.model, &store);
        let (b, hb) = outputs(&loaded, &store);
        assert_eq!((a, ha), (b, hb));
        // The encoder alone loads into a SchNet with another head (a pretrained encoder).
        let other = Model::new(&config(Readout::Sum, 5.0, 3), Device::Cpu).unwrap();
        ckpt.load_into(&other, crate::checkpoint::Scope::Encoder).unwrap();
        assert_eq!(outputs(&other, &store).1, outputs(&loaded, &store).1);
    }

    #[test]
    fn schnet_matches_pyg_schnet_on_the_same_weights() {
        let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = std::process::Command::new(&python).args(["-c", "import torch_geometric"]).output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("NOTICE: skipping the PyG SchNet cross-check: {python} cannot import torch_geometric (pip install torch_geometric)");
            return;
        }
        let mut mols = qm9_like(5, 9);
        // One molecule larger than the all-pairs limit, so the cell list is checked against PyG too.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        mols.push(Molecule3d { atomic_numbers: (0..80).map(|i| [1, 6, 7, 8, 9][i % 5]).collect(), positions: (0..80).map(|_| [0; 3].map(|_: i32| rng.random_range(-4.0f32..4.0))).collect() });
        for (readout, cutoff) in [(Readout::Sum, 4.0), (Readout::Mean, 2.5)] {
            tch::manual_seed(3);
            let cfg = config(readout, cutoff, 2);
            let model = Model::new(&cfg, Device::Cpu).unwrap();
            // Biases are 0 at initialization; make them matter.
            tch::no_grad(|| {
                for (name, mut t) in model.named_variables() {
                    if name.ends_with("bias") || name.ends_with("offset") {
                        let _ = t.uniform_(-0.3, 0.3);
                    }
                }
            });
            let store = store_of(&mols, |_| vec![0.0, 0.0], 2);
            let (ours, _) = outputs(&model, &store);
            let pairs = batch_of(&model, &store).geometry.unwrap().src.size()[0];
            let tensors: serde_json::Map<String, serde_json::Value> = model
                .named_variables()
                .into_iter()
                .map(|(n, t)| {
                    let flat = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
                    let size = t.size();
                    let value = if size.len() == 2 { serde_json::json!(flat.chunks(size[1] as usize).collect::<Vec<_>>()) } else { serde_json::json!(flat) };
                    (n, value)
                })
                .collect();
            let s = cfg.schnet.unwrap();
            let spec = serde_json::json!({
                "config": {"hidden": cfg.width, "filters": s.filters, "interactions": cfg.layers, "gaussians": s.gaussians, "cutoff": s.cutoff, "readout": readout, "num_tasks": 2},
                "tensors": tensors,
                "molecules": mols.iter().map(|m| serde_json::json!({"z": m.atomic_numbers, "pos": m.positions})).collect::<Vec<_>>(),
            });
            let dir = tempfile::tempdir().unwrap();
            let (input, output) = (dir.path().join("in.json"), dir.path().join("out.json"));
            std::fs::write(&input, spec.to_string()).unwrap();
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pyg_schnet.py");
            let run = std::process::Command::new(&python).arg(script).arg(&input).arg(&output).env("OMP_NUM_THREADS", "1").output().unwrap();
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
            let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
            let flat: Vec<f32> = theirs["outputs"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
            assert_eq!(theirs["pairs"].as_i64().unwrap(), pairs, "the same neighbour pairs");
            let diff = max_diff(&ours, &flat);
            assert!(diff < 1e-4, "readout {readout:?}: molpeg {ours:?} vs PyG {flat:?} (max difference {diff})");
            assert!(flat.iter().any(|v| v.abs() > 0.05), "outputs too small to compare: {flat:?}");
        }
    }

    #[test]
    fn schnet_learns_a_synthetic_target_and_reports_per_task_mae() {
        use crate::finetune::{self, FinetuneSettings, Monitor, SchnetPreset, SchnetSettings};
        let dir = tempfile::tempdir().unwrap();
        let (graphs, split) = crate::synthetic::write_qm9_like_dataset(dir.path(), 300, 7).unwrap();
        let data = crate::data::Dataset::load_for(&graphs, &split, ModelKind::Schnet).unwrap();
        let schnet = SchnetSettings { preset: SchnetPreset::Cpu, hidden: Some(32), filters: Some(32), interactions: Some(2), gaussians: Some(25), ..Default::default() };
        let s = FinetuneSettings { model: ModelKind::Schnet, schnet, epochs: 30, batch_size: 16, lr: 2e-3, monitor: Monitor::Mae, prefetch: false, device: crate::device::DeviceChoice::Cpu, ..Default::default() };
        s.validate().unwrap();
        let trained = finetune::train(&data, &s, Sample::unweighted(&data.train), Device::Cpu, &indicatif::ProgressBar::hidden(), false, finetune::TestEvaluation::EveryEpoch).unwrap();
        let mae = |epoch: u32, task: Option<&str>| {
            trained.fit.rows.iter().find(|r| r.epoch == epoch && r.split == "valid" && r.metric == "mae" && r.task.as_deref() == task).and_then(|r| r.value).unwrap()
        };
        let (first, last) = (mae(1, None), mae(30, None));
        assert!(last < 0.3 * first, "valid MAE {first} after epoch 1, {last} after epoch 30");
        // Per-target MAE in each target's own units, clearly below predicting the train mean.
        for (k, task) in crate::synthetic::QM9_LIKE_TASKS.iter().enumerate() {
            let label = |g: &u32| data.store.labels(*g as usize)[k] as f64;
            let mean = data.train.iter().map(label).sum::<f64>() / data.train.len() as f64;
            let constant = data.valid.iter().map(|g| (label(g) - mean).abs()).sum::<f64>() / data.valid.len() as f64;
            let got = (26..=30).map(|e| mae(e, Some(task))).fold(f64::INFINITY, f64::min);
            assert!(got < 0.75 * constant, "{task}: valid MAE {got} vs {constant} for the train mean");
        }
        assert_eq!(trained.monitor, "mae");
        // The molecule embedding is the pooled hidden state: hidden wide, one row per molecule.
        let (_, reps) = trained.trainer.predict_with_representations(&data.store, &data.valid).unwrap();
        assert_eq!((reps.dim, reps.embeddings.len()), (32, 32 * data.valid.len()));
    }

    #[test]
    fn schnet_runs_dynamic_molpeg_pruning() {
        use crate::finetune::{self, FinetuneSettings, SchnetPreset, SchnetSettings};
        let dir = tempfile::tempdir().unwrap();
        let (graphs, split) = crate::synthetic::write_qm9_like_dataset(dir.path(), 100, 3).unwrap();
        let data = crate::data::Dataset::load_for(&graphs, &split, ModelKind::Schnet).unwrap();
        let schnet = SchnetSettings { preset: SchnetPreset::Cpu, hidden: Some(16), filters: Some(16), interactions: Some(1), ..Default::default() };
        let s = FinetuneSettings { model: ModelKind::Schnet, schnet, epochs: 3, batch_size: 16, dynamic: Some("molpeg".into()), keep: Some(0.5), prefetch: false, ..Default::default() };
        s.validate().unwrap();
        let trained = finetune::train(&data, &s, Sample::unweighted(&data.train), Device::Cpu, &indicatif::ProgressBar::hidden(), false, finetune::TestEvaluation::EveryEpoch).unwrap();
        let policy = trained.dynamic.expect("a dynamic run keeps its policy");
        // MolPeg's scores need ξ's losses on every trained batch; half the split per epoch.
        assert!(!policy.sightings.is_empty());
        assert_eq!(trained.trainer.samples_seen, 3 * (data.train.len() as u64 / 2));
    }

    #[test]
    fn schnet_settings_presets_and_errors() {
        use crate::finetune::{FinetuneSettings, SchnetPreset, SchnetSettings};
        let gpu = SchnetSettings::default().model_config(1);
        assert_eq!((gpu.layers, gpu.width, gpu.schnet.unwrap()), (6, 128, SchnetConfig { filters: 128, gaussians: 50, cutoff: 10.0, readout: Readout::Sum, max_neighbors: None }));
        let cpu = SchnetSettings { preset: SchnetPreset::Cpu, readout: Readout::Mean, ..Default::default() }.model_config(1);
        assert_eq!((cpu.layers, cpu.width, cpu.schnet.unwrap().filters, cpu.schnet.unwrap().cutoff), (3, 64, 64, 5.0));
        let molscaling = SchnetSettings { preset: SchnetPreset::Molscaling, ..Default::default() }.model_config(1);
        assert_eq!((molscaling.layers, molscaling.width, molscaling.schnet.unwrap()), (6, 128, SchnetConfig { filters: 128, gaussians: 51, cutoff: 5.0, readout: Readout::Sum, max_neighbors: None }));
        let p = molpeg_core::pipeline::Pipeline::parse(std::path::Path::new("p.toml"), "[finetune]\nmodel = \"schnet\"\n[finetune.schnet]\npreset = \"cpu\"\ncutoff = 4.5\nreadout = \"mean\"\n").unwrap();
        let s: FinetuneSettings = p.section("finetune").unwrap();
        assert_eq!((s.model, s.schnet.resolve().2.cutoff, s.schnet.readout), (ModelKind::Schnet, 4.5, Readout::Mean));
        let bad = FinetuneSettings { model: ModelKind::Schnet, schnet: SchnetSettings { cutoff: Some(0.0), ..Default::default() }, ..Default::default() };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("[finetune.schnet]") && err.contains("cutoff"), "{err}");
        assert!(ModelConfig { dropout: 0.5, ..config(Readout::Sum, 5.0, 1) }.validate().unwrap_err().to_string().contains("no dropout"));
        // Missing or unusable 3D atoms are errors that say what is wrong.
        let model = Model::new(&config(Readout::Sum, 5.0, 1), Device::Cpu).unwrap();
        let mut store = store_of(&qm9_like(2, 0), |_| vec![0.0], 1);
        store.atoms3d.as_mut().unwrap().atomic_numbers[3] = 120;
        let err = model.geometry_input(&store).unwrap_err().to_string();
        assert!(err.contains("mol_id 0") && err.contains("1..=99"), "{err}");
        store.atoms3d = None;
        assert!(model.geometry_input(&store).unwrap_err().to_string().contains("atoms3d.parquet"));
        let dir = tempfile::tempdir().unwrap();
        let err = crate::data::model_input_files(&dir.path().join("graphs.parquet"), ModelKind::Schnet).unwrap_err().to_string();
        assert!(err.contains("atoms3d.parquet") && err.contains("featurize"), "{err}");
    }

    /// Runs only where CUDA exists (compiled everywhere): CUDA outputs equal the CPU's, and two
    /// seeded training steps give the same weights up to float summation order.
    #[test]
    fn schnet_on_cuda_matches_cpu() {
        if !tch::Cuda::is_available() {
            eprintln!("NOTICE: skipping schnet_on_cuda_matches_cpu: no CUDA device");
            return;
        }
        let mols = qm9_like(16, 8);
        let store = store_of(&mols, |m| vec![m.atomic_numbers.len() as f32], 1);
        tch::manual_seed(2);
        let cpu = Model::new(&config(Readout::Sum, 5.0, 1), Device::Cpu).unwrap();
        let gpu = Model::new(&config(Readout::Sum, 5.0, 1), Device::Cuda(0)).unwrap();
        gpu.restore(&cpu.snapshot()).unwrap();
        let samples = Sample::unweighted(&(0..16).collect::<Vec<_>>());
        let input = cpu.geometry_input(&store).unwrap();
        let host = collate_inputs(&store, &samples, None, input.as_ref());
        let a = tch::no_grad(|| cpu.forward(&host.to_device(Device::Cpu), false));
        let b = tch::no_grad(|| gpu.forward(&host.to_device(Device::Cuda(0)), false)).to_device(Device::Cpu);
        assert!(a.allclose(&b, 1e-4, 1e-4, false), "{a} vs {b}");
        let step = || {
            use crate::train::{Objective, TrainConfig, Trainer};
            tch::manual_seed(4);
            let model = Model::new(&config(Readout::Sum, 5.0, 1), Device::Cuda(0)).unwrap();
            let objective = Objective::for_task(crate::data::TaskKind::Regression, &store, &(0..16).collect::<Vec<_>>());
            let tc = TrainConfig { batch_size: 8, eval_batch_size: 8, lr: 1e-2, weight_decay: 0.0, prefetch: true, seed: 0, length_buckets: 0 };
            let mut trainer = Trainer::new(model, objective, tc).unwrap();
            trainer.train_epoch(&store, &samples, |_| Ok(())).unwrap();
            trainer.model.snapshot()
        };
        for ((n, x), (_, y)) in step().iter().zip(step().iter()) {
            assert!(x.allclose(y, 1e-5, 1e-5, false), "{n} differs between two seeded CUDA runs");
        }
    }

    #[test]
    fn schnet_host_geometry_offsets_follow_molecules() {
        let mut store = GraphStore::new(1);
        let mut atoms = crate::data::Atoms3d::default();
        atoms.push(&[6, 1, 1], &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]]).unwrap();
        atoms.push(&[8], &[[5.0, 5.0, 5.0]]).unwrap();
        let mut s = Vec::new();
        for id in 0..2 {
            store.push(id, crate::data::GraphView { atoms: &[[5, 0]], edges: &[], bonds: &[], labels: &[0.0] }, &mut s).unwrap();
        }
        store.atoms3d = Some(atoms);
        let input = GeometryInput { cutoff: 2.0, max_neighbors: None };
        let g = HostGeometry::collate(&store, [1usize, 0].into_iter(), &input);
        assert_eq!(g.atomic_numbers, vec![8, 6, 1, 1]);
        assert_eq!(g.atom_ptr, vec![0, 1, 4]);
        // Only atoms 1 and 2 (C, the first H) are within 2 Å of each other.
        assert_eq!((g.src.clone(), g.dst.clone()), (vec![2, 1], vec![1, 2]));
        assert_eq!(g.pair_ptr, vec![0, 0, 1, 2, 2]);
        assert_eq!(g.inv_atoms, vec![1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        // A batch without any pair (one lone atom) still runs: its filters sum to nothing.
        tch::manual_seed(0);
        let model = Model::new(&config(Readout::Mean, 2.0, 1), Device::Cpu).unwrap();
        let lone = collate_inputs(&store, &Sample::unweighted(&[1]), None, Some(&input)).to_device(Device::Cpu);
        assert_eq!(lone.geometry.as_ref().unwrap().src.size(), [0]);
        let out = tch::no_grad(|| model.forward(&lone, false));
        assert!(out.size() == [1, 1] && out.double_value(&[0, 0]).is_finite());
    }
}
