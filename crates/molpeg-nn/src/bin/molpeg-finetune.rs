//! `molpeg-finetune`: fine-tunes a GIN on a pipeline's featurized dataset (see `molpeg_nn::finetune`).

use std::process::ExitCode;

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_nn::cli::FinetuneArgs;
use molpeg_nn::finetune::{self, FinetuneConfig, FinetuneSettings};

/// Fine-tune a GIN on runs/<pipeline>/featurize/graphs.parquet with runs/<pipeline>/split/split.parquet.
/// Settings come from the pipeline's [finetune] section; flags override them.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
    #[command(flatten)]
    args: FinetuneArgs,
}

fn main() -> ExitCode {
    molpeg_nn::runtime::passive_openmp_by_default();
    molpeg_nn::cli::finish(run(&Cli::parse()))
}

fn run(cli: &Cli) -> anyhow::Result<finetune::FinetuneSummary> {
    let pipeline = cli.stage.load_pipeline()?;
    let mut settings: FinetuneSettings = pipeline.section(finetune::STAGE)?;
    cli.args.apply(&mut settings);
    let mut config = FinetuneConfig::for_pipeline(&pipeline, &cli.stage.runs_dir, settings);
    config.force = cli.stage.force;
    Ok(finetune::run(&config)?)
}
