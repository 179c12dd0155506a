"""Runs several drives of scripts/molpeg_ray.py on one local Ray, so the Ray tests pay for one Ray
start (a few seconds) instead of one per drive.

Usage: python tests/ray_harness.py NUM_CPUS DRIVES.json RESULTS.json
DRIVES.json holds a list of {"cwd": dir, "argv": [driver arguments]}, or {"remove": path} to delete
a file between two drives (a shard killed after it wrote it); RESULTS.json receives, per entry in
order, {"rc": exit status, "stderr": what the driver printed to stderr}.
"""
import contextlib
import io
import json
import os
import sys
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parent.parent / "scripts")
sys.path.insert(0, SCRIPTS)

import molpeg_ray  # noqa: E402
import ray  # noqa: E402


def main() -> None:
    num_cpus, drives_path, results_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    drives = json.loads(Path(drives_path).read_text())
    # The driver's task function lives in module molpeg_ray here (not __main__, which Ray ships by
    # value), so the workers must be able to import it.
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": SCRIPTS}})
    results = []
    for drive in drives:
        if "remove" in drive:
            try:
                os.remove(drive["remove"])
                results.append({"rc": 0, "stderr": ""})
            except OSError as e:
                results.append({"rc": 1, "stderr": f"cannot remove {drive['remove']}: {e}"})
            continue
        os.chdir(drive["cwd"])
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            rc = molpeg_ray.main(drive["argv"])
        results.append({"rc": rc, "stderr": stderr.getvalue()})
    ray.shutdown()
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
