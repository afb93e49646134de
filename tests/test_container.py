"""The container image: build the repository's Dockerfile and run it on sample exams.

Runs ``tests/container/smoke.sh`` (buildah, podman and debootstrap, as root; no Docker daemon or
registry needed). Select it with ``./run-tests.sh -m container``, leave it out with
``-m "not container"``. It skips with the reason when the tools or root are missing, unless
``ORBITCT_REQUIRE_CONTAINER=1`` (set by ``.ci/run`` when it installed them), where that fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parent / "container" / "smoke.sh"
TOOLS = ("buildah", "podman", "debootstrap")
SKIPPED = 77  # smoke.sh's exit status when a prerequisite is missing

pytestmark = pytest.mark.container


def _unavailable() -> str | None:
    """Why the smoke test cannot run here, or None."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install buildah podman debootstrap)"
    if os.geteuid() != 0:
        return "needs root (buildah --isolation chroot and debootstrap)"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("ORBITCT_REQUIRE_CONTAINER") == "1":
        pytest.fail(f"container test required but cannot run: {reason}")
    pytest.skip(f"container smoke test: {reason}")


def test_image_builds_and_runs_on_sample_exams(tmp_path: Path) -> None:
    reason = _unavailable()
    if reason:
        _skip_or_fail(reason)
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SMOKE), str(tmp_path / "smoke")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    print(proc.stdout)  # the steps and their times, shown with -rP or on failure
    if proc.returncode == SKIPPED:
        _skip_or_fail(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, f"smoke.sh exited with {proc.returncode}:\n{proc.stdout[-6000:]}"
    assert "PASSED" in proc.stdout
