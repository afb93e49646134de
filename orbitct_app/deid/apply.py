"""Apply a de-identification profile to a pydicom data set, at every depth.

This module knows how to walk a data set, not which attributes matter: that is the profile's
table (:mod:`orbitct_app.deid.profiles`). The walk visits every element of the data set and of
every sequence item below it. Values of the attributes the table names are replaced without being
decoded (a new element takes the old one's place), and elements that are neither in the table nor
sequences are left raw, so pixel data and everything else is written back byte for byte.

No value of the data set ever goes into a log line or an exception message.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from orbitct_app.deid.keys import shift_date
from orbitct_app.deid.profiles import DUMMY_VALUES, Action, Profile
from orbitct_app.dicomio.parse import MAX_NESTING, TEXT_VRS, UNDEFINED, dictionary_vr
from orbitct_app.errors import DeidError

logger = logging.getLogger(__name__)

PSEUDONYM_MAX_LENGTH = 64
"""Longest pseudonym: the maximum length of a PN component group and of LO."""

_PIXEL_DATA = BaseTag(0x7FE00010)


@dataclasses.dataclass
class DeidStats:
    """What a profile did to one data set (counts only: never values)."""

    replaced: int = 0
    """Elements given a new value (pseudonym, empty or dummy)."""
    removed: int = 0
    """Elements removed because the table says REMOVE."""
    private_removed: int = 0
    """Private elements removed (a private sequence counts once, whatever it held)."""
    sequences: int = 0
    """Sequence elements walked into."""
    rules: collections.Counter[tuple[int, str]] | None = None
    """When not None: how often each rule applied, by (tag, action letter); private elements
    removed count under tag -1 (for ``--dry-run``)."""


PRIVATE_RULE = -1
"""The tag under which :attr:`DeidStats.rules` counts removed private elements."""


@dataclasses.dataclass(frozen=True)
class _Context:
    pseudonym: str
    uids: Callable[[str], str] | None
    date_offset: int | None
    stats: DeidStats


def check_pseudonym(pseudonym: str) -> str:
    """Return ``pseudonym`` if it can stand as PatientName and PatientID, else raise.

    Raises
    ------
    DeidError
        If it is empty, longer than 64 characters, not printable ASCII or holds a backslash (the
        DICOM value separator).
    """
    if not pseudonym:
        raise DeidError("the pseudonym is empty")
    if len(pseudonym) > PSEUDONYM_MAX_LENGTH:
        raise DeidError(f"the pseudonym {pseudonym!r} is longer than {PSEUDONYM_MAX_LENGTH} characters")
    if not pseudonym.isascii() or not pseudonym.isprintable() or "\\" in pseudonym:
        raise DeidError(
            f"the pseudonym {pseudonym!r} must be printable ASCII without a backslash"
        )
    return pseudonym


def apply_profile(
    ds: Dataset,
    profile: Profile,
    *,
    pseudonym: str,
    uids: Callable[[str], str] | None = None,
    date_offset: int | None = None,
    count_rules: bool = False,
) -> DeidStats:
    """De-identify ``ds`` in place: apply the profile's table at every depth, remove private tags.

    Parameters
    ----------
    ds
        The data set (top level; its ``file_meta`` is not touched).
    profile
        The table of actions and flags to apply.
    pseudonym
        The value of :attr:`Action.REPLACE_PSEUDONYM` (see :func:`check_pseudonym`).
    uids
        Maps an original UID to its replacement (:attr:`Action.REMAP_UID`), e.g. a
        :class:`~orbitct_app.deid.keys.UidMap`.
    date_offset
        Days added to every date (:attr:`Action.SHIFT_DATE`).
    count_rules
        Count each rule applied in :attr:`DeidStats.rules`.

    Returns
    -------
    DeidStats
        Counts of what changed.

    Raises
    ------
    DeidError
        If the pseudonym is unusable, a standard sequence cannot be parsed (so its items
        cannot be checked), or the profile remaps UIDs or shifts dates and ``uids`` or
        ``date_offset`` is missing.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> from orbitct_app.deid.profiles import ORBITCT
    >>> ds = Dataset()
    >>> ds.PatientName = "DOE^JANE"
    >>> stats = apply_profile(ds, ORBITCT, pseudonym="exam_001")
    >>> str(ds.PatientName), stats.replaced
    ('exam_001', 1)
    """
    check_pseudonym(pseudonym)
    stats = DeidStats(rules=collections.Counter() if count_rules else None)
    _walk(ds, profile, _Context(pseudonym, uids, date_offset, stats))
    return stats


def remove_private(ds: Dataset) -> int:
    """Remove every private element of ``ds`` at every depth; return how many were removed."""
    stats = DeidStats()
    _walk(ds, _PRIVATE_ONLY, _Context("", None, None, stats))
    return stats.private_removed


def mark_deidentified(
    ds: Dataset,
    method: str | Sequence[str],
    *,
    codes: Sequence[tuple[str, str]] = (),
    temporal: str = "",
) -> None:
    """Record at top level that ``ds`` was de-identified, and how (PS3.15 E.1.1).

    Sets PatientIdentityRemoved to ``YES``. DeidentificationMethod becomes its earlier values
    followed by ``method`` (see :func:`merge_methods`: a file de-identified elsewhere keeps
    saying so, and a repeated run does not pile values up). With ``codes`` (CID 7050 code
    values and meanings), DeidentificationMethodCodeSequence keeps its earlier items and gains
    one item per code whose value is not there yet; with ``temporal``,
    LongitudinalTemporalInformationModified is set to it.
    """
    ours = [method] if isinstance(method, str) else list(method)
    earlier = ds.get("DeidentificationMethod")
    if earlier is None or earlier == "":
        earlier_values: list[str] = []
    else:
        earlier_values = [str(earlier)] if isinstance(earlier, str) else [str(v) for v in earlier]
    ds.PatientIdentityRemoved = "YES"
    merged = merge_methods(earlier_values, ours)
    ds.DeidentificationMethod = merged[0] if len(merged) == 1 else merged
    if codes:
        items = list(ds.get("DeidentificationMethodCodeSequence") or [])
        present = {str(item.get("CodeValue", "") or "").strip() for item in items}
        items += [item for item in _code_items(tuple(codes)) if item.CodeValue not in present]
        ds.DeidentificationMethodCodeSequence = items
    if temporal:
        ds.LongitudinalTemporalInformationModified = temporal


def merge_methods(earlier: Sequence[str], ours: Sequence[str]) -> list[str]:
    """DeidentificationMethod values: the earlier ones, then ours, each once, none empty."""
    return list(dict.fromkeys(v for v in (*earlier, *ours) if v))


@functools.lru_cache(maxsize=64)
def _code_items(codes: tuple[tuple[str, str], ...]) -> tuple[Dataset, ...]:
    """The code sequence items, built once per set of codes (they are only ever written)."""
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    return tuple(items)


# --- the walk ---------------------------------------------------------------------------------


def _walk(ds: Dataset, profile: Profile, ctx: _Context, depth: int = 0) -> None:
    if depth > MAX_NESTING:  # files are refused deeper in discovery: never a recursion limit here
        raise DeidError(f"sequences nested deeper than {MAX_NESTING} levels")
    actions = profile.actions
    stats = ctx.stats
    rules = stats.rules
    safe = safe_private_tags(ds, profile) if profile.safe_private else frozenset()
    for tag in list(ds.keys()):
        if profile.remove_private and tag.is_private:
            if tag in safe:
                continue  # a safe private attribute (numeric) or the creator of its block
            del ds[tag]
            stats.private_removed += 1
            if rules is not None:
                rules[(PRIVATE_RULE, Action.REMOVE.value)] += 1
            continue
        if profile.remove_groups and tag >> 16 >= 0x5000 and profile.removes_group(tag >> 16):
            del ds[tag]
            stats.removed += 1
            if rules is not None:
                rules[(int(tag), Action.REMOVE.value)] += 1
            continue
        action = actions.get(tag)
        if action is not None:
            if rules is not None:
                rules[(int(tag), action.value)] += 1
            if action is not Action.KEEP:
                _apply(ds, tag, action, ctx)
                continue
        if may_be_sequence(ds.get_item(tag, keep_deferred=True)):
            elem = ds[tag]
            if elem.VR != "SQ":
                raise DeidError(f"sequence {tag} could not be parsed, so its items cannot be checked")
            stats.sequences += 1
            for item in elem.value:
                _walk(item, profile, ctx, depth + 1)


def safe_private_tags(ds: Dataset, profile: Profile) -> frozenset[BaseTag]:
    """The private tags of ``ds`` that the profile's safe list keeps, with their creators."""
    creators: dict[tuple[int, int], str] = {}
    for tag in ds.keys():
        if tag.is_private and 0x10 <= tag.element <= 0xFF:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            creators[(tag.group, tag.element)] = str(value).strip(" \0")
    keep: set[BaseTag] = set()
    for tag in ds.keys():
        if tag.is_private and tag.element > 0xFF:
            block = tag.element >> 8
            creator = creators.get((tag.group, block))
            if creator is not None and (tag.group, creator, tag.element & 0xFF) in profile.safe_private:
                keep.add(tag)
                keep.add(BaseTag(tag.group << 16 | block))
    return frozenset(keep)


