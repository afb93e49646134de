"""The rules behind --kernel and --contrast: the vendor kernel table and the contrast evidence."""

from __future__ import annotations

import pytest

from orbitct_app.contrast import attribute_evidence, contrast_evidence, description_keyword
from orbitct_app.kernels import VENDORS, classify_kernel, kernel_name


@pytest.mark.parametrize(
    ("kernel", "manufacturer", "kind"),
    [
        # Siemens: the resolution index decides (below 50 soft), whatever the family and suffix
        ("H30s", "SIEMENS", "soft"),
        ("H31s", "SIEMENS", "soft"),
        ("Br40d", "Siemens Healthineers", "soft"),
        ("J40s", "SIEMENS", "soft"),
        ("B45f", "SIEMENS", "soft"),
        ("Hr49", "SIEMENS", "soft"),
        ("Hr50", "SIEMENS", "sharp"),
        ("H60s", "SIEMENS", "sharp"),
        ("Hr60f\\3", "SIEMENS", "sharp"),
        (["Hr60f", "3"], "SIEMENS", "sharp"),
        (["Br38f", "3"], "SIEMENS", "soft"),
        ("B70f", "SIEMENS", "sharp"),
        ("Ur77u", "SIEMENS", "sharp"),
        ("T20s", "SIEMENS", "unknown"),  # a topogram kernel: not a family of the table
        # GE
        ("STANDARD", "GE MEDICAL SYSTEMS", "soft"),
        ("SOFT", "GE MEDICAL SYSTEMS", "soft"),
        ("DETAIL", "GE Healthcare", "soft"),
        ("BONE", "GE MEDICAL SYSTEMS", "sharp"),
        ("BONEPLUS", "GE MEDICAL SYSTEMS", "sharp"),
        ("LUNG", "GE MEDICAL SYSTEMS", "sharp"),
        ("EDGE", "GE MEDICAL SYSTEMS", "sharp"),
        ("CHEST", "GE MEDICAL SYSTEMS", "unknown"),
        # Philips
        ("B", "Philips", "soft"),
        ("UB", "Philips Medical Systems", "soft"),
        ("C", "Philips", "soft"),
        ("D", "Philips", "sharp"),
        ("L", "Philips", "sharp"),
        ("YC", "Philips", "sharp"),
        ("XCB", "Philips", "unknown"),
        # Canon / Toshiba
        ("FC13", "TOSHIBA", "soft"),
        ("FC26", "CANON_MEC", "soft"),
        ("FC30", "TOSHIBA", "sharp"),
        ("FC55", "Canon Medical Systems", "sharp"),
        ("FC81", "TOSHIBA", "sharp"),
        ("FL04", "TOSHIBA", "sharp"),
        ("FC43", "TOSHIBA", "unknown"),
        ("FC13-H", "TOSHIBA", "unknown"),  # a hybrid: suffixed variants stay unknown
        # United Imaging: only what the name says
        ("B_SOFT_B", "UIH", "soft"),
        ("L_SHARP_C", "United Imaging Healthcare", "sharp"),
        ("B_MEDIUM_A", "UIH", "unknown"),
        # nothing to go on
        ("", "SIEMENS", "unknown"),
        (None, "GE MEDICAL SYSTEMS", "unknown"),
        ("XYZ", "", "unknown"),
    ],
)
def test_kernel_table(kernel: object, manufacturer: str, kind: str) -> None:
    assert classify_kernel(kernel, manufacturer).kind == kind


def test_the_manufacturer_picks_the_vendor_and_without_one_the_vendors_must_agree() -> None:
    # a kernel of one vendor is unknown under another vendor's name ...
    assert classify_kernel("STANDARD", "SIEMENS").kind == "unknown"
    assert classify_kernel("H30s", "GE MEDICAL SYSTEMS").kind == "unknown"
    # ... and found by its own vendor's rules when the Manufacturer is empty or unknown
    for kernel, vendor, kind in (
        ("STANDARD", "GE", "soft"),
        ("H60s", "Siemens", "sharp"),
        ("FC52", "Canon/Toshiba", "sharp"),
    ):
        found = classify_kernel(kernel, "")
        assert (found.kind, found.vendor) == (kind, vendor)
        assert classify_kernel(kernel, "ORBITCT-SYNTH").kind == kind
    # "GE" is a word of the Manufacturer, not any two letters
    assert classify_kernel("BONE", "IMAGE GENIUS").kind == "sharp"  # no vendor named: all tried
    assert classify_kernel("STANDARD", "GE MEDICAL SYSTEMS").vendor == "GE"
    assert classify_kernel("FC26", "CANON_MEC").vendor == "Canon/Toshiba"
    assert classify_kernel("H30s", "CANON_MEC").kind == "unknown"  # Canon's rules decide


