//! `molpeg-report`: one self-contained HTML page per pipeline, a read-only view of what the stages
//! left in `runs/<pipeline>/`.
//!
//! [`run`] reads every stage directory (manifests through [`read::stage_dirs`], Parquet files through
//! [`read`]), draws the figures with `molpeg_plot` into `report/` beside the page (PNG and SVG),
//! inlines the SVGs into `report.html` ([`html`]) and writes the page atomically. Sections: what ran
//! (stages, settings, input hashes, times), learning curves of every fine-tuning run, MolPeg scores
//! (histogram, per-epoch evolution in the score stage and under dynamic pruning), coreset composition
//! (class shares and scaffold coverage against the training split) and the method comparison (test
//! metric vs keep ratio per strategy, mean ± std over seeds, the full-data line) across this pipeline's
//! runs, its sibling `seed*/` run directories, `--compare` directories and scaling sweeps.
//!
//! It never trains or rewrites a stage output; a missing stage or unreadable file is shown on the page
//! ("not run", or the error), never a failure of the report.
//!
//! **Boundary:** links neither RDKit nor libtorch (scaffolds come from `graphs.parquet`).

pub mod html;
pub mod read;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use molpeg_core::{Error, Result};
use molpeg_plot::{Labels, Panel, Series};
use serde_json::Value;

use html::{esc, num, pct};
use read::StageDir;

/// The page's file name inside the pipeline directory.
pub const PAGE_FILE: &str = "report.html";

/// What to report on and where to write it.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// The pipeline's name (its directory under the runs directory).
    pub name: String,
    /// `runs/<pipeline>/`.
    pub pipeline_dir: PathBuf,
    /// More run directories for the method comparison: each a runs directory holding `<name>/`, or a
    /// pipeline directory itself.
    pub compare: Vec<PathBuf>,
    /// The page; figures go into the directory of the same name without `.html`.
    pub out: PathBuf,
}

impl ReportConfig {
    /// `runs_dir/<name>/report.html`, no extra comparison directories.
    pub fn for_pipeline(name: &str, runs_dir: &Path) -> Self {
        let pipeline_dir = runs_dir.join(name);
        ReportConfig { name: name.to_string(), out: pipeline_dir.join(PAGE_FILE), pipeline_dir, compare: Vec::new() }
    }
}

/// What [`run`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub page: PathBuf,
    pub figures_dir: PathBuf,
    pub figures: usize,
    pub stages: usize,
    /// Expected stage kinds without a directory.
    pub not_run: Vec<String>,
    pub finetune_runs: usize,
    /// Fine-tuning runs (over every compared directory) in the method comparison.
    pub compared_runs: usize,
    /// Files that could not be read; each is also shown on the page.
    pub problems: Vec<String>,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "report: {} stage directories, {} fine-tuning runs, {} runs compared, {} figures", self.stages, self.finetune_runs, self.compared_runs, self.figures)?;
        if !self.not_run.is_empty() {
            writeln!(f, "not run: {}", self.not_run.join(", "))?;
        }
        for p in &self.problems {
            writeln!(f, "could not read: {p}")?;
        }
        write!(f, "wrote {} (figures in {})", self.page.display(), self.figures_dir.display())
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (civil-from-days, proleptic Gregorian).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

fn duration(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{seconds:.1} s")
    }
}

/// The first top-level number of a stage summary whose key ends in `seconds` (stages name it
/// differently: `train_seconds`, `seconds`, ...).
fn summary_seconds(summary: &Value) -> Option<f64> {
    let obj = summary.as_object()?;
    ["train_seconds", "seconds", "elapsed_seconds", "wall_seconds"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_f64))
        .or_else(|| obj.iter().find(|(k, v)| k.ends_with("seconds") && v.is_number()).and_then(|(_, v)| v.as_f64()))
}

