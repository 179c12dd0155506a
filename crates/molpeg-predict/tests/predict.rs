//! Integration tests of molpeg-predict (the one test binary of this crate; it links RDKit and
//! libtorch). Each test builds a tiny pipeline in a fresh temp dir from a fixture of real molecules
//! (tests/fixtures): featurize (RDKit) → split → fine-tune (libtorch), then runs the real
//! `molpeg-predict` binary and reads every output back with pyarrow (`$MOLPEG_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use molpeg_core::manifest::Outcome;
use molpeg_core::pipeline::Pipeline;
use molpeg_nn::device::DeviceChoice;
use molpeg_nn::finetune::{self, FinetuneConfig, FinetuneSettings, FinetuneSummary};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name).canonicalize().unwrap()
}

fn python() -> String {
    std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a Python snippet with arguments and parses its stdout as JSON.
fn py(script: &str, args: &[&Path]) -> Value {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("python runs");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A pipeline over a fixture CSV, featurized and split in `dir` (scaffold split, 80/10/10).
fn project(dir: &Path, name: &str, csv: &str, labels: &str) -> Pipeline {
    let text = format!(
        "name = \"{name}\"\n\n[dataset]\nname = \"{name}\"\nfile = \"{csv}\"\npath = {path:?}\nsmiles_column = \"smiles\"\nlabel_columns = {labels}\nignore_columns = [\"num\", \"name\", \"mol_id\"]\ntask_type = \"binary\"\nmissing = [\"\"]\n\n[split]\nmethod = \"random\"\nseed = 1\n",
        path = fixture(csv).display().to_string()
    );
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(&toml, text).unwrap();
    let pipeline = Pipeline::load(&toml).unwrap();
    let runs = dir.join("runs");
    let options = molpeg_data::fetch::FetchOptions { data_dir: dir.join("data"), mirror: None, accept_sha256: vec![], offline: true };
    let config = molpeg_chem::featurize::FeaturizeConfig { threads: 1, ..Default::default() };
    match molpeg_chem::featurize::run(&pipeline, &runs, &config, &options, false, None).unwrap() {
        Outcome::Ran(_) | Outcome::UpToDate(_) => {}
    }
    let split: molpeg_data::split::SplitConfig = pipeline.section("split").unwrap();
    molpeg_data::split::run(&pipeline, &runs, &split, false).unwrap();
    pipeline
}

fn finetune(dir: &Path, pipeline: &Pipeline, epochs: u32) -> FinetuneSummary {
    molpeg_nn::tch::set_num_threads(1);
    let settings = FinetuneSettings { epochs, batch_size: 32, eval_batch_size: 1024, layers: 2, width: 32, dropout: 0.1, device: DeviceChoice::Cpu, threads: 1, ..Default::default() };
    let mut config = FinetuneConfig::for_pipeline(pipeline, &dir.join("runs"), settings);
    config.verbose = false;
    finetune::run(&config).unwrap()
}

fn predict(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_molpeg-predict")).current_dir(dir).args(args).env("OMP_NUM_THREADS", "1").env("RAYON_NUM_THREADS", "1").output().unwrap()
}

fn predict_ok(dir: &Path, args: &[&str]) -> String {
    let out = predict(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "molpeg-predict {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The "done when" of issue 15: predicting on the test split's molecules, given as a user's CSV with
/// its own SMILES column name, reproduces the fine-tune stage's test predictions bit for bit.
#[test]
fn predict_reproduces_finetune_test_predictions_on_bbbp() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pipeline = project(d, "bbbp", "bbbp-158.csv", "[\"p_np\"]");
    let summary = finetune(d, &pipeline, 3);
    let stage = summary.stage_dir.clone();
    let graphs = d.join("runs/bbbp/featurize/graphs.parquet");

    // The test molecules as a user's CSV: another SMILES column name, an extra column, plus one
    // unparsable SMILES and one empty cell at the end (rejects).
    let script = r#"
import sys, json, csv, pyarrow.parquet as pq
g = pq.read_table(sys.argv[1]).to_pydict()
p = pq.read_table(sys.argv[2]).to_pydict()
by_id = dict(zip(g["mol_id"], zip(g["smiles"], g["canonical_smiles"])))
test = [(m, pr) for m, s, pr in zip(p["mol_id"], p["split"], p["prediction"]) if s == "test"]
with open(sys.argv[3], "w", newline="") as f:
    w = csv.writer(f); w.writerow(["id", "SMILES_in"])
    for m, _ in test: w.writerow([m, by_id[m][0]])
    w.writerow(["bad", "C1CC(("]); w.writerow(["empty", ""])
print(json.dumps({"ids": [m for m, _ in test], "pred": [pr for _, pr in test], "canonical": [by_id[m][1] for m, _ in test]}))
"#;
    let csv = d.join("test-molecules.csv");
    let expected = py(script, &[&graphs, &stage.join("predictions.parquet"), &csv]);
    let n = expected["ids"].as_array().unwrap().len();
    assert!(n >= 10, "{n} test molecules");

    let model = stage.join("model.safetensors");
    let args = ["--input", "test-molecules.csv", "--smiles-column", "SMILES_in", "--model", model.to_str().unwrap(), "--out-dir", "out"];
    let stdout = predict_ok(d, &args);
    assert!(stdout.contains(&format!("{} rows -> {n} predicted, 2 rejected", n + 2)), "{stdout}");
    let read = r#"
import sys, json, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]); r = pq.read_table(sys.argv[2])
meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items() if k.startswith(b"molpeg.")}
print(json.dumps({"schema": {f.name: str(f.type) for f in t.schema}, "rows": t.to_pydict(), "rejects": r.to_pydict(), "meta": meta}))
"#;
    let got = py(read, &[&d.join("out/predictions.parquet"), &d.join("out/rejects.parquet")]);
    assert_eq!(got["schema"], serde_json::json!({"row": "uint32", "smiles": "string", "canonical_smiles": "string", "p_np": "float"}));
    assert_eq!(got["rows"]["p_np"], expected["pred"], "predict must reproduce the fine-tune stage's test predictions exactly");
    assert_eq!(got["rows"]["canonical_smiles"], expected["canonical"]);
    assert_eq!(got["rows"]["row"], serde_json::json!((0..n).collect::<Vec<_>>()));
    assert_eq!(got["rejects"]["row"], serde_json::json!([n, n + 1]));
    let reasons = got["rejects"]["reason"].as_array().unwrap();
    assert!(reasons[0].as_str().unwrap().contains("RDKit") && reasons[1].as_str().unwrap().contains("empty"), "{reasons:?}");
    assert_eq!(got["meta"]["molpeg.task_names"], "[\"p_np\"]");
    assert_eq!(got["meta"]["molpeg.featurizer_version"], molpeg_chem::FEATURIZER_VERSION);

    // Unchanged rerun: skipped. An ensemble (the same model twice) in chunks of 5 molecules: mean =
    // the model's prediction (up to float rounding: the batches are composed differently), std = 0.
    assert!(predict_ok(d, &args).contains("up to date"));
    let m = model.to_str().unwrap();
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6)
    };
    predict_ok(d, &["--input", "test-molecules.csv", "--smiles-column", "SMILES_in", "--model", m, "--model", m, "--out-dir", "ens", "--chunk-rows", "5"]);
    let ens = py(read, &[&d.join("ens/predictions.parquet"), &d.join("ens/rejects.parquet")]);
    assert!(close(&ens["rows"]["p_np"], &expected["pred"]), "{} vs {}", ens["rows"]["p_np"], expected["pred"]);
    assert!(ens["rows"]["p_np_std"].as_array().unwrap().iter().all(|v| v.as_f64() == Some(0.0)));
    assert_eq!(ens["rejects"]["row"], serde_json::json!([n, n + 1]));

    // The pipeline's graphs.parquet as input: rows are mol_ids, every molecule predicted.
    predict_ok(d, &["--input", graphs.to_str().unwrap(), "--model", m, "--out-dir", "all"]);
    let all = py(read, &[&d.join("all/predictions.parquet"), &d.join("all/rejects.parquet")]);
    let rows = all["rows"]["row"].as_array().unwrap();
    assert_eq!(rows.len(), summary.train_samples + summary.valid_samples + summary.test_samples);
    for (i, id) in expected["ids"].as_array().unwrap().iter().enumerate() {
        let k = rows.iter().position(|r| r == id).unwrap();
        assert!((all["rows"]["p_np"][k].as_f64().unwrap() - expected["pred"][i].as_f64().unwrap()).abs() < 1e-6);
    }

    // A model from another featurizer version is a clear error; so is an encoder-like file without tasks.
    let (mut metadata, tensors) = molpeg_nn::checkpoint::read_tensors(&model).unwrap();
    metadata.insert("molpeg.featurizer".into(), "{\"scheme\":\"hu\",\"version\":\"0\"}".into());
    let vars: Vec<(String, molpeg_nn::tch::Tensor)> = tensors.into_iter().collect();
    let old = d.join("old.safetensors");
    molpeg_nn::checkpoint::write_tensors(&old, &vars, &metadata.clone().into_iter().collect()).unwrap();
    let out = predict(d, &["--input", "test-molecules.csv", "--smiles-column", "SMILES_in", "--model", old.to_str().unwrap(), "--out-dir", "old"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("featurizer version 0") && stderr.contains(&format!("version {}", molpeg_chem::FEATURIZER_VERSION)), "{stderr}");
    metadata.remove("molpeg.task_names");
    molpeg_nn::checkpoint::write_tensors(&old, &vars, &metadata.into_iter().collect()).unwrap();
    let out = predict(d, &["--input", "test-molecules.csv", "--model", old.to_str().unwrap(), "--out-dir", "old"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("molpeg.task_names"), "{stderr}");
    // A missing SMILES column names the columns found.
    let out = predict(d, &["--input", "test-molecules.csv", "--model", m, "--out-dir", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`smiles` not found") && stderr.contains("SMILES_in"), "{stderr}");
}

/// Per-task metrics on a Tox21 subset (12 tasks, missing labels) equal scikit-learn's
/// `roc_auc_score` on the fine-tune stage's own `predictions.parquet`; tasks with one class in the
/// test split are reported with a status, and the average rows (task null) are unchanged.
#[test]
fn per_task_metrics_match_sklearn_on_tox21() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pipeline = project(d, "tox21", "tox21-302.csv", "\"*\"");
    let summary = finetune(d, &pipeline, 2);
    let stage = summary.stage_dir.clone();
    assert_eq!(summary.test_per_task.len(), 12);
    let script = r#"
import sys, json, pyarrow.parquet as pq, pyarrow.compute as pc
try:
    from sklearn.metrics import roc_auc_score, average_precision_score
except ImportError:
    print(json.dumps({"skip": "scikit-learn is not installed in this Python"})); sys.exit(0)
preds = pq.read_table(sys.argv[1]); metrics = pq.read_table(sys.argv[2]).to_pylist()
best = int(json.load(open(sys.argv[3]))["best_epoch"])
test = [r for r in preds.to_pylist() if r["split"] == "test"]
out = {}
for task in sorted({r["task"] for r in test}):
    rows = [r for r in test if r["task"] == task and r["label"] is not None]
    y = [int(r["label"]) for r in rows]; p = [r["prediction"] for r in rows]
    ours = {m["metric"]: m["value"] for m in metrics if m["epoch"] == best and m["split"] == "test" and m["task"] == task}
    sk = roc_auc_score(y, p) if len(set(y)) == 2 else None
    ap = average_precision_score(y, p) if len(set(y)) == 2 else None
    out[task] = {"sklearn": sk, "sklearn_ap": ap, "ours": ours.get("roc_auc"), "ours_ap": ours.get("average_precision"), "classes": len(set(y))}
avg = [m for m in metrics if m["task"] is None]
out["_avg_rows"] = len(avg)
out["_avg_test_auc"] = [m["value"] for m in avg if m["epoch"] == best and m["split"] == "test" and m["metric"] == "roc_auc"][0]
print(json.dumps(out))
"#;
    let got = py(script, &[&stage.join("predictions.parquet"), &stage.join("metrics.parquet"), &stage.join("summary.json")]);
    if let Some(reason) = got.get("skip") {
        eprintln!("skipping the scikit-learn comparison: {reason}");
        return;
    }
    let mut defined = Vec::new();
    for t in &summary.test_per_task {
        let g = &got[&t.task];
        match g["sklearn"].as_f64() {
            Some(sk) => {
                // Predictions are stored as f32 probabilities; σ is monotone, so the ranking (and the
                // AUC) is that of the logits unless two logits round to the same probability.
                let ours = g["ours"].as_f64().unwrap();
                assert!((ours - sk).abs() < 1e-9, "{}: ours {ours}, sklearn {sk}", t.task);
                assert!((g["ours_ap"].as_f64().unwrap() - g["sklearn_ap"].as_f64().unwrap()).abs() < 1e-9, "{}", t.task);
                assert_eq!(t.status, "ok");
                defined.push(ours);
            }
            None => {
                assert!(g["ours"].is_null(), "{}: {g}", t.task);
                assert!(t.status.starts_with("one class") || t.status == "no labels", "{}: {}", t.task, t.status);
            }
        }
    }
    assert!(defined.len() >= 6, "{defined:?}");
    // The average row is the mean over the tasks where ROC-AUC is defined, as before.
    let mean = defined.iter().sum::<f64>() / defined.len() as f64;
    assert!((got["_avg_test_auc"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(got["_avg_rows"].as_u64().unwrap(), 2 * 6, "2 epochs × (train loss, kept, valid and test × 2 metrics)");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(stage.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["test_per_task"].as_array().unwrap().len(), 12);
    assert!(json["test_per_task"][0]["status"].is_string());
}

/// Issue 16: `--shard I/N` splits the input rows into contiguous slices whose parts
/// (predictions.parquet/part-….parquet, rejects.parquet/ likewise) read back with pyarrow as the
/// single-process tables, row for row; and a sharded featurize's graphs.parquet directory is an
/// input like the single file, with equal predictions.
#[test]
fn sharded_predict_and_a_sharded_graphs_input_equal_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pipeline = project(d, "bbbp", "bbbp-158.csv", "[\"p_np\"]");
    finetune(d, &pipeline, 1);
    let model = d.join("runs/bbbp/finetune/model.safetensors");
    let model = model.to_str().unwrap();
    let csv = fixture("bbbp-158.csv");
    let csv = csv.to_str().unwrap();

    predict_ok(d, &["--input", csv, "--model", model, "--out-dir", "whole"]);
    for i in 0..2 {
        let stdout = predict_ok(d, &["--input", csv, "--model", model, "--out-dir", "sharded", "--shard", &format!("{i}/2"), "--chunk-rows", "16"]);
        assert!(stdout.contains("predict: 79 rows"), "158 rows in two halves: {stdout}");
        assert!(d.join(format!("sharded/manifest-part-0000{i}-of-00002.json")).is_file());
    }
    assert!(predict_ok(d, &["--input", csv, "--model", model, "--out-dir", "sharded", "--shard", "1/2", "--chunk-rows", "16"]).contains("up to date"));

    // A sharded featurize's directory as the input.
    let runs_sharded = d.join("runs-sharded");
    let options = molpeg_data::fetch::FetchOptions { data_dir: d.join("data"), mirror: None, accept_sha256: vec![], offline: true };
    let config = molpeg_chem::featurize::FeaturizeConfig { threads: 1, ..Default::default() };
    for i in 0..3 {
        let shard = molpeg_core::shard::Shard::new(i, 3).unwrap();
        molpeg_chem::featurize::run(&pipeline, &runs_sharded, &config, &options, false, Some(shard)).unwrap();
    }
    let parts = runs_sharded.join("bbbp/featurize/graphs.parquet");
    assert!(parts.is_dir());
    predict_ok(d, &["--input", d.join("runs/bbbp/featurize/graphs.parquet").to_str().unwrap(), "--model", model, "--out-dir", "from-file"]);
    predict_ok(d, &["--input", parts.to_str().unwrap(), "--model", model, "--out-dir", "from-parts"]);

    let script = r#"
import json, os, sys
import pyarrow.parquet as pq
d = sys.argv[1]
def same(a, b, name, nonempty=True):
    ta, tb = pq.read_table(os.path.join(d, a, name)), pq.read_table(os.path.join(d, b, name))
    return [str(f.type) for f in ta.schema] == [str(f.type) for f in tb.schema] and ta.to_pydict() == tb.to_pydict() and (ta.num_rows > 0 or not nonempty)
print(json.dumps({
    "predictions": same("whole", "sharded", "predictions.parquet"),
    "rejects": same("whole", "sharded", "rejects.parquet", nonempty=False),
    "parts": sorted(os.listdir(os.path.join(d, "sharded", "predictions.parquet"))),
    "from_parts": same("from-file", "from-parts", "predictions.parquet"),
}))
"#;
    let result = py(script, &[d]);
    assert_eq!(result["predictions"], true, "{result}");
    assert_eq!(result["rejects"], true, "{result}");
    assert_eq!(result["parts"], serde_json::json!(["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]));
    assert_eq!(result["from_parts"], true, "{result}");
}

/// A QM9 pipeline over tests/fixtures/qm9-240.csv (240 molecules drawn from QM9 with Python's
/// `random.seed(7)`, in file order: SMILES, DFT geometry, gap, U0, ZPVE in Hartree), gap in eV,
/// featurized with `geometry` (the DFT coordinates or RDKit conformers) and split at random.
fn qm9_project(dir: &Path, geometry: molpeg_chem::geometry::GeometryMode) -> Pipeline {
    let text = format!(
        "name = \"qm9\"\n\n[dataset]\nname = \"qm9\"\nfile = \"qm9-240.csv\"\npath = {path:?}\nsmiles_column = \"SMILES\"\nlabel_columns = [\"HOMO_LUMO_gap_au\"]\nignore_columns = [\"Index\", \"InternalEnergy_0K_au\", \"ZPVE_au\"]\ntask_type = \"regression\"\ngeometry = {{ elements = \"Elements\", positions = \"XYZ_Ang\" }}\n\n[dataset.label_units]\nHOMO_LUMO_gap_au = {{ name = \"gap\", unit = \"eV\", scale = 27.211386245988 }}\n\n[split]\nmethod = \"random\"\nseed = 1\n",
        path = fixture("qm9-240.csv").display().to_string()
    );
    let toml = dir.join("qm9.toml");
    std::fs::write(&toml, text).unwrap();
    let pipeline = Pipeline::load(&toml).unwrap();
    let runs = dir.join("runs");
    let options = molpeg_data::fetch::FetchOptions { data_dir: dir.join("data"), mirror: None, accept_sha256: vec![], offline: true };
    let config = molpeg_chem::featurize::FeaturizeConfig { threads: 1, geometry, ..Default::default() };
    molpeg_chem::featurize::run(&pipeline, &runs, &config, &options, false, None).unwrap();
    let split: molpeg_data::split::SplitConfig = pipeline.section("split").unwrap();
    molpeg_data::split::run(&pipeline, &runs, &split, false).unwrap();
    pipeline
}

/// A small SchNet (2 interactions, hidden 32, 5 Å, mean readout: the gap is intensive) fine-tuned
/// on the QM9 fixture in `dir`.
fn finetune_schnet(dir: &Path, pipeline: &Pipeline, epochs: u32) -> FinetuneSummary {
    use molpeg_nn::finetune::{SchnetPreset, SchnetSettings};
    molpeg_nn::tch::set_num_threads(1);
    let schnet = SchnetSettings { preset: SchnetPreset::Cpu, hidden: Some(32), filters: Some(32), interactions: Some(2), readout: molpeg_nn::schnet::Readout::Mean, ..Default::default() };
    let settings = FinetuneSettings { epochs, batch_size: 16, eval_batch_size: 256, model: molpeg_nn::model::ModelKind::Schnet, schnet, dropout: 0.0, device: DeviceChoice::Cpu, threads: 1, ..Default::default() };
    let mut config = FinetuneConfig::for_pipeline(pipeline, &dir.join("runs"), settings);
    config.verbose = false;
    finetune::run(&config).unwrap()
}

/// Reads a fine-tune stage's metrics (validation MAE per epoch) and test predictions with pyarrow.
const READ_FINETUNE: &str = r#"
import sys, json, pyarrow.parquet as pq
m = pq.read_table(sys.argv[1]).to_pylist()
p = pq.read_table(sys.argv[2]).to_pylist()
g = pq.read_table(sys.argv[3], columns=["mol_id", "smiles"]).to_pydict()
smiles = dict(zip(g["mol_id"], g["smiles"]))
valid = {r["epoch"]: r["value"] for r in m if r["split"] == "valid" and r["metric"] == "mae" and r["task"] is None}
test = [r for r in p if r["split"] == "test"]
print(json.dumps({"valid_mae": [valid[e] for e in sorted(valid)], "test_ids": [r["mol_id"] for r in test],
  "test_smiles": [smiles[r["mol_id"]] for r in test], "test_pred": [r["prediction"] for r in test],
  "test_mae": sum(abs(r["prediction"] - r["label"]) for r in test) / len(test)}))
"#;

/// Issue 14 end to end on real QM9 molecules: SchNet fine-tuned on the DFT geometries learns (the
/// validation MAE falls), its predictions read back with pyarrow give the stage's test MAE in eV; a
/// model trained on RDKit conformers predicts new SMILES through molpeg-predict on the same
/// conformers (its checkpoint records them), reproducing the stage's test predictions; a model
/// trained on DFT geometries needs `--geometry`, and the summary says what it was trained on.
#[test]
fn schnet_on_qm9_learns_and_predicts_new_smiles_on_conformers() {
    use molpeg_chem::geometry::GeometryMode;
    let tmp = tempfile::tempdir().unwrap();
    let (dft_dir, conf_dir) = (tmp.path().join("dft"), tmp.path().join("etkdg"));
    std::fs::create_dir_all(&dft_dir).unwrap();
    std::fs::create_dir_all(&conf_dir).unwrap();

    // DFT geometries: it learns, and the stage's files agree with its summary.
    let pipeline = qm9_project(&dft_dir, GeometryMode::Dataset);
    let dft = finetune_schnet(&dft_dir, &pipeline, 12);
    let graphs = dft_dir.join("runs/qm9/featurize/graphs.parquet");
    let got = py(READ_FINETUNE, &[&dft.stage_dir.join("metrics.parquet"), &dft.stage_dir.join("predictions.parquet"), &graphs]);
    let valid: Vec<f64> = got["valid_mae"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(valid.len(), 12);
    let best = valid.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(best < 0.8 * valid[0], "validation MAE (eV) must fall: {valid:?}");
    let test_mae = got["test_mae"].as_f64().unwrap();
    let reported = dft.test_at_best["mae"].unwrap();
    assert!((test_mae - reported).abs() < 1e-4, "pyarrow MAE {test_mae} vs the stage's {reported}");
    assert!(test_mae > 0.05 && test_mae < 3.0, "a gap MAE in eV: {test_mae}");

    // The test molecules as a user's CSV of SMILES.
    let csv = tmp.path().join("new.csv");
    let lines: Vec<String> = got["test_smiles"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    std::fs::write(&csv, format!("smiles\n{}\n", lines.join("\n"))).unwrap();
    let d = tmp.path();
    let dft_model = dft.stage_dir.join("model.safetensors");
    let out = predict(d, &["--input", "new.csv", "--model", dft_model.to_str().unwrap(), "--out-dir", "p-dft"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`dataset:XYZ_Ang`") && stderr.contains("--geometry etkdg"), "{stderr}");
    let stdout = predict_ok(d, &["--input", "new.csv", "--model", dft_model.to_str().unwrap(), "--out-dir", "p-dft", "--geometry", "etkdg"]);
    // QM9's strained cages (e.g. CC12CC3C4OC(C13)C24) can defeat ETKDG: rejects with the reason.
    let rejects = py("import sys, json, pyarrow.parquet as pq; print(json.dumps(pq.read_table(sys.argv[1]).to_pydict()))", &[&d.join("p-dft/rejects.parquet")]);
    let reasons = rejects["reason"].as_array().unwrap();
    assert!(reasons.iter().all(|r| r.as_str().unwrap().contains("could not embed a conformer")), "{rejects}");
    assert!(reasons.len() * 5 < lines.len(), "{rejects}");
    assert!(stdout.contains(&format!("{} rows -> {} predicted, {} rejected", lines.len(), lines.len() - reasons.len(), reasons.len())), "{stdout}");
    assert!(stdout.contains("RDKit etkdg conformers (seed 42") && stdout.contains("trained on dataset:XYZ_Ang geometries"), "{stdout}");

    // RDKit conformers at training and at prediction: the same conformers, the same outputs.
    let pipeline = qm9_project(&conf_dir, GeometryMode::Etkdg);
    let conf = finetune_schnet(&conf_dir, &pipeline, 2);
    let graphs = conf_dir.join("runs/qm9/featurize/graphs.parquet");
    let expected = py(READ_FINETUNE, &[&conf.stage_dir.join("metrics.parquet"), &conf.stage_dir.join("predictions.parquet"), &graphs]);
    let csv = tmp.path().join("conf.csv");
    let lines: Vec<String> = expected["test_smiles"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    std::fs::write(&csv, format!("smiles\n{}\nC1CC((\n", lines.join("\n"))).unwrap();
    let conf_model = conf.stage_dir.join("model.safetensors");
    let stdout = predict_ok(d, &["--input", "conf.csv", "--model", conf_model.to_str().unwrap(), "--out-dir", "p-conf", "--chunk-rows", "7"]);
    assert!(stdout.contains("RDKit etkdg conformers (seed 42, 10 attempts)") && !stdout.contains("note:"), "{stdout}");
    let read = r#"
import sys, json, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]); r = pq.read_table(sys.argv[2])
meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items() if k.startswith(b"molpeg.")}
print(json.dumps({"gap": t.column("gap").to_pylist(), "rejects": r.column("row").to_pylist(), "meta": meta}))
"#;
    let got = py(read, &[&d.join("p-conf/predictions.parquet"), &d.join("p-conf/rejects.parquet")]);
    let (pred, want) = (got["gap"].as_array().unwrap(), expected["test_pred"].as_array().unwrap());
    assert_eq!(pred.len(), want.len());
    for (p, w) in pred.iter().zip(want) {
        assert!((p.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 1e-4, "{pred:?} vs {want:?}");
    }
    assert_eq!(got["rejects"], serde_json::json!([lines.len()]));
    assert_eq!(got["meta"]["molpeg.geometry"], "etkdg");
    assert_eq!(got["meta"]["molpeg.conformer_seed"], "42");
    // Another seed is other conformers: other outputs, and the summary says so.
    let stdout = predict_ok(d, &["--input", "conf.csv", "--model", conf_model.to_str().unwrap(), "--out-dir", "p-seed", "--conformer-seed", "7"]);
    assert!(stdout.contains("trained on etkdg (seed 42) geometries"), "{stdout}");
    let other = py(read, &[&d.join("p-seed/predictions.parquet"), &d.join("p-seed/rejects.parquet")]);
    assert_ne!(other["gap"], got["gap"]);
    // A geometry predict cannot make, and --geometry without a 3D model, are clear errors (the GIN
    // is fine-tuned last: it replaces the SchNet in the stage directory).
    let out = predict(d, &["--input", "conf.csv", "--model", conf_model.to_str().unwrap(), "--out-dir", "p-x", "--geometry", "dataset"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("use etkdg or etkdg+mmff"), "{}", String::from_utf8_lossy(&out.stderr));
    let gin = finetune(&conf_dir, &pipeline, 1).stage_dir.join("model.safetensors");
    let out = predict(d, &["--input", "conf.csv", "--model", gin.to_str().unwrap(), "--out-dir", "p-gin", "--geometry", "etkdg"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no model given is one"), "{}", String::from_utf8_lossy(&out.stderr));
}
