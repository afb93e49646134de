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
- ``trailing_data``: bytes after the end of the data set (after its last valid element): a
  writer that appends is a finding;
- ``preamble``: a 128-byte preamble that is not zero (the app always writes zeros);
- ``unreadable``: a file that looks like DICOM but cannot be parsed (its bytes are still searched).

The audit reads files with a scanner of its own (:class:`_Scan`, and
:mod:`orbitct_app.deid.audit_bytes` for the structure), sharing only constants with the writer
and with discovery's walk, so a mistake there is not repeated here. A file's header is read into
memory; its pixel data only in bounded pieces (the phi list search).

A finding names the file, the check, the tag and keyword, and where in the sequences it sits,
never the offending value: for a listed string only its line number in the list.

The anonymize stage runs the audit on every exam it writes (``deid_audit.csv``; a finding makes
the run exit with code 3); ``orbitct-app INPUT OUTPUT anonymize --audit-only`` runs it alone on an
earlier output, re-reading the original UIDs from INPUT_DIR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import cast

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]  # public, not marked as re-exported

from orbitct_app.deid.apply import may_be_sequence, safe_private_tags
from orbitct_app.deid.audit_bytes import (
    VR_16,
    VR_32,
    Shape,
    Stream,
    Unplain,
    Unreadable,
    looks_explicit,
    read_shape,
    scan_meta,
)
from orbitct_app.deid.audit_bytes import FileRegion as FileRegion  # part of this module's interface
from orbitct_app.deid.profiles import DUMMY_VALUES, Action, Profile, is_structural_uid
from orbitct_app.dicomio.parse import (  # constants only: the audit reads with a scanner of its own
    DELIMITER_GROUP,
    ITEM,
    ITEM_END,
    MAX_NESTING,
    PIXEL_DATA_TAGS,
    SEQ_END,
    UNDEFINED,
    dictionary_vr,
)
from orbitct_app.errors import OrbitctError
from orbitct_app.paths import iter_exam_files, open_regular

MIN_PHI_LENGTH = 4
"""Shorter entries of a phi list are ignored: they would match by chance (a sex, an initial)."""

_UID_TOKEN = re.compile(rb"[0-9]+(?:\.[0-9]+)+")


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


def _phi_string_findings(rel: str, rel_bytes: bytes, stream: Stream, phi: PhiList) -> list[Finding]:
    """Entries of the phi list in a file's path and in its bytes (case-insensitive), searched
    in bounded pieces that overlap by the longest entry."""
    findings = [
        Finding(rel, "phi_string", detail=f"phi list line {number}, in the file path")
        for number, text in phi.entries
        if text in rel_bytes.lower()
    ]
    if not phi:
        return findings
    overlap = max(len(text) for _, text in phi.entries) - 1
    found: set[int] = set()
    carry = b""
    for chunk in stream.chunks():
        window = carry + chunk.lower()
        found.update(number for number, text in phi.entries if number not in found and text in window)
        carry = window[-overlap:] if overlap else b""
    findings.extend(Finding(rel, "phi_string", detail=f"phi list line {number}")
                    for number, _ in phi.entries if number in found)
    return findings


def audit_written(
    parts: Sequence[bytes | FileRegion], rel: str, profile: Profile, pseudonym: str, phi: PhiList
) -> Written:
    """Audit a file as it was written (the concatenation of ``parts``: bytes held in memory and
    regions of the file itself), without reading its header back.

    The checks are those of :func:`audit_file`, on a data set parsed here (by the audit's own
    scanner, or by pydicom), independently of the writer, except the original-UID check: the
    original UIDs of an exam are known only when all its files are done, so the UID-like tokens
    are kept for :func:`audit_tree`.
    """
    with Stream(parts) as stream:
        findings, tokens, complete = _audit_stream(stream, rel, profile, pseudonym, phi, None)
    return Written(findings, frozenset(tokens), complete)


