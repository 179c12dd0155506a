//! `molpeg-pretrain`: GraphMAE-style self-supervised pretraining of the GIN encoder (see
//! `molpeg_nn::pretrain`).

use std::process::ExitCode;

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_nn::cli::PretrainArgs;
use molpeg_nn::pretrain::{self, PretrainConfig, PretrainSettings};

/// Pretrain a GIN encoder by masked-atom reconstruction (GraphMAE): mask a fraction of each molecule's
/// atoms, encode with the GIN, re-mask, decode with one GIN layer, and minimize the scaled cosine error
/// to the true atom types. The input graphs.parquet is streamed in chunks.
///
/// Writes runs/<pipeline>/pretrain/{encoder.safetensors (load it with molpeg-finetune --pretrained),
/// pretrain_log.parquet, resume.safetensors, summary.json}. Checkpoints every --checkpoint-every steps;
/// after an interruption rerun the same command with --resume. Settings: the pipeline's [pretrain]
/// section; flags override it.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
    #[command(flatten)]
    args: PretrainArgs,
}

fn main() -> ExitCode {
    molpeg_nn::runtime::passive_openmp_by_default();
    molpeg_nn::cli::finish(run(&Cli::parse()))
}

fn run(cli: &Cli) -> anyhow::Result<pretrain::PretrainSummary> {
    let pipeline = cli.stage.load_pipeline()?;
    let mut settings: PretrainSettings = pipeline.section(pretrain::STAGE)?;
    cli.args.apply(&mut settings);
    let mut config = PretrainConfig::for_pipeline(&pipeline, &cli.stage.runs_dir, settings);
    if let Some(graphs) = &cli.args.graphs {
        config.graphs = graphs.clone();
    }
    config.force = cli.stage.force;
    config.resume = cli.args.resume;
    config.max_steps = cli.args.max_steps;
    Ok(pretrain::run(&config)?)
}
