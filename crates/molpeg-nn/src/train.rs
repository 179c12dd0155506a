//! The reusable training loop: one epoch over a caller-given plan of (sample, weight), returning
//! per-sample losses; evaluation and prediction; the losses themselves.
//!
//! The trainer knows nothing about pruning: a static coreset, a dynamic policy or the MolPeg scorer
//! decides each epoch's plan and may watch every batch through the `on_batch` callback, which sees the
//! batch (already on the device, e.g. for an EMA reference model's forward) and its per-sample losses.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use serde::{Deserialize, Serialize};

use crate::batch::{for_each_batch, mix_seed, Batch, DropoutSpec, LoaderOptions};
use crate::data::{GraphStore, Sample, TaskKind};
use crate::dual_pace::DualPace;
use crate::metrics;
use crate::model::Model;
use crate::{Error, Result};

/// How a sample's per-task losses become its per-sample loss (the number MolPeg scores and the
/// dynamic policies rank). Missing labels always contribute 0; the difference is the divisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SampleLoss {
    /// Sum over labelled tasks / number of tasks (the official code: `loss_mat.mean(1)` after zeroing
    /// missing entries).
    #[default]
    AllTasks,
    /// Sum over labelled tasks / number of labelled tasks.
    LabelledTasks,
}

/// How outputs are turned into losses. Regression targets are standardized with the train split's
/// per-task mean and standard deviation; outputs are reported back in original units.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub kind: TaskKind,
    pub target_mean: Vec<f32>,
    pub target_std: Vec<f32>,
    pub sample_loss: SampleLoss,
}

impl Objective {
    pub fn binary(tasks: usize) -> Self {
        Objective { kind: TaskKind::Binary, target_mean: vec![0.0; tasks], target_std: vec![1.0; tasks], sample_loss: SampleLoss::default() }
    }

    /// The same objective with another per-sample averaging.
    pub fn with_sample_loss(mut self, sample_loss: SampleLoss) -> Self {
        self.sample_loss = sample_loss;
        self
    }

    /// Binary as-is; regression standardized with the labels of `train`.
    pub fn for_task(kind: TaskKind, store: &GraphStore, train: &[u32]) -> Self {
        match kind {
            TaskKind::Binary => Objective::binary(store.num_tasks),
            TaskKind::Regression => {
                let (target_mean, target_std) = store.label_moments(train);
                Objective { kind, target_mean, target_std, sample_loss: SampleLoss::default() }
            }
        }
    }

    fn moments(&self, device: Device) -> (Tensor, Tensor) {
        (Tensor::from_slice(&self.target_mean).to_device(device), Tensor::from_slice(&self.target_std).to_device(device))
    }

    /// Loss of every (sample, task) entry, `[B, T]`, exactly 0 where the label is missing (so missing
    /// labels contribute no gradient).
    pub fn entry_losses(&self, outputs: &Tensor, batch: &Batch) -> Tensor {
        let raw = match self.kind {
            TaskKind::Binary => outputs.binary_cross_entropy_with_logits::<Tensor>(&batch.labels, None, None, Reduction::None),
            TaskKind::Regression => {
                let (mean, std) = self.moments(outputs.device());
                (outputs - (&batch.labels - mean) / std).square()
            }
        };
        raw * &batch.mask
    }

