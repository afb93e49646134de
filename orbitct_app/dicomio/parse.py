"""Read the elements of a DICOM Part 10 file from its bytes, without building pydicom objects.

Shared by the fast paths of discovery (:mod:`orbitct_app.discover`) and de-identification
(:mod:`orbitct_app.deid.raw`). Only the common case is parsed: a file with preamble and ``DICM``
in implicit or explicit VR little endian (native or encapsulated pixel data; a transfer syntax
pydicom does not know is explicit VR little endian, as PS3.5 says), elements in
ascending order, sequences encoded as SQ (or implicit VR sequences the dictionary knows). Anything
else raises :class:`Unsupported`, and the caller takes its pydicom path: Unsupported is never an
error of the file, it only chooses the path.

No value of the file ever goes into an exception message.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import warnings

from pydicom import charset as pydicom_charset
from pydicom.datadict import dictionary_VR
from pydicom.filereader import ENCODED_VR
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32


class Unsupported(Exception):
    """The file is outside what the fast path handles; take the full path (never an error)."""


UNDEFINED = 0xFFFFFFFF
"""The undefined length: a sequence, item or encapsulated value closed by a delimiter."""
DELIMITER_GROUP = 0xFFFE
"""The group of items and delimiters (they have no VR, in every transfer syntax)."""
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
"""Item Delimitation Item: closes an item of undefined length."""
SEQ_END = 0xFFFEE0DD
"""Sequence Delimitation Item: closes a sequence (or encapsulated pixel data) of undefined length."""
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
SQ = "SQ"
PIXEL_DATA_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})
"""Pixel Data, Float Pixel Data and Double Float Pixel Data."""
TRAILING_PADDING = 0xFFFCFFFC
"""Data Set Trailing Padding: at the top level it has no meaning (PS3.10 7.2), so the data set
ends where it starts; whatever it holds, and whatever follows it, is trailing data."""
MAX_NESTING = 64
"""Deepest sequence nesting a file may have (items within sequences within items ...). Real
objects nest a handful of levels; a file nested deeper is refused before any reader recurses."""

TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
"""The VRs whose value is text (an empty value is '', not None, as pydicom holds it)."""
LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
SHORT_VRS = frozenset(vr for vr in ENCODED_VR if vr not in LONG_VRS)
VR_CODES = {vr: (vr.decode("ascii"), vr in LONG_VRS) for vr in LONG_VRS | SHORT_VRS}
"""Encoded VR: its name, and whether a 4-byte length follows two reserved bytes."""

unpack_tag = struct.Struct("<HH").unpack_from
unpack_ul = struct.Struct("<L").unpack_from
unpack_us = struct.Struct("<H").unpack_from
unpack_tag_ul = struct.Struct("<HHL").unpack_from
_ITEM_PAIR = divmod(ITEM, 0x10000)
_ITEM_END_HEADER = (*divmod(ITEM_END, 0x10000), 0)
_DELIMITER_GROUP_BYTES = DELIMITER_GROUP.to_bytes(2, "little")


@dataclasses.dataclass(slots=True)
class Element:
    """One encoded element: where its value lies in the file, and its items once parsed."""

    tag: int
    vr: str | None
    """The VR as encoded (None in implicit VR)."""
    undefined: bool
    start: int
    """File offset of the value."""
    end: int
    """File offset just after the value (before a sequence delimiter)."""
    items: list[Item] | None = None


@dataclasses.dataclass(slots=True)
class Item:
    undefined: bool
    elements: list[Element]


@dataclasses.dataclass(slots=True)
class Part10:
    """The parsed start of a Part 10 file: its file meta, transfer syntax and top-level elements."""

    meta: dict[int, bytes]
    """File meta values by tag."""
    syntax: str
    """TransferSyntaxUID as pydicom holds it."""
    implicit: bool
    elements: list[Element]
    """Top-level elements before the pixel data."""
    pixel_pos: int
    """File offset of the pixel data element (or of where parsing stopped: the end of ``data``)."""
    data_start: int = 0
    """File offset where the data set starts (after the file meta)."""


def dictionary_vr(tag: int) -> str:
    """The VR the DICOM dictionary gives ``tag`` ('' when unknown)."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def parse_part10(data: bytes) -> Part10:
    """Parse file meta and data set of a Part 10 file held (at least up to its pixel data) in
    ``data``; parsing stops at the top-level pixel data element or at the end of ``data``.

    Raises
    ------
    Unsupported
        When the file is not in the common case (see the module docstring).
    """
    if len(data) < 140 or data[128:132] != b"DICM":
        raise Unsupported("no Part 10 preamble")
    meta, pos = meta_values(data)
    syntax = uid_text(meta.get(0x00020010))
    uid = UID(syntax)
    if not syntax or (uid.is_transfer_syntax and (uid.is_deflated or not uid.is_little_endian)):
        raise Unsupported("transfer syntax not handled here")
    implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False  # PS3.5: all others explicit LE
    if pos + 8 > len(data):
        raise Unsupported("no data set")
    first = data[pos + 4 : pos + 6]
    if implicit == (0x40 < first[0] < 0x5B and 0x40 < first[1] < 0x5B):
        raise Unsupported("data set encoded otherwise than its transfer syntax says")
    elements, pixel_pos = parse_dataset(data, pos, len(data), implicit, top=True)
    return Part10(meta, syntax, implicit, elements, pixel_pos, pos)


