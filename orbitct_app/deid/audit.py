"""The de-identification audit: scan a de-identified tree for anything that should be gone.

For every file under an exam's de-identified folder it reports

- ``attribute``: an attribute the profile removes (X), empties (Z), replaces by a dummy (D) or by
  the pseudonym (P) that is still there with another value, at any depth, and any element of a
  repeating group the profile removes (curves, overlays);
- ``private``: a private element (other than a safe one the profile keeps);
- ``original_uid``: an original UID that the profile replaced, anywhere in the file's bytes or
  in its path;
- ``phi_string``: a string of the user's list (``--phi-list``: names, IDs ...) anywhere in the
  file's bytes (case-insensitive) or in its path;
- ``unreadable``: a file that looks like DICOM but cannot be parsed (its bytes are still searched).

A finding names the file, the check, the tag and keyword, and where in the sequences it sits,
never the offending value: for a listed string only its line number in the list.

The anonymize stage runs the audit on every exam it writes (``deid_audit.csv``; a finding makes
the run exit with code 3); ``orbitct-app INPUT OUTPUT anonymize --audit-only`` runs it alone on an
earlier output, re-reading the original UIDs from INPUT_DIR.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import struct
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]  # public, not marked as re-exported

from orbitct_app.deid.apply import _may_be_sequence, _safe_private_tags
from orbitct_app.deid.profiles import DUMMY_VALUES, Action, Profile, is_structural_uid
from orbitct_app.dicom_bytes import dictionary_vr
from orbitct_app.errors import OrbitctError
from orbitct_app.paths import iter_exam_files, read_regular

MIN_PHI_LENGTH = 4
"""Shorter entries of a phi list are ignored: they would match by chance (a sex, an initial)."""

_UID_TOKEN = re.compile(rb"[0-9]+(?:\.[0-9]+)+")
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the audit found (never the value itself)."""

    path: str
    check: str
    tag: str = ""
    keyword: str = ""
    location: str = ""
    detail: str = ""

    def row(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PhiList:
    """The user's identifying strings, lower-cased, with their line numbers."""

    entries: tuple[tuple[int, bytes], ...]
    ignored: int = 0

    def __bool__(self) -> bool:
        return bool(self.entries)


def read_phi_list(path: Path) -> PhiList:
    """Read ``--phi-list``: one string per line; blank lines and ``#`` comments are skipped.

    Entries shorter than :data:`MIN_PHI_LENGTH` characters are ignored (counted in ``ignored``).
    """
    entries = []
    ignored = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if len(text) < MIN_PHI_LENGTH:
            ignored += 1
            continue
        entries.append((number, text.lower().encode("utf-8")))
    return PhiList(tuple(entries), ignored)


def phi_list_digest(path: Path) -> str:
    """A digest of the list's contents (so a changed list re-audits completed exams)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def original_uids(exam_dir: Path) -> set[str]:
    """Every instance UID value in the headers of an exam's files (not the UIDs of classes,
    syntaxes or coding schemes, nor any UID registered in the standard)."""
    found: set[str] = set()
    for path in _regular_files(exam_dir):
        try:
            ds = _read(read_regular(path))
        except OrbitctError:
            continue
        if ds is None:
            continue
        try:
            for elem, _, _ in _iter_elements(ds, ""):
                if elem.VR == "UI" and not is_structural_uid(elem.keyword):
                    for value in _text_values(elem.value):
                        if value and value not in UID_dictionary:
                            found.add(value)
        except Exception:  # noqa: BLE001 - an unparsable element: take what was read
            pass
        meta = getattr(ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPInstanceUID"):
            found.add(str(meta.MediaStorageSOPInstanceUID).strip("\0 "))
    return found


def _regular_files(folder: Path) -> list[Path]:
    """The regular files under ``folder``, sorted; links and special files are never opened."""
    return sorted(p for p in iter_exam_files(folder) if isinstance(p, Path))


def audit_tree(
    root: Path,
    profile: Profile,
    *,
    pseudonym: str,
    original_uids: Iterable[str] = (),
    phi_strings: PhiList | Iterable[str] = (),
    written: Mapping[str, Written] | None = None,
) -> list[Finding]:
    """Audit every file under ``root`` (one exam's de-identified folder); return the findings.

    ``written`` holds what :func:`audit_written` found in the bytes of files as they were
    written (by their path relative to ``root``): such a file is not read again unless the
    original UIDs, known only now, occur in its header or path, or its bytes could not be
    parsed. Every other file under ``root`` is read from disk.
    """
    if not isinstance(phi_strings, PhiList):
        phi_strings = PhiList(tuple((n, s.lower().encode()) for n, s in enumerate(phi_strings, 1)))
    originals = {u.encode("ascii", "replace") for u in original_uids if u}
    findings: list[Finding] = []
    if not root.is_dir():
        return findings
    written = written or {}
    for path in _regular_files(root):
        rel = str(path.relative_to(root))
        done = written.get(rel)
        if done is not None and done.complete and not (originals and originals.intersection(done.tokens)):
            findings += done.findings
        else:
            findings += audit_file(path, rel, profile, pseudonym, originals, phi_strings)
    return findings


@dataclasses.dataclass(frozen=True)
class Written:
    """The audit of one file's bytes as they were written, but for the original-UID check."""

    findings: list[Finding]
    tokens: frozenset[bytes]
    """UID-like tokens of the file's header and path (checked against the original UIDs)."""
    complete: bool
    """False when the bytes could not be parsed: the file is audited from disk."""


def _phi_string_findings(rel: str, rel_bytes: bytes, data: bytes, phi: PhiList) -> list[Finding]:
    """Entries of the phi list in a file's path and in its bytes (case-insensitive)."""
    findings = [
        Finding(rel, "phi_string", detail=f"phi list line {number}, in the file path")
        for number, text in phi.entries
        if text in rel_bytes.lower()
    ]
    if phi:
        lowered = data.lower()
        findings.extend(
            Finding(rel, "phi_string", detail=f"phi list line {number}")
            for number, text in phi.entries
            if text in lowered
        )
    return findings


def audit_written(
    parts: Sequence[bytes | memoryview], rel: str, profile: Profile, pseudonym: str, phi: PhiList
) -> Written:
    """Audit a file's bytes as they are written (the concatenation of ``parts``), without
    reading it back.

    The checks are those of :func:`audit_file`, on a data set parsed here by pydicom,
    independently of the writer, except the original-UID check: the original UIDs of an exam
    are known only when all its files are done, so the UID-like tokens are kept for
    :func:`audit_tree`. Whatever follows the parsed header must be one pixel data element
    ending the file; anything else makes the file one to audit from disk, elements after the
    pixel data included.
    """
    findings: list[Finding] = []
    rel_bytes = rel.encode("utf-8", "replace")
    tokens: set[bytes] = set()
    whole = b"".join(parts) if (phi or profile.needs_key) else b""
    if profile.needs_key:  # only a profile that remaps UIDs has originals to look for
        end = whole.rfind(_PIXEL_TAG_LE)
        tokens.update(_UID_TOKEN.findall(whole if end < 0 else whole[: end + 8]))
        tokens.update(_UID_TOKEN.findall(rel_bytes))
    findings.extend(_phi_string_findings(rel, rel_bytes, whole, phi))
    head = bytes(parts[0])
    scanned = _Scan.of(head, profile, pseudonym, rel)
    if scanned is not None:
        checked, header_end, implicit = scanned
        rest = [memoryview(head)[header_end:], *(memoryview(p) for p in parts[1:])]
    else:  # not the plain encoding the scan reads: pydicom parses it
        fp = io.BytesIO(head)
        ds = _read_from(fp)
        if ds is None:
            return Written(findings, frozenset(tokens), False)
        try:
            checked = _check_dataset(ds, rel, profile, pseudonym, "") + _check_meta(ds, rel, set())
        except Exception:  # noqa: BLE001 - an element that cannot be parsed: audited from disk
            return Written(findings, frozenset(tokens), False)
        syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
        if syntax in _NOT_PLAIN:  # what follows the pixel data is not in view here
            return Written(findings, frozenset(tokens), False)
        implicit = syntax == "1.2.840.10008.1.2"
        rest = [memoryview(head)[fp.tell():], *(memoryview(p) for p in parts[1:])]
    rest = [r for r in rest if len(r)]
    if len(rest) > 1 or (rest and not _only_pixel_data(rest[0], implicit)):
        return Written(findings, frozenset(tokens), False)
    return Written(findings + checked, frozenset(tokens), True)


_NOT_PLAIN = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"})
"""Deflated and big endian: what follows their header is checked from disk."""


class _Scan:
    """The attribute, private and repeating-group checks of :func:`_check_dataset`, on the bytes
    of a plainly encoded header, without building pydicom objects.

    It reads only what it can read unambiguously: a Part 10 file in implicit or explicit VR
    little endian, elements in ascending order, sequences as SQ (or by the dictionary in implicit
    VR) with well-formed items, and values checked on their bytes (emptiness, the pseudonym,
    presence, a sequence's item count). For anything else (deflated or big-endian data, a
    sequence stored as UN, a dummy value to compare, a profile keeping safe private attributes
    ...) :meth:`of` returns None and pydicom parses the file: the findings are the same either
    way (the tests compare the two). It shares no code with the writer
    (:mod:`orbitct_app.deid.raw`), so a mistake there is not repeated here.
    """

    class Unplain(Exception):
        pass

    def __init__(self, data: bytes, profile: Profile, pseudonym: str, rel: str, implicit: bool) -> None:
        self.data = data
        self.profile = profile
        self.pseudonym = pseudonym.encode("ascii")
        self.rel = rel
        self.implicit = implicit
        self.findings: list[Finding] = []

    @classmethod
    def of(cls, data: bytes, profile: Profile, pseudonym: str, rel: str) -> tuple[list[Finding], int, bool] | None:
        """(findings, offset of the pixel data or end of data, implicit VR) or None."""
        if profile.safe_private or len(data) < 132 or data[128:132] != b"DICM":
            return None
        try:
            meta, pos = _scan_meta(data)
            syntax = meta.get(0x00020010, b"").rstrip(b"\0 ")
            if syntax == b"1.2.840.10008.1.2":
                implicit = True
            elif syntax == b"1.2.840.10008.1.2.1" or (
                syntax.startswith(b"1.2.840.10008.1.2.4.") or syntax == b"1.2.840.10008.1.2.5"
            ):
                implicit = False
            else:
                return None
            if pos + 6 <= len(data) and implicit == _looks_explicit(data, pos):
                return None  # pydicom would read it with the other encoding
            scan = cls(data, profile, pseudonym, rel, implicit)
            end = scan.dataset(pos, len(data), "", top=True)
        except cls.Unplain:
            return None
        for tag in (0x00020100, 0x00020102):  # private information in the file meta
            if tag in meta:
                scan.findings.append(Finding(rel, "private", _tag(tag), keyword_for_tag(tag), "file meta"))
        return scan.findings, end, implicit

    def element(self, pos: int, end: int) -> tuple[int, str | None, int, int]:
        """(tag, VR, value offset, value length) of the element at ``pos``."""
        data = self.data
        if pos + 8 > end:
            raise self.Unplain
        group, number = struct.unpack_from("<HH", data, pos)
        if self.implicit or group == 0xFFFE:  # delimiters have no VR
            return group << 16 | number, None, pos + 8, struct.unpack_from("<L", data, pos + 4)[0]
        vr = data[pos + 4 : pos + 6]
        if vr in _VR_32:
            if pos + 12 > end:
                raise self.Unplain
            return group << 16 | number, vr.decode(), pos + 12, struct.unpack_from("<L", data, pos + 8)[0]
        if vr in _VR_16:
            return group << 16 | number, vr.decode(), pos + 8, struct.unpack_from("<H", data, pos + 6)[0]
        raise self.Unplain

    def dataset(self, pos: int, end: int, location: str, *, top: bool = False, item: bool = False) -> int:
        """Check the elements from ``pos``; returns where they end (the pixel data at top level,
        the item delimiter of an undefined-length item)."""
        profile = self.profile
        where = location or "top"
        last = -1
        while pos < end:
            tag, vr, start, length = self.element(pos, end)
            if tag >> 16 == 0xFFFE:
                if item and tag == 0xFFFEE00D:
                    return pos
                raise self.Unplain
            if top and tag in (0x7FE00010, 0x7FE00009, 0x7FE00008):
                return pos
            if tag <= last or tag >> 16 < 0x0008:
                raise self.Unplain
            last = tag
            sequence = vr == "SQ" or (vr is None and (length == 0xFFFFFFFF or dictionary_vr(tag) == "SQ"))
            if vr == "UN" and (length == 0xFFFFFFFF or dictionary_vr(tag) == "SQ"):
                raise self.Unplain  # pydicom reads it as an implicit VR sequence
            if length == 0xFFFFFFFF:
                if not sequence:
                    raise self.Unplain
                items, value_end = self.items(start, end, undefined=True)
                next_pos = value_end + 8
            else:
                value_end = start + length
                if value_end > end:
                    raise self.Unplain
                items = None
                next_pos = value_end
            pos = next_pos
            if tag >> 16 & 1:
                if profile.remove_private:
                    self.findings.append(Finding(self.rel, "private", _tag(tag), "", where))
                continue
            if profile.remove_groups and tag >> 16 >= 0x5000 and profile.removes_group(tag >> 16):
                self.findings.append(Finding(self.rel, "attribute", _tag(tag), keyword_for_tag(tag), where,
                                             "repeating group that should be removed"))
                continue
            if not sequence:
                action = profile.actions.get(cast(BaseTag, tag))  # (an int finds the same entry)
                if action in _CHECKED:
                    problem: str | None = self.violates(action, start, value_end)
                    if problem:
                        self.findings.append(
                            Finding(self.rel, "attribute", _tag(tag), keyword_for_tag(tag), where, problem)
                        )
                continue
            if items is None:
                items, _ = self.items(start, value_end, undefined=False)
            action = profile.actions.get(cast(BaseTag, tag))
            if action in _CHECKED:
                problem = (
                    "present (the profile removes it)" if action is Action.REMOVE
                    else "" if not items
                    else "sequence not empty" if action is Action.EMPTY
                    else None
                )
                if problem is None:
                    raise self.Unplain  # pydicom compares an item's text: leave it to pydicom
                if problem:
                    self.findings.append(
                        Finding(self.rel, "attribute", _tag(tag), keyword_for_tag(tag), where, problem)
                    )
                    continue
            name = keyword_for_tag(tag) or _tag(tag)
            prefix = f"{location}." if location else ""
            for k, (item_start, item_end, item_undefined) in enumerate(items):
                self.dataset(item_start, item_end, f"{prefix}{name}[{k}]", item=item_undefined)
        return pos

    def violates(self, action: Action, start: int, end: int) -> str:
        if action is Action.REMOVE:
            return "present (the profile removes it)"
        value = self.data[start:end].strip(b"\0 ")
        if action is Action.EMPTY:
            return "" if not value else "not empty"
        if action is Action.REPLACE_PSEUDONYM:
            return "" if value == self.pseudonym else "not the pseudonym"
        raise self.Unplain  # a dummy value: pydicom decodes it

    def items(self, pos: int, end: int, *, undefined: bool) -> tuple[list[tuple[int, int, bool]], int]:
        """The items of a sequence value: (start, end, undefined length) each, and where the
        value ends (the sequence delimiter for an undefined length)."""
        data = self.data
        found: list[tuple[int, int, bool]] = []
        while True:
            if not undefined and pos == end:
                return found, pos
            if pos + 8 > end:
                raise self.Unplain
            group, number, length = struct.unpack_from("<HHL", data, pos)
            if undefined and (group, number) == (0xFFFE, 0xE0DD):
                return found, pos
            if (group, number) != (0xFFFE, 0xE000):
                raise self.Unplain
            pos += 8
            if not self.implicit and length and pos + 6 <= end and not _looks_explicit(data, pos):
                raise self.Unplain  # pydicom reads such an item as implicit VR
            if length == 0xFFFFFFFF:
                item_end = self.skip_item(pos, end)
                found.append((pos, item_end, True))
                pos = item_end + 8
            else:
                if pos + length > end:
                    raise self.Unplain
                found.append((pos, pos + length, False))
                pos += length

    def skip_item(self, pos: int, end: int) -> int:
        """Where an undefined-length item starting at ``pos`` ends (its delimiter)."""
        while True:
            tag, _, start, length = self.element(pos, end)
            if tag == 0xFFFEE00D:
                return pos
            if length == 0xFFFFFFFF:
                _, value_end = self.items(start, end, undefined=True)
                pos = value_end + 8
            else:
                pos = start + length
            if pos > end:
                raise self.Unplain


def _looks_explicit(data: bytes, pos: int) -> bool:
    """Whether the element at ``pos`` has a VR where explicit VR puts it (pydicom's test)."""
    return 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B


def _scan_meta(data: bytes) -> tuple[dict[int, bytes], int]:
    pos = 132
    meta: dict[int, bytes] = {}
    while pos + 8 <= len(data):
        group, number = struct.unpack_from("<HH", data, pos)
        if group != 2:
            return meta, pos
        vr = data[pos + 4 : pos + 6]
        if vr in _VR_32:
            length = struct.unpack_from("<L", data, pos + 8)[0]
            start = pos + 12
        elif vr in _VR_16:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        else:
            raise _Scan.Unplain
        if length == 0xFFFFFFFF or start + length > len(data):
            raise _Scan.Unplain
        meta[group << 16 | number] = data[start : start + length]
        pos = start + length
    return meta, pos


_VR_16 = frozenset(
    vr.encode() for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN",
                           "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")
)
_VR_32 = frozenset(
    vr.encode() for vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV")
)


