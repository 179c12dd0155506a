#!/usr/bin/env bash
# The 3D scaling curve (issue 14, EXPERIMENTS.md "QM9 gap with SchNet"): the [scaling] grid of
# pipelines/qm9.toml (SchNet, CPU preset, on fractions of QM9's training split), sharded and
# resumable, cells archived in experiments/results/qm9-gap-scaling/shards/ (see experiments/sweep.sh).
# Usage: experiments/qm9_gap_scaling.sh            run (or resume) the grid (SHARDS=2: one per core)
#        experiments/qm9_gap_scaling.sh archive    copy the parts into the archive and report there
exec "$(dirname "$0")/sweep.sh" pipelines/qm9.toml experiments/results/qm9-gap-scaling "$@"
