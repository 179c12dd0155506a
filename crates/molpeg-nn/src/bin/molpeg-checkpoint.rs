//! `molpeg-checkpoint`: import and export of GIN state dicts in the layout of Hu et al.'s
//! pretrain-gnns (also GraphMAE's and MolPeg's code); see `molpeg_nn::interop`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use molpeg_nn::checkpoint::{self, Checkpoint};
use molpeg_nn::interop::{self, ExportOptions, ImportOptions};
use molpeg_nn::model::{Jk, Pooling};

const ABOUT: &str = "Import and export GIN checkpoints of Hu et al.'s pretrain-gnns (GraphMAE, MolPeg)";

const LONG_ABOUT: &str = "\
Import and export GIN checkpoints in the layout of Hu et al.'s pretrain-gnns (chem/model.py `GNN`,
`GNN_graphpred`), which GraphMAE's and MolPeg's code use verbatim.

  import: a Hu state dict (.pth from torch.save(model.state_dict()), or .safetensors), with no prefix
          (GNN, e.g. MolPeg's PubChem_Pretrained.pth) or under `gnn.` (GNN_graphpred, with its
          graph_pred_linear head) -> a molpeg checkpoint (.safetensors with `molpeg.model` metadata).
          Layers and width come from the shapes; a head of (layers+1)*width inputs means JK concat.
          An encoder (no head, or --encoder-only) loads with `molpeg-finetune --pretrained`.
  export: a molpeg checkpoint (model.safetensors, encoder.safetensors) -> a Hu state dict
          (.safetensors, or .pth loadable with load_state_dict(torch.load(...), strict=True)).
          With a head: GNN_graphpred names (`gnn.` + graph_pred_linear); encoder only: GNN names.

Vocabularies (Hu rows -> molpeg rows). molpeg has explicit \"other\" rows that Hu's featurizer lacks:
  atom type      x_embedding1      120 -> 120  identical (0..117 elements, 119 mask)
  chirality      x_embedding2        3 -> 4    other (3) <- CHI_UNSPECIFIED (0)
  bond type      edge_embedding1     6 -> 7    other (4) <- SINGLE (0); self-loop 4 -> 5; mask 5 -> 6
  bond direction edge_embedding2     3 -> 4    other (3) <- NONE (0)
On molecules without \"other\" values an imported model computes what the Hu model computes. Export
drops the \"other\" rows and moves self-loop/mask back to 4/5, so export(import(x)) == x.
num_batches_tracked is ignored on import and written as 0 on export.

.pth files are read with libtorch when it can (plain dicts), otherwise converted by PyTorch's Python
($MOLPEG_PYTHON, default python3); writing .pth always needs it. .safetensors needs no Python.

Examples:
  molpeg-checkpoint import PubChem_Pretrained.pth runs/pubchem/encoder.safetensors
  molpeg-finetune -p pipelines/hiv-paper.toml --pretrained runs/pubchem/encoder.safetensors
  molpeg-checkpoint export runs/hiv/finetune/model.safetensors hiv_gin.pth
  (Python: GNN_graphpred(5, 300, 1, JK='last', graph_pooling='mean').load_state_dict(torch.load('hiv_gin.pth')))";

#[derive(Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hu et al. state dict (.pth, .pt, .bin or .safetensors) -> molpeg checkpoint (.safetensors).
    Import(ImportArgs),
    /// molpeg checkpoint (.safetensors) -> Hu et al. state dict (.safetensors or .pth).
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The Hu state dict.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// The molpeg checkpoint to write (.safetensors).
    #[arg(value_name = "OUT")]
    output: PathBuf,
    /// Import the encoder only (num_tasks 0), ignoring a graph_pred_linear head.
    #[arg(long)]
    encoder_only: bool,
    /// JK mode (not recorded in Hu files). Default: concat when the head's input is (layers+1)*width, else last.
    #[arg(long, value_enum)]
    jk: Option<Jk>,
    /// Graph pooling of the head (not recorded in Hu files).
    #[arg(long, value_enum, default_value = "mean")]
    pooling: Pooling,
    /// Dropout recorded in the model configuration (not in Hu files; no effect on eval outputs).
    #[arg(long, default_value_t = 0.5)]
    dropout: f64,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// The molpeg checkpoint.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// The Hu state dict to write (.safetensors or .pth).
    #[arg(value_name = "OUT")]
    output: PathBuf,
    /// Export the encoder only (GNN layout), dropping the head.
    #[arg(long)]
    encoder_only: bool,
    /// Prefix of the encoder's names. Default: `gnn.` with a head (GNN_graphpred), none without (GNN).
    #[arg(long)]
    prefix: Option<String>,
}

