# molpeg: `just --list` explains every recipe. `just pipeline hiv` runs the HIV pipeline end to end;
# `just test` runs the tests. Both run `just setup` first, so on a fresh machine they are all you type.

set shell := ["bash", "-euo", "pipefail", "-c"]

cache := env("MOLPEG_CACHE", env("HOME") / ".cache/molpeg")
venv := cache / "venv"
# Build outputs live outside the clone so reruns (and CI on the same machine) are incremental.
export CARGO_TARGET_DIR := env("CARGO_TARGET_DIR", cache / "target")
# tch-sys finds libtorch through the venv's torch; binaries carry an rpath to it.
export LIBTORCH_USE_PYTORCH := "1"
export PATH := venv / "bin" + ":" + env("PATH")
# Independent Parquet reader (pyarrow) used by the tests.
export MOLPEG_PYTHON := venv / "bin/python"
# Offline dataset mirror: defaults to the shared copies beside the checkout when present.
export MOLPEG_DATA_MIRROR := env("MOLPEG_DATA_MIRROR", if path_exists("../shared/datasets") == "true" { canonicalize("../shared/datasets") } else { "" })
bin := CARGO_TARGET_DIR / "release"

# List recipes.
default:
    @just --list

# Install Debian packages (RDKit, boost) and the Python venv with torch 2.11 + pyarrow; idempotent.
setup:
    @bash scripts/setup.sh

# Build every stage binary (release).
build: setup
    cargo build --release --workspace --bins

# Fetch a pipeline's raw dataset into data/raw/ (mirror first, then the canonical URL; checksummed).
fetch name *flags: build
    {{bin}}/molpeg-fetch --pipeline pipelines/{{name}}.toml {{flags}}

# Featurize SMILES into runs/NAME/featurize/graphs.parquet (+ rejects.parquet).
featurize name *flags: build
    {{bin}}/molpeg-featurize --pipeline pipelines/{{name}}.toml {{flags}}

# Split into train/valid/test: runs/NAME/split/split.parquet.
split name *flags: build
    {{bin}}/molpeg-split --pipeline pipelines/{{name}}.toml {{flags}}

# MolPeg dual-pace scoring of the training split: runs/NAME/score/{scores,sample_scores}.parquet + histogram.
score name *flags: build
    {{bin}}/molpeg-score --pipeline pipelines/{{name}}.toml {{flags}}

# Proxy run for the baseline rules: 20 epochs from scratch with --signals, into runs/NAME/score-proxy/.
proxy name *flags: (featurize name) (split name)
    {{bin}}/molpeg-score --pipeline pipelines/{{name}}.toml --signals --epochs 20 --tag proxy {{flags}}

# Select a static coreset: runs/NAME/select/coreset.parquet (e.g. --rule molpeg --keep 0.4, --rule kcenter --keep 0.3 --score-dir runs/NAME/score-proxy).
select name *flags: build
    {{bin}}/molpeg-select --pipeline pipelines/{{name}}.toml {{flags}}

# Fine-tune the GIN on the full training split: runs/NAME/finetune/{metrics.parquet,summary.json,model.safetensors}.
finetune name *flags: build
    {{bin}}/molpeg-finetune --pipeline pipelines/{{name}}.toml {{flags}}

# Fine-tune on the selected coreset: runs/NAME/finetune-select/.
finetune-coreset name *flags: build
    {{bin}}/molpeg-finetune --pipeline pipelines/{{name}}.toml --coreset runs/{{name}}/select/coreset.parquet {{flags}}

# Dynamic MolPeg: every epoch trains on the top KEEP·N samples by their latest score (weight 1/KEEP).
dynamic name keep *flags: (featurize name) (split name)
    {{bin}}/molpeg-finetune --pipeline pipelines/{{name}}.toml --dynamic molpeg --keep {{keep}} {{flags}}

