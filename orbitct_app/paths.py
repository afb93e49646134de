"""What the app reads: exam folders and regular files under INPUT_DIR, never through a link.

The policy (``docs/hostile-input.md``):

- A symbolic link is never followed, wherever it is under INPUT_DIR: an exam folder that is a
  link is refused (the exam fails with the reason), a link inside an exam is reported as a
  failed file and left alone. A link may lead anywhere (outside INPUT_DIR, into another exam,
  into OUTPUT_DIR); following it would read, copy or, with ``--in-place``, rewrite files the
  user never gave the app.
- Only regular files are opened, and only with ``O_NOFOLLOW | O_NONBLOCK``, checked with
  ``fstat`` after opening: a FIFO, socket or device is never opened for reading (it could block
  the run forever), even when a regular file is swapped for one between listing and reading.
- Every entry that is not processed gets a reason: links, special files, folders that cannot be
  read, hidden folders and plain files at the top level of INPUT_DIR.

:mod:`orbitct_app.options` checks the other side (nothing is written inside INPUT_DIR unless
``--in-place`` asks for it, whatever links lead there).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from orbitct_app.errors import NotDicomError, SkipKind, UsageError

LINK_REASON = "symbolic link: not followed (orbitct-app never reads or writes through links)"


class EntryKind(str, enum.Enum):
    """What a top-level entry of INPUT_DIR that is not an exam is, by what it means for a run."""

    PROBLEM = "problem"
    """Looks like an exam the user meant to give (a link to a folder, a folder that cannot be
    read): the run fails for it (exit code 3)."""
    IGNORED = "ignored"
    """Not an exam (hidden folder, plain or special file): reported, not a failure."""


@dataclasses.dataclass(frozen=True)
class InputEntry:
    """A top-level entry of INPUT_DIR that is not processed as an exam, and why."""

    name: str
    reason: str
    kind: EntryKind


@dataclasses.dataclass(frozen=True)
class InputListing:
    """The exam folders of INPUT_DIR and every other top-level entry with its reason."""

    exams: tuple[Path, ...]
    entries: tuple[InputEntry, ...] = ()

    @property
    def problems(self) -> tuple[InputEntry, ...]:
        """Entries that look like exams but cannot be processed (each fails the run)."""
        return tuple(e for e in self.entries if e.kind is EntryKind.PROBLEM)

    @property
    def ignored(self) -> tuple[InputEntry, ...]:
        """Entries that are not exams (reported, not failures)."""
        return tuple(e for e in self.entries if e.kind is EntryKind.IGNORED)

    @property
    def names(self) -> list[str]:
        """The exams and the entries that should have been exams, by name."""
        return sorted([p.name for p in self.exams] + [e.name for e in self.problems])


def _kind_name(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _top_entry(path: Path) -> InputEntry | None:
    """Why the top-level entry ``path`` is not an exam folder (None when it is one)."""
    name = path.name
    try:
        mode = path.lstat().st_mode
    except OSError as err:
        return InputEntry(name, f"cannot read ({err.strerror or type(err).__name__})", EntryKind.PROBLEM)
    if stat.S_ISLNK(mode):
        if path.is_dir():
            return InputEntry(name, f"exam folder is a {LINK_REASON}; copy the exam in or give its "
                              "real folder", EntryKind.PROBLEM)
        return InputEntry(name, LINK_REASON, EntryKind.IGNORED)
    if stat.S_ISDIR(mode):
        if name.startswith("."):
            return InputEntry(name, "hidden folder: not an exam", EntryKind.IGNORED)
        try:
            with os.scandir(path):
                pass
        except OSError as err:
            return InputEntry(name, f"cannot read the exam folder ({err.strerror or type(err).__name__})",
                              EntryKind.PROBLEM)
        return None
    if stat.S_ISREG(mode):
        if name.upper() == "DICOMDIR":
            return InputEntry(name, "DICOMDIR at the top level of INPUT_DIR: a media index that names "
                              "patients; not an exam, not copied (delete it before sharing INPUT_DIR)",
                              EntryKind.IGNORED)
        return InputEntry(name, "file at the top level of INPUT_DIR: not an exam folder", EntryKind.IGNORED)
    return InputEntry(name, f"{_kind_name(mode)}: never opened", EntryKind.IGNORED)


def exam_problem(exam_dir: Path) -> str | None:
    """Why ``exam_dir`` cannot be processed as an exam folder now (None when it can): it is
    missing, a link, not a folder or cannot be read."""
    if not os.path.lexists(exam_dir):
        return f"exam folder not found: {exam_dir}"
    entry = _top_entry(exam_dir)
    return None if entry is None else entry.reason


def list_input(input_dir: Path, labels: Sequence[str] = ()) -> InputListing:
    """The exam folders of ``input_dir`` (its first-level real folders, sorted by name) and
    every other top-level entry with the reason it is not processed.

    Parameters
    ----------
    input_dir
        The input root.
    labels
        Only these exam folder names; every one must exist (a link or an unreadable folder of
        that name is listed as a problem).

    Raises
    ------
    UsageError
        If a requested label has no entry, or INPUT_DIR cannot be listed.
    """
    try:
        names = sorted(os.listdir(input_dir))
    except OSError as err:
        raise UsageError(f"cannot list INPUT_DIR {input_dir}: {err.strerror}") from err
    if labels:
        present = set(names)
        missing = [label for label in labels if label not in present]
        if missing:
            raise UsageError(f"participant label(s) not found in {input_dir}: {', '.join(missing)}")
        names = list(dict.fromkeys(labels))
    exams: list[Path] = []
    entries: list[InputEntry] = []
    for name in names:
        entry = _top_entry(input_dir / name)
        if entry is None:
            exams.append(input_dir / name)
        else:
            entries.append(entry)
    return InputListing(tuple(exams), tuple(entries))


def find_exams(input_dir: Path, labels: Sequence[str] = ()) -> list[Path]:
    """The exam folders of ``input_dir`` (its first-level real folders, sorted by name; see
    :func:`list_input` for what is not one, and why).

    Raises
    ------
    UsageError
        If a requested label has no entry.
    """
    return list(list_input(input_dir, labels).exams)


@dataclasses.dataclass(frozen=True, slots=True)
class Unusable:
    """An entry under an exam folder that is never opened: a link, a special file, a folder
    that cannot be read. ``problem`` when the exam may be missing data because of it."""

    path: Path
    reason: str
    problem: bool


def _walk(folder: Path) -> Iterator[tuple[Path, list[os.DirEntry[str]] | OSError]]:
    """Each folder under ``folder`` (itself first), depth first in name order, with its entries
    sorted by name, or the error that kept it from being listed. Links are never followed."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            yield current, err
            continue
        yield current, entries
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
            except OSError:
                continue
        stack.extend(reversed(subfolders))


