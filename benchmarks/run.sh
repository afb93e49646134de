#!/usr/bin/env bash
# Benchmark orbitct-app side by side with a straightforward pydicom+scipy implementation,
# dcm2niix (-z y) and two Python anonymizers. Builds benchmarks/work/app (the app and its pinned
# dependencies) and benchmarks/work/venv (the other tools), generates the data, writes
# benchmarks/RESULTS.md.
# Usage: benchmarks/run.sh [--reps N] [--quick] [--only extract|anonymize|scaling|wide|plan|pixeltext ...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/work
# The app gets a venv of its own with exactly its locked dependencies, installed as users install
# it (pip, or the container): a regular install with compiled bytecode, not the editable
# development install venv.sh makes.
export ORBITCT_VENV="$PWD/benchmarks/work/app"
. scripts/venv.sh
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall .
export ORBITCT_APP="$VENV/bin/orbitct-app"
# The comparison tools, the baseline (scipy comes with the test tools) and the data generator run
# from another venv, so that the tools' own dependencies do not change the app's start-up (pydicom
# imports tqdm whenever it is installed, and dicom-anonymizer installs it).
export ORBITCT_VENV="$PWD/benchmarks/work/venv"
. scripts/venv.sh test
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "dcm2niix==1.0.20260724" "dicognito==0.19.0" "dicom-anonymizer==2.1.0"
exec "$VENV/bin/python" benchmarks/run.py "$@"