def test_vendor_rules_do_not_overlap_on_the_table_names() -> None:
    names = ["H30s", "H60s", "Br40d", "STANDARD", "BONE", "UB", "D", "YC", "FC13", "FC55", "B_SOFT_B", "L_SHARP_C"]
    for name in names:
        knowing = [v.name for v in VENDORS if v.classify(name) is not None]
        assert len(knowing) == 1, (name, knowing)


def test_kernel_evidence_is_written_for_reasons() -> None:
    assert classify_kernel("H60s", "SIEMENS").evidence == "ConvolutionKernel H60s, Siemens"
    assert classify_kernel("XYZ", "SIEMENS").evidence == "ConvolutionKernel XYZ is not in the kernel table"
    assert classify_kernel("", "SIEMENS").evidence == "no ConvolutionKernel"
    assert kernel_name(["Hr60f", "3"]) == kernel_name("Hr60f\\3") == "Hr60f"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, []),
        ({"ContrastBolusAgent": "IOPAMIDOL"}, ["ContrastBolusAgent"]),
        ({"ContrastBolusAgent": "APPLIED", "ContrastBolusVolume": 0.0}, ["ContrastBolusAgent"]),
        ({"ContrastBolusAgent": ""}, []),
        ({"ContrastBolusAgent": "None"}, []),
        ({"ContrastBolusAgent": "n/a", "ContrastBolusRoute": "NO"}, []),
        ({"ContrastBolusRoute": "IV", "ContrastBolusVolume": 80.0}, ["ContrastBolusRoute", "ContrastBolusVolume"]),
        ({"ContrastBolusVolume": "0"}, []),
        ({"ContrastBolusStartTime": "101500"}, ["ContrastBolusStartTime"]),
        ({"ContrastBolusAgentSequence": 0}, []),
        ({"ContrastBolusAgentSequence": 1}, ["ContrastBolusAgentSequence"]),
        ({"ContrastBolusAgent": ["", "IOHEXOL"]}, ["ContrastBolusAgent"]),
    ],
)
def test_contrast_attributes(facts: dict[str, object], expected: list[str]) -> None:
    assert attribute_evidence(facts) == expected


@pytest.mark.parametrize(
    ("description", "keyword"),
    [
        ("HEAD C+", "C+"),
        ("Head c+ 1.0 H30s", "C+"),
        ("+C AXIAL", "+C"),
        ("CTA Circle of Willis", "CTA"),
        ("CT ANGIO HEAD", "angio"),
        ("Orbit with contrast", "contrast"),
        ("Orbit w/ contrast", "contrast"),
        ("Orbit w contrast", "contrast"),
        ("Schädel mit KM", "KM"),
        ("Cranio con MDC", "MDC"),
        ("CECT neck", "CECT"),
        ("Arterial phase", "arterial"),
        ("Portal venous", "portal"),
        ("CT Perfusion", "perfusion"),
        ("pre and post contrast", "contrast"),
        ("HEAD C- / C+", "C+"),
        # plain
        ("Head 3.0 H30s", None),
        ("HEAD C-", None),
        ("NCCT head", None),
        ("non contrast head", None),
        ("Non-Contrast Orbit", None),
        ("noncontrast", None),
        ("w/o contrast", None),
        ("W/O CONTRAST", None),
        ("without IV contrast", None),
        ("no IV contrast", None),
        ("pre-contrast", None),
        ("precontrast", None),
        ("Schädel ohne KM", None),
        ("Cranio senza MDC", None),
        ("nativ", None),
        ("post op orbit", None),
        ("CTAB", None),  # whole tokens only
        ("KMZ", None),
        ("", None),
    ],
)
def test_description_keywords(description: str, keyword: str | None) -> None:
    assert description_keyword(description) == keyword


def test_contrast_evidence_lists_attributes_then_the_description() -> None:
    assert contrast_evidence({"ContrastBolusAgent": "IOHEXOL"}, "HEAD CTA") == [
        "ContrastBolusAgent", "description keyword CTA"
    ]
    assert contrast_evidence({"ContrastBolusAgent": "NONE"}, "non contrast") == []
