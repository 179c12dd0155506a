#!/usr/bin/env bash
# `just bench featurize`: molecules/s of molpeg-featurize on HIV (41,127 SMILES) against the Python
# peer (bench/featurize_peer.py: the same job through RDKit's Python bindings and OGB's smiles2graph)
# and against bare RDKit parsing, measured twice: through the same RDKit build the stage links
# (molpeg-bench-parse, RDKit 2022.09 via rdkit-sys) and through the Python bindings (newer RDKit).
# Programs alternate (A B C D E, A B C D E, ...) for ROUNDS rounds; the table reports medians.
# Writes bench/results/featurize.md and bench/results/featurize.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PY=${MOLPEG_PYTHON:-python3}
BIN=${CARGO_TARGET_DIR:-target}/release
MIRROR=${MOLPEG_DATA_MIRROR:?set MOLPEG_DATA_MIRROR (the justfile does)}
HIV=$(find -L "$MIRROR" -maxdepth 2 -name hiv.csv.gz | head -1)
[ -n "$HIV" ] || { echo "hiv.csv.gz not found under $MIRROR" >&2; exit 1; }
# The peer needs RDKit's Python bindings and OGB (benchmarks only; tests never use them).
"$PY" -c "import rdkit, ogb.utils" 2>/dev/null || "$PY" -m pip install -q rdkit ogb
OUT=bench/results; mkdir -p "$OUT"
RAW=$OUT/featurize.jsonl; : > "$RAW"
RUNS=$(mktemp -d); trap 'rm -rf "$RUNS"' EXIT

molpeg() { # threads
  local start end
  start=$(date +%s.%N)
  MOLPEG_RUNS_DIR=$RUNS "$BIN/molpeg-featurize" -p pipelines/hiv.toml --force --threads "$1" >/dev/null
  end=$(date +%s.%N)
  echo "{\"impl\": \"molpeg\", \"threads\": $1, \"molecules_per_second\": $(echo "41127 / ($end - $start)" | bc -l)}"
}
for round in $(seq "$ROUNDS"); do
  molpeg 2 >> "$RAW"
  "$PY" bench/featurize_peer.py "$HIV" --mode full | sed 's/^{/{"impl": "python-full", /' >> "$RAW"
  molpeg 1 >> "$RAW"
  "$BIN/molpeg-bench-parse" -p pipelines/hiv.toml | sed 's/^{/{"impl": "rdkit-sys-parse", /' >> "$RAW"
  "$PY" bench/featurize_peer.py "$HIV" --mode parse | sed 's/^{/{"impl": "python-parse", /' >> "$RAW"
done
"$PY" - "$RAW" "$OUT/featurize.md" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(impl, threads=None):
    v = [r["molecules_per_second"] for r in rows if r["impl"] == impl and (threads is None or r.get("threads") == threads)]
    return statistics.median(v)
version = lambda impl: next(r["rdkit_version"] for r in rows if r["impl"] == impl)
m2, m1, full = med("molpeg", 2), med("molpeg", 1), med("python-full")
parse, pyparse = med("rdkit-sys-parse"), med("python-parse")
text = f"""# Featurization throughput on HIV (41,127 SMILES)

Medians of {len(rows)//5} alternating rounds; molpeg times are whole-process wall times (reading the
CSV.gz, featurizing, writing both Parquet files); the parse-only rows time the parse loop alone.

| program | molecules/s |
|---|---|
| molpeg-featurize, 2 threads | {m2:,.0f} |
| molpeg-featurize, 1 thread | {m1:,.0f} |
| Python peer (RDKit {version("python-full")} + OGB smiles2graph + Hu features + scaffold), 1 process | {full:,.0f} |
| bare `SmilesToMol`, same RDKit as molpeg ({version("rdkit-sys-parse")}, rdkit-sys), 1 thread | {parse:,.0f} |
| bare `Chem.MolFromSmiles` (Python, RDKit {version("python-parse")}), 1 process | {pyparse:,.0f} |

- molpeg (2 threads) vs the Python peer: **{m2/full:.1f}×** (target ≥ 6×)
- molpeg per core vs bare parse with the same RDKit: **{parse/m1:.2f}×** the parse cost (target ≤ 1.3×)
"""
open(sys.argv[2], "w").write(text)
print(text)
PYEOF
# The sharded path on MOSES (wall time and peak RSS per shard, N = 1, 2).
bash bench/featurize_sharded.sh
