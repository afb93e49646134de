"""Atomic outputs: a file or a whole folder appears under its final name complete, or not at all.

Temporary names start with a dot and carry ``.partial-``, so a killed run leaves nothing under a
final name; :func:`remove_stale` clears such leftovers before an exam is processed again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial-"


def _token() -> str:
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def partial_path(final: Path) -> Path:
    """A unique hidden temporary name beside ``final`` (same folder, so a rename is atomic)."""
    return final.with_name(f".{final.name}{PARTIAL_MARK}{_token()}")


@contextlib.contextmanager
def atomic_file(final: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``final``, on error removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_file(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    write_bytes(final, text.encode("utf-8"))


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``final`` as a whole.

    An existing ``final`` is moved aside and removed only after the new folder is in place, so
    ``final`` is never a half-written folder: it is the complete old one, the complete new one,
    or (for the instant between two renames) absent.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if final.exists():
            old = partial_path(final)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(folder: Path, name: str) -> int:
    """Remove leftovers of killed runs for ``name`` in ``folder``; return how many were removed."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.glob(f".{name}{PARTIAL_MARK}*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_stale_tree(root: Path) -> int:
    """Remove leftovers of killed runs (any name) anywhere under ``root``; return how many.

    Used where files are replaced in place, each beside its own temporary file.
    """
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if not (name.startswith(".") and PARTIAL_MARK in name):
                continue
            path = Path(dirpath, name)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirnames.remove(name)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed
