//! Stage manifests: the cache key of a stage run (stage name, the stage's algorithm version, resolved
//! parameters, input hashes) written next to its outputs, last. An unchanged rerun finds a matching
//! manifest and is skipped; a run that was interrupted left no manifest, so it reruns.
//!
//! What a skip trusts, and why it may: every recorded output is re-hashed (sha256, the same hash the
//! manifest records) and must match byte for byte, so a corrupted, truncated or replaced output reruns
//! the stage. Hashing costs about 1 s per GB (MOSES' graphs.parquet, the largest output, in well under a
//! second), small against any stage it saves. Output paths are stored relative to the stage directory,
//! so a copied runs directory checks its own files, never the original's. Inputs are compared by content
//! (sha256 and size), not by path: the same bytes under another path are the same input.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{atomic, Error, Result};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

impl FileRecord {
    /// `path` as given (inputs: informative only). A dataset directory of shard parts
    /// ([`crate::dataset`]) is one record: the sha256 of its parts' names and hashes, in order, and
    /// their total size.
    pub fn of(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let parts = crate::dataset::parts(path)?.iter().map(|p| FileRecord::of(p)).collect::<Result<Vec<_>>>()?;
            return Ok(FileRecord::of_parts(path, &parts));
        }
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        Ok(FileRecord { path: path.display().to_string(), sha256: sha256_file(path)?, bytes })
    }

    fn of_parts(dir: &Path, parts: &[FileRecord]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            let name = Path::new(&part.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            hasher.update(format!("{name} {}\n", part.sha256));
        }
        FileRecord { path: dir.display().to_string(), sha256: hex::encode(hasher.finalize()), bytes: parts.iter().map(|p| p.bytes).sum() }
    }

    /// An output, its path recorded relative to the stage directory `dir` when it lies inside it.
    fn output(dir: &Path, path: &Path) -> Result<Self> {
        let mut record = FileRecord::of(path)?;
        if let Ok(relative) = path.strip_prefix(dir) {
            record.path = relative.display().to_string();
        }
        Ok(record)
    }

    fn same_content(&self, other: &FileRecord) -> bool {
        self.sha256 == other.sha256 && self.bytes == other.bytes
    }

    /// Whether the output this record describes is still there, byte for byte.
    fn intact_in(&self, dir: &Path) -> bool {
        let path = dir.join(&self.path); // an absolute path (old manifests) stays absolute
        std::fs::metadata(&path).map(|m| m.len() == self.bytes).unwrap_or(false) && sha256_file(&path).map(|h| h == self.sha256).unwrap_or(false)
    }
}

/// What a stage's output directory records about the run that produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub tool_version: String,
    /// [`crate::versions`]: bumped whenever the stage's output for the same inputs changes. Manifests
    /// written before versions existed read as 0, so they rerun.
    #[serde(default)]
    pub algorithm_version: u32,
    pub params: serde_json::Value,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
    /// Stage summary (counts, timings); informative, not part of the cache key.
    #[serde(default)]
    pub summary: serde_json::Value,
}

/// An input's record. An input written by an upstream stage (a manifest beside it lists it) must
/// still be the file that stage recorded: a file changed or damaged after its stage finished would
/// otherwise be used as is. A dataset directory's parts are each checked against their shard's
/// manifest.
fn input_record(path: &Path) -> Result<FileRecord> {
    if !path.is_dir() {
        let record = FileRecord::of(path)?;
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            check_against_producer(path, &record, &dir.join(MANIFEST_FILE), Path::new(name))?;
        }
        return Ok(record);
    }
    let mut parts = Vec::new();
    for part in crate::dataset::parts(path)? {
        let record = FileRecord::of(&part)?;
        if let (Some(table), Some(stage_dir), Some(stem), Some(name)) = (path.file_name(), path.parent(), part.file_stem(), part.file_name()) {
            let manifest = stage_dir.join(format!("manifest-{}.json", stem.to_string_lossy()));
            check_against_producer(&part, &record, &manifest, &Path::new(table).join(name))?;
        }
        parts.push(record);
    }
    Ok(FileRecord::of_parts(path, &parts))
}

