"""De-identification profiles: declarative tables of attribute -> action (no I/O, no walking).

A profile is data: a name, a table mapping each attribute tag to an :class:`Action`, and a few
flags. :mod:`orbitct_app.deid.apply` applies any profile to a data set at every depth; adding a
profile (for example ``basic``, PS3.15 Table E.1-1) means adding a table here, not code there.

The ``orbitct`` profile reproduces the original de-identification script ("Script1") and makes it
thorough: the twelve attributes below are replaced wherever they occur, inside sequence items at
any depth included, and every private element (private creators and private sequences with all
they hold) is removed at every level.

========================  ====  =========================================================
attribute                 VR    value written
========================  ====  =========================================================
PatientName               PN    the exam's pseudonym (the exam folder name, ``dicom_id``)
PatientID                 LO    the exam's pseudonym
PatientBirthDate          DA    empty (zero length)
PatientSex                CS    empty
PatientAge                AS    empty
PatientAddress            LO    empty
ReferringPhysicianName    PN    empty
PerformingPhysicianName   PN    empty
OperatorsName             PN    empty
InstitutionName           LO    empty
InstitutionAddress        ST    empty
AccessionNumber           SH    empty
========================  ====  =========================================================

An attribute is only replaced where it is present; absent attributes are not added. Empty is a
valid value for every one of them (all are Type 2 or 3 in the CT and patient modules).

Both profiles also remove Data Set Trailing Padding (FFFC,FFFC) wherever it is: it has no
meaning (PS3.10 7.2), so whatever it holds can only be something that should not travel. (At the
top level the data set ends where it starts: the anonymize stage never copies it.)

The ``basic`` profile is PS3.15 Annex E's Basic Application Level Confidentiality Profile: every
attribute of Table E.1-1 (:mod:`orbitct_app.deid.table_e1_1`) with its Basic Profile action,
modified by the retain options chosen (:class:`RetainOption`, :func:`basic_profile`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword  # type: ignore[attr-defined]
from pydicom.tag import BaseTag, Tag

from orbitct_app.deid import table_e1_1
from orbitct_app.dicomio.parse import TRAILING_PADDING
from orbitct_app.errors import ProfileError


class Action(str, enum.Enum):
    """What a profile does to an attribute (letters as in PS3.15 Table E.1-1 where they exist)."""

    REPLACE_PSEUDONYM = "P"
    """Replace the value with the exam's pseudonym (string VRs only)."""
    EMPTY = "Z"
    """Replace the value with a zero-length value (an empty sequence for SQ)."""
    REMOVE = "X"
    """Remove the element."""
    DUMMY = "D"
    """Replace the value with a non-identifying dummy value valid for its VR."""
    KEEP = "K"
    """Keep the element as it is (sequence items are still walked)."""
    REMAP_UID = "U"
    """Replace each UID value by its keyed pseudonymous ``2.25.`` UID (the same in every file,
    exam and run with the same key); UIDs registered in the DICOM standard are kept."""
    SHIFT_DATE = "S"
    """Shift DA and DT values by the patient's date offset (the C of the Retain Longitudinal
    Temporal Information with Modified Dates Option); TM values are kept (whole-day offsets);
    a value that cannot be parsed is removed, and so is an element of another VR."""


PSEUDONYM_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
"""VRs that can hold a pseudonym (free text of at least 16 characters)."""

