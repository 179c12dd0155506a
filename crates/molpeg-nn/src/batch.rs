//! Collation of variable-size graphs into batch tensors, and the prefetching loader.
//!
//! A batch is built by concatenating the [`GraphStore`]'s per-graph slices with node offsets added:
//! no per-graph allocation, and no sorting (the store keeps each node's in-neighbours sorted with the
//! self-loop included, so the concatenation already is a CSR matrix). For a 3D model the batch also
//! carries the molecules' 3D atoms and their neighbour pairs within the cutoff
//! ([`crate::schnet::HostGeometry`]). [`for_each_batch`] collates the
//! next batch on a second thread while the current one trains.

use std::sync::{mpsc, Arc};

use tch::{Device, Kind, Tensor};

use crate::data::{GraphStore, Sample, EDGE_FEATURES};
use crate::schnet::{GeometryBatch, GeometryInput, HostGeometry, HostGeometryTensors};
use crate::Result;

/// A collated batch in host memory.
#[derive(Debug, Clone, Default)]
pub struct HostBatch {
    /// Store indices of the batch's graphs, in batch order.
    pub samples: Vec<u32>,
    pub weights: Vec<f32>,
    pub num_tasks: usize,
    pub atom_type: Vec<i64>,
    pub chirality: Vec<i64>,
    /// CSR row pointers (`num_nodes + 1`) and columns of the in-neighbour matrix, self-loops included.
    pub adj_crow: Vec<i64>,
    pub adj_col: Vec<i64>,
    /// `num_nodes × EDGE_FEATURES` counts of incoming bond types then bond directions.
    pub edge_counts: Vec<f32>,
    /// Node offset of each graph (`num_graphs + 1`).
    pub graph_ptr: Vec<i64>,
    /// `1 / n` for each node of an `n`-atom graph: the values of the mean-pooling matrix.
    pub inv_sizes: Vec<f32>,
    /// `num_graphs × num_tasks`; missing labels are 0 with mask 0.
    pub labels: Vec<f32>,
    pub mask: Vec<f32>,
    /// `num_graphs × token_len` model token ids, 0 ([`PAD_ID`]) after each sequence's end; empty
    /// unless the batch was collated for a token model ([`TokenInput`]).
    pub tokens: Vec<i64>,
    pub token_len: usize,
    /// The 3D atoms and neighbour pairs of a 3D model's batch ([`GeometryInput`]).
    pub geometry: Option<HostGeometry>,
}

/// Token id 0 pads every token sequence (fingerprint bits are ids `bit + 1`; a SMILES vocabulary has
/// `<pad>` at 0).
pub const PAD_ID: i64 = molpeg_core::smiles_tokens::PAD_ID;

/// What the collator adds to a batch for a model that reads token sequences
/// ([`crate::model::Model::token_input`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenInput {
    /// The set bits of the store's fingerprints, as ids `bit + 1`.
    FingerprintBits,
    /// The store's SMILES tokens mapped to the model's vocabulary (`map[dataset token id]`, unknown
    /// tokens to `<unk>`), at most `max_len` per molecule.
    Smiles { map: Arc<Vec<i64>>, max_len: usize },
}

