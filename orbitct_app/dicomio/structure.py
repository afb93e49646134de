"""Whole files walked from their bytes: does a file hold one complete data set, where does it
end, where is its pixel data, and may its deflated data set be inflated?

:func:`file_structure` checks a whole file before any reader trusts its lengths (every length
within the file, every sequence closed, nesting bounded, a deflated data set inflated within its
cap) and gives its :class:`Layout`. The walk is iterative: no recursion, whatever the depth.
No value of the file ever goes into an exception message.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any

from pydicom.uid import UID

from orbitct_app.dicomio.parse import (
    DELIMITER_GROUP,
    ITEM,
    ITEM_END,
    MAX_NESTING,
    PIXEL_DATA_TAGS,
    SEQ_END,
    SQ,
    TRAILING_PADDING,
    UNDEFINED,
    VR_CODES,
    Unsupported,
    dictionary_vr,
    parse_dataset,
    unpack_tag,
    unpack_ul,
    unpack_us,
)

MAX_HEADER_BYTES = 64 << 20
"""A data set may hold at most this much besides its pixel data (64 MiB; CT headers take a
few kB to a few MB): everything but the pixel data is read into memory, so this bounds it."""


class Damaged(Exception):
    """The bytes of a file do not hold a complete data set; the message says what is wrong and
    where (an offset), never a value."""


class _OutOfPlace(Damaged):
    """An item or delimiter tag where an element should start: at the top level, the end of the
    data set (what follows is trailing data); anywhere else, damage."""


@dataclasses.dataclass(frozen=True, slots=True)
class Extent:
    """Where the data set of a file ends, as :func:`data_set_extent` walked it."""

    end: int
    """Offset just after the last element of the top-level data set."""
    size: int
    """Length of the bytes walked: ``size - end`` bytes follow the data set (trailing data)."""
    pixel_data: bool
    """A top-level pixel data element (float and double float pixel data included) is there."""
    pixel_value: int | None
    """Offset of the top-level pixel data value when it is native (not encapsulated)."""
    pixel_start: int | None = None
    """Offset of the top-level pixel data element (its tag)."""
    pixel_end: int | None = None
    """Offset just after the top-level pixel data element (after the sequence delimiter of
    encapsulated pixel data)."""

    @property
    def trailing(self) -> int:
        return self.size - self.end


_DS, _SEQ, _FRAGMENTS = 0, 1, 2


def data_set_extent(buf: bytes | bytearray | memoryview, pos: int, *, implicit: bool, little: bool = True) -> Extent:
    """Walk every element of the data set that starts at ``pos`` in ``buf``, at every depth,
    without decoding a value, and return where it ends.

    Checks what a reader that trusts the lengths cannot: every value, item and sequence fits in
    what holds it, every undefined length is closed by its delimiter, every explicit VR is a VR,
    tags ascend within each data set, and nesting stays within :data:`MAX_NESTING`. The walk is
    iterative (no recursion, whatever the depth).

    Bytes after the data set are trailing data, not damage, when they cannot be an element: a
    top-level item or delimiter tag, bytes that are all zero, or anything after a complete
    top-level pixel data element. A top-level Data Set Trailing Padding element
    (:data:`TRAILING_PADDING`) ends the data set: it and everything after it are trailing data.
    Elements without a VR in explicit VR data (allowed inside UN sequences, PS3.5 6.2.2;
    pydicom then reads on as implicit VR) are walked as implicit VR.

    Raises
    ------
    Damaged
        When the bytes before the end of the data set are not a complete data set.
    """
    size = len(buf)
    order = "<" if little else ">"
    tag_at = struct.Struct(order + "HH").unpack_from
    tag_len_at = struct.Struct(order + "HHL").unpack_from
    ul_at = struct.Struct(order + "L").unpack_from
    us_at = struct.Struct(order + "H").unpack_from
    # one frame per open container: [kind, end, undefined length, implicit VR, last tag]
    stack: list[list[Any]] = [[_DS, size, False, implicit, -1]]
    top_start = pos
    pixel_value: int | None = None
    pixel_start: int | None = None
    pixel_end: int | None = None
    """Where the top-level pixel data element ended (None until it has)."""
    seen_pixels = False
    try:
        while stack:
            frame = stack[-1]
            kind, end, undefined, frame_implicit = frame[0], frame[1], frame[2], frame[3]
            if kind == _DS:
                if len(stack) == 1:
                    if seen_pixels and pixel_end is None:
                        pixel_end = pos
                    top_start = pos
                if pos == end and not undefined:
                    stack.pop()
                    continue
                if pos + 8 > end:
                    raise Damaged(f"damaged or truncated file: element header cut short at offset {pos}")
                group, number = tag_at(buf, pos)
                tag = group << 16 | number
                if tag == TRAILING_PADDING and len(stack) == 1:
                    return Extent(pos, size, seen_pixels, pixel_value, pixel_start, pixel_end)
                if group == DELIMITER_GROUP:
                    if tag == ITEM_END and undefined and tag_len_at(buf, pos)[2] == 0:
                        pos += 8
                        stack.pop()
                        continue
                    raise _OutOfPlace(f"damaged file: item or delimiter tag out of place at offset {pos}")
                if tag <= frame[4]:
                    raise Damaged(f"damaged file: element tags out of order at offset {pos}")
                frame[4] = tag
                vr: str | None = None
                if frame_implicit:
                    length = ul_at(buf, pos + 4)[0]
                    start = pos + 8
                else:
                    code = VR_CODES.get(bytes(buf[pos + 4 : pos + 6]))
                    if code is None:
                        if 0x40 < buf[pos + 4] < 0x5B:
                            raise Damaged(f"damaged file: unknown value representation at offset {pos}")
                        frame[3] = frame_implicit = True
                        length = ul_at(buf, pos + 4)[0]
                        start = pos + 8
                    else:
                        vr, long = code
                        if long:
                            if pos + 12 > end:
                                raise Damaged(f"damaged or truncated file: element header cut short at offset {pos}")
                            length = ul_at(buf, pos + 8)[0]
                            start = pos + 12
                        else:
                            length = us_at(buf, pos + 6)[0]
                            start = pos + 8
                if len(stack) == 1 and tag in PIXEL_DATA_TAGS:
                    if seen_pixels:
                        raise Damaged(f"damaged file: a second pixel data element at offset {pos}")
                    seen_pixels = True
                    pixel_start = pos
                    pixel_value = start if length != UNDEFINED else None
                if length == UNDEFINED:
                    if vr in (SQ, "UN") or (vr is None and _implicit_sequence(buf, tag, start, end, tag_at)):
                        # the items of an undefined-length UN are implicit VR (PS3.5 6.2.2)
                        stack.append([_SEQ, end, True, frame_implicit or vr == "UN", -1])
                    elif tag in PIXEL_DATA_TAGS or vr in ("OB", "OW", None):
                        stack.append([_FRAGMENTS, end, True, frame_implicit, -1])
                    else:
                        raise Damaged(
                            f"damaged file: undefined length on a value that is not a sequence at offset {pos}"
                        )
                    pos = start
                else:
                    value_end = start + length
                    if value_end > end:
                        if len(stack) == 1 and tag in PIXEL_DATA_TAGS:
                            raise Damaged(f"truncated file: pixel data needs {length} bytes, file holds {end - start}")
                        where = "the end of the file" if len(stack) == 1 else "the end of its item"
                        raise Damaged(f"damaged file: element length beyond {where} at offset {pos}")
                    if vr == SQ or (vr is None and dictionary_vr(tag) == SQ):
                        stack.append([_SEQ, value_end, False, frame_implicit, -1])
                        pos = start
                    else:
                        pos = value_end
                if len(stack) > 2 * MAX_NESTING + 1:  # the top level, then a sequence and an item per level
                    raise Damaged(f"damaged file: sequences nested deeper than {MAX_NESTING} levels")
            else:  # the items of a sequence, or the fragments of encapsulated pixel data
                if pos == end and not undefined:
                    stack.pop()
                    continue
                if pos + 8 > end:
                    if kind == _FRAGMENTS:
                        raise Damaged("truncated file: compressed pixel data ends without its delimiter")
                    raise Damaged("damaged or truncated file: a sequence is not closed before the end of the file")
                group, number, length = tag_len_at(buf, pos)
                tag = group << 16 | number
                if tag == SEQ_END and undefined:
                    pos += 8
                    stack.pop()
                    continue
                if tag != ITEM:
                    raise Damaged(f"damaged file: a sequence holds something other than items at offset {pos}")
                pos += 8
                if length == UNDEFINED:
                    if kind == _FRAGMENTS:
                        raise Damaged(f"damaged file: pixel data fragment of undefined length at offset {pos - 8}")
                    stack.append([_DS, end, True, frame_implicit, -1])
                elif pos + length > end:
                    raise Damaged(f"damaged file: item length beyond what holds it at offset {pos - 8}")
                elif kind == _FRAGMENTS:
                    pos += length
                else:
                    stack.append([_DS, pos + length, False, frame_implicit, -1])
    except (Damaged, struct.error) as err:
        ends_data_set = (
            (isinstance(err, _OutOfPlace) and len(stack) == 1)
            or (pixel_end is not None and top_start >= pixel_end)
            or _all_zero(buf, top_start)
        )
        if not ends_data_set:
            if isinstance(err, struct.error):
                raise Damaged(f"damaged or truncated file: element header cut short at offset {pos}") from None
            raise Damaged(str(err)) from None
        return Extent(top_start, size, seen_pixels, pixel_value, pixel_start, pixel_end)
    return Extent(pos, size, seen_pixels, pixel_value, pixel_start, pixel_end)


def _implicit_sequence(buf: bytes | bytearray | memoryview, tag: int, start: int, end: int, tag_at: Any) -> bool:
    """Whether an implicit VR value of undefined length is a sequence (else encapsulated data)."""
    vr = dictionary_vr(tag)
    if vr:
        return vr == SQ
    return start + 4 <= end and tag_at(buf, start) == divmod(ITEM, 0x10000) and tag not in PIXEL_DATA_TAGS


def _all_zero(buf: bytes | bytearray | memoryview, start: int, limit: int = 1 << 20) -> bool:
    """Whether ``buf`` holds only zero bytes from ``start`` (padding); False beyond ``limit``."""
    if len(buf) - start > limit:
        return False
    return not bytes(buf[start:]).strip(b"\0")


MAX_INFLATED_BYTES = 256 << 20
"""A deflated data set never inflates beyond this many bytes (256 MiB) ..."""
MIN_INFLATE_CAP = 64 << 20
"""... nor beyond the larger of this (64 MiB) and :data:`INFLATE_RATIO` times its compressed size
(see :func:`inflate_cap`): a zlib bomb stops at the cap, with its reason."""
INFLATE_RATIO = 100
"""Deflate makes CT data sets 2 to 10 times smaller; only a bomb (or a blank image) gets near 100."""

DEFLATED = "1.2.840.10008.1.2.1.99"


def inflate_cap(compressed: int) -> int:
    """How many bytes a deflated data set of ``compressed`` bytes may inflate to."""
    return min(MAX_INFLATED_BYTES, max(MIN_INFLATE_CAP, INFLATE_RATIO * compressed))


def describe_encoding(implicit: bool, little: bool) -> str:
    """``implicit VR little endian`` and the like."""
    return f"{'implicit' if implicit else 'explicit'} VR {'little' if little else 'big'} endian"


@dataclasses.dataclass(frozen=True, slots=True)
class Structure:
    """What the bytes of a whole file hold: its file meta, transfer syntax and data set extent."""

    syntax: str
    """TransferSyntaxUID of the file meta ('' without one)."""
    meta_end: int
    """File offset where the data set (or its deflated stream) starts, after preamble and file
    meta."""
    implicit: bool
    """The data set's encoding as it reads (which may differ from its transfer syntax's)."""
    little: bool
    encoding_matches: bool
    """False when the data set is encoded otherwise than its transfer syntax says."""
    extent: Extent
    """The data set's extent; for a deflated file, in the inflated bytes (starting at 0)."""
    inflated: bytearray | None = dataclasses.field(default=None, compare=False, repr=False)
    """A deflated file's inflated data set (None otherwise)."""

    @property
    def data_start(self) -> int:
        """Where the data set starts in the bytes of :attr:`extent`."""
        return 0 if self.syntax == DEFLATED else self.meta_end

    @property
    def known_syntax(self) -> bool:
        """Whether pydicom knows the transfer syntax (an empty one counts as known)."""
        return not self.syntax or UID(self.syntax).is_transfer_syntax

    @property
    def mismatch(self) -> str:
        """Why the data set's encoding does not match its transfer syntax ('' when it does)."""
        if self.encoding_matches:
            return ""
        actual = describe_encoding(self.implicit, self.little)
        if not self.known_syntax:
            return (f"data set encoding ({actual}) does not match its transfer syntax ({self.syntax}, not "
                    "known to pydicom: explicit VR little endian, as PS3.5 gives every transfer syntax but "
                    "the implicit, big endian and deflated ones)")
        return f"data set encoding ({actual}) does not match its transfer syntax ({UID(self.syntax).name})"

    @property
    def byte_order_matches(self) -> bool:
        """False when the data set's byte order is not its transfer syntax's (pydicom reads
        such a data set as garbage, and cannot write it in the other order)."""
        if not self.syntax:
            return True
        uid = UID(self.syntax)
        return self.little == (uid.is_little_endian if uid.is_transfer_syntax else True)

    @property
    def layout(self) -> Layout:
        """Where the data set and its pixel data element lie (see :class:`Layout`)."""
        extent = self.extent
        length = encapsulated = None
        if extent.pixel_start is not None and extent.pixel_end is not None:
            encapsulated = extent.pixel_value is None
            value_start = extent.pixel_start if extent.pixel_value is None else extent.pixel_value
            length = extent.pixel_end - value_start
        if self.syntax == DEFLATED:
            return Layout(extent.end, None, None, deflated=True, pixel_length=length,
                          encapsulated=bool(encapsulated), data_start=self.meta_end, implicit=self.implicit,
                          little=self.little)
        return Layout(extent.end, extent.pixel_start, extent.pixel_end, pixel_length=length,
                      encapsulated=bool(encapsulated), data_start=self.meta_end, implicit=self.implicit,
                      little=self.little)


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where a file's data set ends and its pixel data element lies: the bytes a de-identified
    copy is made of (everything after ``end`` is trailing data and is never copied)."""

    end: int
    """Offset just after the data set's last element: in the file, or for a deflated file in
    its inflated data set."""
    pixel_start: int | None = None
    """File offset of the top-level pixel data element (None when there is none, or deflated)."""
    pixel_end: int | None = None
    """File offset just after it."""
    deflated: bool = False
    pixel_length: int | None = None
    """Bytes of the pixel data: the value of native pixel data, the whole element of
    encapsulated pixel data (None without pixel data)."""
    encapsulated: bool = False
    """The pixel data is encapsulated (compressed frames in fragments)."""
    data_start: int = 0
    """File offset where the data set starts (after preamble and file meta; for a deflated
    file, where its deflated stream starts)."""
    implicit: bool = False
    """The data set's VR encoding as it reads (which may not be its transfer syntax's)."""
    little: bool = True
    """The data set's byte order."""


