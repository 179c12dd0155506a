//! Dynamic (per-epoch) pruning policies behind one interface.
//!
//! Before each epoch the trainer asks the policy for an [`EpochPlan`] (which training samples, with
//! which loss weights); after each batch it reports the per-sample losses of the online model and,
//! for policies that need one, of the EMA reference model. The trainer knows nothing else about any
//! policy, so adding a policy touches only this module.
//!
//! Policies ([`POLICY_NAMES`]):
//! - `molpeg` ([`MolPegPolicy`]): the largest |loss_θ − loss_ξ| each epoch (Chen et al. 2024).
//! - `soft-random` ([`SoftRandomPolicy`]): a fresh uniform subset each epoch.
//! - `epsilon-greedy` ([`EpsilonGreedyPolicy`]): a bandit over samples, reward = loss; ε of the budget
//!   uniform, the rest the highest mean loss (the baseline of Raju et al. 2021 that MolPeg and
//!   InfoBatch compare with).
//! - `ucb` ([`UcbPolicy`]): the same bandit ranked by mean loss + c·√(ln t / nᵢ).
//! - `infobatch` ([`InfoBatchPolicy`]): prune part of the below-mean-loss samples at random and
//!   up-weight the rest (Qin et al. ICLR 2024).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
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

/// Options shared by the policies. Fields after `anneal` are specific to one policy and default when
/// absent from a serialized form, so older configs still load.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PolicyOptions {
    pub keep: KeepFraction,
    pub seed: u64,
    /// Train on the full set in the last ⌈anneal·E⌉ epochs (0 = never).
    pub anneal: f64,
    /// `epsilon-greedy`: the fraction of each epoch's ⌊r·N⌋ samples drawn uniformly (exploration).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// `ucb`: the exploration coefficient c in mean loss + c·√(ln t / nᵢ).
    #[serde(default = "default_ucb_c")]
    pub ucb_c: f64,
    /// `infobatch`: the fraction of the below-mean-loss samples pruned each epoch. `None` derives it from
    /// `keep` as 1 − r (so keep 0.5 gives InfoBatch's default 0.5); `Some` fixes it and `keep` is unused.
    #[serde(default)]
    pub infobatch_prune: Option<f64>,
    /// `infobatch`: prune in epochs e ≤ δ·E (1-based, as InfoBatch's sampler counts); the full set
    /// afterwards (InfoBatch's annealing).
    #[serde(default = "default_infobatch_delta")]
    pub infobatch_delta: f64,
    /// `molpeg`: the score a never-scored sample ranks with. `Some(1.0)` is the official code
    /// (`MolPeg.__init__`: `self.scores = np.ones(N)`): unscored samples compete with scored ones at
    /// score 1. `None` ranks every unscored sample above every scored one.
    #[serde(default = "default_unscored_score")]
    pub unscored_score: Option<f32>,
    /// `soft-random`: draw each epoch's ⌊r·N⌋ samples with replacement, as the official code's
    /// `np.random.randint(0, N, int(r·N))`; `false` draws a subset without replacement.
    #[serde(default = "default_soft_random_replacement")]
    pub soft_random_replacement: bool,
}

fn default_epsilon() -> f64 {
    PolicyOptions::DEFAULT_EPSILON
}
fn default_ucb_c() -> f64 {
    PolicyOptions::DEFAULT_UCB_C
}
fn default_infobatch_delta() -> f64 {
    PolicyOptions::DEFAULT_INFOBATCH_DELTA
}
fn default_unscored_score() -> Option<f32> {
    PolicyOptions::DEFAULT_UNSCORED_SCORE
}
fn default_soft_random_replacement() -> bool {
    true
}

impl PolicyOptions {
    pub const DEFAULT_EPSILON: f64 = 0.1;
    pub const DEFAULT_UCB_C: f64 = 1.0;
    pub const DEFAULT_INFOBATCH_DELTA: f64 = 0.875;
    pub const DEFAULT_UNSCORED_SCORE: Option<f32> = Some(1.0);