def may_be_sequence(elem: DataElement | RawDataElement | None) -> bool:
    """True when ``elem`` is, or may be once parsed, a standard sequence."""
    if elem is None:
        return False
    if not isinstance(elem, RawDataElement):
        return elem.VR == "SQ"
    if elem.VR == "SQ":
        return True
    if elem.VR is None or elem.VR == "UN":  # implicit VR, or explicit VR unknown to the writer
        if elem.length == UNDEFINED and elem.tag != _PIXEL_DATA:
            return True  # only sequences (and encapsulated pixel data) have undefined length
        return dictionary_vr(elem.tag) == "SQ"
    return False


def _apply(ds: Dataset, tag: BaseTag, action: Action, ctx: _Context) -> None:
    stats = ctx.stats
    if action is Action.REMOVE:
        del ds[tag]
        stats.removed += 1
        return
    vr = _target_vr(ds, tag)
    value: Any
    if action is Action.REMAP_UID:
        if ctx.uids is None:
            raise DeidError("the profile remaps UIDs, but no UID map (key) was given")
        value = _values(ds[tag].value)
        if vr != "UI" or value is None:
            del ds[tag]  # not a UID after all (a private VR or binary): nothing to remap, so remove
            stats.removed += 1
            return
        value = "\\".join(ctx.uids(v) for v in value)
    elif action is Action.SHIFT_DATE:
        if ctx.date_offset is None:
            raise DeidError("the profile shifts dates, but no date offset (key) was given")
        if vr == "TM":
            return  # whole-day offsets leave times of day as they are
        values = _values(ds[tag].value) if vr in ("DA", "DT") else None
        shifted = [shift_date(v, ctx.date_offset) for v in values] if values is not None else [None]
        dates = [v for v in shifted if v is not None]
        if len(dates) != len(shifted):
            del ds[tag]  # unparsable or not a date: removed, as without the option
            stats.removed += 1
            return
        value = "\\".join(dates)
    elif action is Action.REPLACE_PSEUDONYM:
        value = ctx.pseudonym
    elif action is Action.DUMMY and vr in DUMMY_VALUES:
        value = DUMMY_VALUES[vr]
    elif vr == "SQ":
        value = []
    else:  # EMPTY, or DUMMY for a VR without a dummy value (UI, binary)
        value = "" if vr in TEXT_VRS else None
    # A new element replaces the old one: the old value is never decoded.
    ds[tag] = DataElement(tag, vr, value)
    stats.replaced += 1


def _values(value: Any) -> list[str] | None:
    """The string values of a decoded element (None when it is not text)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return value.split("\\")
    if isinstance(value, (list, MultiValue)):
        return [str(v) for v in value]
    return None


def _target_vr(ds: Dataset, tag: BaseTag) -> str:
    """The VR of the replacement: the dictionary's, else the element's own (UN when unknown)."""
    vr = dictionary_vr(tag)
    if vr and " or " not in vr:
        return vr
    old = ds.get_item(tag, keep_deferred=True)
    return str(old.VR) if old is not None and old.VR and old.VR != "UN" else "UN"


_PRIVATE_ONLY = Profile(name="private-only", actions={}, remove_private=True)
