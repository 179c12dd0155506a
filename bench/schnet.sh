#!/usr/bin/env bash
# `just bench schnet` (also run by `just bench train`): SchNet training/inference throughput
# (molecules/s) of molpeg (Rust + libtorch) next to PyTorch Geometric's own `SchNet` at the same size,
# same molecules, same threads, alternately A B A B ... ROUNDS times per size; medians and per-round
# ratios in bench/results/schnet-LABEL.md, raw JSON lines next to it.
#
# Usage: bench/schnet.sh [ROUNDS] [DATA_DIR] [LABEL]
#   DATA_DIR: a directory with graphs.parquet, split.parquet and atoms3d.parquet (e.g. the featurize
#   and split outputs of pipelines/qm9.toml, linked into one directory); default `synthetic`: 8192
#   random QM9-like molecules (≤ 29 atoms, H/C/N/O/F; molpeg_nn::synthetic::qm9_like), written once.
# Sizes: the CPU preset (3 interactions × 64, 64 filters, 5 Å) and PyG's default (6 × 128, 128, 10 Å),
# both with 50 gaussians, batch 128, sum readout. THREADS=1 by default (as the scaling sweeps run).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${1:-3}
THREADS=${THREADS:-1}
"$PY" -c "import torch_geometric" 2>/dev/null || "$PY" -m pip install -q torch_geometric
if [ "${2:-synthetic}" = synthetic ]; then
  LABEL=${3:-synthetic}
  DATA=${TMPDIR:-/tmp}/molpeg-bench-qm9like
else
  DATA=$2
  LABEL=${3:-$(basename "$DATA")}
fi
OUT=bench/results
mkdir -p "$OUT"
RAW="$OUT/schnet-$LABEL.jsonl"
: > "$RAW"
# (interactions, hidden, cutoff Å, batches per timed rep)
SIZES=("3 64 5 10" "6 128 10 4")
for size in "${SIZES[@]}"; do
  read -r L W C NB <<<"$size"
  for r in $(seq "$ROUNDS"); do
    run_clean "$BIN" --data "$DATA" --model schnet --layers "$L" --width "$W" --cutoff "$C" --batch-size 128 --batches "$NB" --reps 3 --threads "$THREADS" >>"$RAW"
    run_clean "$PY" bench/pyg_schnet.py --data "$DATA" --layers "$L" --width "$W" --cutoff "$C" --batch-size 128 --batches "$NB" --reps 3 --threads "$THREADS" >>"$RAW"
  done
done
"$PY" - "$RAW" "$OUT/schnet-$LABEL.md" "$ROUNDS" "$THREADS" "$LABEL" <<'PYEOF'
import json, statistics, sys, platform
raw, md, rounds, threads, label = sys.argv[1:6]
rows = [json.loads(l) for l in open(raw) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
g = rows[0]["geometry"]
out = ["# SchNet training throughput: molpeg (Rust + libtorch) vs PyTorch Geometric's SchNet", "",
       f"Data: {label} ({g['atoms3d_per_graph']:.1f} atoms with hydrogens per molecule, train split).",
       f"CPU: {cpu}, {threads} thread(s) for both; batch 128; 50 gaussians; sum readout; Adam 1e-3; MSE on standardized targets.",
       f"{rounds} alternating rounds (molpeg, PyG, ...), each the median of 3 timed reps after a 5 s warm-up; numbers are medians over rounds,",
       "speed-ups medians of the per-round ratios. Training = forward + backward + Adam step, batching included; molpeg's",
       "time includes building the neighbour lists in its collator, PyG's graphs are precomputed once per molecule (see bench/pyg_schnet.py).", "",
       "| size (interactions × hidden, filters, cutoff) | pairs per molecule | molpeg train (molecules/s) | PyG train | speed-up | molpeg inference | PyG inference | speed-up |",
       "|---|---|---|---|---|---|---|---|"]
for (l, w) in sorted({(r["layers"], r["width"]) for r in rows}):
    runs = [r for r in rows if (r["layers"], r["width"]) == (l, w)]
    pick = lambda impl, key: statistics.median(r[key] for r in runs if r["impl"] == impl)
    pairs = list(zip(runs[0::2], runs[1::2]))
    ratio = lambda key: statistics.median(a[key] / b[key] for a, b in pairs)
    m = [r for r in runs if r["impl"] == "molpeg"][0]["geometry"]
    p = [r for r in runs if r["impl"] == "pyg"][0]["geometry"]
    # The same pairs up to a handful at exactly the cutoff (molpeg compares f32 distances; on all of
    # QM9's training split 2 pairs in 29 million differ).
    assert abs(m["pairs_per_graph"] - p["pairs_per_graph"]) <= 1e-4 * p["pairs_per_graph"], (m, p)
    out.append(f"| {l} × {w}, {m['filters']}, {m['cutoff']:g} Å | {m['pairs_per_graph']:.0f} | {pick('molpeg', 'train_graphs_per_s'):,.0f} | {pick('pyg', 'train_graphs_per_s'):,.0f} | {ratio('train_graphs_per_s'):.2f}× "
               f"| {pick('molpeg', 'infer_graphs_per_s'):,.0f} | {pick('pyg', 'infer_graphs_per_s'):,.0f} | {ratio('infer_graphs_per_s'):.2f}× |")
out += ["", f"Raw runs: `{raw}`."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
