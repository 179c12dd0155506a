#!/usr/bin/env bash
# Pruning baselines on HIV (issue: every static and dynamic baseline next to MolPeg and full data at
# keep 0.1 / 0.3 / 0.6, several seeds), CPU configuration of pipelines/hiv.toml (3 × 64, 30 epochs).
# Writes into the same runs/exp-molpeg/seed<S>/hiv/ as experiments/molpeg_hiv.sh, which provides the
# full-data, random and MolPeg rows; summarize.py tabulates both.
#
# Static rules: one 20-epoch proxy run from scratch per seed (`molpeg-score --signals --tag proxy`),
# then `molpeg-select --rule R --score-dir score-proxy` and a fine-tune on the coreset (tag R-KEEP).
# kmeans-fp needs no proxy: it clusters RDKit Morgan fingerprints, which `molpeg-featurize
# --fingerprints` writes once into runs/exp-molpeg/fingerprints/.
# Dynamic policies: `molpeg-finetune --dynamic P --keep KEEP` (tag dynamic-P-KEEP).
#
# Parallel and resumable: every run is a cached stage, and each job holds a lock while it runs, so
# starting this script twice gives two workers that share the job list (seed-major order, so partial
# results are whole seeds); rerunning after an interruption skips finished runs. Each worker uses one
# libtorch thread. Usage: experiments/baselines_hiv.sh [SEEDS...]   (default: 0 1 2)
# KEEPS (default "0.1 0.3 0.6") picks the keep ratios, e.g. KEEPS=0.3 for one column of the table.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
P=pipelines/hiv.toml
SEEDS=${*:-0 1 2}
STATIC_RULES="herding kmeans kmeans-fp kcenter least-confidence entropy margin forgetting grand el2n moderate"
DYNAMIC_POLICIES="soft-random epsilon-greedy ucb infobatch"
KEEPS=${KEEPS:-0.1 0.3 0.6}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
LOCKS=runs/exp-molpeg/locks
FINGERPRINTS=runs/exp-molpeg/fingerprints/hiv/featurize/fingerprints.parquet
mkdir -p "$LOCKS"

prepare() { # seed: featurize + split (cached), and the fingerprints kmeans-fp reads
  local seed=$1
  MOLPEG_RUNS_DIR=runs/exp-molpeg/seed$seed "$BIN/molpeg-featurize" -p $P >/dev/null &&
    MOLPEG_RUNS_DIR=runs/exp-molpeg/seed$seed "$BIN/molpeg-split" -p $P >/dev/null &&
    flock "$LOCKS/fingerprints" env MOLPEG_RUNS_DIR=runs/exp-molpeg/fingerprints \
      "$BIN/molpeg-featurize" -p $P --fingerprints >/dev/null
}

static_job() { # seed rule keep
  local seed=$1 rule=$2 keep=$3 dir=runs/exp-molpeg/seed$1/hiv
  export MOLPEG_RUNS_DIR=runs/exp-molpeg/seed$seed
  local inputs=(--score-dir "$dir/score-proxy")
  if [[ $rule == kmeans-fp ]]; then
    inputs=(--fingerprints "$FINGERPRINTS")
  else
    flock "$LOCKS/proxy-$seed" "$BIN/molpeg-score" -p $P --seed "$seed" --signals --epochs 20 \
      --tag proxy --threads 1 || return
  fi
  "$BIN/molpeg-select" -p $P --rule "$rule" --keep "$keep" --seed "$seed" "${inputs[@]}" \
      --out-dir "$dir/select-$rule-$keep" &&
    "$BIN/molpeg-finetune" -p $P --seed "$seed" --threads 1 \
      --coreset "$dir/select-$rule-$keep/coreset.parquet" --tag "$rule-$keep"
}

dynamic_job() { # seed policy keep
  MOLPEG_RUNS_DIR=runs/exp-molpeg/seed$1 "$BIN/molpeg-finetune" -p $P --seed "$1" --threads 1 \
    --dynamic "$2" --keep "$3" --tag "dynamic-$2-$3"
}

failed=0
run_job() { # kind seed name keep: skip it when another worker holds it (exit 75)
  local lock="$LOCKS/$1-$2-$3-$4"
  flock -n -E 75 "$lock" bash -c "$(declare -f static_job dynamic_job); BIN=$BIN P=$P LOCKS=$LOCKS FINGERPRINTS=$FINGERPRINTS; ${1}_job $2 $3 $4"
  local rc=$?
  if [[ $rc -ne 0 && $rc -ne 75 ]]; then
    echo "baselines: job $1 seed $2 $3 keep $4 failed (exit $rc); continuing" >&2
    failed=1
  fi
}

for seed in $SEEDS; do
  flock "$LOCKS/prepare-$seed" bash -c "$(declare -f prepare); BIN=$BIN P=$P LOCKS=$LOCKS; prepare $seed" || exit 1
  for keep in $KEEPS; do
    for rule in $STATIC_RULES; do run_job static "$seed" "$rule" "$keep"; done
    for policy in $DYNAMIC_POLICIES; do run_job dynamic "$seed" "$policy" "$keep"; done
  done
done
exit $failed