DUMMY_VALUES: Mapping[str, object] = MappingProxyType(
    {
        "AE": "ANONYMIZED",
        "AS": "000Y",
        "CS": "ANONYMIZED",
        "DA": "19000101",
        "DS": "0",
        "DT": "19000101000000",
        "IS": "0",
        "LO": "ANONYMIZED",
        "LT": "ANONYMIZED",
        "PN": "ANONYMIZED",
        "SH": "ANONYMIZED",
        "ST": "ANONYMIZED",
        "TM": "000000",
        "UC": "ANONYMIZED",
        "UR": "",
        "UT": "ANONYMIZED",
        "FL": 0.0,
        "FD": 0.0,
        "SL": 0,
        "SS": 0,
        "SV": 0,
        "UL": 0,
        "US": 0,
        "UV": 0,
    }
)
"""The dummy value of :attr:`Action.DUMMY` per VR; other VRs (UI, binary, SQ) become empty."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """A de-identification profile: a table of attribute actions and what else to do.

    Parameters
    ----------
    name
        Short name, as given to ``--profile``; it is recorded in DeidentificationMethod.
    actions
        Action per attribute tag, applied wherever the attribute occurs (at any depth).
    remove_private
        Remove every private element (odd group) at every depth, private creators included.
    description
        One line for documentation and logs.
    """

    name: str
    actions: Mapping[BaseTag, Action]
    remove_private: bool = True
    description: str = ""
    remove_groups: tuple[tuple[int, int], ...] = ()
    """(mask, value) pairs: an element whose group ``g`` has ``g & mask == value`` is removed
    (repeating groups such as curves 50xx and overlays 60xx)."""
    safe_private: frozenset[tuple[int, str, int]] = frozenset()
    """(group, private creator, element offset) of private elements kept despite
    ``remove_private`` (with the private creator element that defines them)."""
    codes: tuple[tuple[str, str], ...] = ()
    """CID 7050 (code value, code meaning) pairs written to DeidentificationMethodCodeSequence."""
    notes: tuple[str, ...] = ()
    """Further values of DeidentificationMethod after the first (options, date handling)."""
    temporal: str = ""
    """LongitudinalTemporalInformationModified to write ("REMOVED", "MODIFIED"), or "" for none."""
    options: tuple[str, ...] = ()
    """The options the profile was built with (names, for records and fingerprints)."""

    def __post_init__(self) -> None:
        table = {BaseTag(tag): Action(action) for tag, action in self.actions.items()}
        for tag, action in table.items():
            if action is Action.REPLACE_PSEUDONYM and _vr(tag) not in PSEUDONYM_VRS:
                raise ProfileError(
                    f"profile {self.name}: {tag} cannot hold a pseudonym (VR {_vr(tag)})"
                )
        object.__setattr__(self, "actions", MappingProxyType(table))

    def method(self, version: str) -> str:
        """The DeidentificationMethod value (LO, at most 64 characters)."""
        return f"orbitct-app {version} profile {self.name}"[:64]

    def method_values(self, version: str) -> str | list[str]:
        """DeidentificationMethod: :meth:`method`, followed by the notes when there are any."""
        return [self.method(version), *self.notes] if self.notes else self.method(version)

    @functools.cached_property
    def needs_key(self) -> bool:
        """True when the profile remaps UIDs or shifts dates (both derive from a secret key)."""
        return any(a in (Action.REMAP_UID, Action.SHIFT_DATE) for a in self.actions.values())

    def removes_group(self, group: int) -> bool:
        """True when an element of ``group`` is removed by a repeating-group rule."""
        return any(group & mask == value for mask, value in self.remove_groups)


def _vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def table(**keywords: Action) -> dict[BaseTag, Action]:
    """A profile table from DICOM keywords, e.g. ``table(PatientName=Action.EMPTY)``.

    Raises
    ------
    ProfileError
        If a keyword is not in the DICOM dictionary.
    """
    result: dict[BaseTag, Action] = {}
    for keyword, action in keywords.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ProfileError(f"unknown DICOM keyword in profile table: {keyword}")
        result[BaseTag(tag)] = action
    return result


ORBITCT = Profile(
    name="orbitct",
    description="the twelve identifying attributes of the original script, at any depth; "
    "all private elements removed",
    remove_private=True,
    actions=table(
        PatientName=Action.REPLACE_PSEUDONYM,
        PatientID=Action.REPLACE_PSEUDONYM,
        PatientBirthDate=Action.EMPTY,
        PatientSex=Action.EMPTY,
        PatientAge=Action.EMPTY,
        PatientAddress=Action.EMPTY,
        ReferringPhysicianName=Action.EMPTY,
        PerformingPhysicianName=Action.EMPTY,
        OperatorsName=Action.EMPTY,
        InstitutionName=Action.EMPTY,
        InstitutionAddress=Action.EMPTY,
        AccessionNumber=Action.EMPTY,
        DataSetTrailingPadding=Action.REMOVE,
    ),
)
"""The default profile (see the module docstring for the values written)."""


# --- the basic profile (PS3.15 Annex E) ---------------------------------------------------------


class RetainOption(str, enum.Enum):
    """The standard's retain options offered with the basic profile (``--retain``)."""

    PATIENT_CHARACTERISTICS = "patient-characteristics"
    """Retain Patient Characteristics Option: sex, age, size, weight, ethnic group, smoking and
    pregnancy status are kept (its C attributes, free text, stay removed)."""
    DEVICE_IDENTITY = "device-identity"
    """Retain Device Identity Option: station name, serial numbers, device UIDs ... are kept."""
    INSTITUTION_IDENTITY = "institution-identity"
    """Retain Institution Identity Option: institution name, address and department are kept."""
    SAFE_PRIVATE = "safe-private"
    """Retain Safe Private Option: the private attributes of ``table_e1_1.SAFE_PRIVATE`` are kept."""

    @property
    def code(self) -> tuple[str, str]:
        """The CID 7050 code (value, meaning) of the option."""
        return _OPTION_CODES[self]

    @property
    def column(self) -> str:
        """The option's column in :mod:`orbitct_app.deid.table_e1_1` ('' for safe-private)."""
        return {"patient-characteristics": "pat", "device-identity": "dev",
                "institution-identity": "inst"}.get(self.value, "")


BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
_OPTION_CODES = {
    RetainOption.PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    RetainOption.DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    RetainOption.INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
    RetainOption.SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
}

CODE_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {
        "D": Action.DUMMY,
        "Z": Action.EMPTY,
        "X": Action.REMOVE,
        "K": Action.KEEP,
        "U": Action.REMAP_UID,
        "Z/D": Action.EMPTY,  # Z is valid wherever the attribute may be empty (Type 2 or 3)
        "X/Z": Action.REMOVE,  # X/Z, X/D, X/Z/D: removed; in the CT and secondary capture IODs
        "X/D": Action.REMOVE,  # these attributes are Type 3 (conformance needs no Z or D)
        "X/Z/D": Action.REMOVE,
        "X/Z/U*": Action.KEEP,  # kept, and the instance UIDs inside remapped (U), so references
        # (ReferencedImageSequence, SourceImageSequence) survive de-identification
    }
)
"""The one action each code of Table E.1-1's Basic Profile column becomes."""

_DATE_VRS = frozenset({"DA", "DT", "TM"})
_STRUCTURAL_UID_WORDS = ("SOPClass", "TransferSyntax", "CodingScheme", "MappingResource",
                         "ContextGroupExtensionCreator", "CreatorVersion")
"""UI attributes naming classes, syntaxes, coding schemes or software, never instances: kept."""


def is_structural_uid(keyword: str) -> bool:
    """True for a UI attribute that names a class, syntax, coding scheme or software version
    (kept by the basic profile: PS3.15 E.3.9 Note 4), not an instance."""
    return any(word in keyword for word in _STRUCTURAL_UID_WORDS)


def _resolve(row: table_e1_1.Row, columns: Iterable[str], shift_dates: bool) -> Action:
    """The action of one Table E.1-1 row under the chosen options.

    An option's K overrides the profile's code; its C is only implemented for dates (the
    Modified Dates option shifts them). Other C's (free-text patient state, allergies ...) keep
    the Basic Profile's action: cleaning free text automatically is not done, it is removed.
    """
    code = row.basic
    for column in columns:
        if row.options.get(column) == "K":
            code = "K"
    if shift_dates and row.options.get("dates") == "C" and _vr(BaseTag(row.tag)) in _DATE_VRS:
        return Action.SHIFT_DATE
    return CODE_ACTIONS[code]