    /// The shared options, with every policy-specific one at its default.
    pub fn new(keep: KeepFraction, seed: u64, anneal: f64) -> Self {
        PolicyOptions {
            keep,
            seed,
            anneal,
            epsilon: Self::DEFAULT_EPSILON,
            ucb_c: Self::DEFAULT_UCB_C,
            infobatch_prune: None,
            infobatch_delta: Self::DEFAULT_INFOBATCH_DELTA,
            unscored_score: Self::DEFAULT_UNSCORED_SCORE,
            soft_random_replacement: true,
        }
    }

    /// Checks the policy-specific options' ranges ([`make_policy`] calls it).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.epsilon) {
            return Err(format!("epsilon {} is outside [0, 1]", self.epsilon));
        }
        if !(self.ucb_c.is_finite() && self.ucb_c >= 0.0) {
            return Err(format!("ucb c {} must be finite and ≥ 0", self.ucb_c));
        }
        if let Some(p) = self.infobatch_prune.filter(|p| !(0.0..1.0).contains(p)) {
            return Err(format!("infobatch prune ratio {p} is outside [0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.infobatch_delta) {
            return Err(format!("infobatch delta {} is outside [0, 1]", self.infobatch_delta));
        }
        if let Some(s) = self.unscored_score.filter(|s| !s.is_finite()) {
            return Err(format!("the unscored samples' score {s} must be finite"));
        }
        Ok(())
    }

    fn annealing(&self, epoch: usize, num_epochs: usize) -> bool {
        let tail = (self.anneal * num_epochs as f64).ceil() as usize;
        epoch + tail >= num_epochs && tail > 0
    }
}

/// Dynamic MolPeg (Chen et al. 2024): every epoch keep the ⌊r·N⌋ samples with the largest latest score
/// |loss_θ − loss_ξ|, weighted 1/r; the scores of the samples trained on are refreshed from the same
/// forward passes.
///
/// Coverage: a never-scored sample ranks with [`PolicyOptions::unscored_score`] (1.0, the official
/// code's initial score) or, with `None`, above every scored one; unscored samples among themselves
/// follow one seeded random order fixed at the start. So epoch 0 trains on the first ⌊r·N⌋ of that
/// order and epoch 1 mostly on the next (BCE loss gaps are almost always below 1); with `None` the first
/// ⌈1/r⌉ epochs see every sample exactly once before scores alone decide.
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
        // By score descending (unscored at `unscored_score`, or first), ties: unscored before scored,
        // unscored by visit order, scored by index.
        let unscored = self.options.unscored_score;
        let key = |i: usize| {
            let s = self.scores[i];
            match (s.is_nan(), unscored) {
                (true, Some(u)) => (u, true),
                (true, None) => (f32::INFINITY, true),
                (false, _) => (s, false),
            }
        };
        ranked.sort_by(|&a, &b| {
            let ((sa, ua), (sb, ub)) = (key(a), key(b));
            sb.total_cmp(&sa).then(ub.cmp(&ua)).then_with(|| match (ua, ub) {
                (true, true) => self.visit_order[a].cmp(&self.visit_order[b]),
                _ => a.cmp(&b),
            })
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

/// Soft random pruning: a fresh uniform ⌊r·N⌋ every epoch, weighted 1/r; drawn with replacement like
/// the official code (`np.random.randint`), or as a subset with `soft_random_replacement = false`.
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
        let count = self.options.keep.count(self.num_samples);
        let mut samples: Vec<usize> = if self.options.soft_random_replacement {
            (0..count).map(|_| self.rng.random_range(0..self.num_samples)).collect()
        } else {
            let mut all: Vec<usize> = (0..self.num_samples).collect();
            all.shuffle(&mut self.rng);
            all.truncate(count);
            all
        };
        samples.sort_unstable();
        let weights = vec![self.options.keep.rescale_weight(); samples.len()];
        EpochPlan { samples, weights }
    }

    fn observe(&mut self, _observation: &Observation) {}
}