    /// Per-sample losses `[B]` (per [`SampleLoss`]) and the training objective:
    /// `Σ w_i · loss_ij / #labelled entries`, i.e. masked BCE/MSE averaged over valid entries with
    /// per-sample weights multiplying per-sample losses. (The official code divides this by the number
    /// of tasks once more, a constant factor that Adam's update does not see.)
    pub fn losses(&self, outputs: &Tensor, batch: &Batch) -> (Tensor, Tensor) {
        let entries = self.entry_losses(outputs, batch);
        let sums = entries.sum_dim_intlist(1, false, Kind::Float);
        let per_sample = match self.sample_loss {
            SampleLoss::AllTasks => sums / entries.size()[1].max(1) as f64,
            SampleLoss::LabelledTasks => sums / batch.mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0),
        };
        let valid = batch.mask.sum(Kind::Float).clamp_min(1.0);
        let objective = (entries * batch.weights.unsqueeze(1)).sum(Kind::Float) / valid;
        (per_sample, objective)
    }

    /// Outputs in original units (logits for binary tasks).
    pub fn to_original_units(&self, outputs: &mut [f32]) {
        if self.kind == TaskKind::Regression {
            let t = self.target_mean.len();
            for (k, v) in outputs.iter_mut().enumerate() {
                *v = *v * self.target_std[k % t] + self.target_mean[k % t];
            }
        }
    }
}

/// Seed stream of the reference model's CPU dropout masks (mixed with the run seed).
const REFERENCE_DROPOUT_STREAM: u64 = 0x5245_4644_524f_5021;

/// Optimization and batching settings of a [`Trainer`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr: f64,
    /// L2 penalty added to the gradient, as `torch.optim.Adam(weight_decay=...)` (Hu et al.).
    pub weight_decay: f64,
    /// Collate the next batch on a second thread while the current one trains.
    pub prefetch: bool,
    /// Seed of the CPU dropout masks (drawn by the loader, see [`DropoutSpec`]); epoch `k` of this
    /// trainer uses `mix_seed(seed, k)`.
    pub seed: u64,
    /// Token models: batches per length-sorted window of an epoch ([`length_bucketed`]); 0 or 1
    /// keeps the plan's order. The GIN ignores it.
    pub length_buckets: usize,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(Error::Config("batch_size and eval_batch_size must be at least 1".into()));
        }
        let lr_ok = self.lr > 0.0 && self.lr.is_finite();
        let wd_ok = self.weight_decay >= 0.0 && self.weight_decay.is_finite();
        if !(lr_ok && wd_ok) {
            return Err(Error::Config(format!("lr ({}) must be > 0 and weight_decay ({}) ≥ 0", self.lr, self.weight_decay)));
        }
        Ok(())
    }
}

/// What the `on_batch` callback of [`Trainer::train_epoch`] sees after each optimizer step.
pub struct BatchOutcome<'a> {
    /// Position of the batch's first sample in the epoch's plan: the batch holds
    /// `plan[offset..offset + losses.len()]`.
    pub offset: usize,
    pub batch: &'a Batch,
    /// Per-sample losses of the batch, before the step, in batch order (`batch.samples`).
    pub losses: &'a [f32],
    /// The reference model's per-sample losses on the batch (before the step), when the trainer has
    /// one ([`Trainer::reference`]).
    pub reference_losses: Option<&'a [f32]>,
    /// The model after the step, and the objective (for a reference model's losses on the batch).
    pub model: &'a Model,
    pub objective: &'a Objective,
}

/// One epoch's result.
#[derive(Debug, Clone, Default)]
pub struct EpochStats {
    /// `(store index, loss)` of every sample trained on, in training order.
    pub losses: Vec<(u32, f32)>,
    /// Unweighted mean of the per-sample losses.
    pub mean_loss: f64,
    pub seconds: f64,
}

/// A split's evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Mean loss over labelled entries (`None` for an empty split).
    pub loss: Option<f64>,
    pub metrics: Vec<(&'static str, Option<f64>)>,
    /// The same metrics per task, with each task's status (e.g. one class only).
    pub per_task: Vec<metrics::TaskMetrics>,
    /// `rows × tasks` outputs in original units (logits for binary tasks).
    pub outputs: Vec<f32>,
    /// `rows × tasks` labels, NaN where missing.
    pub labels: Vec<f32>,
}

impl Evaluation {
    pub fn metric(&self, name: &str) -> Option<f64> {
        if name == metrics::LOSS {
            return self.loss;
        }
        self.metrics.iter().find(|(n, _)| *n == name).and_then(|(_, v)| *v)
    }
}

