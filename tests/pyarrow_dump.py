"""Independent reader for end-to-end tests: dumps a Parquet file through pyarrow as JSON.

Usage: python tests/pyarrow_dump.py FILE [--rows N]
Prints {"schema": {column: arrow type string}, "metadata": {key: value}, "num_rows": n,
"rows": [first N rows as dicts]} so Rust tests can assert on what a user's pandas/polars/DuckDB sees.
"""
import json
import sys

import pyarrow.parquet as pq


def main() -> None:
    path = sys.argv[1]
    limit = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else None
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if not k.startswith(b"ARROW")}
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    print(json.dumps({
        "schema": {f.name: str(f.type) for f in table.schema},
        "metadata": meta,
        "num_rows": table.num_rows,
        "rows": rows,
    }))


if __name__ == "__main__":
    main()
