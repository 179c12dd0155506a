//! `molpeg-featurize`: SMILES → molecular graphs with RDKit.

use clap::Parser;
use molpeg_chem::featurize::{self, FeaturizeConfig, FeaturizeSummary};
use molpeg_core::cli::StageArgs;
use molpeg_core::manifest::Outcome;
use molpeg_data::fetch::FetchOptions;

// mimalloc with `override` also serves RDKit's C++ allocations, about a third of the per-molecule cost
// under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Featurize a pipeline's dataset with RDKit into molecular graphs.
///
/// Writes runs/PIPELINE/featurize/graphs.parquet (Hu et al. 2019 and OGB atom/bond features,
/// directed edges, canonical SMILES, Murcko scaffolds, labels) and rejects.parquet (rows RDKit could
/// not featurize, with the reason); with --fingerprints also fingerprints.parquet (Morgan bits of the
/// same molecules, for `molpeg-select --rule kmeans-fp`); with 3D atoms (--geometry, or a dataset
/// with geometry columns such as QM9) also atoms3d.parquet (element and position of every atom,
/// hydrogens included, for 3D models). Settings come from the pipeline's
/// [featurize] section; flags override them. The raw file is found as molpeg-fetch finds it ($MOLPEG_DATA_DIR, then
/// $MOLPEG_DATA_MIRROR, then the canonical URL).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    stage: StageArgs,
    /// Rows featurized and written per chunk (bounds memory).
    #[arg(long, value_name = "ROWS")]
    chunk_rows: Option<usize>,
    /// Worker threads; 0 = one per core.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Featurize only the first N rows (quick runs).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Also write fingerprints.parquet: Morgan bit vectors (radius 2, 2048 bits by default).
    #[arg(long)]
    fingerprints: bool,
    /// Morgan radius of the fingerprints (default 2).
    #[arg(long, value_name = "R")]
    fingerprint_radius: Option<u32>,
    /// Bits per fingerprint, a multiple of 8 (default 2048).
    #[arg(long, value_name = "BITS")]
    fingerprint_bits: Option<u32>,
    /// Reject (before parsing) SMILES longer than N characters (default 10000).
    #[arg(long, value_name = "N")]
    max_characters: Option<usize>,
    /// Reject (before parsing) SMILES with more than N heavy-atom tokens (default 1000; RDKit's time
    /// grows steeply with size: ~0.8 s for 1,000 chain atoms, minutes beyond 10,000).
    #[arg(long, value_name = "N")]
    max_atoms: Option<usize>,
    /// Reject (before parsing) SMILES with more than N dot-separated fragments (default 64).
    #[arg(long, value_name = "N")]
    max_fragments: Option<usize>,
    /// 3D atoms for atoms3d.parquet (3D models such as SchNet): auto (the dataset's geometry
    /// columns if [dataset] geometry names them, else none), none, dataset, etkdg (an RDKit ETKDGv3
    /// conformer with hydrogens) or etkdg+mmff (then MMFF94-relaxed). Overrides [featurize] geometry.
    #[arg(long, value_name = "MODE")]
    geometry: Option<molpeg_chem::geometry::GeometryMode>,
    /// ETKDG's random seed, the same for every molecule (default 42).
    #[arg(long, value_name = "SEED")]
    conformer_seed: Option<u32>,
    /// Featurize shard I of N (numbered from 0): the I-th of N contiguous, near-equal slices of the
    /// input rows (after --limit). Writes featurize/graphs.parquet/part-0000I-of-0000N.parquet (and
    /// rejects.parquet/, fingerprints.parquet/ likewise) with its own manifest,
    /// featurize/manifest-part-0000I-of-0000N.json, so an unchanged shard is skipped and a killed one
    /// reruns alone. Every molpeg stage (and pyarrow, polars, DuckDB) reads the directory of N parts
    /// as one table, row for row the file a run without --shard writes. Default: the Slurm array task
    /// (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) when set.
    #[arg(long, value_name = "I/N")]
    shard: Option<molpeg_core::shard::Shard>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molpeg-featurize: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let pipeline = args.stage.load_pipeline()?;
    let mut config: FeaturizeConfig = pipeline.section(featurize::STAGE)?;
    if let Some(rows) = args.chunk_rows {
        config.chunk_rows = rows;
    }
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    if let Some(limit) = args.limit {
        config.limit = Some(limit);
    }
    config.fingerprints |= args.fingerprints;
    config.fingerprint_radius = args.fingerprint_radius.unwrap_or(config.fingerprint_radius);
    config.fingerprint_bits = args.fingerprint_bits.unwrap_or(config.fingerprint_bits);
    config.max_characters = args.max_characters.unwrap_or(config.max_characters);
    config.max_atoms = args.max_atoms.unwrap_or(config.max_atoms);
    config.max_fragments = args.max_fragments.unwrap_or(config.max_fragments);
    config.geometry = args.geometry.unwrap_or(config.geometry);
    config.conformer_seed = args.conformer_seed.unwrap_or(config.conformer_seed);
    let shard = molpeg_core::shard::Shard::resolve(args.shard)?;
    match featurize::run(&pipeline, &args.stage.runs_dir, &config, &FetchOptions::from_env(), args.stage.force, shard)? {
        Outcome::UpToDate(dir) => println!("featurize: up to date ({}), use --force to rerun", dir.display()),
        Outcome::Ran(summary) => print_summary(&summary),
    }
    Ok(())
}

fn print_summary(s: &FeaturizeSummary) {
    println!(
        "featurize{}: {} rows -> {} molecules, {} rejected in {:.1}s ({:.0} mol/s on {} threads, RDKit {}) -> {}",
        s.shard.map(|shard| format!(" shard {shard}")).unwrap_or_default(),
        s.input_rows,
        s.accepted,
        s.rejected,
        s.seconds,
        s.molecules_per_second,
        s.threads,
        s.rdkit_version,
        s.graphs.display()
    );
    if let Some(path) = &s.fingerprints {
        println!("  fingerprints -> {}", path.display());
    }
    if let (Some(path), Some(geometry)) = (&s.atoms3d, s.geometry) {
        let rate = s.conformers_per_second.map(|r| format!(", {r:.0} conformers/s")).unwrap_or_default();
        println!("  3D atoms ({geometry}{rate}) -> {}", path.display());
    }
    for (reason, n) in &s.rejected_by_reason {
        println!("  rejected  {n:>8}  {reason} (see {})", s.rejects.display());
    }
    for (feature, n) in &s.other_slots {
        println!("  other     {n:>8}  {feature}");
    }
}
