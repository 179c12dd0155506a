//! Every shipped pipeline (`pipelines/*.toml`) loads, and every section a stage reads parses and
//! validates as that stage would, so a typo or a stale key in a shipped file fails here rather than
//! an hour into `just pipeline NAME`. Built in this crate because it is the one that plans whole
//! pipelines (it reads the featurize settings through molpeg-chem, a dev-dependency).

use std::path::{Path, PathBuf};

use molpeg_chem::featurize::FeaturizeConfig;
use molpeg_core::pipeline::Pipeline;
use molpeg_data::dataset::DatasetSpec;
use molpeg_data::split::SplitConfig;
use molpeg_nn::finetune::FinetuneSettings;
use molpeg_nn::pretrain::PretrainSettings;
use molpeg_nn::score::ScoreOptions;
use molpeg_prune::select::SelectConfig;
use molpeg_scaling::sweep::SweepConfig;

fn shipped_pipelines() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    paths.sort();
    paths
}

#[test]
fn every_shipped_pipeline_parses_for_every_stage() {
    let paths = shipped_pipelines();
    assert!(paths.len() >= 10, "{paths:?}");
    let runs = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut fail = |what: &str, e: String| failures.push(format!("pipelines/{name}: {what}: {e}"));
        let pipeline = match Pipeline::load(path) {
            Ok(p) => p,
            Err(e) => {
                fail("load", e.to_string());
                continue;
            }
        };
        let pretrain: Option<PretrainSettings> = pipeline.section("pretrain").ok();
        // A pretraining-only pipeline has no data of its own: it reads another pipeline's graphs.
        let source = pretrain.as_ref().and_then(|p| p.source.clone());
        if let Some(source) = source.as_deref() {
            if !paths.iter().any(|p| p.file_stem().is_some_and(|s| s == source)) {
                fail("[pretrain] source", format!("`{source}` is not a shipped pipeline"));
            }
        }
        match pipeline.required_section::<DatasetSpec>("dataset") {
            Err(_) if source.is_some() => {}
            Err(e) => fail("[dataset]", e.to_string()),
            Ok(spec) => match pipeline.section::<FeaturizeConfig>("featurize") {
                Err(e) => fail("[featurize]", e.to_string()),
                Ok(featurize) => {
                    if let Err(e) = featurize.geometry_for(&spec) {
                        fail("[featurize] geometry", e);
                    }
                }
            },
        }
        if let Err(e) = pipeline.section::<SplitConfig>("split") {
            fail("[split]", e.to_string());
        }
        match pipeline.section::<FinetuneSettings>("finetune") {
            Err(e) => fail("[finetune]", e.to_string()),
            Ok(s) => {
                if let Err(e) = s.validate() {
                    fail("[finetune]", e.to_string());
                }
            }
        }
        if let Err(e) = pipeline.layered_section_with::<FinetuneSettings, ScoreOptions>("finetune", "score", ScoreOptions::KEYS) {
            fail("[score]", e.to_string());
        }
        match pipeline.section::<PretrainSettings>("pretrain") {
            Err(e) => fail("[pretrain]", e.to_string()),
            Ok(s) => {
                if let Err(e) = s.validate() {
                    fail("[pretrain]", e.to_string());
                }
            }
        }
        if let Err(e) = pipeline.section::<SelectConfig>("select") {
            fail("[select]", e.to_string());
        }
        match SweepConfig::for_pipeline(&pipeline, runs.path()) {
            Err(e) => fail("[scaling]", e.to_string()),
            Ok(sweep) => {
                if let Err(e) = sweep.scaling.validate() {
                    fail("[scaling]", e.to_string());
                }
            }
        }
    }
    assert!(failures.is_empty(), "shipped pipelines that a stage would refuse:\n{}", failures.join("\n"));
}
