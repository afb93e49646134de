#!/usr/bin/env bash
# Refresh the pinned, hashed lock files in requirements/ (needs uv: `pip install uv`).
#   requirements/lock.txt   runtime dependencies of pyproject.toml (image, developers, CI)
#   requirements/build.txt  setuptools + wheel, to build the app's own wheel
#   requirements/test.txt   test tools, constrained to the runtime pins
# Resolved for Python 3.11 (the Python of the Debian bookworm image); every wheel of each pinned
# version is hashed, so the files install on any platform. Extra arguments go to every
# `uv pip compile` (e.g. --upgrade, or --upgrade-package numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-uv}"
PY=3.11
compile() {  # compile SOURCE OUTPUT [args...]
  local src=$1 out=$2
  shift 2
  "$UV" pip compile "$src" --quiet --python-version "$PY" --generate-hashes \
    --custom-compile-command "scripts/lock.sh" -o "$out" "$@"
}
compile pyproject.toml requirements/lock.txt "$@"
compile requirements/build.in requirements/build.txt "$@"
compile requirements/test.in requirements/test.txt -c requirements/lock.txt "$@"
echo "refreshed requirements/lock.txt, build.txt and test.txt"
