"""De-identify a DICOM file's header bytes directly: the fast path of the anonymize stage.

The profile (:mod:`orbitct_app.deid.profiles`) is applied to the encoded elements, at every depth,
without building pydicom objects: elements left alone are copied with their value bytes, and new
values are encoded as pydicom's writer encodes them. The pixel data element is not here: the
anonymize stage copies it from the source file (:func:`orbitct_app.dicomio.write.pixel_pieces`). The
result is byte for byte what :func:`orbitct_app.deid.files.anonymize_file`'s pydicom path
(``dcmread``, :func:`~orbitct_app.deid.apply.apply_profile`, ``encode_part10``) writes; the tests
compare the two on every kind of input the project has.

Only the common case is handled: a Part 10 file (preamble and ``DICM``) in implicit or explicit
VR little endian, elements in ascending order, standard sequences encoded as SQ, an
ASCII-compatible character set, and no element after the pixel data. Anything else (deflated or
big-endian data, elements after the pixel data such as private groups, sequences stored as UN,
undefined-length values that are not sequences, duplicate or unsorted tags, a profile keeping
safe private attributes, an earlier DeidentificationMethodCodeSequence to extend ...) raises
:class:`Unsupported`, and the caller takes the full pydicom path. Unsupported is never an error
of the file: it only chooses the path.

The elements are read by :mod:`orbitct_app.dicomio.parse`; new elements and the file meta are
encoded by :mod:`orbitct_app.dicomio.write`. No value of the file ever goes into an exception
message.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from orbitct_app.deid.apply import DeidStats, merge_methods
from orbitct_app.deid.keys import shift_date
from orbitct_app.deid.profiles import DUMMY_VALUES, Action, Profile
from orbitct_app.dicomio.header import converted_value
from orbitct_app.dicomio.parse import (
    ITEM,
    ITEM_END,
    SEQ_END,
    SQ,
    TEXT_VRS,
    UNDEFINED,
    Element,
    Item,
    Unsupported,
    ascii_identity,
    dictionary_vr,
    parse_part10,
    uid_text,
)
from orbitct_app.dicomio.write import file_meta_bytes, item_header, new_element, plain_header

__all__ = ["Element", "Item", "Plan", "Result", "Unsupported", "deidentify"]


_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_CLASS = 0x00080016
_SOP_INSTANCE = 0x00080018
_PATIENT_ID = 0x00100020
_DEIDENTIFICATION_METHOD = 0x00120063
_DEIDENTIFICATION_CODES = 0x00120064

_ITEM_END_BYTES = item_header(ITEM_END, 0)
_SEQ_END_BYTES = item_header(SEQ_END, 0)
_UNDEFINED_ITEM = item_header(ITEM, UNDEFINED)


# --- the walk -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    """What to do with one file beyond the table: the pseudonym, the key's maps, the marks."""

    profile: Profile
    pseudonym: str
    uids: Callable[[str], str] | None
    date_offset: Callable[[str], int | None]
    """Date offset for the file's (stripped) PatientID; also records it (basic profile)."""
    marks: tuple[tuple[int, str, Any], ...]
    """(tag, VR, value) set at top level after the profile (PatientIdentityRemoved ...);
    a list value is multi-valued; for the code sequence, a tuple of (value, meaning) pairs."""


_ACTIONS: dict[int, tuple[Profile, dict[int, Action]]] = {}


def _actions(profile: Profile) -> dict[int, Action]:
    """The profile's table as a plain dict of int tags (built once per profile object)."""
    entry = _ACTIONS.get(id(profile))
    if entry is None or entry[0] is not profile:
        entry = _ACTIONS[id(profile)] = (profile, {int(tag): action for tag, action in profile.actions.items()})
    return entry[1]


@functools.lru_cache(maxsize=8192)
def _target_vr_of(tag: int) -> str:
    vr = dictionary_vr(tag)
    return vr if vr and " or " not in vr else ""


