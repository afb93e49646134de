"""PS3.15 Annex E Table E.1-1 (Application Level Confidentiality Profile Attributes), as data.

One line per attribute: its tag, the Basic Profile action code, and the codes of the options
this application implements where the table gives one:

- ``pat``: Retain Patient Characteristics Option (CID 7050 code 113108)
- ``dev``: Retain Device Identity Option (113109)
- ``inst``: Retain Institution Identity Option (113112)
- ``dates``: Retain Longitudinal Temporal Information with Modified Dates Option (113107)

Columns of options this application does not offer (Retain UIDs, Retain Full Dates, Clean
Descriptors, Clean Structured Content, Clean Graphics) are not transcribed. Private attributes
("(gggg,eeee) where gggg is odd": X, Retain Safe Private C) and the repeating groups of curves
(50xx,xxxx) and overlays (60xx,3000), (60xx,4000) are not lines here: they are rules of
:class:`~orbitct_app.deid.profiles.Profile` (``remove_private``, ``safe_private``,
``remove_groups``). The table follows the edition transcribed in the project's notes (the one
with Device UID, Concatenation UID, the GPS attributes and the RT Conceptual Volume UIDs); later
editions add attributes, which the VR rules of the basic profile cover for dates, times and UIDs
(see :func:`~orbitct_app.deid.profiles.basic_profile`).

The action codes are the standard's: D, Z, X, K, C, U and the combinations Z/D, X/Z, X/D, X/Z/D
and X/Z/U*. :mod:`orbitct_app.deid.profiles` turns each code into one :class:`Action`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

OPTION_COLUMNS = ("pat", "dev", "inst", "dates")
"""The option columns transcribed, in the order they are documented above."""

_TABLE = """
0000,1000 X
0000,1001 U
0002,0003 U
0004,1511 U
0008,0014 U
0008,0015 X dates=C
0008,0018 U
0008,0020 Z dates=C
0008,0021 X/D dates=C
0008,0022 X/Z dates=C
0008,0023 Z/D dates=C
0008,0024 X dates=C
0008,0025 X dates=C
0008,002A X/Z/D dates=C
0008,0030 Z dates=C
0008,0031 X/D dates=C
0008,0032 X/Z dates=C
0008,0033 Z/D dates=C
0008,0034 X dates=C
0008,0035 X dates=C
0008,0050 Z
0008,0058 U
0008,0080 X/Z/D inst=K
0008,0081 X inst=K
0008,0082 X/Z/D inst=K
0008,0090 Z
0008,0092 X
0008,0094 X
0008,0096 X
0008,009C Z
0008,009D X
0008,0201 X dates=C
0008,1010 X/Z/D dev=K
0008,1030 X
0008,103E X
0008,1040 X inst=K
0008,1041 X inst=K
0008,1048 X
0008,1049 X
0008,1050 X
0008,1052 X
0008,1060 X
0008,1062 X
0008,1070 X/Z/D
0008,1072 X/D
0008,1080 X
0008,1084 X
0008,1110 X/Z
0008,1111 X/Z/D
0008,1120 X
0008,1140 X/Z/U*
0008,1155 U
0008,1195 U
0008,2111 X
0008,2112 X/Z/U*
0008,3010 U
0008,4000 X
0010,0010 Z
0010,0020 Z
0010,0021 X
0010,0030 Z
0010,0032 X
0010,0040 Z pat=K
0010,0050 X
0010,0101 X
0010,0102 X
0010,1000 X
0010,1001 X
0010,1002 X
0010,1005 X
0010,1010 X pat=K
0010,1020 X pat=K
0010,1030 X pat=K
0010,1040 X
0010,1050 X
0010,1060 X
0010,1080 X
0010,1081 X
0010,1090 X
0010,1100 X
0010,2000 X
0010,2110 X pat=C
0010,2150 X
0010,2152 X
0010,2154 X
0010,2155 X
0010,2160 X pat=K
0010,2180 X
0010,21A0 X pat=K
0010,21B0 X
0010,21C0 X pat=K
0010,21D0 X dates=C
0010,21F0 X
0010,2203 X/Z pat=K
0010,2297 X
0010,2299 X
0010,4000 X
0012,0010 D
0012,0020 D
0012,0021 Z
0012,0030 Z inst=K
0012,0031 Z inst=K
0012,0040 D
0012,0042 D
0012,0050 Z
0012,0051 X
0012,0060 Z inst=K
0012,0071 X
0012,0072 X
0012,0081 D inst=K
0012,0082 X
0016,002B X
0016,004B X
0016,004D X
0016,004E X dev=K
0016,004F X dev=K
0016,0050 X dev=K
0016,0051 X dev=K
0016,0070 X
0016,0071 X
0016,0072 X
0016,0073 X
0016,0074 X
0016,0075 X
0016,0076 X
0016,0077 X
0016,0078 X
0016,0079 X
0016,007A X
0016,007B X
0016,007C X
0016,007D X
0016,007E X
0016,007F X
0016,0080 X
0016,0081 X
0016,0082 X
0016,0083 X
0016,0084 X
0016,0085 X
0016,0086 X
0016,0087 X
0016,0088 X
0016,0089 X
0016,008A X
0016,008B X
0016,008C X
0016,008D X dates=C
0016,008E X
0018,0010 Z/D
0018,1000 X/Z/D dev=K
0018,1002 U dev=K
0018,1004 X dev=K
0018,1005 X dev=K
0018,1007 X dev=K
0018,1008 X dev=K
0018,1009 X dev=K
0018,100A X dev=K
0018,100B U dev=K
0018,1030 X/D
0018,11BB D
0018,1400 X/D
0018,2042 U
0018,4000 X
0018,5011 X dev=K
0018,700A X/D dev=K
0018,9185 X
0018,9367 D dev=K
0018,9369 D dates=C
0018,936A D dates=C
0018,9371 D dev=K
0018,9373 X dev=K
0018,937B X
0018,937F X
0018,9424 X
0018,9516 X/D dates=C
0018,9517 X/D dates=C
0018,9937 X
0018,A003 X
0020,000D U
0020,000E U
0020,0010 Z
0020,0052 U
0020,0200 U
0020,3401 X
0020,3406 X
0020,4000 X
0020,9158 X
0020,9161 U
0020,9164 U
0028,1199 U
0028,1214 U
0028,4000 X
0032,0012 X
0032,1020 X dev=K
0032,1021 X dev=K
0032,1030 X
0032,1032 X
0032,1033 X
0032,1060 X/Z
0032,1066 X
0032,1067 X
0032,1070 X
0032,4000 X
0034,0001 D
0034,0002 D
0034,0005 D
0034,0007 D dates=C
0038,0004 X
0038,0010 X
0038,0011 X
0038,0014 X
0038,001E X
0038,0020 X dates=C
0038,0021 X dates=C
0038,0040 X
0038,0050 X pat=C
0038,0060 X
0038,0061 X
0038,0062 X
0038,0064 X
0038,0300 X
0038,0400 X
0038,0500 X pat=C
0038,4000 X
003A,0310 U
003A,0314 D dates=C
0040,0001 X dev=K
0040,0002 X dates=C
0040,0003 X dates=C
0040,0004 X dates=C
0040,0005 X dates=C
0040,0006 X
0040,0007 X
0040,0009 X
0040,000B X
0040,0010 X dev=K
0040,0011 X dev=K
0040,0012 X pat=C
0040,0241 X dev=K
0040,0242 X dev=K
0040,0243 X
0040,0244 X dates=C
0040,0245 X dates=C
0040,0250 X dates=C
0040,0251 X dates=C
0040,0253 X
0040,0254 X
0040,0275 X
0040,0280 X
0040,0310 X
0040,050A X
0040,0512 D
0040,0513 Z
0040,051A X
0040,0551 D
0040,0554 U
0040,0555 X/Z
0040,0562 Z
0040,0600 X
0040,0602 X
0040,0610 Z
0040,06FA X
0040,1001 X
0040,1002 X
0040,1004 X
0040,1005 X
0040,100A X
0040,1010 X
0040,1011 X
0040,1101 D
0040,1102 X
0040,1103 X
0040,1104 X
0040,1400 X
0040,2001 X
0040,2008 X
0040,2009 X
0040,2010 X
0040,2011 X
0040,2016 Z
0040,2017 Z
0040,2400 X
0040,3001 X
0040,4005 X dates=C
0040,4008 X dates=C
0040,4010 X dates=C
0040,4011 X dates=C
0040,4023 U
0040,4025 X dev=K
0040,4027 X dev=K
0040,4028 X dev=K
0040,4030 X dev=K
0040,4034 X
0040,4035 X
0040,4036 X
0040,4037 X
0040,4050 X dates=C
0040,4051 X dates=C
0040,4052 X dates=C
0040,A027 D
0040,A073 D
0040,A075 D
0040,A078 X
0040,A07A X
0040,A07C X
0040,A088 Z
0040,A123 D
0040,A124 U
0040,A171 U
0040,A172 U
0040,A192 X dates=C
0040,A193 X dates=C
0040,A307 X
0040,A352 X
0040,A353 X
0040,A354 X
0040,A358 X
0040,A402 U
0040,A730 D
0040,DB0C U
0040,DB0D U
0050,001B X
0050,0020 X dev=K
0050,0021 X
0062,0021 U
0070,0001 D
0070,0084 Z/D
0070,0086 X
0070,031A U
0070,1101 U
0070,1102 U
0088,0140 U
0088,0200 X
0088,0904 X
0088,0906 X
0088,0910 X
0088,0912 X
0400,0100 U
0400,0402 X
0400,0403 X
0400,0404 X
0400,0550 X
0400,0551 X
0400,0552 X
0400,0561 X
0400,0600 X
2030,0020 X
2200,0002 X/Z
2200,0005 X/Z
3006,0002 D
3006,0004 X
3006,0006 X
3006,0008 Z dates=C
3006,0009 X/D dates=C
3006,0024 U
3006,0026 Z
3006,0028 X
3006,0038 X
3006,0085 X
3006,0088 X
3006,00A6 Z
3006,00C2 U
3008,0054 X/D dates=C
3008,0056 X/D dates=C
3008,0105 X/Z dev=K
3008,0250 X/D dates=C
3008,0251 X/D dates=C
300A,0002 D
300A,0003 X
300A,0004 X
300A,0006 X/D dates=C
300A,0007 X/D dates=C
300A,000E X
300A,0013 U
300A,0016 X
300A,0072 X
300A,0083 U
300A,00B2 X dev=K
300A,00C3 X
300A,00DD X
300A,0196 X
300A,01A6 X
300A,01B2 X
300A,0216 X dev=K
300A,02EB X
300A,0608 D
300A,0609 U
300A,0611 Z
300A,0615 Z
300A,0619 D
300A,0623 D
300A,062A D
300A,0650 U
300A,0676 X
300A,067C D
300A,067D Z
300A,0700 U
300A,0734 D
300A,0736 D dates=C
300A,073A D dates=C
300A,0741 D dates=C
300A,0742 D
300A,0760 D dates=C
300A,0783 D
300C,0113 X
300E,0008 X/Z
3010,0006 U
3010,000B U
3010,000F Z
3010,0013 U
3010,0015 U
3010,0017 Z
3010,001B Z
3010,002D D dev=K
3010,0031 U
3010,0033 D
3010,0034 D
3010,0035 D
3010,0036 X
3010,0037 X
3010,0038 D
3010,003B U
3010,0043 Z dev=K
3010,004C X/D dates=C
3010,004D X/D dates=C
3010,0054 D
3010,0056 X/D
3010,005A Z
3010,005C Z
3010,0061 X
3010,006E U
3010,006F U
3010,0077 D
3010,007A Z
3010,007B Z
3010,007F Z
3010,0081 Z
4000,0010 X
4000,4000 X
4008,0042 X
4008,0102 X
4008,010A X
4008,010B X
4008,010C X
4008,0111 X
4008,0114 X
4008,0115 X
4008,0118 X
4008,0119 X
4008,011A X
4008,0300 X
4008,4000 X
FFFA,FFFA X
FFFC,FFFC X
"""

BASIC_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})
"""Every action code the Basic Profile column uses."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One attribute of Table E.1-1: its tag, Basic Profile code and option codes."""

    tag: int
    basic: str
    options: Mapping[str, str]


