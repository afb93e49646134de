"""Atomic outputs: a file or a whole folder appears under its final name complete, or not at all.

Temporary names start with a dot and carry ``.partial-``, so a killed run leaves nothing under a
final name; :func:`remove_stale` clears such leftovers before an exam is processed again. They
never exceed :data:`NAME_MAX` bytes: a long final name is shortened in its temporary names (see
:func:`stale_prefix`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from orbitct_app.interrupt import uninterrupted

PARTIAL_MARK = ".partial-"
NAME_MAX = 255
"""The longest file name, in bytes, that common file systems (ext4, XFS, tmpfs, NFS) hold."""
_HOST_MAX = 32
_TOKEN_MAX = _HOST_MAX + 1 + 10 + 1 + 8  # host-pid-hex
_NAME_BUDGET = NAME_MAX - 1 - len(PARTIAL_MARK) - _TOKEN_MAX
"""Final names up to this many bytes appear whole in their temporary names."""
_DIGEST_HEX = 16


def _token() -> str:
    host = socket.gethostname().split(".")[0][:_HOST_MAX]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def stale_prefix(name: str) -> str:
    """How every temporary name of the final name ``name`` starts: ``.<name>.partial-``.

    A name longer than fits (over 193 bytes in UTF-8) is shortened to its first bytes, ``~`` and
    16 hex digits of a SHA-256 of the whole name, so the temporary name stays within
    :data:`NAME_MAX` and its prefix is still one name's only (:func:`remove_stale` of one name
    never removes another's temporaries). The same name gives the same prefix on every host.
    """
    raw = os.fsencode(name)
    if len(raw) > _NAME_BUDGET:
        digest = hashlib.sha256(raw).hexdigest()[:_DIGEST_HEX]
        name = f"{os.fsdecode(raw[: _NAME_BUDGET - 1 - _DIGEST_HEX])}~{digest}"
    return f".{name}{PARTIAL_MARK}"


def partial_path(final: Path) -> Path:
    """A unique hidden temporary name beside ``final`` (same folder, so a rename is atomic);
    at most :data:`NAME_MAX` bytes long."""
    return final.with_name(f"{stale_prefix(final.name)}{_token()}")


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
        with uninterrupted(), contextlib.suppress(FileNotFoundError):
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
    or (for the instant between two renames) absent. A signal, or the death of a worker's main
    process, never falls between those two renames (:func:`~orbitct_app.interrupt.uninterrupted`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    try:
        tmp.mkdir()
        yield tmp
        old = None
        replaced = False
        try:
            with uninterrupted():
                if final.exists():
                    old = partial_path(final)
                    os.replace(final, old)
                os.replace(tmp, final)
                replaced = True
        finally:
            if old is not None:
                with uninterrupted():
                    if replaced:
                        shutil.rmtree(old, ignore_errors=True)
                    else:  # the new folder could not take its place: the old one goes back
                        os.replace(old, final)
    finally:
        with uninterrupted():  # a second signal must not leave the temporary folder half removed
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(folder: Path, name: str) -> int:
    """Remove leftovers of killed runs for ``name`` in ``folder``; return how many were removed."""
    removed = 0
    if not folder.is_dir():
        return 0
    prefix = stale_prefix(name)
    with os.scandir(folder) as entries:
        # after the prefix comes a token without a second mark (".a.partial-" also starts the
        # temporary names of a final name "a.partial-b")
        stale = [
            Path(e.path) for e in entries if e.name.startswith(prefix) and PARTIAL_MARK not in e.name[len(prefix) :]
        ]
    for path in stale:
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
