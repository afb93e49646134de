"""DICOM Part 10 files written: the file meta, the data set, the source's pixel data element.

The one encoder of element headers (:func:`element_header`) and of item and delimiter headers
(:func:`item_header`); new values and the File Meta Information as the fast path
(:mod:`orbitct_app.deid.raw`) writes them (:func:`new_element`, :func:`file_meta_bytes`), the
bytes pydicom's writer gives. A data set
read by pydicom is encoded by :func:`encode_part10`, the bytes pydicom's writer gives, faster;
the source's pixel data element is never decoded: its header is rebuilt and its value copied
(:func:`pixel_pieces`, as :class:`~orbitct_app.dicomio.chunks.Span` pieces).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct
import zlib
from typing import Any, BinaryIO, cast

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from orbitct_app import __version__
from orbitct_app.dicomio.chunks import Piece, Span, read_exactly, write_pieces
from orbitct_app.dicomio.parse import (
    DOUBLE_FLOAT_PIXEL_DATA,
    FLOAT_PIXEL_DATA,
    SEQ_END,
    TEXT_VRS,
    UNDEFINED,
    Unsupported,
)
from orbitct_app.dicomio.pixels import PIXEL_HEADER_BYTES, pixel_element
from orbitct_app.dicomio.structure import Layout, describe_encoding
from orbitct_app.errors import DeidError

IMPLEMENTATION_VERSION_NAME = f"ORBITCT_{__version__}"[:16]
"""ImplementationVersionName of the files written (SH, at most 16 characters)."""

_NUMBER_FORMATS = {"FL": "<f", "FD": "<d", "SL": "<l", "SS": "<h", "SV": "<q", "UL": "<L", "US": "<H", "UV": "<Q"}

_PACKS = {
    little: (struct.Struct(f"{order}HH").pack, struct.Struct(f"{order}L").pack,
             struct.Struct(f"{order}HL").pack, struct.Struct(f"{order}H").pack,
             struct.Struct(f"{order}HHL").pack)
    for little, order in ((True, "<"), (False, ">"))
}


def element_header(tag: int, vr: str | None, length: int, *, implicit: bool, little: bool = True) -> bytes | None:
    """Tag, VR and length of an element as pydicom writes them: in implicit VR the tag and a
    4-byte length; in explicit VR a long VR (OB, SQ, UN, UT ...) with two reserved bytes and a
    4-byte length, a short one with a 2-byte length (an undefined length keeps its 4 bytes).

    Returns None when a short VR's value is longer than a 2-byte length holds (pydicom writes
    it as UN: the caller decides), or when explicit VR has no VR to write.
    """
    pack_tag, pack_ul, pack_reserved_ul, pack_us, _ = _PACKS[little]
    head = pack_tag(tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + pack_ul(length)
    if vr is None:
        return None
    if vr in EXPLICIT_VR_LENGTH_32:
        return head + vr.encode("ascii") + pack_reserved_ul(0, length)
    if length == UNDEFINED:
        return head + vr.encode("ascii") + pack_ul(length)
    if length > 0xFFFF:
        return None
    return head + vr.encode("ascii") + pack_us(length)


def plain_header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    """:func:`element_header` in little endian for the fast path (:mod:`orbitct_app.deid.raw`).

    Raises
    ------
    Unsupported
        For a value too long for its short VR (pydicom would write it as UN).
    """
    head = element_header(tag, vr, length, implicit=implicit)
    if head is None:
        raise Unsupported("value too long for its VR")  # pydicom would write it as UN
    return head


def _pad(value: bytes, pad: bytes = b" ") -> bytes:
    return value + pad if len(value) % 2 else value


def encode_value(vr: str, value: Any) -> bytes:
    """The bytes pydicom's writer gives a new element of ``vr`` holding ``value``.

    ``value`` is a str (ASCII: pseudonym, dummy, UID, date), a number, None or "" (empty).
    """
    if value is None or value == "":
        return b""
    if isinstance(value, str):
        if vr not in TEXT_VRS or not value.isascii():
            raise Unsupported("text value not ASCII, or for a binary VR")
        return _pad(value.encode("ascii"), b"\0" if vr == "UI" else b" ")
    fmt = _NUMBER_FORMATS.get(vr)
    if fmt is None:
        raise Unsupported("number for a VR without a number format")
    return struct.pack(fmt, value)


@functools.lru_cache(maxsize=4096)
def new_element(tag: int, vr: str, value: Any, implicit: bool) -> bytes:
    """A whole new element, little endian (pseudonyms, empty and dummy values repeat: built once)."""
    encoded = encode_value(vr, value)
    return plain_header(tag, vr, len(encoded), implicit) + encoded


def file_meta_bytes(sop_class: str, sop_instance: str, syntax: str, version_name: str,
                    implementation_uid: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information, as pydicom's ``write_file_meta_info``
    writes them (``enforce_standard=True``)."""
    body = (
        b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"
        + new_element(0x00020002, "UI", sop_class, False)
        + new_element(0x00020003, "UI", sop_instance, False)
        + new_element(0x00020010, "UI", syntax, False)
        + new_element(0x00020012, "UI", implementation_uid, False)
        + new_element(0x00020013, "SH", version_name, False)
    )
    return b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(body)) + body