fn main() -> ExitCode {
    molpeg_nn::runtime::passive_openmp_by_default();
    molpeg_nn::cli::finish(match Cli::parse().command {
        Cmd::Import(args) => import(&args),
        Cmd::Export(args) => export(&args),
    })
}

fn import(args: &ImportArgs) -> anyhow::Result<String> {
    let tensors = interop::read_state_dict(&args.input)?;
    let options = ImportOptions { encoder_only: args.encoder_only, jk: args.jk, pooling: args.pooling, dropout: args.dropout };
    let imported = interop::import(&args.input, &tensors, &options)?;
    let name = args.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let metadata = BTreeMap::from([
        (interop::META_IMPORTED_FROM.to_string(), name),
        (interop::META_IMPORTED_SHA256.to_string(), molpeg_core::manifest::sha256_file(&args.input)?),
    ]);
    checkpoint::save(&args.output, &imported.vars, &imported.config, &metadata)?;
    let c = &imported.config;
    let layout = if imported.prefix.is_empty() { "GNN layout, no prefix" } else { "GNN_graphpred layout, prefix `gnn.`" };
    let head = if c.num_tasks > 0 { format!("head of {} task(s), jk {:?}, pooling {:?}", c.num_tasks, c.jk, c.pooling).to_lowercase() } else { "encoder only".into() };
    let counters = imported.ignored.iter().filter(|n| n.ends_with(".num_batches_tracked")).count();
    let mut ignored: Vec<String> = imported.ignored.iter().filter(|n| !n.ends_with(".num_batches_tracked")).cloned().collect();
    if counters > 0 {
        ignored.insert(0, format!("{counters} num_batches_tracked"));
    }
    let ignored = if ignored.is_empty() { String::new() } else { format!("; not imported: {}", ignored.join(", ")) };
    Ok(format!("imported {} ({layout}): {} layers x {}, {head} -> {}{ignored}", args.input.display(), c.layers, c.width, args.output.display()))
}

fn export(args: &ExportArgs) -> anyhow::Result<String> {
    let ckpt = Checkpoint::read(&args.input)?;
    let exported = interop::export(&ckpt, &ExportOptions { encoder_only: args.encoder_only, prefix: args.prefix.clone() })?;
    let c = &exported.config;
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (interop::META_EXPORTED_MODEL.to_string(), serde_json::to_string(c).expect("config serializes")),
    ]);
    interop::write_state_dict(&args.output, &exported.tensors, &metadata)?;
    let jk = format!("{:?}", c.jk).to_lowercase();
    let python = if exported.with_head {
        let pooling = format!("{:?}", c.pooling).to_lowercase();
        format!("GNN_graphpred({}, {}, {}, JK='{jk}', graph_pooling='{pooling}')", c.layers, c.width, c.num_tasks)
    } else {
        format!("GNN({}, {}, JK='{jk}')", c.layers, c.width)
    };
    let prefix = if exported.prefix.is_empty() { "no prefix".to_string() } else { format!("prefix `{}`", exported.prefix) };
    Ok(format!(
        "exported {} -> {} ({} tensors, {prefix}); load into pretrain-gnns' {python}; the \"other\" rows of chirality, bond type and bond direction were dropped",
        args.input.display(),
        args.output.display(),
        exported.tensors.len()
    ))
}