/// Seeded first-visit order: position of each sample in one random permutation.
fn visit_order(num_samples: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut order: Vec<usize> = (0..num_samples).collect();
    order.shuffle(rng);
    let mut position = vec![0u32; num_samples];
    for (p, &sample) in order.iter().enumerate() {
        position[sample] = p as u32;
    }
    position
}

/// Running mean of each sample's observed online loss (the bandit reward), NaN until first observed.
struct LossStats {
    sum: Vec<f64>,
    count: Vec<u32>,
    mean: Vec<f32>,
}

impl LossStats {
    fn new(n: usize) -> Self {
        LossStats { sum: vec![0.0; n], count: vec![0; n], mean: vec![f32::NAN; n] }
    }

    fn observe(&mut self, obs: &Observation) {
        for (&i, &loss) in obs.samples.iter().zip(obs.loss_online) {
            self.sum[i] += loss as f64;
            self.count[i] += 1;
            self.mean[i] = (self.sum[i] / self.count[i] as f64) as f32;
        }
    }
}

/// Ranks `candidates` in place: never-observed samples first (in the seeded visit order, so the first
/// epochs cover the training set), then by `value` descending, ties by index.
fn rank_unseen_first(candidates: &mut [usize], count: &[u32], visit: &[u32], value: impl Fn(usize) -> f64) {
    candidates.sort_by(|&a, &b| match (count[a] == 0, count[b] == 0) {
        (true, true) => visit[a].cmp(&visit[b]),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => value(b).total_cmp(&value(a)).then(a.cmp(&b)),
    });
}

fn uniform_weights(mut samples: Vec<usize>, weight: f32) -> EpochPlan {
    samples.sort_unstable();
    let weights = vec![weight; samples.len()];
    EpochPlan { samples, weights }
}

/// ε-greedy sample bandit (the dynamic-pruning baseline of Raju et al. 2021 used by MolPeg and
/// InfoBatch): each epoch ⌊r·N⌋ samples, of which round(ε·⌊r·N⌋) drawn uniformly from all samples and
/// the rest the highest mean observed online loss among the others; weights 1/r. Never-observed samples
/// rank above every observed one (in a seeded visit order), so the greedy part covers the set first.
pub struct EpsilonGreedyPolicy {
    options: PolicyOptions,
    stats: LossStats,
    visit: Vec<u32>,
    rng: ChaCha8Rng,
}

impl EpsilonGreedyPolicy {
    pub fn new(num_samples: usize, options: PolicyOptions) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let visit = visit_order(num_samples, &mut rng);
        EpsilonGreedyPolicy { options, stats: LossStats::new(num_samples), visit, rng }
    }
}

impl DynamicPolicy for EpsilonGreedyPolicy {
    fn name(&self) -> &'static str {
        "epsilon-greedy"
    }

    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan {
        let n = self.visit.len();
        if self.options.annealing(epoch, num_epochs) {
            return EpochPlan::full(n);
        }
        let budget = self.options.keep.count(n);
        let explore = ((self.options.epsilon * budget as f64).round() as usize).min(budget);
        let mut all: Vec<usize> = (0..n).collect();
        let (random, rest) = all.partial_shuffle(&mut self.rng, explore);
        let mut samples = random.to_vec();
        let mean = &self.stats.mean;
        rank_unseen_first(rest, &self.stats.count, &self.visit, |i| mean[i] as f64);
        samples.extend_from_slice(&rest[..budget - explore]);
        uniform_weights(samples, self.options.keep.rescale_weight())
    }

    fn observe(&mut self, observation: &Observation) {
        self.stats.observe(observation);
    }

    /// Mean observed online loss.
    fn scores(&self) -> Option<&[f32]> {
        Some(&self.stats.mean)
    }
}

