//! `molpeg-select`: scores → coreset.

use std::path::PathBuf;

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_core::manifest::Outcome;
use molpeg_prune::select::{self, Aggregate, Order, SelectConfig};

/// Select a static coreset of the training split and write coreset.parquet (mol_id, rank, score, weight).
///
/// Rules: `molpeg` keeps the ⌊r·N⌋ largest MolPeg scores |loss_online − loss_ref| (both the easiest and
/// the hardest samples); `random` keeps a seeded uniform subset; `column:NAME` ranks by any numeric
/// column of the scores file (--order desc keeps the largest). Settings come from the pipeline's
/// [select] section; flags override them.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    stage: StageArgs,
    /// molpeg | random | column:NAME
    #[arg(long)]
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
    #[arg(long)]
    seed: Option<u64>,
    /// Do not weight the kept samples' loss by 1/r.
    #[arg(long)]
    no_rescale: bool,
    /// Scores file (default runs/<pipeline>/score/sample_scores.parquet).
    #[arg(long, value_name = "PARQUET")]
    scores: Option<PathBuf>,
    /// Output directory (default runs/<pipeline>/select).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
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
    match select::run(&pipeline, &args.stage.runs_dir, &config, args.out_dir.as_deref(), args.stage.force)? {
        Outcome::UpToDate(dir) => println!("select: up to date ({}), use --force to rerun", dir.display()),
        Outcome::Ran(s) => println!(
            "select: {:?} kept {} of {} training samples (keep {}), weight {} -> {}",
            s.rule, s.kept, s.candidates, s.keep, s.weight, s.output.display()
        ),
    }
    Ok(())
}