/// A file stem without dots (molpeg-plot appends `.png`/`.svg` with `with_extension`).
fn stem_of(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Figures drawn for the page: files in `dir`, SVG inlined.
struct Figures {
    dir: PathBuf,
    /// `dir` relative to the page, for the PNG/SVG links.
    rel: String,
    written: Vec<PathBuf>,
    problems: Vec<String>,
}

impl Figures {
    fn embed(&mut self, stem: &str, caption: &str, draw: impl FnOnce(&Path) -> Result<()>) -> String {
        let stem = stem_of(stem);
        let path = self.dir.join(&stem);
        let svg = path.with_extension("svg");
        match draw(&path).and_then(|()| std::fs::read_to_string(&svg).map_err(|e| Error::io(&svg, e))) {
            Ok(text) => {
                self.written.push(path.with_extension("png"));
                self.written.push(svg);
                html::figure(&format!("fig-{stem}"), &text, caption, &format!("{}/{stem}", self.rel))
            }
            Err(e) => {
                self.problems.push(e.to_string());
                html::note(&format!("figure {stem} could not be drawn: {e}"))
            }
        }
    }

    fn lines(&mut self, stem: &str, title: &str, caption: &str, panels: &[Panel]) -> String {
        self.embed(stem, caption, |p| molpeg_plot::lines(p, title, panels))
    }

    fn count(&self) -> usize {
        self.written.len() / 2
    }
}

/// One fine-tuning run as the comparison sees it.
#[derive(Debug, Clone)]
struct Run {
    strategy: String,
    keep: Option<f64>,
    seed: Option<u64>,
    pretrained: bool,
    monitor: String,
    valid: Option<f64>,
    test: Option<f64>,
    best_epoch: Option<u64>,
    samples_seen: Option<u64>,
    seconds: Option<f64>,
}

/// The selection parameters of a coreset used by a run: the file's metadata, else the select stage's
/// manifest in this pipeline directory under the coreset's directory name.
fn coreset_params(coreset: &str, pipeline_dir: &Path) -> Option<Value> {
    let path = Path::new(coreset);
    if let Some(params) = read::read_coreset(path).ok().and_then(|c| c.params) {
        return Some(params);
    }
    let dir = path.parent()?.file_name()?;
    let text = std::fs::read_to_string(pipeline_dir.join(dir).join(molpeg_core::manifest::MANIFEST_FILE)).ok()?;
    serde_json::from_str::<Value>(&text).ok()?.get("params").cloned()
}

fn classify(stage: &StageDir, pipeline_dir: &Path) -> Option<Run> {
    let manifest = stage.manifest.as_ref()?;
    let settings = stage.settings()?;
    let summary = &manifest.summary;
    let (strategy, keep) = if let Some(policy) = settings.get("dynamic").and_then(Value::as_str) {
        (format!("dynamic:{policy}"), settings.get("keep").and_then(Value::as_f64))
    } else if let Some(coreset) = settings.get("coreset").and_then(Value::as_str) {
        match coreset_params(coreset, pipeline_dir) {
            Some(p) => (format!("select:{}", p.get("rule").and_then(Value::as_str).unwrap_or("?")), p.get("keep").and_then(Value::as_f64)),
            None => (format!("coreset:{}", stage.name.trim_start_matches("finetune-")), None),
        }
    } else {
        ("full".to_string(), Some(1.0))
    };
    let monitor = summary.get("monitor").and_then(Value::as_str).unwrap_or("roc_auc").to_string();
    let at = |key: &str| summary.get(key).and_then(|m| m.get(&monitor)).and_then(Value::as_f64);
    Some(Run {
        strategy,
        keep,
        seed: settings.get("seed").and_then(Value::as_u64),
        pretrained: settings.get("pretrained").is_some_and(|p| !p.is_null()),
        valid: at("best_valid"),
        test: at("test_at_best"),
        best_epoch: summary.get("best_epoch").and_then(Value::as_u64),
        samples_seen: summary.get("samples_seen").and_then(Value::as_u64),
        seconds: summary.get("train_seconds").and_then(Value::as_f64),
        monitor,
    })
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, std)
}

fn is_seed_dir(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() > 4 && n.starts_with("seed") && n[4..].bytes().all(|b| b.is_ascii_digit()))
}

/// The pipeline directories the comparison reads: this one, the same pipeline in sibling `seed<N>/`
/// runs directories (`runs/exp-table1/seed0/hiv-table1` → `seed1/hiv-table1`, ...), and `--compare`.
pub fn comparison_dirs(config: &ReportConfig) -> Vec<PathBuf> {
    let mut dirs = vec![config.pipeline_dir.clone()];
    if let Some(runs_dir) = config.pipeline_dir.parent().filter(|d| is_seed_dir(d)) {
        if let Some(Ok(entries)) = runs_dir.parent().map(std::fs::read_dir) {
            let mut siblings: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| is_seed_dir(p)).map(|p| p.join(&config.name)).filter(|p| p.is_dir()).collect();
            siblings.sort();
            dirs.extend(siblings);
        }
    }
    for c in &config.compare {
        let nested = c.join(&config.name);
        dirs.push(if nested.is_dir() { nested } else { c.clone() });
    }
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    dirs
}

/// Writes the report (see the module docs).
pub fn run(config: &ReportConfig) -> Result<ReportSummary> {
    if !config.pipeline_dir.is_dir() {
        return Err(Error::invalid(&config.pipeline_dir, "no such pipeline directory: run a stage first (e.g. `just featurize NAME`), or check --runs-dir"));
    }
    let figures_dir = config.out.with_extension("");
    std::fs::create_dir_all(&figures_dir).map_err(|e| Error::io(&figures_dir, e))?;
    let rel = figures_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    let mut figs = Figures { dir: figures_dir.clone(), rel, written: Vec::new(), problems: Vec::new() };

    let stages = read::stage_dirs(&config.pipeline_dir);
    let kinds: HashSet<&str> = stages.iter().map(|s| s.kind.as_str()).collect();
    let not_run: Vec<String> = read::expected_stages().filter(|k| !kinds.contains(*k)).map(str::to_string).collect();
    let finetunes: Vec<&StageDir> = stages.iter().filter(|s| s.kind == "finetune").collect();

    let mut body = String::new();
    body.push_str(&section_ran(&stages, &not_run));
    body.push_str(&section_curves(&finetunes, &config.pipeline_dir, &mut figs));
    body.push_str(&section_scores(&stages, &mut figs));
    body.push_str(&section_coresets(&stages, &config.pipeline_dir, &mut figs));
    let (comparison, compared_runs) = section_comparison(config, &stages, &mut figs);
    body.push_str(&comparison);

    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>molpeg report: {name}</title><style>{style}</style></head><body>\
         <header><h1>molpeg report: {name}</h1><p>{dir} · generated {now} by molpeg {version} · a read-only view of the stage outputs</p></header>\
         <nav><a href=\"#ran\">What ran</a><a href=\"#curves\">Learning curves</a><a href=\"#scores\">Scores</a><a href=\"#coresets\">Coresets</a><a href=\"#comparison\">Method comparison</a></nav>\
         <main>{body}</main></body></html>\n",
        name = esc(&config.name),
        style = html::STYLE,
        dir = esc(&config.pipeline_dir.display().to_string()),
        now = utc(SystemTime::now()),
        version = molpeg_core::TOOL_VERSION,
    );
    molpeg_core::atomic::write_atomic(&config.out, page.as_bytes())?;
    // Figures of runs that no longer exist would otherwise linger beside the page.
    let keep: HashSet<&PathBuf> = figs.written.iter().collect();
    if let Ok(entries) = std::fs::read_dir(&figures_dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "png" || x == "svg") && !keep.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    Ok(ReportSummary {
        page: config.out.clone(),
        figures_dir,
        figures: figs.count(),
        stages: stages.len(),
        not_run,
        finetune_runs: finetunes.len(),
        compared_runs,
        problems: figs.problems,
    })
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