/// UCB sample bandit (Raju et al. 2021's other baseline, in the UCB1 form): each epoch the ⌊r·N⌋
/// samples with the largest mean observed loss + c·√(ln t / nᵢ), t = epochs planned so far including
/// this one, nᵢ = times sample i's loss was observed; never-observed samples first (seeded visit
/// order); ties by index; weights 1/r.
pub struct UcbPolicy {
    options: PolicyOptions,
    stats: LossStats,
    visit: Vec<u32>,
    epochs_planned: usize,
}

impl UcbPolicy {
    pub fn new(num_samples: usize, options: PolicyOptions) -> Self {
        let visit = visit_order(num_samples, &mut ChaCha8Rng::seed_from_u64(options.seed));
        UcbPolicy { options, stats: LossStats::new(num_samples), visit, epochs_planned: 0 }
    }
}

impl DynamicPolicy for UcbPolicy {
    fn name(&self) -> &'static str {
        "ucb"
    }

    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan {
        self.epochs_planned += 1;
        let n = self.visit.len();
        if self.options.annealing(epoch, num_epochs) {
            return EpochPlan::full(n);
        }
        let log_t = (self.epochs_planned as f64).ln();
        let (mean, count, c) = (&self.stats.mean, &self.stats.count, self.options.ucb_c);
        let mut ranked: Vec<usize> = (0..n).collect();
        rank_unseen_first(&mut ranked, count, &self.visit, |i| mean[i] as f64 + c * (log_t / count[i] as f64).sqrt());
        ranked.truncate(self.options.keep.count(n));
        uniform_weights(ranked, self.options.keep.rescale_weight())
    }

    fn observe(&mut self, observation: &Observation) {
        self.stats.observe(observation);
    }

    /// Mean observed online loss (without the exploration bonus).
    fn scores(&self) -> Option<&[f32]> {
        Some(&self.stats.mean)
    }
}

/// InfoBatch (Qin et al. ICLR 2024): unbiased dynamic pruning by loss. Each epoch, among the samples
/// whose latest online loss is below the mean latest loss (over samples with a loss), a random fraction
/// p is pruned; the kept ones (⌊(1 − p)·|low|⌋) get weight 1/(1 − p) so the expected gradient is
/// unchanged; every other sample, including any without a loss yet, is kept with weight 1. Epochs
/// e > δ·E (1-based; δ = 0.875 and E = 100 prune epochs 1..=87 and train 88..=100 on everything, as
/// InfoBatch's `IBSampler`, whose counter is 1 when the first epoch's plan is drawn), and any in the
/// shared `anneal` tail, train on the full set with weight 1.
///
/// How `keep` maps: InfoBatch has no fixed budget, so the number of samples per epoch is N − p·|low|,
/// not ⌊r·N⌋. p is `infobatch_prune` when set, else 1 − r: r is applied to the low-loss samples only
/// (keep 1.0 trains on everything; keep 0.5 is InfoBatch's default p = 0.5).
pub struct InfoBatchPolicy {
    options: PolicyOptions,
    last_loss: Vec<f32>,
    rng: ChaCha8Rng,
}

impl InfoBatchPolicy {
    pub fn new(num_samples: usize, options: PolicyOptions) -> Self {
        InfoBatchPolicy { options, last_loss: vec![f32::NAN; num_samples], rng: ChaCha8Rng::seed_from_u64(options.seed) }
    }

    /// The fraction p of the below-mean-loss samples pruned each epoch.
    pub fn prune_ratio(&self) -> f64 {
        self.options.infobatch_prune.unwrap_or(1.0 - self.options.keep.get())
    }

    /// The weight 1/(1 − p) of the kept below-mean-loss samples.
    pub fn rescale_weight(&self) -> f32 {
        (1.0 / (1.0 - self.prune_ratio())) as f32
    }

