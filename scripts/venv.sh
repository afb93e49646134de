# shellcheck shell=bash
# Sourced by run-demo.sh and run-tests.sh: make ./.venv and install orbitct-app into it.
# Usage: . scripts/venv.sh [test]   ("test" adds the test tools)
#
# The dependencies come from the hashed lock files in requirements/ (the same pins the container
# image installs; refresh them with scripts/lock.sh), then the app itself without dependencies.
VENV="${ORBITCT_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
_pip() { "$VENV/bin/python" -m pip --quiet --disable-pip-version-check "$@"; }
_pip install --upgrade pip
_pip install --require-hashes -r requirements/lock.txt
_pip install --require-hashes -r requirements/build.txt
if [ "${1:-}" = "test" ]; then
  _pip install --require-hashes -r requirements/test.txt
fi
# setuptools warns on every editable build; show its output only when the install fails
if ! _out=$(_pip install --no-deps --no-build-isolation -e . 2>&1); then
  printf '%s\n' "$_out" >&2
  echo "Could not install orbitct-app into $VENV" >&2
  exit 1
fi
unset _out
unset -f _pip
export VENV