def _only_pixel_data(tail: memoryview, implicit: bool) -> bool:
    """Whether ``tail`` is exactly one pixel data element (little endian), native or
    encapsulated; elements after it would otherwise escape the header checks."""
    if len(tail) < 12 or bytes(tail[:4]) != _PIXEL_TAG_LE:
        return False
    length: int
    if implicit:
        (length,) = struct.unpack_from("<L", tail, 4)
        start = 8
    else:
        (length,) = struct.unpack_from("<L", tail, 8)
        start = 12
    if length != 0xFFFFFFFF:
        return start + length == len(tail)
    pos = start
    while pos + 8 <= len(tail):
        group, element, item_length = struct.unpack_from("<HHL", tail, pos)
        if (group, element) == (0xFFFE, 0xE0DD):
            return pos + 8 == len(tail)
        if (group, element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            return False
        pos += 8 + item_length
    return False


def audit_file(
    path: Path, rel: str, profile: Profile, pseudonym: str, originals: set[bytes], phi: PhiList
) -> list[Finding]:
    """Audit one file (see the module docstring for the checks)."""
    findings: list[Finding] = []
    try:
        data = read_regular(path)
    except OrbitctError as err:
        return [Finding(rel, "unreadable", detail=str(err))]
    # the path itself
    rel_bytes = rel.encode("utf-8", "replace")
    for token in _UID_TOKEN.findall(rel_bytes):
        if token in originals:
            findings.append(Finding(rel, "original_uid", detail="in the file path"))
    findings.extend(_phi_string_findings(rel, rel_bytes, data, phi))
    # the bytes
    hits: set[bytes] = set()
    if originals:
        end = data.rfind(_PIXEL_TAG_LE)
        header = data if end < 0 else data[: end + 8]
        hits = originals.intersection(_UID_TOKEN.findall(header))
    # the parsed data set
    fp = io.BytesIO(data)
    ds = _read_from(fp)
    if ds is None:
        if hits:
            findings.append(Finding(rel, "original_uid", detail=f"{len(hits)} original UID(s) in the bytes"))
        if data[128:132] == b"DICM" or path.suffix.lower() == ".dcm":
            findings.append(Finding(rel, "unreadable", detail="cannot be parsed as DICOM"))
        return findings
    try:
        findings += _check_dataset(ds, rel, profile, pseudonym, "")
        if hits:
            located = _uid_locations(ds, rel, hits, "")
            findings += located or [
                Finding(rel, "original_uid", detail=f"{len(hits)} original UID(s) in the bytes")
            ]
    except Exception:  # noqa: BLE001 - an element that cannot be parsed: the file is unreadable
        findings.append(Finding(rel, "unreadable", detail="an element cannot be parsed"))
        if hits:
            findings.append(Finding(rel, "original_uid", detail=f"{len(hits)} original UID(s) in the bytes"))
        return findings
    tail = memoryview(data)[fp.tell():]
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    if syntax in _NOT_PLAIN or (len(tail) and not _only_pixel_data(tail, syntax == "1.2.840.10008.1.2")):
        findings += _check_after_pixel_data(data, rel, profile, pseudonym)
    return findings + _check_meta(ds, rel, hits)


def _check_after_pixel_data(data: bytes, rel: str, profile: Profile, pseudonym: str) -> list[Finding]:
    """The checks of the elements after the pixel data (trailing padding, private groups ...)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pydicom_config.disable_value_validation():
                full = pydicom.dcmread(io.BytesIO(data), force=True)
                trailing = Dataset()
                for tag in full.keys():  # iterating a Dataset gives elements
                    if tag > 0x7FE00010:
                        trailing[tag] = full.get_item(tag)
                return _check_dataset(trailing, rel, profile, pseudonym, "after pixel data")
    except Exception:  # noqa: BLE001 - what cannot be parsed cannot be shown clean
        return [Finding(rel, "unreadable", detail="elements after the pixel data cannot be parsed")]


def _check_meta(ds: Dataset, rel: str, hits: set[bytes]) -> list[Finding]:
    findings = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for tag in (0x00020100, 0x00020102):  # private information in the file meta
            if tag in meta:
                findings.append(Finding(rel, "private", _tag(tag), keyword_for_tag(tag), "file meta"))
        value = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip("\0 ").encode()
        if value in hits:
            findings.append(Finding(rel, "original_uid", "(0002,0003)", "MediaStorageSOPInstanceUID", "file meta"))
    return findings


_CHECKED = frozenset({Action.REMOVE, Action.EMPTY, Action.REPLACE_PSEUDONYM, Action.DUMMY})


def _check_dataset(ds: Dataset, rel: str, profile: Profile, pseudonym: str, location: str) -> list[Finding]:
    """Attribute, private and repeating-group checks at every depth.

    Only elements the profile acts on, private elements and sequences are looked at, and raw
    values are compared as bytes where possible, so most of a header is never decoded.
    """
    findings = []
    where = location or "top"
    safe = _safe_private_tags(ds, profile) if profile.safe_private else frozenset()
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if tag.is_private:
            if profile.remove_private and tag not in safe:
                findings.append(Finding(rel, "private", _tag(tag), "", where))
            continue
        if profile.remove_groups and tag >> 16 >= 0x5000 and profile.removes_group(tag >> 16):
            findings.append(Finding(rel, "attribute", _tag(tag), keyword_for_tag(tag), where,
                                    "repeating group that should be removed"))
            continue
        action = profile.actions.get(tag)
        if action in _CHECKED:
            problem = _violates(ds, tag, raw, action, pseudonym)
            if problem:
                findings.append(Finding(rel, "attribute", _tag(tag), keyword_for_tag(tag), where, problem))
                continue
        if _may_be_sequence(raw):
            elem = ds[tag]
            if elem.VR == "SQ":
                name = elem.keyword or _tag(tag)
                for k, item in enumerate(elem.value):
                    prefix = f"{location}." if location else ""
                    findings += _check_dataset(item, rel, profile, pseudonym, f"{prefix}{name}[{k}]")
    return findings


def _violates(ds: Dataset, tag: int, raw: object, action: Action, pseudonym: str) -> str:
    if action is Action.REMOVE:
        return "present (the profile removes it)"
    if isinstance(raw, RawDataElement) and raw.VR != "SQ" and not _may_be_sequence(raw):
        value = (raw.value or b"").strip(b"\0 ")
        if action is Action.EMPTY:
            return "" if not value else "not empty"
        if action is Action.REPLACE_PSEUDONYM:
            return "" if value == pseudonym.encode("ascii") else "not the pseudonym"
    elem = ds[tag]
    if elem.VR == "SQ":
        return "" if len(elem.value) == 0 else "sequence not empty"
    values = _text_values(elem.value)
    if action is Action.EMPTY:
        return "" if not any(values) and not _binary(elem.value) else "not empty"
    if action is Action.REPLACE_PSEUDONYM:
        return "" if all(v == pseudonym for v in values) else "not the pseudonym"
    dummy = str(DUMMY_VALUES.get(elem.VR, ""))
    return "" if all(v in ("", dummy, "0", "0.0") for v in values) else "not the dummy value"


def _uid_locations(ds: Dataset, rel: str, hits: set[bytes], location: str) -> list[Finding]:
    """Where the original UIDs found in the bytes sit (UI elements at any depth)."""
    findings = []
    for elem in ds:
        if elem.VR == "UI":
            if any(v.encode("ascii", "replace") in hits for v in _text_values(elem.value)):
                findings.append(Finding(rel, "original_uid", _tag(elem.tag), elem.keyword, location or "top"))
        elif elem.VR == "SQ":
            name = elem.keyword or _tag(elem.tag)
            for k, item in enumerate(elem.value):
                prefix = f"{location}." if location else ""
                findings += _uid_locations(item, rel, hits, f"{prefix}{name}[{k}]")
    return findings


def _binary(value: object) -> bool:
    return isinstance(value, bytes) and len(value) > 0


def _text_values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        return []
    if isinstance(value, str):
        return [v.strip("\0 ") for v in value.split("\\")]
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v).strip("\0 ") for v in value]
    return [str(value)]


def _iter_elements(
    ds: Dataset, location: str, profile: Profile | None = None
) -> Iterator[tuple[pydicom.DataElement, str, frozenset[BaseTag]]]:
    safe = _safe_private_tags(ds, profile) if profile is not None and profile.safe_private else frozenset()
    for elem in ds:
        yield elem, location or "top", safe
        if elem.VR == "SQ":
            name = elem.keyword or _tag(elem.tag)
            for k, item in enumerate(elem.value):
                prefix = f"{location}." if location else ""
                yield from _iter_elements(item, f"{prefix}{name}[{k}]", profile)


def _read(data: bytes) -> Dataset | None:
    return _read_from(io.BytesIO(data))


def _read_from(fp: io.BytesIO) -> Dataset | None:
    """The header of a Part 10 file up to its pixel data (``fp`` then stands there)."""
    if bytes(fp.getbuffer()[128:132]) != b"DICM":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pydicom_config.disable_value_validation():
                return pydicom.dcmread(fp, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any parsing problem makes the file unreadable
        return None


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
