//! The model interface: a batch of molecules in, per-task outputs and a molecule-level embedding out.
//! [`Model`] is one of three encoders ([`ModelKind`]) under the same linear multi-task head, and
//! every training stage (fine-tuning, MolPeg scoring, dynamic pruning, the proxy embeddings, the
//! scaling sweep, prediction) uses only this interface; the configuration travels in the checkpoint.
//!
//! - `gin`: the GIN of Hu et al. (2019), as used by MolPeg (below).
//! - `fingerprint`: the set bits of the molecule's Morgan fingerprint as tokens (an embedding per bit
//!   position), a Transformer encoder over them, masked mean pooling.
//! - `smiles`: the canonical SMILES as atom-level tokens ([`molpeg_core::smiles_tokens`]) with
//!   sinusoidal positions, a Transformer encoder with padding masks, masked mean pooling.
//!
//! - `schnet`: SchNet (Schütt et al. 2017) on the 3D atoms (hydrogens included) of
//!   `atoms3d.parquet`, with PyTorch Geometric's semantics; see [`crate::schnet`]. Its head is the
//!   per-atom output MLP with a sum or mean readout instead of the linear head.
//!
//! The two token models share [`SequenceEncoder`] (PyTorch's post-norm `nn.TransformerEncoderLayer`
//! with ReLU, under PyTorch's variable names, so a state dict loads into `torch.nn` directly).
//!
//! The GIN:
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

use molpeg_core::smiles_tokens::Vocabulary;
use tch::Kind;

use crate::batch::{Batch, TokenInput};
use crate::schnet::{self, GeometryInput, SchnetConfig, SchnetEncoder, SchnetHead, SCHNET_PREFIX};
use crate::data::{GraphStore, ATOM_TYPES, BOND_DIRECTIONS, BOND_TYPES, CHIRALITY_TAGS};
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

/// Which encoder a model has (`[finetune] model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Hu et al.'s GIN on the 2D graph.
    #[default]
    Gin,
    /// A Transformer over the set bits of the Morgan fingerprint (`fingerprints.parquet`).
    Fingerprint,
    /// A Transformer over the canonical SMILES's atom-level tokens.
    Smiles,
    /// SchNet on the 3D atoms (`atoms3d.parquet`).
    Schnet,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Gin => "gin",
            ModelKind::Fingerprint => "fingerprint",
            ModelKind::Smiles => "smiles",
            ModelKind::Schnet => "schnet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        <ModelKind as clap::ValueEnum>::from_str(s, false).ok()
    }

    fn is_gin(&self) -> bool {
        *self == ModelKind::Gin
    }
}

/// Shape of a model. `num_tasks == 0` builds the encoder alone (for pretraining). For the token
/// models `layers` counts Transformer layers, `width` is the token dimension, and `sequence` holds
/// the rest; for SchNet `layers` counts interaction blocks, `width` is the hidden size, and `schnet`
/// holds the rest (dropout is 0: SchNet has none). `pooling` and `jk` apply to the GIN only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Absent in checkpoints written before there was more than one model, and for the GIN.
    #[serde(default, skip_serializing_if = "ModelKind::is_gin")]
    pub kind: ModelKind,
    pub layers: usize,
    pub width: usize,
    pub dropout: f64,
    pub pooling: Pooling,
    pub jk: Jk,
    pub num_tasks: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schnet: Option<SchnetConfig>,
}

/// What a token model needs besides layers and width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// Attention heads (must divide the width).
    pub heads: usize,
    /// Hidden width of each layer's feed-forward block.
    pub ffn: usize,
    /// Tokens per molecule at most; longer sequences are cut (the SMILES model; the paper: 510).
    pub max_len: usize,
    /// The fingerprint model's input: Morgan bits and radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<FingerprintInput>,
    /// The SMILES model's vocabulary, built from the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<Vocabulary>,
}

/// The Morgan fingerprint a fingerprint model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintInput {
    pub bits: usize,
    pub radius: Option<u32>,
}

