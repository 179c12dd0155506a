//! `molpeg-select`: scores → coreset.

use std::path::PathBuf;

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_core::manifest::Outcome;
use molpeg_prune::select::{self, Aggregate, Order, SelectConfig};
use molpeg_prune::signals::EpochSelection;

/// Select a static coreset of the training split and write coreset.parquet (mol_id, rank, score, weight).
///
/// Rules: `molpeg` keeps the ⌊r·N⌋ largest MolPeg scores; `random` a seeded uniform subset;
/// `column:NAME` ranks by any numeric column of the scores file; the baselines of both papers (herding,
/// kmeans, kcenter, least-confidence, entropy, margin, forgetting, grand, el2n, moderate) read the proxy
/// signals that `molpeg-score --signals` writes to the score directory; kmeans-fp reads the Morgan
/// fingerprints that `molpeg-featurize --fingerprints` writes. `--help` lists every rule.
/// Settings come from the pipeline's [select] section; flags override them.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    stage: StageArgs,
    /// Selection rule (`--help` lists them all with one line each).
    #[arg(long, long_help = rule_help())]
    rule: Option<String>,
    /// Fraction of the training samples to keep, in (0, 1].
    #[arg(long, conflicts_with = "prune")]
    keep: Option<f64>,
    /// Fraction of the training samples to remove, in [0, 1) (keep = 1 − prune).
    #[arg(long)]
    prune: Option<f64>,
    /// For `molpeg`: score of the last epoch a sample was seen, or the mean over epochs.
    #[arg(long, value_enum)]
    aggregate: Option<Aggregate>,
    /// For `column:NAME`: keep the largest (desc) or smallest (asc) values.
    #[arg(long, value_enum)]
    order: Option<Order>,
    /// Seed of `random` and of k-means++ (`kmeans`, `kmeans-fp`).
    #[arg(long)]
    seed: Option<u64>,
    /// Do not weight the kept samples' loss by 1/r.
    #[arg(long)]
    no_rescale: bool,
    /// Scores file for `molpeg` and `column:NAME` (default <score dir>/sample_scores.parquet).
    #[arg(long, value_name = "PARQUET")]
    scores: Option<PathBuf>,
    /// Score stage directory holding the proxy signals (default runs/<pipeline>/score).
    #[arg(long, value_name = "DIR")]
    score_dir: Option<PathBuf>,
    /// Epochs of outputs.parquet that grand and el2n average and forgetting counts over: all, last,
    /// or a list such as 1-5 or 1,3,5 (default all).
    #[arg(long, value_name = "EPOCHS")]
    proxy_epochs: Option<EpochSelection>,
    /// Fingerprint file of `kmeans-fp` (default runs/<pipeline>/featurize/fingerprints.parquet, written
    /// by `molpeg-featurize --fingerprints`).
    #[arg(long, value_name = "PARQUET")]
    fingerprints: Option<PathBuf>,
    /// Output directory (default runs/<pipeline>/select).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

fn rule_help() -> String {
    format!("Selection rule, one of:\n{}", select::rules_help())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molpeg-select: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let pipeline = args.stage.load_pipeline()?;
    let mut config: SelectConfig = pipeline.section("select")?;
    if let Some(rule) = &args.rule {
        config.rule = rule.clone();
    }
    if args.keep.is_some() || args.prune.is_some() {
        config.keep = args.keep;
        config.prune = args.prune;
    }
    config.aggregate = args.aggregate.unwrap_or(config.aggregate);
    config.order = args.order.unwrap_or(config.order);
    config.seed = args.seed.unwrap_or(config.seed);
    config.rescale &= !args.no_rescale;
    if args.scores.is_some() {
        config.scores = args.scores.clone();
    }
    if args.score_dir.is_some() {
        config.score_dir = args.score_dir.clone();
    }
    if args.fingerprints.is_some() {
        config.fingerprints = args.fingerprints.clone();
    }
    if let Some(epochs) = &args.proxy_epochs {
        config.proxy_epochs = epochs.clone();
    }
    match select::run(&pipeline, &args.stage.runs_dir, &config, args.out_dir.as_deref(), args.stage.force)? {
        Outcome::UpToDate(dir) => println!("select: up to date ({}), use --force to rerun", dir.display()),
        Outcome::Ran(s) => println!(
            "select: {} kept {} of {} training samples (keep {}), weight {} -> {}",
            s.rule, s.kept, s.candidates, s.keep, s.weight, s.output.display()
        ),
    }
    Ok(())
}
