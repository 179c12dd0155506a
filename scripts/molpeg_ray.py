#!/usr/bin/env python3
"""Place molpeg's sharded stages on Ray: one Ray task per shard, each running the stage binary with
`--shard I/N`; then the run without `--shard` that merges the parts and reports.

The binaries do all the work; this driver only places it. It connects to the cluster in RAY_ADDRESS
(or `--address`), or starts a local Ray when none is given; declares each task's CPUs and GPUs;
retries a failed shard (`--max-retries`); prints progress (shards done, cells/s); and exits non-zero
naming the shard and the end of its stderr when a shard fails for good. A shard that finished before
is a skip inside the binary (its manifest), so rerunning the driver after a kill reruns only the
unfinished shards' remaining cells.

    just ray featurize moses --shards 16                  # graphs.parquet/ of 16 parts, read as one table
    just ray predict hiv --shards 8 -- --input library.csv.gz
    just ray scaling hiv --shards 8                       # = python scripts/molpeg_ray.py scaling pipelines/hiv.toml --shards 8
    just ray scaling hiv --shards 4 --gpus-per-shard 1 -- --models gin,smiles

featurize and predict shards each write one part of their tables (NAME.parquet/part-I-of-N.parquet),
which every reader takes as one table: nothing to merge. scaling shards write results parts, which
the final run without --shard merges and reports on. predict takes the pipeline's name for its
defaults (runs/NAME/finetune/model.safetensors, runs/NAME/predict-<input>); give the input after --.

Every shard process must see the same files (the pipeline, the runs directory, the binaries): on a
cluster, a shared file system, with --bin-dir and --runs-dir pointing into it.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# Per stage: its binary; how it is given the pipeline; whether a run without --shard merges the
# parts afterwards; the flag that sets its worker threads; and the unit its progress line counts.
STAGES = {
    "featurize": {"binary": "molpeg-featurize", "pipeline": "file", "merge": False, "threads": "--threads", "unit": "molecules"},
    "predict": {"binary": "molpeg-predict", "pipeline": "name", "merge": False, "threads": None, "unit": "molecules"},
    "scaling": {"binary": "molpeg-scaling", "pipeline": "file", "merge": True, "threads": "--threads", "unit": "cells"},
}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="molpeg_ray.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=sorted(STAGES), help="the sharded stage to run")
    p.add_argument("pipeline", help="pipeline file, e.g. pipelines/hiv.toml")
    p.add_argument("--shards", type=int, required=True, help="number of shards N (one Ray task each)")
    p.add_argument("--cpus-per-shard", type=float, default=1, help="CPUs a shard task reserves (default 1; the stage runs --threads of that many)")
    p.add_argument("--gpus-per-shard", type=float, default=0, help="GPUs a shard task reserves (default 0)")
    p.add_argument("--max-retries", type=int, default=2, help="times a failed shard is retried (default 2)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster address (default $RAY_ADDRESS; none: a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when there is no address")
    p.add_argument("--bin-dir", default=None, help="directory of the molpeg binaries (default $CARGO_TARGET_DIR/release, else target/release)")
    p.add_argument("--runs-dir", default=None, help="runs directory passed to every process (default $MOLPEG_RUNS_DIR, else runs)")
    p.add_argument("--no-merge", action="store_true", help="run the shards only (merge later with the stage run without --shard)")
    p.epilog = "Flags after -- go to every process of the stage (e.g. -- --models gin,smiles --out-dir DIR)."
    # Everything after the first `--` is the stage's own flags.
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    args.extra = argv[split + 1:]
    if args.shards < 1:
        p.error("--shards must be at least 1")
    if any(a == "--shard" or a.startswith("--shard=") for a in args.extra):
        p.error("the driver chooses --shard itself; give --shards N")
    return args


def stage_command(args, shard=None):
    stage = STAGES[args.stage]
    bin_dir = Path(args.bin_dir or Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release")
    cmd = [str(bin_dir / stage["binary"])]
    if stage["pipeline"] == "file":
        cmd += ["--pipeline", args.pipeline]
    else:  # predict: the pipeline's name gives the default model and output directory
        cmd += ["--name", Path(args.pipeline).stem]
    if args.runs_dir:
        cmd += ["--runs-dir", args.runs_dir]
    if shard is not None:
        cmd += ["--shard", f"{shard}/{args.shards}"]
    if stage["threads"] and not any(a.startswith(stage["threads"]) for a in args.extra):
        cmd += [stage["threads"], str(max(1, int(args.cpus_per_shard)))]
    return cmd + list(args.extra)


class ShardFailed(Exception):
    pass


def run_shard(cmd, cwd, env):
    """Runs one shard's process; raises ShardFailed (Ray retries it) on a non-zero exit."""
    started = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShardFailed(f"exit status {proc.returncode}: {' '.join(cmd)}\n--- stderr (last 40 lines) ---\n" + "\n".join(proc.stderr.splitlines()[-40:]))
    return {"seconds": time.time() - started, "stdout": proc.stdout, "stderr": proc.stderr}


