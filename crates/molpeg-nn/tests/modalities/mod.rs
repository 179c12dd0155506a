//! The token models (fingerprint, SMILES) behind the model interface, on 300 real HIV molecules
//! featurized by the real featurize stage (RDKit): forward and a training step, MolPeg scoring with the
//! proxy embeddings, a dynamic MolPeg run, determinism, checkpoint load-back with the configuration, the
//! shared/independent reference masks, and PyTorch's `nn.TransformerEncoderLayer` as the independent
//! implementation of the encoder.

use std::path::{Path, PathBuf};
use std::process::Command;

use molpeg_nn::batch::{collate_with, TokenInput};
use molpeg_nn::checkpoint;
use molpeg_nn::data::{Dataset, Sample};
use molpeg_nn::device::DeviceChoice;
use molpeg_nn::dual_pace::{DualPace, ReferenceDropout, ReferenceInit, ReferenceOptions};
use molpeg_nn::finetune::{self, FinetuneConfig, FinetuneSettings, SequenceSettings};
use molpeg_nn::model::{Model, ModelKind};
use molpeg_nn::score::{self, ScoreOptions};
use molpeg_nn::tch::Device;
use molpeg_nn::train::{predict_with, Objective, TrainConfig, Trainer};

use super::{featurize_hiv_fixture, one_thread};

/// The token models draw dropout (and every model its initial weights) from libtorch's one global
/// generator, which the tests of this binary share across threads: the tests that check exact
/// reproducibility take this lock so no other test draws in between.
static GLOBAL_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// tests/fixtures/hiv-300.csv featurized with 1024-bit radius-2 fingerprints (the scaling paper's
/// HIV fingerprint) into `dir`, plus a split (mol_id % 5: 3 valid, 4 test; each has positives). None when
/// molpeg-featurize is not built.
fn featurized(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let graphs = featurize_hiv_fixture(dir, "threads = 1\nfingerprints = true\nfingerprint_radius = 2\nfingerprint_bits = 1024\n")?;
    let (store, _, _) = molpeg_nn::data::read_graphs(&graphs).unwrap();
    let rows: Vec<(u32, &str)> = store.mol_ids.iter().map(|&m| (m, match m % 5 { 3 => "valid", 4 => "test", _ => "train" })).collect();
    let split = dir.join("split.parquet");
    molpeg_nn::synthetic::write_split(&split, &rows).unwrap();
    Some((graphs, split))
}

fn settings(kind: ModelKind) -> FinetuneSettings {
    FinetuneSettings {
        model: kind,
        sequence: SequenceSettings { width: 16, heads: 4, ffn: 32, ..SequenceSettings::default() },
        epochs: 3,
        batch_size: 32,
        eval_batch_size: 64,
        device: DeviceChoice::Cpu,
        threads: 1,
        ..Default::default()
    }
}

fn stage(graphs: &Path, split: &Path, out: PathBuf, settings: FinetuneSettings) -> FinetuneConfig {
    FinetuneConfig { settings, graphs: graphs.to_path_buf(), split: split.to_path_buf(), out_dir: out, force: false, verbose: false }
}