/// Checks that `record` (of `path`) is the output `manifest` records under a path ending in `relative`.
fn check_against_producer(path: &Path, record: &FileRecord, manifest: &Path, relative: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(manifest) else { return Ok(()) };
    let Ok(producer) = serde_json::from_str::<Manifest>(&text) else { return Ok(()) };
    let Some(recorded) = producer.outputs.iter().find(|o| Path::new(&o.path).ends_with(relative)) else {
        return Ok(());
    };
    if recorded.same_content(record) {
        return Ok(());
    }
    Err(Error::invalid(
        path,
        format!(
            "this file is not the one the `{stage}` stage wrote (its manifest records {} bytes, sha256 {}; the file has {} bytes, sha256 {}): it changed or was damaged afterwards. \
             Rerun the `{stage}` stage (e.g. `just {stage} NAME`; an unchanged rerun detects the change and rewrites it)",
            recorded.bytes,
            &recorded.sha256[..12.min(recorded.sha256.len())],
            record.bytes,
            &record.sha256[..12.min(record.sha256.len())],
            stage = producer.stage
        ),
    ))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// What a stage invocation did.
pub enum Outcome<S> {
    /// Outputs were up to date with inputs and parameters; nothing ran. Holds the stage directory.
    UpToDate(PathBuf),
    Ran(S),
}

/// A stage run about to happen: its key is computed before any work.
pub struct StageRun {
    pub stage: String,
    pub dir: PathBuf,
    /// The manifest's file name in `dir`.
    manifest: String,
    algorithm_version: u32,
    params: serde_json::Value,
    inputs: Vec<FileRecord>,
}

impl StageRun {
    /// Hashes the inputs and resolves the key. `params` must hold every setting that changes outputs;
    /// `stage` must have an entry in [`crate::versions::STAGES`].
    pub fn new(stage: &str, dir: impl Into<PathBuf>, params: &impl Serialize, inputs: &[&Path]) -> Result<Self> {
        let algorithm_version = crate::versions::of(stage).ok_or_else(|| Error::Other(format!("internal: stage `{stage}` has no entry in molpeg_core::versions::STAGES")))?;
        let params = serde_json::to_value(params).map_err(|e| Error::Other(format!("cannot serialize {stage} parameters: {e}")))?;
        let inputs: Vec<FileRecord> = inputs.iter().map(|p| input_record(p)).collect::<Result<_>>()?;
        Ok(StageRun { stage: stage.to_string(), dir: dir.into(), manifest: MANIFEST_FILE.to_string(), algorithm_version, params, inputs })
    }

    /// Records the run under another manifest name in the stage directory: a shard's
    /// ([`crate::dataset::manifest_name`]), so each shard of a stage skips or reruns on its own.
    pub fn with_manifest_name(mut self, name: String) -> Self {
        self.manifest = name;
        self
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(&self.manifest)
    }

    /// The previous run's manifest, if its key equals this run's and its outputs are still intact.
    pub fn cached(&self) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.manifest_path()).ok()?;
        let old: Manifest = serde_json::from_str(&text).ok()?;
        let same_inputs = old.inputs.len() == self.inputs.len() && old.inputs.iter().zip(&self.inputs).all(|(a, b)| a.same_content(b));
        let same_key = old.stage == self.stage
            && old.tool_version == crate::TOOL_VERSION
            && old.algorithm_version == self.algorithm_version
            && old.params == self.params
            && same_inputs;
        // Hashing is the expensive part: only when the key matches.
        (same_key && old.outputs.iter().all(|o| o.intact_in(&self.dir))).then_some(old)
    }

    /// Removes the old manifest and the outputs it lists, so that a run interrupted from here on is
    /// never mistaken for complete and leaves no earlier run's summary or model looking current; also
    /// removes temp files of killed runs.
    pub fn begin(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if let Some(old) = std::fs::read_to_string(self.manifest_path()).ok().and_then(|t| serde_json::from_str::<Manifest>(&t).ok()) {
            for output in &old.outputs {
                let path = self.dir.join(&output.path);
                // Only files inside the stage directory: an absolute path of an old manifest may
                // point into another copy of the runs directory.
                if path.starts_with(&self.dir) {
                    remove_if_present(&path)?;
                }
            }
        }
        self.begin_resumable()
    }

    /// Like [`StageRun::begin`] but keeps the previous outputs, for a stage that resumes from them
    /// (the scaling sweep reuses finished cells of its results file and checks each row itself).
    pub fn begin_resumable(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        remove_if_present(&self.manifest_path())?;
        atomic::remove_stale_temps(&self.dir)?;
        Ok(())
    }

    /// Records the outputs and writes the manifest, last.
    pub fn finish(self, outputs: &[&Path], summary: &impl Serialize) -> Result<Manifest> {
        let manifest_path = self.manifest_path();
        let manifest = Manifest {
            outputs: outputs.iter().map(|p| FileRecord::output(&self.dir, p)).collect::<Result<_>>()?,
            summary: serde_json::to_value(summary).unwrap_or(serde_json::Value::Null),
            stage: self.stage,
            tool_version: crate::TOOL_VERSION.to_string(),
            algorithm_version: self.algorithm_version,
            params: self.params,
            inputs: self.inputs,
        };
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        atomic::write_atomic(manifest_path, text.as_bytes())?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_params_inputs_and_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "a").unwrap();
        let out_dir = dir.path().join("stage");
        let output = out_dir.join("out.txt");

        let run = StageRun::new("split", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap();
        assert!(run.cached().is_none());
        run.begin().unwrap();
        std::fs::write(&output, "result").unwrap();
        run.finish(&[&output], &()).unwrap();

        assert!(StageRun::new("split", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_some());
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({"k": 2}), &[&input]).unwrap().cached().is_none());
        std::fs::write(&input, "b").unwrap();
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_none());
        std::fs::write(&input, "a").unwrap();
        std::fs::write(&output, "truncated").unwrap();
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_none());
    }

    /// A dataset directory as input: one record over its parts, checked part by part against the
    /// shards' manifests, so a part changed after its shard finished is an error naming it.
    #[test]
    fn a_directory_of_parts_is_one_input_checked_against_each_shards_manifest() {
        use crate::shard::Shard;
        let dir = tempfile::tempdir().unwrap();
        let (input, stage) = (dir.path().join("in.csv"), dir.path().join("featurize"));
        std::fs::write(&input, "smiles\nC\n").unwrap();
        for i in 0..2 {
            let shard = Some(Shard { index: i, count: 2 });
            crate::dataset::prepare(&stage, &["graphs.parquet"], shard).unwrap();
            let run = StageRun::new("featurize", &stage, &serde_json::json!({"shard": i}), &[&input]).unwrap().with_manifest_name(crate::dataset::manifest_name(shard));
            run.begin().unwrap();
            let part = crate::dataset::table_path(&stage, "graphs.parquet", shard);
            std::fs::write(&part, format!("part {i}")).unwrap();
            run.finish(&[&part], &()).unwrap();
            assert!(stage.join(format!("manifest-part-0000{i}-of-00002.json")).is_file());
            let again = StageRun::new("featurize", &stage, &serde_json::json!({"shard": i}), &[&input]).unwrap().with_manifest_name(crate::dataset::manifest_name(shard));
            assert!(again.cached().is_some(), "shard {i} skips on its own manifest");
        }
        let table = stage.join("graphs.parquet");
        let record = FileRecord::of(&table).unwrap();
        assert_eq!(record.bytes, 12);
        let downstream = StageRun::new("split", dir.path().join("split"), &serde_json::json!({}), &[&table]).unwrap();
        assert!(downstream.inputs[0].same_content(&record));
        std::fs::write(table.join("part-00001-of-00002.parquet"), "part X").unwrap();
        assert_ne!(FileRecord::of(&table).unwrap().sha256, record.sha256, "a changed part changes the record");
        let err = StageRun::new("split", dir.path().join("split"), &serde_json::json!({}), &[&table]).err().unwrap().to_string();
        assert!(err.contains("part-00001-of-00002.parquet") && err.contains("not the one the `featurize` stage wrote"), "{err}");
    }

    fn finished(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let input = dir.join("in.txt");
        std::fs::write(&input, "a").unwrap();
        let out_dir = dir.join("runs/p/stage");
        let output = out_dir.join("out.txt");
        let run = StageRun::new("split", &out_dir, &serde_json::json!({}), &[&input]).unwrap();
        run.begin().unwrap();
        std::fs::write(&output, "result").unwrap();
        run.finish(&[&output], &()).unwrap();
        (input, out_dir, output)
    }

    #[test]
    fn a_rerun_removes_the_previous_outputs_and_dead_temp_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out_dir, output) = finished(dir.path());
        let dead_temp = out_dir.join(".out.txt.999999999.tmp"); // no such pid
        let live_temp = out_dir.join(format!(".out.txt.{}.tmp", std::process::id()));
        std::fs::write(&dead_temp, "partial").unwrap();
        std::fs::write(&live_temp, "being written").unwrap();
        let run = StageRun::new("split", &out_dir, &serde_json::json!({"k": 2}), &[&input]).unwrap();
        run.begin().unwrap();
        assert!(!output.exists(), "the old output must not look current while the new run works");
        assert!(!out_dir.join(MANIFEST_FILE).exists() && !dead_temp.exists());
        assert!(live_temp.exists(), "a live process's temp file stays");
    }

    #[test]
    fn same_size_corruption_is_not_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out_dir, output) = finished(dir.path());
        std::fs::write(&output, "resulT").unwrap(); // same size, other bytes
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&input]).unwrap().cached().is_none());
    }

    #[test]
    fn a_copied_runs_directory_checks_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out_dir, _) = finished(dir.path());
        let manifest = std::fs::read_to_string(out_dir.join(MANIFEST_FILE)).unwrap();
        assert!(manifest.contains("\"path\": \"out.txt\""), "output path stored relative: {manifest}");
        let copy = dir.path().join("runs2/p/stage");
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["out.txt", MANIFEST_FILE] {
            std::fs::copy(out_dir.join(f), copy.join(f)).unwrap();
        }
        assert!(StageRun::new("split", &copy, &serde_json::json!({}), &[&input]).unwrap().cached().is_some(), "an intact copy is up to date");
        std::fs::write(copy.join("out.txt"), "res").unwrap(); // truncated in the copy only
        assert!(StageRun::new("split", &copy, &serde_json::json!({}), &[&input]).unwrap().cached().is_none());
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&input]).unwrap().cached().is_some(), "the original is untouched");
        // The same input bytes under another path are the same input.
        let moved = dir.path().join("moved.txt");
        std::fs::copy(&input, &moved).unwrap();
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&moved]).unwrap().cached().is_some());
    }

    #[test]
    fn another_algorithm_version_reruns() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out_dir, _) = finished(dir.path());
        let path = out_dir.join(MANIFEST_FILE);
        let mut manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(manifest.algorithm_version, crate::versions::of("split").unwrap());
        manifest.algorithm_version -= 1;
        std::fs::write(&path, serde_json::to_string(&manifest).unwrap()).unwrap();
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&input]).unwrap().cached().is_none());
        // A manifest from before versions existed has none: it reruns too.
        let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("algorithm_version");
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&input]).unwrap().cached().is_none());
        assert!(StageRun::new("no-such-stage", &out_dir, &serde_json::json!({}), &[&input]).is_err());
    }

    #[test]
    fn a_downstream_stage_refuses_an_input_changed_after_its_stage_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, out_dir, output) = finished(dir.path());
        let next = dir.path().join("runs/p/next");
        assert!(StageRun::new("select", &next, &serde_json::json!({}), &[&output]).is_ok());
        std::fs::write(&output, "resulT").unwrap();
        let err = StageRun::new("select", &next, &serde_json::json!({}), &[&output]).err().unwrap().to_string();
        assert!(err.contains("out.txt") && err.contains("not the one the `split` stage wrote") && err.contains("just split NAME"), "{err}");
        assert!(StageRun::new("split", &out_dir, &serde_json::json!({}), &[&dir.path().join("in.txt")]).unwrap().cached().is_none());
    }
}