def item_header(tag: int, length: int, *, little: bool = True) -> bytes:
    """An item, item delimiter or sequence delimiter tag with its 4-byte length (these have no
    VR, in every transfer syntax: PS3.5 7.5)."""
    return _PACKS[little][4](tag >> 16, tag & 0xFFFF, length)


def file_meta_for(ds: Dataset) -> FileMetaDataset:
    """A fresh, consistent File Meta Information for ``ds`` as read from a file.

    The transfer syntax is the one the file was read with. MediaStorageSOPClassUID and
    MediaStorageSOPInstanceUID are the data set's SOPClassUID and SOPInstanceUID; where the data
    set's value is empty the old file meta's value is used and copied into the data set. Every
    other element of the old file meta (source and sending AE titles, private information) is
    dropped.

    Raises
    ------
    DeidError
        If neither the data set nor the old file meta gives a SOP Class or SOP Instance UID.
    """
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = str(old.get("TransferSyntaxUID", "") or "")
    if not syntax:  # a data set without file meta: the encoding it was read with
        implicit, little = ds.original_encoding
        if implicit:
            syntax = ImplicitVRLittleEndian
        else:
            syntax = ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    sop_uids_from_meta(ds)
    for meta_keyword, keyword in _SOP_UIDS:
        value = str(ds.get(keyword, "") or "").strip("\0 ")
        if not value:
            raise DeidError(f"no {'SOP Class UID' if keyword == 'SOPClassUID' else 'SOP Instance UID'} "
                            "in the data set or its file meta")
        setattr(meta, meta_keyword, UID(value))
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


_SOP_UIDS = (("MediaStorageSOPClassUID", "SOPClassUID"), ("MediaStorageSOPInstanceUID", "SOPInstanceUID"))


def sop_uids_from_meta(ds: Dataset) -> None:
    """Give an empty SOPClassUID or SOPInstanceUID of ``ds`` its file meta's value (the
    MediaStorage UID), when the file meta has one."""
    old = getattr(ds, "file_meta", None)
    if not old:
        return
    for meta_keyword, keyword in _SOP_UIDS:
        if not str(ds.get(keyword, "") or "").strip("\0 "):
            value = str(old.get(meta_keyword, "") or "").strip("\0 ")
            if value:
                setattr(ds, keyword, value)