    /// Whether 0-based `epoch` trains on the full set: epoch + 1 > δ·E, or in the shared `anneal` tail.
    pub fn full_epoch(&self, epoch: usize, num_epochs: usize) -> bool {
        (epoch + 1) as f64 > self.options.infobatch_delta * num_epochs as f64 || self.options.annealing(epoch, num_epochs)
    }
}

impl DynamicPolicy for InfoBatchPolicy {
    fn name(&self) -> &'static str {
        "infobatch"
    }

    fn plan_epoch(&mut self, epoch: usize, num_epochs: usize) -> EpochPlan {
        let n = self.last_loss.len();
        if self.full_epoch(epoch, num_epochs) {
            return EpochPlan::full(n);
        }
        let seen: Vec<f64> = self.last_loss.iter().filter(|l| !l.is_nan()).map(|&l| l as f64).collect();
        let mean = seen.iter().sum::<f64>() / seen.len().max(1) as f64;
        let (mut low, high): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| (self.last_loss[i] as f64) < mean);
        let kept_low = (((1.0 - self.prune_ratio()) * low.len() as f64) + 1e-9).floor() as usize;
        low.shuffle(&mut self.rng);
        low.truncate(kept_low);
        let rescaled = self.rescale_weight();
        let mut plan: Vec<(usize, f32)> = high.into_iter().map(|i| (i, 1.0)).chain(low.into_iter().map(|i| (i, rescaled))).collect();
        plan.sort_unstable_by_key(|&(i, _)| i);
        EpochPlan { samples: plan.iter().map(|p| p.0).collect(), weights: plan.iter().map(|p| p.1).collect() }
    }

    fn observe(&mut self, obs: &Observation) {
        for (&i, &loss) in obs.samples.iter().zip(obs.loss_online) {
            self.last_loss[i] = loss;
        }
    }

    /// Latest online loss.
    fn scores(&self) -> Option<&[f32]> {
        Some(&self.last_loss)
    }
}

/// Names accepted by `--dynamic`.
pub const POLICY_NAMES: &[&str] = &["molpeg", "soft-random", "epsilon-greedy", "ucb", "infobatch"];