class _Walker:
    def __init__(self, data: bytes, implicit: bool, plan: Plan, date_offset: int | None) -> None:
        self.data = data
        self.implicit = implicit
        self.plan = plan
        self.profile = plan.profile
        self.actions = _actions(plan.profile)
        self.offset = date_offset
        self.stats = DeidStats()

    def target_vr(self, elem: Element) -> str:
        vr = _target_vr_of(elem.tag)
        if vr:
            return vr
        return elem.vr if elem.vr and elem.vr != "UN" else "UN"

    def strings(self, elem: Element, vr: str) -> list[str]:
        """The values of a UI, DA or DT element as pydicom decodes them."""
        if elem.vr is not None and elem.vr != vr:
            raise Unsupported("encoded VR differs from the dictionary's")
        text = self.data[elem.start : elem.end].decode("latin-1").rstrip(" \0")
        if not text:
            return []
        if vr == "UI":  # pydicom's UID strips each value
            return [v.strip() for v in text.split("\\")]
        return text.split("\\")

    def dataset(self, elements: list[Element], out: list[tuple[int, bytes]]) -> None:
        """Apply the profile to one data set's elements; append (tag, encoded element)."""
        profile = self.profile
        actions = self.actions
        stats = self.stats
        for elem in elements:
            tag = elem.tag
            group = tag >> 16
            if group & 1:
                if not profile.remove_private:
                    raise Unsupported("profile keeps private elements")
                stats.private_removed += 1
                continue
            if profile.remove_groups and group >= 0x5000 and profile.removes_group(group):
                stats.removed += 1
                continue
            if tag & 0xFFFF == 0:
                continue  # a group length: pydicom's writer leaves it out (groups 0008 and up)
            action = actions.get(tag)
            if action is not None and action is not Action.KEEP:
                encoded = self.apply(elem, action)
                if encoded is not None:
                    out.append((tag, encoded))
                continue
            if elem.items is not None:  # every sequence, parsed with its items by parse_dataset
                out.append((tag, self.sequence(elem.tag, elem.undefined, elem.items)))
                continue
            if elem.vr == "UN" and (elem.undefined or dictionary_vr(tag) == SQ):
                raise Unsupported("sequence stored as UN")
            out.append((tag, self.copy(elem)))

    def copy(self, elem: Element) -> bytes:
        """An element left alone: its header and value as in the file, when its header is
        what pydicom writes (reserved bytes zero), else with a rebuilt header."""
        if self.implicit or elem.vr not in EXPLICIT_VR_LENGTH_32:
            return self.data[elem.start - 8 : elem.end]
        if self.data[elem.start - 6 : elem.start - 4] == b"\0\0":
            return self.data[elem.start - 12 : elem.end]
        return self.raw(elem)

    def raw(self, elem: Element) -> bytes:
        return plain_header(elem.tag, elem.vr or "UN", elem.end - elem.start, self.implicit) + self.data[
            elem.start : elem.end
        ]

    def sequence(self, tag: int, undefined: bool, items: list[Item]) -> bytes:
        self.stats.sequences += 1
        parts = []
        for item in items:
            out: list[tuple[int, bytes]] = []
            if any(e.tag == _SPECIFIC_CHARACTER_SET for e in item.elements):
                raise Unsupported("character set inside a sequence item")
            self.dataset(item.elements, out)
            body = b"".join(encoded for _, encoded in out)
            if item.undefined:
                parts.append(_UNDEFINED_ITEM + body + _ITEM_END_BYTES)
            else:
                parts.append(item_header(ITEM, len(body)) + body)
        value = b"".join(parts)
        if undefined:
            return plain_header(tag, SQ, UNDEFINED, self.implicit) + value + _SEQ_END_BYTES
        return plain_header(tag, SQ, len(value), self.implicit) + value

    def apply(self, elem: Element, action: Action) -> bytes | None:
        """The element replacing ``elem`` under ``action`` (None: removed); see
        :func:`orbitct_app.deid.apply._apply`, which this mirrors."""
        stats = self.stats
        if action is Action.REMOVE:
            stats.removed += 1
            return None
        vr = self.target_vr(elem)
        value: Any
        if action is Action.REMAP_UID:
            uids = self.plan.uids
            if uids is None:
                raise Unsupported("no UID map")
            if vr != "UI":
                stats.removed += 1
                return None
            value = "\\".join(uids(v) for v in self.strings(elem, "UI"))
        elif action is Action.SHIFT_DATE:
            if self.offset is None:
                raise Unsupported("no date offset")
            if vr == "TM":
                if elem.items is not None or elem.vr == SQ:
                    raise Unsupported("sequence where a time was expected")
                return self.copy(elem)
            if vr not in ("DA", "DT"):
                stats.removed += 1
                return None
            shifted = [shift_date(v, self.offset) for v in self.strings(elem, vr)]
            dates = [v for v in shifted if v is not None]
            if len(dates) != len(shifted):
                stats.removed += 1
                return None
            value = "\\".join(dates)
        elif action is Action.REPLACE_PSEUDONYM:
            value = self.plan.pseudonym
        elif action is Action.DUMMY and vr in DUMMY_VALUES:
            value = DUMMY_VALUES[vr]
        elif vr == SQ:
            value = None  # an empty sequence, defined length
        else:
            value = "" if vr in TEXT_VRS else None
        stats.replaced += 1
        return new_element(elem.tag, vr, value, self.implicit)


@functools.lru_cache(maxsize=16)
def _code_sequence(codes: tuple[tuple[str, str], ...], implicit: bool) -> bytes:
    """DeidentificationMethodCodeSequence as pydicom writes a new one (defined lengths)."""
    parts = []
    for value, meaning in codes:
        body = (
            new_element(0x00080100, "SH", value, implicit)
            + new_element(0x00080102, "SH", "DCM", implicit)
            + new_element(0x00080104, "LO", meaning, implicit)
        )
        parts.append(item_header(ITEM, len(body)) + body)
    items = b"".join(parts)
    return plain_header(_DEIDENTIFICATION_CODES, SQ, len(items), implicit) + items


