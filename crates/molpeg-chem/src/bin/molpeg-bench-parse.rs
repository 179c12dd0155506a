//! `molpeg-bench-parse`: the bare RDKit parse cost of a pipeline's SMILES, for `just bench featurize`.

use std::time::Instant;

use clap::Parser;
use molpeg_chem::graph::{parse_only, rdkit_version};
use molpeg_data::dataset::DatasetSpec;
use molpeg_data::fetch::{ensure_raw, FetchOptions};
use molpeg_data::source::RowReader;

/// Time `SmilesToMol` alone over a pipeline's dataset, on one thread, through the same RDKit build and
/// bridge that molpeg-featurize uses: the floor under any featurizer's per-core cost.
///
/// Reading the CSV is not timed. Prints one JSON line: molecules, parsed, seconds, molecules_per_second,
/// rdkit_version.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Pipeline file whose [dataset] is read (found as molpeg-fetch finds it).
    #[arg(short, long, value_name = "TOML")]
    pipeline: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pipeline = molpeg_core::pipeline::Pipeline::load(&args.pipeline)?;
    let spec: DatasetSpec = pipeline.required_section("dataset")?;
    let raw = ensure_raw(&spec, &FetchOptions::from_env())?;
    let smiles = RowReader::open(&raw.path, &spec)?.map(|row| row.map(|r| r.smiles)).collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let parsed = smiles.iter().filter(|s| parse_only(s)).count();
    let seconds = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "molecules": smiles.len(),
        "parsed": parsed,
        "seconds": seconds,
        "molecules_per_second": smiles.len() as f64 / seconds,
        "rdkit_version": rdkit_version(),
    });
    println!("{line}");
    Ok(())
}