/// Builds a policy by name, after checking the options' ranges.
pub fn make_policy(name: &str, num_samples: usize, options: PolicyOptions) -> Result<Box<dyn DynamicPolicy>, String> {
    options.validate()?;
    match name {
        "molpeg" => Ok(Box::new(MolPegPolicy::new(num_samples, options))),
        "soft-random" => Ok(Box::new(SoftRandomPolicy::new(num_samples, options))),
        "epsilon-greedy" => Ok(Box::new(EpsilonGreedyPolicy::new(num_samples, options))),
        "ucb" => Ok(Box::new(UcbPolicy::new(num_samples, options))),
        "infobatch" => Ok(Box::new(InfoBatchPolicy::new(num_samples, options))),
        other => Err(format!("unknown dynamic policy `{other}`; available: {}", POLICY_NAMES.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(keep: f64, anneal: f64) -> PolicyOptions {
        PolicyOptions::new(KeepFraction::new(keep).unwrap(), 3, anneal)
    }

    fn observe_all(policy: &mut dyn DynamicPolicy, plan: &EpochPlan, online: impl Fn(usize) -> f32, reference: impl Fn(usize) -> f32) {
        let on: Vec<f32> = plan.samples.iter().map(|&i| online(i)).collect();
        let re: Vec<f32> = plan.samples.iter().map(|&i| reference(i)).collect();
        policy.observe(&Observation { samples: &plan.samples, loss_online: &on, loss_ref: Some(&re) });
    }

    #[test]
    fn molpeg_covers_every_sample_before_ranking_by_score() {
        let n = 10;
        let mut policy = MolPegPolicy::new(n, PolicyOptions { unscored_score: None, ..options(0.3, 0.0) });
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

    /// The official code starts every score at 1: a scored sample above 1 outranks the unscored ones,
    /// one below 1 ranks after them.
    #[test]
    fn molpeg_unscored_samples_rank_at_score_one_by_default() {
        let n = 6;
        let mut policy = MolPegPolicy::new(n, options(0.5, 0.0));
        let first = policy.plan_epoch(0, 10);
        assert_eq!(first.samples.len(), 3);
        let (high, low) = (first.samples[0], first.samples[1]);
        // |online − ref|: `high` 2.5, `low` 0.5, the third 1.0 exactly (ties with unscored: unscored first).
        observe_all(&mut policy, &first, |i| if i == high { 3.0 } else if i == low { 1.0 } else { 1.5 }, |_| 0.5);
        let second = policy.plan_epoch(1, 10);
        // The two unscored ones kept are the first two of the visit order.
        let mut by_visit: Vec<usize> = (0..n).filter(|i| !first.samples.contains(i)).collect();
        by_visit.sort_by_key(|&i| policy.visit_order[i]);
        let mut expected = vec![high, by_visit[0], by_visit[1]];
        expected.sort_unstable();
        assert_eq!(second.samples, expected);
        assert!(!second.samples.contains(&low));
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
        // With replacement (the official default) half of N drawn from N repeats samples; without, never.
        let distinct = |p: &EpochPlan| p.samples.iter().collect::<std::collections::BTreeSet<_>>().len();
        let with = SoftRandomPolicy::new(100, options(0.5, 0.0)).plan_epoch(0, 5);
        assert_eq!(with.samples.len(), 50);
        assert!(distinct(&with) < 50, "50 draws from 100 with replacement repeat (p ≈ 1 − 1e-6)");
        let without = SoftRandomPolicy::new(100, PolicyOptions { soft_random_replacement: false, ..options(0.5, 0.0) }).plan_epoch(0, 5);
        assert_eq!(distinct(&without), 50);
    }

    fn observe_online(policy: &mut dyn DynamicPolicy, samples: &[usize], loss: impl Fn(usize) -> f32) {
        let on: Vec<f32> = samples.iter().map(|&i| loss(i)).collect();
        policy.observe(&Observation { samples, loss_online: &on, loss_ref: None });
    }

    #[test]
    fn every_policy_is_registered_and_options_are_checked() {
        for name in POLICY_NAMES {
            let mut policy = make_policy(name, 20, options(0.5, 0.0)).unwrap();
            assert_eq!(policy.name(), *name);
            assert!(!policy.plan_epoch(0, 10).samples.is_empty());
        }
        assert!(make_policy("ucb", 5, PolicyOptions { ucb_c: -1.0, ..options(0.5, 0.0) }).is_err());
        assert!(make_policy("epsilon-greedy", 5, PolicyOptions { epsilon: 1.5, ..options(0.5, 0.0) }).is_err());
        assert!(make_policy("infobatch", 5, PolicyOptions { infobatch_prune: Some(1.0), ..options(0.5, 0.0) }).is_err());
        // Configs written before the policy-specific fields existed still load, with the defaults.
        let old: PolicyOptions = serde_json::from_str(r#"{"keep": 0.4, "seed": 1, "anneal": 0.0}"#).unwrap();
        assert_eq!((old.epsilon, old.ucb_c, old.infobatch_prune, old.infobatch_delta), (0.1, 1.0, None, 0.875));
    }

    /// Fixed-budget policies train on exactly ⌊r·N⌋ distinct samples with weight 1/r every epoch;
    /// every policy repeats itself given the seed and the same losses.
    #[test]
    fn exact_counts_and_determinism_for_every_policy() {
        let n = 37;
        for name in POLICY_NAMES {
            for keep in [0.1, 0.3, 0.5, 1.0] {
                let run = || {
                    let mut policy = make_policy(name, n, options(keep, 0.0)).unwrap();
                    (0..6)
                        .map(|epoch| {
                            let plan = policy.plan_epoch(epoch, 6);
                            observe_all(policy.as_mut(), &plan, |i| ((i * 7) % 11) as f32, |i| (i % 5) as f32);
                            plan
                        })
                        .collect::<Vec<_>>()
                };
                let plans = run();
                assert_eq!(plans, run(), "{name} at keep {keep} is not deterministic");
                for plan in &plans {
                    let mut distinct = plan.samples.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if *name != "soft-random" {
                        assert_eq!(distinct.len(), plan.samples.len(), "{name} repeats a sample");
                    }
                    assert_eq!(plan.weights.len(), plan.samples.len());
                    if *name != "infobatch" {
                        assert_eq!(plan.samples.len(), KeepFraction::new(keep).unwrap().count(n), "{name} at keep {keep}");
                        assert!(plan.weights.iter().all(|&w| (w as f64 - 1.0 / keep).abs() < 1e-5), "{name}: {:?}", plan.weights);
                    }
                }
            }
        }
    }

    #[test]
    fn infobatch_prunes_low_loss_samples_rescales_and_anneals() {
        let n = 10;
        let mut policy = InfoBatchPolicy::new(n, options(0.5, 0.0));
        assert_eq!((policy.prune_ratio(), policy.rescale_weight()), (0.5, 2.0));
        // No losses yet: everything, weight 1.
        let first = policy.plan_epoch(0, 8);
        assert_eq!(first, EpochPlan::full(n));
        // Rows 0..6 lose 0.1, rows 6..10 lose 1.0: mean 0.46, six below it, ⌊0.5·6⌋ = 3 of them kept.
        observe_online(&mut policy, &first.samples, |i| if i < 6 { 0.1 } else { 1.0 });
        let plan = policy.plan_epoch(1, 8);
        assert_eq!(plan.samples.len(), 7);
        for (&i, &w) in plan.samples.iter().zip(&plan.weights) {
            assert_eq!(w, if i < 6 { 2.0 } else { 1.0 }, "sample {i}");
        }
        assert!((6..10).all(|i| plan.samples.contains(&i)));
        // Weighted count of the low-loss samples is unchanged: 3 · 2 = 6.
        assert_eq!(plan.weights.iter().filter(|&&w| w == 2.0).sum::<f32>(), 6.0);
        let mut twin = InfoBatchPolicy::new(n, options(0.5, 0.0));
        let _ = twin.plan_epoch(0, 8);
        observe_online(&mut twin, &first.samples, |i| if i < 6 { 0.1 } else { 1.0 });
        assert_eq!(twin.plan_epoch(1, 8), plan, "seeded");
        // δ = 0.875: of 8 epochs, only epoch 7 (0-based) is full; of 100, InfoBatch's IBSampler prunes
        // 1-based epochs 1..=87 (its counter ≤ 87.5), so 0-based 87..100 are full.
        assert_ne!(policy.plan_epoch(6, 8), EpochPlan::full(n));
        assert_eq!(policy.plan_epoch(7, 8), EpochPlan::full(n));
        assert_eq!((0..100).filter(|&e| policy.full_epoch(e, 100)).collect::<Vec<_>>(), (87..100).collect::<Vec<_>>());

        // Samples without a loss yet are kept, weight 1; an explicit prune ratio overrides keep.
        let mut fixed = InfoBatchPolicy::new(n, PolicyOptions { infobatch_prune: Some(0.75), ..options(0.9, 0.0) });
        assert_eq!(fixed.rescale_weight(), 4.0);
        observe_online(&mut fixed, &(0..8).collect::<Vec<_>>(), |i| if i < 4 { 0.1 } else { 1.0 });
        let plan = fixed.plan_epoch(1, 8);
        // Mean 0.55 over the 8 observed: rows 0..4 low, ⌊0.25·4⌋ = 1 kept with weight 4.
        assert_eq!(plan.samples.len(), 1 + 4 + 2);
        assert!(plan.samples.contains(&8) && plan.samples.contains(&9));
        assert_eq!(plan.weights.iter().filter(|&&w| w == 4.0).count(), 1);
    }

    #[test]
    fn epsilon_greedy_mixes_random_and_highest_loss() {
        let n = 100;
        let all: Vec<usize> = (0..n).collect();
        // ε = 0: exactly the 20 highest losses.
        let mut greedy = EpsilonGreedyPolicy::new(n, PolicyOptions { epsilon: 0.0, ..options(0.2, 0.0) });
        observe_online(&mut greedy, &all, |i| i as f32);
        let plan = greedy.plan_epoch(1, 10);
        assert_eq!(plan.samples, (80..100).collect::<Vec<_>>());
        assert!(plan.weights.iter().all(|&w| w == 5.0));
        // ε = 0.1: 2 uniform draws, 18 from the top of the rest.
        let mut policy = EpsilonGreedyPolicy::new(n, options(0.2, 0.0));
        observe_online(&mut policy, &all, |i| i as f32);
        let plans: Vec<EpochPlan> = (0..5).map(|e| policy.plan_epoch(e, 10)).collect();
        assert!(plans.iter().all(|p| p.samples.len() == 20 && p.samples.iter().filter(|&&i| i >= 80).count() >= 18));
        assert!(plans.iter().any(|p| p.samples.iter().any(|&i| i < 80)), "exploration never left the top");
        let mut again = EpsilonGreedyPolicy::new(n, options(0.2, 0.0));
        observe_online(&mut again, &all, |i| i as f32);
        assert_eq!(again.plan_epoch(0, 10), plans[0]);
        // Unobserved samples come first, so the greedy part covers the set.
        let mut fresh = EpsilonGreedyPolicy::new(10, PolicyOptions { epsilon: 0.0, ..options(0.5, 0.0) });
        let a = fresh.plan_epoch(0, 10);
        observe_online(&mut fresh, &a.samples, |_| 9.0);
        let b = fresh.plan_epoch(1, 10);
        assert!(a.samples.iter().all(|s| !b.samples.contains(s)));
    }

    #[test]
    fn ucb_explores_rarely_seen_samples() {
        let loss = |i: usize| [0.1, 0.2, 0.3, 0.4][i];
        let mut policy = UcbPolicy::new(4, options(0.5, 0.0));
        let a = policy.plan_epoch(0, 10);
        observe_online(&mut policy, &a.samples, loss);
        let b = policy.plan_epoch(1, 10);
        assert!(a.samples.iter().all(|s| !b.samples.contains(s)), "unseen samples first");
        observe_online(&mut policy, &b.samples, loss);
        // t = 3, every nᵢ = 1: equal bonuses, the two largest losses.
        let c = policy.plan_epoch(2, 10);
        assert_eq!(c.samples, vec![2, 3]);
        assert!(c.weights.iter().all(|&w| w == 2.0));
        observe_online(&mut policy, &c.samples, loss);
        // t = 4: 0.1 + √(ln 4) = 1.277 and 0.2 + √(ln 4) = 1.377 beat 0.3 + √(ln 4 / 2) = 1.133, 1.233.
        assert_eq!(policy.plan_epoch(3, 10).samples, vec![0, 1]);
        assert_eq!(policy.scores().unwrap(), &[0.1, 0.2, 0.3, 0.4]);
        // c = 0: pure exploitation keeps the high-loss pair.
        let mut greedy = UcbPolicy::new(4, PolicyOptions { ucb_c: 0.0, ..options(0.5, 0.0) });
        observe_online(&mut greedy, &[0, 1, 2, 3], loss);
        observe_online(&mut greedy, &[2, 3], loss);
        assert_eq!(greedy.plan_epoch(0, 10).samples, vec![2, 3]);
        assert_eq!(greedy.plan_epoch(9, 10).samples, vec![2, 3]);
        let mut annealed = UcbPolicy::new(4, options(0.5, 0.1));
        assert_eq!(annealed.plan_epoch(9, 10), EpochPlan::full(4));
    }
}