impl TokenInput {
    /// Molecule `g`'s tokens in the store's own ids (bit indices, or dataset SMILES token ids), before
    /// truncation.
    fn row<'a>(&self, store: &'a GraphStore, g: usize) -> &'a [u32] {
        let table = match self {
            TokenInput::FingerprintBits => &store.fingerprints.as_ref().expect("checked by token_input").table,
            TokenInput::Smiles { .. } => &store.smiles.as_ref().expect("checked by token_input").table,
        };
        table.row(g)
    }

    /// How many tokens molecule `g` gives the model (after truncation).
    pub fn length(&self, store: &GraphStore, g: usize) -> usize {
        self.kept(store, g).len()
    }

    /// Molecule `g`'s tokens after truncation.
    fn kept<'a>(&self, store: &'a GraphStore, g: usize) -> &'a [u32] {
        let row = self.row(store, g);
        match self {
            TokenInput::FingerprintBits => row,
            TokenInput::Smiles { max_len, .. } => &row[..row.len().min(*max_len)],
        }
    }

    /// Appends molecule `g`'s model ids (at most `len`, then padding up to `len`) to `out`.
    fn write(&self, store: &GraphStore, g: usize, len: usize, out: &mut Vec<i64>) {
        let start = out.len();
        let row = self.kept(store, g).iter().take(len);
        match self {
            TokenInput::FingerprintBits => out.extend(row.map(|&b| b as i64 + 1)),
            TokenInput::Smiles { map, .. } => out.extend(row.map(|&t| map[t as usize])),
        }
        out.resize(start + len, PAD_ID);
    }

    /// How well the model's vocabulary covers molecules `indices`: tokens read, tokens mapped to
    /// `<unk>`, and molecules cut at `max_len`.
    pub fn coverage(&self, store: &GraphStore, indices: &[u32]) -> TokenCoverage {
        let mut c = TokenCoverage::default();
        for &g in indices {
            let (row, kept) = (self.row(store, g as usize), self.kept(store, g as usize));
            c.tokens += kept.len() as u64;
            c.truncated_molecules += (kept.len() < row.len()) as u64;
            if let TokenInput::Smiles { map, .. } = self {
                c.unknown += kept.iter().filter(|&&t| map[t as usize] == molpeg_core::smiles_tokens::UNK_ID).count() as u64;
            }
        }
        c
    }
}

/// What [`TokenInput::coverage`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCoverage {
    pub tokens: u64,
    /// Tokens not in the model's vocabulary (read as `<unk>`).
    pub unknown: u64,
    /// Molecules with more tokens than the model's length limit (the rest is cut).
    pub truncated_molecules: u64,
}

impl HostBatch {
    pub fn num_graphs(&self) -> usize {
        self.samples.len()
    }
    pub fn num_nodes(&self) -> usize {
        self.atom_type.len()
    }
}

/// Concatenates the graphs of `samples` into one batch.
pub fn collate(store: &GraphStore, samples: &[Sample]) -> HostBatch {
    collate_with(store, samples, None)
}

/// [`collate`], plus the samples' token sequences for a token model, padded to the batch's longest.
pub fn collate_with(store: &GraphStore, samples: &[Sample], tokens: Option<&TokenInput>) -> HostBatch {
    collate_inputs(store, samples, tokens, None)
}

/// [`collate_with`], plus the samples' 3D atoms and neighbour lists for a 3D model.
pub fn collate_inputs(store: &GraphStore, samples: &[Sample], tokens: Option<&TokenInput>, geometry: Option<&GeometryInput>) -> HostBatch {
    let t = store.num_tasks;
    let nodes: usize = samples.iter().map(|s| store.num_nodes(s.index as usize)).sum();
    let nnz: usize = samples.iter().map(|s| store.adj_len(s.index as usize)).sum();
    let b = samples.len();
    let mut out = HostBatch {
        samples: Vec::with_capacity(b),
        weights: Vec::with_capacity(b),
        num_tasks: t,
        atom_type: Vec::with_capacity(nodes),
        chirality: Vec::with_capacity(nodes),
        adj_crow: Vec::with_capacity(nodes + 1),
        adj_col: Vec::with_capacity(nnz),
        edge_counts: Vec::with_capacity(nodes * EDGE_FEATURES),
        graph_ptr: Vec::with_capacity(b + 1),
        inv_sizes: Vec::with_capacity(nodes),
        labels: Vec::with_capacity(b * t),
        mask: Vec::with_capacity(b * t),
        tokens: Vec::new(),
        token_len: 0,
        geometry: geometry.map(|input| HostGeometry::collate(store, samples.iter().map(|s| s.index as usize), input)),
    };
    if let Some(input) = tokens {
        let len = samples.iter().map(|s| input.kept(store, s.index as usize).len()).max().unwrap_or(0);
        out.tokens.reserve(b * len);
        for s in samples {
            input.write(store, s.index as usize, len, &mut out.tokens);
        }
        out.token_len = len;
    }
    out.adj_crow.push(0);
    out.graph_ptr.push(0);
    for s in samples {
        let g = s.index as usize;
        let base = out.atom_type.len() as i64;
        let atoms = store.atoms(g);
        out.atom_type.extend(atoms.iter().map(|a| a[0] as i64));
        out.chirality.extend(atoms.iter().map(|a| a[1] as i64));
        for v in store.node_range(g) {
            out.adj_col.extend(store.adjacency(v).iter().map(|&j| base + j as i64));
            out.adj_crow.push(out.adj_col.len() as i64);
        }
        out.edge_counts.extend(store.edge_counts(g).iter().flatten().map(|&c| c as f32));
        out.inv_sizes.extend(std::iter::repeat_n(1.0 / atoms.len() as f32, atoms.len()));
        out.graph_ptr.push(out.atom_type.len() as i64);
        for &y in store.labels(g) {
            let missing = y.is_nan();
            out.labels.push(if missing { 0.0 } else { y });
            out.mask.push(if missing { 0.0 } else { 1.0 });
        }
        out.samples.push(s.index);
        out.weights.push(s.weight);
    }
    out
}

