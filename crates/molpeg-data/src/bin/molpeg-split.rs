//! `molpeg-split`: assigns every featurized molecule to train, valid or test.

use clap::Parser;
use molpeg_core::cli::StageArgs;
use molpeg_core::manifest::Outcome;
use molpeg_data::split::{self, SplitConfig, SplitMethod};

/// Split runs/<pipeline>/featurize/graphs.parquet into train/valid/test and write
/// runs/<pipeline>/split/split.parquet (mol_id, split). Settings come from the pipeline's [split]
/// section; flags override them.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    stage: StageArgs,
    /// random (seeded ChaCha shuffle), python-random (pretrain-gnns/MolPeg `random_split`: Python's
    /// `random.seed(SEED)` + `random.shuffle`, index for index; the paper's split is seed 42), scaffold
    /// (Hu et al./DeepChem, deterministic) or imbalanced-scaffold (MolScaling).
    #[arg(long, value_enum)]
    method: Option<SplitMethod>,
    /// Train, valid, test fractions, e.g. 0.8,0.1,0.1.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    fractions: Option<Vec<f64>>,
    /// Seed for random, python-random and imbalanced-scaffold.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molpeg-split: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let pipeline = args.stage.load_pipeline()?;
    let mut config: SplitConfig = pipeline.section("split")?;
    if let Some(m) = args.method {
        config.method = m;
    }
    if let Some(f) = &args.fractions {
        config.fractions = Some([f[0], f[1], f[2]]);
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    match split::run(&pipeline, &args.stage.runs_dir, &config, args.stage.force)? {
        Outcome::UpToDate(dir) => println!("split: up to date ({}), use --force to rerun", dir.display()),
        Outcome::Ran(summary) => {
            println!("split: {} molecules by {:?} in {:.2}s -> {}", summary.molecules, summary.method, summary.seconds, summary.output.display());
            // Regression labels have no positives: the column would read 0 everywhere.
            let positives = summary.parts.iter().any(|(_, c)| c.positive_labels > 0);
            for (part, c) in &summary.parts {
                let labels = if positives { format!("{:>6} positive labels  ", c.positive_labels) } else { String::new() };
                println!("  {:<5} {:>8} molecules  {labels}{:>6} scaffolds", part.as_str(), c.molecules, c.scaffolds);
            }
        }
    }
    Ok(())
}
