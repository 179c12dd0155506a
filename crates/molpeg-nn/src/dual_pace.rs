//! MolPeg's dual-pace models (Chen et al. 2024): the online model θ, trained by the optimizer, and a
//! reference model ξ that follows it slowly, ξ ← β·ξ + (1 − β)·θ after every optimizer step. Both
//! start from the same weights. A sample's score is |loss_θ(x) − loss_ξ(x)|.
//!
//! Timing and mode (documented because the reference code differs): for a batch, `loss_online` is
//! θ_t's per-sample loss from the training forward pass (before the step). `loss_ref` is ξ_t's loss on
//! the same batch, also in train mode — BatchNorm normalizes with the batch's statistics and, on the
//! CPU, the same dropout masks apply (they travel with the batch) — computed without gradient after
//! θ's step and before ξ's EMA update, so both losses see the same inputs and the same noise. The EMA
//! covers every variable, BatchNorm running statistics included; ξ's own forward passes leave its
//! running statistics untouched, so after every step ξ = β·ξ_prev + (1 − β)·θ exactly.

use crate::model::{ema_update, Model};
use crate::train::{sample_losses, BatchOutcome, Objective};
use crate::{Error, Result};

/// The reference model ξ and its EMA rate.
pub struct DualPace {
    pub reference: Model,
    pub beta: f64,
}

impl DualPace {
    /// A reference model with exactly the online model's current weights.
    pub fn new(online: &Model, beta: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&beta) {
            return Err(Error::Config(format!("EMA beta {beta} must be in [0, 1]")));
        }
        let mut reference = Model::new(&online.config, online.device())?;
        reference.restore(&online.snapshot())?;
        reference.track_running_stats = false;
        Ok(DualPace { reference, beta })
    }

    /// Call after the optimizer step on `outcome.batch`: returns ξ_t's per-sample losses on the batch,
    /// then moves ξ towards θ_{t+1}.
    pub fn after_step(&self, online: &Model, objective: &Objective, outcome: &BatchOutcome) -> Result<Vec<f32>> {
        let reference_losses = sample_losses(&self.reference, objective, outcome.batch, true)?;
        ema_update(&self.reference, online, self.beta)?;
        Ok(reference_losses)
    }
}

/// MolPeg score of one sighting.
pub fn score(loss_online: f32, loss_ref: f32) -> f32 {
    (loss_online - loss_ref).abs()
}