/// A batch as tensors on the training device.
#[derive(Debug)]
pub struct Batch {
    pub samples: Vec<u32>,
    pub num_graphs: i64,
    pub num_nodes: i64,
    /// `[B]` per-sample loss weights.
    pub weights: Tensor,
    /// `[N]` int64 atom-type and chirality indices (pretraining overwrites masked atoms here).
    pub atom_type: Tensor,
    pub chirality: Tensor,
    /// `[N, N]` sparse CSR in-neighbour matrix with self-loops (row = receiving node).
    pub adj: Tensor,
    /// `[N, EDGE_FEATURES]` incoming-edge feature counts: bond types, then bond directions.
    pub edge_counts: Tensor,
    /// `[B + 1]` int64 node offsets, `[B]` int64 node counts.
    pub graph_ptr: Tensor,
    pub sizes: Tensor,
    /// `[B, N]` sparse CSR pooling matrices (values `1/n` and 1).
    pub pool_mean: Tensor,
    pub pool_sum: Tensor,
    /// `[B, T]` labels (0 where missing) and validity mask.
    pub labels: Tensor,
    pub mask: Tensor,
    /// `[layers, N, width]` dropout masks drawn on the loader thread, if the loader was asked for them.
    pub dropout: Option<Tensor>,
    /// A second, independent set of masks for MolPeg's reference model (its own dropout, as the
    /// official code's separate forward pass draws), if the loader was asked for them.
    pub reference_dropout: Option<Tensor>,
    /// `[B, L]` int64 token ids of a token model, [`PAD_ID`] after each sequence.
    pub tokens: Option<Tensor>,
    /// A 3D model's atoms, positions and neighbour pairs.
    pub geometry: Option<GeometryBatch>,
}

/// The dense tensors of a batch, built off the training thread; [`HostTensors::assemble`] finishes it.
pub struct HostTensors {
    samples: Vec<u32>,
    weights: Tensor,
    atom_type: Tensor,
    chirality: Tensor,
    adj_crow: Tensor,
    adj_col: Tensor,
    edge_counts: Tensor,
    graph_ptr: Tensor,
    inv_sizes: Tensor,
    labels: Tensor,
    mask: Tensor,
    tokens: Option<Tensor>,
    geometry: Option<HostGeometryTensors>,
    pub(crate) dropout: Option<Tensor>,
    pub(crate) reference_dropout: Option<Tensor>,
}

impl HostBatch {
    pub fn to_tensors(&self) -> HostTensors {
        let n = self.num_nodes() as i64;
        let b = self.num_graphs() as i64;
        let t = self.num_tasks as i64;
        HostTensors {
            samples: self.samples.clone(),
            weights: Tensor::from_slice(&self.weights),
            atom_type: Tensor::from_slice(&self.atom_type),
            chirality: Tensor::from_slice(&self.chirality),
            adj_crow: Tensor::from_slice(&self.adj_crow),
            adj_col: Tensor::from_slice(&self.adj_col),
            edge_counts: Tensor::from_slice(&self.edge_counts).view([n, EDGE_FEATURES as i64]),
            graph_ptr: Tensor::from_slice(&self.graph_ptr),
            inv_sizes: Tensor::from_slice(&self.inv_sizes),
            labels: Tensor::from_slice(&self.labels).view([b, t]),
            mask: Tensor::from_slice(&self.mask).view([b, t]),
            tokens: (self.token_len > 0).then(|| Tensor::from_slice(&self.tokens).view([b, self.token_len as i64])),
            geometry: self.geometry.as_ref().map(HostGeometry::to_tensors),
            dropout: None,
            reference_dropout: None,
        }
    }

