//! Flags shared by every stage binary.

use std::path::PathBuf;

use crate::pipeline::Pipeline;
use crate::Result;

#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Pipeline file with the dataset and every stage's settings (e.g. pipelines/hiv.toml).
    #[arg(long, short = 'p', value_name = "TOML")]
    pub pipeline: PathBuf,
    /// Root of stage outputs; a stage writes to <RUNS_DIR>/<pipeline>/<stage>/.
    #[arg(long, env = "MOLPEG_RUNS_DIR", default_value = "runs", value_name = "DIR")]
    pub runs_dir: PathBuf,
    /// Rerun even if the outputs are up to date with the inputs and parameters.
    #[arg(long)]
    pub force: bool,
}

impl StageArgs {
    pub fn load_pipeline(&self) -> Result<Pipeline> {
        Pipeline::load(&self.pipeline)
    }
}