def work_done(stage, stdout):
    """Units a shard processed, from its summary line: cells a scaling shard trained ("scaling: C
    cells: R run now, ..."), rows a featurize or predict shard read ("featurize shard I/N: R rows
    -> ...", "predict: R rows -> ..."); 0 for a shard that was up to date."""
    for line in stdout.splitlines():
        try:
            if stage == "scaling" and line.startswith("scaling:") and "run now" in line:
                return int(line.split(":")[2].split("run now")[0].strip())
            if stage in ("featurize", "predict") and line.startswith(stage) and " rows -> " in line:
                return int(line.split(":", 1)[1].split(" rows -> ")[0].strip())
        except (IndexError, ValueError):
            return 0
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import ray

    stage = STAGES[args.stage]
    env = dict(os.environ)
    if args.runs_dir:
        env["MOLPEG_RUNS_DIR"] = args.runs_dir
    # A shard's featurization (rayon) uses the CPUs its task reserved, not every core of the node.
    env.setdefault("RAYON_NUM_THREADS", str(max(1, int(args.cpus_per_shard))))
    cwd = os.getcwd()
    # A caller that already started Ray (a test running several drives on one Ray) keeps it.
    owns_ray = not ray.is_initialized()
    if owns_ray and args.address:
        ray.init(address=args.address, log_to_driver=False)
    elif owns_ray:
        ray.init(num_cpus=args.num_cpus, log_to_driver=False, include_dashboard=False)
    task = ray.remote(run_shard).options(
        num_cpus=args.cpus_per_shard, num_gpus=args.gpus_per_shard, max_retries=args.max_retries, retry_exceptions=[ShardFailed]
    )
    started = time.time()
    pending = {task.remote(stage_command(args, i), cwd, env): i for i in range(args.shards)}
    done, units, failed = 0, 0, []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as e:  # the shard failed after its retries
            cause = e.cause if isinstance(getattr(e, "cause", None), ShardFailed) else e
            failed.append((shard, str(cause)))
            print(f"shard {shard}/{args.shards} failed for good: {cause}", file=sys.stderr, flush=True)
            continue
        done += 1
        units += work_done(args.stage, result["stdout"])
        elapsed = time.time() - started
        unit = stage["unit"]
        print(f"ray: {done}/{args.shards} shards done ({shard}/{args.shards} in {result['seconds']:.0f} s); {units} {unit}, {units / max(elapsed, 1e-9):.3f} {unit}/s", file=sys.stderr, flush=True)
    if owns_ray:
        ray.shutdown()
    if failed:
        names = ", ".join(f"{s}/{args.shards}" for s, _ in failed)
        print(f"error: {len(failed)} shard(s) failed after {args.max_retries} retries: {names}; rerun the driver to retry only the unfinished shards", file=sys.stderr)
        return 1
    if args.no_merge or not stage["merge"]:
        return 0
    merge = subprocess.run(stage_command(args), cwd=cwd, env={k: v for k, v in env.items() if not k.startswith("SLURM_ARRAY_")})
    return merge.returncode


if __name__ == "__main__":
    sys.exit(main())
