//! The GIN of Hu et al. (2019), as used by MolPeg, with a linear multi-task head.
//!
//! Per layer `l`, node `i` aggregates `Σ_{j ∈ N(i) ∪ {i}} (h_j + e_ij)` with
//! `e_ij = E_type[bond type] + E_dir[bond direction]` (self-loops: type 5, direction 0), then applies
//! `MLP(width → 2·width → width)`, BatchNorm, ReLU (all but the last layer) and dropout.
//!
//! The aggregation is computed without materializing any per-edge tensor:
//! `Σ_j h_j` is one sparse CSR × dense product with the self-loops already in the matrix, and
//! `Σ_j e_ij = counts_i · [E_type; E_dir]` where `counts_i` (incoming bond types and directions of
//! node `i`, fixed per batch) comes from the collator, so the edge-embedding part is a `N × 11` GEMM.
//! Both are exactly Hu's sum, reordered.
//!
//! Variable names follow Hu's PyTorch module (`gnn.x_embedding1.weight`, `gnn.gnns.0.mlp.0.weight`,
//! `gnn.batch_norms.0.running_mean`, `graph_pred_linear.weight`, ...), so checkpoints read naturally
//! from Python. The encoder is everything under `gnn.`; the head is `graph_pred_linear`.

use serde::{Deserialize, Serialize};
use tch::nn::{Init, VarStore};
use tch::{Device, Tensor};

use crate::batch::Batch;
use crate::data::{ATOM_TYPES, BOND_DIRECTIONS, BOND_TYPES, CHIRALITY_TAGS};
use crate::{Error, Result};

/// Prefix of the encoder's variables; `--pretrained` loads exactly these.
pub const ENCODER_PREFIX: &str = "gnn.";
pub const HEAD_NAME: &str = "graph_pred_linear";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Sum,
    Max,
}

/// Jumping knowledge: which node representations feed the pooling. `sum` and `concat` include the
/// input embedding `h_0` like Hu et al.'s code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Jk {
    Last,
    Sum,
    Concat,
}

/// Shape of a GIN. `num_tasks == 0` builds the encoder alone (for pretraining).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub layers: usize,
    pub width: usize,
    pub dropout: f64,
    pub pooling: Pooling,
    pub jk: Jk,
    pub num_tasks: usize,
}

impl ModelConfig {
    /// Hu et al.'s fine-tuning GIN: 5 layers of width 300, dropout 0.5, mean pooling, JK last.
    pub fn paper(num_tasks: usize) -> Self {
        ModelConfig { layers: 5, width: 300, dropout: 0.5, pooling: Pooling::Mean, jk: Jk::Last, num_tasks }
    }

