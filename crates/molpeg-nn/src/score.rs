//! The `molpeg-score` stage: trains the online model θ on the training split with the EMA reference ξ
//! alongside ([`crate::dual_pace`]) and records every sample's MolPeg score each time it is seen.
//!
//! Outputs in `runs/<pipeline>/score/`:
//! - `scores.parquet`: long form, `mol_id, epoch, loss_online, loss_ref, score`;
//! - `sample_scores.parquet`: per sample, `mol_id, score_last, score_mean, delta_last, times_seen`;
//! - `scores_hist.png`: histogram of `score_last`;
//! - with [`ScoreOptions::signals`] (`--signals`, `[score] signals = true`), the proxy signals of the
//!   baseline rules ([`molpeg_prune::signals`]): after every epoch an eval-mode pass over the training
//!   split (no gradient, it does not change the training) records each sample's loss, EL2N, GraNd and
//!   correctness in `outputs.parquet`; after the last epoch its labels, probabilities and graph
//!   embedding go to `embeddings.parquet`;
//! - `summary.json` and the stage manifest.
//!
//! Model and optimizer settings are the pipeline's `[finetune]` section overlaid with `[score]` (so the
//! scorer trains the model that will be fine-tuned); `[score]` typically sets fewer epochs. The proxy
//! run of the baselines' papers is 20 epochs from scratch: `--epochs 20 --signals --tag proxy`
//! writes it to `score-proxy/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, UInt32Array};
use arrow::record_batch::RecordBatch;
use molpeg_core::manifest::StageRun;
use molpeg_core::parquet_io::write_batches;
use molpeg_core::schema::{sample_scores, scores};
use serde::{Deserialize, Serialize};

use molpeg_prune::signals::{self, EpochSignals, OutputsWriter};

use crate::checkpoint::{Checkpoint, Scope};
use crate::data::{Dataset, GraphStore, Sample, TaskKind};
use crate::device::describe;
use crate::dual_pace::{score, DualPace};
use crate::finetune::{FinetuneConfig, FinetuneSettings};
use crate::model::Model;
use crate::train::{shuffled, Objective, Trainer};
use crate::{Error, Result};

pub const STAGE: &str = "score";
pub const SCORES_FILE: &str = "scores.parquet";
pub const SAMPLE_SCORES_FILE: &str = "sample_scores.parquet";
pub const HISTOGRAM_FILE: &str = "scores_hist.png";
pub const SUMMARY_FILE: &str = "summary.json";

/// Settings of `[score]` that the fine-tuning stage does not have (flags override them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreOptions {
    /// Also record the proxy signals of the baseline rules (`outputs.parquet`, `embeddings.parquet`).
    pub signals: bool,
}

impl ScoreOptions {
    /// The `[score]` keys that belong here rather than to the layered `[finetune]` settings.
    pub const KEYS: &'static [&'static str] = &["signals"];
}

/// The stage directory name: `score`, or `score-<tag>` with a tag (e.g. a separate proxy run).
pub fn stage_name(settings: &FinetuneSettings) -> String {
    match &settings.tag {
        Some(tag) => format!("{STAGE}-{tag}"),
        None => STAGE.to_string(),
    }
}

/// One sighting of a training sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    pub mol_id: u32,
    pub epoch: u32,
    pub loss_online: f32,
    pub loss_ref: f32,
}

/// Per-sample aggregate of the sightings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleScore {
    pub mol_id: u32,
    pub score_last: f32,
    pub score_mean: f32,
    pub delta_last: f32,
    pub times_seen: u32,
}