def parse_dataset(
    data: bytes,
    pos: int,
    end: int,
    implicit: bool,
    *,
    top: bool = False,
    undefined_item: bool = False,
    meta: bool = False,
    depth: int = 0,
) -> tuple[list[Element], int]:
    """Elements from ``pos``; stops at ``end``, at the item delimiter of an undefined-length
    item, at the pixel data (``top`` level), or after group 0002 (``meta``: the file meta).
    Returns the elements and where parsing stopped. ``depth``: how many sequences hold this
    data set (deeper than :data:`MAX_NESTING` is Unsupported, never a recursion limit)."""
    if depth > MAX_NESTING:
        raise Unsupported("sequences nested too deep")
    elements: list[Element] = []
    last = -1
    first_group = 0x0002 if meta else 0x0008
    while pos < end:
        if pos + 8 > end:
            raise Unsupported("element header cut short")
        group, number = unpack_tag(data, pos)
        tag = group << 16 | number
        if meta and group != 0x0002:
            return elements, pos
        if group == DELIMITER_GROUP:
            if tag == ITEM_END and undefined_item:
                return elements, pos
            raise Unsupported("delimiter out of place")
        if tag == PIXEL_DATA and top:
            if tag <= last:
                raise Unsupported("unsorted tags")  # pydicom writes them after the pixel data
            return elements, pos
        if tag <= last or group < first_group:
            raise Unsupported("unsorted, repeated or file meta tag in the data set")
        last = tag
        if implicit:
            vr = None
            length = unpack_ul(data, pos + 4)[0]
            start = pos + 8
        else:
            code = VR_CODES.get(data[pos + 4 : pos + 6])
            if code is None:
                raise Unsupported("unknown VR")
            vr, long = code
            if not long:
                length = unpack_us(data, pos + 6)[0]
                start = pos + 8
            elif pos + 12 <= end:
                length = unpack_ul(data, pos + 8)[0]
                start = pos + 12
            else:
                raise Unsupported("element header cut short")
        if length == UNDEFINED:
            if vr != SQ and not (vr is None and _is_implicit_sequence(data, tag, start, end)):
                raise Unsupported("undefined length value that is not a sequence")
            items, value_end = parse_items(data, start, end, implicit, undefined=True, depth=depth + 1)
            elements.append(Element(tag, vr, True, start, value_end, items))
            pos = value_end + 8  # the sequence delimiter
        else:
            value_end = start + length
            if value_end > end:
                raise Unsupported("value runs past its data set")
            items = None
            if vr == SQ or (vr is None and dictionary_vr(tag) == SQ):
                # parsed now: every item checked, nesting bounded (defined lengths too)
                items, _ = parse_items(data, start, value_end, implicit, undefined=False, depth=depth + 1)
            elements.append(Element(tag, vr, False, start, value_end, items))
            pos = value_end
    return elements, pos


