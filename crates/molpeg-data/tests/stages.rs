//! End-to-end tests of the `molpeg-split` and `molpeg-fetch` binaries in fresh temp dirs, with outputs
//! read back by pyarrow (`$MOLPEG_PYTHON`, default `python3`) as a user's tool would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use molpeg_core::graph_table::{to_batch, GraphRecord};
use molpeg_core::parquet_io::write_batches;
use molpeg_core::schema::graphs;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn python() -> String {
    std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Reads a Parquet file through pyarrow.
fn pyarrow_dump(path: &Path) -> serde_json::Value {
    let out = Command::new(python()).arg(repo_root().join("tests/pyarrow_dump.py")).arg(path).output().expect("python runs");
    assert!(out.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin).current_dir(dir).args(args).env_remove("MOLPEG_RUNS_DIR").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A graphs.parquet with `scaffolds.len()` one-atom molecules; label 1 for every third.
fn write_graphs(path: &Path, scaffolds: &[&str]) {
    let records: Vec<GraphRecord> = scaffolds
        .iter()
        .enumerate()
        .map(|(i, s)| GraphRecord {
            mol_id: i as u32,
            smiles: "C".into(),
            canonical_smiles: "C".into(),
            scaffold: s.to_string(),
            atom_hu: vec![[5, 0]],
            atom_ogb: vec![[5, 0, 0, 5, 4, 0, 2, 0, 0]],
            labels: vec![Some(if i % 3 == 0 { 1.0 } else { 0.0 })],
            ..Default::default()
        })
        .collect();
    let batch = to_batch(&records).unwrap();
    write_batches(path, graphs::schema(), graphs::KIND, &Default::default(), &[batch]).unwrap();
}

fn project(scaffolds: &[&str], split_section: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.toml"), format!("name = \"demo\"\n[split]\n{split_section}\n")).unwrap();
    write_graphs(&dir.path().join("runs/demo/featurize/graphs.parquet"), scaffolds);
    dir
}

const SPLIT: &str = env!("CARGO_BIN_EXE_molpeg-split");

#[test]
fn scaffold_split_end_to_end_cache_and_force() {
    let scaffolds: Vec<String> = (0..40).map(|i| if i % 10 == 0 { String::new() } else { format!("s{}", i % 7) }).collect();
    let refs: Vec<&str> = scaffolds.iter().map(|s| s.as_str()).collect();
    let dir = project(&refs, "method = \"scaffold\"");
    let out = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("split: 40 molecules"), "{}", text(&out));

    let dump = pyarrow_dump(&dir.path().join("runs/demo/split/split.parquet"));
    assert_eq!(dump["schema"]["mol_id"], "uint32");
    assert_eq!(dump["schema"]["split"], "string");
    assert_eq!(dump["metadata"]["molpeg.kind"], "split");
    let rows = dump["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    // Disjoint by construction (one row per molecule); every molecule of a scaffold in the same part.
    let mut part_of = std::collections::HashMap::new();
    for (row, scaffold) in rows.iter().zip(&scaffolds) {
        let part = row["split"].as_str().unwrap().to_string();
        assert!(["train", "valid", "test"].contains(&part.as_str()));
        assert_eq!(part_of.entry(scaffold.clone()).or_insert(part.clone()), &part, "scaffold {scaffold:?} straddles parts");
    }
    let count = |p: &str| rows.iter().filter(|r| r["split"] == p).count();
    assert!(count("train") as f64 <= 0.8 * 40.0 && count("train") + count("valid") <= 36, "{} {}", count("train"), count("valid"));

    // Unchanged rerun is skipped; --force reruns and gives identical bytes.
    let before = std::fs::read(dir.path().join("runs/demo/split/split.parquet")).unwrap();
    let again = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
    assert!(text(&again).contains("up to date"), "{}", text(&again));
    let forced = run(SPLIT, dir.path(), &["-p", "demo.toml", "--force"]);
    assert!(text(&forced).contains("split: 40 molecules"), "{}", text(&forced));
    assert_eq!(before, std::fs::read(dir.path().join("runs/demo/split/split.parquet")).unwrap());
    // A changed parameter invalidates the cache.
    let changed = run(SPLIT, dir.path(), &["-p", "demo.toml", "--method", "random", "--seed", "3"]);
    assert!(text(&changed).contains("split: 40 molecules by Random"), "{}", text(&changed));
}

#[test]
fn random_split_is_deterministic_per_seed() {
    let refs = vec!["x"; 50];
    let read = |seed: &str| {
        let dir = project(&refs, "method = \"random\"");
        let out = run(SPLIT, dir.path(), &["-p", "demo.toml", "--seed", seed]);
        assert!(out.status.success(), "{}", text(&out));
        pyarrow_dump(&dir.path().join("runs/demo/split/split.parquet"))["rows"].clone()
    };
    assert_eq!(read("1"), read("1"));
    assert_ne!(read("1"), read("2"));
    let rows = read("1");
    assert_eq!(rows.as_array().unwrap().iter().filter(|r| r["split"] == "train").count(), 40);
}

