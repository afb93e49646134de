"""The audit's own reader of a written file's bytes (:mod:`orbitct_app.deid.audit`).

A file is given as parts (bytes in memory, regions of the file on disk that a writer copied from
its source) and read in bounded pieces (:class:`Stream`); :func:`read_shape` walks it with a reader of
its own: its file meta, where its data set ends (what follows is trailing data), its header
without the top-level pixel data element, a deflated data set inflated within the app's cap. It
shares only constants with :mod:`orbitct_app.dicomio` (the writer's and discovery's byte layer),
so a mistake there is not repeated here. No value of the file ever goes into an exception message.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import os
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from orbitct_app.dicomio.parse import (  # constants only: the audit reads with a scanner of its own
    DELIMITER_GROUP,
    ITEM,
    ITEM_END,
    MAX_NESTING,
    PIXEL_DATA_TAGS,
    SEQ_END,
    UNDEFINED,
)
from orbitct_app.dicomio.structure import INFLATE_RATIO, MAX_HEADER_BYTES, MAX_INFLATED_BYTES, MIN_INFLATE_CAP
from orbitct_app.paths import open_regular


class Unplain(Exception):
    """A header the audit's byte scanner does not read plainly: pydicom reads it instead."""


@dataclasses.dataclass(frozen=True)
class FileRegion:
    """Bytes of a written file that are not held in memory (the pixel data a writer copied from
    its source): the audit reads them from the file itself, in bounded pieces, when it needs
    them."""

    path: Path
    offset: int
    length: int


CHUNK = 8 << 20
"""The most the audit reads from a file at a time (the phi list search)."""


class Stream:
    """A file's bytes as parts (bytes in memory, regions of files on disk), read in pieces."""

    def __init__(self, parts: Sequence[bytes | bytearray | FileRegion], fds: Mapping[Path, int] | None = None) -> None:
        self.parts = [p for p in parts if (p.length if isinstance(p, FileRegion) else len(p))]
        self.starts: list[int] = []
        size = 0
        for part in self.parts:
            self.starts.append(size)
            size += part.length if isinstance(part, FileRegion) else len(part)
        self.size = size
        self._fds = dict(fds or {})
        self._opened: list[BinaryIO] = []

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in self._opened:
            fh.close()

    def _fd(self, path: Path) -> int:
        if path not in self._fds:
            fh = open_regular(path)
            self._opened.append(fh)
            self._fds[path] = fh.fileno()
        return self._fds[path]

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer at the end)."""
        out = []
        end = min(self.size, offset + n)
        index = max(0, bisect.bisect_right(self.starts, offset) - 1)
        while offset < end and index < len(self.parts):
            part, start = self.parts[index], self.starts[index]
            if isinstance(part, FileRegion):
                want = min(end, start + part.length) - offset
                data = os.pread(self._fd(part.path), want, part.offset + offset - start)
                if len(data) != want:
                    raise OSError(errno.EIO, "the file is shorter than written")
            else:
                data = bytes(part[offset - start : end - start])
            out.append(data)
            offset += len(data)
            index += 1
        return b"".join(out)

    def chunks(self) -> Iterator[bytes]:
        """All the bytes, at most :data:`CHUNK` at a time."""
        for offset in range(0, self.size, CHUNK):
            yield self.read(offset, CHUNK)


class Unreadable(Exception):
    """The bytes are not a data set the audit can read (the message says why, never a value)."""


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a Part 10 file holds, as the audit's own walk finds it."""

    meta: dict[int, bytes]
    prefix: bytes
    """Preamble and file meta."""
    body: bytes
    """The data set up to its end, without its top-level pixel data element."""
    implicit: bool
    little: bool
    deflated: bool
    trailing: int
    """Bytes after the data set's last valid element (and after the deflated stream of a
    deflated file, its one pad byte aside)."""
    trailing_at: str
    inflated: bytearray | None = None
    """The inflated data set of a deflated file (the phi list is searched there too)."""




