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

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

from orbitct_app.deid.apply import _may_be_sequence, _safe_private_tags
from orbitct_app.deid.profiles import DUMMY_VALUES, Action, Profile, is_structural_uid

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
    for path in sorted(p for p in exam_dir.rglob("*") if p.is_file()):
        ds = _read(path.read_bytes())
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
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
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
    for number, text in phi.entries:
        if text in rel_bytes.lower():
            findings.append(Finding(rel, "phi_string", detail=f"phi list line {number}, in the file path"))
    if phi:
        lowered = whole.lower()
        for number, text in phi.entries:
            if text in lowered:
                findings.append(Finding(rel, "phi_string", detail=f"phi list line {number}"))
    head = bytes(parts[0])
    fp = io.BytesIO(head)
    ds = _read_from(fp)
    if ds is None:
        return Written(findings, frozenset(tokens), False)
    rest = [memoryview(head)[fp.tell():], *(memoryview(p) for p in parts[1:])]
    rest = [r for r in rest if len(r)]
    if len(rest) > 1 or (rest and not _only_pixel_data(rest[0], ds)):
        return Written(findings, frozenset(tokens), False)
    try:
        findings += _check_dataset(ds, rel, profile, pseudonym, "")
    except Exception:  # noqa: BLE001 - an element that cannot be parsed: audited from disk
        return Written(findings, frozenset(tokens), False)
    findings += _check_meta(ds, rel, set())
    return Written(findings, frozenset(tokens), True)


def _only_pixel_data(tail: memoryview, ds: Dataset) -> bool:
    """Whether ``tail`` is exactly one pixel data element (little endian), native or
    encapsulated; elements after it would otherwise escape the header checks."""
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    if syntax == "1.2.840.10008.1.2.1.99" or syntax == "1.2.840.10008.1.2.2":
        return False  # deflated or big endian: checked from disk
    implicit = syntax == "1.2.840.10008.1.2"
    if len(tail) < 12 or bytes(tail[:4]) != _PIXEL_TAG_LE:
        return False
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
    data = path.read_bytes()
    # the path itself
    rel_bytes = rel.encode("utf-8", "replace")
    for token in _UID_TOKEN.findall(rel_bytes):
        if token in originals:
            findings.append(Finding(rel, "original_uid", detail="in the file path"))
    for number, text in phi.entries:
        if text in rel_bytes.lower():
            findings.append(Finding(rel, "phi_string", detail=f"phi list line {number}, in the file path"))
    # the bytes
    if phi:
        lowered = data.lower()
        for number, text in phi.entries:
            if text in lowered:
                findings.append(Finding(rel, "phi_string", detail=f"phi list line {number}"))
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
    if len(tail) and not _only_pixel_data(tail, ds):
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
                for tag in full.keys():
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
            problem = _violates(ds, tag, raw, action, pseudonym)  # type: ignore[arg-type]
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
) -> Iterator[tuple[pydicom.DataElement, str, frozenset]]:
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
    if fp.getbuffer()[128:132] != b"DICM":
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
