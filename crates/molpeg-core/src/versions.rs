//! Per-stage algorithm versions: part of every stage's cache key (see [`crate::manifest`]), so a
//! code change that changes a stage's output for the same inputs and settings reruns that stage and
//! everything downstream of it, while changes that do not (a faster kernel, a better message) keep the
//! cache.
//!
//! Bump a stage's number whenever its output for unchanged inputs and settings changes. The tests make
//! that hard to forget: each stage has a golden test that runs it on a tiny fixture and compares a digest
//! of its output with the digest recorded for the current version (`GOLDEN` lists in the stage crates'
//! tests, e.g. `crates/molpeg-chem/tests/featurize.rs`). A change of output fails that test; the fix is a
//! new `(version, digest)` entry with the bumped number here, never an edited old entry.
//!
//! Why versions and not the build's commit: a commit key would rerun every stage after any commit (a
//! comment, a README), which is hours of training for nothing; a version says what changed.

/// Featurize: SMILES → graphs.parquet, rejects.parquet (and fingerprints.parquet).
pub const FEATURIZE: u32 = 1;
/// Split: graphs → split.parquet.
pub const SPLIT: u32 = 1;
/// Select: scores/signals → coreset.parquet.
pub const SELECT: u32 = 1;
/// Score: MolPeg dual-pace scoring → scores.parquet, sample_scores.parquet.
pub const SCORE: u32 = 1;
/// Fine-tune (full, coreset or dynamic) → metrics.parquet, summary.json, model.safetensors,
/// predictions.parquet. 2: per-task rows and the `task` column in metrics.parquet (issue 15).
pub const FINETUNE: u32 = 2;
/// Pretrain (masked-attribute GraphMAE-style) → encoder.safetensors, pretrain_log.parquet.
pub const PRETRAIN: u32 = 1;
/// The scaling sweep → results.parquet (each cell also a fine-tuning run).
pub const SCALING: u32 = 1;
/// Predict: a model on new molecules → predictions.parquet, rejects.parquet. Its test pins it to the
/// fine-tune stage's own test predictions (exact equality), which is stricter than a digest.
pub const PREDICT: u32 = 1;

/// Every stage that writes a manifest, by its stage name.
pub const STAGES: &[(&str, u32)] = &[
    ("featurize", FEATURIZE),
    ("split", SPLIT),
    ("select", SELECT),
    ("score", SCORE),
    ("finetune", FINETUNE),
    ("pretrain", PRETRAIN),
    ("scaling", SCALING),
    ("predict", PREDICT),
];

/// The algorithm version of `stage`, if it is a known stage.
pub fn of(stage: &str) -> Option<u32> {
    STAGES.iter().find(|(name, _)| *name == stage).map(|(_, v)| *v)
}

/// Checks a golden history `[(version, digest), ...]` (oldest first) against the stage's current
/// version and the digest of its current output; the message says what to do. For the stage crates'
/// golden tests.
pub fn check_golden(stage: &str, history: &[(u32, &str)], digest: &str) -> Result<(), String> {
    let current = of(stage).ok_or_else(|| format!("unknown stage {stage}"))?;
    let versions: Vec<u32> = history.iter().map(|(v, _)| *v).collect();
    if versions.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{stage}: golden history versions must increase: {versions:?}"));
    }
    let Some(&(last_version, last_digest)) = history.last() else { return Err(format!("{stage}: empty golden history")) };
    if let Some((v, _)) = history[..history.len() - 1].iter().find(|(_, d)| *d == digest) {
        return Err(format!("{stage}: the output is back to version {v}'s digest; add a new version rather than reusing one"));
    }
    if last_digest != digest {
        return Err(format!(
            "{stage}: the output on the golden fixture changed (digest {digest}, version {last_version} recorded {last_digest}). \
             If the change is intended, bump molpeg_core::versions::{} to {} and append ({}, \"{digest}\") to the golden history; \
             if not, it is a regression.",
            stage.to_uppercase(),
            current.max(last_version) + 1,
            current.max(last_version) + 1
        ));
    }
    if last_version != current {
        return Err(format!("{stage}: golden history ends at version {last_version} but molpeg_core::versions says {current}"));
    }
    Ok(())
}

/// sha256 of `text`, for golden digests.
pub fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_history_rules() {
        let d = digest("x");
        assert!(check_golden("split", &[(SPLIT, &d)], &d).is_ok());
        let err = check_golden("split", &[(SPLIT, &d)], &digest("y")).unwrap_err();
        assert!(err.contains("bump molpeg_core::versions::SPLIT to 2"), "{err}");
        assert!(check_golden("split", &[(SPLIT + 1, &d)], &d).unwrap_err().contains("says 1"));
        assert!(check_golden("split", &[(2, "a"), (1, &d)], &d).unwrap_err().contains("increase"));
        assert!(check_golden("split", &[(0, &d), (1, "b")], &d).unwrap_err().contains("back to version 0"));
        assert!(STAGES.iter().all(|(name, v)| of(name) == Some(*v)));
    }
}
