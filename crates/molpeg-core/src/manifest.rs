//! Stage manifests: the cache key of a stage run (stage name, tool version, resolved parameters,
//! input hashes) written next to its outputs, last. An unchanged rerun finds a matching manifest and is
//! skipped; a run that was interrupted left no manifest, so it reruns.

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
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        Ok(FileRecord { path: path.display().to_string(), sha256: sha256_file(path)?, bytes })
    }
}

/// What a stage's output directory records about the run that produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub tool_version: String,
    pub params: serde_json::Value,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
    /// Stage summary (counts, timings); informative, not part of the cache key.
    #[serde(default)]
    pub summary: serde_json::Value,
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
    params: serde_json::Value,
    inputs: Vec<FileRecord>,
}

impl StageRun {
    /// Hashes the inputs and resolves the key. `params` must hold every setting that changes outputs.
    pub fn new(stage: &str, dir: impl Into<PathBuf>, params: &impl Serialize, inputs: &[&Path]) -> Result<Self> {
        let params = serde_json::to_value(params).map_err(|e| Error::Other(format!("cannot serialize {stage} parameters: {e}")))?;
        let inputs = inputs.iter().map(|p| FileRecord::of(p)).collect::<Result<_>>()?;
        Ok(StageRun { stage: stage.to_string(), dir: dir.into(), params, inputs })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// The previous run's manifest, if its key equals this run's and its outputs are still intact.
    pub fn cached(&self) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.manifest_path()).ok()?;
        let old: Manifest = serde_json::from_str(&text).ok()?;
        let same_key = old.stage == self.stage && old.tool_version == crate::TOOL_VERSION && old.params == self.params && old.inputs == self.inputs;
        let outputs_intact = old.outputs.iter().all(|o| std::fs::metadata(&o.path).map(|m| m.len() == o.bytes).unwrap_or(false));
        (same_key && outputs_intact).then_some(old)
    }

    /// Removes an old manifest so that a run interrupted from here on is never mistaken for complete.
    pub fn begin(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        match std::fs::remove_file(self.manifest_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(self.manifest_path(), e)),
            _ => Ok(()),
        }
    }

    /// Records the outputs and writes the manifest, last.
    pub fn finish(self, outputs: &[&Path], summary: &impl Serialize) -> Result<Manifest> {
        let manifest = Manifest {
            outputs: outputs.iter().map(|p| FileRecord::of(p)).collect::<Result<_>>()?,
            summary: serde_json::to_value(summary).unwrap_or(serde_json::Value::Null),
            stage: self.stage,
            tool_version: crate::TOOL_VERSION.to_string(),
            params: self.params,
            inputs: self.inputs,
        };
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        atomic::write_atomic(self.dir.join(MANIFEST_FILE), text.as_bytes())?;
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

        let run = StageRun::new("demo", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap();
        assert!(run.cached().is_none());
        run.begin().unwrap();
        std::fs::write(&output, "result").unwrap();
        run.finish(&[&output], &()).unwrap();

        assert!(StageRun::new("demo", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_some());
        assert!(StageRun::new("demo", &out_dir, &serde_json::json!({"k": 2}), &[&input]).unwrap().cached().is_none());
        std::fs::write(&input, "b").unwrap();
        assert!(StageRun::new("demo", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_none());
        std::fs::write(&input, "a").unwrap();
        std::fs::write(&output, "truncated").unwrap();
        assert!(StageRun::new("demo", &out_dir, &serde_json::json!({"k": 1}), &[&input]).unwrap().cached().is_none());
    }
}
