#!/usr/bin/env bash
# MolPeg's Table 1 protocol on HIV (issue 12): the paper's split (pretrain-gnns random_split, seed 42),
# a pretrained source model, batch 256, Adam 1e-3, 100 epochs, test ROC-AUC at the best-validation
# epoch; per seed: full data, and at each keep r dynamic MolPeg, InfoBatch, hard random (a static
# random subset) — all from the pretrained encoder — and dynamic MolPeg from scratch; full data from
# scratch too (the baseline of the scratch row, and molpeg's side of the PyG cross-check,
# bench/molpeg_crosscheck.sh).
#
# Usage: experiments/table1.sh PIPELINE ENCODER [SEEDS...]        (default seeds: 0 1 2)
#   experiments/table1.sh hiv-table1 runs/pretrain-moses/pretrain/encoder.safetensors   (CPU, 3 × 64)
#   experiments/table1.sh hiv-paper  ENCODER_5x300.safetensors                          (GPU, paper size)
# `just table1 PIPELINE ENCODER [SEEDS]` runs it; experiments/table1_summary.py tabulates.
#
# Runs land in runs/exp-table1/seed<S>/<pipeline>/finetune-<tag>/ (tags: full, full-scratch, molpeg-<r>,
# molpeg-scratch-<r>, infobatch-<r>, random-<r>). Every run is a cached stage, so rerunning resumes;
# each job holds a lock while it runs, so two invocations share the job list (one libtorch thread
# each). Order: the headline keeps (0.3, 0.4: the paper's 60–70% pruning) and full data for every seed
# first, then the other keeps. Jobs that need the encoder wait (the script polls) until it exists, so
# the scratch jobs can start while the source model is still pretraining.
# ARCHIVE (default experiments/results/table1-hiv/cells for hiv-table1, empty = off): each finished run's
# summary.json, metrics.parquet and manifest.json are copied there in the same layout, and a cell found
# there counts as done, so a fresh checkout (runs/ is not committed) resumes the grid instead of
# rerunning it. PRIOR (default experiments/results/table1-hiv/session11_runs.csv for hiv-table1): a CSV
# of cells finished before the archive existed (seed,strategy,keep,...), also counted as done.
# table1_summary.py reads runs/exp-table1, the archive and the prior CSV together.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,17p' "$0"; exit 2; }
NAME=$1 ENCODER=$2
shift 2
SEEDS=${*:-0 1 2}
BIN=${MOLPEG_BIN:-${CARGO_TARGET_DIR:-target}/release}
P=pipelines/$NAME.toml
ROOT=runs/exp-table1
LOCKS=$ROOT/locks
THREADS=${THREADS:-1}
KEEPS_FIRST=${KEEPS_FIRST:-0.3 0.4}
KEEPS_LATER=${KEEPS_LATER:-0.1 0.2 0.6 0.8}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ARCHIVE=${ARCHIVE-$( [[ $NAME == hiv-table1 ]] && echo experiments/results/table1-hiv/cells )}
PRIOR=${PRIOR-$( [[ $NAME == hiv-table1 ]] && echo experiments/results/table1-hiv/session11_runs.csv )}
mkdir -p "$LOCKS"
[ -f "$P" ] || { echo "table1: no pipeline $P" >&2; exit 2; }

finetune() { # seed tag flags...: one fine-tuning run in the seed's runs directory
  local seed=$1 tag=$2
  shift 2
  MOLPEG_RUNS_DIR=$ROOT/seed$seed "$BIN/molpeg-finetune" -p "$P" --seed "$seed" --threads "$THREADS" --tag "$tag" "$@"
}

