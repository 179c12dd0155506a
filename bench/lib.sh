# Shared by the bench scripts (sourced): run_clean CMD... prints CMD's last stdout line (a JSON object)
# with `foreign_cpu_share` added, after waiting for idle CPUs and rerunning (up to BENCH_RERUNS times,
# default 3) a run that other processes disturbed (BENCH_IDLE_TRIES × 2 s of waiting at most, default 120). Also sets the
# Python (PY), the release dir (RELEASE) and the bench binary (BIN).
PY=${MOLPEG_PYTHON:-python3}
RELEASE=${CARGO_TARGET_DIR:-target}/release
BIN=${MOLPEG_BENCH_BIN:-$RELEASE/molpeg-bench-train}
# The machine may be shared: before each run wait until the CPUs are idle, and rerun (up to 3 times) a
# run during which other processes used more than 10% of the CPUs; each JSON line records that share.
HZ=$(getconf CLK_TCK)
cpu_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
wait_idle() {
  for _ in $(seq "${BENCH_IDLE_TRIES:-120}"); do
    read -r b0 t0 < <(cpu_jiffies); sleep 2; read -r b1 t1 < <(cpu_jiffies)
    awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { exit !(b < 0.1 * t) }' && return
  done
  echo "warning: CPUs still busy after $((2 * ${BENCH_IDLE_TRIES:-120})) s; measuring anyway" >&2
}
run_clean() {
  local out foreign
  for _ in $(seq "${BENCH_RERUNS:-3}"); do
    wait_idle
    read -r b0 t0 < <(cpu_jiffies)
    out=$(/usr/bin/time -f "%U %S" -o "$TIMES" "$@" 2>/dev/null | tail -1)
    read -r b1 t1 < <(cpu_jiffies)
    foreign=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v hz="$HZ" -v own="$(tail -1 "$TIMES")" \
      'BEGIN { split(own, c, " "); f = (b / hz - c[1] - c[2]) / (t / hz); print (f < 0 ? 0 : f) }')
    awk -v f="$foreign" 'BEGIN { exit !(f < 0.1) }' && break
    echo "other processes used ${foreign} of the CPUs during (rerun while BENCH_RERUNS allows): $*" >&2
  done
  "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); d["foreign_cpu_share"] = float(sys.argv[2]); print(json.dumps(d))' "$out" "$foreign"
}
TIMES=$(mktemp)