def iter_exam_files(folder: Path) -> Iterator[Path | Unusable]:
    """Every regular file under ``folder`` at any depth, in a stable order, and every entry that
    is not one (links, special files, unreadable folders) as :class:`Unusable`.

    Links are never followed; folders are listed through ``os.scandir`` (``lstat`` facts).
    """
    for current, entries in _walk(folder):
        if isinstance(entries, OSError):
            yield Unusable(current, f"cannot read folder ({entries.strerror or type(entries).__name__})", True)
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    yield Unusable(path, LINK_REASON, True)
                elif entry.is_file(follow_symlinks=False):
                    yield path
                elif not entry.is_dir(follow_symlinks=False):
                    mode = entry.stat(follow_symlinks=False).st_mode
                    yield Unusable(path, f"{_kind_name(mode)}: never opened", False)
            except OSError as err:
                yield Unusable(path, f"cannot read ({err.strerror or type(err).__name__})", True)


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file that is not a link.

    Raises
    ------
    NotDicomError
        (a problem) when ``path`` is a link or cannot be opened, (a harmless skip) when it is a
        FIFO, socket or device: such a file is never read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == getattr(os, "ELOOP", 40) and os.path.islink(path):
            raise NotDicomError(LINK_REASON) from None
        raise NotDicomError(f"cannot read file ({err.strerror or type(err).__name__})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotDicomError(f"{_kind_name(mode)}: never opened", kind=SkipKind.NOT_DICOM)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclasses.dataclass(frozen=True)
class TreeState:
    """What a folder holds, in brief: a digest of every entry's name, kind, size and
    modification time (links not followed), and how many files there are."""

    digest: str
    files: int

    def change_from(self, earlier: TreeState) -> str:
        """How this state differs from ``earlier``, in words ('' when it does not)."""
        if self.digest == earlier.digest:
            return ""
        if self.files != earlier.files:
            return f"{earlier.files} file(s) then, {self.files} now"
        return f"{self.files} file(s) then and now, some replaced or changed"


def tree_state(folder: Path) -> TreeState:
    """The :class:`TreeState` of ``folder`` (an empty state when it does not exist)."""
    digest = hashlib.sha256()
    files = 0
    for current, entries in _walk(folder):
        if isinstance(entries, OSError):
            digest.update(f"{current}\0unreadable {entries.errno}\n".encode("utf-8", "surrogateescape"))
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            rel = os.path.relpath(entry.path, folder)
            mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns  # a folder's changes are its entries'
            digest.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{st.st_size}\0{mtime}\n"
                          .encode("utf-8", "surrogateescape"))
            files += stat.S_ISREG(st.st_mode)
    return TreeState(digest.hexdigest(), files)
