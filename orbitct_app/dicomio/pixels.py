"""The top-level pixel data element of a file: its header read, its extent walked.

One reader for discovery's fast path (:func:`orbitct_app.discover.fast_slice_info`: is the pixel
data element complete, where does it end) and for the writer
(:func:`orbitct_app.dicomio.write.pixel_pieces`: the element copied with its header rebuilt). The
pixel data value is never read here: only element and item headers. No value of the file ever
goes into an exception message.
"""

from __future__ import annotations

import dataclasses
import os
import struct

from orbitct_app.dicomio.parse import ITEM, LONG_VRS, PIXEL_DATA_TAGS, SEQ_END, SHORT_VRS, UNDEFINED

PIXEL_HEADER_BYTES = 12
"""The longest header a pixel data element can have (explicit VR with a 4-byte length)."""
NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
"""Implicit and Explicit VR Little Endian: pixel data stored uncompressed, little endian, which the
extract stage and the pixel-text check read straight at its offset."""


class Incomplete(Exception):
    """The pixel data element is cut short or malformed; the message says how, never a value."""


@dataclasses.dataclass(frozen=True, slots=True)
class PixelElement:
    """The header of a pixel data element (Pixel Data, Float or Double Float Pixel Data)."""

    tag: int
    vr: str | None
    """The VR as encoded (None in implicit VR, or when the two bytes are not a VR)."""
    length: int
    """The value length as encoded (:data:`~orbitct_app.dicomio.parse.UNDEFINED` when encapsulated)."""
    value: int
    """File offset of the value (of the first item of encapsulated pixel data)."""

    @property
    def undefined(self) -> bool:
        """Encapsulated: fragments in items up to a sequence delimiter."""
        return self.length == UNDEFINED


def pixel_element(head: bytes, offset: int, *, implicit: bool, little: bool) -> PixelElement | None:
    """The pixel data element whose header ``head`` (up to :data:`PIXEL_HEADER_BYTES` bytes of
    the file from ``offset``) holds; None when no pixel data element starts there.

    In explicit VR, a long VR (OB, OW, OF, OD, UN ...) has a 4-byte length after two reserved
    bytes, a short VR a 2-byte length; two bytes that are not a VR are read as implicit VR, as
    pydicom reads them.

    Raises
    ------
    Incomplete
        When ``head`` is cut short.
    """
    order = "<" if little else ">"
    if len(head) < 8:
        raise Incomplete("truncated file: pixel data element header cut short")
    group, number = struct.unpack_from(order + "HH", head)
    tag = group << 16 | number
    if tag not in PIXEL_DATA_TAGS:
        return None
    vr_code = head[4:6]
    if not implicit and vr_code in LONG_VRS:
        if len(head) < 12:
            raise Incomplete("truncated file: pixel data element header cut short")
        return PixelElement(tag, vr_code.decode("ascii"), struct.unpack_from(order + "L", head, 8)[0], offset + 12)
    if not implicit and vr_code in SHORT_VRS:
        return PixelElement(tag, vr_code.decode("ascii"), struct.unpack_from(order + "H", head, 6)[0], offset + 8)
    return PixelElement(tag, None, struct.unpack_from(order + "L", head, 4)[0], offset + 8)


def pixel_data_end(fd: int, element: PixelElement, size: int, *, little: bool) -> int:
    """Where ``element`` ends in a file of ``size`` bytes: after its value, or for
    encapsulated pixel data after the sequence delimiter that closes its items (each item's
    header is read, never a fragment).

    Raises
    ------
    Incomplete
        When the value, an item or the delimiter lies beyond the end of the file, or an item
        tag is wrong.
    """
    if not element.undefined:
        if element.value + element.length > size:
            raise Incomplete(
                f"truncated file: pixel data needs {element.length} bytes, file holds "
                f"{max(0, size - element.value)}"
            )
        return element.value + element.length
    unpack = struct.Struct(("<" if little else ">") + "HHL").unpack
    pos = element.value
    while True:
        item = os.pread(fd, 8, pos)
        if len(item) < 8:
            raise Incomplete("truncated file: compressed pixel data ends without delimiter")
        group, number, item_length = unpack(item)
        tag = group << 16 | number
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM or item_length == UNDEFINED:
            raise Incomplete("malformed compressed pixel data (bad item tag)")
        pos += 8 + item_length
        if pos > size:
            raise Incomplete("truncated file: compressed pixel data fragment cut short")
