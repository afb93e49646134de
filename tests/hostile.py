"""Generators of hostile input for the tests: damaged files, links, special files, odd trees.

Each generator changes a tree of generated exams (``orbitct_app.synthetic.write_exam``) the way
a hostile tester or a tired hospital IT person would, and says what it did, so that a test can
assert exactly what exists after a run. Used by ``tests/test_hostile.py``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from orbitct_app.dicom_bytes import dictionary_vr, parse_part10

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