def read_shape(stream: Stream) -> Shape:
    """Walk the file with the audit's own reader: where its data set ends, and its bytes
    without the pixel data element (read into memory: at most :data:`MAX_HEADER_BYTES`).

    Raises
    ------
    Unreadable
        When it is not a Part 10 file the audit can read.
    """
    head = stream.read(0, 1 << 20)
    if len(head) < 132 or head[128:132] != b"DICM":
        raise Unreadable("no Part 10 preamble")
    try:
        meta, meta_end = scan_meta(head)
    except Unplain:
        raise Unreadable("file meta cannot be parsed") from None
    syntax = meta.get(0x00020010, b"").rstrip(b"\0 ")
    little = syntax != b"1.2.840.10008.1.2.2"
    deflated = syntax == b"1.2.840.10008.1.2.1.99"
    trailing_deflated = 0
    if deflated:
        data, used = _inflate(stream, meta_end)
        trailing_deflated = stream.size - meta_end - used
        if trailing_deflated == 1 and used % 2 and stream.read(meta_end + used, 1) == b"\0":
            trailing_deflated = 0  # the pad byte that makes the deflated stream even (PS3.5 A.5)
        read: Any = lambda offset, n: bytes(data[offset : offset + n])  # noqa: E731
        start, size = 0, len(data)
    else:
        read, start, size = stream.read, meta_end, stream.size
    first = read(start, 6)
    implicit = len(first) < 6 or not (0x40 < first[4] < 0x5B and 0x40 < first[5] < 0x5B)
    end, pixel, why = _walk(read, start, size, implicit, little)
    parts = [read(start, pixel[0] - start), read(pixel[1], end - pixel[1])] if pixel else [read(start, end - start)]
    if sum(len(p) for p in parts) > MAX_HEADER_BYTES:
        raise Unreadable(f"its data set holds more than {MAX_HEADER_BYTES >> 20} MiB besides its pixel data")
    if size > end:
        where = f"offset {end} of the inflated data set" if deflated else f"offset {end}"
        where += f": {why}" if why else ""
    else:
        where = f"offset {stream.size - trailing_deflated}"
    return Shape(meta, head[:meta_end], b"".join(parts), implicit, little, deflated,
                  size - end + trailing_deflated, where, data if deflated else None)


def _inflate(stream: Stream, start: int) -> tuple[bytearray, int]:
    """The inflated data set of a deflated file, and how many compressed bytes it took; within
    the cap every reader of this app keeps (the shared constants, computed here)."""
    compressed = stream.size - start
    cap = min(MAX_INFLATED_BYTES, max(MIN_INFLATE_CAP, INFLATE_RATIO * compressed))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pos = start
    pending = b""
    try:
        while not inflater.eof:
            if not pending:
                pending = stream.read(pos, 1 << 20)
                pos += len(pending)
                if not pending:
                    raise Unreadable("the deflated data set ends early")
            out += inflater.decompress(pending, 1 << 20)  # a step at a time: never twice the data set
            pending = inflater.unconsumed_tail
            if len(out) > cap:
                raise Unreadable(f"the deflated data set inflates to more than {cap >> 20} MiB")
    except zlib.error:
        raise Unreadable("corrupt deflated data set") from None
    return out, pos - start - len(inflater.unused_data)


def _walk(read: Any, pos: int, size: int, implicit: bool, little: bool) -> tuple[int, tuple[int, int] | None, str]:
    """Where the data set from ``pos`` ends (after its last valid top-level element: ascending
    tags, lengths within the file, undefined lengths closed), its top-level pixel data element
    (start, end), and why the element after the end is not valid ('' when nothing follows or it
    is no element at all). Iterative: no depth of nesting reaches a recursion limit."""
    order = "<" if little else ">"
    last = -1
    pixel = None
    why = ""
    while pos + 8 <= size:
        head = read(pos, 12)
        group, number = struct.unpack_from(order + "HH", head)
        tag = group << 16 | number
        if group == DELIMITER_GROUP or tag <= last:
            break
        parsed = _element_header(head, order, implicit)
        if parsed is None:
            break
        vr, length, header = parsed
        if length == UNDEFINED:
            try:
                end = _undefined_end(read, pos + header, size, order, implicit, vr, tag)
            except Unreadable as err:
                why = str(err)
                break
        else:
            end = pos + header + length
            if end > size:
                break
        if tag in PIXEL_DATA_TAGS:
            pixel = (pos, end)
        last, pos = tag, end
    return pos, pixel, why