/// Everything a training stage does with a model, for one token model.
fn exercise(kind: ModelKind) {
    let _lock = exclusive();
    one_thread();
    let dir = tempfile::tempdir().unwrap();
    let Some((graphs, split)) = featurized(dir.path()) else { return };
    let data = Dataset::load_for(&graphs, &split, kind).unwrap();
    let s = settings(kind);
    let config = s.model_config_for(&data).unwrap();
    assert_eq!(config.kind, kind);

    // Forward: per-task outputs and a 16-dim molecule embedding, padded batches of varying length.
    molpeg_nn::tch::manual_seed(0);
    let model = Model::new(&config, Device::Cpu).unwrap();
    let input = model.token_input(&data.store).unwrap().expect("a token model needs tokens");
    let plan = Sample::unweighted(&data.train[..40]);
    let batch = collate_with(&data.store, &plan, Some(&input)).to_device(Device::Cpu);
    let tokens = batch.tokens.as_ref().unwrap();
    assert_eq!(tokens.size()[0], 40);
    let (out, emb) = model.forward_with_representations(&batch, false);
    assert_eq!(out.size(), [40, 1]);
    assert_eq!(emb.size(), [40, 16]);
    // A molecule's output does not depend on its batch-mates or the padding length.
    let alone = collate_with(&data.store, &plan[..1], Some(&input)).to_device(Device::Cpu);
    let single = model.forward(&alone, false);
    assert!(single.allclose(&out.narrow(0, 0, 1), 1e-5, 1e-5, false), "{single} vs {}", out.get(0));
    match kind {
        ModelKind::Fingerprint => {
            // ids are on-bit + 1, so every id is in 1..=1024 and the first molecule has as many as its set bits
            let fp = data.store.fingerprints.as_ref().unwrap();
            let n = fp.table.row(plan[0].index as usize).len() as i64;
            assert!(n > 0);
            assert_eq!(tokens.get(0).ne(0).sum(molpeg_nn::tch::Kind::Int64).int64_value(&[]), n);
            assert!(tokens.max().int64_value(&[]) <= 1024);
        }
        _ => {
            let vocab = config.sequence.as_ref().unwrap().vocabulary.as_ref().unwrap();
            // The vocabulary's ids decode the first molecule back to its canonical SMILES.
            let ids = Vec::<i64>::try_from(tokens.get(0)).unwrap();
            let smiles = data.store.smiles.as_ref().unwrap();
            let expected: String = smiles.table.row(plan[0].index as usize).iter().map(|&t| smiles.names[t as usize].as_str()).collect();
            assert_eq!(vocab.decode(&ids), expected);
        }
    }

    // One training step moves the weights and gives finite losses.
    let before = model.snapshot();
    let mut trainer = Trainer::new(model, Objective::binary(1), TrainConfig { batch_size: 40, eval_batch_size: 64, lr: 1e-2, weight_decay: 0.0, prefetch: false, seed: 0, length_buckets: 16 }).unwrap();
    let stats = trainer.train_epoch(&data.store, &plan, |_| Ok(())).unwrap();
    assert!(stats.mean_loss.is_finite());
    let after = trainer.model.snapshot();
    let moved = before.iter().zip(&after).filter(|((_, a), (_, b))| !a.allclose(b, 0.0, 0.0, false)).count();
    assert!(moved >= before.len() - 1, "{moved} of {} variables changed", before.len());

    // The fine-tuning stage, twice with the same seed: identical results (determinism), a summary that
    // names the model and its token coverage, and a checkpoint that loads back with its configuration
    // and reproduces the stage's test predictions.
    let a = finetune::run(&stage(&graphs, &split, dir.path().join("ft-a"), s.clone())).unwrap();
    let b = finetune::run(&stage(&graphs, &split, dir.path().join("ft-b"), s.clone())).unwrap();
    assert_eq!(a.best_valid, b.best_valid);
    assert_eq!(a.test_at_best, b.test_at_best);
    assert_eq!(a.model, kind);
    let t = a.tokens.as_ref().expect("token coverage in the summary");
    assert!(t.valid_test.tokens > 0 && t.train.tokens > 0);
    if kind == ModelKind::Smiles {
        assert_eq!(t.vocabulary, config.sequence.as_ref().unwrap().vocabulary.as_ref().unwrap().len());
    } else {
        assert_eq!((t.vocabulary, t.valid_test.unknown), (1025, 0));
    }
    let (loaded, _) = checkpoint::load_model(&dir.path().join("ft-a/model.safetensors"), Device::Cpu).unwrap();
    assert_eq!(loaded.config, config, "the checkpoint carries the model's configuration, vocabulary included");
    let outputs = predict_with(&loaded, &Objective::binary(1), &data.store, &data.test, 64, false).unwrap().outputs;
    let preds = molpeg_core::parquet_io::ParquetSource::open(dir.path().join("ft-a/predictions.parquet"), &molpeg_core::schema::eval_predictions::schema()).unwrap();
    let batches = preds.collect_columns(&[molpeg_core::schema::eval_predictions::SPLIT, molpeg_core::schema::eval_predictions::PREDICTION]).unwrap();
    use arrow::array::AsArray;
    let stage_test: Vec<f32> = batches
        .iter()
        .flat_map(|b| {
            let split = b.column(0).as_string::<i32>().clone();
            let p = b.column(1).as_primitive::<arrow::datatypes::Float32Type>().clone();
            (0..b.num_rows()).filter(move |&i| split.value(i) == "test").map(move |i| p.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(stage_test.len(), outputs.len());
    for (p, o) in stage_test.iter().zip(&outputs) {
        assert!((p - finetune::output_to_prediction(data.task_kind, *o)).abs() < 1e-6, "{p} vs σ({o})");
    }
    // Evaluation runs shortest first and puts outputs back: a molecule's output is the same whatever
    // order and batch size it is asked in.
    let reversed: Vec<u32> = data.test.iter().rev().copied().collect();
    let mut back = predict_with(&loaded, &Objective::binary(1), &data.store, &reversed, 7, false).unwrap().outputs;
    back.reverse();
    for (a, b) in outputs.iter().zip(&back) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    // MolPeg scoring with the proxy signals: scores from the dual-pace EMA over this model's variables,
    // and embeddings of the model's width for herding / k-center / k-means.
    let score_settings = FinetuneSettings { epochs: 2, ..s.clone() };
    let summary = score::run_with(&stage(&graphs, &split, dir.path().join("score"), score_settings), &ScoreOptions { signals: true }).unwrap();
    assert_eq!(summary.sightings, 2 * data.train.len());
    assert!(summary.mean_score > 0.0 && summary.mean_score.is_finite(), "{summary:?}");
    let emb = molpeg_core::parquet_io::ParquetSource::open(dir.path().join("score").join("embeddings.parquet"), &molpeg_core::schema::embeddings::schema(16)).unwrap();
    assert_eq!(emb.num_rows, data.train.len());

    // Dynamic MolPeg at keep 0.5 trains on half the split per epoch.
    let dynamic = FinetuneSettings { dynamic: Some("molpeg".into()), keep: Some(0.5), ..s.clone() };
    let d = finetune::run(&stage(&graphs, &split, dir.path().join("dyn"), dynamic)).unwrap();
    let per_epoch = (data.train.len() as f64 * 0.5).floor() as u64;
    assert!(d.samples_seen >= 3 * per_epoch && d.samples_seen <= 3 * (per_epoch + 1), "{} samples seen", d.samples_seen);
    assert!(d.best_valid.get("roc_auc").copied().flatten().is_some());
}

#[test]
fn fingerprint_model_through_every_stage() {
    exercise(ModelKind::Fingerprint);
}

#[test]
fn smiles_model_through_every_stage() {
    exercise(ModelKind::Smiles);
}

/// MolPeg's first-batch check for a token model: ξ started as a copy of θ gives non-zero scores with its
/// own masks (dropout 0.5) and exactly 0 with dropout 0; shared masks are refused for token models
/// with dropout (accepted without: the same as independent).
#[test]
fn token_model_reference_masks_shared_and_independent() {
    let _lock = exclusive();
    one_thread();
    let dir = tempfile::tempdir().unwrap();
    let Some((graphs, split)) = featurized(dir.path()) else { return };
    let data = Dataset::load_for(&graphs, &split, ModelKind::Smiles).unwrap();
    for (dropout, masks, zero) in [(0.5, ReferenceDropout::Independent, false), (0.0, ReferenceDropout::Independent, true)] {
        let s = FinetuneSettings { sequence: SequenceSettings { dropout, ..settings(ModelKind::Smiles).sequence }, ..settings(ModelKind::Smiles) };
        molpeg_nn::tch::manual_seed(1);
        let model = Model::new(&s.model_config_for(&data).unwrap(), Device::Cpu).unwrap();
        let mut trainer = Trainer::new(model, Objective::binary(1), TrainConfig { batch_size: 64, eval_batch_size: 64, lr: 1e-3, weight_decay: 0.0, prefetch: false, seed: 3, length_buckets: 16 }).unwrap();
        let options = ReferenceOptions { dropout: masks, init: ReferenceInit::Online, ..ReferenceOptions::official(0.5) };
        let shared = ReferenceOptions { dropout: ReferenceDropout::Shared, ..options };
        // Refused where the model has dropout; without dropout shared and independent masks are the
        // same thing, so shared is accepted.
        match DualPace::new(&trainer.model, shared, 3) {
            Err(e) => assert!(dropout > 0.0 && e.to_string().contains("GIN only"), "{e}"),
            Ok(_) => assert_eq!(dropout, 0.0, "shared masks are refused for a token model with dropout"),
        }
        trainer.reference = Some(DualPace::new(&trainer.model, options, 3).unwrap());
        let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
        trainer
            .train_epoch(&data.store, &Sample::unweighted(&data.train[..64]), |o| {
                first.get_or_insert((o.losses.to_vec(), o.reference_losses.unwrap().to_vec()));
                Ok(())
            })
            .unwrap();
        let (online, reference) = first.unwrap();
        let max_gap = online.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        if zero {
            assert_eq!(max_gap, 0.0, "dropout {dropout}, {masks:?}");
        } else {
            assert!(max_gap > 1e-4, "dropout {dropout}, {masks:?}: scores {max_gap}");
        }
    }
}

/// The encoder against PyTorch: a trained molpeg SMILES model and fingerprint model, read by
/// tests/support/sequence_ref.py into `nn.TransformerEncoderLayer(batch_first=True)` (+ embedding,
/// positions, masked mean, head) from the checkpoint; eval outputs on 64 molecules agree to 1e-5.
/// Needs a Python with torch ($MOLPEG_PYTHON); skipped with a notice otherwise.
#[test]
fn token_models_match_pytorch_transformer() {
    one_thread();
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let Some((graphs, split)) = featurized(dir.path()) else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sequence_ref.py");
    for kind in [ModelKind::Smiles, ModelKind::Fingerprint] {
        let data = Dataset::load_for(&graphs, &split, kind).unwrap();
        let s = FinetuneSettings { sequence: SequenceSettings { layers: 2, ..settings(kind).sequence }, epochs: 1, ..settings(kind) };
        let out = dir.path().join(format!("ft-{}", kind.as_str()));
        finetune::run(&stage(&graphs, &split, out.clone(), s)).unwrap();
        let (model, _) = checkpoint::load_model(&out.join("model.safetensors"), Device::Cpu).unwrap();
        let input: TokenInput = model.token_input(&data.store).unwrap().unwrap();
        let plan = Sample::unweighted(&data.train[..64]);
        let batch = collate_with(&data.store, &plan, Some(&input)).to_device(Device::Cpu);
        let ours = Vec::<f32>::try_from(model.forward(&batch, false).flatten(0, -1)).unwrap();
        let tokens: Vec<Vec<i64>> = (0..64).map(|i| Vec::<i64>::try_from(batch.tokens.as_ref().unwrap().get(i)).unwrap()).collect();
        std::fs::write(out.join("tokens.json"), serde_json::to_string(&tokens).unwrap()).unwrap();
        let result = Command::new(&python).arg(&script).arg(out.join("model.safetensors")).arg(out.join("tokens.json")).arg(out.join("torch.json")).output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        if !result.status.success() && stderr.contains("No module named") {
            eprintln!("skipping the PyTorch cross-check: {}", stderr.lines().last().unwrap_or(""));
            return;
        }
        assert!(result.status.success(), "sequence_ref.py: {stderr}");
        let theirs: Vec<f32> = serde_json::from_str(&std::fs::read_to_string(out.join("torch.json")).unwrap()).unwrap();
        assert_eq!(theirs.len(), ours.len());
        let gap = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(gap < 1e-5, "{kind:?}: molpeg and PyTorch differ by {gap}");
    }
}