def transfer_syntax_encoding(syntax: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of a transfer syntax's data set; a syntax pydicom does not
    know (Deflated Image Frame Compression, newer or private ones) is explicit VR little endian,
    as PS3.5 gives every transfer syntax but the implicit, big endian and deflated ones."""
    uid = UID(syntax)
    if uid.is_transfer_syntax:
        return uid.is_implicit_VR, uid.is_little_endian
    return False, True


def write_part10(fh: BinaryIO, ds: Dataset) -> None:
    """Write ``ds`` (with its pixel data, if any) as a Part 10 file to ``fh`` (see
    :func:`encode_part10`)."""
    write_pieces(fh, encode_part10(ds))


def encode_part10(ds: Dataset, pixels: SourcePixels | None = None) -> list[Piece]:
    """``ds`` and its (consistent) file meta as a DICOM Part 10 file, in pieces.

    The bytes are those of ``pydicom.dcmwrite(fh, ds, enforce_file_format=True)`` with a zero
    preamble (never the source's), written faster: elements still raw as read (nearly all of
    them) are copied with their header instead of going through pydicom's per-element encoder.
    A data set whose encoding (implicit or explicit VR) or character set changes is encoded
    element by element as pydicom's writer does; a transfer syntax pydicom does not know is
    explicit VR little endian (:func:`transfer_syntax_encoding`). With ``pixels``, the source's
    pixel data element (not in ``ds``) is put in its place among the elements
    (:func:`pixel_pieces`). A deflated data set (pixel data included) is deflated as it is
    encoded, never held encoded in memory.
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    deflated = syntax == DeflatedExplicitVRLittleEndian
    if deflated and pixels is not None:
        raise ValueError("a deflated data set is encoded whole, its pixel data included")
    implicit, little = transfer_syntax_encoding(syntax)
    if pixels is not None and pixels.layout.little != little:
        raise DeidError(f"data set encoding ({describe_encoding(pixels.layout.implicit, pixels.layout.little)}) "
                        f"does not match its transfer syntax ({syntax.name}): its byte order cannot be changed")
    pieces: list[Piece] = []
    buffer = io.BytesIO()
    fp = DicomFileLike(buffer)
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    sink = _Deflater() if deflated else None
    if sink is not None:  # the data set is deflated as it is encoded (PS3.5 A.5), never held whole
        fp = DicomFileLike(sink)
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
    encoded = ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set
    if encoded:  # the same test and correction as pydicom's writer
        ds = correct_ambiguous_vr(ds, little)
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    delimiter = item_header(SEQ_END, 0, little=little)
    pixel_tag: int | None = None
    pixel_part: list[Piece] = []
    if pixels is not None:  # its header read once: its tag places it, its pieces are written there
        pixel_tag, pixel_part = _pixel_element_pieces(
            pixels.fd, pixels.layout, implicit=pixels.layout.implicit, little=pixels.layout.little,
            to_implicit=implicit, bits_allocated=pixels.bits_allocated,
        )
    out: Any = sink if sink is not None else buffer
    for tag in [*sorted(ds.keys()), None]:
        if pixel_tag is not None and (tag is None or tag > pixel_tag):
            pieces.append(buffer.getvalue())
            pieces += pixel_part
            out = buffer = io.BytesIO()
            fp = DicomFileLike(buffer)
            fp.is_implicit_VR, fp.is_little_endian = implicit, little
            pixel_tag = None
        if tag is None:
            break
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        if encoded:
            write_data_element(fp, ds[tag], encodings)
            continue
        elem = cast("DataElement | RawDataElement", ds.get_item(tag))  # pydicom's overload omits raw ones
        if not isinstance(elem, RawDataElement) or (header := _raw_header(elem, implicit, little)) is None:
            write_data_element(fp, ds[tag], encodings)
            continue
        out.write(header)
        out.write(elem.value or b"")  # (_raw_header gives None for a None value)
        if elem.length == UNDEFINED:
            out.write(delimiter)
    if sink is not None:
        buffer.write(sink.finish())
    if buffer.tell():
        pieces.append(buffer.getvalue())
    return pieces


class _Deflater:
    """A write-only file that deflates what is written to it (raw deflate, as pydicom writes a
    deflated data set: default level, padded to an even length with one NUL)."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._parts.append(self._compressor.compress(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("a deflating stream cannot seek")

    def finish(self) -> bytes:
        out = b"".join(self._parts) + self._compressor.flush()
        return out + b"\0" if len(out) % 2 else out


def _raw_header(elem: RawDataElement, implicit: bool, little: bool) -> bytes | None:
    """Tag, VR and length of a raw element as pydicom writes them; None to let pydicom do it."""
    if elem.value is None:
        return None
    length = UNDEFINED if elem.length == UNDEFINED else len(elem.value)
    if implicit:
        return element_header(elem.tag, None, length, implicit=True, little=little)
    vr = elem.VR
    if vr is None or len(vr) != 2 or not vr.isascii():
        return None
    return element_header(elem.tag, vr, length, implicit=False, little=little)


@dataclasses.dataclass(frozen=True)
class SourcePixels:
    """The source's pixel data element, to be copied into a file pydicom encodes."""

    fd: int
    layout: Layout
    """Where the element lies, and the source data set's encoding."""
    bits_allocated: int


def source_pixels(fd: int, layout: Layout, ds: Dataset) -> SourcePixels | None:
    """The pixel data element of the open source ``fd`` that ``ds`` was read from (without it);
    None when it has none."""
    if layout.pixel_start is None:
        return None
    bits = ds.get("BitsAllocated", 16)
    return SourcePixels(fd, layout, int(bits) if isinstance(bits, int) else 16)


def pixel_pieces(
    fd: int, layout: Layout, *, implicit: bool, little: bool, to_implicit: bool | None = None,
    bits_allocated: int = 16,
) -> list[Piece]:
    """The source's top-level pixel data element as pydicom writes it: its header rebuilt (in
    the target encoding ``to_implicit``, the source's by default), its value a span of the
    source copied raw, and for encapsulated pixel data the sequence delimiter.

    A header written in explicit VR from an implicit VR source gets the VR pydicom gives it:
    OB for encapsulated pixel data and for 8 bits or fewer, OW above (OF and OD for float and
    double float pixel data).
    """
    return _pixel_element_pieces(fd, layout, implicit=implicit, little=little, to_implicit=to_implicit,
                                 bits_allocated=bits_allocated)[1]


def _pixel_element_pieces(
    fd: int, layout: Layout, *, implicit: bool, little: bool, to_implicit: bool | None, bits_allocated: int,
) -> tuple[int, list[Piece]]:
    """The pixel data element's tag and its pieces (see :func:`pixel_pieces`)."""
    start, end = layout.pixel_start, layout.pixel_end
    assert start is not None and end is not None
    head = read_exactly(fd, start, min(PIXEL_HEADER_BYTES, end - start))
    element = pixel_element(head, start, implicit=implicit, little=little)
    if element is None:
        raise DeidError(_MOVED)
    undefined = element.undefined
    value_length = end - 8 - element.value if undefined else element.length
    if element.value + value_length + (8 if undefined else 0) != end:
        raise DeidError(_MOVED)
    vr = element.vr
    target_implicit = implicit if to_implicit is None else to_implicit
    if not target_implicit and (vr is None or target_implicit != implicit):
        native = "OB" if undefined or bits_allocated <= 8 else "OW"
        vr = {FLOAT_PIXEL_DATA: "OF", DOUBLE_FLOAT_PIXEL_DATA: "OD"}.get(element.tag, native)
    header = None
    if target_implicit or vr in EXPLICIT_VR_LENGTH_32 or (not undefined and vr is not None):
        header = element_header(element.tag, vr, element.length, implicit=target_implicit, little=little)
    if header is None:  # a long value of a short VR: pydicom writes it as UN
        header = element_header(element.tag, "UN", element.length, implicit=False, little=little)
        assert header is not None
    pieces: list[Piece] = [header]
    if value_length:
        pieces.append(Span(element.value, value_length))
    if undefined:
        pieces.append(item_header(SEQ_END, 0, little=little))
    return element.tag, pieces


_MOVED = "the pixel data element is not where discovery found it (the file changed while read)"
