//! End-to-end test of `molpeg-report` (the one test binary of this crate). A tiny pipeline's runs are
//! produced by the real stages in-process — synthetic molecules with scaffolds (`molpeg_nn::synthetic`),
//! the split stage, MolPeg scoring, two selections, fine-tuning on the full split, a coreset and with
//! dynamic MolPeg, over two seed directories as the experiment scripts lay them out — then the binary
//! writes the page, and headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) loads
//! it from disk: every figure must have a non-zero rendered size, nothing may be fetched and nothing
//! may reach the console. The screenshot and a copy of the page are kept under
//! `$CARGO_TARGET_TMPDIR/molpeg-report/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use molpeg_core::manifest::StageRun;
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::pipeline::Pipeline;
use molpeg_core::schema;
use molpeg_nn::data::TaskKind;
use molpeg_nn::finetune::{self, FinetuneConfig, FinetuneSettings};
use molpeg_nn::synthetic::{self, SyntheticSpec};
use molpeg_prune::select::{self, SelectConfig};

const PIPELINE: &str = "name = \"tiny\"\n[split]\nmethod = \"random\"\nseed = 3\n\
    [finetune]\nepochs = 4\nlayers = 2\nwidth = 16\nbatch_size = 32\neval_batch_size = 256\ndevice = \"cpu\"\nthreads = 1\ndropout = 0.1\n\
    [score]\nepochs = 2\n";

fn settings(pipeline: &Pipeline, seed: u64) -> FinetuneSettings {
    FinetuneSettings { seed, ..pipeline.section("finetune").unwrap() }
}

fn finetune_run(pipeline: &Pipeline, runs: &Path, settings: FinetuneSettings) {
    let mut config = FinetuneConfig::for_pipeline(pipeline, runs, settings);
    config.verbose = false;
    finetune::run(&config).unwrap();
}

/// One seed's runs directory: featurize (synthetic graphs, recorded with a stage manifest), split,
/// and the fine-tuning runs of the comparison; with `score`, also scoring and two coresets.
fn seed_runs(pipeline: &Pipeline, runs: &Path, seed: u64, score: bool) {
    molpeg_nn::tch::set_num_threads(1);
    let featurize = pipeline.stage_dir(runs, "featurize");
    let stage = StageRun::new("featurize", &featurize, &serde_json::json!({"synthetic": {"molecules": 200, "seed": 5}}), &[]).unwrap();
    stage.begin().unwrap();
    let mut rows = synthetic::generate(&SyntheticSpec::hiv_like(200, 5));
    for r in &mut rows {
        r.scaffold = if r.mol_id % 13 == 0 { String::new() } else { format!("c1ccc(C{})cc1", r.mol_id % 17) };
    }
    let graphs = synthetic::write_graphs(&featurize.join("graphs.parquet"), &rows, &["task0".into()], TaskKind::Binary).unwrap();
    stage.finish(&[&graphs], &serde_json::json!({"accepted": 200, "seconds": 0.5})).unwrap();
    molpeg_data::split::run(pipeline, runs, &pipeline.section("split").unwrap(), false).unwrap();

    if score {
        let settings: FinetuneSettings = pipeline.layered_section("finetune", "score").unwrap();
        let mut config = FinetuneConfig::for_pipeline(pipeline, runs, settings);
        config.out_dir = pipeline.stage_dir(runs, "score");
        config.verbose = false;
        molpeg_nn::score::run(&config).unwrap();
        select::run(pipeline, runs, &SelectConfig { keep: Some(0.4), ..Default::default() }, None, false).unwrap();
    }
    let random = pipeline.stage_dir(runs, "select-random-0.5");
    select::run(pipeline, runs, &SelectConfig { rule: "random".into(), keep: Some(0.5), seed, ..Default::default() }, Some(&random), false).unwrap();
    let base = settings(pipeline, seed);
    finetune_run(pipeline, runs, base.clone());
    finetune_run(pipeline, runs, FinetuneSettings { coreset: Some(random.join("coreset.parquet")), ..base.clone() });
    for keep in [0.3, 0.6] {
        finetune_run(pipeline, runs, FinetuneSettings { dynamic: Some("molpeg".into()), keep: Some(keep), ..base.clone() });
    }
}

