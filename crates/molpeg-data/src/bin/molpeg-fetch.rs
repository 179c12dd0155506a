//! `molpeg-fetch`: puts a pipeline's raw dataset into data/raw/, verified.

use std::path::PathBuf;

use clap::Parser;
use molpeg_core::pipeline::Pipeline;
use molpeg_data::dataset::DatasetSpec;
use molpeg_data::fetch::{ensure_raw, FetchOptions};

/// Fetch a pipeline's dataset into data/raw/ with checksum verification. Looks in the offline mirror
/// ($MOLPEG_DATA_MIRROR) first, then downloads from the canonical URL. A file whose checksum is not
/// listed in the pipeline is refused unless accepted with --accept-sha256.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Pipeline file whose [dataset] section names the file (e.g. pipelines/hiv.toml).
    #[arg(long, short = 'p', value_name = "TOML")]
    pipeline: PathBuf,
    /// Project data directory (raw files go to <DIR>/raw/).
    #[arg(long, env = "MOLPEG_DATA_DIR", default_value = "data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Offline mirror directory searched before the network.
    #[arg(long, env = "MOLPEG_DATA_MIRROR", value_name = "DIR")]
    mirror: Option<PathBuf>,
    /// Accept this sha256 in addition to those the pipeline lists (remembered for the cached copy).
    #[arg(long, value_name = "SHA256")]
    accept_sha256: Vec<String>,
    /// Never use the network.
    #[arg(long)]
    offline: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = (|| -> anyhow::Result<()> {
        let pipeline = Pipeline::load(&args.pipeline)?;
        let spec: DatasetSpec = pipeline.required_section("dataset")?;
        let opts = FetchOptions { data_dir: args.data_dir.clone(), mirror: args.mirror.clone(), accept_sha256: args.accept_sha256.clone(), offline: args.offline };
        let raw = ensure_raw(&spec, &opts)?;
        println!("fetch: {} ({:?}) sha256 {}", raw.path.display(), raw.origin, raw.sha256);
        Ok(())
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molpeg-fetch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