/// A model, its optimizer and its objective.
pub struct Trainer {
    pub model: Model,
    pub objective: Objective,
    pub config: TrainConfig,
    optimizer: nn::Optimizer,
    /// Training samples processed so far (for scaling curves: compute ∝ samples seen).
    pub samples_seen: u64,
    /// Calls of [`Trainer::train_epoch`] so far.
    pub epochs_trained: u64,
    /// MolPeg's EMA reference model: when set, every batch also gets ξ's losses (before the step) and
    /// ξ follows θ after every step.
    pub reference: Option<DualPace>,
}

impl Trainer {
    pub fn new(model: Model, objective: Objective, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        if model.num_tasks() != objective.target_mean.len() {
            return Err(Error::Config(format!("model has {} outputs but the objective {} tasks", model.num_tasks(), objective.target_mean.len())));
        }
        crate::runtime::tune_allocator();
        let optimizer = nn::Adam { wd: config.weight_decay, ..Default::default() }.build(&model.vs, config.lr)?;
        Ok(Trainer { model, objective, config, optimizer, samples_seen: 0, epochs_trained: 0, reference: None })
    }

    pub fn device(&self) -> Device {
        self.model.device()
    }

    fn prefetch(&self) -> bool {
        use_prefetch(self.config.prefetch, self.device())
    }

    /// Trains on `plan` in the given order (shuffle it with [`shuffled`] first), one optimizer step per
    /// batch of `batch_size`.
    pub fn train_epoch(&mut self, store: &GraphStore, plan: &[Sample], mut on_batch: impl FnMut(&BatchOutcome) -> Result<()>) -> Result<EpochStats> {
        let start = std::time::Instant::now();
        let mut losses = Vec::with_capacity(plan.len());
        let device = self.device();
        // On CUDA libtorch's own dropout is fast, and host masks would cost a transfer; only a reference
        // model that shares θ's masks needs them there.
        let cfg = &self.model.config;
        let spec = |seed| DropoutSpec { layers: cfg.layers, width: cfg.width, p: cfg.dropout, seed };
        let loader_masks = self.model.uses_loader_masks() && cfg.dropout > 0.0;
        let shared_reference = self.reference.as_ref().is_some_and(DualPace::shares_masks);
        let on_host = device == Device::Cpu || shared_reference;
        let dropout = (loader_masks && on_host).then(|| spec(mix_seed(self.config.seed, self.epochs_trained)));
        let reference_dropout = (loader_masks && device == Device::Cpu && self.reference.is_some() && !shared_reference)
            .then(|| spec(mix_seed(mix_seed(self.config.seed, REFERENCE_DROPOUT_STREAM), self.epochs_trained)));
        let tokens = self.model.token_input(store)?;
        let bucketed;
        let plan = match &tokens {
            Some(input) if self.config.length_buckets > 1 => {
                let lengths: Vec<usize> = plan.iter().map(|s| input.length(store, s.index as usize)).collect();
                let seed = mix_seed(mix_seed(self.config.seed, LENGTH_BUCKET_STREAM), self.epochs_trained);
                bucketed = length_bucketed(plan, &lengths, self.config.batch_size, self.config.length_buckets, seed);
                &bucketed[..]
            }
            _ => plan,
        };
        let geometry = self.model.geometry_input(store)?;
        let options = LoaderOptions { batch_size: self.config.batch_size, prefetch: self.prefetch(), dropout, reference_dropout, tokens, geometry };
        self.epochs_trained += 1;
        let (model, optimizer, objective, reference) = (&self.model, &mut self.optimizer, &self.objective, self.reference.as_ref());
        for_each_batch(store, plan, &options, device, |batch| {
            let outputs = model.forward(&batch, true);
            let (per_sample, loss) = objective.losses(&outputs, &batch);
            // The official order: both forward passes, then θ's step, then ξ's EMA step.
            let reference_losses = reference.map(|r| r.losses(model, objective, &batch)).transpose()?;
            optimizer.backward_step(&loss);
            if let Some(r) = reference {
                r.update(model)?;
            }
            let per_sample = Vec::<f32>::try_from(per_sample.detach().to_device(Device::Cpu))?;
            let offset = losses.len();
            losses.extend(batch.samples.iter().copied().zip(per_sample.iter().copied()));
            on_batch(&BatchOutcome { offset, batch: &batch, losses: &per_sample, reference_losses: reference_losses.as_deref(), model, objective })
        })?;
        self.samples_seen += plan.len() as u64;
        let mean_loss = if losses.is_empty() { 0.0 } else { losses.iter().map(|&(_, l)| l as f64).sum::<f64>() / losses.len() as f64 };
        Ok(EpochStats { losses, mean_loss, seconds: start.elapsed().as_secs_f64() })
    }