    /// Collated batch straight to `device` (no prefetching).
    pub fn to_device(&self, device: Device) -> Batch {
        self.to_tensors().assemble(device)
    }
}

impl HostTensors {
    /// Moves the tensors to `device` and builds the sparse matrices there.
    pub fn assemble(self, device: Device) -> Batch {
        crate::runtime::silence_sparse_csr_notice();
        let n = self.atom_type.size()[0];
        let b = self.samples.len() as i64;
        let mv = |t: Tensor| if device == Device::Cpu { t } else { t.to_device(device) };
        let adj_crow = mv(self.adj_crow);
        let adj_col = mv(self.adj_col);
        let nnz = adj_col.size()[0];
        let adj = Tensor::sparse_csr_tensor_crow_col_value_size(&adj_crow, &adj_col, &Tensor::ones([nnz], (Kind::Float, device)), [n, n], (Kind::Float, device));
        let graph_ptr = mv(self.graph_ptr);
        let node_ids = Tensor::arange(n, (Kind::Int64, device));
        let inv_sizes = mv(self.inv_sizes);
        let pool_mean = Tensor::sparse_csr_tensor_crow_col_value_size(&graph_ptr, &node_ids, &inv_sizes, [b, n], (Kind::Float, device));
        let pool_sum = Tensor::sparse_csr_tensor_crow_col_value_size(&graph_ptr, &node_ids, &Tensor::ones([n], (Kind::Float, device)), [b, n], (Kind::Float, device));
        let sizes = graph_ptr.narrow(0, 1, b) - graph_ptr.narrow(0, 0, b);
        Batch {
            num_graphs: b,
            num_nodes: n,
            weights: mv(self.weights),
            atom_type: mv(self.atom_type),
            chirality: mv(self.chirality),
            adj,
            edge_counts: mv(self.edge_counts),
            graph_ptr,
            sizes,
            pool_mean,
            pool_sum,
            labels: mv(self.labels),
            mask: mv(self.mask),
            dropout: self.dropout.map(mv),
            reference_dropout: self.reference_dropout.map(mv),
            tokens: self.tokens.map(mv),
            geometry: self.geometry.map(|g| g.assemble(device)),
            samples: self.samples,
        }
    }
}

/// Dropout masks drawn by the loader instead of libtorch. libtorch draws CPU dropout masks one
/// element at a time from one generator (its vectorized path is Intel-only), which made dropout a
/// fifth of a CPU training step; here they come from a counter-based generator keyed by
/// `(seed, batch index)`, filled in parallel (or on the prefetch thread), and are reproducible
/// whatever else uses libtorch's generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutSpec {
    pub layers: usize,
    pub width: usize,
    pub p: f64,
    pub seed: u64,
}

