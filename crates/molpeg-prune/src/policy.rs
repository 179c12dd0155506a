//! Dynamic (per-epoch) pruning policies behind one interface.
//!
//! Before each epoch the trainer asks the policy for an [`EpochPlan`] (which training samples, with
//! which loss weights); after each batch it reports the per-sample losses of the online model and,
//! for policies that need one, of the EMA reference model. The trainer knows nothing else about any
//! policy, so adding a policy touches only this module.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::keep::KeepFraction;

/// The samples to train on in one epoch (indices into the training set) and their loss weights.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPlan {
    pub samples: Vec<usize>,
    pub weights: Vec<f32>,
}

impl EpochPlan {
    pub fn full(n: usize) -> Self {
        EpochPlan { samples: (0..n).collect(), weights: vec![1.0; n] }
    }
}

/// Per-sample losses of one batch.
pub struct Observation<'a> {
    pub samples: &'a [usize],
    pub loss_online: &'a [f32],
    /// Present when the policy [`DynamicPolicy::needs_reference`].
    pub loss_ref: Option<&'a [f32]>,
}

pub trait DynamicPolicy: Send {
    fn name(&self) -> &'static str;
    /// Whether the trainer must keep an EMA reference model and report its losses.
    fn needs_reference(&self) -> bool {
        false
    }
    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan;
    fn observe(&mut self, observation: &Observation);
    /// Latest per-sample score (NaN where none yet), for writing to Parquet.
    fn scores(&self) -> Option<&[f32]> {
        None
    }
}

/// Options shared by the policies.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PolicyOptions {
    pub keep: KeepFraction,
    pub seed: u64,
    /// Train on the full set in the last ⌈anneal·E⌉ epochs (0 = never).
    pub anneal: f64,
}

impl PolicyOptions {
    fn annealing(&self, epoch: usize, num_epochs: usize) -> bool {
        let tail = (self.anneal * num_epochs as f64).ceil() as usize;
        epoch + tail >= num_epochs && tail > 0
    }
}

/// Dynamic MolPeg (Chen et al. 2024): every epoch keep the ⌊r·N⌋ samples with the largest latest score
/// |loss_θ − loss_ξ|, weighted 1/r; the scores of the samples trained on are refreshed from the same
/// forward passes.
///
/// Coverage: samples never scored rank above every scored one, in one seeded random order fixed at the
/// start, so epoch 0 trains on the first ⌊r·N⌋ of that order, epoch 1 on the next, and the first
/// ⌈1/r⌉ epochs see every sample at least once before scores alone decide.
pub struct MolPegPolicy {
    options: PolicyOptions,
    scores: Vec<f32>,
    /// Position of each sample in the seeded first-visit order.
    visit_order: Vec<u32>,
}

impl MolPegPolicy {
    pub fn new(num_samples: usize, options: PolicyOptions) -> Self {
        let mut order: Vec<usize> = (0..num_samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(options.seed));
        let mut visit_order = vec![0u32; num_samples];
        for (position, &sample) in order.iter().enumerate() {
            visit_order[sample] = position as u32;
        }
        MolPegPolicy { options, scores: vec![f32::NAN; num_samples], visit_order }
    }
}

impl DynamicPolicy for MolPegPolicy {
    fn name(&self) -> &'static str {
        "molpeg"
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan {
        let n = self.scores.len();
        if self.options.annealing(epoch, num_epochs) {
            return EpochPlan::full(n);
        }
        let mut ranked: Vec<usize> = (0..n).collect();
        // Unscored first (by visit order), then by score descending, ties by index.
        ranked.sort_by(|&a, &b| {
            let (sa, sb) = (self.scores[a], self.scores[b]);
            match (sa.is_nan(), sb.is_nan()) {
                (true, true) => self.visit_order[a].cmp(&self.visit_order[b]),
                (true, false) => std::cmp::Ordering::Less,
                (false, true) => std::cmp::Ordering::Greater,
                (false, false) => sb.total_cmp(&sa).then(a.cmp(&b)),
            }
        });
        ranked.truncate(self.options.keep.count(n));
        ranked.sort_unstable();
        let weights = vec![self.options.keep.rescale_weight(); ranked.len()];
        EpochPlan { samples: ranked, weights }
    }

    fn observe(&mut self, obs: &Observation) {
        let reference = obs.loss_ref.expect("MolPeg needs reference losses: the trainer must run the EMA model");
        for ((&i, &online), &reference) in obs.samples.iter().zip(obs.loss_online).zip(reference) {
            self.scores[i] = (online - reference).abs();
        }
    }

    fn scores(&self) -> Option<&[f32]> {
        Some(&self.scores)
    }
}

