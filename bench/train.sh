#!/usr/bin/env bash
# `just bench train`: training/inference throughput of molpeg's GIN vs PyTorch Geometric's, same
# molecules, same threads. Runs molpeg (A) and PyG (B) alternately A B A B ... ROUNDS times per model
# size and reports medians; writes bench/results/train-LABEL.md and the raw JSON lines next to it;
# then the token models (bench/tokens.sh → bench/results/tokens-hiv.md; TOKENS=0 skips them) and SchNet
# (bench/schnet.sh → bench/results/schnet-synthetic.md; SCHNET=0 skips it).
#
# Usage: bench/train.sh [ROUNDS] [DATA_DIR] [LABEL]
#   Default data: the HIV training split (runs/hiv/{featurize,split}, made by the stages if missing),
#   LABEL hiv. DATA_DIR may be any directory holding graphs.parquet + split.parquet; `synthetic`
#   generates an HIV-like synthetic set (8192 molecules) instead.
# Needs: the release binaries (just build); installs torch_geometric into $MOLPEG_PYTHON's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${1:-3}
THREADS=${THREADS:-2}
"$PY" -c "import torch_geometric" 2>/dev/null || "$PY" -m pip install -q torch_geometric
if [ "${2:-hiv}" = hiv ]; then
  LABEL=${3:-hiv}
  "$RELEASE/molpeg-featurize" -p pipelines/hiv.toml >/dev/null
  "$RELEASE/molpeg-split" -p pipelines/hiv.toml >/dev/null
  DATA=$(mktemp -d); trap 'rm -rf "$DATA"' EXIT
  runs=${MOLPEG_RUNS_DIR:-runs}/hiv
  ln -s "$PWD/$runs/featurize/graphs.parquet" "$DATA/graphs.parquet"
  ln -s "$PWD/$runs/split/split.parquet" "$DATA/split.parquet"
elif [ "$2" = synthetic ]; then
  LABEL=${3:-synthetic}
  DATA=${TMPDIR:-/tmp}/molpeg-bench-data
else
  DATA=$2
  LABEL=${3:-$(basename "$DATA")}
fi
OUT=bench/results
mkdir -p "$OUT"
RAW="$OUT/train-$LABEL.jsonl"
: > "$RAW"
# (layers, width, batches per timed rep)
SIZES=("5 300 4" "3 64 20")
for size in "${SIZES[@]}"; do
  read -r L W NB <<<"$size"
  for r in $(seq "$ROUNDS"); do
    run_clean "$BIN" --data "$DATA" --layers "$L" --width "$W" --batches "$NB" --reps 3 --threads "$THREADS" >>"$RAW"
    gemm=""; [ "$W" = 300 ] && gemm="--gemm"
    run_clean "$PY" bench/pyg_peer.py --data "$DATA" --layers "$L" --width "$W" --batches "$NB" --reps 3 --threads "$THREADS" $gemm >>"$RAW"
  done
done
"$PY" - "$RAW" "$OUT/train-$LABEL.md" "$ROUNDS" "$THREADS" "$LABEL" <<'PYEOF'
import json, statistics, sys, platform
raw, md, rounds, threads, label = sys.argv[1:6]
rows = [json.loads(l) for l in open(raw) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
out = ["# GIN training throughput: molpeg (Rust + libtorch) vs PyTorch Geometric", "",
       f"Data: {label} ({rows[0]['atoms_per_graph']:.1f} atoms, {rows[0]['directed_edges_per_graph']:.1f} directed edges per molecule, train split).",
       f"CPU: {cpu}, {threads} threads for both; batch 256; dropout 0.5; mean pooling; JK last.",
       f"{rounds} alternating rounds (molpeg, PyG, molpeg, PyG, ...), each the median of 3 timed reps after a 5 s warm-up,",
       f"each started on idle CPUs and rerun if other processes took >10% of the CPUs (largest share left: {max(r.get('foreign_cpu_share', 0) for r in rows):.0%});",
       "numbers below are medians over rounds. Training = forward + backward + Adam step, batching included.", "",
       "Speed-ups are medians of the per-round ratios (each molpeg run over the PyG run right after it),",
       "which cancels slow drifts of a shared machine.", "",
       "| model | molpeg train (graphs/s) | PyG train | speed-up | molpeg inference | PyG inference | speed-up |",
       "|---|---|---|---|---|---|---|"]
extra = []
for (l, w) in sorted({(r["layers"], r["width"]) for r in rows}, reverse=True):
    pick = lambda impl, key: statistics.median(r[key] for r in rows if r["impl"] == impl and (r["layers"], r["width"]) == (l, w))
    mt, pt = pick("molpeg", "train_graphs_per_s"), pick("pyg", "train_graphs_per_s")
    mi, pi = pick("molpeg", "infer_graphs_per_s"), pick("pyg", "infer_graphs_per_s")
    runs = [r for r in rows if (r["layers"], r["width"]) == (l, w)]
    pairs = list(zip(runs[0::2], runs[1::2]))  # (molpeg, pyg) per round, in run order
    ratio = lambda key: statistics.median(a[key] / b[key] for a, b in pairs)
    out.append(f"| {l}×{w} | {mt:,.0f} | {pt:,.0f} | {ratio('train_graphs_per_s'):.2f}× | {mi:,.0f} | {pi:,.0f} | {ratio('infer_graphs_per_s'):.2f}× |")
    g = [r for r in rows if r["impl"] == "pyg" and "gemm_gflops" in r and (r["layers"], r["width"]) == (l, w)]
    if g:
        gf = statistics.median(r["gemm_gflops"] for r in g)
        ceil = statistics.median(r["gemm_ceiling_graphs_per_s"] for r in g)
        extra.append(f"- {l}×{w}: plain fp32 GEMM (N×{w} @ {w}×{2*w}, N = nodes of a batch) runs at {gf:.0f} GFLOP/s in the PyG "
                     f"process; the MLPs alone need {g[0]['mlp_gflop_per_graph']:.3f} GFLOP per graph (forward + backward), so the "
                     f"GEMM ceiling is ≈ {ceil:,.0f} graphs/s; molpeg reaches {mt/ceil:.0%} of it, PyG {pt/ceil:.0%}.")
out += ["", "GEMM ceiling:"] + extra + ["", f"Raw runs: `{raw}`."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
# The token models' throughput (fingerprint and SMILES Transformers; bench/tokens.sh, its own table).
[ "${TOKENS:-1}" = 0 ] || bash bench/tokens.sh "$ROUNDS"
# SchNet next to PyG's SchNet on QM9-like molecules (bench/schnet.sh, its own table; SCHNET=0 skips it).
[ "${SCHNET:-1}" = 0 ] || bash bench/schnet.sh "$ROUNDS"
