//! `molpeg-scaling`: the scaling-law sweep (see `molpeg_scaling::sweep`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_nn::cli::FinetuneArgs;
use molpeg_scaling::sweep::{self, SweepConfig, SweepSummary};

/// Scaling-law sweep: fine-tune on fractions of the training split × seeds × strategies (× optional
/// split, model, pretrained and capacity axes), appending each finished cell to
/// runs/<pipeline>/scaling/results.parquet, then fit power and saturating laws (fits.parquet, fits.md)
/// and draw scaling.{png,svg} (and keep_ratio.{png,svg} for MolPeg strategies).
///
/// An interrupted sweep resumes where it stopped: rerunning skips every finished cell. Rows computed
/// with other [finetune] settings or inputs are never mixed in (see --discard-stale). Settings come
/// from the pipeline's [scaling] and [finetune] sections; flags override them. --force redoes the pass
/// (and the report) even when the manifest says it is up to date; finished cells are still reused.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
    /// Fractions of the training split, comma-separated, each in (0, 1] (overrides
    /// [scaling] fractions; built-in default 0.01,0.05,0.1,0.2,0.3,0.4,0.6,0.8,1.0). Fraction 1 trains on the full split once per seed,
    /// shared by every strategy as the strategy `full`.
    #[arg(long, value_delimiter = ',', value_name = "F,...")]
    fractions: Option<Vec<f64>>,
    /// Seeds, comma-separated (overrides [scaling] seeds; built-in default 0,1,2). A seed draws the subset and initializes and shuffles training.
    #[arg(long, value_delimiter = ',', value_name = "S,...")]
    seeds: Option<Vec<u64>>,
    /// Strategies, comma-separated: `random` (a seeded subset of ⌊f·N⌋ molecules), `select:RULE` (any
    /// rule of molpeg-select: molpeg and column:NAME read --scores, the baselines the proxy signals
    /// next to it, kmeans-fp the featurize stage's fingerprints.parquet), `dynamic:POLICY`
    /// (molpeg, soft-random, epsilon-greedy, ucb, infobatch, keeping ⌊f·N⌋ molecules per epoch).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    strategies: Option<Vec<String>>,
    /// Split axis, comma-separated: random, scaffold, imbalanced-scaffold, computed in-process from
    /// graphs.parquet with the [split] seed. Default: the split stage's split.parquet only.
    #[arg(long, value_delimiter = ',', value_name = "METHOD,...")]
    splits: Option<Vec<String>>,
    /// Model (modality) axis, comma-separated: gin (the 2D graph), fingerprint (a Transformer over the
    /// set Morgan bits; featurize with fingerprints = true), smiles (a Transformer over canonical-SMILES
    /// tokens). Token models take their shape from [finetune.sequence]. Default: [finetune] model only.
    #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
    models: Option<Vec<String>>,
    /// Pretrained axis, comma-separated: `scratch` or encoder checkpoints (safetensors). Default: the
    /// [finetune] pretrained setting (--pretrained) only.
    #[arg(long, value_delimiter = ',', value_name = "scratch|FILE,...")]
    pretrained_axis: Option<Vec<String>>,
    /// Capacity axis, comma-separated LAYERSxWIDTH values, e.g. 3x64,5x300: GIN layers × width, or a
    /// token model's Transformer layers × token width. Default: [finetune] layers × width for the GIN,
    /// [finetune.sequence] layers × width for token models.
    #[arg(long, value_delimiter = ',', value_name = "LxW,...")]
    capacities: Option<Vec<String>>,
    /// Scores file of select: strategies (default runs/<pipeline>/score/sample_scores.parquet).
    #[arg(long, value_name = "PARQUET")]
    scores: Option<PathBuf>,
    /// Weight the loss of random and select: subsets by 1/fraction (off: a subset trains like a smaller dataset).
    #[arg(long)]
    rescale: bool,
    /// Bootstrap replicates of the 95% confidence intervals (overrides [scaling] bootstrap; built-in default 1000).
    #[arg(long, value_name = "N")]
    bootstrap: Option<usize>,
    /// Output directory (default runs/<pipeline>/scaling).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Run shard I of N (numbered from 0) of the grid's cells: cell i of the planned grid belongs to
    /// shard i mod N. The shard writes OUT_DIR/shards/part-0000I-of-0000N/{results.parquet,
    /// manifest.json} and no report; cells finished anywhere in OUT_DIR are skipped, so no cell runs
    /// twice. Afterwards a run without --shard merges every part into results.parquet and reports.
    /// Default: the Slurm array task (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of
    /// SLURM_ARRAY_TASK_COUNT) when set, so `sbatch --array=0-7` needs no wrapper.
    #[arg(long, value_name = "I/N")]
    shard: Option<molpeg_core::shard::Shard>,
    /// Train nothing: fit and plot the existing results.parquet.
    #[arg(long)]
    report_only: bool,
    /// Drop the rows of results.parquet that other settings or inputs produced, instead of refusing to run.
    #[arg(long)]
    discard_stale: bool,
    /// Fine-tuning settings of every cell. --seed, --coreset, --dynamic, --keep and --tag are set per
    /// cell by the sweep and refused here.
    #[command(flatten, next_help_heading = "Fine-tuning (override [finetune])")]
    train: FinetuneArgs,
}

fn main() -> ExitCode {
    molpeg_nn::runtime::passive_openmp_by_default();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<SweepSummary> {
    let t = &cli.train;
    if t.train.seed.is_some() || t.coreset.is_some() || t.dynamic.is_some() || t.keep.is_some() || t.tag.is_some() {
        bail!("--seed, --coreset, --dynamic, --keep and --tag are chosen per cell by the sweep: use --seeds and --strategies (e.g. dynamic:molpeg)");
    }
    let pipeline = cli.stage.load_pipeline()?;
    let mut config = SweepConfig::for_pipeline(&pipeline, &cli.stage.runs_dir)?;
    t.apply(&mut config.finetune);
    let s = &mut config.scaling;
    macro_rules! set {
        ($($flag:ident => $field:ident),*) => { $( if let Some(v) = cli.$flag.clone() { s.$field = v; } )* };
    }
    set!(fractions => fractions, seeds => seeds, strategies => strategies, splits => splits, models => models, pretrained_axis => pretrained, capacities => capacities, bootstrap => bootstrap);
    if cli.scores.is_some() {
        s.scores = cli.scores.clone();
    }
    s.rescale |= cli.rescale;
    if let Some(dir) = &cli.out_dir {
        config.out_dir = dir.clone();
    }
    config.force = cli.stage.force;
    config.report_only = cli.report_only;
    config.discard_stale = cli.discard_stale;
    config.shard = molpeg_core::shard::Shard::resolve(cli.shard)?;
    Ok(sweep::run(&config)?)
}