    /// Eval-mode outputs for `indices` (no gradient).
    pub fn predict(&self, store: &GraphStore, indices: &[u32]) -> Result<Predictions> {
        predict_with(&self.model, &self.objective, store, indices, self.config.eval_batch_size, self.prefetch())
    }

    /// Eval-mode outputs for `indices` with the per-sample losses and the graph representations.
    pub fn predict_with_representations(&self, store: &GraphStore, indices: &[u32]) -> Result<(Predictions, Representations)> {
        let (p, r) = predict_impl(&self.model, &self.objective, store, indices, self.config.eval_batch_size, self.prefetch(), true)?;
        Ok((p, r.expect("asked for representations")))
    }

    /// Loss and metrics of the split `indices` (per-task metrics named `task0`, `task1`, ...).
    pub fn evaluate(&self, store: &GraphStore, indices: &[u32]) -> Result<Evaluation> {
        let names: Vec<String> = (0..store.num_tasks).map(|j| format!("task{j}")).collect();
        self.evaluate_named(store, indices, &names)
    }

    /// [`Trainer::evaluate`] with the tasks' names.
    pub fn evaluate_named(&self, store: &GraphStore, indices: &[u32], task_names: &[String]) -> Result<Evaluation> {
        let p = self.predict(store, indices)?;
        let mut labels = Vec::with_capacity(p.outputs.len());
        for &g in indices {
            labels.extend_from_slice(store.labels(g as usize));
        }
        let metrics = metrics::evaluate(self.objective.kind, store.num_tasks, &labels, &p.outputs);
        let per_task = metrics::evaluate_tasks(self.objective.kind, task_names, &labels, &p.outputs);
        Ok(Evaluation { loss: (p.labelled > 0.0).then(|| p.loss_sum / p.labelled), metrics, per_task, outputs: p.outputs, labels })
    }
}

/// Whether to prefetch batches on a second thread: asked for, and either on CUDA (the CPU mostly waits
/// for the GPU) or with a core left over by libtorch's threads. On a CPU whose cores all run
/// libtorch's threads, a loader thread only takes turns with them (measured: 20–40% slower on 2 cores).
pub fn use_prefetch(asked: bool, device: Device) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    asked && (device.is_cuda() || cores > tch::get_num_threads().max(1) as usize)
}

/// What [`predict_with`] returns.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// `len × tasks` outputs in original units (logits for binary tasks).
    pub outputs: Vec<f32>,
    /// Sum of the masked per-entry losses, and the number of labelled entries.
    pub loss_sum: f64,
    pub labelled: f64,
}

/// Eval-mode side outputs of [`Trainer::predict_with_representations`].
#[derive(Debug, Clone)]
pub struct Representations {
    /// Per-sample loss: mean over the sample's labelled tasks (0 with none), as in training.
    pub losses: Vec<f32>,
    /// `len × graph_dim` pooled graph representations, the linear head's input.
    pub embeddings: Vec<f32>,
    pub dim: usize,
}

/// Eval-mode outputs of any model (e.g. an EMA reference) on `indices`, without gradient.
pub fn predict_with(model: &Model, objective: &Objective, store: &GraphStore, indices: &[u32], batch_size: usize, prefetch: bool) -> Result<Predictions> {
    Ok(predict_impl(model, objective, store, indices, batch_size, prefetch, false)?.0)
}

