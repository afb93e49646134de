"""How this process's memory allocators treat the large, short-lived volumes of a conversion.

Each series allocates a few volume-sized arrays (the HU stack, the slab labels, the resampled
output), fills them once and frees them. By default numpy may ask for transparent huge pages,
and glibc maps every large allocation (above a threshold that starts at 128 KiB and grows to at
most 32 MB) to pages of its own and returns them on free, so the next series (or step) pays the
first touch of fresh pages again. On the measured VM (see
``benchmarks/RESULTS.md``), these page faults were a large share of extract's time.
"""

from __future__ import annotations

import logging
import os
import platform

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGE = 1 << 30
"""Allocations up to 1 GiB come from the heap (glibc's default maps those above at most 32 MB)."""


def prefer_small_pages() -> None:
    """Ask numpy not to request transparent huge pages, unless the user has chosen.

    The pages' first touch dominates for volumes filled once and freed soon after, and huge pages
    did not pay back: on the measured VM extract was slower with them (``docs/performance.md``). numpy reads the
    variable when it is first imported; worker processes inherit it.
    """
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve volume-sized arrays from its heap and keep what is freed there
    for the next series, instead of returning it to the system (True when applied).

    The process's resident memory then stays near its peak, one series' worth, until it exits;
    a run then pays far fewer page faults and takes less time (on the measured VM; the figures are in
    ``docs/performance.md``). Nothing is changed when the C library is not glibc, or when the user has set
    a ``glibc.malloc`` tunable or any ``MALLOC_*`` variable. Call it in processes the app owns (the
    command line does, and so does each worker); a library caller may choose for its own process.
    """
    if any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes  # only where it is used

    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _LARGE)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False
    logger.debug("malloc keeps freed memory for reuse: %s", applied)
    return applied