impl ModelConfig {
    /// Hu et al.'s fine-tuning GIN: 5 layers of width 300, dropout 0.5, mean pooling, JK last.
    pub fn paper(num_tasks: usize) -> Self {
        ModelConfig::gin(5, 300, 0.5, num_tasks)
    }

    /// A GIN with mean pooling and JK last.
    pub fn gin(layers: usize, width: usize, dropout: f64, num_tasks: usize) -> Self {
        ModelConfig { kind: ModelKind::Gin, layers, width, dropout, pooling: Pooling::Mean, jk: Jk::Last, num_tasks, sequence: None, schnet: None }
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
        let kind = self.kind.as_str();
        match (self.kind, &self.schnet) {
            (ModelKind::Schnet, None) => return Err(Error::Config("the SchNet model needs its schnet settings".into())),
            (ModelKind::Schnet, Some(schnet)) => {
                if self.sequence.is_some() {
                    return Err(Error::Config("a SchNet has no sequence settings".into()));
                }
                if self.dropout != 0.0 {
                    return Err(Error::Config(format!("SchNet has no dropout (PyG's has none); dropout is {}", self.dropout)));
                }
                return schnet.validate(self.width);
            }
            (_, Some(_)) => return Err(Error::Config(format!("the {kind} model has no schnet settings"))),
            (_, None) => {}
        }
        match (self.kind, &self.sequence) {
            (ModelKind::Gin, None) => Ok(()),
            (ModelKind::Gin, Some(_)) => Err(Error::Config("a GIN has no sequence settings".into())),
            (_, None) => Err(Error::Config(format!("the {kind} model needs its sequence settings"))),
            (_, Some(seq)) => {
                check_sequence_shape(kind, self.width, seq.heads, seq.ffn, seq.max_len)?;
                match self.kind {
                    ModelKind::Fingerprint if seq.fingerprint.is_none_or(|f| f.bits == 0) => Err(Error::Config("the fingerprint model needs its fingerprint's bit count".into())),
                    ModelKind::Smiles if seq.vocabulary.as_ref().is_none_or(Vocabulary::is_empty) => {
                        Err(Error::Config("the SMILES model needs a vocabulary with at least one token".into()))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Width of the molecule embedding (the head's input).
    pub fn graph_dim(&self) -> usize {
        match (self.kind, self.jk) {
            (ModelKind::Gin, Jk::Concat) => (self.layers + 1) * self.width,
            _ => self.width,
        }
    }

    /// Rows of a token model's embedding table: `bits + 1` (0 pads) or the vocabulary's size; `None`
    /// for the GIN.
    pub fn token_rows(&self) -> Option<usize> {
        let seq = self.sequence.as_ref()?;
        match self.kind {
            ModelKind::Gin | ModelKind::Schnet => None,
            ModelKind::Fingerprint => seq.fingerprint.map(|f| f.bits + 1),
            ModelKind::Smiles => seq.vocabulary.as_ref().map(Vocabulary::len),
        }
    }
}

/// The data-independent part of a token model's shape: `heads` divides `width`, `ffn` and `max_len`
/// at least 1. `what` names the model in the error.
pub fn check_sequence_shape(what: &str, width: usize, heads: usize, ffn: usize, max_len: usize) -> Result<()> {
    if heads == 0 || width % heads != 0 {
        return Err(Error::Config(format!("the {what} model's width {width} must be a multiple of its {heads} attention heads")));
    }
    if ffn == 0 || max_len == 0 {
        return Err(Error::Config(format!("the {what} model's ffn ({ffn}) and max_len ({max_len}) must be at least 1")));
    }
    Ok(())
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

/// The GIN encoder's variables.
struct Gin {
    atom_emb: Tensor,
    chirality_emb: Tensor,
    layers: Vec<GinLayer>,
}

enum Encoder {
    Gin(Gin),
    Sequence(SequenceEncoder),
    Schnet(SchnetEncoder),
}

/// What turns the encoder's output into per-task outputs.
enum Head {
    /// `graph_pred_linear`, on the pooled graph representation (GIN, token models).
    Linear((Tensor, Tensor)),
    /// SchNet's per-atom MLP, applied before the readout.
    Atomwise(SchnetHead),
}

/// A model with its own [`VarStore`] (so an EMA copy is just a second `Model`).
pub struct Model {
    pub config: ModelConfig,
    pub vs: VarStore,
    encoder: Encoder,
    head: Option<Head>,
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
        let root = vs.root();
        let encoder = match config.kind {
            ModelKind::Gin => Encoder::Gin(Gin::new(&root, config)?),
            ModelKind::Fingerprint | ModelKind::Smiles => Encoder::Sequence(SequenceEncoder::new(&root.sub(SEQUENCE_ROOT), config, device)?),
            ModelKind::Schnet => Encoder::Schnet(SchnetEncoder::new(&root, config.width, config.layers, config.schnet.as_ref().expect("validated"), device)?),
        };
        let head = if config.num_tasks > 0 && config.kind == ModelKind::Schnet {
            Some(Head::Atomwise(SchnetHead::new(&root, config.width, config.num_tasks, config.schnet.as_ref().expect("validated").readout)?))
        } else if config.num_tasks > 0 {
            let h = root.sub(HEAD_NAME);
            let fan_in = config.graph_dim();
            let w = h.f_var("weight", &[config.num_tasks as i64, fan_in as i64], linear_init(fan_in))?;
            let b = h.f_var("bias", &[config.num_tasks as i64], linear_init(fan_in))?;
            Some(Head::Linear((w, b)))
        } else {
            None
        };
        Ok(Model { config: config.clone(), vs, encoder, head, track_running_stats: true })
    }

    /// Prefix of the encoder's variables (everything but the head): what `--pretrained` loads.
    pub fn encoder_prefix(&self) -> &'static str {
        match self.config.kind {
            ModelKind::Gin => ENCODER_PREFIX,
            ModelKind::Fingerprint | ModelKind::Smiles => SEQUENCE_PREFIX,
            ModelKind::Schnet => SCHNET_PREFIX,
        }
    }

    /// Whether a training batch should carry dropout masks drawn by the loader ([`Batch::dropout`]):
    /// the GIN's. The token models draw theirs from libtorch's generator; SchNet has no dropout.
    pub fn uses_loader_masks(&self) -> bool {
        self.config.kind == ModelKind::Gin
    }

    /// Whether a train-mode forward pass is random (dropout): not for SchNet, or with dropout 0.
    pub fn has_dropout(&self) -> bool {
        self.config.kind != ModelKind::Schnet && self.config.dropout > 0.0
    }

    /// What the collator must add to `store`'s batches for a 3D model (SchNet's neighbour lists), or
    /// an error saying why the store's 3D atoms do not fit; `None` for the other models.
    pub fn geometry_input(&self, store: &GraphStore) -> Result<Option<GeometryInput>> {
        let Some(schnet) = self.config.schnet.as_ref() else { return Ok(None) };
        let input = schnet.geometry_input();
        input.check(store)?;
        Ok(Some(input))
    }

    /// What the collator must add to `store`'s batches for this model, or an error saying which
    /// input the store lacks or why it does not fit the model.
    pub fn token_input(&self, store: &GraphStore) -> Result<Option<TokenInput>> {
        let Some(seq) = self.config.sequence.as_ref() else { return Ok(None) };
        match self.config.kind {
            ModelKind::Gin | ModelKind::Schnet => Ok(None),
            ModelKind::Fingerprint => {
                let want = seq.fingerprint.expect("validated");
                let fp = store.fingerprints.as_ref().ok_or_else(|| Error::Config("the fingerprint model needs the molecules' fingerprints, which were not loaded".into()))?;
                if fp.bits != want.bits || (want.radius.is_some() && fp.radius.is_some() && fp.radius != want.radius) {
                    let radius = |r: Option<u32>| r.map_or("?".into(), |r| r.to_string());
                    return Err(Error::Config(format!(
                        "the model reads {}-bit Morgan fingerprints of radius {}, but the data has {}-bit fingerprints of radius {}: featurize with fingerprint_bits = {} and fingerprint_radius = {}",
                        want.bits,
                        radius(want.radius),
                        fp.bits,
                        radius(fp.radius),
                        want.bits,
                        radius(want.radius),
                    )));
                }
                Ok(Some(TokenInput::FingerprintBits))
            }
            ModelKind::Smiles => {
                let vocab = seq.vocabulary.as_ref().expect("validated");
                let smiles = store.smiles.as_ref().ok_or_else(|| Error::Config("the SMILES model needs the molecules' SMILES tokens, which were not loaded".into()))?;
                let map = smiles.names.iter().map(|t| vocab.id(t).unwrap_or(molpeg_core::smiles_tokens::UNK_ID)).collect();
                Ok(Some(TokenInput::Smiles { map: std::sync::Arc::new(map), max_len: seq.max_len }))
            }
        }
    }

    fn gin(&self) -> &Gin {
        match &self.encoder {
            Encoder::Gin(g) => g,
            Encoder::Sequence(_) | Encoder::Schnet(_) => panic!("node representations exist for the GIN only (pretraining builds a GIN)"),
        }
    }
}

impl Gin {
    fn new(root: &tch::nn::Path, config: &ModelConfig) -> Result<Gin> {
        let d = config.width as i64;
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
        Ok(Gin { atom_emb, chirality_emb, layers })
    }
}

impl Model {
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
        let gin = self.gin();
        // index_select rather than embedding: its backward is an index_add, where embedding's sorts.
        let h0 = gin.atom_emb.index_select(0, &batch.atom_type) + gin.chirality_emb.index_select(0, &batch.chirality);
        let mut h = h0.shallow_clone();
        let mut jk: Option<Tensor> = None;
        let mut all = Vec::new();
        match self.config.jk {
            Jk::Sum => jk = Some(h0),
            Jk::Concat => all.push(h0),
            Jk::Last => {}
        }
        for l in 0..gin.layers.len() {
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
        let layers = &self.gin().layers;
        let layer = &layers[l];
        let last = l + 1 == layers.len();
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
    /// For the token models this is the pooled sequence embedding, for SchNet the last per-atom
    /// hidden states pooled with its readout (the output MLP's input, pooled); `masks` apply to the
    /// GIN only.
    pub fn graph_representations_with(&self, batch: &Batch, train: bool, masks: Option<&Tensor>) -> Tensor {
        match &self.encoder {
            Encoder::Sequence(encoder) => {
                let tokens = batch.tokens.as_ref().expect("a token model's batch carries tokens: collate with Model::token_input");
                return encoder.forward(tokens, train, self.config.dropout);
            }
            Encoder::Schnet(encoder) => {
                let g = schnet::geometry(batch);
                return encoder.pool(g, &encoder.atom_representations(g));
            }
            Encoder::Gin(_) => {}
        }
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
        self.forward_with_head(batch, train, batch.dropout.as_ref(), self)
            .unwrap_or_else(|| panic!("forward needs a head: build the model with num_tasks > 0"))
    }

    /// This model's encoder under `head_of`'s head (MolPeg's reference ξ through θ's head), with
    /// explicit dropout masks as [`Model::graph_representations_with`]: `(outputs, representations)`,
    /// or `None` when `head_of` has no head. The two models must be of the same configuration.
    pub fn forward_with_head(&self, batch: &Batch, train: bool, masks: Option<&Tensor>, head_of: &Model) -> Option<(Tensor, Tensor)> {
        match (&self.encoder, head_of.head.as_ref()?) {
            (Encoder::Schnet(encoder), Head::Atomwise(head)) => {
                let g = schnet::geometry(batch);
                let atoms = encoder.atom_representations(g);
                Some((head.outputs(encoder, g, &atoms), encoder.pool(g, &atoms)))
            }
            (Encoder::Schnet(_), Head::Linear(_)) | (_, Head::Atomwise(_)) => panic!("the encoder and the head come from models of different kinds"),
            (_, Head::Linear((w, b))) => {
                let h = self.graph_representations_with(batch, train, masks);
                Some((h.linear(w, Some(b)), h))
            }
        }
    }

    /// The linear head's `(weight, bias)`, if the model has one (SchNet's head is its output MLP).
    pub fn head(&self) -> Option<&(Tensor, Tensor)> {
        match self.head.as_ref()? {
            Head::Linear(wb) => Some(wb),
            Head::Atomwise(_) => None,
        }
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

/// Root of the token models' encoder variables (`encoder.embedding.weight`,
/// `encoder.layers.0.self_attn.in_proj_weight`, ...).
const SEQUENCE_ROOT: &str = "encoder";
/// Prefix of the token models' encoder variables.
pub const SEQUENCE_PREFIX: &str = "encoder.";

/// One post-norm Transformer encoder layer (PyTorch's `nn.TransformerEncoderLayer` with ReLU):
/// `x = norm1(x + drop(attn(x)))`, `x = norm2(x + drop(linear2(drop(relu(linear1(x))))))`.
struct TransformerLayer {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_weight: Tensor,
    out_bias: Tensor,
    linear1: (Tensor, Tensor),
    linear2: (Tensor, Tensor),
    norm1: (Tensor, Tensor),
    norm2: (Tensor, Tensor),
}

/// The token models' encoder: token embedding (+ sinusoidal positions for SMILES), Transformer
/// layers with key padding masks, and the mean over each molecule's tokens.
pub struct SequenceEncoder {
    embedding: Tensor,
    /// `[max_len, width]` sinusoidal position encodings (a constant, not a variable), for SMILES.
    positions: Option<Tensor>,
    layers: Vec<TransformerLayer>,
    heads: i64,
    width: i64,
}

const LAYER_NORM_EPS: f64 = 1e-5;

/// Inverted dropout with a mask from libtorch's generator. Written out because `Tensor::dropout`
/// takes a different kernel (drawing a different mask) with and without gradients, so θ's training
/// pass and ξ's no-grad pass would not share masks after re-seeding (MolPeg's `shared` variant).
fn drop(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    // Scaled in place: one temporary besides the output (attention weights are [B, heads, L, L]).
    let mut mask = x.empty_like();
    let _ = mask.bernoulli_float_(1.0 - p);
    let _ = mask.g_mul_scalar_(1.0 / (1.0 - p));
    x * mask
}

/// Vaswani et al.'s sinusoidal encodings: `PE[p, 2i] = sin(p / 10000^(2i/d))`, `PE[p, 2i+1] = cos(…)`.
fn sinusoidal_positions(max_len: usize, width: usize, device: Device) -> Tensor {
    let mut pe = vec![0f32; max_len * width];
    for p in 0..max_len {
        for i in (0..width).step_by(2) {
            let angle = p as f64 * (-(10000f64.ln()) * i as f64 / width as f64).exp();
            pe[p * width + i] = angle.sin() as f32;
            if i + 1 < width {
                pe[p * width + i + 1] = angle.cos() as f32;
            }
        }
    }
    Tensor::from_slice(&pe).view([max_len as i64, width as i64]).to_device(device)
}

impl SequenceEncoder {
    fn new(path: &tch::nn::Path, config: &ModelConfig, device: Device) -> Result<SequenceEncoder> {
        let seq = config.sequence.as_ref().expect("validated");
        let (d, f) = (config.width, seq.ffn);
        let rows = config.token_rows().expect("validated");
        // PyTorch's defaults: nn.Embedding N(0, 1); MultiheadAttention's in_proj xavier-uniform with
        // zero biases, out_proj as nn.Linear with zero bias; LayerNorm 1 / 0.
        let embedding = path.sub("embedding").f_var("weight", &[rows as i64, d as i64], Init::Randn { mean: 0.0, stdev: 1.0 })?;
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let p = path.sub("layers").sub(l);
            let attn = p.sub("self_attn");
            let linear = |name: &str, out: usize, inp: usize| -> Result<(Tensor, Tensor)> {
                let q = p.sub(name);
                Ok((q.f_var("weight", &[out as i64, inp as i64], linear_init(inp))?, q.f_var("bias", &[out as i64], linear_init(inp))?))
            };
            let norm = |name: &str| -> Result<(Tensor, Tensor)> {
                let q = p.sub(name);
                Ok((q.f_var("weight", &[d as i64], Init::Const(1.0))?, q.f_var("bias", &[d as i64], Init::Const(0.0))?))
            };
            layers.push(TransformerLayer {
                in_proj_weight: attn.f_var("in_proj_weight", &[3 * d as i64, d as i64], xavier(3 * d, d))?,
                in_proj_bias: attn.f_var("in_proj_bias", &[3 * d as i64], Init::Const(0.0))?,
                out_weight: attn.sub("out_proj").f_var("weight", &[d as i64, d as i64], linear_init(d))?,
                out_bias: attn.sub("out_proj").f_var("bias", &[d as i64], Init::Const(0.0))?,
                linear1: linear("linear1", f, d)?,
                linear2: linear("linear2", d, f)?,
                norm1: norm("norm1")?,
                norm2: norm("norm2")?,
            });
        }
        let positions = (config.kind == ModelKind::Smiles).then(|| sinusoidal_positions(seq.max_len, d, device));
        Ok(SequenceEncoder { embedding, positions, layers, heads: seq.heads as i64, width: d as i64 })
    }

    /// `[B, width]` mean over each molecule's tokens of the last layer's output; `tokens` is `[B, L]`
    /// with [`crate::batch::PAD_ID`] after each sequence.
    fn forward(&self, tokens: &Tensor, train: bool, p: f64) -> Tensor {
        let (b, l) = (tokens.size()[0], tokens.size()[1]);
        let (d, h) = (self.width, self.heads);
        let keep = tokens.ne(crate::batch::PAD_ID);
        let keep_f = keep.to_kind(Kind::Float).unsqueeze(-1);
        let mut x = self.embedding.index_select(0, &tokens.flatten(0, -1)).view([b, l, d]);
        if let Some(pe) = &self.positions {
            x = x + pe.narrow(0, 0, l);
        }
        let mut x = drop(&x, p, train) * &keep_f;
        // [B, 1, 1, L]: every query attends to its molecule's real tokens only.
        let blocked = keep.logical_not().view([b, 1, 1, l]);
        let attn_p = if train { p } else { 0.0 };
        for layer in &self.layers {
            let qkv = x.linear(&layer.in_proj_weight, Some(&layer.in_proj_bias)).view([b, l, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            // Written out rather than scaled_dot_product_attention, whose CPU kernels differ with and
            // without gradients and so draw different dropout masks for θ's and ξ's passes.
            // q is scaled (not the [B, h, L, L] scores) and the padding is blocked in place.
            let mut scores = (q * (1.0 / ((d / h) as f64).sqrt())).matmul(&k.transpose(-2, -1));
            let _ = scores.masked_fill_(&blocked, f64::NEG_INFINITY);
            let weights = drop(&scores.softmax(-1, Kind::Float), attn_p, train);
            let a = weights.matmul(&v);
            let a = a.transpose(1, 2).reshape([b, l, d]).linear(&layer.out_weight, Some(&layer.out_bias));
            x = (x + drop(&a, p, train)).layer_norm([d], Some(&layer.norm1.0), Some(&layer.norm1.1), LAYER_NORM_EPS, true);
            let ff = x.linear(&layer.linear1.0, Some(&layer.linear1.1)).relu();
            let ff = drop(&ff, p, train).linear(&layer.linear2.0, Some(&layer.linear2.1));
            x = (x + drop(&ff, p, train)).layer_norm([d], Some(&layer.norm2.0), Some(&layer.norm2.1), LAYER_NORM_EPS, true);
        }
        (x * &keep_f).sum_dim_intlist(1, false, Kind::Float) / keep_f.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
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
        let cfg = ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: 1, width: 4, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: 1 };
        let model = Model::new(&cfg, Device::Cpu).unwrap();
        let batch = collate(&store(), &Sample::unweighted(&[0, 1])).to_device(Device::Cpu);
        let layer = &model.gin().layers[0].conv;
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
        let cfg = ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: 2, width: 8, dropout: 0.5, pooling: Pooling::Max, jk: Jk::Concat, num_tasks: 3 };
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
        let cfg = ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: 1, width: 4, dropout: 0.0, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: 1 };
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
