"""Exceptions raised by orbitct-app and the process exit codes the command line maps them to."""

from __future__ import annotations

import enum
import errno
import logging
import traceback
import warnings
from pathlib import Path
from typing import Any, TextIO

from orbitct_app.safe_text import MultilineText


class ExitCode(enum.IntEnum):
    """Exit codes of ``orbitct-app`` (documented in the README and ``docs/usage.md``)."""

    OK = 0
    """Every exam was processed; every series has a recorded decision."""
    ERROR = 1
    """An unexpected internal error stopped the run."""
    USAGE = 2
    """Bad command line or unusable INPUT_DIR / OUTPUT_DIR; nothing was processed."""
    FAILED = 3
    """The run finished, but one or more exams or series failed (see the log and reports)."""
    NOTHING = 4
    """The run finished without failures but produced nothing: no exam or no series selected."""
    INTERRUPTED = 130
    """SIGINT (Ctrl-C) stopped the run (128 + 2); what was complete is kept, a rerun resumes."""
    TERMINATED = 143
    """SIGTERM (a batch system's time limit, ``kill``) stopped the run (128 + 15); as INTERRUPTED."""


class OrbitctError(Exception):
    """Base class for errors raised by orbitct-app."""

    default_message = "orbitct-app error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class UsageError(OrbitctError):
    """The options or paths given cannot be used (the command line exits with code 2)."""

    default_message = "invalid usage"


class SkipKind(str, enum.Enum):
    """Why a file under an exam folder is not processed, by what it means for the run."""

    NOT_DICOM = "not_dicom"
    """Not DICOM (README, system files): ignored, and not a problem."""
    MEDIA_INDEX = "media_index"
    """DICOMDIR or another media index: names the patient; never copied, deleted in place."""
    BROKEN = "broken"
    """Should be DICOM but cannot be used (empty, truncated, damaged, unreadable, a link, or
    named like DICOM without being DICOM): a problem, counted as a failure; never deleted."""
    NON_IMAGE = "non_image"
    """A complete object without pixel data (structured report, presentation state, key object
    ...) that shares its SeriesInstanceUID with images: dropped on its own (not copied, deleted
    in place, as the original script drops such series), never with the images."""


class NotDicomError(OrbitctError):
    """A file is not DICOM, or cannot be read as DICOM; the message is the reason."""

    default_message = "not a DICOM file"

    def __init__(self, message: str | None = None, *, kind: SkipKind = SkipKind.BROKEN) -> None:
        super().__init__(message)
        self.kind = kind


class ExamError(OrbitctError):
    """An exam cannot be processed as a whole; the message is the reason in the report.

    ``rows`` (by table name) are report rows (:mod:`orbitct_app.report.tables`) to keep beside
    the exam's failure row, one per file with its own reason, so that a failed exam still says
    what each of its files is.
    """

    default_message = "exam cannot be processed"

    def __init__(self, message: str | None = None, *, rows: dict[str, list[Any]] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or {}


class ResourceError(ExamError):
    """The file system cannot hold an exam's output (full disk, quota, file size limit).

    It fails the exam as a whole: its staged output is discarded, so nothing of it appears under
    a final name (under ``--in-place``, files already replaced stay replaced, each whole).
    """

    default_message = "the file system cannot hold the output"


RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""OS errors that mean "no room for the output" rather than a problem of one file."""


def resource_error(err: BaseException) -> ResourceError | None:
    """``err`` as a :class:`ResourceError` when it is one (or an OS error of
    :data:`RESOURCE_ERRNOS`), else None."""
    if isinstance(err, ResourceError):
        return err
    if isinstance(err, OSError) and err.errno in RESOURCE_ERRNOS:
        what = err.strerror or errno.errorcode.get(err.errno, "OSError")
        return ResourceError(f"cannot write the output ({what}); rerun when there is room")
    return None


class SeriesError(OrbitctError):
    """A series cannot be converted because something is wrong with it (reported as failed)."""

    default_message = "series cannot be converted"


class NotConvertible(OrbitctError):
    """A series is well-formed but holds nothing to convert (reported as excluded, not failed)."""

    default_message = "nothing to convert"


class ProfileError(OrbitctError):
    """A de-identification profile is unknown, not built yet, or malformed."""

    default_message = "de-identification profile error"


class DeidError(OrbitctError):
    """A file cannot be de-identified; the message is the reason and never holds a header value."""

    default_message = "file cannot be de-identified"


def one_line(err: BaseException) -> str:
    """An exception as one line that cannot quote a header value.

    Our own errors carry messages written to be safe and are shown whole; an OS error shows the
    system's text; anything else (a library's error may quote the value it choked on) shows its
    type and where in orbitct-app it happened, never its message.
    """
    if isinstance(err, OrbitctError):
        return " ".join(str(err).split()) or err.default_message
    if isinstance(err, OSError):
        return f"{type(err).__name__}: {err.strerror}" if err.strerror else type(err).__name__
    where = _where(err)
    return f"{type(err).__name__}{f' in {where}' if where else ''} (message withheld: it may quote header values)"


def withhold_warning_text() -> None:
    """Show this process's warnings without their text, in the log at DEBUG level.

    Libraries' warnings can quote the value they complain about (pydicom's validation warnings
    quote header values), and Python prints warnings on stderr, which batch systems keep as a
    log. The command line and every worker process call this once.
    """
    warnings.showwarning = _show_warning_withheld


def _show_warning_withheld(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    logging.getLogger(__name__).debug(
        "%s from %s:%d (text withheld: it may quote header values)", category.__name__, Path(filename).name, lineno
    )


def safe_traceback(err: BaseException) -> str:
    """The traceback of ``err`` for the log: frames and source lines, the message withheld
    (marked as text logged over several lines on purpose)."""
    frames = "".join(traceback.format_tb(err.__traceback__))
    return MultilineText(f"Traceback (most recent call last):\n{frames}{one_line(err)}")


def _where(err: BaseException) -> str:
    """``module.py:line`` of the innermost frame inside orbitct_app, or ''."""
    where = ""
    for frame in traceback.extract_tb(err.__traceback__):
        if "orbitct_app" in frame.filename:
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return where
