#!/usr/bin/env python3
"""Checks a graphs.parquet written by molpeg-featurize against RDKit's Python bindings, molecule by
molecule: OGB and Hu features, directed edges, canonical SMILES and Murcko scaffold (computed by
featurize_peer.featurize, i.e. ogb.utils.features and MurckoScaffold). Needs pyarrow and an RDKit
whose version matches the file's `molpeg.rdkit_version` (canonical SMILES differ between releases).

Example: featurize_crosscheck.py runs/hiv/featurize/graphs.parquet
Rows in the rejects.parquet next to it must be rejected by Python too. Prints one JSON object:
molecules, rejects, mismatches per column, and the first few mismatching rows.
"""

import argparse
import json
import os
import sys

import pyarrow.parquet as pq
from rdkit import RDLogger, rdBase

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from featurize_peer import featurize  # noqa: E402

COLUMNS = ["atom_hu", "atom_ogb", "edge_index", "bond_hu", "bond_ogb", "canonical_smiles", "scaffold"]


def as_lists(value):
    return [list(x) for x in value] if isinstance(value, list) else value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graphs", help="graphs.parquet")
    parser.add_argument("--show", type=int, default=5, help="mismatching rows to print")
    parser.add_argument("--limit", type=int, default=0, help="check the first N molecules only")
    args = parser.parse_args()
    RDLogger.DisableLog("rdApp.*")

    file = pq.ParquetFile(args.graphs)
    written_with = file.schema_arrow.metadata.get(b"molpeg.rdkit_version", b"?").decode()
    mismatches = {c: 0 for c in COLUMNS + ["rejected_by_python"]}
    examples = []
    molecules = 0
    for batch in file.iter_batches(columns=["mol_id", "smiles"] + COLUMNS):
        for row in batch.to_pylist():
            if args.limit and molecules >= args.limit:
                break
            molecules += 1
            expected = featurize(row["smiles"])
            if expected is None:
                mismatches["rejected_by_python"] += 1
                continue
            bad = [c for c, e in zip(COLUMNS, expected) if as_lists(row[c]) != as_lists(e)]
            for c in bad:
                mismatches[c] += 1
            if bad and len(examples) < args.show:
                examples.append({"mol_id": row["mol_id"], "smiles": row["smiles"], "columns": {c: [row[c], e] for c, e in zip(COLUMNS, expected) if c in bad}})
    # Rows molpeg rejected must be rows Python rejects too.
    rejects_path = os.path.join(os.path.dirname(args.graphs), "rejects.parquet")
    rejects = pq.read_table(rejects_path).to_pylist() if os.path.exists(rejects_path) else []
    mismatches["accepted_by_python"] = sum(1 for r in rejects if featurize(r["smiles"]) is not None)
    print(
        json.dumps(
            {
                "molecules": molecules,
                "rejects": len(rejects),
                "written_with_rdkit": written_with,
                "python_rdkit": rdBase.rdkitVersion,
                "mismatches": mismatches,
                "examples": examples,
            }
        )
    )


if __name__ == "__main__":
    main()