job() { # kind seed keep
  local kind=$1 seed=$2 keep=$3 dir=$ROOT/seed$2/$NAME
  local pre=(--pretrained "$ENCODER")
  case $kind in
    full) finetune "$seed" full "${pre[@]}" ;;
    full-scratch) finetune "$seed" full-scratch ;;
    molpeg) finetune "$seed" "molpeg-$keep" "${pre[@]}" --dynamic molpeg --keep "$keep" ;;
    molpeg-scratch) finetune "$seed" "molpeg-scratch-$keep" --dynamic molpeg --keep "$keep" ;;
    # InfoBatch's knob is the pruned fraction p of the below-mean-loss samples: p = 1 − r. Its samples
    # seen are whatever that gives; table1_summary.py also reports it at MolPeg's budget.
    infobatch) finetune "$seed" "infobatch-$keep" "${pre[@]}" --dynamic infobatch --keep "$keep" ;;
    random)
      MOLPEG_RUNS_DIR=$ROOT/seed$seed "$BIN/molpeg-select" -p "$P" --rule random --keep "$keep" --seed "$seed" \
          --out-dir "$dir/select-random-$keep" &&
        finetune "$seed" "random-$keep" "${pre[@]}" --coreset "$dir/select-random-$keep/coreset.parquet" ;;
  esac
}

prepare() { # seed: featurize + split into the seed's runs directory (cached stages)
  MOLPEG_RUNS_DIR=$ROOT/seed$1 "$BIN/molpeg-featurize" -p "$P" --threads "$THREADS" >/dev/null &&
    MOLPEG_RUNS_DIR=$ROOT/seed$1 "$BIN/molpeg-split" -p "$P" >/dev/null
}

# An encoder that molpeg-pretrain is still writing (it checkpoints every N steps) is not ready until
# its stage manifest exists; an imported one is ready as soon as it exists.
encoder_ready() {
  local d
  d=$(dirname "$ENCODER")
  [ -f "$ENCODER" ] && { [ ! -f "$d/resume.safetensors" ] || [ -f "$d/manifest.json" ]; }
}

archive() { # run_dir: copy a finished run's results (small files only) into the committed archive
  [ -n "$ARCHIVE" ] || return 0
  mkdir -p "$ARCHIVE/$1"
  cp "$ROOT/$1"/{summary.json,metrics.parquet} "$ARCHIVE/$1/" && cp "$ROOT/$1/manifest.json" "$ARCHIVE/$1/"
}

JOBS=()
for keeps in "$KEEPS_FIRST" "$KEEPS_LATER"; do
  for seed in $SEEDS; do
    [[ $keeps == "$KEEPS_FIRST" ]] && JOBS+=("full $seed 1.0" "full-scratch $seed 1.0")
    for keep in $keeps; do
      for kind in molpeg random infobatch molpeg-scratch; do JOBS+=("$kind $seed $keep"); done
    done
  done
done

failed=0
while :; do
  deferred=0
  for entry in "${JOBS[@]}"; do
    read -r kind seed keep <<<"$entry"
    run_dir=seed$seed/$NAME/finetune-$( [[ $kind == full* ]] && echo "$kind" || echo "$kind-$keep" )
    if [ -n "$ARCHIVE" ] && [ -f "$ARCHIVE/$run_dir/manifest.json" ]; then continue; fi
    # Cells finished before the archive existed (their run directories are gone): kept as CSV rows.
    if [ -n "$PRIOR" ] && grep -q "^$seed,$kind,$keep," "$PRIOR" 2>/dev/null; then continue; fi
    if [ -f "$ROOT/$run_dir/manifest.json" ]; then
      archive "$run_dir"
      continue
    fi
    if [[ $kind != *scratch ]] && ! encoder_ready; then
      deferred=1
      continue
    fi
    flock "$LOCKS/prepare-$seed" bash -c "$(declare -f prepare); BIN=$BIN P=$P ROOT=$ROOT THREADS=$THREADS; prepare $seed" || exit 1
    flock -n -E 75 "$LOCKS/$kind-$seed-$keep" bash -c \
      "$(declare -f finetune job); BIN=$BIN P=$P ROOT=$ROOT NAME=$NAME ENCODER=$ENCODER THREADS=$THREADS; job $kind $seed $keep"
    rc=$?
    [[ $rc -eq 0 && -f "$ROOT/$run_dir/manifest.json" ]] && archive "$run_dir"
    if [[ $rc -ne 0 && $rc -ne 75 ]]; then
      echo "table1: $kind seed $seed keep $keep failed (exit $rc); continuing" >&2
      failed=1
    fi
  done
  [ $deferred -eq 0 ] && break
  echo "table1: waiting for the encoder $ENCODER (pretraining?); retrying in 60 s" >&2
  sleep 60
done
exit $failed