def _parse(text: str) -> tuple[Row, ...]:
    rows = []
    seen: set[int] = set()
    for line in text.split("\n"):
        if not line.strip():
            continue
        tag_text, basic, *options = line.split()
        group, element = tag_text.split(",")
        tag = int(group, 16) << 16 | int(element, 16)
        if tag in seen:
            raise ValueError(f"Table E.1-1 lists {tag_text} twice")
        if basic not in BASIC_CODES:
            raise ValueError(f"Table E.1-1: unknown code {basic} for {tag_text}")
        parsed = dict(option.split("=") for option in options)
        if not set(parsed) <= set(OPTION_COLUMNS):
            raise ValueError(f"Table E.1-1: unknown option column for {tag_text}")
        seen.add(tag)
        rows.append(Row(tag, basic, MappingProxyType(parsed)))
    return tuple(rows)


ROWS: tuple[Row, ...] = _parse(_TABLE)
"""The transcribed rows, sorted by tag."""

REPEATING_GROUPS: tuple[tuple[str, str], ...] = (
    ("50xx,xxxx", "X"),  # Curve Data: the whole retired curve group
    ("60xx,3000", "X"),  # Overlay Data
    ("60xx,4000", "X"),  # Overlay Comments
)
"""The repeating-group lines of the table (handled by ``Profile.remove_groups``)."""