fn files_list(files: &[molpeg_core::manifest::FileRecord]) -> String {
    let rows: Vec<Vec<String>> = files.iter().map(|f| vec![format!("<code>{}</code>", esc(&f.path)), format!("{}", f.bytes), format!("<code title=\"{}\">{}</code>", esc(&f.sha256), short_hash(&f.sha256))]).collect();
    html::table(&["path", "bytes", "sha256"], &rows)
}

fn section_ran(stages: &[StageDir], not_run: &[String]) -> String {
    let mut out = String::from("<section id=\"ran\"><h2>What ran</h2>");
    out.push_str(&html::note("One row per stage directory, from its manifest.json (written last, so a directory without one did not finish; a stage run in shards has one manifest-part-…json per finished shard). Finished = the manifest's modification time; duration = the stage's own timing where it reports one."));
    let mut rows = Vec::new();
    for s in stages {
        if let Some(shards) = &s.shards {
            rows.push(sharded_row(s, shards));
            continue;
        }
        let status = match (&s.manifest, &s.problem) {
            (Some(_), _) => "<span class=\"chip\">done</span>".to_string(),
            (None, Some(p)) => format!("<span class=\"chip warn\" title=\"{}\">unreadable</span>", esc(p)),
            (None, None) => "<span class=\"chip warn\">incomplete</span>".to_string(),
        };
        let (details, inputs, seconds, version) = match &s.manifest {
            Some(m) => (
                format!(
                    "<details><summary>settings</summary><pre>{}</pre></details><details><summary>outputs ({})</summary>{}</details>",
                    esc(&serde_json::to_string_pretty(&m.params).unwrap_or_default()),
                    m.outputs.len(),
                    files_list(&m.outputs)
                ),
                format!("<details><summary>{} input(s)</summary>{}</details>", m.inputs.len(), files_list(&m.inputs)),
                summary_seconds(&m.summary).map(duration).unwrap_or_else(|| "–".into()),
                esc(&m.tool_version),
            ),
            None => (String::new(), String::new(), "–".into(), "–".into()),
        };
        rows.push(vec![
            format!("<code>{}</code>", esc(&s.name)),
            esc(&s.kind),
            status,
            s.finished.filter(|_| s.manifest.is_some()).map(utc).unwrap_or_else(|| "–".into()),
            seconds,
            version,
            inputs,
            details,
        ]);
    }
    for k in not_run {
        rows.push(vec!["–".into(), esc(k), "<span class=\"chip off\">not run</span>".into(), "–".into(), "–".into(), "–".into(), String::new(), String::new()]);
    }
    out.push_str(&html::table(&["directory", "stage", "status", "finished", "duration", "molpeg", "inputs (sha256)", "settings and outputs"], &rows));
    out.push_str("</section>");
    out
}

/// The "what ran" row of a stage run in shards: done when every shard's manifest is there (finished =
/// the last shard's, duration = the slowest shard's), else which shards are missing.
fn sharded_row(s: &StageDir, shards: &read::ShardManifests) -> Vec<String> {
    let n = shards.count;
    let status = if shards.complete() {
        format!("<span class=\"chip\">done ({n} shards)</span>")
    } else {
        let missing: Vec<String> = (0..n).filter(|i| !shards.finished.contains_key(i)).map(|i| format!("{i}/{n}")).collect();
        format!("<span class=\"chip warn\">{} of {n} shards; to run: --shard {}</span>", shards.finished.len(), esc(&missing.join(", ")))
    };
    let manifests: Vec<&molpeg_core::manifest::Manifest> = shards.finished.values().map(|(m, _)| m).collect();
    let finished = shards.finished.values().map(|(_, t)| *t).max().filter(|_| shards.complete()).map(utc).unwrap_or_else(|| "–".into());
    let slowest = manifests.iter().filter_map(|m| summary_seconds(&m.summary)).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let outputs: Vec<molpeg_core::manifest::FileRecord> = manifests.iter().flat_map(|m| m.outputs.iter().cloned()).collect();
    let first = manifests.first();
    vec![
        format!("<code>{}</code>", esc(&s.name)),
        esc(&s.kind),
        status,
        finished,
        slowest.map(|x| format!("{} (slowest shard)", duration(x))).unwrap_or_else(|| "–".into()),
        first.map(|m| esc(&m.tool_version)).unwrap_or_else(|| "–".into()),
        first.map(|m| format!("<details><summary>{} input(s)</summary>{}</details>", m.inputs.len(), files_list(&m.inputs))).unwrap_or_default(),
        first
            .map(|m| {
                format!(
                    "<details><summary>settings (shard {})</summary><pre>{}</pre></details><details><summary>outputs of every shard ({})</summary>{}</details>",
                    shards.finished.keys().next().copied().unwrap_or(0),
                    esc(&serde_json::to_string_pretty(&m.params).unwrap_or_default()),
                    outputs.len(),
                    files_list(&outputs)
                )
            })
            .unwrap_or_default(),
    ]
}

