//! `molpeg-bench-train`: training and inference throughput (graphs/s) of a model (the GIN, a token
//! model: fingerprint, SMILES, or SchNet) on a dataset's train split: forward + backward + Adam step
//! per batch, collation (and prefetching, where it is used; SchNet's neighbour lists) included.
//! `bench/pyg_peer.py` and `bench/pyg_schnet.py` measure the same with PyTorch Geometric;
//! `bench/train.sh` and `bench/schnet.sh` run both.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use molpeg_nn::data::{Dataset, Sample};
use molpeg_nn::finetune::{FinetuneSettings, SchnetSettings};
use molpeg_nn::model::{Model, ModelKind};
use molpeg_nn::synthetic::{self, SyntheticSpec};
use molpeg_nn::tch::{self, Device};
use molpeg_nn::train::{shuffled, Objective, TrainConfig, Trainer};

#[derive(Parser)]
struct Args {
    /// Directory with graphs.parquet and split.parquet (and atoms3d.parquet for SchNet); synthetic
    /// HIV-like molecules (QM9-like 3D molecules for `--model schnet`) are written there first if it
    /// has none.
    #[arg(long)]
    data: PathBuf,
    /// Synthetic molecules to generate when `data` is empty.
    #[arg(long, default_value_t = 8192)]
    molecules: usize,
    /// The encoder. Token models read the featurize stage's fingerprints.parquet (fingerprint) or
    /// the canonical SMILES of graphs.parquet (smiles), so `data` must be a real featurized dataset.
    #[arg(long, value_enum, default_value = "gin")]
    model: ModelKind,
    /// Layers and width of the GIN, or of the token model's Transformer (its heads, feed-forward
    /// width and dropout are the [finetune.sequence] defaults), or SchNet's interactions and hidden
    /// width (filters = width unless --filters, 50 gaussians).
    #[arg(long, default_value_t = 5)]
    layers: usize,
    #[arg(long, default_value_t = 300)]
    width: usize,
    /// Dropout (default: the GIN's 0.5, the token models' 0.1).
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// SchNet: neighbour cutoff (Å).
    #[arg(long, default_value_t = 10.0)]
    cutoff: f64,
    /// SchNet: filter width (default: the width).
    #[arg(long)]
    filters: Option<usize>,
    /// Token models: batches per length-sorted window ([finetune.sequence] length_buckets; 0 = off).
    #[arg(long, default_value_t = 16)]
    length_buckets: usize,
    /// Batches per timed repetition.
    #[arg(long, default_value_t = 10)]
    batches: usize,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Train this long before timing (page-ins of libtorch's code, allocator warm-up).
    #[arg(long, default_value_t = 5.0)]
    warmup_seconds: f64,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    #[arg(long)]
    no_prefetch: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    device: molpeg_nn::device::DeviceChoice,
}

fn main() -> anyhow::Result<()> {
    molpeg_nn::runtime::passive_openmp_by_default();
    let a = Args::parse();
    tch::set_num_threads(a.threads);
    let device: Device = a.device.resolve()?;
    let (graphs, split) = (a.data.join("graphs.parquet"), a.data.join("split.parquet"));
    if !graphs.exists() {
        std::fs::create_dir_all(&a.data)?;
        if a.model == ModelKind::Schnet {
            synthetic::write_qm9_like_dataset(&a.data, a.molecules, 0)?;
        } else {
            synthetic::write_dataset(&a.data, &SyntheticSpec::hiv_like(a.molecules, 0))?;
        }
    }
    let data = Dataset::load_for(&graphs, &split, a.model)?;
    tch::manual_seed(0);
    let mut settings = FinetuneSettings { model: a.model, layers: a.layers, width: a.width, ..Default::default() };
    (settings.sequence.layers, settings.sequence.width) = (a.layers, a.width);
    settings.schnet = SchnetSettings { interactions: Some(a.layers), hidden: Some(a.width), filters: Some(a.filters.unwrap_or(a.width)), cutoff: Some(a.cutoff), ..Default::default() };
    if let Some(p) = a.dropout {
        (settings.dropout, settings.sequence.dropout) = (p, p);
    }
    let model = Model::new(&settings.model_config_for(&data)?, device)?;
    let objective = Objective::for_task(data.task_kind, &data.store, &data.train);
    let config = TrainConfig { batch_size: a.batch_size, eval_batch_size: a.batch_size, lr: 1e-3, weight_decay: 0.0, prefetch: !a.no_prefetch, seed: 0, length_buckets: a.length_buckets };
    let mut trainer = Trainer::new(model, objective, config)?;

    let per_rep = a.batches * a.batch_size;
    let train = Sample::unweighted(&data.train);
    let plan_for = |rep: usize| -> Vec<Sample> { shuffled(&train, 0, rep as u32).into_iter().cycle().take(per_rep).collect() };
    let warmup = Instant::now();
    for k in 0.. {
        let plan = plan_for(1000 + k);
        trainer.train_epoch(&data.store, &plan[..(3 * a.batch_size).min(per_rep)], |_| Ok(()))?;
        trainer.predict(&data.store, &plan.iter().map(|s| s.index).collect::<Vec<_>>()[..a.batch_size.min(per_rep)])?;
        if warmup.elapsed().as_secs_f64() >= a.warmup_seconds {
            break;
        }
    }
    let mut train_rates = Vec::new();
    let mut infer_rates = Vec::new();
    for rep in 0..a.reps {
        let plan = plan_for(rep);
        let start = Instant::now();
        trainer.train_epoch(&data.store, &plan, |_| Ok(()))?;
        train_rates.push(per_rep as f64 / start.elapsed().as_secs_f64());
        let indices: Vec<u32> = plan.iter().map(|s| s.index).collect();
        let start = Instant::now();
        trainer.predict(&data.store, &indices)?;
        infer_rates.push(per_rep as f64 / start.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tokens = model_tokens(&trainer.model, &data)?;
    let nodes = data.store.total_nodes() as f64 / data.store.len() as f64;
    let edges = data.store.total_edges() as f64 / data.store.len() as f64;
    // SchNet: 3D atoms and neighbour pairs within the cutoff per molecule, over the train split.
    let geometry = match trainer.model.geometry_input(&data.store)? {
        Some(input) => {
            let g = molpeg_nn::schnet::HostGeometry::collate(&data.store, data.train.iter().map(|&i| i as usize), &input);
            let n = data.train.len() as f64;
            serde_json::json!({"atoms3d_per_graph": g.num_atoms() as f64 / n, "pairs_per_graph": g.src.len() as f64 / n, "cutoff": a.cutoff, "filters": a.filters.unwrap_or(a.width)})
        }
        None => serde_json::json!({}),
    };
    println!(
        "{}",
        serde_json::json!({
            "impl": "molpeg", "model": a.model.as_str(), "tokens_per_graph": tokens, "length_buckets": a.length_buckets, "layers": a.layers, "width": a.width, "batch_size": a.batch_size, "threads": a.threads,
            "atoms_per_graph": nodes, "directed_edges_per_graph": edges,
            "train_graphs_per_s": median(&mut train_rates), "infer_graphs_per_s": median(&mut infer_rates),
            "train_reps": train_rates, "infer_reps": infer_rates, "geometry": geometry,
        })
    );
    Ok(())
}

/// Mean tokens per molecule of a token model's input over the train split; `None` for the GIN.
fn model_tokens(model: &Model, data: &Dataset) -> anyhow::Result<Option<f64>> {
    Ok(molpeg_nn::finetune::TokenSummary::of(model, data)?.map(|t| t.train.tokens as f64 / data.train.len() as f64))
}