/// Aggregates sightings per `mol_id` (sorted by `mol_id`); "last" is the latest in sighting order.
pub fn aggregate(sightings: &[Sighting]) -> Vec<SampleScore> {
    let mut by_id: BTreeMap<u32, (f32, f64, f32, u32)> = BTreeMap::new();
    for s in sightings {
        let entry = by_id.entry(s.mol_id).or_insert((0.0, 0.0, 0.0, 0));
        let value = score(s.loss_online, s.loss_ref);
        *entry = (value, entry.1 + value as f64, s.loss_online - s.loss_ref, entry.3 + 1);
    }
    by_id
        .into_iter()
        .map(|(mol_id, (last, sum, delta, n))| SampleScore { mol_id, score_last: last, score_mean: (sum / n as f64) as f32, delta_last: delta, times_seen: n })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub stage_dir: PathBuf,
    pub skipped: bool,
    pub epochs: u32,
    pub beta: f64,
    pub train_samples: usize,
    pub sightings: usize,
    pub mean_score: f64,
    pub median_score: f64,
    pub seconds: f64,
    pub device: String,
    /// Whether the proxy signals were recorded.
    #[serde(default)]
    pub signals: bool,
}

/// Records the proxy signals after every epoch (see the module docs).
struct SignalRecorder {
    /// Training samples (store indices) in `mol_id` order, their ids and N×T labels.
    indices: Vec<u32>,
    mol_ids: Vec<u32>,
    labels: Vec<f32>,
    task_names: Vec<String>,
    task_kind: TaskKind,
    writer: OutputsWriter,
    embeddings_path: PathBuf,
}

impl SignalRecorder {
    fn new(data: &Dataset, dir: &Path) -> Result<Self> {
        let mut indices = data.train.clone();
        indices.sort_unstable_by_key(|&g| data.store.mol_ids[g as usize]);
        let mol_ids = indices.iter().map(|&g| data.store.mol_ids[g as usize]).collect();
        let labels = indices.iter().flat_map(|&g| data.store.labels(g as usize).iter().copied()).collect();
        let writer = OutputsWriter::create(&dir.join(signals::OUTPUTS_FILE), &data.task_names, data.task_kind.as_str())?;
        Ok(SignalRecorder { indices, mol_ids, labels, task_names: data.task_names.clone(), task_kind: data.task_kind, writer, embeddings_path: dir.join(signals::EMBEDDINGS_FILE) })
    }

    /// One eval-mode pass of the online model after `epoch`; the last one also writes the embeddings.
    fn record(&mut self, trainer: &Trainer, store: &GraphStore, epoch: u32, last: bool) -> Result<()> {
        let (predictions, rep) = trainer.predict_with_representations(store, &self.indices)?;
        let probs = (self.task_kind == TaskKind::Binary).then(|| predictions.outputs.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect::<Vec<f32>>());
        let epoch_signals = EpochSignals {
            mol_ids: &self.mol_ids,
            tasks: self.task_names.len(),
            labels: &self.labels,
            losses: &rep.losses,
            probs: probs.as_deref(),
            embeddings: &rep.embeddings,
        };
        self.writer.write_epoch(epoch, &epoch_signals)?;
        if last {
            signals::write_embeddings(&self.embeddings_path, epoch, &epoch_signals, &self.task_names, self.task_kind.as_str())?;
        }
        Ok(())
    }

    /// Closes `outputs.parquet`; returns both files.
    fn finish(self) -> Result<[PathBuf; 2]> {
        Ok([self.writer.finish()?, self.embeddings_path])
    }
}

/// Runs the stage without the proxy signals; see [`run_with`].
pub fn run(config: &FinetuneConfig) -> Result<ScoreSummary> {
    run_with(config, &ScoreOptions::default())
}

