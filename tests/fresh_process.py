"""Run the command line in a fresh interpreter, as the console script does, and compare outputs.

For tests of what a process that runs only orbitct-app does differently from a caller's process
(:func:`orbitct_app.cli.main` with ``owns_process``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orbitct_app

NUMERIC_LIBRARIES = ("numpy", "scipy", "nibabel", "cc3d")


def run_cli(args: list[str], *, owns_process: bool) -> tuple[int, list[str]]:
    """The exit code of ``orbitct-app ARGS`` run in a fresh interpreter, and the modules of
    :data:`NUMERIC_LIBRARIES` it had loaded when it finished."""
    code = (
        "import json, sys\n"
        "from orbitct_app.cli import main\n"
        f"code = main({args!r}, owns_process={owns_process!r})\n"
        "loaded = sorted(m for m, module in sys.modules.items()"
        f" if m.split('.')[0] in {NUMERIC_LIBRARIES!r} and module is not None)\n"
        "print(json.dumps([code, loaded]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(orbitct_app.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    exit_code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return exit_code, loaded


def comparable_output(out: Path) -> dict[str, bytes]:
    """The files of a run's OUTPUT_DIR that two runs of the same input write alike: the DICOM
    files and the CSV tables (not the logs, timings, run records or HTML report)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix in (".csv", ".dcm", "") and "logs" not in p.parts and ".orbitct" not in p.parts
    }
