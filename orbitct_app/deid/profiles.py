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
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.tag import BaseTag

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
    ),
)
"""The default profile (see the module docstring for the values written)."""

PROFILES: Mapping[str, Profile | None] = MappingProxyType({"orbitct": ORBITCT, "basic": None})
"""Every profile name the command line accepts; ``None`` marks a profile not built yet."""


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises
    ------
    ProfileError
        If the name is unknown or the profile is not built yet.
    """
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if profile is None:
        raise ProfileError(f"the {name} profile is not built yet")
    return profile