/// Rewrites a metrics.parquet in the schema with the nullable `task` column: the existing rows get a
/// null task (the average) and every test row is repeated as one task's row with value − 0.01.
fn add_task_column(path: &Path) -> usize {
    let source = ParquetSource::open(path, &schema::metrics::schema()).unwrap();
    let metrics_schema = schema::metrics::schema();
    let names: Vec<&str> = metrics_schema.fields().iter().map(|f| f.name().as_str()).collect();
    let batches = source.collect_columns(&names).unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let test: Vec<u32> = (0..batch.num_rows() as u32).filter(|&i| batch.column(1).as_string::<i32>().value(i as usize) == "test").collect();
    let take = arrow::array::UInt32Array::from(test.clone());
    let mut per_task: Vec<ArrayRef> = batch.columns().iter().map(|c| arrow::compute::take(c, &take, None).unwrap()).collect();
    per_task[3] = Arc::new(arrow::compute::kernels::numeric::sub(&per_task[3], &arrow::array::Float64Array::new_scalar(0.01)).unwrap());
    let mut fields: Vec<Field> = schema::metrics::schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(schema::metrics::TASK, DataType::Utf8, true));
    let schema = Arc::new(Schema::new(fields));
    let mut avg = batch.columns().to_vec();
    avg.push(Arc::new(StringArray::from(vec![None::<&str>; batch.num_rows()])));
    per_task.push(Arc::new(StringArray::from(vec![Some("task0"); test.len()])));
    let batches = [RecordBatch::try_new(schema.clone(), avg).unwrap(), RecordBatch::try_new(schema.clone(), per_task).unwrap()];
    write_batches(path, schema, schema::metrics::KIND, &BTreeMap::new(), &batches).unwrap();
    test.len()
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOLPEG_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"].iter().flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name))).find(|p| p.is_file())
}

