"""How many threads one worker process may use for its numeric work (set once per process)."""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable, Iterable, Iterator
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
