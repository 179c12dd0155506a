#!/usr/bin/env bash
# Dynamic MolPeg vs random on QM9's gap (issue 14, EXPERIMENTS.md "QM9 gap: MolPeg vs random"): the
# [scaling] grid of pipelines/qm9-molpeg.toml, sharded and resumable, cells archived in
# experiments/results/qm9-molpeg/shards/ (see experiments/sweep.sh).
# Usage: experiments/qm9_molpeg.sh            run (or resume) the grid (SHARDS=2: one per core)
#        experiments/qm9_molpeg.sh archive    copy the parts into the archive and report there
exec "$(dirname "$0")/sweep.sh" pipelines/qm9-molpeg.toml experiments/results/qm9-molpeg "$@"
