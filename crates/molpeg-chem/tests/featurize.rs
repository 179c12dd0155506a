//! End-to-end tests of `molpeg-featurize`: the real binary on tests/fixtures/featurize.csv in a fresh
//! temp dir, outputs read back with pyarrow (`$MOLPEG_PYTHON`, default `python3`) as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const FIXTURE_ROWS: usize = 13;
/// Rows of the fixture that RDKit cannot featurize, with the start of their reason.
const FIXTURE_REJECTS: [(u32, &str); 4] =
    [(6, "RDKit could not parse SMILES: unclosed ring"), (8, "RDKit could not parse SMILES: syntax error"), (9, "empty SMILES"), (11, "RDKit rejected the molecule: Explicit valence")];

/// A temp dir holding a pipeline file that points at the fixture CSV.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(fixture: &str) -> Project {
        Project::with_labels(fixture, r#"["active", "toxic"]"#)
    }

    /// A project on `fixture` whose label columns are the TOML list `labels`.
    fn with_labels(fixture: &str, labels: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(fixture);
        let pipeline = format!(
            r#"name = "fixture"

[dataset]
name = "fixture"
file = "featurize.csv"
path = {path:?}
smiles_column = "smiles"
label_columns = {labels}
task_type = "binary"

[featurize]
chunk_rows = 4  # several chunks even for a dozen rows
"#,
            path = fixture.canonicalize().unwrap().display().to_string(),
            labels = labels
        );
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
        Project { dir }
    }

    fn stage_dir(&self) -> PathBuf {
        self.dir.path().join("runs/fixture/featurize")
    }

    fn featurize(&self, extra: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_molpeg-featurize"))
            .args(["--pipeline", "pipeline.toml"])
            .args(if extra.contains(&"--runs-dir") { &[][..] } else { &["--runs-dir", "runs"][..] })
            .args(extra)
            .current_dir(self.dir.path())
            .env("MOLPEG_DATA_DIR", self.dir.path().join("data"))
            .env_remove("MOLPEG_DATA_MIRROR")
            .env_remove("MOLPEG_RUNS_DIR")
            .output()
            .unwrap();
        output
    }

    fn featurize_ok(&self, extra: &[&str]) -> String {
        let output = self.featurize(extra);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "molpeg-featurize {extra:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }
}