# Scaling-law sweep: fractions × seeds × strategies ([scaling]); runs/NAME/scaling/{results,fits}.parquet, fits.md, plots. Resumable.
scaling name *flags: (featurize name) (split name)
    {{bin}}/molpeg-scaling --pipeline pipelines/{{name}}.toml {{flags}}

# The MolPeg pipeline: featurize → split → score → select → fine-tune on the coreset. Unchanged stages are skipped.
pipeline name: (featurize name) (split name) (score name) (select name) (finetune-coreset name)

# GraphMAE pretraining of a GIN encoder: runs/NAME/pretrain/encoder.safetensors. Featurize the [pretrain] source first (pretrain-moses: `just featurize moses`); `--resume` continues an interrupted run.
pretrain name *flags: build
    {{bin}}/molpeg-pretrain --pipeline pipelines/{{name}}.toml {{flags}}

# One self-contained page about a pipeline's runs: runs/NAME/report.html (+ figures in runs/NAME/report/). Read-only; `--compare DIR` adds runs to the method comparison, `--runs-dir runs/exp-table1/seed0` reads every seed*/ sibling.
report name *flags: build
    {{bin}}/molpeg-report --pipeline pipelines/{{name}}.toml {{flags}}

# MolPeg's Table 1 grid on HIV (paper split seed 42, pretrained source, 100 epochs): full data, dynamic MolPeg, InfoBatch, hard random and MolPeg from scratch at keep 0.1–0.8, then the table. Resumable. GPU, paper size: `just table1 hiv-paper ENCODER.safetensors`; CPU width: `just table1 hiv-table1 experiments/results/table1-hiv/encoder/encoder.safetensors`.
table1 name encoder *seeds: build
    bash experiments/table1.sh {{name}} {{encoder}} {{seeds}}
    {{venv}}/bin/python experiments/table1_summary.py runs/exp-table1 {{name}} --archive experiments/results/table1-hiv/cells --prior experiments/results/table1-hiv/session11_runs.csv

# Predict with fine-tuned models on new molecules: `just predict bbbp --input new.csv [--smiles-column COL] [--model A.safetensors --model B.safetensors]` -> runs/NAME/predict-<input stem>/{predictions,rejects}.parquet (default model: runs/NAME/finetune/model.safetensors; several --model: ensemble mean and <task>_std).
predict name *flags: build
    {{bin}}/molpeg-predict --name {{name}} {{flags}}

# Convert GIN checkpoints of Hu et al.'s pretrain-gnns (GraphMAE, MolPeg): `just checkpoint import IN.pth OUT.safetensors` (Hu → molpeg), `just checkpoint export IN.safetensors OUT.pth` (molpeg → Hu); `--help` explains the mapping.
checkpoint direction in out *flags: build
    {{bin}}/molpeg-checkpoint {{direction}} {{in}} {{out}} {{flags}}

# Place a sharded stage on Ray (RAY_ADDRESS, else a local Ray): `just ray featurize moses --shards 16`, `just ray predict hiv --shards 8 -- --input FILE`, `just ray scaling hiv --shards 8 [--gpus-per-shard 1] [-- STAGE FLAGS]`; one Ray task per shard runs the binary with --shard I/N, failed shards are retried; scaling parts are then merged (featurize/predict parts are read as one table).
ray stage name *flags: build
    {{venv}}/bin/python scripts/molpeg_ray.py {{stage}} pipelines/{{name}}.toml {{flags}}

# Run the test suite (unit, integration and end-to-end tests with real RDKit, libtorch and pyarrow).
test: setup
    cargo test --workspace --no-fail-fast

# Benchmarks: `just bench featurize` (then the sharded path on MOSES, also alone: `just bench featurize_sharded`), `just bench train`, `just bench tokens` (token models alone; `bench train` runs them too), `just bench schnet` (SchNet vs PyG's SchNet on QM9-like molecules; `bench train` runs it too) or `just bench contention` (training next to one busy process); results go to bench/results/.
bench what: build
    bash bench/{{what}}.sh
