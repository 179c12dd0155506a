#!/usr/bin/env bash
# MolPeg experiment on HIV (issue: full data vs random vs static MolPeg vs dynamic MolPeg at keep
# 0.1 / 0.3 / 0.6, several seeds) with the CPU configuration of pipelines/hiv.toml.
# Resumable: every run is a cached stage, so rerunning skips finished runs. Results: summarize.py.
# Usage: experiments/molpeg_hiv.sh [SEEDS...]   (default: 0 1 2); KEEPS (default "0.1 0.3 0.6")
# picks the keep ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
P=pipelines/hiv.toml
SEEDS=${*:-0 1 2}
KEEPS=${KEEPS:-0.1 0.3 0.6}
for seed in $SEEDS; do
  export MOLPEG_RUNS_DIR=runs/exp-molpeg/seed$seed
  R=$MOLPEG_RUNS_DIR/hiv
  "$BIN/molpeg-featurize" -p $P >/dev/null
  "$BIN/molpeg-split" -p $P >/dev/null
  "$BIN/molpeg-finetune" -p $P --seed "$seed" --tag full
  "$BIN/molpeg-score" -p $P --seed "$seed"
  for keep in $KEEPS; do
    "$BIN/molpeg-select" -p $P --rule random --keep "$keep" --seed "$seed" --out-dir "$R/select-random-$keep"
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --coreset "$R/select-random-$keep/coreset.parquet" --tag "random-$keep"
    "$BIN/molpeg-select" -p $P --rule molpeg --keep "$keep" --out-dir "$R/select-molpeg-$keep"
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --coreset "$R/select-molpeg-$keep/coreset.parquet" --tag "static-molpeg-$keep"
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --dynamic molpeg --keep "$keep" --tag "dynamic-molpeg-$keep"
  done
done
