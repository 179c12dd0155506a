//! `molpeg-report`: writes `runs/<pipeline>/report.html`, one self-contained page (figures inline, no
//! network) about what the pipeline's stages produced. Read-only: it trains nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use molpeg_report::{ReportConfig, PAGE_FILE};

/// Write one self-contained HTML report of a pipeline's runs.
///
/// Reads every stage directory of <RUNS_DIR>/<pipeline>/ (manifest.json, metrics.parquet, score and
/// coreset files, graphs.parquet's scaffolds, scaling results) and writes <RUNS_DIR>/<pipeline>/report.html
/// with: what ran (stages, settings, input hashes, times), learning curves of every fine-tuning run,
/// the MolPeg score histogram and how scores evolve (score stage, dynamic pruning), each coreset's
/// class share and scaffold coverage against the training split, and the method comparison (test
/// metric vs keep ratio per strategy, mean ± std over seeds, full-data line) when several runs exist.
/// The figures are also written as PNG and SVG into <RUNS_DIR>/<pipeline>/report/.
///
/// The comparison also reads the same pipeline in sibling seed directories (with --runs-dir
/// runs/exp-table1/seed0 it reads runs/exp-table1/seed*/<pipeline>/) and every --compare directory.
/// Stages that did not run are shown as "not run". The page has no scripts and loads nothing: open it
/// from disk in any browser.
#[derive(Debug, Parser)]
#[command(name = "molpeg-report", version)]
struct Args {
    /// Pipeline file (its `name`, else its file stem, names the directory under --runs-dir).
    #[arg(long, short = 'p', value_name = "TOML", required_unless_present = "name")]
    pipeline: Option<PathBuf>,
    /// The pipeline's name instead of its file (e.g. for a copy of someone's runs/ without pipelines/).
    #[arg(long, conflicts_with = "pipeline")]
    name: Option<String>,
    /// Root of stage outputs: the report reads <RUNS_DIR>/<pipeline>/.
    #[arg(long, env = "MOLPEG_RUNS_DIR", default_value = "runs", value_name = "DIR")]
    runs_dir: PathBuf,
    /// More runs for the method comparison: a runs directory holding <pipeline>/, or a pipeline
    /// directory itself (repeatable).
    #[arg(long, value_name = "DIR")]
    compare: Vec<PathBuf>,
    /// Where to write the page (default <RUNS_DIR>/<pipeline>/report.html); figures go to the
    /// directory of the same name without .html.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| -> anyhow::Result<molpeg_report::ReportSummary> {
        let name = match (&args.name, &args.pipeline) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => molpeg_core::pipeline::Pipeline::load(p)?.name,
            (None, None) => unreachable!("clap requires one of --pipeline and --name"),
        };
        let mut config = ReportConfig::for_pipeline(&name, &args.runs_dir);
        config.compare = args.compare.clone();
        if let Some(out) = &args.out {
            config.out = if out.extension().is_some() { out.clone() } else { out.join(PAGE_FILE) };
        }
        Ok(molpeg_report::run(&config)?)
    })();
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("molpeg-report: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