/// splitmix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed mixing two numbers (e.g. a run seed and an epoch or batch index).
pub fn mix_seed(seed: u64, index: u64) -> u64 {
    mix64(seed ^ mix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

impl DropoutSpec {
    /// `layers × nodes × width` masks for batch `index`: each entry is 0 with probability `p`
    /// (quantized to 1/65536) and `1/(1−p)` otherwise, like `torch.nn.functional.dropout`.
    pub fn masks(&self, nodes: usize, index: u64) -> Vec<f32> {
        let mut out = vec![0f32; self.layers * nodes * self.width];
        self.fill(&mut out, index);
        out
    }

    /// [`DropoutSpec::masks`] as a `[layers, nodes, width]` CPU tensor, written in place.
    pub fn mask_tensor(&self, nodes: usize, index: u64) -> Tensor {
        let shape = [self.layers as i64, nodes as i64, self.width as i64];
        let t = Tensor::empty(shape, (Kind::Float, Device::Cpu));
        let len = self.layers * nodes * self.width;
        // SAFETY: `t` was just allocated as a contiguous f32 CPU tensor of `len` elements and nothing
        // else refers to it yet.
        let data = unsafe { std::slice::from_raw_parts_mut(t.data_ptr().cast::<f32>(), len) };
        // Two halves in parallel: the step's libtorch threads are idle while a batch is prepared.
        let (a, b) = data.split_at_mut((len / 2) & !3);
        let first_chunks = a.len() / 4;
        std::thread::scope(|s| {
            s.spawn(|| self.fill_from(b, index, first_chunks));
            self.fill_from(a, index, 0);
        });
        t
    }

    fn fill(&self, out: &mut [f32], index: u64) {
        self.fill_from(out, index, 0);
    }

    /// Fills `out` with the masks from chunk `first` on (4 values per chunk).
    fn fill_from(&self, out: &mut [f32], index: u64, first: usize) {
        let threshold = (self.p * 65536.0).round() as u64;
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let base = mix_seed(self.seed, index);
        // Counter-based: chunk i takes four 16-bit lanes of mix64(base + i·φ); branch-free.
        for (i, chunk) in out.chunks_mut(4).enumerate() {
            let r = mix64(base.wrapping_add(((first + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            for (lane, v) in chunk.iter_mut().enumerate() {
                let keep = (r >> (16 * lane)) & 0xFFFF >= threshold;
                *v = scale * keep as u8 as f32;
            }
        }
    }
}

/// How [`for_each_batch`] batches a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Collate batch k+1 on a second thread while the caller works on batch k.
    pub prefetch: bool,
    pub dropout: Option<DropoutSpec>,
    /// Masks of MolPeg's reference model, drawn like `dropout` with their own seed.
    pub reference_dropout: Option<DropoutSpec>,
    /// Token sequences of a token model.
    pub tokens: Option<TokenInput>,
    /// 3D atoms and neighbour lists of a 3D model.
    pub geometry: Option<GeometryInput>,
}

fn prepare(store: &GraphStore, chunk: &[Sample], index: usize, options: &LoaderOptions) -> HostTensors {
    let host = collate_inputs(store, chunk, options.tokens.as_ref(), options.geometry.as_ref());
    let mut tensors = host.to_tensors();
    tensors.dropout = options.dropout.map(|spec| spec.mask_tensor(host.num_nodes(), index as u64));
    tensors.reference_dropout = options.reference_dropout.map(|spec| spec.mask_tensor(host.num_nodes(), index as u64));
    tensors
}

/// Runs `f` on each batch of `plan`, in order, `batch_size` graphs each (the last one smaller).
/// An error from `f` stops the producer thread and is returned.
pub fn for_each_batch(store: &GraphStore, plan: &[Sample], options: &LoaderOptions, device: Device, mut f: impl FnMut(Batch) -> Result<()>) -> Result<()> {
    for_each_prepared(plan, options.batch_size, options.prefetch, |chunk, k| prepare(store, chunk, k, options), |host| f(host.assemble(device)))
}

/// The loader underneath [`for_each_batch`], for callers that prepare batches their own way (the
/// pretraining stage masks atoms as it collates): `prepare(samples, batch index)` runs on a second
/// thread when `prefetch` is set, one batch ahead of `f`.
pub fn for_each_prepared<T: Send>(
    plan: &[Sample],
    batch_size: usize,
    prefetch: bool,
    prepare: impl Fn(&[Sample], usize) -> T + Sync,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let batch_size = batch_size.max(1);
    if !prefetch {
        for (k, chunk) in plan.chunks(batch_size).enumerate() {
            f(prepare(chunk, k))?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        // Two batches in flight: one being worked on, one ready.
        let (tx, rx) = mpsc::sync_channel::<T>(1);
        let prepare = &prepare;
        scope.spawn(move || {
            for (k, chunk) in plan.chunks(batch_size).enumerate() {
                if tx.send(prepare(chunk, k)).is_err() {
                    break; // the consumer stopped early (error); nothing left to do
                }
            }
        });
        for prepared in rx {
            f(prepared)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GraphView;

    fn two_graph_store() -> GraphStore {
        let mut store = GraphStore::new(2);
        let mut s = Vec::new();
        let g0 = GraphView { atoms: &[[5, 0], [7, 1]], edges: &[[0, 1], [1, 0]], bonds: &[[1, 0], [1, 0]], labels: &[1.0, f32::NAN] };
        let g1 = GraphView { atoms: &[[5, 0], [5, 0], [7, 0]], edges: &[[0, 1], [1, 0], [1, 2], [2, 1]], bonds: &[[0, 0]; 4], labels: &[0.0, 1.0] };
        store.push(10, g0, &mut s).unwrap();
        store.push(11, g1, &mut s).unwrap();
        store
    }

    #[test]
    fn collate_concatenates_with_offsets() {
        let store = two_graph_store();
        let hb = collate(&store, &[Sample { index: 1, weight: 2.0 }, Sample { index: 0, weight: 1.0 }]);
        assert_eq!(hb.samples, vec![1, 0]);
        assert_eq!(hb.atom_type, vec![5, 5, 7, 5, 7]);
        assert_eq!(hb.chirality, vec![0, 0, 0, 0, 1]);
        assert_eq!(hb.graph_ptr, vec![0, 3, 5]);
        // Graph 1 (path 0-1-2) then graph 0 (edge 3-4), self-loops included.
        assert_eq!(hb.adj_crow, vec![0, 2, 5, 7, 9, 11]);
        assert_eq!(hb.adj_col, vec![0, 1, 0, 1, 2, 1, 2, 3, 4, 3, 4]);
        assert_eq!(hb.labels, vec![0.0, 1.0, 1.0, 0.0]);
        assert_eq!(hb.mask, vec![1.0, 1.0, 1.0, 0.0]);
        assert_eq!(hb.weights, vec![2.0, 1.0]);
        assert_eq!(hb.edge_counts.len(), 5 * EDGE_FEATURES);
    }

    #[test]
    fn dense_adjacency_matches_edges() {
        let store = two_graph_store();
        let batch = collate(&store, &Sample::unweighted(&[0, 1])).to_device(Device::Cpu);
        let dense = Vec::<f32>::try_from(batch.adj.to_dense(None, false).flatten(0, -1)).unwrap();
        #[rustfmt::skip]
        let expected = [
            1., 1., 0., 0., 0.,
            1., 1., 0., 0., 0.,
            0., 0., 1., 1., 0.,
            0., 0., 1., 1., 1.,
            0., 0., 0., 1., 1.,
        ];
        assert_eq!(dense, expected);
        let pooled = Vec::<f32>::try_from(batch.pool_mean.mm(&Tensor::ones([5, 1], (Kind::Float, Device::Cpu))).flatten(0, -1)).unwrap();
        assert_eq!(pooled, vec![1.0, 1.0]);
    }

    #[test]
    fn prefetch_yields_the_same_batches_in_order() {
        let store = two_graph_store();
        let plan = Sample::unweighted(&[1, 0, 1]);
        let mut seen = Vec::new();
        let options = LoaderOptions { batch_size: 2, prefetch: true, dropout: None, reference_dropout: None, tokens: None, geometry: None };
        for_each_batch(&store, &plan, &options, Device::Cpu, |b| {
            seen.push(b.samples.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![vec![1, 0], vec![1]]);
        let err = for_each_batch(&store, &plan, &LoaderOptions { batch_size: 1, ..options.clone() }, Device::Cpu, |_| Err(crate::Error::Config("stop".into())));
        assert!(err.is_err());
    }

    #[test]
    fn dropout_masks_are_reproducible_and_unbiased() {
        let spec = DropoutSpec { layers: 2, width: 50, p: 0.3, seed: 7 };
        let a = spec.masks(1000, 3);
        assert_eq!(a.len(), 2 * 1000 * 50);
        assert_eq!(a, spec.masks(1000, 3));
        assert_eq!(Vec::<f32>::try_from(spec.mask_tensor(1000, 3).flatten(0, -1)).unwrap(), a);
        assert_ne!(a, spec.masks(1000, 4));
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        assert!((kept - 0.7).abs() < 0.01, "{kept}");
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
    }
}
