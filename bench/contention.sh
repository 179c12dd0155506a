#!/usr/bin/env bash
# `just bench contention`: GIN training throughput (3 × 64, batch 256, libtorch's default 2 threads)
# on a quiet machine and next to ONE competing busy process, with molpeg's default OpenMP policy
# (passive waiting, set by the binaries themselves unless OMP_WAIT_POLICY is set) and with spinning
# (OMP_WAIT_POLICY=ACTIVE, libgomp's own default). Alternates the modes ROUNDS times and reports
# medians and each loaded mode as a share of quiet (goal for the default: >= 45%).
#
# Usage: bench/contention.sh [ROUNDS]      writes bench/results/contention.md (+ .jsonl)
# The competitor is a pure-Python busy loop (one core). "Quiet" is only quiet if nothing else runs:
# the script records the load average before each run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PY=${MOLPEG_PYTHON:-python3}
BIN=${MOLPEG_BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/molpeg-bench-train}
DATA=${TMPDIR:-/tmp}/molpeg-bench-data
OUT=bench/results
mkdir -p "$OUT"
RAW=$OUT/contention.jsonl
: > "$RAW"
run() { # mode: quiet | loaded-default | loaded-active
  local mode=$1 competitor="" load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if [[ $mode == loaded-* ]]; then
    "$PY" -c "while True: pass" & competitor=$!
    sleep 1
  fi
  local env=(env -u OMP_WAIT_POLICY -u OMP_NUM_THREADS)
  [[ $mode == loaded-active ]] && env+=(OMP_WAIT_POLICY=ACTIVE)
  line=$("${env[@]}" "$BIN" --data "$DATA" --layers 3 --width 64 --batches 20 --reps 3 --warmup-seconds 3 --threads 2 | tail -1)
  [ -n "$competitor" ] && kill "$competitor" && wait "$competitor" 2>/dev/null || true
  "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); d["mode"] = sys.argv[2]; d["load_before"] = float(sys.argv[3]); print(json.dumps(d))' "$line" "$mode" "$load" >>"$RAW"
}
for _ in $(seq "$ROUNDS"); do
  for mode in quiet loaded-default loaded-active; do run "$mode"; done
done
"$PY" - "$RAW" "$OUT/contention.md" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
key = "train_graphs_per_s"
med = {m: statistics.median(r[key] for r in rows if r["mode"] == m) for m in ("quiet", "loaded-default", "loaded-active")}
out = ["# Training throughput under one competing process (3 × 64 GIN, batch 256, 2 libtorch threads)", "",
       "| mode | graphs/s (median) | share of quiet | runs |", "|---|---|---|---|"]
for m, label in [("quiet", "quiet machine"), ("loaded-default", "one busy process, molpeg default (passive OpenMP)"),
                 ("loaded-active", "one busy process, OMP_WAIT_POLICY=ACTIVE (spinning)")]:
    n = sum(r["mode"] == m for r in rows)
    out.append(f"| {label} | {med[m]:,.0f} | {med[m] / med['quiet']:.0%} | {n} |")
loads = ", ".join("%.2f" % r["load_before"] for r in rows)
out += ["", f"Load average before each run: {loads}. Command: `bench/contention.sh`."]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
