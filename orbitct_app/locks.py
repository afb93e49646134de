"""Locks between runs: one run at a time works on an exam, and on the shared run-end outputs.

Runs may overlap: SLURM array tasks that share OUTPUT_DIR, a run started twice by mistake, two
``--in-place`` runs over one INPUT_DIR. Each exam is held while a run works on it, with
``flock`` on a lock file under ``OUTPUT_DIR/.orbitct/locks/`` and, with ``--in-place``, on the
input exam folder itself (so runs with different OUTPUT_DIRs exclude each other too). A run that
finds an exam held waits for it (and says so), then finds it complete and skips it. Locks are
released by the kernel when a process ends, however it ends: a killed run leaves none behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCKS = "locks"
"""Folder of the per-exam lock files under the state folder (``OUTPUT_DIR/.orbitct``)."""


def _open_lock_file(path: Path) -> int:
    """Open (creating) a lock file, never through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def held(fd: int, what: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``fd``, waiting (and saying so, unless ``quiet``) while
    another run has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.log(logging.DEBUG if quiet else logging.INFO, "%s is being processed by another run; waiting for it",
                   what)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: Path, what: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold the lock file at ``path`` (see :func:`held`)."""
    fd = _open_lock_file(path)
    try:
        with held(fd, what, quiet=quiet):
            yield
    finally:
        os.close(fd)


def exam_lock_path(state_dir: Path, dicom_id: str) -> Path:
    """The lock file of an exam (named by a digest: any exam name fits in a file name)."""
    digest = hashlib.sha256(dicom_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return state_dir / LOCKS / f"{digest}.lock"


@contextlib.contextmanager
def exam_lock(state_dir: Path, dicom_id: str, input_exam: Path | None = None) -> Iterator[None]:
    """Hold an exam: its input folder first (``input_exam``, for ``--in-place``), then its lock
    file in ``state_dir``; always in this order, so two runs never wait for each other in a
    circle. A filesystem without ``flock`` on folders leaves the input folder unlocked."""
    with contextlib.ExitStack() as stack:
        if input_exam is not None:
            try:
                fd = os.open(input_exam, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as err:
                logger.debug("%s: input folder not locked (%s)", dicom_id, errno.errorcode.get(err.errno or 0, err))
            else:
                stack.callback(os.close, fd)
                try:
                    stack.enter_context(held(fd, f"{dicom_id} (its input folder)"))
                except OSError as err:  # e.g. NFS without flock on folders
                    logger.debug("%s: input folder not locked (%s)", dicom_id, errno.errorcode.get(err.errno or 0, err))
        stack.enter_context(file_lock(exam_lock_path(state_dir, dicom_id), dicom_id))
        yield