/// Runs the stage. `config.settings` holds the resolved `[finetune]` + `[score]` settings.
pub fn run_with(config: &FinetuneConfig, options: &ScoreOptions) -> Result<ScoreSummary> {
    let s = &config.settings;
    s.validate()?;
    for (path, what) in [(&config.graphs, "graphs.parquet (run the featurize stage first)"), (&config.split, "split.parquet (run the split stage first)")] {
        if !molpeg_core::dataset::exists(path) {
            return Err(Error::data(path, format!("{what} not found")));
        }
    }
    let mut inputs: Vec<&Path> = vec![&config.graphs, &config.split];
    if let Some(p) = &s.pretrained {
        inputs.push(p);
    }
    let model_inputs = crate::data::model_input_files(&config.graphs, s.model)?;
    inputs.extend(model_inputs.iter().map(PathBuf::as_path));
    if s.threads > 0 {
        tch::set_num_threads(s.threads as i32);
    }
    let device = s.device.resolve()?;
    let mut params = serde_json::json!({ "settings": s, "device": if device.is_cuda() { "cuda" } else { "cpu" } });
    // Only when on, so the cache key of a run without signals is unchanged.
    if options.signals {
        params["signals"] = true.into();
    }
    let stage = StageRun::new(STAGE, &config.out_dir, &params, &inputs)?;
    if !config.force {
        if let Some(cached) = stage.cached() {
            if let Ok(mut summary) = serde_json::from_value::<ScoreSummary>(cached.summary) {
                summary.skipped = true;
                return Ok(summary);
            }
        }
    }
    stage.begin()?;
    let started = std::time::Instant::now();

    let data = Dataset::load_for(&config.graphs, &config.split, s.model)?;
    if data.train.is_empty() {
        return Err(Error::data(&config.split, "the train split is empty; nothing to score"));
    }
    tch::manual_seed(s.seed as i64);
    let model = Model::new(&s.model_config_for(&data)?, device)?;
    if let Some(p) = &s.pretrained {
        Checkpoint::read(p)?.load_into(&model, Scope::Encoder)?;
    }
    let objective = Objective::for_task(data.task_kind, &data.store, &data.train).with_sample_loss(s.sample_loss);
    let mut trainer = Trainer::new(model, objective, s.train_config())?;
    trainer.reference = Some(DualPace::new(&trainer.model, s.reference_options(), s.seed)?);

    let plan = Sample::unweighted(&data.train);
    let store = data.store.clone();
    let bar = if config.verbose { molpeg_core::progress::bar(s.epochs as u64 * plan.len() as u64, "graphs") } else { indicatif::ProgressBar::hidden() };
    bar.set_message("score");
    if !options.signals {
        // Signal files of an earlier run would no longer match this run's model.
        for file in [signals::OUTPUTS_FILE, signals::EMBEDDINGS_FILE] {
            let path = config.out_dir.join(file);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| molpeg_core::Error::io(&path, e))?;
            }
        }
    }
    let mut recorder = options.signals.then(|| SignalRecorder::new(&data, &config.out_dir)).transpose()?;
    let mut sightings = Vec::with_capacity(plan.len() * s.epochs as usize);
    for epoch in 1..=s.epochs {
        tch::manual_seed((crate::batch::mix_seed(s.seed, epoch as u64) >> 1) as i64);
        let order = shuffled(&plan, s.seed, epoch);
        trainer.train_epoch(&store, &order, |outcome| {
            let reference = outcome.reference_losses.ok_or_else(|| Error::Internal("the scorer's trainer has no reference model".into()))?;
            for ((&index, &online), &reference) in outcome.batch.samples.iter().zip(outcome.losses).zip(reference) {
                sightings.push(Sighting { mol_id: store.mol_ids[index as usize], epoch, loss_online: online, loss_ref: reference });
            }
            bar.inc(outcome.losses.len() as u64);
            Ok(())
        })?;
        if let Some(recorder) = recorder.as_mut() {
            recorder.record(&trainer, &store, epoch, epoch == s.epochs)?;
        }
    }
    bar.finish_and_clear();
    let signal_paths = recorder.map(SignalRecorder::finish).transpose()?;

    let per_sample = aggregate(&sightings);
    let scores_path = write_scores(&config.out_dir.join(SCORES_FILE), &sightings)?;
    let samples_path = write_sample_scores(&config.out_dir.join(SAMPLE_SCORES_FILE), &per_sample)?;
    let last: Vec<f32> = per_sample.iter().map(|p| p.score_last).collect();
    let hist_path = config.out_dir.join(HISTOGRAM_FILE);
    molpeg_plot::histogram(&hist_path, &last, 60, "MolPeg scores |loss_online − loss_ref| (last sighting)", "score")?;
    let mut sorted = last.clone();
    sorted.sort_by(f32::total_cmp);
    let summary = ScoreSummary {
        stage_dir: config.out_dir.clone(),
        skipped: false,
        epochs: s.epochs,
        beta: s.ema_beta,
        train_samples: plan.len(),
        sightings: sightings.len(),
        mean_score: last.iter().map(|&v| v as f64).sum::<f64>() / last.len().max(1) as f64,
        median_score: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0) as f64,
        seconds: started.elapsed().as_secs_f64(),
        device: describe(device),
        signals: options.signals,
    };
    let summary_path = config.out_dir.join(SUMMARY_FILE);
    molpeg_core::atomic::write_atomic(&summary_path, serde_json::to_string_pretty(&summary).expect("summary serializes").as_bytes())?;
    let mut outputs: Vec<&Path> = vec![&scores_path, &samples_path, &hist_path, &summary_path];
    outputs.extend(signal_paths.iter().flatten().map(PathBuf::as_path));
    stage.finish(&outputs, &summary)?;
    Ok(summary)
}

