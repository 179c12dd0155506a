//! `molpeg-predict`: fine-tuned models applied to new molecules.

use std::path::PathBuf;

use clap::Parser;
use molpeg_nn::device::DeviceChoice;
use molpeg_predict::PredictConfig;

/// Predict with fine-tuned molpeg models on new molecules.
///
/// Reads SMILES from a CSV, CSV.gz or Parquet file (--smiles-column, default `smiles`) or a
/// pipeline's graphs.parquet (a file or a sharded featurize's directory of parts), featurizes them in chunks with the featurize stage's featurizer, and
/// writes OUT_DIR/predictions.parquet (row, smiles, canonical_smiles, one column per task: the
/// probability for binary tasks, the value in the target's unit for regression; with several
/// --model an ensemble: the mean, and <task>_std the standard deviation over the models) and
/// OUT_DIR/rejects.parquet (row, smiles, reason). The checkpoints carry the task names and type,
/// the regression standardisation and the featurizer version; no pipeline file is needed.
///
/// A 3D model (SchNet) gets each molecule's 3D atoms as an RDKit conformer (--geometry), embedded
/// by the featurize stage's code; a molecule that cannot be embedded is a reject with the reason.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Molecules: CSV / CSV.gz / Parquet with a SMILES column, or a pipeline's graphs.parquet.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: PathBuf,
    /// A fine-tuned model.safetensors; repeat for an ensemble. Default: runs/NAME/finetune/model.safetensors with --name.
    #[arg(long = "model", short = 'm', value_name = "FILE")]
    models: Vec<PathBuf>,
    /// Pipeline name whose fine-tuned model and runs directory give the defaults of --model and --out-dir.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Output directory. Default: RUNS_DIR/NAME/predict-<input file stem> with --name.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Root of stage outputs (for the --name defaults).
    #[arg(long, env = "MOLPEG_RUNS_DIR", default_value = "runs", value_name = "DIR")]
    runs_dir: PathBuf,
    /// The SMILES column of a CSV or Parquet input.
    #[arg(long, default_value = "smiles", value_name = "COLUMN")]
    smiles_column: String,
    /// Molecules featurized and predicted per chunk (bounds memory).
    #[arg(long, default_value_t = 4096, value_name = "ROWS")]
    chunk_rows: usize,
    /// Graphs per forward pass.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// libtorch threads; 0 = libtorch's default. Featurization uses RAYON_NUM_THREADS (default: all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// Only the first N input rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Rerun even if the outputs are up to date.
    #[arg(long)]
    force: bool,
    /// Predict shard I of N (numbered from 0): the I-th of N contiguous, near-equal slices of the
    /// input rows (after --limit). Writes OUT_DIR/predictions.parquet/part-0000I-of-0000N.parquet and
    /// rejects.parquet/ likewise, with its own manifest OUT_DIR/manifest-part-0000I-of-0000N.json; the
    /// N parts read as one table (pyarrow, polars, DuckDB, molpeg) are row for row the output of a run
    /// without --shard. Default: the Slurm array task (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of
    /// SLURM_ARRAY_TASK_COUNT) when set.
    #[arg(long, value_name = "I/N")]
    shard: Option<molpeg_core::shard::Shard>,
    /// 3D models only: the conformer each molecule gets, `etkdg` (RDKit ETKDGv3, hydrogens added)
    /// or `etkdg+mmff` (then relaxed with MMFF94). Default: the model's training conformers when it
    /// was trained on RDKit conformers; required for a model trained on a dataset's geometries (QM9's
    /// DFT ones), whose predictions on conformers then carry the shift between the two.
    #[arg(long, value_name = "MODE", value_parser = parse_geometry)]
    geometry: Option<molpeg_chem::geometry::GeometryMode>,
    /// The conformer seed. Default: the model's training seed, else 42 (as molpeg-featurize).
    #[arg(long, value_name = "SEED")]
    conformer_seed: Option<u32>,
    /// ETKDG attempts per molecule before a random-coordinates retry and then a reject.
    #[arg(long, default_value_t = 10, value_name = "N")]
    conformer_attempts: u32,
}

fn parse_geometry(s: &str) -> Result<molpeg_chem::geometry::GeometryMode, String> {
    s.parse()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molpeg-predict: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let stage_dir = |name: &str, dir: &str| args.runs_dir.join(name).join(dir);
    let models = match (&args.name, args.models.is_empty()) {
        (_, false) => args.models.clone(),
        (Some(name), true) => vec![stage_dir(name, "finetune").join("model.safetensors")],
        (None, true) => anyhow::bail!("give --model FILE (repeat for an ensemble) or --name PIPELINE"),
    };
    let stem = args.input.file_name().map(|f| f.to_string_lossy().split('.').next().unwrap_or("input").to_string()).unwrap_or_else(|| "input".into());
    let out_dir = match (&args.out_dir, &args.name) {
        (Some(d), _) => d.clone(),
        (None, Some(name)) => stage_dir(name, &format!("predict-{stem}")),
        (None, None) => anyhow::bail!("give --out-dir DIR or --name PIPELINE"),
    };
    let config = PredictConfig {
        input: args.input,
        smiles_column: args.smiles_column,
        models,
        out_dir,
        chunk_rows: args.chunk_rows,
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
        limit: args.limit,
        force: args.force,
        verbose: true,
        shard: molpeg_core::shard::Shard::resolve(args.shard)?,
        geometry: args.geometry,
        conformer_seed: args.conformer_seed,
        conformer_attempts: args.conformer_attempts,
    };
    let summary = molpeg_predict::run(&config)?;
    println!("{summary}");
    if summary.rejected > 0 && !summary.skipped {
        println!("  {} rejected rows with their reasons in {}", summary.rejected, summary.rejects.display());
    }
    Ok(())
}
