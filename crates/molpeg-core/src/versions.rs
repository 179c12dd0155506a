//! Per-stage algorithm versions: part of every stage's cache key (see [`crate::manifest`]), so a
//! code change that changes a stage's output for the same inputs and settings reruns that stage and
//! everything downstream of it, while changes that do not (a faster kernel, a better message) keep the
//! cache.
//!
//! Bump a stage's number whenever its output for unchanged inputs and settings changes. The tests make
//! that hard to forget: each stage has a golden test that runs it on a tiny fixture and compares its
//! output with the one recorded for the current version. A change of output fails that test; the fix
//! is a bumped number here and a new record, never an edited old one. Two kinds of record:
//! - stages whose output is exact on every machine (featurize, split: RDKit and integer logic) keep a
//!   digest per version ([`check_golden`], `GOLDEN` lists in their tests);
//! - the libtorch stages (score, select, finetune, pretrain) keep the output itself per version as a
//!   JSON file ([`check_golden_table`], `crates/molpeg-nn/tests/golden/<stage>-v<N>.json`) compared
//!   within a tolerance, because libtorch's CPU kernels differ in the last bits between CPU models
//!   (4-decimal digests recorded on one machine all failed on another for unchanged code), while an
//!   algorithm change moves the numbers far more. The torch golden test passes with
//!   ATEN_CPU_CAPABILITY=avx2, =default and =avx512 (three kernel sets on one machine).
//!
//! Why versions and not the build's commit: a commit key would rerun every stage after any commit (a
//! comment, a README), which is hours of training for nothing; a version says what changed.

/// Featurize: SMILES → graphs.parquet, rejects.parquet (and fingerprints.parquet). 2: parse rejects
/// carry RDKit's message (`RDKit could not parse SMILES: unclosed ring`); graphs unchanged.
pub const FEATURIZE: u32 = 2;
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

/// Every stage that writes a manifest, by its stage name, in pipeline order (molpeg-report lists
/// stages in this order).
pub const STAGES: &[(&str, u32)] = &[
    ("featurize", FEATURIZE),
    ("split", SPLIT),
    ("pretrain", PRETRAIN),
    ("score", SCORE),
    ("select", SELECT),
    ("finetune", FINETUNE),
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
        // Already bumped (current is past the history): only the entry is missing.
        let todo = if current > last_version {
            format!("append ({current}, \"{digest}\") to the golden history (molpeg_core::versions::{} is already {current})", stage.to_uppercase())
        } else {
            let next = last_version + 1;
            format!("bump molpeg_core::versions::{} to {next} and append ({next}, \"{digest}\") to the golden history", stage.to_uppercase())
        };
        return Err(format!(
            "{stage}: the output on the golden fixture changed (digest {digest}, version {last_version} recorded {last_digest}). \
             If the change is intended, {todo}; if not, it is a regression."
        ));
    }
    if last_version != current {
        return Err(format!("{stage}: golden history ends at version {last_version} but molpeg_core::versions says {current}"));
    }
    Ok(())
}

/// How far a float of a golden table may move: |actual − expected| ≤ `abs` + `rel`·|expected|.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

/// Environment variable that lets [`check_golden_table`] record a missing golden file.
pub const BLESS_ENV: &str = "MOLPEG_BLESS";

/// Compares `actual` (a stage's output as JSON: objects of columns, arrays of values) with the
/// golden file of the stage's current version, `<dir>/<stage>-v<N>.json`: same keys, lengths,
/// strings and integers; floats within `tolerance`. A missing file is an error unless `MOLPEG_BLESS=1`,
/// which writes it (an existing file is never overwritten). For the libtorch stages' golden tests.
/// `columns` overrides the tolerance of named top-level columns (e.g. a rank-based metric on a tiny
/// split, which one swapped pair moves by a whole step).
pub fn check_golden_table(stage: &str, dir: &std::path::Path, actual: &serde_json::Value, tolerance: Tolerance, columns: &[(&str, Tolerance)]) -> Result<(), String> {
    let bless = std::env::var_os(BLESS_ENV).is_some_and(|v| v == "1");
    compare_golden_table(stage, dir, actual, tolerance, columns, bless)
}

