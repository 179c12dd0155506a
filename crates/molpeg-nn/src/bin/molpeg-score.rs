//! `molpeg-score`: MolPeg's dual-pace scoring of the training split (see `molpeg_nn::score`).

use std::process::ExitCode;

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_nn::cli::FinetuneArgs;
use molpeg_nn::finetune::{FinetuneConfig, FinetuneSettings};
use molpeg_nn::score;

/// Score every training sample with MolPeg's dual-pace models: the online model θ trains on the train
/// split; the reference ξ follows it as an EMA (ξ ← β·ξ + (1 − β)·θ after every step, β = --ema-beta);
/// each time a sample is seen its score |loss_θ − loss_ξ| is recorded.
///
/// Writes runs/<pipeline>/score/{scores.parquet (mol_id, epoch, loss_online, loss_ref, score),
/// sample_scores.parquet (mol_id, score_last, score_mean, delta_last, times_seen), scores_hist.png,
/// summary.json}; with --signals also the proxy signals of the baseline rules of molpeg-select:
/// outputs.parquet (mol_id, epoch, loss, el2n, grand, correct after every epoch) and embeddings.parquet
/// (mol_id, labels, probs, embedding after the last epoch). --tag T writes to score-T/ instead.
/// Settings: the pipeline's [finetune] section overlaid with [score]; flags override both.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
    /// Also record the proxy signals the baseline selection rules read (an eval pass per epoch).
    #[arg(long)]
    signals: bool,
    #[command(flatten)]
    args: FinetuneArgs,
}

fn main() -> ExitCode {
    molpeg_nn::runtime::passive_openmp_by_default();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(s) if s.skipped => {
            println!("score: up to date ({}), use --force to rerun", s.stage_dir.display());
            ExitCode::SUCCESS
        }
        Ok(s) => {
            println!(
                "score: {} training samples × {} epochs = {} sightings in {:.1} s; score mean {:.4}, median {:.4} -> {}",
                s.train_samples, s.epochs, s.sightings, s.seconds, s.mean_score, s.median_score, s.stage_dir.display()
            );
            if s.signals {
                println!("score: proxy signals in outputs.parquet and embeddings.parquet (molpeg-select --rule herding|kmeans|kcenter|...)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<score::ScoreSummary> {
    let pipeline = cli.stage.load_pipeline()?;
    let (mut settings, mut options): (FinetuneSettings, score::ScoreOptions) = pipeline.layered_section_with("finetune", score::STAGE, score::ScoreOptions::KEYS)?;
    cli.args.apply(&mut settings);
    options.signals |= cli.signals;
    anyhow::ensure!(settings.dynamic.is_none() && settings.coreset.is_none(), "molpeg-score scores the whole training split: --dynamic and --coreset do not apply");
    let mut config = FinetuneConfig::for_pipeline(&pipeline, &cli.stage.runs_dir, settings);
    config.out_dir = pipeline.stage_dir(&cli.stage.runs_dir, &score::stage_name(&config.settings));
    config.force = cli.stage.force;
    Ok(score::run_with(&config, &options)?)
}
