#!/usr/bin/env python3
"""Place molpeg's sharded stages on Ray: one Ray task per shard, each running the stage binary with
`--shard I/N`; then the run without `--shard` that merges the parts and reports.

The binaries do all the work; this driver only places it. It connects to the cluster in RAY_ADDRESS
(or `--address`), or starts a local Ray when none is given; declares each task's CPUs and GPUs;
retries a failed shard (`--max-retries`); prints progress (shards done, cells/s); and exits non-zero
naming the shard and the end of its stderr when a shard fails for good. A shard that finished before
is a skip inside the binary (its manifest), so rerunning the driver after a kill reruns only the
unfinished shards' remaining cells.

    just ray scaling hiv --shards 8                       # = python scripts/molpeg_ray.py scaling pipelines/hiv.toml --shards 8
    just ray scaling hiv --shards 4 --gpus-per-shard 1 -- --models gin,smiles

Every shard process must see the same files (the pipeline, the runs directory, the binaries): on a
cluster, a shared file system, with --bin-dir and --runs-dir pointing into it.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# Per stage: the binary and the unit its progress line counts.
STAGES = {"scaling": "molpeg-scaling"}


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
    bin_dir = Path(args.bin_dir or Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release")
    cmd = [str(bin_dir / STAGES[args.stage]), "--pipeline", args.pipeline]
    if args.runs_dir:
        cmd += ["--runs-dir", args.runs_dir]
    if shard is not None:
        cmd += ["--shard", f"{shard}/{args.shards}"]
    if args.stage == "scaling" and not any(a.startswith("--threads") for a in args.extra):
        cmd += ["--threads", str(max(1, int(args.cpus_per_shard)))]
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


def ran_cells(stdout):
    """Cells a scaling shard trained, from its summary line ("scaling: C cells: R run now, ...")."""
    for line in stdout.splitlines():
        if line.startswith("scaling:") and "run now" in line:
            try:
                return int(line.split(":")[2].split("run now")[0].strip())
            except (IndexError, ValueError):
                return 0
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import ray

    env = dict(os.environ)
    if args.runs_dir:
        env["MOLPEG_RUNS_DIR"] = args.runs_dir
    cwd = os.getcwd()
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, log_to_driver=False, include_dashboard=False)
    task = ray.remote(run_shard).options(
        num_cpus=args.cpus_per_shard, num_gpus=args.gpus_per_shard, max_retries=args.max_retries, retry_exceptions=[ShardFailed]
    )
    started = time.time()
    pending = {task.remote(stage_command(args, i), cwd, env): i for i in range(args.shards)}
    done, cells, failed = 0, 0, []
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
        cells += ran_cells(result["stdout"])
        elapsed = time.time() - started
        print(f"ray: {done}/{args.shards} shards done ({shard}/{args.shards} in {result['seconds']:.0f} s); {cells} cells trained, {cells / max(elapsed, 1e-9):.3f} cells/s", file=sys.stderr, flush=True)
    ray.shutdown()
    if failed:
        names = ", ".join(f"{s}/{args.shards}" for s, _ in failed)
        print(f"error: {len(failed)} shard(s) failed after {args.max_retries} retries: {names}; rerun the driver to retry only the unfinished shards", file=sys.stderr)
        return 1
    if args.no_merge:
        return 0
    merge = subprocess.run(stage_command(args), cwd=cwd, env={k: v for k, v in env.items() if not k.startswith("SLURM_ARRAY_")})
    return merge.returncode


if __name__ == "__main__":
    sys.exit(main())