/// Soft random pruning: a fresh uniform ⌊r·N⌋ every epoch, weighted 1/r.
pub struct SoftRandomPolicy {
    options: PolicyOptions,
    num_samples: usize,
    rng: ChaCha8Rng,
}

impl SoftRandomPolicy {
    pub fn new(num_samples: usize, options: PolicyOptions) -> Self {
        SoftRandomPolicy { options, num_samples, rng: ChaCha8Rng::seed_from_u64(options.seed) }
    }
}

impl DynamicPolicy for SoftRandomPolicy {
    fn name(&self) -> &'static str {
        "soft-random"
    }

    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan {
        if self.options.annealing(epoch, num_epochs) {
            return EpochPlan::full(self.num_samples);
        }
        let mut samples: Vec<usize> = (0..self.num_samples).collect();
        samples.shuffle(&mut self.rng);
        samples.truncate(self.options.keep.count(self.num_samples));
        samples.sort_unstable();
        let weights = vec![self.options.keep.rescale_weight(); samples.len()];
        EpochPlan { samples, weights }
    }

    fn observe(&mut self, _observation: &Observation) {}
}

/// Names accepted by `--dynamic`.
pub const POLICY_NAMES: &[&str] = &["molpeg", "soft-random"];

/// Builds a policy by name.
pub fn make_policy(name: &str, num_samples: usize, options: PolicyOptions) -> Result<Box<dyn DynamicPolicy>, String> {
    match name {
        "molpeg" => Ok(Box::new(MolPegPolicy::new(num_samples, options))),
        "soft-random" => Ok(Box::new(SoftRandomPolicy::new(num_samples, options))),
        other => Err(format!("unknown dynamic policy `{other}`; available: {}", POLICY_NAMES.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(keep: f64, anneal: f64) -> PolicyOptions {
        PolicyOptions { keep: KeepFraction::new(keep).unwrap(), seed: 3, anneal }
    }

    fn observe_all(policy: &mut dyn DynamicPolicy, plan: &EpochPlan, online: impl Fn(usize) -> f32, reference: impl Fn(usize) -> f32) {
        let on: Vec<f32> = plan.samples.iter().map(|&i| online(i)).collect();
        let re: Vec<f32> = plan.samples.iter().map(|&i| reference(i)).collect();
        policy.observe(&Observation { samples: &plan.samples, loss_online: &on, loss_ref: Some(&re) });
    }

    #[test]
    fn molpeg_covers_every_sample_before_ranking_by_score() {
        let n = 10;
        let mut policy = MolPegPolicy::new(n, options(0.3, 0.0));
        let mut seen = std::collections::BTreeSet::new();
        for epoch in 0..4 {
            let plan = policy.plan_epoch(epoch, 10);
            assert_eq!(plan.samples.len(), 3);
            assert!(plan.weights.iter().all(|&w| (w - 1.0 / 0.3).abs() < 1e-6));
            if epoch < 3 {
                assert!(plan.samples.iter().all(|s| !seen.contains(s)), "epoch {epoch} revisits before full coverage");
            }
            seen.extend(plan.samples.iter().copied());
            // Signed discrepancy: sample 0 strongly negative, sample 9 strongly positive.
            observe_all(&mut policy, &plan, |i| i as f32, |i| if i == 0 { 5.0 } else if i == 9 { 0.0 } else { i as f32 });
        }
        assert_eq!(seen.len(), n);
        // Now every sample is scored: |0 − 5| = 5 and |9 − 0| = 9 are the two tails, kept first.
        let plan = policy.plan_epoch(4, 10);
        assert!(plan.samples.contains(&0) && plan.samples.contains(&9), "{:?}", plan.samples);
    }

    #[test]
    fn molpeg_kept_set_changes_with_scores_and_anneals() {
        let mut policy = MolPegPolicy::new(4, options(0.5, 0.25));
        let first = policy.plan_epoch(0, 4);
        observe_all(&mut policy, &first, |_| 1.0, |_| 1.0); // scored 0: rank after the unscored
        let second = policy.plan_epoch(1, 4);
        assert!(first.samples.iter().all(|s| !second.samples.contains(s)));
        let last = policy.plan_epoch(3, 4);
        assert_eq!(last, EpochPlan::full(4), "last 25% of epochs train on everything");
    }

    #[test]
    fn soft_random_draws_fresh_exact_subsets() {
        let mut policy = SoftRandomPolicy::new(100, options(0.1, 0.0));
        let a = policy.plan_epoch(0, 5);
        let b = policy.plan_epoch(1, 5);
        assert_eq!((a.samples.len(), b.samples.len()), (10, 10));
        assert_ne!(a.samples, b.samples);
        let mut again = SoftRandomPolicy::new(100, options(0.1, 0.0));
        assert_eq!(again.plan_epoch(0, 5), a);
    }
}