def file_structure(buf: bytes | bytearray | memoryview) -> Structure:
    """Check that ``buf`` (a whole file) holds a file meta and one complete data set.

    A file without preamble may start with its file meta or directly with its data set
    (implicit or explicit VR, little or big endian, as it reads). A deflated data set is
    inflated within :func:`inflate_cap`. The data set is walked in the encoding it reads in:
    when that is not its transfer syntax's (an implicit VR data set under an explicit VR
    transfer syntax, big endian bytes under a little endian one), ``encoding_matches`` says so.
    A transfer syntax pydicom does not know is taken as explicit VR little endian (PS3.5: every
    transfer syntax but the implicit, big endian and deflated ones encodes its data set so).

    Raises
    ------
    Damaged
        With a one-line reason that holds no value of the file.
    """
    size = len(buf)
    pos = 132 if size >= 132 and bytes(buf[128:132]) == b"DICM" else 0
    meta: dict[int, bytes] = {}
    while pos + 8 <= size and unpack_us(buf, pos)[0] == 0x0002:
        group, number = unpack_tag(buf, pos)
        code = VR_CODES.get(bytes(buf[pos + 4 : pos + 6]))
        if code is None:
            raise Damaged(f"damaged file: file meta element without a VR at offset {pos}")
        if code[1]:
            if pos + 12 > size:
                raise Damaged(f"damaged or truncated file: file meta cut short at offset {pos}")
            length, start = unpack_ul(buf, pos + 8)[0], pos + 12
        else:
            length, start = unpack_us(buf, pos + 6)[0], pos + 8
        if length == UNDEFINED or start + length > size:
            raise Damaged(f"damaged file: file meta element length beyond the end of the file at offset {pos}")
        meta[group << 16 | number] = bytes(buf[start : start + length])
        pos = start + length
    syntax = meta.get(0x00020010, b"").decode("latin-1").strip(" \0")
    uid = UID(syntax)
    known = uid.is_transfer_syntax
    data: bytes | bytearray | memoryview = buf
    start = pos
    if syntax == DEFLATED:
        deflated = buf[pos:]
        try:
            data, start = inflate(deflated), 0
        finally:
            if isinstance(deflated, memoryview):
                deflated.release()  # a traceback holding it would keep a memory map from closing
    if known:
        implicit, little = uid.is_implicit_VR, uid.is_little_endian
    else:  # no transfer syntax: as it reads; an unknown one: explicit VR little endian
        implicit, little = not syntax and _looks_implicit(data, pos), True
    matches = True
    if _reads_other_byte_order(data, start, little):
        little = not little
        matches = not syntax
    if start + 6 <= len(data) and implicit != _looks_implicit(data, start):
        implicit = not implicit
        matches = not syntax
    return Structure(syntax, pos, implicit, little, matches,
                     data_set_extent(data, start, implicit=implicit, little=little),
                     data if isinstance(data, bytearray) else None)


EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


def explicit_prefix(prefix: bytes) -> bytes:
    """The preamble and file meta of a deflated file with its transfer syntax replaced by
    Explicit VR Little Endian (padded with NULs to the same length): what pydicom is given to
    read an inflated data set, which is explicit VR little endian (PS3.5 A.5), without
    inflating anything itself.

    Raises
    ------
    Unsupported
        When the file meta cannot be parsed here.
    """
    start = 132 if prefix[128:132] == b"DICM" else 0
    elements, _ = parse_dataset(prefix, start, len(prefix), False, meta=True)
    syntax = next((e for e in elements if e.tag == 0x00020010), None)
    if syntax is None or syntax.end - syntax.start < len(EXPLICIT_LITTLE):
        raise Unsupported("no transfer syntax to replace")
    value = EXPLICIT_LITTLE.encode("ascii").ljust(syntax.end - syntax.start, b"\0")
    return prefix[: syntax.start] + value + prefix[syntax.end :]


def _reads_other_byte_order(buf: bytes | bytearray | memoryview, pos: int, little: bool) -> bool:
    """Whether the data set at ``pos`` reads in the other byte order: its first group is
    implausible in ``little``'s order and plausible in the other (every data set starts with a
    low group, 0008 nearly always; read in the wrong order, 0008 becomes 0800)."""
    if pos + 4 > len(buf):
        return False
    low, high = buf[pos], buf[pos + 1]
    group, other = (low | high << 8, high | low << 8) if little else (high | low << 8, low | high << 8)
    return group > 0x00FF and 0x0002 < other <= 0x00FF