/// The paper's split through the binary: the same parts as Python's `random_split(seed=42)` computed
/// by the venv's Python, with the method, seed and fractions in the file's metadata.
#[test]
fn python_random_split_stage_matches_python_and_records_method_and_seed() {
    let refs = vec!["x"; 97];
    let dir = project(&refs, "method = \"python-random\"\nseed = 42");
    let out = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let dump = pyarrow_dump(&dir.path().join("runs/demo/split/split.parquet"));
    assert_eq!(dump["metadata"]["molpeg.split_method"], "\"python-random\"");
    assert_eq!(dump["metadata"]["molpeg.split_seed"], "42");
    assert_eq!(dump["metadata"]["molpeg.split_fractions"], "[0.8,0.1,0.1]");
    let script = "import random, json\nn = 97\nrandom.seed(42); idx = list(range(n)); random.shuffle(idx)\nparts = ['test'] * n\nfor i in idx[:int(0.8 * n)]: parts[i] = 'train'\nfor i in idx[int(0.8 * n):int(0.1 * n) + int(0.8 * n)]: parts[i] = 'valid'\nprint(json.dumps(parts))";
    let py = Command::new(python()).args(["-c", script]).output().expect("python runs");
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let expected: Vec<String> = serde_json::from_slice(&py.stdout).unwrap();
    let found: Vec<String> = dump["rows"].as_array().unwrap().iter().map(|r| r["split"].as_str().unwrap().to_string()).collect();
    assert_eq!(found, expected);
}

#[test]
fn split_without_featurize_output_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.toml"), "name = \"demo\"\n").unwrap();
    let out = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("graphs.parquet") && text(&out).contains("featurize"), "{}", text(&out));
}

#[test]
fn fetch_refuses_a_file_with_an_unlisted_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(mirror.join("demo.csv"), "smiles,y\nC,1\n").unwrap();
    std::fs::write(
        dir.path().join("demo.toml"),
        "[dataset]\nname = \"demo\"\nfile = \"demo.csv\"\nsha256 = [\"0000\"]\nsmiles_column = \"smiles\"\nlabel_columns = [\"y\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_molpeg-fetch"))
        .current_dir(dir.path())
        .args(["-p", "demo.toml", "--offline"])
        .env("MOLPEG_DATA_MIRROR", &mirror)
        .env_remove("MOLPEG_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("demo.csv") && msg.contains("0000") && msg.contains("--accept-sha256"), "{msg}");
    assert!(!dir.path().join("data/raw/demo.csv").exists());
}

/// (algorithm version, digest of split.parquet's columns for scaffold, random and python-random
/// splits of a fixed table), oldest first. If the output changed on purpose, bump
/// `molpeg_core::versions::SPLIT` and append the pair the failure prints; never edit an old entry.
const SPLIT_GOLDEN: &[(u32, &str)] = &[(1, "e65664286a7bd78034a7b08d85eea5448d2bd12f69427425409431d722697c2b")];

#[test]
fn split_output_is_pinned_to_its_algorithm_version() {
    let scaffolds: Vec<String> = (0..60).map(|i| if i % 9 == 0 { String::new() } else { format!("s{}", i % 11) }).collect();
    let refs: Vec<&str> = scaffolds.iter().map(|s| s.as_str()).collect();
    let mut columns = Vec::new();
    for method in ["method = \"scaffold\"", "method = \"random\"\nseed = 3", "method = \"python-random\"\nseed = 42"] {
        let dir = project(&refs, method);
        let out = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
        assert!(out.status.success(), "{}", text(&out));
        columns.push(pyarrow_dump(&dir.path().join("runs/demo/split/split.parquet"))["rows"].clone());
    }
    let digest = molpeg_core::versions::digest(&serde_json::to_string(&columns).unwrap());
    if let Err(message) = molpeg_core::versions::check_golden("split", SPLIT_GOLDEN, &digest) {
        panic!("{message}");
    }
}

/// A split.parquet damaged after the split stage wrote it is refused by the next stage's input
/// check rather than used: here the split stage itself reruns it, and its own manifest check (sha256)
/// catches a same-size change.
#[test]
fn a_same_size_corruption_of_split_parquet_reruns_the_split() {
    let scaffolds: Vec<String> = (0..40).map(|i| format!("s{}", i % 7)).collect();
    let refs: Vec<&str> = scaffolds.iter().map(|s| s.as_str()).collect();
    let dir = project(&refs, "method = \"scaffold\"");
    assert!(run(SPLIT, dir.path(), &["-p", "demo.toml"]).status.success());
    let path = dir.path().join("runs/demo/split/split.parquet");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let out = run(SPLIT, dir.path(), &["-p", "demo.toml"]);
    assert!(out.status.success() && !text(&out).contains("up to date"), "{}", text(&out));
    assert_eq!(std::fs::read(&path).unwrap(), good);
}
