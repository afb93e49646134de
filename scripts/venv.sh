# Sourced by run-demo.sh and run-tests.sh: make ./.venv and install orbitct-app into it.
# Usage: . scripts/venv.sh [test]   ("test" adds the test tools)
VENV="${ORBITCT_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ "${1:-}" = "test" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
else
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e .
fi
export VENV