def _looks_implicit(buf: bytes | bytearray | memoryview, pos: int) -> bool:
    """Whether the element at ``pos`` has no explicit VR (two capital letters) after its tag."""
    if pos + 6 > len(buf):
        return False
    return not (0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B)


def inflate(deflated: bytes | bytearray | memoryview) -> bytearray:
    """Inflate a deflated data set (raw deflate, PS3.5 A.5) within :func:`inflate_cap`.

    The stream is inflated 1 MiB at a time into one growing buffer, so a bomb takes no more
    memory than its cap before it is stopped. Bytes after the end of the stream are ignored.

    Raises
    ------
    Damaged
        When the stream is corrupt, or would inflate beyond its cap.
    """
    cap = inflate_cap(len(deflated))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    step = 1 << 20
    view = memoryview(deflated)
    try:
        pos = 0
        pending = b""
        while not inflater.eof:
            if not pending:
                if pos >= len(view):
                    break  # the stream ends early: the walk of what it gave says what is missing
                pending = bytes(view[pos : pos + step])  # a copy: nothing here holds on to a memory map
                pos += len(pending)
            out += inflater.decompress(pending, step)
            pending = inflater.unconsumed_tail
            if len(out) > cap:
                raise Damaged(f"deflated data set inflates to more than {cap >> 20} MiB (the limit for a file of "
                              f"{len(deflated)} compressed bytes: {INFLATE_RATIO} times that, at least "
                              f"{MIN_INFLATE_CAP >> 20} and at most {MAX_INFLATED_BYTES >> 20} MiB)")
    except zlib.error:
        raise Damaged("damaged file: corrupt deflated data set") from None
    finally:
        view.release()
    return out