# --- the file -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    """The de-identified header and what changed."""

    head: bytes
    """Preamble, file meta and the data set's elements up to the pixel data (or its end)."""
    implicit: bool
    """Whether the data set is implicit VR (the pixel data element is encoded so)."""
    stats: DeidStats


def deidentify(data: bytes, plan: Plan, *, version_name: str, implementation_uid: str) -> Result:
    """De-identify the header of a Part 10 file: ``data`` holds the file up to its top-level
    pixel data element (or up to the end of its data set when it has none).

    Raises
    ------
    Unsupported
        When the file needs the full pydicom path (see the module docstring).
    """
    parsed = parse_part10(data)
    meta, syntax, implicit, elements = parsed.meta, parsed.syntax, parsed.implicit, parsed.elements
    if parsed.pixel_pos != len(data):
        raise Unsupported("pixel data inside the header")

    wanted = (_SPECIFIC_CHARACTER_SET, _SOP_CLASS, _SOP_INSTANCE, _PATIENT_ID, _DEIDENTIFICATION_METHOD,
              _DEIDENTIFICATION_CODES)
    by_tag = {e.tag: e for e in elements if e.tag in wanted}
    charset = by_tag.get(_SPECIFIC_CHARACTER_SET)
    if charset is not None and not ascii_identity(data[charset.start : charset.end]):
        raise Unsupported("character set that does not keep ASCII")
    profile = plan.profile
    if profile.safe_private or not profile.remove_private:
        raise Unsupported("profile keeps private elements")
    actions = _actions(profile)

    # The SOP Class and Instance UIDs as the pydicom path holds them: read (so re-encoded), or
    # taken from the file meta when empty; the file meta then follows the data set.
    sop: dict[int, str] = {}
    for tag, meta_tag in ((_SOP_CLASS, 0x00020002), (_SOP_INSTANCE, 0x00020003)):
        elem = by_tag.get(tag)
        if elem is not None and elem.vr not in (None, "UI"):
            raise Unsupported("SOP UID with another VR")
        if actions.get(tag) not in (None, Action.KEEP, Action.REMAP_UID):
            raise Unsupported("profile acts on a SOP UID")
        value = uid_text(data[elem.start : elem.end]) if elem is not None else ""
        if not value.strip("\0 "):
            value = uid_text(meta.get(meta_tag)).strip("\0 ")
            if not value:
                raise Unsupported("no SOP UID")  # the full path reports it
        sop[tag] = value

    date_offset = None
    if profile.needs_key:
        elem = by_tag.get(_PATIENT_ID)
        patient_id = ""
        if elem is not None:
            raw = data[elem.start : elem.end]
            if elem.vr not in (None, "LO") or b"\\" in raw or not raw.isascii() or b"\x1b" in raw:
                raise Unsupported("PatientID needs character set decoding")
            patient_id = raw.decode("ascii").rstrip("\0 ").strip()
        date_offset = plan.date_offset(patient_id)

    walker = _Walker(data, implicit, plan, date_offset)
    out: list[tuple[int, bytes]] = []
    rest = [e for e in elements if e.tag not in sop]
    walker.dataset(rest, out)
    final: dict[int, bytes] = dict(out)
    for tag, value in sop.items():
        action = actions.get(tag)
        if action is Action.REMAP_UID:
            if plan.uids is None:
                raise Unsupported("no UID map")
            value = "\\".join(plan.uids(v) for v in value.split("\\"))
            walker.stats.replaced += 1
        sop[tag] = value
        final[tag] = new_element(tag, "UI", value, implicit)
    for tag, vr, value in plan.marks:
        if tag == _DEIDENTIFICATION_CODES:
            if _DEIDENTIFICATION_CODES in by_tag:
                raise Unsupported("earlier de-identification codes to keep")  # the pydicom path merges them
            final[tag] = _code_sequence(value, implicit)
        elif tag == _DEIDENTIFICATION_METHOD:
            earlier = _text_values(data, by_tag.get(tag), "LO", implicit)
            final[tag] = new_element(tag, vr, "\\".join(merge_methods(earlier, value)), implicit)
        elif isinstance(value, (list, tuple)):
            final[tag] = new_element(tag, vr, "\\".join(value), implicit)
        else:
            final[tag] = new_element(tag, vr, value, implicit)
    head = file_meta_bytes(
        sop[_SOP_CLASS].strip("\0 "), sop[_SOP_INSTANCE].strip("\0 "), syntax, version_name,
        implementation_uid,
    )
    head += b"".join(final[tag] for tag in sorted(final))
    return Result(head, implicit, walker.stats)


def _text_values(data: bytes, elem: Element | None, vr: str, implicit: bool) -> list[str]:
    """The values of a top-level text element as pydicom reads them ([] when absent)."""
    if elem is None:
        return []
    if elem.vr not in (None, vr) or elem.items is not None:
        raise Unsupported("an earlier value with another VR")
    converted = converted_value(elem.tag, vr, data[elem.start : elem.end], implicit)
    if converted is None or converted == "":
        return []
    return [str(converted)] if isinstance(converted, str) else [str(v) for v in converted]
