"""Generators of hostile input for the tests: damaged files, links, special files, odd trees.

Each generator changes a tree of generated exams (``orbitct_app.synthetic.write_exam``) the way
a hostile tester or a tired hospital IT person would, and says what it did, so that a test can
assert exactly what exists after a run. Used by ``tests/test_hostile.py``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from orbitct_app.dicomio.parse import LONG_VRS, dictionary_vr, parse_dataset, parse_part10

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed): a digest for files, the target for
    links, a kind for folders and special files. Equal states mean nothing was touched."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "folder"
            elif path.is_file():
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[rel] = "special"
    return state


# --- damaged files ------------------------------------------------------------------------------


def _elements(data: bytes) -> dict[int, tuple[int, int, str | None]]:
    """Top-level elements before the pixel data: tag -> (value start, value end, VR)."""
    parsed = parse_part10(data)
    return {e.tag: (e.start, e.end, e.vr) for e in parsed.elements}


def length_past_end(data: bytes) -> bytes:
    """A 4-byte element length (a sequence or long value) that runs far past the end of the
    file, as a bit flip in a length does."""
    parsed = parse_part10(data)
    element = next(e for e in parsed.elements if e.vr in ("SQ", "OB", "UT", "UN", "LT", None))
    start = element.start
    return data[: start - 4] + struct.pack("<L", 0x7FFFFFF0) + data[start:]


def _set_length(data: bytes, tag: int, length: int) -> bytes:
    start, _, vr = _elements(data)[tag]
    if vr is None:  # implicit VR: a 4-byte length
        return data[: start - 4] + struct.pack("<L", length) + data[start:]
    return data[: start - 2] + struct.pack("<H", length) + data[start:]


def length_shifted(data: bytes) -> bytes:
    """A text element whose length grew by a few bytes: every element after it is read out of
    step (the reader's view of the header becomes garbage)."""
    start, end, _ = _elements(data)[0x0008103E]  # SeriesDescription
    return _set_length(data, 0x0008103E, end - start + 6)


def length_huge_short(data: bytes) -> bytes:
    """A text element whose length is near a 2-byte length's maximum."""
    return _set_length(data, 0x0008103E, 0xF000)


def cut_in_header(data: bytes) -> bytes:
    """The file cut in the middle of its header (a transfer that stopped)."""
    return data[: parse_part10(data).pixel_pos // 2]


def cut_at_pixel_data(data: bytes) -> bytes:
    """The file cut exactly where its pixel data element starts: a complete-looking header."""
    return data[: parse_part10(data).pixel_pos]


def cut_in_pixel_data(data: bytes) -> bytes:
    """The file cut inside its pixel data."""
    return data[: parse_part10(data).pixel_pos + 64]


def sequence_unclosed(data: bytes) -> bytes:
    """The file ends inside an undefined-length sequence: its first sequence is re-encoded with
    an undefined length (valid so far), and the file cut after the start of its first item."""
    parsed = parse_part10(data)
    element = next(e for e in parsed.elements if (e.vr or dictionary_vr(e.tag)) == "SQ" and e.end > e.start)
    length_at = element.start - 4
    return data[:length_at] + struct.pack("<L", 0xFFFFFFFF) + data[element.start : element.start + 12]


def garbage_in_header(data: bytes) -> bytes:
    """Eight bytes of the header overwritten with garbage (a disk error)."""
    start, _, _ = _elements(data)[0x00200013]  # InstanceNumber: the next element header follows it
    at = start - 8
    return data[:at] + b"\xfa\x5c\x11\x00\x9e\x01\xffZ" + data[at + 8 :]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "length_past_end": length_past_end,
    "length_shifted": length_shifted,
    "length_huge_short": length_huge_short,
    "cut_in_header": cut_in_header,
    "cut_at_pixel_data": cut_at_pixel_data,
    "cut_in_pixel_data": cut_in_pixel_data,
    "sequence_unclosed": sequence_unclosed,
    "garbage_in_header": garbage_in_header,
}
"""Every kind of damage, by name: each takes a file's bytes and returns the damaged bytes."""


def damage(path: Path, how: str) -> bytes:
    """Damage the file at ``path`` in place (see :data:`DAMAGE`); return its new bytes."""
    data = DAMAGE[how](path.read_bytes())
    path.write_bytes(data)
    return data


# --- objects and trees ------------------------------------------------------------------------


def write_sr(path: Path, series_uid: str, marker: str, *, series_number: int = 2, instance: int = 1) -> None:
    """A text structured report (no pixel data) under ``series_uid``, naming ``marker``."""
    ds = Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.PatientName = marker
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = f"report on {marker}"
    ds.ContentSequence = Sequence([item])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(BASIC_TEXT_SR)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)



