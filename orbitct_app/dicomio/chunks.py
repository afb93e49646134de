"""Copy byte ranges of one file into another in bounded chunks: never a whole file in memory.

The anonymize stage writes a de-identified file as *pieces*: header bytes it built in memory,
and :class:`Span` ranges of the source file (the pixel data value), which are copied here by the
kernel (``os.copy_file_range``), or through one buffer of :data:`CHUNK_BYTES` where the kernel
cannot. Holes of a sparse source stay holes in the copy. So the memory a file takes is its
header, whatever the size of its pixel data.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO

CHUNK_BYTES = 8 << 20
"""The most one read or one kernel copy moves at a time (8 MiB)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``offset`` to ``offset + length`` of the source file, copied without being read
    into memory."""

    offset: int
    length: int


Piece = bytes | Span
"""Part of a file being written: bytes as they are, or a range of the source file."""


class SourceChanged(OSError):
    """The source file is shorter than a span it was read with (it changed while being read)."""


def write_pieces(fh: BinaryIO, pieces: Iterable[Piece], source: int | None = None) -> None:
    """Write ``pieces`` to ``fh`` in order; spans are copied from the file descriptor ``source``.

    Raises
    ------
    SourceChanged
        When the source ends inside a span.
    """
    for piece in pieces:
        if isinstance(piece, Span):
            if source is None:
                raise ValueError("a span to copy, but no source file")
            fh.flush()
            copy_span(source, fh.fileno(), piece.offset, piece.length)
        else:
            fh.write(piece)
    fh.flush()


def copy_span(src: int, dst: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes of ``src`` from ``offset`` to ``dst`` at its current position.

    Data is copied by the kernel where it can; holes of the source (``SEEK_DATA`` /
    ``SEEK_HOLE``) are skipped, so they stay holes in ``dst``.
    """
    end = offset + length
    pos = offset
    ends_in_hole = False
    while pos < end:
        data = _seek(src, pos, os.SEEK_DATA, end)
        if data > pos:  # a hole: leave it unwritten
            os.lseek(dst, data - pos, os.SEEK_CUR)
            pos, ends_in_hole = data, data == end
            continue
        hole = _seek(src, pos, os.SEEK_HOLE, end)
        _copy_data(src, dst, pos, hole - pos)
        pos, ends_in_hole = hole, False
    if ends_in_hole:  # the file ends in a hole: give it its length
        os.ftruncate(dst, os.lseek(dst, 0, os.SEEK_CUR))


def _seek(fd: int, pos: int, whence: int, end: int) -> int:
    """``lseek(fd, pos, whence)`` within ``[pos, end]``: where the next data (or hole) starts;
    without hole support everything is data."""
    try:
        found = os.lseek(fd, pos, whence)
    except OSError as err:
        if err.errno == errno.ENXIO:  # no data after pos: the rest of the file is a hole
            if whence == os.SEEK_DATA and os.fstat(fd).st_size >= end:
                return end
            raise SourceChanged(errno.EIO, "the file ended before its pixel data (it changed while read)") from None
        return pos if whence == os.SEEK_DATA else end
    return min(found, end)


def _copy_data(src: int, dst: int, offset: int, length: int) -> None:
    """Copy bytes that hold data, by the kernel, else through a bounded buffer."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, min(CHUNK_BYTES, length - done), offset + done)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
            for chunk in read_chunks(src, offset + done, length - done):
                _write_all(dst, chunk)
            return
        if n == 0:
            raise SourceChanged(errno.EIO, "the file ended before its pixel data (it changed while read)")
        done += n


def read_chunks(fd: int, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of ``fd`` from ``offset`` to ``offset + length``, at most ``chunk`` at a time.

    Raises
    ------
    SourceChanged
        When the file ends first.
    """
    pos, end = offset, offset + length
    while pos < end:
        data = os.pread(fd, min(chunk, end - pos), pos)
        if not data:
            raise SourceChanged(errno.EIO, "the file ended before its pixel data (it changed while read)")
        pos += len(data)
        yield data


def read_exactly(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes of ``fd`` from ``offset`` (for the parts that are held in memory)."""
    return b"".join(read_chunks(fd, offset, length))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