/// Learning curves of one run's `metrics.parquet` (rows averaged over tasks only), and its per-task
/// test table when the file has per-task rows.
fn run_curves(stage: &StageDir, run: Option<&Run>, figs: &mut Figures) -> String {
    let path = stage.path.join("metrics.parquet");
    let mut out = format!("<h3 id=\"run-{}\"><code>{}</code></h3>", esc(&stem_of(&stage.name)), esc(&stage.name));
    if !path.is_file() {
        out.push_str(&html::not_run("no metrics.parquet (the run did not finish)"));
        return out;
    }
    let rows = match read::read_metrics(&path) {
        Ok(r) => r,
        Err(e) => {
            figs.problems.push(e.to_string());
            out.push_str(&html::note(&format!("cannot read: {e}")));
            return out;
        }
    };
    let avg: Vec<&read::MetricRow> = rows.iter().filter(|r| r.task.is_none()).collect();
    let series = |label: String, pick: &dyn Fn(&read::MetricRow) -> Option<f64>, split: &str, metric: Option<&str>| Series {
        label,
        points: avg.iter().filter(|r| r.split == split && metric.is_none_or(|m| r.metric == m)).filter_map(|r| pick(r).map(|v| (r.epoch as f64, v))).fold(Vec::new(), |mut acc: Vec<(f64, f64)>, p| {
            if acc.last().is_none_or(|l| l.0 != p.0) {
                acc.push(p);
            }
            acc
        }),
        ..Default::default()
    };
    let eval_metrics: BTreeSet<&str> = avg.iter().filter(|r| r.split != "train").map(|r| r.metric.as_str()).collect();
    let mut loss = vec![series("train".into(), &|r| r.value, "train", Some("loss"))];
    for split in ["valid", "test"] {
        loss.push(series(split.into(), &|r| r.loss, split, None));
    }
    let mut metric_series = Vec::new();
    for &m in &eval_metrics {
        for split in ["valid", "test"] {
            metric_series.push(series(format!("{split} {m}"), &|r| r.value, split, Some(m)));
        }
    }
    let mut panels = vec![
        Panel { title: "loss".into(), x: "epoch".into(), y: "mean per-sample loss".into(), series: loss },
        Panel { title: "metrics".into(), x: "epoch".into(), y: "value".into(), series: metric_series },
    ];
    if run.is_some_and(|r| r.strategy.starts_with("dynamic:")) {
        panels.push(Panel { title: "training samples per epoch".into(), x: "epoch".into(), y: "samples".into(), series: vec![series("kept".into(), &|r| r.value, "train", Some("kept"))] });
    }
    let caption = match run {
        Some(r) => format!(
            "{} · keep {} · seed {} · best epoch {} · valid {} {} · test {} {}",
            r.strategy,
            r.keep.map_or("–".into(), |k| format!("{k}")),
            r.seed.map_or("–".into(), |s| s.to_string()),
            r.best_epoch.map_or("–".into(), |e| e.to_string()),
            r.monitor,
            num(r.valid),
            r.monitor,
            num(r.test)
        ),
        None => "learning curves".into(),
    };
    out.push_str(&figs.lines(&format!("curves-{}", stage.name), &format!("{}: learning curves", stage.name), &caption, &panels));

    // Per-task rows (files with the `task` column): test at the best epoch.
    let per_task: Vec<&read::MetricRow> = rows.iter().filter(|r| r.task.is_some() && r.split == "test").collect();
    if !per_task.is_empty() {
        let best = run.and_then(|r| r.best_epoch).map(|e| e as u32).unwrap_or_else(|| per_task.iter().map(|r| r.epoch).max().unwrap_or(0));
        let metrics: BTreeSet<&str> = per_task.iter().map(|r| r.metric.as_str()).collect();
        let mut table: BTreeMap<&str, BTreeMap<&str, Option<f64>>> = BTreeMap::new();
        for r in per_task.iter().filter(|r| r.epoch == best) {
            table.entry(r.task.as_deref().unwrap_or("")).or_default().insert(r.metric.as_str(), r.value);
        }
        let head: Vec<&str> = std::iter::once("task").chain(metrics.iter().copied()).collect();
        let body: Vec<Vec<String>> = table.iter().map(|(t, m)| std::iter::once(esc(t)).chain(metrics.iter().map(|k| m.get(k).copied().flatten().map_or("one class or no labels".into(), |v| num(Some(v))))).collect()).collect();
        let _ = write!(out, "<details open><summary>per-task test metrics at epoch {best}</summary>{}</details>", html::table(&head, &body));
    }
    out
}