def basic_profile(retain: Iterable[RetainOption | str] = frozenset(), shift_dates: bool = False) -> Profile:
    """The Basic Application Level Confidentiality Profile with the given options.

    Every attribute of Table E.1-1 gets its action (:data:`CODE_ACTIONS`), modified by the retain
    options' columns. Beyond the table, as PS3.15 E.1.1 Note 4 suggests, every other attribute of
    the data dictionary whose VR is DA, DT or TM is removed (shifted with ``shift_dates``; times
    kept), and every other UI attribute that names an instance rather than a class, syntax or
    coding scheme is remapped. PatientName and PatientID get the exam's pseudonym (Z allows a
    non-empty dummy value). Private elements are removed (except safe ones with the option), the
    curve groups (50xx) and overlay groups (60xx) as a whole.

    Parameters
    ----------
    retain
        Retain options (their CID 7050 codes are recorded).
    shift_dates
        The Retain Longitudinal Temporal Information with Modified Dates Option: dates shifted
        by a per-patient offset instead of removed.

    The profile is built once per set of options.
    """
    return _basic_profile(frozenset(RetainOption(r) for r in retain), bool(shift_dates))


@functools.lru_cache(maxsize=32)
def _basic_profile(retain: frozenset[RetainOption], shift_dates: bool) -> Profile:
    columns = [option.column for option in sorted(retain) if option.column]
    actions: dict[BaseTag, Action] = {}
    for row in table_e1_1.ROWS:
        if row.tag >> 16 == 0x0002:
            continue  # file meta: rebuilt as a whole by the anonymize stage
        actions[BaseTag(row.tag)] = _resolve(row, columns, shift_dates)
    for tag, entry in DicomDictionary.items():
        vr, keyword = entry[0], entry[4]
        if tag in actions or tag >> 16 == 0x0002:
            continue
        if vr in _DATE_VRS:
            actions[BaseTag(tag)] = Action.SHIFT_DATE if shift_dates else Action.REMOVE
        elif vr == "UI" and not is_structural_uid(keyword):
            actions[BaseTag(tag)] = Action.REMAP_UID
    for keyword in ("PatientName", "PatientID"):
        actions[Tag(keyword)] = Action.REPLACE_PSEUDONYM
    actions[BaseTag(TRAILING_PADDING)] = Action.REMOVE
    codes = [BASIC_PROFILE_CODE]
    notes = ["dates shifted" if shift_dates else "dates removed"]
    if shift_dates:
        codes.append(MODIFIED_DATES_CODE)
    for option in sorted(retain):
        codes.append(option.code)
        notes.append(f"retain {option.value}")
    return Profile(
        name="basic",
        description="PS3.15 Basic Application Level Confidentiality Profile",
        actions=actions,
        remove_private=True,
        remove_groups=((0xFF01, 0x5000), (0xFF01, 0x6000)),
        safe_private=(
            frozenset(table_e1_1.SAFE_PRIVATE) if RetainOption.SAFE_PRIVATE in retain else frozenset()
        ),
        codes=tuple(codes),
        notes=tuple(notes),
        temporal="MODIFIED" if shift_dates else "REMOVED",
        options=tuple(sorted(option.value for option in retain)) + (("shift-dates",) if shift_dates else ()),
    )


BASIC = basic_profile()
"""The basic profile without options (dates removed)."""

PROFILES: Mapping[str, Profile] = MappingProxyType({"orbitct": ORBITCT, "basic": BASIC})
"""Every profile name the command line accepts, with its default options."""


def get_profile(
    name: str, retain: Iterable[RetainOption | str] = (), shift_dates: bool = False
) -> Profile:
    """The profile called ``name``, with options (only the basic profile takes any).

    Raises
    ------
    ProfileError
        If the name is unknown, or options are given for a profile that has none.
    """
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    retained = frozenset(RetainOption(r) for r in retain)
    if name == "basic":
        return basic_profile(retained, shift_dates)
    if retained or shift_dates:
        raise ProfileError(f"the {name} profile takes no retain or date options")
    return PROFILES[name]
