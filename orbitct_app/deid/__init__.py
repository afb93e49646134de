"""De-identification: profiles (declarative tables) and the walker that applies them.

:mod:`orbitct_app.deid.profiles` holds the tables (attribute -> :class:`Action`), one per profile;
:mod:`orbitct_app.deid.table_e1_1` is PS3.15 Table E.1-1 as data, from which the basic profile is
built; :mod:`orbitct_app.deid.apply` walks a data set at every depth and applies any of them;
:mod:`orbitct_app.deid.keys` derives new UIDs and date offsets from the secret key;
:mod:`orbitct_app.deid.mapping` writes the data owner's mapping files; and
:mod:`orbitct_app.deid.audit` checks a de-identified tree for anything that should be gone.
"""

from orbitct_app.deid.apply import (
    DeidStats,
    apply_profile,
    check_pseudonym,
    mark_deidentified,
    remove_private,
)
from orbitct_app.deid.profiles import (
    BASIC,
    ORBITCT,
    PROFILES,
    Action,
    Profile,
    RetainOption,
    basic_profile,
    get_profile,
)

__all__ = [
    "BASIC",
    "ORBITCT",
    "RetainOption",
    "basic_profile",
    "PROFILES",
    "Action",
    "DeidStats",
    "Profile",
    "apply_profile",
    "check_pseudonym",
    "get_profile",
    "mark_deidentified",
    "remove_private",
]