fn section_curves(finetunes: &[&StageDir], pipeline_dir: &Path, figs: &mut Figures) -> String {
    let mut out = String::from("<section id=\"curves\"><h2>Learning curves</h2>");
    if finetunes.is_empty() {
        out.push_str(&html::not_run("no fine-tuning run (molpeg-finetune writes finetune*/metrics.parquet)"));
        out.push_str("</section>");
        return out;
    }
    let runs: Vec<Option<Run>> = finetunes.iter().map(|s| classify(s, pipeline_dir)).collect();
    let rows: Vec<Vec<String>> = finetunes
        .iter()
        .zip(&runs)
        .map(|(s, r)| match r {
            Some(r) => vec![
                format!("<a href=\"#run-{}\"><code>{}</code></a>", esc(&stem_of(&s.name)), esc(&s.name)),
                esc(&r.strategy),
                r.keep.map_or("–".into(), |k| format!("{k}")),
                r.seed.map_or("–".into(), |s| s.to_string()),
                if r.pretrained { "pretrained".into() } else { "scratch".into() },
                r.best_epoch.map_or("–".into(), |e| e.to_string()),
                format!("{} {}", esc(&r.monitor), num(r.valid)),
                format!("{} {}", esc(&r.monitor), num(r.test)),
                r.samples_seen.map_or("–".into(), |n| n.to_string()),
                r.seconds.map_or("–".into(), duration),
            ],
            None => vec![format!("<code>{}</code>", esc(&s.name)), "<span class=\"chip warn\">incomplete</span>".into(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new()],
        })
        .collect();
    out.push_str(&html::table(&["run", "strategy", "keep", "seed", "start", "best epoch", "valid (best)", "test at best", "samples seen", "train time"], &rows));
    out.push_str(&html::note("Curves use the rows averaged over tasks (metrics.parquet rows whose task is null or absent)."));
    for (s, r) in finetunes.iter().zip(&runs) {
        out.push_str(&run_curves(s, r.as_ref(), figs));
    }
    out.push_str("</section>");
    out
}

fn score_evolution(stem: &str, title: &str, epochs: &[read::EpochScores], train: Option<usize>, dynamic: bool, figs: &mut Figures) -> String {
    let line = |label: &str, f: &dyn Fn(&read::EpochScores) -> Option<f64>| Series { label: label.into(), points: epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect(), ..Default::default() };
    let mut panels = vec![Panel {
        title: "score |loss_online − loss_ref| per epoch".into(),
        x: "epoch".into(),
        y: "score".into(),
        series: vec![line("90th percentile", &|e| Some(e.q90)), line("mean", &|e| Some(e.mean)), line("median", &|e| Some(e.median)), line("10th percentile", &|e| Some(e.q10))],
    }];
    if dynamic {
        let mut series = vec![line("overlap with previous epoch (Jaccard)", &|e| e.overlap_prev)];
        if let Some(n) = train.filter(|&n| n > 0) {
            series.push(line("training split seen so far", &|e| Some(e.seen_so_far as f64 / n as f64)));
            series.push(line("kept share of the split", &|e| Some(e.samples as f64 / n as f64)));
        }
        panels.push(Panel { title: "kept set".into(), x: "epoch".into(), y: "fraction".into(), series });
    }
    let caption = format!("{} epochs; {} samples scored in the last", epochs.len(), epochs.last().map_or(0, |e| e.samples));
    figs.lines(stem, title, &caption, &panels)
}

fn section_scores(stages: &[StageDir], figs: &mut Figures) -> String {
    let mut out = String::from("<section id=\"scores\"><h2>Scores</h2>");
    let train = stages.iter().find(|s| s.kind == "split").and_then(|s| read::read_split(&s.path.join("split.parquet")).ok()).map(|m| m.values().filter(|v| v.as_str() == "train").count());
    let scored: Vec<&StageDir> = stages.iter().filter(|s| s.kind == "score" && s.manifest.is_some()).collect();
    let dynamic: Vec<&StageDir> = stages.iter().filter(|s| s.kind == "finetune" && s.manifest.is_some() && s.path.join("scores.parquet").is_file()).collect();
    if scored.is_empty() {
        out.push_str(&html::not_run("score stage (molpeg-score writes score*/scores.parquet and sample_scores.parquet)"));
    }
    for s in scored {
        let _ = write!(out, "<h3><code>{}</code></h3>", esc(&s.name));
        match read::read_sample_scores(&s.path.join("sample_scores.parquet")) {
            Ok(values) => {
                let (n, mean) = (values.len(), values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64);
                let stem = stem_of(&format!("hist-{}", s.name));
                let title = format!("{}: MolPeg score at the last sighting", s.name);
                out.push_str(&figs.embed(&stem, &format!("{n} training samples, mean score {mean:.4}"), |p| {
                    molpeg_plot::histogram(&p.with_extension("png"), &values, 50, &title, "score")?;
                    molpeg_plot::histogram(&p.with_extension("svg"), &values, 50, &title, "score")
                }));
            }
            Err(e) => out.push_str(&html::note(&format!("sample_scores.parquet: {e}"))),
        }
        match read::read_score_epochs(&s.path.join("scores.parquet")) {
            Ok(epochs) => out.push_str(&score_evolution(&format!("scores-{}", s.name), &format!("{}: scores by epoch", s.name), &epochs, train, false, figs)),
            Err(e) => out.push_str(&html::note(&format!("scores.parquet: {e}"))),
        }
    }
    if dynamic.is_empty() {
        out.push_str(&html::not_run("dynamic pruning (molpeg-finetune --dynamic molpeg --keep R writes finetune-dynamic-*/scores.parquet)"));
    } else {
        out.push_str("<h3>Under dynamic pruning</h3>");
        out.push_str(&html::note("Per epoch: the score distribution of the samples trained on, how much of the kept set carries over from the previous epoch, and how much of the training split has been visited."));
        for s in dynamic {
            match read::read_score_epochs(&s.path.join("scores.parquet")) {
                Ok(epochs) => out.push_str(&score_evolution(&format!("dynamic-{}", s.name), &format!("{}: scores under dynamic pruning", s.name), &epochs, train, true, figs)),
                Err(e) => out.push_str(&html::note(&format!("{}/scores.parquet: {e}", s.name))),
            }
        }
    }
    out.push_str("</section>");
    out
}

fn mean_of(v: &[Option<f64>]) -> Option<f64> {
    let x: Vec<f64> = v.iter().flatten().copied().collect();
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

fn section_coresets(stages: &[StageDir], pipeline_dir: &Path, figs: &mut Figures) -> String {
    let mut out = String::from("<section id=\"coresets\"><h2>Coresets</h2>");
    let selects: Vec<&StageDir> = stages.iter().filter(|s| s.kind == "select" && s.path.join("coreset.parquet").is_file()).collect();
    if selects.is_empty() {
        out.push_str(&html::not_run("selection (molpeg-select writes select*/coreset.parquet)"));
        out.push_str("</section>");
        return out;
    }
    let inputs = read::read_molecules(&pipeline_dir.join("featurize/graphs.parquet")).and_then(|m| Ok((m, read::read_split(&pipeline_dir.join("split/split.parquet"))?)));
    let (molecules, split) = match inputs {
        Ok(x) => x,
        Err(e) => {
            figs.problems.push(e.to_string());
            out.push_str(&html::note(&format!("the composition needs featurize/graphs.parquet and split/split.parquet: {e}")));
            out.push_str("</section>");
            return out;
        }
    };
    let binary = molecules.task_type == "binary";
    out.push_str(&html::note(&format!(
        "Against the training split. Class share = positives among labelled samples{}; scaffolds = Bemis–Murcko scaffolds of graphs.parquet (acyclic molecules share the empty scaffold); molecules covered = training molecules whose scaffold has a representative in the coreset.",
        if molecules.task_names.len() > 1 { " (mean over tasks; per task below)" } else { "" }
    )));
    let (mut rows, mut names, mut groups) = (Vec::new(), Vec::new(), vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()]);
    let mut per_task = String::new();
    for s in &selects {
        let coreset = match read::read_coreset(&s.path.join("coreset.parquet")) {
            Ok(c) => c,
            Err(e) => {
                figs.problems.push(e.to_string());
                rows.push(vec![format!("<code>{}</code>", esc(&s.name)), format!("cannot read: {}", esc(&e.to_string())), String::new(), String::new(), String::new(), String::new(), String::new()]);
                continue;
            }
        };
        let c = read::composition(&molecules, &split, &coreset.ids);
        let params = coreset.params.or_else(|| s.manifest.as_ref().map(|m| m.params.clone()));
        let rule = params.as_ref().and_then(|p| p.get("rule")).and_then(Value::as_str).unwrap_or("?").to_string();
        let (train_pos, kept_pos) = (mean_of(&c.train_positive), mean_of(&c.kept_positive));
        let scaffold_share = c.kept_scaffolds as f64 / c.train_scaffolds.max(1) as f64;
        rows.push(vec![
            format!("<code>{}</code>", esc(&s.name)),
            esc(&rule),
            format!("{} / {} ({})", c.kept, c.train, pct(Some(c.kept as f64 / c.train.max(1) as f64))),
            if binary { format!("{} → {}", pct(train_pos), pct(kept_pos)) } else { "n/a (regression)".into() },
            format!("{} / {} ({})", c.kept_scaffolds, c.train_scaffolds, pct(Some(scaffold_share))),
            pct(Some(c.molecules_covered)),
            if c.outside_train > 0 { format!("<span class=\"chip warn\">{} ids outside the training split</span>", c.outside_train) } else { String::new() },
        ]);
        names.push(s.name.trim_start_matches("select-").to_string());
        for (g, v) in groups.iter_mut().zip([train_pos, kept_pos, Some(scaffold_share), Some(c.molecules_covered)]) {
            g.push(v.unwrap_or(f64::NAN));
        }
        if binary && molecules.task_names.len() > 1 {
            let body: Vec<Vec<String>> = molecules.task_names.iter().enumerate().map(|(t, name)| vec![esc(name), pct(c.train_positive.get(t).copied().flatten()), pct(c.kept_positive.get(t).copied().flatten())]).collect();
            let _ = write!(per_task, "<details><summary>{}: positive share per task</summary>{}</details>", esc(&s.name), html::table(&["task", "training split", "coreset"], &body));
        }
    }
    out.push_str(&html::table(&["coreset", "rule", "kept / train", "positive share: train → coreset", "scaffolds kept / train", "training molecules covered", ""], &rows));
    out.push_str(&per_task);
    if !names.is_empty() {
        let labels = ["positives: training split", "positives: coreset", "scaffolds kept", "training molecules covered"];
        let groups: Vec<(String, Vec<f64>)> = labels.iter().zip(groups).filter(|(_, v)| v.iter().any(|x| x.is_finite())).map(|(l, v)| (l.to_string(), v)).collect();
        out.push_str(&figs.embed("coresets", "class share and scaffold coverage of each coreset against the training split", |p| {
            molpeg_plot::bars(p, &Labels { title: "coreset composition", x: "coreset", y: "fraction" }, &names, &groups)
        }));
    }
    out.push_str("</section>");
    out
}

/// Groups of runs: strategy label → keep → test values over seeds.
type Grouped = BTreeMap<String, BTreeMap<u64, Vec<f64>>>;

fn keep_key(k: f64) -> u64 {
    (k * 1e6).round() as u64
}

fn comparison_figure(stem: &str, title: &str, metric: &str, x_label: &str, groups: &Grouped, figs: &mut Figures) -> (String, Vec<Vec<String>>) {
    let mut series = Vec::new();
    let mut rows = Vec::new();
    for (strategy, by_keep) in groups {
        let stats: Vec<(f64, f64, f64, usize)> = by_keep.iter().map(|(&k, v)| {
            let (m, s) = mean_std(v);
            (k as f64 / 1e6, m, s, v.len())
        }).collect();
        for &(k, m, s, n) in &stats {
            rows.push(vec![esc(strategy), format!("{k}"), n.to_string(), format!("{} ± {}", num(Some(m)), num(Some(s)))]);
        }
        if strategy.starts_with("full") {
            if let Some(&(_, m, s, n)) = stats.first() {
                series.push(Series { label: format!("{strategy} {m:.3} ± {s:.3} (n={n})"), points: vec![(f64::NAN, f64::NAN), (0.0, m)], dashed: true, ..Default::default() });
            }
            continue;
        }
        series.push(Series {
            label: strategy.clone(),
            points: stats.iter().map(|&(k, m, _, _)| (k, m)).collect(),
            errors: Some(stats.iter().map(|&(_, _, s, _)| s).collect()),
            dashed: false,
        });
    }
    // Reference lines span the x range of the strategies' points.
    let (lo, hi) = series.iter().filter(|s| !s.dashed).flat_map(|s| s.points.iter().map(|p| p.0)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    for s in series.iter_mut().filter(|s| s.dashed) {
        let m = s.points[1].1;
        // One keep ratio only: a single point, which the plot spans across the padded axis.
        s.points = if !lo.is_finite() { vec![(0.0, m), (1.0, m)] } else if hi > lo { vec![(lo, m), (hi, m)] } else { vec![(lo, m)] };
    }
    // Solid strategies first, references last (their colours follow).
    series.sort_by_key(|s| s.dashed);
    let panel = Panel { title: format!("test {metric} (mean ± std over seeds)"), x: x_label.into(), y: format!("test {metric}"), series };
    (figs.lines(stem, title, "test metric at the best-validation epoch; dashed: full data", &[panel]), rows)
}

fn section_comparison(config: &ReportConfig, stages: &[StageDir], figs: &mut Figures) -> (String, usize) {
    let mut out = String::from("<section id=\"comparison\"><h2>Method comparison</h2>");
    let dirs = comparison_dirs(config);
    let mut runs = Vec::new();
    for dir in &dirs {
        for s in read::stage_dirs(dir).iter().filter(|s| s.kind == "finetune") {
            if let Some(r) = classify(s, dir) {
                runs.push(r);
            }
        }
    }
    let runs: Vec<Run> = runs.into_iter().filter(|r| r.test.is_some() && r.keep.is_some()).collect();
    let _ = write!(out, "<p class=\"note\">Fine-tuning runs read from {} pipeline director{}: {}.</p>", dirs.len(), if dirs.len() == 1 { "y" } else { "ies" }, dirs.iter().map(|d| format!("<code>{}</code>", esc(&d.display().to_string()))).collect::<Vec<_>>().join(", "));
    let mixed_start = runs.iter().any(|r| r.pretrained) && runs.iter().any(|r| !r.pretrained);
    let mut any = false;
    if runs.len() >= 2 {
        let metrics: BTreeSet<&str> = runs.iter().map(|r| r.monitor.as_str()).collect();
        for metric in metrics {
            let mut groups: Grouped = BTreeMap::new();
            for r in runs.iter().filter(|r| r.monitor == metric) {
                let label = if mixed_start { format!("{} ({})", r.strategy, if r.pretrained { "pretrained" } else { "scratch" }) } else { r.strategy.clone() };
                groups.entry(label).or_default().entry(keep_key(r.keep.unwrap_or(1.0))).or_default().push(r.test.unwrap_or(f64::NAN));
            }
            let (fig, rows) = comparison_figure(&format!("comparison-{metric}"), &format!("{}: test {metric} vs keep ratio", config.name), metric, "keep ratio r", &groups, figs);
            out.push_str(&fig);
            out.push_str(&format!("<details><summary>the numbers ({} runs)</summary>{}</details>", runs.iter().filter(|r| r.monitor == metric).count(), html::table(&["strategy", "keep", "runs", "test mean ± std"], &rows)));
            any = true;
        }
    } else {
        out.push_str(&html::not_run(&format!(
            "comparison: {} finished fine-tuning run(s); it needs several (strategies, keep ratios or seeds, e.g. experiments/baselines_hiv.sh, experiments/table1.sh, or a scaling sweep)",
            runs.len()
        )));
    }
    for s in stages.iter().filter(|s| s.kind == "scaling") {
        let path = s.path.join("results.parquet");
        match read::read_scaling_results(&path) {
            Ok(cells) if !cells.is_empty() => {
                let metrics: BTreeSet<String> = cells.iter().map(|c| c.metric.clone()).collect();
                let mixed = cells.iter().map(|c| c.pretrained.as_str()).collect::<HashSet<_>>().len() > 1;
                for metric in metrics {
                    let mut groups: Grouped = BTreeMap::new();
                    for c in cells.iter().filter(|c| c.metric == metric) {
                        if let Some(t) = c.test {
                            let label = if mixed { format!("{} ({})", c.strategy, c.pretrained) } else { c.strategy.clone() };
                            groups.entry(label).or_default().entry(keep_key(c.fraction)).or_default().push(t);
                        }
                    }
                    let (fig, rows) = comparison_figure(&format!("{}-{metric}", s.name), &format!("{}: test {metric} vs fraction of training data", s.name), &metric, "fraction of the training split", &groups, figs);
                    out.push_str(&fig);
                    out.push_str(&format!("<details><summary>the numbers ({} cells)</summary>{}</details>", cells.len(), html::table(&["strategy", "fraction", "seeds", "test mean ± std"], &rows)));
                    any = true;
                }
            }
            Ok(_) => out.push_str(&html::note(&format!("{}: no finished cells yet", s.name))),
            Err(e) => {
                figs.problems.push(e.to_string());
                out.push_str(&html::note(&format!("{}: {e}", path.display())));
            }
        }
    }
    if any && runs.len() >= 2 {
        let seeds: HashMap<&str, BTreeSet<u64>> = runs.iter().fold(HashMap::new(), |mut m, r| {
            m.entry(r.strategy.as_str()).or_insert_with(BTreeSet::new).extend(r.seed);
            m
        });
        let max_seeds = seeds.values().map(BTreeSet::len).max().unwrap_or(0);
        out.push_str(&html::note(&format!("{} runs, up to {max_seeds} seed(s) per strategy; std is the sample standard deviation over seeds (0 with one seed).", runs.len())));
    }
    out.push_str("</section>");
    (out, runs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(utc(t(0)), "1970-01-01 00:00 UTC");
        assert_eq!(utc(t(951_782_400)), "2000-02-29 00:00 UTC");
        assert_eq!(utc(t(1_798_761_600 + 3_600 * 13 + 60 * 5)), "2027-01-01 13:05 UTC");
    }

    #[test]
    fn stems_have_no_dots_and_seed_dirs_are_recognised() {
        assert_eq!(stem_of("curves-finetune-dynamic-molpeg-keep0.3"), "curves-finetune-dynamic-molpeg-keep0_3");
        assert!(is_seed_dir(Path::new("runs/exp/seed12")));
        assert!(!is_seed_dir(Path::new("runs/exp/seed")) && !is_seed_dir(Path::new("runs/seedx")));
    }

    #[test]
    fn a_pipeline_with_nothing_run_still_gives_a_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("p/featurize")).unwrap();
        let summary = run(&ReportConfig::for_pipeline("p", dir.path())).unwrap();
        assert_eq!(summary.not_run, vec!["split", "score", "select", "finetune", "scaling"]);
        let page = std::fs::read_to_string(&summary.page).unwrap();
        assert!(page.contains("not run") && page.contains("incomplete"), "the featurize dir without a manifest is incomplete");
        assert!(run(&ReportConfig::for_pipeline("missing", dir.path())).is_err());
    }

    /// A featurize run as `--shard I/2` leaves one manifest per shard and no manifest.json: the
    /// report lists it as done in 2 shards, or names the shard still to run.
    #[test]
    fn a_sharded_stage_is_done_when_every_shard_manifest_is_there() {
        use molpeg_core::manifest::{FileRecord, Manifest};
        use molpeg_core::shard::Shard;
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("p/featurize");
        std::fs::create_dir_all(&stage).unwrap();
        for index in 0..2 {
            let output = FileRecord { path: format!("graphs.parquet/part-0000{index}-of-00002.parquet"), sha256: "ab".repeat(32), bytes: 10 };
            let manifest = Manifest {
                stage: "featurize".into(),
                tool_version: "0.1.0".into(),
                algorithm_version: 1,
                params: serde_json::json!({"shard": format!("{index}/2")}),
                inputs: vec![],
                outputs: vec![output],
                summary: serde_json::json!({"seconds": 60.0 + index as f64 * 30.0}),
            };
            let name = molpeg_core::dataset::manifest_name(Some(Shard { index, count: 2 }));
            std::fs::write(stage.join(name), serde_json::to_string(&manifest).unwrap()).unwrap();
        }
        let page = |dir: &Path| std::fs::read_to_string(run(&ReportConfig::for_pipeline("p", dir)).unwrap().page).unwrap();
        let done = page(dir.path());
        assert!(done.contains("done (2 shards)") && done.contains("1.5 min (slowest shard)"), "{done}");
        assert!(done.contains("part-00001-of-00002.parquet") && !done.contains("incomplete"));
        std::fs::remove_file(stage.join("manifest-part-00001-of-00002.json")).unwrap();
        let partial = page(dir.path());
        assert!(partial.contains("1 of 2 shards; to run: --shard 1/2"), "{partial}");
    }
}
