#!/usr/bin/env bash
# `just bench tokens`: training/inference throughput of the token models (fingerprint and SMILES
# Transformers, 1 layer × 64, 8 heads, ffn 300, dropout 0.1) on the HIV training split, with
# length-bucketed batches (length_buckets 16, the default) against plain random batches (0),
# alternately A B A B ... ROUNDS times; medians and per-round ratios in bench/results/tokens-hiv.md.
# Usage: bench/tokens.sh [ROUNDS]   (THREADS=1 by default: the scaling sweeps run one thread per process)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${1:-3}
THREADS=${THREADS:-1}
P=pipelines/hiv-modalities.toml
"$RELEASE/molpeg-featurize" -p $P >/dev/null
"$RELEASE/molpeg-split" -p $P >/dev/null
DATA=$(mktemp -d); trap 'rm -rf "$DATA"' EXIT
runs=${MOLPEG_RUNS_DIR:-runs}/hiv-modalities
for f in featurize/graphs.parquet featurize/fingerprints.parquet split/split.parquet; do
  ln -s "$(realpath "$runs/$f")" "$DATA/$(basename $f)"
done
OUT=bench/results
mkdir -p "$OUT"
RAW="$OUT/tokens-hiv.jsonl"
: > "$RAW"
for model in fingerprint smiles; do
  for r in $(seq "$ROUNDS"); do
    for buckets in 16 0; do
      run_clean "$BIN" --data "$DATA" --model $model --layers 1 --width 64 --length-buckets $buckets --batches 10 --reps 3 --threads "$THREADS" >>"$RAW"
    done
  done
done
"$PY" - "$RAW" "$OUT/tokens-hiv.md" "$ROUNDS" "$THREADS" <<'PYEOF'
import json, statistics, sys, platform
raw, md, rounds, threads = sys.argv[1:5]
rows = [json.loads(l) for l in open(raw) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
out = ["# Token models: length-bucketed vs random batches", "",
       f"Data: the HIV training split of pipelines/hiv-modalities.toml. CPU: {cpu}, {threads} thread(s); batch 256;",
       "Transformer 1 layer × 64, 8 heads, ffn 300, dropout 0.1. Buckets 16: each window of 16 batches of the shuffled",
       "epoch is sorted by token count before it is cut into batches; 0: random batches. Inference always runs shortest first.",
       f"{rounds} alternating rounds, each the median of 3 timed reps (10 batches) after a 5 s warm-up; largest share of",
       f"the CPUs other processes took during a run: {max(r.get('foreign_cpu_share', 0) for r in rows):.0%}.", "",
       "| model | tokens/molecule | train, buckets 16 (graphs/s) | train, random batches | speed-up | inference (graphs/s) |",
       "|---|---|---|---|---|---|"]
for model in ("fingerprint", "smiles"):
    runs = [r for r in rows if r["model"] == model]
    pick = lambda b, key: statistics.median(r[key] for r in runs if r["length_buckets"] == b)
    pairs = list(zip(runs[0::2], runs[1::2]))  # (buckets 16, random) per round
    ratio = statistics.median(a["train_graphs_per_s"] / b["train_graphs_per_s"] for a, b in pairs)
    infer = statistics.median(r["infer_graphs_per_s"] for r in runs)
    out.append(f"| {model} | {runs[0]['tokens_per_graph']:.1f} | {pick(16, 'train_graphs_per_s'):,.0f} | {pick(0, 'train_graphs_per_s'):,.0f} | {ratio:.2f}× | {infer:,.0f} |")
out += ["", f"Raw runs: `{raw}`."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
