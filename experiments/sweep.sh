#!/usr/bin/env bash
# Runs (or resumes) the [scaling] grid of a pipeline as SHARDS shards side by side, one libtorch
# thread each (molpeg-scaling --shard I/SHARDS: cell i of the grid runs in shard i mod SHARDS), then
# the run without --shard merges the parts into the run directory's scaling/results.parquet and fits
# and plots. Resumable: rerunning skips every finished cell, also when SHARDS changes.
# The finished cells are archived in ARCHIVE/shards/ (committed); on a fresh machine the script first
# copies them back into the runs directory, so it resumes there.
# Usage: experiments/sweep.sh PIPELINE ARCHIVE            run (or resume) the grid
#        experiments/sweep.sh PIPELINE ARCHIVE archive    copy the parts into ARCHIVE and report there
# Environment: SHARDS (default 2, one per core), MOLPEG_RUNS_DIR (default runs/exp-<pipeline name>),
# MOLPEG_BIN (default $CARGO_TARGET_DIR/release: point it at a copy to rebuild while a grid runs).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${1:?usage: experiments/sweep.sh PIPELINE ARCHIVE [archive]}
ARCHIVE=${2:?usage: experiments/sweep.sh PIPELINE ARCHIVE [archive]}
NAME=$(basename "$P" .toml)
BIN=${MOLPEG_BIN:-${CARGO_TARGET_DIR:-target}/release}
SHARDS=${SHARDS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export MOLPEG_RUNS_DIR=${MOLPEG_RUNS_DIR:-runs/exp-$NAME}
OUT=$MOLPEG_RUNS_DIR/$NAME
# Copy every part of $1/shards/ that $2/shards/ lacks (or holds an older copy of).
copy_parts() {
  for part in "$1"/shards/*/results.parquet; do
    [ -e "$part" ] || continue
    name=$(basename "$(dirname "$part")")
    mkdir -p "$2/shards/$name"
    [ "$2/shards/$name/results.parquet" -nt "$part" ] || cp "$part" "$2/shards/$name/results.parquet"
  done
}
if [ "${3:-}" = archive ]; then
  copy_parts "$OUT/scaling" "$ARCHIVE"
  "$BIN/molpeg-scaling" -p "$P" --report-only --out-dir "$ARCHIVE"
  exit
fi
copy_parts "$ARCHIVE" "$OUT/scaling"
"$BIN/molpeg-featurize" -p "$P" >/dev/null
"$BIN/molpeg-split" -p "$P" >/dev/null
mkdir -p "$OUT/scaling"
pids=()
for ((i = 0; i < SHARDS; i++)); do
  "$BIN/molpeg-scaling" -p "$P" --threads 1 --shard "$i/$SHARDS" >> "$OUT/scaling/shard-$i-of-$SHARDS.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
"$BIN/molpeg-scaling" -p "$P" --threads 1
exit $status