fn predict_impl(
    model: &Model,
    objective: &Objective,
    store: &GraphStore,
    indices: &[u32],
    batch_size: usize,
    prefetch: bool,
    representations: bool,
) -> Result<(Predictions, Option<Representations>)> {
    let _guard = tch::no_grad_guard();
    let tokens = model.token_input(store)?;
    // A token model evaluates its molecules shortest first (outputs are put back in `indices`' order):
    // batches of similar lengths pad little. Each molecule's output does not depend on its batch.
    let order: Option<Vec<usize>> = tokens.as_ref().map(|input| {
        let mut order: Vec<usize> = (0..indices.len()).collect();
        order.sort_by_key(|&i| input.length(store, indices[i] as usize));
        order
    });
    let sorted: Vec<u32>;
    let run_indices = match &order {
        Some(order) => {
            sorted = order.iter().map(|&i| indices[i]).collect();
            &sorted[..]
        }
        None => indices,
    };
    let mut outputs = Vec::with_capacity(indices.len() * store.num_tasks);
    let dim = model.config.graph_dim();
    let mut side = representations.then(|| Representations { losses: Vec::with_capacity(indices.len()), embeddings: Vec::with_capacity(indices.len() * dim), dim });
    let (mut loss_sum, mut entries) = (0f64, 0f64);
    let plan = Sample::unweighted(run_indices);
    let geometry = model.geometry_input(store)?;
    let options = LoaderOptions { batch_size, prefetch, dropout: None, reference_dropout: None, tokens, geometry };
    for_each_batch(store, &plan, &options, model.device(), |batch| {
        let (out, h) = model.forward_with_representations(&batch, false);
        loss_sum += objective.entry_losses(&out, &batch).sum(Kind::Double).double_value(&[]);
        entries += batch.mask.sum(Kind::Double).double_value(&[]);
        if let Some(side) = side.as_mut() {
            side.losses.extend(Vec::<f32>::try_from(objective.losses(&out, &batch).0.to_device(Device::Cpu))?);
            side.embeddings.extend(Vec::<f32>::try_from(h.to_device(Device::Cpu).flatten(0, -1))?);
        }
        outputs.extend(Vec::<f32>::try_from(out.to_device(Device::Cpu).flatten(0, -1))?);
        Ok(())
    })?;
    objective.to_original_units(&mut outputs);
    if let Some(order) = &order {
        outputs = unpermute_rows(&outputs, order, store.num_tasks);
        if let Some(side) = side.as_mut() {
            side.losses = unpermute_rows(&side.losses, order, 1);
            side.embeddings = unpermute_rows(&side.embeddings, order, dim);
        }
    }
    Ok((Predictions { outputs, loss_sum, labelled: entries }, side))
}

/// Rows of `width` values computed in `order` (row k belongs to `order[k]`), back in original order.
fn unpermute_rows(rows: &[f32], order: &[usize], width: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows.len()];
    for (k, &i) in order.iter().enumerate() {
        out[i * width..(i + 1) * width].copy_from_slice(&rows[k * width..(k + 1) * width]);
    }
    out
}

/// Stream of the length buckets' batch order (apart from the dropout streams).
const LENGTH_BUCKET_STREAM: u64 = 0x6C65_6E67_7468;

/// `plan` regrouped for a token model: every window of `window` batches is sorted by `lengths`
/// (parallel to `plan`; stable, so ties keep the shuffled order) and cut into batches, and the
/// batches of the epoch are shuffled with `seed`. The same samples, and as many batches as before
/// (only the last window may end in a short batch, which stays last).
pub fn length_bucketed(plan: &[Sample], lengths: &[usize], batch_size: usize, window: usize, seed: u64) -> Vec<Sample> {
    let mut batches: Vec<Vec<Sample>> = Vec::with_capacity(plan.len().div_ceil(batch_size));
    let mut order: Vec<usize> = (0..plan.len()).collect();
    for chunk in order.chunks_mut(batch_size * window.max(1)) {
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size).map(|b| b.iter().map(|&i| plan[i]).collect()));
    }
    let short_last = batches.last().is_some_and(|b| b.len() < batch_size);
    let full = batches.len() - short_last as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    batches[..full].shuffle(&mut rng);
    batches.concat()
}

