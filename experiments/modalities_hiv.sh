#!/usr/bin/env bash
# Modalities on HIV (issue 13, EXPERIMENTS.md "Modalities on HIV"): the [scaling] grid of
# pipelines/hiv-modalities.toml (GIN, fingerprint and SMILES models) as two shards, one per core and
# one libtorch thread each (molpeg-scaling --shard I/2: cell i of the grid runs in shard i mod 2), then
# the run without --shard merges the parts into runs/<...>/hiv-modalities/scaling/results.parquet and
# fits and plots. Resumable: rerunning skips every finished cell.
# The finished cells are archived in experiments/results/modalities-hiv/shards/ (committed); on a
# fresh machine the script first copies them back into the runs directory, so it resumes there.
# Usage: experiments/modalities_hiv.sh            run (or resume) the grid
#        experiments/modalities_hiv.sh archive    copy the parts into the archive and report there
# (MOLPEG_RUNS_DIR defaults to runs/exp-modalities)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
P=pipelines/hiv-modalities.toml
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export MOLPEG_RUNS_DIR=${MOLPEG_RUNS_DIR:-runs/exp-modalities}
OUT=$MOLPEG_RUNS_DIR/hiv-modalities
ARCHIVE=experiments/results/modalities-hiv
# Copy every part of $1/shards/ that $2/shards/ lacks (or holds an older copy of).
copy_parts() {
  for part in "$1"/shards/*/results.parquet; do
    [ -e "$part" ] || continue
    name=$(basename "$(dirname "$part")")
    mkdir -p "$2/shards/$name"
    [ "$2/shards/$name/results.parquet" -nt "$part" ] || cp "$part" "$2/shards/$name/results.parquet"
  done
}
if [ "${1:-}" = archive ]; then
  copy_parts "$OUT/scaling" "$ARCHIVE"
  "$BIN/molpeg-scaling" -p $P --report-only --out-dir "$ARCHIVE"
  exit
fi
copy_parts "$ARCHIVE" "$OUT/scaling"
"$BIN/molpeg-featurize" -p $P >/dev/null
"$BIN/molpeg-split" -p $P >/dev/null
mkdir -p "$OUT/scaling"
pids=()
for i in 0 1; do
  "$BIN/molpeg-scaling" -p $P --threads 1 --shard $i/2 >> "$OUT/scaling/shard-$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
"$BIN/molpeg-scaling" -p $P --threads 1
exit $status
