#!/usr/bin/env bash
# Does GraphMAE pretraining on MOSES help fine-tuning at this scale? (issue: pretrain stage.)
# 1. featurize MOSES and pretrain the 3 × 64 CPU encoder (pipelines/pretrain-moses.toml, ~1 h on 2 cores);
# 2. fine-tune BBBP and HIV (their CPU configurations, 3 × 64) from scratch and from the encoder,
#    same settings and seeds.
# Resumable: every run is a cached stage; an interrupted pretraining continues with --resume.
# Results: python experiments/summarize.py runs/exp-pretrain bbbp   (and ... hiv); tags scratch / pretrained.
# One libtorch thread per run (the other core serves a second experiment; OMP_WAIT_POLICY=PASSIVE).
# Usage: experiments/pretrain_transfer.sh [SEEDS...]   (default: 0 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
SEEDS=${*:-0 1 2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$BIN/molpeg-featurize" -p pipelines/moses.toml >/dev/null
"$BIN/molpeg-pretrain" -p pipelines/pretrain-moses.toml --resume
ENCODER=$PWD/runs/pretrain-moses/pretrain/encoder.safetensors
for seed in $SEEDS; do
  export MOLPEG_RUNS_DIR=runs/exp-pretrain/seed$seed
  for data in bbbp hiv; do
    P=pipelines/$data.toml
    "$BIN/molpeg-featurize" -p $P >/dev/null
    "$BIN/molpeg-split" -p $P >/dev/null
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --tag scratch --threads 1
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --tag pretrained --pretrained "$ENCODER" --threads 1
  done
done