def audit_file(
    path: Path, rel: str, profile: Profile, pseudonym: str, originals: set[bytes], phi: PhiList
) -> list[Finding]:
    """Audit one file on disk (see the module docstring for the checks)."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            with Stream([FileRegion(path, 0, size)], {path: fh.fileno()}) as stream:
                return _audit_stream(stream, rel, profile, pseudonym, phi, originals)[0]
    except OrbitctError as err:
        return [Finding(rel, "unreadable", detail=str(err))]
    except OSError as err:
        return [Finding(rel, "unreadable", detail=f"cannot read file ({err.strerror or type(err).__name__})")]
    except Exception as err:  # noqa: BLE001 - a file the audit cannot read is a finding, never a crash
        return [Finding(rel, "unreadable", detail=f"cannot be audited ({type(err).__name__})")]


def _audit_stream(
    stream: Stream, rel: str, profile: Profile, pseudonym: str, phi: PhiList, originals: set[bytes] | None
) -> tuple[list[Finding], set[bytes], bool]:
    """The findings of one file, the UID-like tokens of its header and path, and whether its
    data set could be parsed. With ``originals`` (a file read from disk), the original-UID
    check is made here too."""
    rel_bytes = rel.encode("utf-8", "replace")
    findings = [Finding(rel, "original_uid", detail="in the file path")
                for token in _UID_TOKEN.findall(rel_bytes) if originals and token in originals]
    findings += _phi_string_findings(rel, rel_bytes, stream, phi)
    tokens = set(_UID_TOKEN.findall(rel_bytes)) if profile.needs_key or originals else set()
    try:
        shape = read_shape(stream)
    except Unreadable as err:
        if stream.read(128, 4) == b"DICM" or rel.lower().endswith(".dcm"):
            findings.append(Finding(rel, "unreadable", detail=f"cannot be parsed as DICOM: {err}"))
        return findings, tokens, False
    if shape.inflated is not None and phi:  # the deflated bytes hide text: search the data set too
        known = {f.detail for f in findings}
        findings += [f for f in _phi_string_findings(rel, b"", Stream([shape.inflated]), phi)
                     if f.detail not in known]
    if shape.trailing:
        findings.append(Finding(rel, "trailing_data", detail=f"{shape.trailing} byte(s) after the end of "
                                f"the data set ({shape.trailing_at})"))
    if shape.prefix[:128].strip(b"\0"):
        findings.append(Finding(rel, "preamble", detail="the 128-byte preamble is not zero"))
    header = shape.prefix + shape.body
    hits: set[bytes] = set()
    if profile.needs_key or originals:
        tokens.update(_UID_TOKEN.findall(header))
        hits = originals.intersection(tokens) if originals else set()
    scanned = None if shape.deflated or not shape.little else _Scan.of(header, profile, pseudonym, rel)
    ds = None
    if scanned is not None and scanned[1] == len(header):
        findings += scanned[0]
    else:
        ds = _read_body(shape)
        if ds is None:
            findings.append(Finding(rel, "unreadable", detail="its data set cannot be parsed"))
            return findings, tokens, False
        try:
            findings += _check_dataset(ds, rel, profile, pseudonym, "") + _meta_findings(shape.meta, rel, set())
        except Exception:  # noqa: BLE001 - an element that cannot be parsed: the file is unreadable
            findings.append(Finding(rel, "unreadable", detail="an element cannot be parsed"))
            return findings, tokens, False
    if hits:
        if ds is None:
            ds = _read_body(shape)
        located: list[Finding] = []
        if ds is not None:
            with contextlib.suppress(Exception):
                located = _uid_locations(ds, rel, hits, "")
        located += [f for f in _meta_findings(shape.meta, rel, hits) if f.check == "original_uid"]
        findings += located or [Finding(rel, "original_uid", detail=f"{len(hits)} original UID(s) in the bytes")]
    return findings, tokens, True


def _read_body(shape: Shape) -> Dataset | None:
    """The data set (without pixel data) as pydicom reads it, or None when it cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pydicom_config.disable_value_validation():
                return read_dataset(io.BytesIO(shape.body), shape.implicit, shape.little)
    except Exception:  # noqa: BLE001 - any parsing problem makes the file unreadable
        return None


def _meta_findings(meta: Mapping[int, bytes], rel: str, hits: set[bytes]) -> list[Finding]:
    """Private information in the file meta; an original UID as its MediaStorageSOPInstanceUID."""
    findings = [Finding(rel, "private", _tag(tag), keyword_for_tag(tag), "file meta")
                for tag in (0x00020100, 0x00020102) if tag in meta]
    if meta.get(0x00020003, b"").rstrip(b"\0 ") in hits:
        findings.append(Finding(rel, "original_uid", "(0002,0003)", "MediaStorageSOPInstanceUID", "file meta"))
    return findings


