#!/usr/bin/env bash
# Modalities on HIV (issue 13, EXPERIMENTS.md "Modalities on HIV"): the [scaling] grid of
# pipelines/hiv-modalities.toml in two processes, one libtorch thread each (the SMILES Transformer
# alone costs about as much as the other two models), each resumable in its own out-dir; then the
# rows are merged into runs/<...>/hiv-modalities/scaling/results.parquet and fitted there
# (--report-only). Rerunning skips every finished cell; a later `just scaling hiv-modalities` sees
# the merged cells as finished too (same keys and settings hashes).
# Usage: experiments/modalities_hiv.sh        (MOLPEG_RUNS_DIR defaults to runs/exp-modalities)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
P=pipelines/hiv-modalities.toml
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export MOLPEG_RUNS_DIR=${MOLPEG_RUNS_DIR:-runs/exp-modalities}
OUT=$MOLPEG_RUNS_DIR/hiv-modalities
"$BIN/molpeg-featurize" -p $P >/dev/null
"$BIN/molpeg-split" -p $P >/dev/null
"$BIN/molpeg-scaling" -p $P --models gin,fingerprint --threads 1 --out-dir "$OUT/scaling-gin-fingerprint" >> "$OUT/scaling-gin-fingerprint.log" 2>&1 &
a=$!
"$BIN/molpeg-scaling" -p $P --models smiles --threads 1 --out-dir "$OUT/scaling-smiles" >> "$OUT/scaling-smiles.log" 2>&1 &
b=$!
status=0
wait $a || status=$?
wait $b || status=$?
mkdir -p "$OUT/scaling"
"${MOLPEG_PYTHON:-python3}" - "$OUT" <<'PY'
import sys, pathlib, pyarrow as pa, pyarrow.parquet as pq
out = pathlib.Path(sys.argv[1])
parts = [out / d / "results.parquet" for d in ("scaling-gin-fingerprint", "scaling-smiles")]
tables = [pq.read_table(p) for p in parts if p.is_file()]
merged = pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata)
tmp = out / "scaling" / "results.parquet.tmp"
pq.write_table(merged, tmp)
tmp.replace(out / "scaling" / "results.parquet")
print(f"merged {merged.num_rows} cells from {len(tables)} files")
PY
"$BIN/molpeg-scaling" -p $P --report-only
exit $status
