"""Process memory settings: numpy's huge pages off unless chosen, and glibc's malloc keeping
freed volumes for reuse (checked by its effect on the resident memory of a fresh process)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import orbitct_app
from orbitct_app import memory
from orbitct_app.cli import main
from orbitct_app.errors import ExitCode

_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

_PROBE = """
import os, sys
import numpy as np
from orbitct_app import memory
applied = memory.keep_freed_memory() if sys.argv[1] == "keep" else None
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
volume = np.ones((200, 512, 512), dtype=np.int16)  # 100 MB, touched
del volume
print(applied, round(rss_mb()))
"""


def _rss_after_free(mode: str) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(orbitct_app.__file__).resolve().parents[1])}
    for name in [n for n in env if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        env.pop(name)
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, check=True)
    applied, rss = done.stdout.split()
    return applied, float(rss)


@pytest.mark.skipif(not _GLIBC, reason="glibc's malloc only")
def test_freed_volumes_stay_in_the_process_for_reuse() -> None:
    applied, kept = _rss_after_free("keep")
    assert applied == "True"
    _, returned = _rss_after_free("default")
    assert kept - returned > 80  # the 100 MB volume stayed resident, ready for the next series


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "0"),
        ("MALLOC_ARENA_MAX", "2"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096"),
    ],
)
def test_the_users_malloc_settings_win(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert memory.keep_freed_memory() is False


def test_numpy_huge_pages_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert main(["--version"]) == ExitCode.OK
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert main(["--version"]) == ExitCode.OK
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"
