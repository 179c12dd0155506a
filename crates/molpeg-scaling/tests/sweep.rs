//! End-to-end tests of the `molpeg-scaling` binary (the one test binary of this crate: each links
//! libtorch). Fixtures: synthetic molecules (`molpeg_nn::synthetic`) with scaffolds, split by the real
//! split stage, in a fresh temp dir; outputs read back with pyarrow (`$MOLPEG_PYTHON`) and the figures
//! checked with Python's XML parser and the PNG signature.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use molpeg_core::parquet_io::ParquetSource;
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema::scaling_results;
use molpeg_data::split::{self, SplitConfig};
use molpeg_nn::checkpoint;
use molpeg_nn::data::TaskKind;
use molpeg_nn::model::{Jk, Model, ModelConfig, Pooling};
use molpeg_nn::tch::Device;
use molpeg_nn::score::{write_sample_scores, SampleScore};
use molpeg_nn::synthetic::{self, SyntheticSpec};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_molpeg-scaling");

fn python() -> String {
    std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn python_json(script: &str, args: &[&Path]) -> Value {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("python runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Parquet file as pyarrow sees it (tests/pyarrow_dump.py).
fn pyarrow(path: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pyarrow_dump.py");
    let out = Command::new(python()).arg(script).arg(path).output().expect("python runs");
    assert!(out.status.success(), "pyarrow failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A project dir: `tiny.toml`, graphs of `molecules` synthetic molecules with 23 scaffolds, and the
/// scaffold split written by the split stage.
fn project(molecules: usize, scaling: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "name = \"tiny\"\n[split]\nmethod = \"scaffold\"\n\
         [finetune]\nepochs = 1\nlayers = 2\nwidth = 16\nbatch_size = 32\neval_batch_size = 256\ndevice = \"cpu\"\nthreads = 1\n\
         [scaling]\n{scaling}\n"
    );
    std::fs::write(dir.path().join("tiny.toml"), toml).unwrap();
    let mut rows = synthetic::generate(&SyntheticSpec::hiv_like(molecules, 11));
    for r in &mut rows {
        r.scaffold = format!("s{}", r.mol_id % 23);
    }
    synthetic::write_graphs(&dir.path().join("runs/tiny/featurize/graphs.parquet"), &rows, &["task0".into()], TaskKind::Binary).unwrap();
    let pipeline = Pipeline::load(dir.path().join("tiny.toml")).unwrap();
    let config: SplitConfig = pipeline.section("split").unwrap();
    assert!(matches!(split::run(&pipeline, &dir.path().join("runs"), &config, false).unwrap(), molpeg_core::manifest::Outcome::Ran(_)));
    dir
}

fn scaling(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(["--pipeline", "tiny.toml", "--runs-dir", "runs"])
        .args(args)
        .env_remove("MOLPEG_RUNS_DIR")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = scaling(dir, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "molpeg-scaling {args:?} failed:\n{text}");
    text
}

fn key(row: &Value) -> (String, String, u64, u64, u64, String) {
    let s = |k: &str| row[k].as_str().unwrap().to_string();
    (s("split"), s("strategy"), (row["fraction"].as_f64().unwrap() * 100.0).round() as u64, row["seed"].as_u64().unwrap(), row["width"].as_u64().unwrap(), s("pretrained"))
}

fn rows_of(path: &Path) -> Vec<Value> {
    pyarrow(path)["rows"].as_array().unwrap().clone()
}

fn check_figures(stem: &Path) {
    let png = std::fs::read(stem.with_extension("png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", stem.display());
    let svg = stem.with_extension("svg");
    let root = python_json("import json, sys, xml.etree.ElementTree as ET; print(json.dumps(ET.parse(sys.argv[1]).getroot().tag))", &[&svg]);
    assert!(root.as_str().unwrap().ends_with("svg"), "root element {root}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}

#[test]
fn sweep_writes_results_fits_and_figures_skips_finished_cells_and_refuses_stale_rows() {
    let dir = project(300, "fractions = [0.25, 1.0]\nseeds = [0, 1]\nstrategies = [\"random\", \"select:molpeg\", \"dynamic:molpeg\"]\nbootstrap = 50");
    let d = dir.path();
    // Scores for select:molpeg: larger for larger mol_id, so the kept set is known.
    let pipeline = Pipeline::load(d.join("tiny.toml")).unwrap();
    let split_rows = rows_of(&d.join("runs/tiny/split/split.parquet"));
    let train: Vec<u32> = split_rows.iter().filter(|r| r["split"] == "train").map(|r| r["mol_id"].as_u64().unwrap() as u32).collect();
    let scores: Vec<SampleScore> = train.iter().map(|&m| SampleScore { mol_id: m, score_last: m as f32, score_mean: 0.0, delta_last: 0.0, times_seen: 1 }).collect();
    write_sample_scores(&pipeline.stage_dir(&d.join("runs"), "score").join("sample_scores.parquet"), &scores).unwrap();

    let log = ok(d, &[]);
    assert!(log.contains("cell 1/8") && log.contains("cell 8/8"), "one progress line per cell:\n{log}");
    let out = d.join("runs/tiny/scaling");
    let results = pyarrow(&out.join("results.parquet"));
    let expected_types = [
        ("dataset", "string"),
        ("split", "string"),
        ("model", "string"),
        ("pretrained", "string"),
        ("layers", "uint32"),
        ("width", "uint32"),
        ("strategy", "string"),
        ("fraction", "double"),
        ("n_train", "uint32"),
        ("seed", "uint64"),
        ("best_epoch", "uint32"),
        ("metric", "string"),
        ("valid_metric", "double"),
        ("test_metric", "double"),
        ("samples_seen", "uint64"),
        ("seconds", "double"),
        ("settings_hash", "string"),
    ];
    for (name, ty) in expected_types {
        assert_eq!(results["schema"][name], ty, "column {name}");
    }
    assert_eq!(results["metadata"]["molpeg.kind"], scaling_results::KIND);
    let rows = results["rows"].as_array().unwrap();
    let n = train.len() as u64;
    let quarter = (n as f64 * 0.25).floor() as u64;
    let keys: BTreeSet<_> = rows.iter().map(key).collect();
    assert_eq!(rows.len(), 8, "3 strategies at 0.25 and the shared full cell, for 2 seeds");
    assert_eq!(keys.len(), 8);
    for row in rows {
        let (split, strategy, percent, _, _, pretrained) = key(row);
        assert_eq!((split.as_str(), pretrained.as_str(), row["layers"].as_u64(), row["dataset"].as_str()), ("scaffold", "scratch", Some(2), Some("tiny")));
        assert_eq!(row["model"], "gin", "without a model axis the [finetune] model (default gin)");
        let expected_n = if percent == 100 { n } else { quarter };
        assert_eq!(row["n_train"].as_u64().unwrap(), expected_n, "{row}");
        assert_eq!(row["strategy"] == "full", percent == 100, "{strategy} at {percent}%");
        // One epoch: static strategies see their subset once; dynamic MolPeg its ⌊r·N⌋ of the epoch.
        assert_eq!(row["samples_seen"].as_u64().unwrap(), expected_n, "{row}");
        assert_eq!((row["metric"].as_str(), row["best_epoch"].as_u64()), (Some("roc_auc"), Some(1)));
        let test = row["test_metric"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&test), "{row}");
    }
    let hashes: BTreeSet<(&str, &str)> = rows.iter().map(|r| (r["strategy"].as_str().unwrap(), r["settings_hash"].as_str().unwrap())).collect();
    let hash_of = |s: &str| hashes.iter().find(|h| h.0 == s).unwrap().1;
    assert_eq!(hash_of("random"), hash_of("full"));
    assert_ne!(hash_of("select:molpeg"), hash_of("random"), "select cells also depend on the scores file");

    let fits = pyarrow(&out.join("fits.parquet"));
    for (name, ty) in [("strategy", "string"), ("form", "string"), ("parameter", "string"), ("value", "double"), ("ci_low", "double"), ("ci_high", "double"), ("r2", "double"), ("points", "uint32"), ("seeds", "uint32"), ("layers", "uint32")] {
        assert_eq!(fits["schema"][name], ty, "fits column {name}");
    }
    let fit_rows = fits["rows"].as_array().unwrap();
    // Two fractions: the power law (a, b) fits for each strategy; the saturating law needs three.
    assert_eq!(fit_rows.len(), 6, "{fit_rows:?}");
    assert!(fit_rows.iter().all(|r| r["form"] == "power" && r["points"] == 4 && r["seeds"] == 2));
    let md = std::fs::read_to_string(out.join("fits.md")).unwrap();
    assert!(md.contains("| random | power |") && md.contains("at least 3 distinct fractions"), "{md}");
    check_figures(&out.join("scaling"));
    check_figures(&out.join("keep_ratio"));
    assert!(out.join("manifest.json").is_file());

    // Unchanged: skipped by the manifest. --force redoes the pass but reuses every cell.
    let before = std::fs::read(out.join("results.parquet")).unwrap();
    assert!(ok(d, &[]).contains("up to date"));
    let forced = ok(d, &["--force"]);
    assert!(forced.contains("0 run now, 8 already finished"), "{forced}");
    assert_eq!(std::fs::read(out.join("results.parquet")).unwrap(), before, "no cell was rerun");
    assert!(ok(d, &["--report-only"]).contains("power law random"));

    // The split axis, computed in-process, and a capacity axis: the in-process scaffold split equals the
    // split stage's, so its cells have the same settings hash and, trained alike, the same result.
    let axes_dir = d.join("runs/tiny/scaling-axes");
    let axes_log = ok(d, &["--splits", "scaffold,random", "--capacities", "1x8,2x16", "--strategies", "random", "--seeds", "0", "--out-dir", axes_dir.to_str().unwrap()]);
    assert!(axes_log.contains("[random split, gin, scratch, 1x8]"), "{axes_log}");
    let axes_rows = rows_of(&axes_dir.join("results.parquet"));
    assert_eq!(axes_rows.len(), 8, "2 splits × 2 capacities × (random 0.25 + full)");
    let splits: BTreeSet<_> = axes_rows.iter().map(|r| (r["split"].as_str().unwrap().to_string(), r["layers"].as_u64().unwrap(), r["width"].as_u64().unwrap())).collect();
    assert_eq!(splits.len(), 4);
    for strategy in ["random", "full"] {
        let pick = |rows: &[Value]| rows.iter().find(|r| r["strategy"] == strategy && r["seed"] == 0 && r["split"] == "scaffold" && r["width"] == 16).unwrap().clone();
        let (a, b) = (pick(rows), pick(&axes_rows));
        assert_eq!(a["settings_hash"], b["settings_hash"]);
        assert_eq!(a["test_metric"], b["test_metric"], "same cell, same result:\n{a}\n{b}");
    }

    // The pretrained axis: an encoder checkpoint (a fresh seeded GIN of the sweep's shape) against scratch.
    let checkpoint = d.join("encoder.safetensors");
    let model = Model::new(&ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers: 2, width: 16, dropout: 0.5, pooling: Pooling::Mean, jk: Jk::Last, num_tasks: 1 }, Device::Cpu).unwrap();
    checkpoint::save_model(&checkpoint, &model, &Default::default()).unwrap();
    let pre_dir = d.join("runs/tiny/scaling-pretrained");
    let axis = format!("scratch,{}", checkpoint.display());
    ok(d, &["--pretrained-axis", &axis, "--fractions", "1.0", "--seeds", "0", "--out-dir", pre_dir.to_str().unwrap()]);
    let pre_rows = rows_of(&pre_dir.join("results.parquet"));
    let labels: BTreeSet<&str> = pre_rows.iter().map(|r| r["pretrained"].as_str().unwrap()).collect();
    assert_eq!(labels, BTreeSet::from(["scratch", checkpoint.to_str().unwrap()]));
    assert_ne!(pre_rows[0]["settings_hash"], pre_rows[1]["settings_hash"], "the checkpoint's content is part of the hash");
    assert_ne!(pre_rows[0]["test_metric"], pre_rows[1]["test_metric"], "the encoder starts from other weights");

    // A changed [finetune] setting is not mixed with the old cells.
    let out_err = scaling(d, &["--epochs", "2"]);
    let err = String::from_utf8_lossy(&out_err.stderr).to_string();
    assert!(!out_err.status.success() && err.contains("8 of its 8 rows were computed with other settings") && err.contains("--discard-stale"), "{err}");
    let discarded = ok(d, &["--epochs", "2", "--discard-stale", "--fractions", "1.0", "--seeds", "0"]);
    assert!(discarded.contains("8 stale rows discarded"), "{discarded}");
    let rows = rows_of(&out.join("results.parquet"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["samples_seen"].as_u64().unwrap(), 2 * n);
}

fn row_count(path: &Path) -> usize {
    ParquetSource::open(path, &scaling_results::schema()).map(|s| s.num_rows).unwrap_or(0)
}

#[test]
fn a_killed_sweep_resumes_where_it_stopped_without_duplicating_cells() {
    let dir = project(2000, "fractions = [0.5, 1.0]\nseeds = [0, 1, 2]\nstrategies = [\"random\"]\nbootstrap = 20");
    let d = dir.path();
    let results: PathBuf = d.join("runs/tiny/scaling/results.parquet");
    let mut child = Command::new(BIN)
        .current_dir(d)
        .args(["--pipeline", "tiny.toml", "--runs-dir", "runs"])
        .env_remove("MOLPEG_RUNS_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while row_count(&results) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before its first cell was seen");
        assert!(Instant::now() < deadline, "no cell finished in time");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first = rows_of(&results);
    assert!(!first.is_empty() && first.len() < 6, "killed after {} of 6 cells; the kill must interrupt the sweep", first.len());
    assert!(!d.join("runs/tiny/scaling/manifest.json").exists(), "an interrupted sweep is not marked complete");

    let log = ok(d, &[]);
    assert!(log.contains(&format!("{} run now, {} already finished", 6 - first.len(), first.len())), "{log}");
    let all = rows_of(&results);
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().map(key).collect::<BTreeSet<_>>().len(), 6, "no cell twice");
    assert_eq!(&all[..first.len()], &first[..], "finished cells are kept as they were");
}

/// The modality axis on 300 real HIV molecules (tests/fixtures/hiv-300.csv) featurized by the real
/// featurize stage with fingerprints: GIN, fingerprint and SMILES cells in one sweep, told apart by
/// the `model` column, each hashed with its own inputs, a GIN cell equal to the same cell of a sweep
/// without the axis, one curve per model in the figure, and a rerun that trains nothing.
#[test]
fn model_axis_sweeps_graph_fingerprint_and_smiles_models() {
    let featurize = Path::new(BIN).with_file_name("molpeg-featurize");
    assert!(featurize.is_file(), "{} is built with the workspace (cargo build --workspace)", featurize.display());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hiv-300.csv").canonicalize().unwrap();
    let toml = format!(
        "name = \"tiny\"\n[dataset]\nname = \"tiny\"\nfile = \"hiv-300.csv\"\npath = {:?}\nsmiles_column = \"smiles\"\n\
         label_columns = [\"HIV_active\"]\nignore_columns = [\"activity\"]\ntask_type = \"binary\"\nmissing = [\"\"]\n\
         [featurize]\nthreads = 1\nfingerprints = true\nfingerprint_radius = 2\nfingerprint_bits = 1024\n\
         [split]\nmethod = \"random\"\nfractions = [0.5, 0.25, 0.25]\n\
         [finetune]\nepochs = 1\nlayers = 2\nwidth = 16\nbatch_size = 32\neval_batch_size = 64\ndevice = \"cpu\"\nthreads = 1\n\
         [finetune.sequence]\nlayers = 1\nwidth = 16\nheads = 2\nffn = 32\nmax_len = 64\n\
         [scaling]\nfractions = [0.5, 1.0]\nseeds = [0]\nbootstrap = 20\n",
        fixture.display().to_string()
    );
    std::fs::write(d.join("tiny.toml"), toml).unwrap();
    let out = Command::new(&featurize)
        .current_dir(d)
        .args(["--pipeline", "tiny.toml", "--runs-dir", "runs"])
        .env("MOLPEG_DATA_DIR", d.join("data"))
        .env_remove("MOLPEG_DATA_MIRROR")
        .output()
        .unwrap();
    assert!(out.status.success(), "featurize: {}", String::from_utf8_lossy(&out.stderr));
    let pipeline = Pipeline::load(d.join("tiny.toml")).unwrap();
    let config: SplitConfig = pipeline.section("split").unwrap();
    split::run(&pipeline, &d.join("runs"), &config, false).unwrap();

    let log = ok(d, &["--models", "gin,fingerprint,smiles"]);
    assert!(log.contains("cell 6/6"), "{log}");
    let out = d.join("runs/tiny/scaling");
    let rows = rows_of(&out.join("results.parquet"));
    assert_eq!(rows.len(), 6, "3 models × (random 0.5 + full)");
    let by_model = |m: &str| rows.iter().filter(|r| r["model"] == m).cloned().collect::<Vec<_>>();
    let mut full_hashes = BTreeSet::new();
    for (model, width) in [("gin", 16), ("fingerprint", 16), ("smiles", 16)] {
        let cells = by_model(model);
        assert_eq!(cells.len(), 2, "{model}: {rows:?}");
        for r in &cells {
            assert_eq!((r["layers"].as_u64(), r["width"].as_u64()), (Some(if model == "gin" { 2 } else { 1 }), Some(width)), "{model}'s own section sets its shape");
            assert!((0.0..=1.0).contains(&r["test_metric"].as_f64().unwrap()), "{r}");
        }
        full_hashes.insert(cells.iter().find(|r| r["strategy"] == "full").unwrap()["settings_hash"].as_str().unwrap().to_string());
    }
    assert_eq!(full_hashes.len(), 3, "every model hashes its own inputs");
    let svg = std::fs::read_to_string(out.join("scaling.svg")).unwrap();
    // Legends name what tells the curves apart: the model (and here the capacity, 2x16 vs 1x16).
    for label in ["random (gin, 2x16)", "random (fingerprint, 1x16)", "random (smiles, 1x16)"] {
        assert!(svg.contains(label), "the legend names the curve `{label}`");
    }
    let fits = rows_of(&out.join("fits.parquet"));
    let fit_models: BTreeSet<&str> = fits.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(fit_models, BTreeSet::from(["fingerprint", "gin", "smiles"]), "one fit per model");

    // Unchanged: nothing trains again, even when the manifest is bypassed.
    assert!(ok(d, &["--models", "gin,fingerprint,smiles", "--force"]).contains("0 run now, 6 already finished"));

    // The GIN's cells are those of a sweep without the axis: same hash and, trained alike, same result.
    let gin_dir = d.join("runs/tiny/scaling-gin");
    ok(d, &["--out-dir", gin_dir.to_str().unwrap()]);
    let plain = rows_of(&gin_dir.join("results.parquet"));
    assert_eq!(plain.len(), 2);
    for r in &plain {
        let twin = by_model("gin").into_iter().find(|g| g["strategy"] == r["strategy"]).unwrap();
        assert_eq!((&r["settings_hash"], &r["test_metric"], &r["model"]), (&twin["settings_hash"], &twin["test_metric"], &twin["model"]));
    }
}

/// `--shard I/N`: two shards of a grid, each in its own part with its own manifest, then the run
/// without a shard merges them; the merged results equal a single-process sweep's cell for cell, no
/// cell runs twice, and a Slurm array's variables choose the same shard as the flag.
#[test]
fn shards_split_the_grid_and_merge_to_the_single_process_results() {
    let dir = project(240, "fractions = [0.25, 0.5, 1.0]\nseeds = [0, 1]\nstrategies = [\"random\"]\nbootstrap = 20");
    let d = dir.path();
    let single = d.join("runs/tiny/single");
    ok(d, &["--out-dir", single.to_str().unwrap()]);
    let sharded = d.join("runs/tiny/sharded");
    let out = sharded.to_str().unwrap();

    // Report-only over parts before any merge, and a shard's own progress line.
    let first = ok(d, &["--out-dir", out, "--shard", "0/2"]);
    assert!(first.contains("scaling: 3 cells (shard 0/2 of 6 cells)"), "{first}");
    let part0 = sharded.join("shards/part-00000-of-00002");
    assert!(part0.join("results.parquet").is_file() && part0.join("manifest.json").is_file());
    assert!(!sharded.join("fits.parquet").exists(), "a shard writes no report");
    assert_eq!(rows_of(&part0.join("results.parquet")).len(), 3);
    // The second shard from a Slurm array's variables (--array=1-2: ids 1 and 2, min 1).
    let slurm = Command::new(BIN)
        .current_dir(d)
        .args(["--pipeline", "tiny.toml", "--runs-dir", "runs", "--out-dir", out])
        .env_remove("MOLPEG_RUNS_DIR")
        .envs([("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("SLURM_ARRAY_TASK_MIN", "1")])
        .output()
        .unwrap();
    let slurm_log = String::from_utf8_lossy(&slurm.stderr).to_string();
    assert!(slurm.status.success() && slurm_log.contains("(shard 1/2 of 6 cells)"), "{slurm_log}");
    // A log (stderr is no terminal) says which cell is under way before it ends.
    let started = slurm_log.find("cell 1/3: ").and_then(|i| slurm_log[i..].find(" started").map(|j| i + j));
    let ended = slurm_log.find("best epoch");
    assert!(started.is_some() && started < ended, "{slurm_log}");
    assert!(ok(d, &["--out-dir", out, "--shard", "1/2"]).contains("up to date"), "the flag names the shard the array chose");

    // Every cell is in exactly one part.
    let part1 = rows_of(&sharded.join("shards/part-00001-of-00002/results.parquet"));
    let part0 = rows_of(&part0.join("results.parquet"));
    let keys = |rows: &[Value]| rows.iter().map(key).collect::<BTreeSet<_>>();
    assert!(keys(&part0).is_disjoint(&keys(&part1)));
    assert_eq!(keys(&part0).len() + keys(&part1).len(), 6);

    // The merge: nothing to train, every cell equal to the single-process one.
    let merge = ok(d, &["--out-dir", out]);
    assert!(merge.contains("6 merged from shards") && merge.contains("0 run now, 6 already finished"), "{merge}");
    let by_key = |rows: Vec<Value>| rows.into_iter().map(|r| (key(&r), (r["test_metric"].clone(), r["valid_metric"].clone(), r["settings_hash"].clone(), r["n_train"].clone()))).collect::<std::collections::BTreeMap<_, _>>();
    assert_eq!(by_key(rows_of(&sharded.join("results.parquet"))), by_key(rows_of(&single.join("results.parquet"))), "sharded = single process");
    check_figures(&sharded.join("scaling"));
    // A shard rerun after the merge trains nothing (its cells are finished in results.parquet).
    assert!(ok(d, &["--out-dir", out, "--shard", "0/3", "--force"]).contains("0 run now"));
    // Bad shards are clear errors.
    let bad = scaling(d, &["--out-dir", out, "--shard", "2/2"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("numbered from 0"));
}

/// A wrapper directory whose `molpeg-scaling` fails (exit 3, a message on stderr) for shard 1/2:
/// once when `once` (a marker file remembers it), else every time; otherwise it runs the real binary.
fn faulty_bin_dir(dir: &Path, once: bool) -> PathBuf {
    let bin_dir = dir.join(if once { "bin-fails-once" } else { "bin-fails" });
    std::fs::create_dir_all(&bin_dir).unwrap();
    let marker = bin_dir.join("failed-once");
    let condition = if once { format!("[ ! -e {marker:?} ]") } else { "true".into() };
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" --shard 1/2 \"*) if {condition}; then touch {marker:?}; echo 'injected fault in shard 1' >&2; exit 3; fi;; esac\nexec {BIN:?} \"$@\"\n"
    );
    let path = bin_dir.join("molpeg-scaling");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

/// The Ray driver (scripts/molpeg_ray.py) on a real local Ray (2 CPUs, started once for both drives
/// by tests/ray_harness.py): a 2-shard sweep whose shard 1 fails once (an injected fault) is retried,
/// completes and merges to the single-process results cell for cell; a shard that always fails makes
/// the driver exit non-zero naming the shard and showing its stderr. Skipped with a notice when
/// $MOLPEG_PYTHON has no ray (`just setup` installs it).
#[test]
fn ray_driver_places_shards_retries_a_failed_one_and_merges() {
    let has_ray = Command::new(python()).args(["-c", "import ray"]).output().is_ok_and(|o| o.status.success());
    if !has_ray {
        eprintln!("skipping: {} has no ray (run `just setup`)", python());
        return;
    }
    let dir = project(240, "fractions = [0.25, 0.5, 1.0]\nseeds = [0, 1]\nstrategies = [\"random\"]\nbootstrap = 20");
    let d = dir.path();
    let single = d.join("runs/tiny/single");
    ok(d, &["--out-dir", single.to_str().unwrap()]);
    let (out, failing) = (d.join("runs/tiny/ray"), d.join("runs/tiny/ray-fails"));
    let drive = |bin_dir: &Path, out: &Path, retries: &str| {
        json!({"cwd": d, "argv": ["scaling", "tiny.toml", "--shards", "2", "--max-retries", retries, "--runs-dir", "runs", "--bin-dir", bin_dir, "--", "--out-dir", out]})
    };
    let drives = json!([drive(&faulty_bin_dir(d, true), &out, "1"), drive(&faulty_bin_dir(d, false), &failing, "0")]);
    let results = ray_harness(d, &drives);

    let log = results[0]["stderr"].as_str().unwrap();
    assert_eq!(results[0]["rc"], 0, "driver failed:\n{log}");
    assert!(d.join("bin-fails-once/failed-once").exists(), "the fault was injected");
    assert!(log.contains("2/2 shards done") && log.contains("cells/s"), "{log}");
    let by_key = |rows: Vec<Value>| rows.into_iter().map(|r| (key(&r), (r["test_metric"].clone(), r["settings_hash"].clone()))).collect::<std::collections::BTreeMap<_, _>>();
    assert_eq!(by_key(rows_of(&out.join("results.parquet"))), by_key(rows_of(&single.join("results.parquet"))), "Ray-sharded = single process");
    assert!(out.join("fits.parquet").is_file(), "the merge reported");

    let log = results[1]["stderr"].as_str().unwrap();
    assert_ne!(results[1]["rc"], 0, "a shard that fails for good fails the driver:\n{log}");
    assert!(log.contains("shard 1/2 failed for good") && log.contains("injected fault in shard 1") && log.contains("1/2 shards done"), "{log}");
    assert!(!failing.join("results.parquet").exists(), "no merge after a failed shard");
}

/// Runs the driver drives (`[{"cwd", "argv"}]`) on one local Ray of 2 CPUs; returns `[{"rc", "stderr"}]`.
fn ray_harness(dir: &Path, drives: &Value) -> Vec<Value> {
    let (drives_path, results_path) = (dir.join("drives.json"), dir.join("drive-results.json"));
    std::fs::write(&drives_path, drives.to_string()).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ray_harness.py");
    let run = Command::new(python()).arg(harness).arg("2").arg(&drives_path).arg(&results_path).env_remove("RAY_ADDRESS").env_remove("MOLPEG_RUNS_DIR").output().unwrap();
    assert!(run.status.success(), "ray harness failed:\n{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice::<Value>(&std::fs::read(&results_path).unwrap()).unwrap().as_array().unwrap().clone()
}
