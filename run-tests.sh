#!/usr/bin/env bash
# Run the test suite: installs the app with its test tools into ./.venv, then runs pytest.
# Extra arguments go to pytest (e.g. ./run-tests.sh -k anonymize).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh test
exec "$VENV/bin/python" -m pytest "$@"