SAFE_PRIVATE: tuple[tuple[int, str, int], ...] = (
    # (group, private creator, element offset) from the standard's list of safe private
    # attributes (PS3.15 Table E.3.10-1): the numeric CT and PET technique entries only.
    (0x00E1, "ELSCINT1", 0x21),  # DLP
    (0x00E1, "ELSCINT1", 0x50),  # Acquisition Duration
    (0x01E1, "ELSCINT1", 0x26),  # Phantom Type
    (0x01F1, "ELSCINT1", 0x01),  # Acquisition Type
    (0x01F1, "ELSCINT1", 0x07),  # Table Velocity
    (0x01F1, "ELSCINT1", 0x26),  # Pitch
    (0x01F1, "ELSCINT1", 0x27),  # Rotation Time
    (0x0019, "GEMS_ACQU_01", 0x23),  # Table Speed [mm/rotation]
    (0x0019, "GEMS_ACQU_01", 0x24),  # Mid Scan Time [sec]
    (0x0019, "GEMS_ACQU_01", 0x27),  # Rotation Speed (Gantry Period)
    (0x0043, "GEMS_PARM_01", 0x27),  # Scan Pitch Ratio
    (0x0045, "GEMS_HELIOS_01", 0x01),  # Number of Macro Rows in Detector
    (0x0045, "GEMS_HELIOS_01", 0x02),  # Macro width at ISO Center
    (0x0025, "GEMS_SERS_01", 0x07),  # Images in Series
    (0x7053, "Philips PET Private Group", 0x00),  # SUV Factor
    (0x7053, "Philips PET Private Group", 0x09),  # Activity Concentration Factor
)
"""Private attributes kept by the Retain Safe Private Option (with their private creators)."""
