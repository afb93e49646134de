"""How many threads one worker process may use for its numeric work (set once per process), and
how many CPU cores the process may use at all (:func:`usable_cores`)."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

_threads = 1
T = TypeVar("T")
R = TypeVar("R")


def set_threads(n: int) -> None:
    """Allow ``n`` threads in this process (the pipeline gives each worker its share of cores)."""
    global _threads
    _threads = max(1, int(n))


def get_threads() -> int:
    return _threads


def thread_map(func: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map`` over this process's threads (in order); plain ``map`` when only one is allowed.

    Worth it for work that releases the GIL: numpy array operations, file reads, decoders.
    """
    if _threads == 1:
        return map(func, items)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=_threads)
    try:
        return iter(list(pool.map(func, items)))
    finally:
        pool.shutdown(wait=True)


def split_range(n: int) -> list[range]:
    """``range(n)`` cut into one contiguous, nearly equal part per allowed thread (none empty)."""
    parts = min(_threads, n) or 1
    bounds = [n * p // parts for p in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def usable_cores() -> int:
    """CPU cores this process may use: its affinity (right under SLURM and ``--cpuset-cpus``),
    capped by a cgroup v2 CPU quota (``docker run --cpus``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota ("max 100000" means none), rounded up."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, -(-int(quota) // int(period)))