def original_uids(exam_dir: Path) -> set[str]:
    """Every instance UID value in the headers of an exam's files (not the UIDs of classes,
    syntaxes or coding schemes, nor any UID registered in the standard); each file is read
    as the audit reads it (its header only, a deflated one within its cap)."""
    found: set[str] = set()
    for path in _regular_files(exam_dir):
        try:
            with open_regular(path) as fh:
                size = os.fstat(fh.fileno()).st_size
                with Stream([FileRegion(path, 0, size)], {path: fh.fileno()}) as stream:
                    shape = read_shape(stream)
        except (OrbitctError, OSError, Unreadable):
            continue
        ds = _read_body(shape)
        if ds is not None:
            try:
                for elem in ds.iterall():
                    if elem.VR == "UI" and not is_structural_uid(elem.keyword):
                        for value in _text_values(elem.value):
                            if value and value not in UID_dictionary:
                                found.add(value)
            except Exception:  # noqa: BLE001 - an unparsable element: take what was read
                pass
        instance = shape.meta.get(0x00020003, b"").decode("ascii", "replace").strip("\0 ")
        if instance:
            found.add(instance)
    return found


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

    Unplain = Unplain

    def __init__(self, data: bytes, profile: Profile, pseudonym: str, rel: str, implicit: bool) -> None:
        self.data = data
        self.profile = profile
        self.pseudonym = pseudonym.encode("ascii")
        self.rel = rel
        self.implicit = implicit
        self.findings: list[Finding] = []
        self.depth = 0
        """Data sets open (nested items): deeper than :data:`MAX_NESTING` is left to pydicom."""

    @classmethod
    def of(cls, data: bytes, profile: Profile, pseudonym: str, rel: str) -> tuple[list[Finding], int, bool] | None:
        """(findings, offset of the pixel data or end of data, implicit VR) or None."""
        if profile.safe_private or len(data) < 132 or data[128:132] != b"DICM":
            return None
        try:
            meta, pos = scan_meta(data)
            syntax = meta.get(0x00020010, b"").rstrip(b"\0 ")
            if syntax == b"1.2.840.10008.1.2":
                implicit = True
            elif syntax == b"1.2.840.10008.1.2.1" or (
                syntax.startswith(b"1.2.840.10008.1.2.4.") or syntax == b"1.2.840.10008.1.2.5"
            ):
                implicit = False
            else:
                return None
            if pos + 6 <= len(data) and implicit == looks_explicit(data, pos):
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
        if self.implicit or group == DELIMITER_GROUP:  # delimiters have no VR
            return group << 16 | number, None, pos + 8, struct.unpack_from("<L", data, pos + 4)[0]
        vr = data[pos + 4 : pos + 6]
        if vr in VR_32:
            if pos + 12 > end:
                raise self.Unplain
            return group << 16 | number, vr.decode(), pos + 12, struct.unpack_from("<L", data, pos + 8)[0]
        if vr in VR_16:
            return group << 16 | number, vr.decode(), pos + 8, struct.unpack_from("<H", data, pos + 6)[0]
        raise self.Unplain

    def dataset(self, pos: int, end: int, location: str, *, top: bool = False, item: bool = False) -> int:
        """Check the elements from ``pos``; returns where they end (the pixel data at top level,
        the item delimiter of an undefined-length item)."""
        self.depth += 1
        try:
            return self._dataset(pos, end, location, top=top, item=item)
        finally:
            self.depth -= 1

    def _dataset(self, pos: int, end: int, location: str, *, top: bool, item: bool) -> int:
        if self.depth > MAX_NESTING + 1:
            raise self.Unplain
        profile = self.profile
        where = location or "top"
        last = -1
        while pos < end:
            tag, vr, start, length = self.element(pos, end)
            if tag >> 16 == DELIMITER_GROUP:
                if item and tag == ITEM_END:
                    return pos
                raise self.Unplain
            if top and tag in PIXEL_DATA_TAGS:
                return pos
            if tag <= last or tag >> 16 < 0x0008:
                raise self.Unplain
            last = tag
            sequence = vr == "SQ" or (vr is None and (length == UNDEFINED or dictionary_vr(tag) == "SQ"))
            if vr == "UN" and (length == UNDEFINED or dictionary_vr(tag) == "SQ"):
                raise self.Unplain  # pydicom reads it as an implicit VR sequence
            if length == UNDEFINED:
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
            if undefined and (group << 16 | number) == SEQ_END:
                return found, pos
            if (group << 16 | number) != ITEM:
                raise self.Unplain
            pos += 8
            if not self.implicit and length and pos + 6 <= end and not looks_explicit(data, pos):
                raise self.Unplain  # pydicom reads such an item as implicit VR
            if length == UNDEFINED:
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
        self.depth += 1
        try:
            return self._skip_item(pos, end)
        finally:
            self.depth -= 1

    def _skip_item(self, pos: int, end: int) -> int:
        if self.depth > MAX_NESTING + 1:
            raise self.Unplain
        while True:
            tag, _, start, length = self.element(pos, end)
            if tag == ITEM_END:
                return pos
            if length == UNDEFINED:
                _, value_end = self.items(start, end, undefined=True)
                pos = value_end + 8
            else:
                pos = start + length
            if pos > end:
                raise self.Unplain


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
    safe = safe_private_tags(ds, profile) if profile.safe_private else frozenset()
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
        if may_be_sequence(raw):
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
    if isinstance(raw, RawDataElement) and raw.VR != "SQ" and not may_be_sequence(raw):
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
