#!/usr/bin/env bash
# Benchmark orbitct-app side by side with a straightforward pydicom+scipy implementation,
# dcm2niix (-z y) and two Python anonymizers. Builds benchmarks/work/venv (the app from the pinned
# dependencies plus the comparison tools), generates the data, writes benchmarks/RESULTS.md.
# Usage: benchmarks/run.sh [--reps N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export ORBITCT_VENV="$PWD/benchmarks/work/venv"
mkdir -p benchmarks/work
. scripts/venv.sh test   # the test tools include scipy, which the baseline uses
# Measure the app as users install it (pip, or the container): a regular install, with its bytecode
# compiled like every other package here, not the editable development install venv.sh makes.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall .
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "dcm2niix==1.0.20260724" "dicognito==0.19.0" "dicom-anonymizer==2.1.0"
exec "$VENV/bin/python" benchmarks/run.py "$@"