fn compare_golden_table(stage: &str, dir: &std::path::Path, actual: &serde_json::Value, tolerance: Tolerance, columns: &[(&str, Tolerance)], bless: bool) -> Result<(), String> {
    let current = of(stage).ok_or_else(|| format!("unknown stage {stage}"))?;
    let path = dir.join(format!("{stage}-v{current}.json"));
    let upper = stage.to_uppercase();
    let Ok(text) = std::fs::read_to_string(&path) else {
        if bless {
            let pretty = serde_json::to_string_pretty(actual).map_err(|e| e.to_string())?;
            std::fs::write(&path, pretty + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(());
        }
        return Err(format!(
            "{stage}: no golden output for version {current} ({}). If molpeg_core::versions::{upper} was bumped on purpose, \
             record it: {BLESS_ENV}=1 cargo test (then commit the file).",
            path.display()
        ));
    };
    let expected: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut differences = Vec::new();
    match (&expected, actual) {
        (serde_json::Value::Object(e), serde_json::Value::Object(a)) if e.keys().eq(a.keys()) => {
            for (k, v) in e {
                let tol = columns.iter().find(|(name, _)| name == k).map_or(tolerance, |(_, t)| *t);
                compare_json(v, &a[k], &format!("{stage}.{k}"), tol, &mut differences);
            }
        }
        _ => compare_json(&expected, actual, stage, tolerance, &mut differences),
    }
    if differences.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = differences.iter().take(5).map(String::as_str).collect();
    Err(format!(
        "{stage}: the output on the golden fixture differs from version {current}'s ({}) in {} place(s): {}. \
         If the change is intended, bump molpeg_core::versions::{upper} to {} and record its output with {BLESS_ENV}=1 \
         (a new file; never edit an old one); if not, it is a regression.",
        path.display(),
        differences.len(),
        shown.join("; "),
        current + 1
    ))
}

fn compare_json(expected: &serde_json::Value, actual: &serde_json::Value, at: &str, tolerance: Tolerance, out: &mut Vec<String>) {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (Vec<&String>, Vec<&String>) = (e.keys().collect(), a.keys().collect());
            if ek != ak {
                out.push(format!("{at}: keys {ek:?} expected, {ak:?} found"));
                return;
            }
            for (k, v) in e {
                compare_json(v, &a[k], &format!("{at}.{k}"), tolerance, out);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!("{at}: {} values expected, {} found", e.len(), a.len()));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                compare_json(ev, av, &format!("{at}[{i}]"), tolerance, out);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.is_f64() || a.is_f64() => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            if !((a - e).abs() <= tolerance.abs + tolerance.rel * e.abs()) {
                out.push(format!("{at}: {e} expected, {a} found"));
            }
        }
        (e, a) if e != a => out.push(format!("{at}: {e} expected, {a} found")),
        _ => {}
    }
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
    fn golden_tables_compare_within_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let tol = Tolerance { abs: 1e-3, rel: 1e-2 };
        let table = serde_json::json!({"mol_id": [1, 2], "score": [0.5, 0.25], "split": ["train", "test"], "value": [null, 0.75]});
        let path = dir.path().join(format!("score-v{SCORE}.json"));
        // Missing: an error naming the file, unless blessing, which records it.
        assert!(compare_golden_table("score", dir.path(), &table, tol, &[], false).unwrap_err().contains(&path.display().to_string()));
        assert!(compare_golden_table("score", dir.path(), &table, tol, &[], true).is_ok());
        let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(recorded, table);
        assert!(compare_golden_table("score", dir.path(), &table, tol, &[], false).is_ok());
        // Kernel-level noise passes; an algorithm-sized change, an id, a string or a length does not.
        let noisy = serde_json::json!({"mol_id": [1, 2], "score": [0.5004, 0.2501], "split": ["train", "test"], "value": [null, 0.7499]});
        assert!(compare_golden_table("score", dir.path(), &noisy, tol, &[], false).is_ok());
        // A column's own tolerance.
        let stepped = serde_json::json!({"mol_id": [1, 2], "score": [0.5, 0.25], "split": ["train", "test"], "value": [null, 0.72]});
        assert!(compare_golden_table("score", dir.path(), &stepped, tol, &[], false).is_err());
        assert!(compare_golden_table("score", dir.path(), &stepped, tol, &[("value", Tolerance { abs: 0.05, rel: 0.0 })], false).is_ok());
        for changed in [
            serde_json::json!({"mol_id": [1, 2], "score": [0.52, 0.25], "split": ["train", "test"], "value": [null, 0.75]}),
            serde_json::json!({"mol_id": [1, 3], "score": [0.5, 0.25], "split": ["train", "test"], "value": [null, 0.75]}),
            serde_json::json!({"mol_id": [1, 2], "score": [0.5, 0.25], "split": ["train", "valid"], "value": [null, 0.75]}),
            serde_json::json!({"mol_id": [1], "score": [0.5], "split": ["train"], "value": [null]}),
            serde_json::json!({"mol_id": [1, 2], "score": [0.5, 0.25], "split": ["train", "test"], "value": [0.1, 0.75]}),
        ] {
            // Blessing never overwrites a recorded version.
            let err = compare_golden_table("score", dir.path(), &changed, tol, &[], true).unwrap_err();
            assert!(err.contains(&format!("bump molpeg_core::versions::SCORE to {}", SCORE + 1)), "{err}");
        }
    }

    #[test]
    fn golden_history_rules() {
        let d = digest("x");
        assert!(check_golden("split", &[(SPLIT, &d)], &d).is_ok());
        let err = check_golden("split", &[(SPLIT, &d)], &digest("y")).unwrap_err();
        assert!(err.contains("bump molpeg_core::versions::SPLIT to 2"), "{err}");
        assert!(check_golden("split", &[(SPLIT + 1, &d)], &d).unwrap_err().contains("says 1"));
        // Bumped first, entry missing: the message asks for the entry only.
        let err = check_golden("split", &[(SPLIT - 1, &d)], &digest("y")).unwrap_err();
        assert!(err.contains(&format!("append ({SPLIT}, ")) && err.contains("already"), "{err}");
        assert!(check_golden("split", &[(2, "a"), (1, &d)], &d).unwrap_err().contains("increase"));
        assert!(check_golden("split", &[(0, &d), (1, "b")], &d).unwrap_err().contains("back to version 0"));
        assert!(STAGES.iter().all(|(name, v)| of(name) == Some(*v)));
    }
}