/// `plan` in a random order that depends only on `(seed, epoch)`.
pub fn shuffled(plan: &[Sample], seed: u64, epoch: u32) -> Vec<Sample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut out = plan.to_vec();
    out.shuffle(&mut rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_depends_on_seed_and_epoch_only() {
        let plan = Sample::unweighted(&(0..50).collect::<Vec<_>>());
        assert_eq!(shuffled(&plan, 1, 3), shuffled(&plan, 1, 3));
        assert_ne!(shuffled(&plan, 1, 3), shuffled(&plan, 1, 4));
        assert_ne!(shuffled(&plan, 2, 3), shuffled(&plan, 1, 3));
        let mut sorted: Vec<u32> = shuffled(&plan, 1, 3).iter().map(|s| s.index).collect();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn length_buckets_regroup_without_losing_samples() {
        // 103 samples in a shuffled order, lengths unrelated to the index.
        let plan = shuffled(&Sample::unweighted(&(0..103).collect::<Vec<_>>()), 7, 0);
        let lengths: Vec<usize> = plan.iter().map(|s| (s.index as usize * 37) % 61).collect();
        let length_of = |index: u32| (index as usize * 37) % 61;
        let (batch, window) = (10, 4);
        let out = length_bucketed(&plan, &lengths, batch, window, 5);
        assert_eq!(out, length_bucketed(&plan, &lengths, batch, window, 5), "deterministic given the seed");
        assert_ne!(out, length_bucketed(&plan, &lengths, batch, window, 6), "the batch order follows the seed");
        let mut indices: Vec<u32> = out.iter().map(|s| s.index).collect();
        indices.sort();
        assert_eq!(indices, (0..103).collect::<Vec<_>>(), "every sample exactly once");
        // The short batch (3 samples) stays last; every full batch is sorted and comes from one window.
        let batches: Vec<&[Sample]> = out.chunks(batch).collect();
        assert_eq!(batches.len(), 11);
        assert_eq!(batches[10].len(), 3);
        let window_of: std::collections::HashMap<u32, usize> = plan.iter().enumerate().map(|(k, s)| (s.index, k / (batch * window))).collect();
        for b in &batches {
            assert!(b.windows(2).all(|w| length_of(w[0].index) <= length_of(w[1].index)), "a batch is sorted by length");
            assert!(b.iter().all(|s| window_of[&s.index] == window_of[&b[0].index]), "a batch stays in its window");
        }
        // A batch spans less of the length range than a random batch of the same plan would.
        let spread = |b: &[Sample]| b.iter().map(|s| length_of(s.index)).max().unwrap() - b.iter().map(|s| length_of(s.index)).min().unwrap();
        let bucketed: usize = batches[..10].iter().map(|b| spread(b)).sum();
        let random: usize = plan.chunks(batch).take(10).map(spread).sum();
        assert!(bucketed * 2 < random, "bucketed spread {bucketed} vs random {random}");
        // Window 1 keeps the plan's batches (each sorted inside), only reordered.
        let mut one: Vec<Vec<u32>> = length_bucketed(&plan, &lengths, batch, 1, 5).chunks(batch).map(|b| b.iter().map(|s| s.index).collect()).collect();
        let mut original: Vec<Vec<u32>> = plan.chunks(batch).map(|b| { let mut v: Vec<u32> = b.iter().map(|s| s.index).collect(); v.sort_by_key(|&i| length_of(i)); v }).collect();
        one.sort();
        original.sort();
        assert_eq!(one, original);
    }
}