/// Reads both Parquet files with pyarrow and returns their types, metadata and values as JSON.
fn read_with_pyarrow(stage_dir: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import pyarrow.parquet as pq
import pyarrow.types as pt

def describe(t):
    if pt.is_list(t):
        return f"list<{describe(t.value_type)}>"
    if pt.is_fixed_size_list(t):
        return f"fixed_size_list<{describe(t.value_type)}, {t.list_size}>"
    return str(t)

out = {}
for name in ["graphs", "rejects"]:
    table = pq.read_table(f"{sys.argv[1]}/{name}.parquet")
    out[name] = {
        "types": {f.name: describe(f.type) for f in table.schema},
        "metadata": {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()},
        "columns": table.to_pydict(),
    }
print(json.dumps(out))
"#;
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(stage_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; set MOLPEG_PYTHON to a Python with pyarrow"));
    assert!(
        output.status.success(),
        "{python} could not read the outputs (set MOLPEG_PYTHON to a Python with pyarrow, e.g. ~/.cache/molpeg/venv/bin/python):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn featurizes_the_fixture_into_documented_parquet_files() {
    let project = Project::new("featurize.csv");
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("13 rows -> 9 molecules, 4 rejected"), "{stdout}");
    assert!(stdout.contains("other") && stdout.contains("bond_hu.bond_type"), "dative bond reported: {stdout}");

    let tables = read_with_pyarrow(&project.stage_dir());
    let graphs = &tables["graphs"];
    assert_eq!(
        graphs["types"],
        json!({
            "mol_id": "uint32",
            "smiles": "string",
            "canonical_smiles": "string",
            "scaffold": "string",
            "num_atoms": "uint16",
            "num_bonds": "uint16",
            "atom_hu": "list<fixed_size_list<uint8, 2>>",
            "atom_ogb": "list<fixed_size_list<uint8, 9>>",
            "edge_index": "list<fixed_size_list<uint16, 2>>",
            "bond_hu": "list<fixed_size_list<uint8, 2>>",
            "bond_ogb": "list<fixed_size_list<uint8, 3>>",
            "labels": "list<float>",
        })
    );
    let meta = &graphs["metadata"];
    assert_eq!(meta["molpeg.kind"], "graphs");
    assert_eq!(meta["molpeg.task_names"], r#"["active","toxic"]"#);
    assert_eq!(meta["molpeg.task_type"], "binary");
    assert_eq!(meta["molpeg.featurizer_version"], molpeg_chem::FEATURIZER_VERSION);
    assert_eq!(meta["molpeg.rdkit_version"], molpeg_chem::rdkit_version());
    assert!(meta["molpeg.source_path"].as_str().unwrap().ends_with("featurize.csv"));
    assert_eq!(meta["molpeg.source_sha256"].as_str().unwrap().len(), 64);

    let columns = &graphs["columns"];
    assert_eq!(columns["mol_id"], json!([0, 1, 2, 3, 4, 5, 7, 10, 12]));
    assert_eq!(columns["smiles"][0], "Cl[C@H](/C=C/C)Br");
    assert_eq!(columns["num_atoms"], json!([6, 6, 4, 2, 1, 4, 15, 2, 26]));
    assert_eq!(columns["num_bonds"], json!([5, 6, 3, 0, 0, 3, 15, 1, 28]));
    // OGB's reference vectors for Cl[C@H](/C=C/C)Br: atom 1, and bond 2 in both directions.
    assert_eq!(columns["atom_ogb"][0][1], json!([5, 2, 4, 5, 1, 0, 2, 0, 0]));
    assert_eq!(columns["bond_ogb"][0][4], json!([1, 2, 0]));
    assert_eq!(columns["bond_ogb"][0][5], json!([1, 2, 0]));
    assert_eq!(columns["edge_index"][0][8], json!([1, 5]));
    assert_eq!(columns["edge_index"][0][9], json!([5, 1]));
    assert_eq!(columns["atom_hu"][2], json!([[5, 0], [5, 2], [6, 0], [7, 0]]));
    assert_eq!(columns["edge_index"][3], json!([]), "the salt has no edges");
    assert_eq!(columns["bond_hu"][7], json!([[4, 0], [4, 0]]), "the dative bond uses the other slot");
    assert_eq!(columns["scaffold"][6], "c1ccccc1");
    assert_eq!(columns["scaffold"][8], "c1ccc(-c2ccnn2-c2ccccc2)cc1");
    assert_eq!(columns["scaffold"][0], "");
    assert_eq!(columns["canonical_smiles"][6], "CC(C)Cc1ccc(C(C)C(=O)O)cc1");
    assert_eq!(columns["labels"][0], json!([1.0, 0.0]));
    assert_eq!(columns["labels"][1], json!([0.0, null]));
    assert_eq!(columns["labels"][8], json!([null, null]));

    let rejects = &tables["rejects"];
    assert_eq!(rejects["types"], json!({"row": "uint32", "smiles": "string", "reason": "string"}));
    assert_eq!(rejects["metadata"]["molpeg.kind"], "rejects");
    let rows: Vec<u64> = rejects["columns"]["row"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(rows, FIXTURE_REJECTS.map(|(row, _)| row as u64));
    for (i, (_, reason)) in FIXTURE_REJECTS.iter().enumerate() {
        let found = rejects["columns"]["reason"][i].as_str().unwrap();
        assert!(found.starts_with(reason), "row {i}: {found}");
    }
    assert_eq!(rejects["columns"]["smiles"][0], "C1CC");
    assert_eq!(rows.len() + columns["mol_id"].as_array().unwrap().len(), FIXTURE_ROWS);
}

#[test]
fn unchanged_rerun_is_skipped_force_and_new_parameters_rerun_and_threads_do_not_change_bytes() {
    let project = Project::new("featurize.csv");
    let graphs = project.stage_dir().join("graphs.parquet");
    project.featurize_ok(&["--threads", "2"]);
    let two_threads = std::fs::read(&graphs).unwrap();

    let stdout = project.featurize_ok(&[]);
    assert_eq!(stdout.trim(), "featurize: up to date (runs/fixture/featurize), use --force to rerun");

    let stdout = project.featurize_ok(&["--force", "--threads", "1", "--chunk-rows", "100"]);
    assert!(stdout.contains("13 rows -> 9 molecules"), "{stdout}");
    assert_eq!(std::fs::read(&graphs).unwrap(), two_threads, "output depends on threads or chunking");

    let stdout = project.featurize_ok(&["--limit", "5"]);
    assert!(stdout.contains("5 rows -> 5 molecules, 0 rejected"), "a new limit reruns without --force: {stdout}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(project.stage_dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"]["limit"], 5);
    assert_eq!(manifest["summary"]["accepted"], 5);
}

#[test]
fn a_missing_input_fails_with_its_path_and_leaves_no_outputs() {
    let project = Project::new("featurize.csv");
    let pipeline = project.dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let text =
        text.lines().map(|l| if l.starts_with("path = ") { "path = \"does/not/exist.csv\"" } else { l }).collect::<Vec<_>>().join("\n");
    std::fs::write(&pipeline, text).unwrap();

    let output = project.featurize(&[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("molpeg-featurize: error: ") && stderr.contains("does/not/exist.csv"), "{stderr}");
    assert!(!project.stage_dir().join("graphs.parquet").exists());
}

/// `fingerprints.parquet` through pyarrow: column types, metadata, mol_ids and each row's on bits
/// unpacked with numpy in the documented bit order.
fn read_fingerprints_with_pyarrow(path: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import numpy as np
import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
bits = [np.flatnonzero(np.unpackbits(np.frombuffer(b, dtype=np.uint8), bitorder="little")).tolist() for b in table.column("morgan").to_pylist()]
print(json.dumps({
    "types": {f.name: str(f.type) for f in table.schema},
    "metadata": {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()},
    "mol_id": table.column("mol_id").to_pylist(),
    "on_bits": bits,
}))
"#;
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python).args(["-c", SCRIPT]).arg(path).output().unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(output.status.success(), "{python} could not read {}:\n{}", path.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn fingerprints_are_opt_in_and_leave_the_graphs_unchanged() {
    let project = Project::new("featurize.csv");
    let (graphs, fingerprints) = (project.stage_dir().join("graphs.parquet"), project.stage_dir().join("fingerprints.parquet"));
    project.featurize_ok(&[]);
    assert!(!fingerprints.exists(), "the default run writes no fingerprints");
    let plain = std::fs::read(&graphs).unwrap();
    let manifest = || -> Value { serde_json::from_slice(&std::fs::read(project.stage_dir().join("manifest.json")).unwrap()).unwrap() };
    assert!(manifest()["params"].get("fingerprints").is_none(), "the default cache key has no fingerprint entry");

    let stdout = project.featurize_ok(&["--fingerprints"]);
    assert!(stdout.contains("13 rows -> 9 molecules") && stdout.contains("fingerprints.parquet"), "turning fingerprints on reruns: {stdout}");
    assert_eq!(std::fs::read(&graphs).unwrap(), plain, "graphs.parquet does not depend on the fingerprints");
    assert_eq!(manifest()["params"]["fingerprints"], json!({"kind": "morgan", "radius": 2, "bits": 2048}));
    assert!(manifest()["outputs"].to_string().contains("fingerprints.parquet"), "{}", manifest()["outputs"]);

    let table = read_fingerprints_with_pyarrow(&fingerprints);
    assert_eq!(table["types"], json!({"mol_id": "uint32", "morgan": "fixed_size_binary[256]"}));
    let meta = &table["metadata"];
    assert_eq!((meta["molpeg.kind"].as_str(), meta["molpeg.morgan_radius"].as_str(), meta["molpeg.morgan_bits"].as_str()), (Some("fingerprints"), Some("2"), Some("2048")));
    assert_eq!(meta["molpeg.rdkit_version"], molpeg_chem::rdkit_version());
    assert_eq!(table["mol_id"], json!([0, 1, 2, 3, 4, 5, 7, 10, 12]), "the rows of graphs.parquet");
    // Python RDKit's GetMorganFingerprintAsBitVect(mol, 2, nBits=2048).GetOnBits().
    assert_eq!(table["on_bits"][1], json!([389, 1088, 1873]), "benzene");
    assert_eq!(table["on_bits"][3], json!([1213, 1866]), "the salt");
    assert_eq!(table["on_bits"][4], json!([1264]), "methane");
    assert_eq!(table["on_bits"][0].as_array().unwrap().len(), 14);
    assert_eq!(table["on_bits"][6].as_array().unwrap().len(), 25, "ibuprofen");

    assert!(project.featurize_ok(&["--fingerprints"]).contains("up to date"));
    let stdout = project.featurize_ok(&["--fingerprints", "--fingerprint-bits", "1024", "--fingerprint-radius", "1"]);
    assert!(stdout.contains("13 rows"), "new fingerprint settings rerun: {stdout}");
    assert_eq!(read_fingerprints_with_pyarrow(&fingerprints)["types"]["morgan"], "fixed_size_binary[128]");
    let err = project.featurize(&["--fingerprints", "--fingerprint-bits", "100"]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("multiple of 8"));

    // Off again: the run without fingerprints removes the file the manifest no longer lists.
    project.featurize_ok(&[]);
    assert!(!fingerprints.exists(), "a stale fingerprints.parquet outlived the run that turned them off");
}

/// Expected outcome of every row of tests/fixtures/hostile.csv (see make_hostile.py): `None` =
/// accepted, else the start of the reject reason.
const HOSTILE_EXPECTED: [(u32, Option<&str>); 19] = [
    (0, None),
    (1, Some("SMILES over a size limit (checked before parsing): 3000 atoms > 1000")),
    (2, Some("SMILES over a size limit (checked before parsing): 5000 atoms > 1000")),
    (3, Some("SMILES over a size limit (checked before parsing): 70000 characters > 10000")),
    (4, Some("SMILES over a size limit (checked before parsing): 500 fragments > 64")),
    (5, Some("SMILES cell holds whitespace, a control or a non-ASCII character: ' ' at character 2")),
    (6, Some("SMILES cell holds whitespace, a control or a non-ASCII character: 'Ö' at character 1")),
    (7, Some("SMILES cell holds whitespace, a control or a non-ASCII character: '\\t' at character 3")),
    (8, None),
    (9, Some("RDKit could not parse SMILES: unclosed ring")),
    (10, Some("RDKit rejected the molecule: Explicit valence for atom # 0 C, 5")),
    (11, Some("empty SMILES")),
    (12, None),
    (13, None),
    (14, None),
    (15, Some("SMILES cell holds whitespace, a control or a non-ASCII character: '\\0' at character 2")),
    (16, None),
    (17, None),
    (18, Some("SMILES cell holds whitespace, a control or a non-ASCII character: '\\n' at character 2")),
];

/// The adversarial corpus: rows that used to abort the run (stack overflow), stall it for minutes or
/// be read as another molecule all end as rejects with their reason, and every other row survives.
#[test]
fn hostile_rows_are_rejects_and_the_rest_featurizes() {
    let project = Project::new("hostile.csv");
    let stdout = project.featurize_ok(&["--threads", "2"]);
    let accepted = HOSTILE_EXPECTED.iter().filter(|(_, r)| r.is_none()).count();
    assert!(stdout.contains(&format!("19 rows -> {accepted} molecules, {} rejected", 19 - accepted)), "{stdout}");
    let tables = read_with_pyarrow(&project.stage_dir());
    let ids: Vec<u64> = tables["graphs"]["columns"]["mol_id"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, HOSTILE_EXPECTED.iter().filter(|(_, r)| r.is_none()).map(|(i, _)| *i as u64).collect::<Vec<_>>());
    assert_eq!(tables["graphs"]["columns"]["num_atoms"][3], 999, "the 999-atom ring parsed on the worker's deep stack");
    let rejects = &tables["rejects"]["columns"];
    let rows: Vec<u64> = rejects["row"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let expected: Vec<(u32, &str)> = HOSTILE_EXPECTED.iter().filter_map(|(i, r)| r.map(|r| (*i, r))).collect();
    assert_eq!(rows, expected.iter().map(|(i, _)| *i as u64).collect::<Vec<_>>());
    for (k, (row, reason)) in expected.iter().enumerate() {
        let found = rejects["reason"][k].as_str().unwrap();
        assert!(found.starts_with(reason), "row {row}: {found:?} does not start with {reason:?}");
    }
    // A limit is a setting (and part of the cache key): lowered, ethanol is over it.
    let stdout = project.featurize_ok(&["--max-atoms", "2", "--limit", "1"]);
    assert!(stdout.contains("1 rows -> 0 molecules, 1 rejected"), "{stdout}");
}

/// (algorithm version, digest of the outputs on tests/fixtures/featurize.csv), oldest first. If this
/// test fails because the output changed on purpose, bump `molpeg_core::versions::FEATURIZE` and append
/// the new pair (the failure message gives it); never edit an old entry.
const FEATURIZE_GOLDEN: &[(u32, &str)] = &[
    (1, "111f9de28ca05996c55a386e7726f86b0d4f9ad7dd493dae34340227c9ac7c2b"),
    // Parse rejects carry RDKit's message.
    (2, "c222594561857835c60700c2f58f9fadb0ac3b4b783e29af337fc540ccf7444f"),
];

#[test]
fn featurize_output_is_pinned_to_its_algorithm_version() {
    let project = Project::new("featurize.csv");
    project.featurize_ok(&[]);
    let tables = read_with_pyarrow(&project.stage_dir());
    let text = serde_json::to_string(&json!([tables["graphs"]["columns"], tables["rejects"]["columns"]])).unwrap();
    let digest = molpeg_core::versions::digest(&text);
    if let Err(message) = molpeg_core::versions::check_golden("featurize", FEATURIZE_GOLDEN, &digest) {
        panic!("{message}");
    }
}

/// A same-size corruption of an output is not "up to date": the stage reruns and restores it; a
/// copied runs directory checks its own files.
#[test]
fn corrupted_or_copied_outputs_are_checked_byte_for_byte() {
    let project = Project::new("featurize.csv");
    project.featurize_ok(&[]);
    let graphs = project.stage_dir().join("graphs.parquet");
    let good = std::fs::read(&graphs).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&graphs, &bad).unwrap();
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("13 rows -> 9 molecules"), "a corrupted output must rerun the stage: {stdout}");
    assert_eq!(std::fs::read(&graphs).unwrap(), good);

    // cp -r runs runs2, then truncate a file in the copy only.
    let copy = project.dir.path().join("runs2/fixture/featurize");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(project.stage_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let run_copy = |extra: &[&str]| {
        let mut args = vec!["--runs-dir", "runs2"];
        args.extend_from_slice(extra);
        project.featurize_ok(&args)
    };
    assert!(run_copy(&[]).contains("up to date"), "an intact copy is up to date");
    std::fs::write(copy.join("graphs.parquet"), &good[..good.len() - 10]).unwrap();
    assert!(run_copy(&[]).contains("13 rows -> 9 molecules"), "a truncated file in the copy reruns the copy");
    assert!(project.featurize_ok(&[]).contains("up to date"), "the original is untouched");
}

/// Compares each table of `tables` under stage directories `a` and `b` with pyarrow: read as a user
/// reads them (`pq.read_table` takes a file or a directory of parts), every column's type and values.
/// Returns per table {"equal", "rows", "parts"} (`parts`: files under `b`'s path, 0 for one file).
fn compare_with_pyarrow(a: &Path, b: &Path, tables: &[&str]) -> Value {
    const SCRIPT: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
a, b, names = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {}
for name in names:
    ta, tb = pq.read_table(os.path.join(a, name)), pq.read_table(os.path.join(b, name))
    same_types = [(f.name, str(f.type)) for f in ta.schema] == [(f.name, str(f.type)) for f in tb.schema]
    pb = os.path.join(b, name)
    out[name] = {"equal": same_types and ta.to_pydict() == tb.to_pydict(), "rows": tb.num_rows, "parts": len(os.listdir(pb)) if os.path.isdir(pb) else 0}
print(json.dumps(out))
"#;
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python).args(["-c", SCRIPT]).arg(a).arg(b).args(tables).output().unwrap();
    assert!(output.status.success(), "pyarrow comparison failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `--shard I/N`: three shards (fingerprints on) write parts that pyarrow and molpeg's own reader
/// read as one table, equal column for column to a run without shards; each shard skips on its own
/// manifest; a missing part is an error naming the shard to run; a Slurm array's variables choose
/// the shard; a later run without shards replaces the parts by one file.
#[test]
fn shards_write_parts_that_read_as_the_single_process_tables() {
    let project = Project::new("featurize.csv");
    let d = project.dir.path();
    project.featurize_ok(&["--runs-dir", "single", "--fingerprints"]);
    let single = d.join("single/fixture/featurize");
    let stage = project.stage_dir();
    let mut rows = 0;
    for i in 0..3 {
        let stdout = project.featurize_ok(&["--fingerprints", "--shard", &format!("{i}/3")]);
        assert!(stdout.starts_with(&format!("featurize shard {i}/3: ")), "{stdout}");
        rows += stdout.split(": ").nth(1).unwrap().split(" rows").next().unwrap().parse::<usize>().unwrap();
        assert!(stage.join(format!("manifest-part-0000{i}-of-00003.json")).is_file());
    }
    assert_eq!(rows, FIXTURE_ROWS, "the slices cover the input once");
    assert!(!stage.join("manifest.json").exists() && stage.join("graphs.parquet").is_dir());
    let compared = compare_with_pyarrow(&single, &stage, &["graphs.parquet", "rejects.parquet", "fingerprints.parquet"]);
    for table in ["graphs.parquet", "rejects.parquet", "fingerprints.parquet"] {
        assert_eq!(compared[table]["equal"], true, "{table}: {compared}");
        assert_eq!(compared[table]["parts"], 3, "{table}: {compared}");
    }
    // molpeg's reader: one table in row order, the single file's mol_ids.
    let ids = |path: &Path| -> Vec<u32> {
        let source = molpeg_core::parquet_io::ParquetSource::open(path, &molpeg_core::schema::graphs::schema()).unwrap();
        let batches = source.collect_columns(&["mol_id"]).unwrap();
        batches.iter().flat_map(|b| molpeg_core::columns::u32_values(path, "mol_id", b.column(0), 0).unwrap()).collect()
    };
    assert_eq!(ids(&stage.join("graphs.parquet")), ids(&single.join("graphs.parquet")));

    assert!(project.featurize_ok(&["--fingerprints", "--shard", "1/3"]).contains("up to date"));
    let slurm = Command::new(env!("CARGO_BIN_EXE_molpeg-featurize"))
        .args(["--pipeline", "pipeline.toml", "--runs-dir", "runs", "--fingerprints"])
        .current_dir(d)
        .env("MOLPEG_DATA_DIR", d.join("data"))
        .envs([("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&slurm.stdout).contains("up to date"), "the Slurm array chose shard 2/3: {slurm:?}");

    // A killed shard: its part is missing, and readers say which shard to run.
    std::fs::remove_file(stage.join("graphs.parquet/part-00001-of-00003.parquet")).unwrap();
    let err = molpeg_core::parquet_io::ParquetSource::open(stage.join("graphs.parquet"), &molpeg_core::schema::graphs::schema()).err().unwrap().to_string();
    assert!(err.contains("--shard 1/3") && err.contains("graphs.parquet"), "{err}");
    let stdout = project.featurize_ok(&["--fingerprints", "--shard", "1/3"]);
    assert!(stdout.starts_with("featurize shard 1/3: "), "the damaged shard reruns: {stdout}");
    assert_eq!(compare_with_pyarrow(&single, &stage, &["graphs.parquet"])["graphs.parquet"]["equal"], true);

    // Back to one process: the part directories and shard manifests go.
    project.featurize_ok(&["--fingerprints"]);
    assert!(stage.join("graphs.parquet").is_file() && stage.join("fingerprints.parquet").is_file());
    assert!(!stage.join("manifest-part-00000-of-00003.json").exists());
    assert_eq!(compare_with_pyarrow(&single, &stage, &["graphs.parquet"])["graphs.parquet"]["equal"], true);
}

/// The Ray driver (scripts/molpeg_ray.py) on a real local Ray of 2 CPUs (tests/ray_harness.py starts
/// it once for both drives): BBBP (tests/fixtures/bbbp-158.csv) featurized in 4 shards equals the
/// single-process tables (pyarrow, every column); after one part is deleted (a killed shard), the
/// next drive reruns only that shard. Skipped with a notice when $MOLPEG_PYTHON has no ray.
#[test]
fn ray_driver_featurizes_in_shards_equal_to_one_process_and_reruns_only_unfinished_shards() {
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    if !Command::new(&python).args(["-c", "import ray"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: {python} has no ray (run `just setup`)");
        return;
    }
    let project = Project::with_labels("bbbp-158.csv", r#"["p_np"]"#);
    let d = project.dir.path();
    project.featurize_ok(&["--runs-dir", "single"]);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_molpeg-featurize")).parent().unwrap();
    let drive = json!({"cwd": d, "argv": ["featurize", "pipeline.toml", "--shards", "4", "--runs-dir", "runs", "--bin-dir", bin_dir]});
    let stage = project.stage_dir();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ray_harness.py");
    let run_drives = |drives: Value| -> Vec<Value> {
        let (drives_path, results_path) = (d.join("drives.json"), d.join("drive-results.json"));
        std::fs::write(&drives_path, drives.to_string()).unwrap();
        let run = Command::new(&python)
            .arg(&harness)
            .arg("2")
            .arg(&drives_path)
            .arg(&results_path)
            .env("MOLPEG_DATA_DIR", d.join("data"))
            .env_remove("MOLPEG_DATA_MIRROR")
            .env_remove("RAY_ADDRESS")
            .env_remove("MOLPEG_RUNS_DIR")
            .output()
            .unwrap();
        assert!(run.status.success(), "ray harness failed:\n{}", String::from_utf8_lossy(&run.stderr));
        serde_json::from_slice::<Value>(&std::fs::read(&results_path).unwrap()).unwrap().as_array().unwrap().clone()
    };
    // Drive, kill shard 2's output, drive again: one Ray for both.
    let kill = json!({"remove": stage.join("graphs.parquet/part-00002-of-00004.parquet")});
    let results = run_drives(json!([drive, kill, drive]));
    let first = results[0]["stderr"].as_str().unwrap();
    assert_eq!(results[0]["rc"], 0, "{first}");
    assert!(first.contains("4/4 shards done") && first.contains("158 molecules"), "{first}");
    let compared = compare_with_pyarrow(&d.join("single/fixture/featurize"), &stage, &["graphs.parquet", "rejects.parquet"]);
    assert_eq!(compared["graphs.parquet"]["equal"], true, "{compared}");
    assert_eq!(compared["graphs.parquet"]["parts"], 4);
    assert_eq!(compared["rejects.parquet"]["equal"], true, "{compared}");
    let again = results[2]["stderr"].as_str().unwrap();
    assert_eq!(results[2]["rc"], 0, "{again}");
    // Shard 2 of 4 holds rows 79..118: only its 39 rows are featurized again.
    assert!(again.contains("4/4 shards done") && again.contains("; 39 molecules"), "{again}");
    assert_eq!(compare_with_pyarrow(&d.join("single/fixture/featurize"), &stage, &["graphs.parquet"])["graphs.parquet"]["equal"], true);
}

/// A project whose pipeline file is `text` with `{fixture}` replaced by the fixture's path.
fn project_with(text: &str, fixture: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(fixture).canonicalize().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), text.replace("{fixture}", &format!("{:?}", path.display().to_string()))).unwrap();
    Project { dir }
}

/// Reads a Parquet file with pyarrow: `{"columns": ..., "metadata": ...}`.
fn pyarrow_table(path: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"columns": t.to_pydict(), "metadata": {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items() if not k.startswith(b"ARROW")}, "types": {f.name: str(f.type) for f in t.schema}}))
"#;
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python).args(["-c", SCRIPT]).arg(path).output().unwrap();
    assert!(output.status.success(), "pyarrow could not read {}:\n{}", path.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

const QM9_PIPELINE: &str = r#"name = "fixture"

[dataset]
name = "qm9"
file = "qm9-42.csv"
path = {fixture}
smiles_column = "SMILES"
label_columns = ["HOMO_LUMO_gap_au", "InternalEnergy_0K_au", "ZPVE_au"]
ignore_columns = ["Index"]
task_type = "regression"
geometry = { elements = "Elements", positions = "XYZ_Ang" }

[dataset.label_units]
HOMO_LUMO_gap_au = { name = "gap", unit = "eV", scale = 27.211386245988 }
InternalEnergy_0K_au = { name = "U0", unit = "eV", scale = 27.211386245988 }
ZPVE_au = { name = "ZPVE", unit = "eV", scale = 27.211386245988 }
"#;

/// Issue 14, data: QM9's DFT geometry (tests/fixtures/qm9-42.csv: its first 40 molecules, then
/// methane's geometry under ethane's SMILES and an unknown element) goes to atoms3d.parquet, every
/// atom with hydrogens, keyed and ordered like graphs.parquet; a geometry whose heavy atoms are not
/// the SMILES's atoms, or that cannot be read, is a reject with the reason; the labels are in eV
/// (known values of methane), with the task names and units in the metadata.
#[test]
fn qm9_geometry_goes_to_atoms3d_and_labels_are_converted_to_ev() {
    let project = project_with(QM9_PIPELINE, "qm9-42.csv");
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("42 rows -> 40 molecules, 2 rejected"), "{stdout}");
    let stage = project.stage_dir();
    let graphs = pyarrow_table(&stage.join("graphs.parquet"));
    let atoms = pyarrow_table(&stage.join("atoms3d.parquet"));
    assert_eq!(atoms["types"], json!({"mol_id": "uint32", "atomic_numbers": "list<item: uint8 not null>", "positions": "list<item: fixed_size_list<item: float not null>[3] not null>"}));
    assert_eq!(atoms["columns"]["mol_id"], graphs["columns"]["mol_id"], "same molecules, same order");
    assert_eq!(atoms["metadata"]["molpeg.kind"], "atoms3d");
    assert_eq!(atoms["metadata"]["molpeg.geometry"], "dataset:XYZ_Ang");
    // Methane: C then four H, the file's coordinates.
    assert_eq!(atoms["columns"]["atomic_numbers"][0], json!([6, 1, 1, 1, 1]));
    let h = &atoms["columns"]["positions"][0][2];
    for (k, want) in [1.0117308433f64, 1.4637511618, 0.0002765748].iter().enumerate() {
        assert!((h[k].as_f64().unwrap() - want).abs() < 1e-6, "{h}");
    }
    // Every molecule: heavy atoms = the graph's atoms, and every hydrogen kept (as many as RDKit's
    // total H count over the graph's atoms, OGB feature 4).
    let numbers = atoms["columns"]["atomic_numbers"].as_array().unwrap();
    for (m, z) in numbers.iter().enumerate() {
        let z: Vec<u64> = z.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(z.iter().filter(|&&z| z != 1).count() as u64, graphs["columns"]["num_atoms"][m].as_u64().unwrap());
        let graph_hs: u64 = graphs["columns"]["atom_ogb"][m].as_array().unwrap().iter().map(|a| a[4].as_u64().unwrap()).sum();
        assert_eq!(z.iter().filter(|&&z| z == 1).count() as u64, graph_hs, "molecule {m}: {z:?}");
    }
    // Methane in eV: gap 0.5048 Ha, U0 −40.47893 Ha, ZPVE 0.044749 Ha.
    let labels = &graphs["columns"]["labels"][0];
    for (k, hartree) in [0.5048f64, -40.47893, 0.044749].iter().enumerate() {
        let ev = hartree * 27.211386245988;
        assert!((labels[k].as_f64().unwrap() - ev).abs() < 1e-5 * ev.abs().max(1.0), "task {k}: {labels} vs {ev}");
    }
    assert!((labels[0].as_f64().unwrap() - 13.7363).abs() < 1e-3);
    assert_eq!(graphs["metadata"]["molpeg.task_names"], r#"["gap","U0","ZPVE"]"#);
    assert_eq!(graphs["metadata"]["molpeg.task_units"], r#"["eV","eV","eV"]"#);
    assert_eq!(graphs["metadata"]["molpeg.task_type"], "regression");

    let rejects = pyarrow_table(&stage.join("rejects.parquet"));
    assert_eq!(rejects["columns"]["row"], json!([40, 41]));
    let reasons = rejects["columns"]["reason"].as_array().unwrap();
    assert_eq!(reasons[0], "geometry and SMILES disagree in heavy-atom count: 2 atoms in the SMILES, 1 non-hydrogen atoms in the geometry");
    assert!(reasons[1].as_str().unwrap().starts_with("unreadable geometry: unknown element symbol \"Xx\""), "{}", reasons[1]);

    // An unchanged rerun is a skip.
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("up to date"), "{stdout}");
}

/// RDKit conformers for a dataset without coordinates (`geometry = "etkdg"` / `"etkdg+mmff"`):
/// seeded (a rerun writes the same bytes; another seed moves the atoms), hydrogens added, heavy
/// atoms matching the graph, bond lengths of real molecules; conformers/s in the summary.
#[test]
fn etkdg_conformers_are_seeded_with_hydrogens_and_sane_bond_lengths() {
    let text = r#"name = "fixture"

[dataset]
name = "bbbp"
file = "bbbp-158.csv"
path = {fixture}
smiles_column = "smiles"
label_columns = ["p_np"]
ignore_columns = ["num", "name"]
task_type = "binary"

[featurize]
geometry = "etkdg"
limit = 12
"#;
    let project = project_with(text, "bbbp-158.csv");
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("12 rows -> "), "{stdout}");
    let stage = project.stage_dir();
    let atoms_path = stage.join("atoms3d.parquet");
    let first = std::fs::read(&atoms_path).unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(stage.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["summary"]["conformers_per_second"].as_f64().unwrap() > 0.0, "{}", manifest["summary"]);
    assert_eq!(manifest["summary"]["geometry"], "etkdg");
    project.featurize_ok(&["--force", "--threads", "1"]);
    assert_eq!(std::fs::read(&atoms_path).unwrap(), first, "the same seed gives the same conformers, whatever the threads");

    let atoms = pyarrow_table(&atoms_path);
    let graphs = pyarrow_table(&stage.join("graphs.parquet"));
    assert_eq!(atoms["metadata"]["molpeg.geometry"], "etkdg");
    assert_eq!(atoms["metadata"]["molpeg.conformer_seed"], "42");
    let numbers = atoms["columns"]["atomic_numbers"].as_array().unwrap();
    let positions = atoms["columns"]["positions"].as_array().unwrap();
    let edges = graphs["columns"]["edge_index"].as_array().unwrap();
    let mut bonded = Vec::new();
    for (m, z) in numbers.iter().enumerate() {
        let z: Vec<u64> = z.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let heavy = z.iter().take_while(|&&z| z != 1).count();
        assert_eq!(heavy as u64, graphs["columns"]["num_atoms"][m].as_u64().unwrap(), "heavy atoms first, in the graph's order");
        assert!(z[heavy..].iter().all(|&z| z == 1), "then the added hydrogens");
        let xyz = |i: usize| -> Vec<f64> { positions[m][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        // Heavy atoms are in the graph's order, so its bonds index the conformer.
        for e in edges[m].as_array().unwrap() {
            let (a, b) = (e[0].as_u64().unwrap() as usize, e[1].as_u64().unwrap() as usize);
            let (p, q) = (xyz(a), xyz(b));
            bonded.push(((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt());
        }
    }
    assert!(!bonded.is_empty());
    assert!(bonded.iter().all(|&d| (0.9..2.3).contains(&d)), "bond lengths in Å: {bonded:?}");

    // Another seed, another conformer; MMFF relaxation runs too.
    let text_mmff = text.replace("geometry = \"etkdg\"", "geometry = \"etkdg+mmff\"\nconformer_seed = 7");
    std::fs::write(project.dir.path().join("pipeline.toml"), text_mmff.replace("{fixture}", &format!("{:?}", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bbbp-158.csv").canonicalize().unwrap().display().to_string()))).unwrap();
    let stdout = project.featurize_ok(&[]);
    assert!(stdout.contains("12 rows -> "), "a new geometry setting reruns: {stdout}");
    assert_ne!(std::fs::read(&atoms_path).unwrap(), first);
    assert_eq!(pyarrow_table(&atoms_path)["metadata"]["molpeg.geometry"], "etkdg+mmff");

    // `dataset` on a dataset without geometry columns is a clear error.
    std::fs::write(project.dir.path().join("pipeline.toml"), std::fs::read_to_string(project.dir.path().join("pipeline.toml")).unwrap().replace("geometry = \"etkdg+mmff\"", "geometry = \"dataset\"")).unwrap();
    let output = project.featurize(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("names no geometry columns"), "{stderr}");
}
