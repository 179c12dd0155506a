//! MolPeg's dual-pace models (Chen et al. 2024): the online model θ, trained by the optimizer, and a
//! reference model ξ that follows it slowly, ξ ← β·ξ + (1 − β)·θ after every optimizer step. A
//! sample's score is |loss_θ(x) − loss_ξ(x)|.
//!
//! The defaults follow the official code (`Data-reindeer/MolPeg`, `main.py: train_general`) wherever a
//! choice changes a number; each alternative stays available as a [`ReferenceOptions`] field:
//! - timing: for a batch, θ_t's per-sample loss comes from the training forward pass and ξ_t's from a
//!   second forward pass on the same batch, both before θ's optimizer step; ξ moves after the step;
//! - mode: ξ's forward runs in train mode (BatchNorm normalizes with the batch's statistics) with its
//!   **own dropout masks** ([`ReferenceDropout::Independent`]: `model_ref(inputs)` is a separate call of
//!   `F.dropout`). On the CPU the masks come from the loader (a second, independently seeded set, so CPU
//!   runs stay reproducible); on CUDA from libtorch's generator, as the official code. `Shared` reuses
//!   θ's masks on every device (the variant earlier molpeg versions ran on the CPU);
//! - head: ξ's pooled representation goes through θ's current linear head (SchNet: ξ's per-atom
//!   states through θ's per-atom output MLP, then the readout) ([`ReferenceHead::Online`]:
//!   `pred_ref = output_layer(h_ref)`, the head is not part of the EMA model); `Ema` gives ξ its own
//!   EMA of the head;
//! - initialisation: ξ starts from its own random initialisation ([`ReferenceInit::Random`]: `model_ref
//!   = GNN(...)` is never loaded with the pretrained weights), seeded from the run's seed; `Online` starts
//!   it as an exact copy of θ (then with dropout 0 every first-batch score is exactly 0);
//! - the EMA covers every variable including BatchNorm's running statistics, and ξ's own forward passes
//!   leave its running statistics untouched, so after every step ξ = β·ξ_prev + (1 − β)·θ exactly. (The
//!   official `update_model` averages parameters only and lets ξ's train-mode forwards update its
//!   running statistics; ξ only ever runs in train mode, where running statistics are not used, so the
//!   scores are the same.)

use serde::{Deserialize, Serialize};

use crate::batch::{mix_seed, Batch};
use crate::model::{ema_update, Model};
use crate::train::Objective;
use crate::{Error, Result};

/// Where the reference model's dropout masks come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceDropout {
    /// Its own masks, independent of θ's (the official code).
    #[default]
    Independent,
    /// θ's masks of the same batch.
    Shared,
}

/// Which linear head turns ξ's graph representation into outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceHead {
    /// θ's head at the time of the forward pass (the official code).
    #[default]
    Online,
    /// ξ's own head, an EMA of θ's like the encoder.
    Ema,
}

/// How ξ starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceInit {
    /// Its own seeded random initialisation, never the pretrained weights (the official code).
    #[default]
    Random,
    /// An exact copy of θ's starting weights (pretrained encoder included).
    Online,
}

/// The reference model's settings (the `reference_*` keys and `ema_beta` of `[finetune]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceOptions {
    pub beta: f64,
    pub dropout: ReferenceDropout,
    pub head: ReferenceHead,
    pub init: ReferenceInit,
}

impl ReferenceOptions {
    /// The official code's choices with EMA rate `beta`.
    pub fn official(beta: f64) -> Self {
        ReferenceOptions { beta, dropout: ReferenceDropout::default(), head: ReferenceHead::default(), init: ReferenceInit::default() }
    }
}

/// Seed stream of ξ's random initialisation (mixed with the run seed).
const REFERENCE_INIT_STREAM: u64 = 0x5245_4649_4e49_5421;

/// The reference model ξ and its settings.
pub struct DualPace {
    pub reference: Model,
    pub options: ReferenceOptions,
}

impl DualPace {
    /// A reference model for `online`, initialised per `options.init` (`seed`: the run's seed, used
    /// for the random initialisation).
    pub fn new(online: &Model, options: ReferenceOptions, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&options.beta) {
            return Err(Error::Config(format!("EMA beta {} must be in [0, 1]", options.beta)));
        }
        if options.dropout == ReferenceDropout::Shared && !online.uses_loader_masks() && online.has_dropout() {
            // The token models draw dropout from libtorch's generator inside the forward pass, so ξ
            // cannot replay θ's masks (re-seeding did not reproduce them; see ARCHITECTURE.md).
            return Err(Error::Config(format!("reference_dropout = \"shared\" is implemented for the GIN only; the {} model's reference uses its own masks (\"independent\")", online.config.kind.as_str())));
        }
        if options.init == ReferenceInit::Random {
            tch::manual_seed((mix_seed(seed, REFERENCE_INIT_STREAM) >> 1) as i64);
        }
        let mut reference = Model::new(&online.config, online.device())?;
        if options.init == ReferenceInit::Online {
            reference.restore(&online.snapshot())?;
        }
        reference.track_running_stats = false;
        Ok(DualPace { reference, options })
    }

    /// Whether ξ's forward reads θ's dropout masks from the batch (so the loader must draw them on
    /// every device).
    pub fn shares_masks(&self) -> bool {
        self.options.dropout == ReferenceDropout::Shared
    }

    /// ξ's per-sample losses on `batch` (train mode, no gradient). Call before θ's optimizer step:
    /// with [`ReferenceHead::Online`] the outputs go through θ's current head.
    pub fn losses(&self, online: &Model, objective: &Objective, batch: &Batch) -> Result<Vec<f32>> {
        let _guard = tch::no_grad_guard();
        let masks = match self.options.dropout {
            ReferenceDropout::Shared => batch.dropout.as_ref(),
            // None on CUDA: libtorch draws fresh masks for this forward pass.
            ReferenceDropout::Independent => batch.reference_dropout.as_ref(),
        };
        let head_of = match self.options.head {
            ReferenceHead::Online => online,
            ReferenceHead::Ema => &self.reference,
        };
        // SchNet's head is its per-atom output MLP, so ξ's per-atom states go through θ's MLP there.
        let (outputs, _) = self.reference.forward_with_head(batch, true, masks, head_of).ok_or_else(|| Error::Internal("MolPeg scoring needs a model with a head".into()))?;
        let (per_sample, _) = objective.losses(&outputs, batch);
        Ok(Vec::<f32>::try_from(per_sample.to_device(tch::Device::Cpu))?)
    }

    /// ξ ← β·ξ + (1 − β)·θ; call after θ's optimizer step.
    pub fn update(&self, online: &Model) -> Result<()> {
        ema_update(&self.reference, online, self.options.beta)
    }
}

/// MolPeg score of one sighting.
pub fn score(loss_online: f32, loss_ref: f32) -> f32 {
    (loss_online - loss_ref).abs()
}