/// Runs headless Chromium on a file (a fresh profile each time, no network services); returns
/// (stdout, console lines from the log).
fn browse(chrome: &Path, page: &Path, action: &[&str], profile: &Path) -> (String, Vec<String>) {
    let out = Command::new("timeout")
        .arg("180")
        .arg(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1400,9000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(action)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed ({}):\n{stderr}", out.status);
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Measures every figure in the browser and writes the result into the DOM (read back from
/// `--dump-dom`): id, rendered width × height of its SVG, number of SVG elements; plus every resource
/// the page fetched.
const CHECK_SCRIPT: &str = include_str!("check_figures.html");

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&")
}

#[test]
fn report_of_a_tiny_pipeline_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), PIPELINE).unwrap();
    let pipeline = Pipeline::load(d.join("tiny.toml")).unwrap();
    for seed in [0, 1] {
        seed_runs(&pipeline, &d.join(format!("runs/exp/seed{seed}")), seed, seed == 0);
    }
    let pdir = d.join("runs/exp/seed0/tiny");
    let task_rows = add_task_column(&pdir.join("finetune/metrics.parquet"));
    assert!(task_rows > 0);
    // A stage that was interrupted: no manifest.
    std::fs::create_dir_all(pdir.join("finetune-interrupted")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_molpeg-report")).current_dir(d).args(["--pipeline", "tiny.toml", "--runs-dir", "runs/exp/seed0"]).env_remove("MOLPEG_RUNS_DIR").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("runs compared") && stdout.contains("not run: scaling"), "{stdout}");
    assert!(!stdout.contains("could not read"), "{stdout}");
    let page_path = pdir.join("report.html");
    let page = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: no scripts, style sheets, images or frames to fetch; the only URL is SVG's namespace.
    for banned in ["<script", "<link", "<img", "<iframe", "src=", "url("] {
        assert!(!page.contains(banned), "the page contains {banned}");
    }
    assert!(page.replace("http://www.w3.org/2000/svg", "").replace("http://www.w3.org/1999/xlink", "").matches("http").count() == 0, "the page references a URL");
    // Every section, with what this fixture has and has not run.
    for text in ["What ran", "finetune-dynamic-molpeg-keep0.3", "select-random-0.5", "incomplete", "not run", "per-task test metrics", "Under dynamic pruning", "scaffolds kept", "Method comparison", "dynamic:molpeg", "select:random", "full"] {
        assert!(page.contains(text), "the page lacks `{text}`");
    }
    // Two seed directories: 8 comparison runs (the interrupted one has no manifest and is left out).
    assert!(page.contains("8 runs"), "both seed directories are compared");
    let figures = page.matches("<figure class=\"plot\"").count();
    // 4 runs' curves + histogram + score epochs + 2 dynamic + coreset bars + comparison.
    assert_eq!(figures, 10, "figures on the page");
    let files: Vec<String> = std::fs::read_dir(pdir.join("report")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 2 * figures, "a PNG and an SVG per figure: {files:?}");
    for f in &files {
        let bytes = std::fs::read(pdir.join("report").join(f)).unwrap();
        if f.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f}");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"), "{f}");
        }
    }
    // Read-only: the stage outputs are unchanged (every manifest's outputs still match their sizes).
    for s in molpeg_report::read::stage_dirs(&pdir).iter().filter_map(|s| s.manifest.as_ref().map(|m| (s, m))) {
        for o in &s.1.outputs {
            if !s.0.path.join(&o.path).ends_with("finetune/metrics.parquet") {
                // Output paths are relative to the stage directory.
                assert_eq!(std::fs::metadata(s.0.path.join(&o.path)).unwrap().len(), o.bytes, "{} changed", o.path);
            }
        }
    }

    // A pipeline with only the first stages: still a page, everything else "not run".
    let early = d.join("runs/early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::rename(d.join("runs/exp/seed1/tiny/featurize"), early.join("featurize")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_molpeg-report")).current_dir(d).args(["--name", "early", "--runs-dir", "runs", "--out", "early.html"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let early_page = std::fs::read_to_string(d.join("early.html")).unwrap();
    assert!(early_page.matches("not run").count() >= 5 && !early_page.contains("<figure"), "only not-run notes");
    let out = Command::new(env!("CARGO_BIN_EXE_molpeg-report")).current_dir(d).args(["--name", "nothing", "--runs-dir", "runs"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such pipeline directory"));

    // The artifacts: a copy of the page and its figures, and the screenshot.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("molpeg-report");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(artifacts.join("report")).unwrap();
    std::fs::copy(&page_path, artifacts.join("report.html")).unwrap();
    for f in &files {
        std::fs::copy(pdir.join("report").join(f), artifacts.join("report").join(f)).unwrap();
    }

    let Some(chrome) = chromium() else {
        eprintln!("skipping the browser check: no chromium in PATH (scripts/setup.sh installs Debian's chromium; or set MOLPEG_CHROMIUM)");
        return;
    };
    let check_page = pdir.join("report-check.html");
    std::fs::write(&check_page, page.replace("</body>", &format!("{CHECK_SCRIPT}</body>"))).unwrap();
    let (dom, console) = browse(&chrome, &check_page, &["--dump-dom"], &d.join("profile-1"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    let start = dom.find("<pre id=\"molpeg-check\">").expect("the check script ran") + "<pre id=\"molpeg-check\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let check: serde_json::Value = serde_json::from_str(&unescape(&dom[start..end])).unwrap();
    let rendered = check["figures"].as_array().unwrap();
    assert_eq!(rendered.len(), figures, "{check}");
    for f in rendered {
        assert!(f["width"].as_f64().unwrap() > 100.0 && f["height"].as_f64().unwrap() > 100.0, "figure not rendered: {f}");
        assert!(f["elements"].as_u64().unwrap() > 20, "figure without content: {f}");
    }
    assert_eq!(check["resources"], serde_json::json!([]), "the page fetched something");

    let shot = artifacts.join("report.png");
    let (_, console) = browse(&chrome, &page_path, &[&format!("--screenshot={}", shot.display())], &d.join("profile-2"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 50_000 && &png[..8] == b"\x89PNG\r\n\x1a\n", "screenshot of {} bytes", png.len());
    eprintln!("report screenshot: {}", shot.display());
}

#[test]
fn help_explains_the_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_molpeg-report")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("report.html") && text.contains("--compare") && text.contains("not run"), "{text}");
}