def _element_header(head: bytes, order: str, implicit: bool) -> tuple[str | None, int, int] | None:
    """(VR, value length, header length) of the element whose first bytes are ``head``."""
    if len(head) < 8:
        return None
    if implicit:
        return None, struct.unpack_from(order + "L", head, 4)[0], 8
    vr = head[4:6]
    if vr in VR_32:
        return (vr.decode(), struct.unpack_from(order + "L", head, 8)[0], 12) if len(head) >= 12 else None
    if vr in VR_16:
        return vr.decode(), struct.unpack_from(order + "H", head, 6)[0], 8
    return None


def _undefined_end(read: Any, pos: int, size: int, order: str, implicit: bool, vr: str | None, tag: int) -> int:
    """Where an undefined-length value starting at ``pos`` ends (after its sequence delimiter)."""
    if vr in ("SQ", "UN") or (vr is None and tag not in PIXEL_DATA_TAGS):
        stack = [("items", implicit or vr == "UN")]
    elif vr in ("OB", "OW", None):
        stack = [("fragments", implicit)]
    else:
        raise Unreadable("undefined length on a value that is not a sequence")
    while stack:
        if len(stack) > 2 * MAX_NESTING:
            raise Unreadable(f"sequences nested deeper than {MAX_NESTING} levels")
        kind, item_implicit = stack[-1]
        head = read(pos, 12)
        if len(head) < 8:
            raise Unreadable("a sequence is not closed")
        group, number, length = struct.unpack_from(order + "HHL", head)
        tag = group << 16 | number
        if kind != "item":
            if tag == SEQ_END:
                pos += 8
                stack.pop()
                continue
            if tag != ITEM:
                raise Unreadable("a sequence holds something other than items")
            pos += 8
            if length == UNDEFINED:
                if kind == "fragments":
                    raise Unreadable("a fragment of undefined length")
                stack.append(("item", item_implicit))
            else:
                pos += length
        elif tag == ITEM_END:
            pos += 8
            stack.pop()
        else:
            parsed = _element_header(head, order, item_implicit)
            if parsed is None:
                raise Unreadable("an element cannot be parsed")
            element_vr, length, header = parsed
            pos += header
            if length == UNDEFINED:
                if element_vr in ("SQ", "UN") or (element_vr is None and tag not in PIXEL_DATA_TAGS):
                    stack.append(("items", item_implicit or element_vr == "UN"))
                elif element_vr in ("OB", "OW", None):
                    stack.append(("fragments", item_implicit))
                else:
                    raise Unreadable("undefined length on a value that is not a sequence")
            else:
                pos += length
        if pos > size:
            raise Unreadable("a length runs past the end of the file")
    return pos


def looks_explicit(data: bytes, pos: int) -> bool:
    """Whether the element at ``pos`` has a VR where explicit VR puts it (pydicom's test)."""
    return 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B


def scan_meta(data: bytes) -> tuple[dict[int, bytes], int]:
    pos = 132
    meta: dict[int, bytes] = {}
    while pos + 8 <= len(data):
        group, number = struct.unpack_from("<HH", data, pos)
        if group != 2:
            return meta, pos
        vr = data[pos + 4 : pos + 6]
        if vr in VR_32:
            length = struct.unpack_from("<L", data, pos + 8)[0]
            start = pos + 12
        elif vr in VR_16:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        else:
            raise Unplain
        if length == UNDEFINED or start + length > len(data):
            raise Unplain
        meta[group << 16 | number] = data[start : start + length]
        pos = start + length
    return meta, pos


VR_16 = frozenset(
    vr.encode() for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN",
                           "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")
)
VR_32 = frozenset(
    vr.encode() for vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV")
)
