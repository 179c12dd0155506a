#!/usr/bin/env bash
# Cross-check of issue 12: the MolPeg protocol on HIV in an independent PyTorch Geometric
# implementation (bench/molpeg_pyg.py), grid "full and dynamic molpeg keep 0.3, seeds 0 1 2", one
# thread per process, then a mean ± std summary per strategy.
#
# Resumable: a run whose configuration is already in the results file is skipped (a run appends its
# JSON line only when it finishes, so an interrupted run starts again from epoch 1).
#
# Usage: bench/molpeg_crosscheck.sh [SEEDS...]          (default seeds: 0 1 2)
# Environment:
#   MOLPEG_PYTHON  python with torch (default ~/.cache/molpeg/venv/bin/python); torch_geometric,
#                  rdkit, scikit-learn and safetensors are pip-installed into it when missing
#   OUT            output folder (default runs/pyg-crosscheck): results.jsonl, summary.md,
#                  epochs/<run>.csv, logs/<run>.log
#   STRATEGIES     space-separated list of full | molpeg:R (default "full molpeg:0.3")
#   EPOCHS LAYERS WIDTH   default 100, 3, 64 (the paper: 100, 5, 300)
#   JOBS           runs in parallel, one thread each (default 1; the machine has 2 shared cores)
#   EXTRA          extra flags for every run, e.g. "--pretrained model.pth", "--rescale once",
#                  "--shuffle seeded", "--split-file runs/hiv/split/split.parquet"
# Time (measured on the shared 2-core machine, 1 thread, 3 × 64): full ≈ 12.4 s/epoch (11.5 train +
# 0.9 eval), molpeg 0.3 ≈ 6.7 s/epoch, so 100 epochs ≈ 21 min and 11 min; the 6-run grid ≈ 1.6 h
# with JOBS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MOLPEG_PYTHON:-$HOME/.cache/molpeg/venv/bin/python}
OUT=${OUT:-runs/pyg-crosscheck}
STRATEGIES=${STRATEGIES:-full molpeg:0.3}
EPOCHS=${EPOCHS:-100}
LAYERS=${LAYERS:-3}
WIDTH=${WIDTH:-64}
JOBS=${JOBS:-1}
EXTRA=${EXTRA:-}
SEEDS=${*:-0 1 2}
RESULTS=$OUT/results.jsonl
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$PY" -c "import torch_geometric, rdkit, sklearn, safetensors" 2>/dev/null \
  || "$PY" -m pip install -q torch_geometric rdkit scikit-learn safetensors
mkdir -p "$OUT/epochs" "$OUT/logs"
# Featurize (cached) once before any parallel run, so the runs do not race to write the cache.
"$PY" -c 'import sys; sys.path.insert(0, "bench"); import molpeg_pyg as m; m.load_featurized(str(m.DEFAULT_CSV), str(m.DEFAULT_CACHE))'

run_one() {
  local strategy=$1 keep=$2 seed=$3 tag=$4
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  if "$PY" bench/molpeg_pyg.py --strategy "$strategy" --keep "$keep" --seed "$seed" --epochs "$EPOCHS" \
      --layers "$LAYERS" --width "$WIDTH" --threads 1 --results "$RESULTS" --skip-existing \
      --epoch-csv "$OUT/epochs/$tag.csv" $EXTRA >>"$OUT/logs/$tag.log" 2>&1; then
    if tail -1 "$OUT/logs/$tag.log" | grep -q '^skip'; then
      echo "skipped (already in $RESULTS): $tag"
    else
      echo "done: $tag ($(tail -1 "$OUT/logs/$tag.log" | grep -o '"test_auc": [0-9.na]*'))"
    fi
  else
    echo "FAILED: $tag (see $OUT/logs/$tag.log)" >&2
    return 1
  fi
}

status=0
running=0
for seed in $SEEDS; do
  for s in $STRATEGIES; do
    case $s in
      full) strategy=full keep=1.0 ;;
      molpeg:*) strategy=molpeg keep=${s#molpeg:} ;;
      *) echo "unknown strategy $s (full | molpeg:R)" >&2; exit 2 ;;
    esac
    tag="$strategy-$keep-${LAYERS}x$WIDTH-e$EPOCHS-seed$seed"
    echo "start: $tag"
    run_one "$strategy" "$keep" "$seed" "$tag" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
      wait -n || status=1
      running=$((running - 1))
    fi
  done
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done

"$PY" bench/molpeg_pyg.py --summarize "$RESULTS" | tee "$OUT/summary.md"
exit $status
