#!/usr/bin/env bash
# Modalities on HIV (issue 13, EXPERIMENTS.md "Modalities on HIV"): the [scaling] grid of
# pipelines/hiv-modalities.toml (GIN, fingerprint and SMILES models), sharded and resumable, cells
# archived in experiments/results/modalities-hiv/shards/ (see experiments/sweep.sh).
# Usage: experiments/modalities_hiv.sh            run (or resume) the grid (SHARDS=2: one per core)
#        experiments/modalities_hiv.sh archive    copy the parts into the archive and report there
# (MOLPEG_RUNS_DIR defaults to runs/exp-modalities)
export MOLPEG_RUNS_DIR=${MOLPEG_RUNS_DIR:-runs/exp-modalities}
exec "$(dirname "$0")/sweep.sh" pipelines/hiv-modalities.toml experiments/results/modalities-hiv "$@"