pub fn write_scores(path: &Path, sightings: &[Sighting]) -> Result<PathBuf> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(sightings.iter().map(|s| s.mol_id))),
        Arc::new(UInt32Array::from_iter_values(sightings.iter().map(|s| s.epoch))),
        Arc::new(Float32Array::from_iter_values(sightings.iter().map(|s| s.loss_online))),
        Arc::new(Float32Array::from_iter_values(sightings.iter().map(|s| s.loss_ref))),
        Arc::new(Float32Array::from_iter_values(sightings.iter().map(|s| score(s.loss_online, s.loss_ref)))),
    ];
    let batch = RecordBatch::try_new(scores::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, scores::schema(), scores::KIND, &BTreeMap::new(), &[batch])?)
}

pub fn write_sample_scores(path: &Path, per_sample: &[SampleScore]) -> Result<PathBuf> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(per_sample.iter().map(|s| s.mol_id))),
        Arc::new(Float32Array::from_iter_values(per_sample.iter().map(|s| s.score_last))),
        Arc::new(Float32Array::from_iter_values(per_sample.iter().map(|s| s.score_mean))),
        Arc::new(Float32Array::from_iter_values(per_sample.iter().map(|s| s.delta_last))),
        Arc::new(UInt32Array::from_iter_values(per_sample.iter().map(|s| s.times_seen))),
    ];
    let batch = RecordBatch::try_new(sample_scores::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, sample_scores::schema(), sample_scores::KIND, &BTreeMap::new(), &[batch])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_keeps_last_mean_signed_delta_and_count() {
        let s = |mol_id, epoch, on, re| Sighting { mol_id, epoch, loss_online: on, loss_ref: re };
        let agg = aggregate(&[s(5, 1, 1.0, 0.5), s(2, 1, 0.2, 0.4), s(5, 2, 0.25, 1.0)]);
        assert_eq!(agg.len(), 2);
        assert_eq!((agg[0].mol_id, agg[0].times_seen), (2, 1));
        assert!((agg[0].score_last - 0.2).abs() < 1e-7 && (agg[0].delta_last + 0.2).abs() < 1e-7);
        assert_eq!(agg[1].times_seen, 2);
        assert_eq!(agg[1].score_last, 0.75);
        assert_eq!(agg[1].delta_last, -0.75);
        assert!((agg[1].score_mean - 0.625).abs() < 1e-7);
    }
}