# --- bytes after the data set, and other places bytes hide ------------------------------------------

PLANTED = b"Planted^Hostile 19700101 MRN-4711 "
"""The identifying text hostile files hide (even length, never in a generated exam)."""


def _encoding(data: bytes) -> tuple[bool, str]:
    """(implicit VR, byte order) of a generated file's data set."""
    return parse_part10(data).implicit, "<"


def _padding_element(data: bytes, value: bytes) -> bytes:
    """A Data Set Trailing Padding element (FFFC,FFFC) holding ``value``, in ``data``'s encoding."""
    implicit, order = _encoding(data)
    if implicit:
        return struct.pack(order + "HHL", 0xFFFC, 0xFFFC, len(value)) + value
    return struct.pack(order + "HH", 0xFFFC, 0xFFFC) + b"OB\0\0" + struct.pack(order + "L", len(value)) + value


TRAILING: dict[str, Callable[[bytes], bytes]] = {
    "item_tag_and_length": lambda d: d + struct.pack("<HHL", 0xFFFE, 0xE000, len(PLANTED)) + PLANTED,
    "item_tag_then_text": lambda d: d + b"\xfe\xff\x00\xe0" + PLANTED,  # the text where the length goes
    "delimiter_then_text": lambda d: d + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0) + PLANTED,
    "padding_holding_text": lambda d: d + _padding_element(d, PLANTED),
    "text_after_padding": lambda d: d + _padding_element(d, b"\0" * 8) + PLANTED,
    "untagged_text": lambda d: d + PLANTED,
    "zeros_then_text": lambda d: d + b"\0" * 4096 + PLANTED,
    "low_tag_then_text": lambda d: d + struct.pack("<HH", 0x0010, 0x0010) + b"PN" + struct.pack("<H", len(PLANTED))
    + PLANTED,  # an element that would be PatientName, out of order after the pixel data
}
"""Bytes after a file's data set, each holding :data:`PLANTED`: every kind is trailing data,
never part of a de-identified file."""


def plant_trailing(path: Path, how: str) -> None:
    """Append the trailing bytes ``how`` (see :data:`TRAILING`) to the file at ``path``."""
    path.write_bytes(TRAILING[how](path.read_bytes()))


def plant_in_preamble(path: Path) -> None:
    """The identifying text in the 128-byte preamble (which PS3.10 lets applications use)."""
    data = path.read_bytes()
    path.write_bytes(PLANTED.ljust(128, b" ") + data[128:])


def plant_in_file_meta(path: Path) -> None:
    """The identifying text as the file meta's PrivateInformation (0002,0102)."""
    ds = pydicom.dcmread(path)
    ds.file_meta.PrivateInformationCreatorUID = UID("1.2.3.4.5")
    ds.file_meta.PrivateInformation = PLANTED
    ds.save_as(path, enforce_file_format=True)


def plant_nested_padding(path: Path) -> None:
    """A Data Set Trailing Padding element holding the text inside a sequence item."""
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = generate_uid()
    item.add_new(0xFFFCFFFC, "OB", PLANTED)
    ds.ReferencedImageSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)


def deflated_trailing(path: Path, where: str) -> None:
    """Bytes after the data set of a deflated file: ``inside`` its deflated stream (after the
    last element), or ``after`` the stream's end."""
    data = path.read_bytes()
    start = parse_dataset(data, 132, len(data), False, meta=True)[1]
    if where == "after":
        path.write_bytes(data + b"\xfe\xff\x00\xe0" + PLANTED)
        return
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:])
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(inflated + b"\xfe\xff\x00\xe0" + PLANTED) + compressor.flush()
    path.write_bytes(data[:start] + stream + b"\0" * (len(stream) % 2))


# --- bombs ------------------------------------------------------------------------------------------


