#!/usr/bin/env bash
# Run the gates and the test suite: installs the app with its test tools into ./.venv, checks the
# code with ruff and mypy (settings in pyproject.toml; any finding fails the run before a test
# starts), then runs pytest. Extra arguments go to pytest (e.g. ./run-tests.sh -k anonymize).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh test
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/mypy"  # caches in .mypy_cache: a second run takes about a second
exec "$VENV/bin/python" -m pytest "$@"