    pub fn validate(&self) -> Result<()> {
        if self.layers == 0 {
            return Err(Error::Config("layers must be at least 1".into()));
        }
        if self.width == 0 {
            return Err(Error::Config("width must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!("dropout {} must be in [0, 1)", self.dropout)));
        }
        Ok(())
    }

    /// Width of the pooled graph representation (the head's input).
    pub fn graph_dim(&self) -> usize {
        match self.jk {
            Jk::Concat => (self.layers + 1) * self.width,
            Jk::Last | Jk::Sum => self.width,
        }
    }
}

/// Hu et al.'s `GINConv`: the edge-aware neighbourhood sum followed by `MLP(in → 2·in → out)`. The
/// encoder's layers use it with `out = in` (followed by BatchNorm); GraphMAE's decoder
/// ([`crate::pretrain`]) uses one with `out` = the atom-type vocabulary.
pub struct GinConv {
    bond_type_emb: Tensor,
    bond_dir_emb: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl GinConv {
    /// Variables under `path`: `mlp.0.{weight,bias}`, `mlp.2.{weight,bias}`, `edge_embedding{1,2}.weight`
    /// (Hu's names), initialized like PyTorch's defaults.
    pub fn new(path: &tch::nn::Path, in_dim: usize, out_dim: usize) -> Result<GinConv> {
        let (d, o) = (in_dim as i64, out_dim as i64);
        let mlp = path.sub("mlp");
        Ok(GinConv {
            w1: mlp.sub("0").f_var("weight", &[2 * d, d], linear_init(in_dim))?,
            b1: mlp.sub("0").f_var("bias", &[2 * d], linear_init(in_dim))?,
            w2: mlp.sub("2").f_var("weight", &[o, 2 * d], linear_init(2 * in_dim))?,
            b2: mlp.sub("2").f_var("bias", &[o], linear_init(2 * in_dim))?,
            bond_type_emb: path.sub("edge_embedding1").f_var("weight", &[BOND_TYPES as i64, d], xavier(BOND_TYPES, in_dim))?,
            bond_dir_emb: path.sub("edge_embedding2").f_var("weight", &[BOND_DIRECTIONS as i64, d], xavier(BOND_DIRECTIONS, in_dim))?,
        })
    }

    /// `Σ_{j ∈ N(i) ∪ {i}} (h_j + e_ij)`, computed as `(A + I)·h + counts·[E_type; E_dir]`.
    fn aggregate(&self, h: &Tensor, batch: &Batch) -> Tensor {
        let edge_emb = Tensor::cat(&[&self.bond_type_emb, &self.bond_dir_emb], 0);
        batch.adj.mm(h).addmm(&batch.edge_counts, &edge_emb)
    }

    /// The convolution's output `[N, out]`.
    pub fn forward(&self, h: &Tensor, batch: &Batch) -> Tensor {
        // In-place ReLU is safe here: addmm does not keep its output for backward.
        let mut hidden = self.aggregate(h, batch).linear(&self.w1, Some(&self.b1));
        let _ = hidden.relu_();
        hidden.linear(&self.w2, Some(&self.b2))
    }
}

struct GinLayer {
    conv: GinConv,
    bn_weight: Tensor,
    bn_bias: Tensor,
    bn_mean: Tensor,
    bn_var: Tensor,
}

/// A GIN with its own [`VarStore`] (so an EMA copy is just a second `Model`).
pub struct Model {
    pub config: ModelConfig,
    pub vs: VarStore,
    atom_emb: Tensor,
    chirality_emb: Tensor,
    layers: Vec<GinLayer>,
    head: Option<(Tensor, Tensor)>,
    /// Whether a train-mode forward updates BatchNorm's running statistics (PyTorch's
    /// `track_running_stats`). MolPeg's reference model turns it off: its train-mode forward uses batch
    /// statistics, and its running statistics change only through the EMA.
    pub track_running_stats: bool,
}

const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// `torch.nn.init.xavier_uniform_` on a `[rows, cols]` weight.
fn xavier(rows: usize, cols: usize) -> Init {
    let bound = (6.0 / (rows + cols) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// PyTorch's default `nn.Linear` init: weight and bias uniform in ±1/sqrt(fan_in).
fn linear_init(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

impl Model {
    /// A freshly initialized model. Initialization draws from libtorch's global generator, so call
    /// `tch::manual_seed` first for reproducible weights.
    pub fn new(config: &ModelConfig, device: Device) -> Result<Model> {
        config.validate()?;
        let vs = VarStore::new(device);
        let d = config.width as i64;
        let root = vs.root();
        let gnn = root.sub("gnn");
        let atom_emb = gnn.sub("x_embedding1").f_var("weight", &[ATOM_TYPES as i64, d], xavier(ATOM_TYPES, config.width))?;
        let chirality_emb = gnn.sub("x_embedding2").f_var("weight", &[CHIRALITY_TAGS as i64, d], xavier(CHIRALITY_TAGS, config.width))?;
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let bn = gnn.sub("batch_norms").sub(l);
            layers.push(GinLayer {
                conv: GinConv::new(&gnn.sub("gnns").sub(l), config.width, config.width)?,
                bn_weight: bn.f_var("weight", &[d], Init::Const(1.0))?,
                bn_bias: bn.f_var("bias", &[d], Init::Const(0.0))?,
                bn_mean: bn.f_zeros_no_train("running_mean", &[d])?,
                bn_var: bn.f_ones_no_train("running_var", &[d])?,
            });
        }
        let head = if config.num_tasks > 0 {
            let h = root.sub(HEAD_NAME);
            let fan_in = config.graph_dim();
            let w = h.f_var("weight", &[config.num_tasks as i64, fan_in as i64], linear_init(fan_in))?;
            let b = h.f_var("bias", &[config.num_tasks as i64], linear_init(fan_in))?;
            Some((w, b))
        } else {
            None
        };
        Ok(Model { config: config.clone(), vs, atom_emb, chirality_emb, layers, head, track_running_stats: true })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Node representations after the JK combination, `[N, graph_dim]`.
    pub fn node_representations(&self, batch: &Batch, train: bool) -> Tensor {
        self.node_representations_with(batch, train, batch.dropout.as_ref())
    }

    /// [`Model::node_representations`] with explicit dropout masks `[layers, N, width]`; `None` in
    /// train mode draws fresh ones from libtorch's generator.
    pub fn node_representations_with(&self, batch: &Batch, train: bool, masks: Option<&Tensor>) -> Tensor {
        // index_select rather than embedding: its backward is an index_add, where embedding's sorts.
        let h0 = self.atom_emb.index_select(0, &batch.atom_type) + self.chirality_emb.index_select(0, &batch.chirality);
        let mut h = h0.shallow_clone();
        let mut jk: Option<Tensor> = None;
        let mut all = Vec::new();
        match self.config.jk {
            Jk::Sum => jk = Some(h0),
            Jk::Concat => all.push(h0),
            Jk::Last => {}
        }
        for l in 0..self.layers.len() {
            h = self.layer_forward(l, &h, batch, train, masks);
            match self.config.jk {
                Jk::Sum => jk = Some(jk.take().expect("set before the loop") + &h),
                Jk::Concat => all.push(h.shallow_clone()),
                Jk::Last => {}
            }
        }
        match self.config.jk {
            Jk::Last => h,
            Jk::Sum => jk.expect("set before the loop"),
            Jk::Concat => Tensor::cat(&all, 1),
        }
    }

    fn layer_forward(&self, l: usize, h: &Tensor, batch: &Batch, train: bool, masks: Option<&Tensor>) -> Tensor {
        let layer = &self.layers[l];
        let last = l + 1 == self.layers.len();
        let out = layer.conv.forward(h, batch);
        let running = !train || self.track_running_stats;
        let mut out = out.batch_norm(
            Some(&layer.bn_weight),
            Some(&layer.bn_bias),
            running.then_some(&layer.bn_mean),
            running.then_some(&layer.bn_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        );
        // Dropout before the ReLU: relu(x)·m = relu(x·m) for masks m ≥ 0, and this order lets the
        // ReLU run in place on the product (batch_norm and mul do not keep their outputs for backward).
        if train && self.config.dropout > 0.0 {
            out = match masks {
                Some(masks) => out * masks.get(l as i64),
                None => out.dropout(self.config.dropout, true),
            };
        }
        if !last {
            let _ = out.relu_();
        }
        out
    }

    /// Pooled graph representations, `[B, graph_dim]`.
    pub fn graph_representations(&self, batch: &Batch, train: bool) -> Tensor {
        self.graph_representations_with(batch, train, batch.dropout.as_ref())
    }

    /// [`Model::graph_representations`] with explicit dropout masks (see [`Model::node_representations_with`]).
    pub fn graph_representations_with(&self, batch: &Batch, train: bool, masks: Option<&Tensor>) -> Tensor {
        let nodes = self.node_representations_with(batch, train, masks);
        match self.config.pooling {
            Pooling::Mean => batch.pool_mean.mm(&nodes),
            Pooling::Sum => batch.pool_sum.mm(&nodes),
            Pooling::Max => Tensor::segment_reduce(&nodes, "max", Some(&batch.sizes), None::<&Tensor>, None, 0, false, f64::NEG_INFINITY),
        }
    }

    /// Head outputs `[B, num_tasks]`: logits for binary tasks, standardized values for regression.
    pub fn forward(&self, batch: &Batch, train: bool) -> Tensor {
        self.forward_with_representations(batch, train).0
    }

    /// Head outputs and the pooled graph representations `[B, graph_dim]` they were computed from
    /// (the proxy signals' embeddings).
    pub fn forward_with_representations(&self, batch: &Batch, train: bool) -> (Tensor, Tensor) {
        let (w, b) = self.head.as_ref().expect("forward needs a head: build the model with num_tasks > 0");
        let h = self.graph_representations(batch, train);
        (h.linear(w, Some(b)), h)
    }

    /// The linear head's `(weight, bias)`, if the model has one.
    pub fn head(&self) -> Option<&(Tensor, Tensor)> {
        self.head.as_ref()
    }

    /// Every variable (trainable or not) by name, sorted by name.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Copies of every variable on the CPU (to keep the best epoch's weights without touching disk).
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        tch::no_grad(|| self.named_variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu).copy())).collect())
    }

    /// Overwrites variables from `(name, tensor)` pairs (a [`Model::snapshot`] or a checkpoint).
    /// Names not in the model are ignored here; [`crate::checkpoint`] checks names and shapes first.
    pub fn restore(&self, vars: &[(String, Tensor)]) -> Result<()> {
        let mine = self.vs.variables();
        tch::no_grad(|| -> Result<()> {
            for (name, value) in vars {
                if let Some(dst) = mine.get(name) {
                    let mut dst = dst.shallow_clone();
                    dst.f_copy_(value)?;
                }
            }
            Ok(())
        })
    }

    pub fn num_tasks(&self) -> usize {
        self.config.num_tasks
    }
}

/// `reference ← beta · reference + (1 − beta) · online`, for every variable including BatchNorm's
/// running statistics (the EMA "reference model" of MolPeg's dual-pace scoring).
pub fn ema_update(reference: &Model, online: &Model, beta: f64) -> Result<()> {
    if reference.config != online.config {
        return Err(Error::Config("ema_update needs two models of the same configuration".into()));
    }
    let online_vars = online.vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, r) in reference.vs.variables() {
            let o = online_vars.get(&name).ok_or_else(|| Error::Internal(format!("variable {name} missing from the online model")))?;
            let mut r = r.shallow_clone();
            let _ = r.f_lerp_(o, 1.0 - beta)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::collate;
    use crate::data::{GraphStore, GraphView, Sample};
    use tch::Kind;

    fn store() -> GraphStore {
        let mut store = GraphStore::new(1);
        let mut s = Vec::new();
        store.push(0, GraphView { atoms: &[[5, 0], [7, 1], [6, 2]], edges: &[[0, 1], [1, 0], [1, 2], [2, 1]], bonds: &[[0, 0], [0, 0], [3, 1], [3, 2]], labels: &[1.0] }, &mut s).unwrap();
        store.push(1, GraphView { atoms: &[[8, 0]], edges: &[], bonds: &[], labels: &[0.0] }, &mut s).unwrap();
        store
    }

    /// Hu's per-edge formulation, written naively, must equal the CSR + counts formulation.
    #[test]
    fn aggregation_equals_per_edge_sum() {
        tch::manual_seed(0);
        let cfg = ModelConfig { layers: 1, width: 4, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: 1 };
        let model = Model::new(&cfg, Device::Cpu).unwrap();
        let batch = collate(&store(), &Sample::unweighted(&[0, 1])).to_device(Device::Cpu);
        let layer = &model.layers[0].conv;
        let h = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
        let fast = layer.aggregate(&h, &batch);
        // Per-edge: (src, dst, type, dir) including self-loops (type 5, dir 0).
        let edges = [(0, 1, 0, 0), (1, 0, 0, 0), (1, 2, 3, 1), (2, 1, 3, 2), (0, 0, 5, 0), (1, 1, 5, 0), (2, 2, 5, 0), (3, 3, 5, 0)];
        let slow = Tensor::zeros([4, 4], (Kind::Float, Device::Cpu));
        for (s, t, bt, bd) in edges {
            let msg = h.get(s) + layer.bond_type_emb.get(bt) + layer.bond_dir_emb.get(bd);
            let _ = slow.get(t).f_add_(&msg).unwrap();
        }
        assert!(fast.allclose(&slow, 1e-6, 1e-6, false), "{fast} vs {slow}");
    }

    #[test]
    fn names_follow_hu_and_shapes_match_config() {
        let cfg = ModelConfig { layers: 2, width: 8, dropout: 0.5, pooling: Pooling::Max, jk: Jk::Concat, num_tasks: 3 };
        let model = Model::new(&cfg, Device::Cpu).unwrap();
        let vars: std::collections::HashMap<_, _> = model.named_variables().into_iter().collect();
        assert_eq!(vars["gnn.x_embedding1.weight"].size(), [120, 8]);
        assert_eq!(vars["gnn.x_embedding2.weight"].size(), [4, 8]);
        assert_eq!(vars["gnn.gnns.1.edge_embedding1.weight"].size(), [7, 8]);
        assert_eq!(vars["gnn.gnns.1.edge_embedding2.weight"].size(), [4, 8]);
        assert_eq!(vars["gnn.gnns.0.mlp.0.weight"].size(), [16, 8]);
        assert_eq!(vars["gnn.gnns.0.mlp.2.weight"].size(), [8, 16]);
        assert_eq!(vars["gnn.batch_norms.1.running_var"].size(), [8]);
        assert_eq!(vars["graph_pred_linear.weight"].size(), [3, 24]);
        let batch = collate(&store(), &Sample::unweighted(&[0, 1])).to_device(Device::Cpu);
        for jk in [Jk::Last, Jk::Sum, Jk::Concat] {
            for pooling in [Pooling::Mean, Pooling::Sum, Pooling::Max] {
                let model = Model::new(&ModelConfig { jk, pooling, ..cfg.clone() }, Device::Cpu).unwrap();
                assert_eq!(model.forward(&batch, true).size(), [2, 3]);
                assert_eq!(model.forward(&batch, false).size(), [2, 3]);
            }
        }
    }

    #[test]
    fn ema_moves_towards_online() {
        let cfg = ModelConfig { layers: 1, width: 4, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: 1 };
        let a = Model::new(&cfg, Device::Cpu).unwrap();
        let b = Model::new(&cfg, Device::Cpu).unwrap();
        let before = a.vs.variables()["graph_pred_linear.bias"].copy();
        let target = b.vs.variables()["graph_pred_linear.bias"].copy();
        ema_update(&a, &b, 0.75).unwrap();
        let after = a.vs.variables()["graph_pred_linear.bias"].copy();
        let expected = before * 0.75 + target * 0.25;
        assert!(after.allclose(&expected, 1e-6, 1e-6, false));
    }
}