def deflate_bomb(path: Path, zeros: int, *, noise: int = 0) -> None:
    """Rewrite a deflated file so that its data set holds a private element of ``noise`` random
    bytes (which do not compress) and ``zeros`` zero bytes (which compress about 1000 times):
    the file stays small, its data set inflates to ``zeros + noise`` bytes and more."""
    data = path.read_bytes()
    start = parse_dataset(data, 132, len(data), False, meta=True)[1]
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:])
    elements, _ = parse_dataset(inflated, 0, len(inflated), False, top=True)
    at = next(e.start - (12 if e.vr and e.vr.encode() in LONG_VRS else 8) for e in elements if e.tag > 0x00191001)
    creator = struct.pack("<HH", 0x0019, 0x0010) + b"LO" + struct.pack("<H", 4) + b"BOMB"
    header = struct.pack("<HH", 0x0019, 0x1001) + b"OB\0\0" + struct.pack("<L", zeros + noise)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(inflated[:at] + creator + header), compressor.compress(os.urandom(noise))]
    block = bytes(1 << 20)
    for done in range(0, zeros, len(block)):
        parts.append(compressor.compress(block[: min(len(block), zeros - done)]))
    parts += [compressor.compress(inflated[at:]), compressor.flush()]
    stream = b"".join(parts)
    path.write_bytes(data[:start] + stream + b"\0" * (len(stream) % 2))


def nested_sequence(depth: int, *, implicit: bool, undefined: bool, un: bool = False) -> bytes:
    """A ContentSequence (0040,A730) nested ``depth`` levels deep (a sequence in an item of a
    sequence ...), its innermost item holding PatientName :data:`PLANTED`; built without
    recursion. ``un``: encoded as UN with undefined lengths (its items implicit VR)."""
    name = PLANTED[:-1]
    inner = (struct.pack("<HHL", 0x0010, 0x0010, len(name) + 1) if implicit or un
             else struct.pack("<HH", 0x0010, 0x0010) + b"PN" + struct.pack("<H", len(name) + 1)) + name + b" "
    for level in range(depth):
        outermost = level == depth - 1
        if undefined or un:
            item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
            if implicit or (un and not outermost):
                head = struct.pack("<HHL", 0x0040, 0xA730, 0xFFFFFFFF)
            else:
                head = struct.pack("<HH", 0x0040, 0xA730) + (b"UN" if un else b"SQ") + b"\0\0" + b"\xff" * 4
            inner = head + item + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        else:
            item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
            head = (struct.pack("<HHL", 0x0040, 0xA730, len(item)) if implicit
                    else struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + struct.pack("<L", len(item)))
            inner = head + item
    return inner


def plant_deep(path: Path, depth: int, *, undefined: bool = True, un: bool = False) -> None:
    """Insert :func:`nested_sequence` into the file at ``path`` (in its encoding, in tag order)."""
    data = path.read_bytes()
    parsed = parse_part10(data)
    at = next((e.start - (8 if parsed.implicit or not (e.vr and e.vr.encode() in LONG_VRS) else 12)
               for e in parsed.elements if e.tag > 0x0040A730), parsed.pixel_pos)
    element = nested_sequence(depth, implicit=parsed.implicit, undefined=undefined, un=un)
    path.write_bytes(data[:at] + element + data[at:])


def declare_matrix(path: Path, rows: int, columns: int, *, frames: int | None = None,
                   pixel_bytes: int | None = None, encapsulated: bool = False) -> None:
    """Make the header of the file at ``path`` declare ``rows`` x ``columns`` (x ``frames``)
    over ``pixel_bytes`` bytes of pixel data (native, or one fragment when ``encapsulated``)."""
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, columns
    if frames is not None:
        ds.NumberOfFrames = frames
    value = b"\x01" * (pixel_bytes if pixel_bytes is not None else len(ds.PixelData))
    if encapsulated:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([value])
    else:
        ds.PixelData = value
    ds.save_as(path, enforce_file_format=True)


def sparse_multiframe(path: Path, frames: int, rows: int = 512, columns: int = 512) -> int:
    """Turn the (explicit VR, 16-bit) file at ``path`` into a multi-frame image of ``frames``
    frames whose pixel data is a hole (a sparse file: big, taking no disk space); returns its
    size."""
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.PixelData = b"\0\0"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    length = rows * columns * 2 * frames
    head = data[:-2]
    assert head[-4:] == struct.pack("<L", 2)
    with open(path, "r+b") as fh:
        fh.seek(len(head) - 4)
        fh.write(struct.pack("<L", length))
        fh.truncate(len(head) + length)
    return len(head) + length