def _is_implicit_sequence(data: bytes, tag: int, start: int, end: int) -> bool:
    vr = dictionary_vr(tag)
    if vr:
        return vr == SQ
    return start + 4 <= end and unpack_tag(data, start) == _ITEM_PAIR


def parse_items(
    data: bytes, pos: int, end: int, implicit: bool, *, undefined: bool, depth: int = 1
) -> tuple[list[Item], int]:
    """The items of a sequence value from ``pos``; for an undefined length, up to its delimiter
    (returns the delimiter's offset), else up to ``end``. ``depth``: the nesting of the items'
    data sets (see :func:`parse_dataset`)."""
    items: list[Item] = []
    while True:
        if not undefined and pos == end:
            return items, pos
        if pos + 8 > end:
            raise Unsupported("sequence cut short")
        group, number, length = unpack_tag_ul(data, pos)
        tag = group << 16 | number
        if tag == SEQ_END and undefined:
            if length != 0:
                raise Unsupported("sequence delimiter with a length")
            return items, pos
        if tag != ITEM:
            raise Unsupported("not an item")
        pos += 8
        if not implicit and length and pos + 6 <= end and data[pos : pos + 2] != _DELIMITER_GROUP_BYTES:
            # pydicom reads an item whose first element has no valid VR as implicit VR
            first = data[pos + 4 : pos + 6]
            if not (0x40 < first[0] < 0x5B and 0x40 < first[1] < 0x5B):
                raise Unsupported("implicit VR item in explicit VR data")
        if length == UNDEFINED:
            elements, pos = parse_dataset(data, pos, end, implicit, undefined_item=True, depth=depth)
            if pos + 8 > end or unpack_tag_ul(data, pos) != _ITEM_END_HEADER:
                raise Unsupported("item without its delimiter")
            pos += 8
            items.append(Item(True, elements))
        else:
            item_end = pos + length
            if item_end > end:
                raise Unsupported("item runs past its sequence")
            elements, stop = parse_dataset(data, pos, item_end, implicit, depth=depth)
            if stop != item_end:
                raise Unsupported("defined-length item ends early")
            pos = item_end
            items.append(Item(False, elements))


def meta_values(data: bytes) -> tuple[dict[int, bytes], int]:
    """The file meta elements (explicit VR little endian) and where the data set starts."""
    elements, pos = parse_dataset(data, 132, len(data), False, meta=True)
    if any(e.undefined for e in elements):
        raise Unsupported("file meta element of undefined length")
    return {e.tag: data[e.start : e.end] for e in elements}, pos


def uid_text(raw: bytes | None) -> str:
    """A UI value as pydicom holds it once read (trailing spaces and NULs dropped, stripped)."""
    if not raw:
        return ""
    text = raw.decode("latin-1").rstrip(" \0")
    if "\\" in text:
        raise Unsupported("multi-valued UID where one is expected")
    return text.strip()  # as pydicom's UID holds it


_ASCII_PROBE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x5C)
_ASCII_TEXT = bytes(range(0x20, 0x7F))


@functools.lru_cache(maxsize=64)
def ascii_identity(charset: bytes) -> bool:
    """True when pydicom encodes printable ASCII (backslash aside) and decodes printable ASCII
    unchanged under this SpecificCharacterSet value (its raw bytes)."""
    text = charset.decode("latin-1").rstrip(" \0")
    terms = [t.strip() for t in text.split("\\")] if text else []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encodings = pydicom_charset.convert_encodings(terms or ["ISO_IR 6"])
            encoded = pydicom_charset.encode_string(_ASCII_PROBE, encodings)
            decoded = pydicom_charset.decode_bytes(_ASCII_TEXT, encodings, set())
    except Exception:  # noqa: BLE001 - unknown or odd character sets take the full path
        return False
    return encoded == _ASCII_PROBE.encode("ascii") and decoded == _ASCII_TEXT.decode("ascii")
