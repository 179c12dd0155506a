#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, test and run molpeg. Idempotent: a second run
# checks and returns in about a second.
#   - Debian packages for RDKit (librdkit-dev libboost-dev libboost-serialization-dev) and for
#     figure text (libfontconfig1-dev libfreetype-dev), and chromium (headless browser the report
#     test loads report.html in)
#   - a Python venv OUTSIDE the clone ($MOLPEG_CACHE/venv, default ~/.cache/molpeg/venv) with
#     torch==2.11.0 (the libtorch that tch 0.24 binds), pyarrow (independent Parquet reader for tests)
#     and numpy, plus `just` (rust-just) so the justfile runs, and scikit-learn and pandas
#     (reference metrics and pandas-written files in the tests), and ray (the sharded driver)
set -euo pipefail

cache="${MOLPEG_CACHE:-$HOME/.cache/molpeg}"
venv="$cache/venv"
torch_version="2.11.0"
mkdir -p "$cache"

# fontconfig/freetype: plotters renders figure text through them. chromium: molpeg-report's test
# renders the page headless and checks every figure and the console.
apt_packages=(librdkit-dev libboost-dev libboost-serialization-dev libfontconfig1-dev libfreetype-dev chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating Python venv at $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.molpeg-setup-torch-$torch_version"
if [ ! -f "$stamp" ]; then
  echo "setup: installing torch==$torch_version, pyarrow, numpy, rust-just into $venv (one time, a few minutes)"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "torch==$torch_version" pyarrow numpy rust-just
  "$venv/bin/python" -c "import torch, pyarrow; assert torch.__version__.startswith('$torch_version'), torch.__version__"
  touch "$stamp"
fi
# scikit-learn (the independent metric implementation the per-task metric tests compare against)
# and pandas (the tests read files a pandas user writes). Checked on their own, not behind the torch
# stamp, so venvs made before they were needed get them too.
if ! "$venv/bin/python" -c "import sklearn, pandas" 2>/dev/null; then
  echo "setup: installing scikit-learn and pandas into $venv"
  "$venv/bin/pip" install -q scikit-learn pandas
fi
# Ray: the engine the sharded driver (scripts/molpeg_ray.py, `just ray ...`) places shards on; its
# tests start a local Ray.
if ! "$venv/bin/python" -c "import ray" 2>/dev/null; then
  echo "setup: installing ray into $venv"
  "$venv/bin/pip" install -q ray
fi
