"""Enhanced and Legacy Converted Enhanced (multi-frame) CT through both stages: de-identified
inside the functional groups and the converted-attribute sequences, converted exactly like the
classic twin."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

FINE: dict[str, Any] = {"rows": 160, "cols": 160, "pixel_spacing": (1.4, 1.45), "n_slices": 96, "slice_step": 1.0}
SERIES = [
    SeriesSpec(kind="scout", series_number=1),
    SeriesSpec(kind="axial", series_number=2, **FINE),
    SeriesSpec(kind="axial", series_number=3, tilt_deg=18.0, per_slice_rescale=True, **FINE),
    SeriesSpec(kind="axial", series_number=4, tilt_deg=-18.0, order="descending", transfer_syntax=RLELossless, **FINE),
    SeriesSpec(kind="axial", series_number=5, n_slices=12, rows=32, cols=32),
]
ARGS = ["--spacing", "1", "--size", "256", "-q"]
Twins = tuple[ExamTruth, ExamTruth, Path]
"""The classic exam, its Enhanced CT twin and the root of both runs."""
Legacy = tuple[ExamTruth, Path]
"""The Legacy Converted twin and its run's folder."""


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Twins:
    """The same exam written as classic files and as Enhanced CT, both run through `all`."""
    root = tmp_path_factory.mktemp("enhanced")
    classic = write_exam(root / "classic" / "in", "exam_e", SERIES, seed=21)
    enhanced = write_exam(root / "enhanced" / "in", "exam_e", SERIES, seed=21, enhanced=True)
    for kind in ("classic", "enhanced"):
        assert main([str(root / kind / "in"), str(root / kind / "out"), "all", *ARGS]) == ExitCode.OK
    return classic, enhanced, root


def _index(out: Path) -> dict[int, dict[str, str]]:
    return {int(r["series_number"]): r for r in read_csv(out / "series_index.csv")}


def test_enhanced_input_is_really_multi_frame(twins: Twins) -> None:
    _, enhanced, _ = twins
    series = enhanced.series_by_number(3)
    (path,) = series.files
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1" and int(ds.NumberOfFrames) == 96
    assert "ImagePositionPatient" not in ds  # geometry only in the functional groups


def test_no_identifier_survives_inside_the_functional_groups(twins: Twins) -> None:
    _, enhanced, root = twins
    in_groups = [p for p in enhanced.planted if p.in_functional_groups and p.scope == "orbitct" and p.searchable]
    assert in_groups  # the generator planted some there
    forbidden = enhanced.orbitct_forbidden_bytes
    out = root / "enhanced" / "out"
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert [v for v in forbidden if v in data] == [], path
    for path in sorted((out / "anonymized").rglob("*")):
        if path.is_file():
            ds = pydicom.dcmread(path)
            assert [str(e.tag) for e in ds.iterall() if e.tag.is_private] == []


def test_min_slices_counts_frames(twins: Twins) -> None:
    _, _, root = twins
    rows = {
        r["series_number"]: r
        for r in read_csv(root / "enhanced" / "out" / "anonymize_report.csv")
        if r["series_number"]
    }
    assert rows["5"]["decision"] == "kept" and rows["5"]["n_files"] == "1"  # 1 file, 12 frames > 10
    assert rows["1"]["decision"] == "dropped"


@pytest.mark.parametrize("number", [2, 3, 4])
def test_enhanced_converts_exactly_like_its_classic_twin(twins: Twins, number: int) -> None:
    root = twins[2]
    a, b = (_index(root / kind / "out")[number] for kind in ("classic", "enhanced"))
    img_a, img_b = (
        nib.Nifti1Image.from_filename(root / kind / "out" / row["output_path"])
        for kind, row in (("classic", a), ("enhanced", b))
    )
    assert np.allclose(img_a.affine, img_b.affine, atol=1e-6)
    assert np.array_equal(np.asarray(img_a.dataobj), np.asarray(img_b.dataobj))
    assert (a["n_slices"], a["tilt_deg"], a["max_gap_mm"]) == (b["n_slices"], b["tilt_deg"], b["max_gap_mm"])


@pytest.mark.parametrize("number", [2, 3, 4])
def test_enhanced_markers_land_at_their_true_world_position(twins: Twins, number: int) -> None:
    from scipy import ndimage

    _, enhanced, root = twins
    row = _index(root / "enhanced" / "out")[number]
    img = nib.Nifti1Image.from_filename(root / "enhanced" / "out" / row["output_path"])
    data = np.asarray(img.dataobj)
    labels, n = ndimage.label(data > 1500)
    centres = ndimage.center_of_mass(np.clip(data.astype(float) - 1000, 0, None), labels, range(1, n + 1))
    found = nib.affines.apply_affine(img.affine, np.asarray(centres).reshape(-1, 3))
    series = enhanced.series_by_number(number)
    assert series.slice_normal is not None
    normal = np.asarray(series.slice_normal) / np.linalg.norm(series.slice_normal)
    offsets = np.asarray(series.positions_lps) @ normal
    covered = [m for m in enhanced.phantom.markers
               if offsets.min() + 3 <= np.asarray(m.center_lps) @ normal <= offsets.max() - 3]
    assert len(covered) >= 4
    for marker in covered:
        assert np.linalg.norm(found - np.asarray(marker.center_ras), axis=1).min() < 1.0, marker.name


def test_sidecar_names_frames(twins: Twins) -> None:
    import json

    _, _, root = twins
    row = _index(root / "enhanced" / "out")[4]
    sidecar = json.loads((root / "enhanced" / "out" / row["output_path"].replace(".nii.gz", ".json")).read_text())
    frames = [s["FrameNumber"] for s in sidecar["Slices"]]
    assert sorted(frames) == list(range(1, 97))
    assert frames == list(range(96, 0, -1))  # descending frames: sorted by position, last frame first


# --- Legacy Converted Enhanced CT (PS3.3 A.70) ---------------------------------------------------


@pytest.fixture(scope="module")
def legacy(twins: Twins, tmp_path_factory: pytest.TempPathFactory) -> Legacy:
    """The classic exam of ``twins`` as a converter makes it: Legacy Converted Enhanced CT, run
    through `all`."""
    root = tmp_path_factory.mktemp("legacy")
    specs = [replace(s, enhanced=True, legacy_converted=True) if s.kind == "axial" else s for s in SERIES]
    truth = write_exam(root / "in", "exam_e", specs, seed=21)
    assert main([str(root / "in"), str(root / "out"), "all", *ARGS]) == ExitCode.OK
    return truth, root


def test_legacy_input_is_a_legacy_converted_object(legacy: Legacy) -> None:
    truth, _ = legacy
    (path,) = truth.series_by_number(3).files
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.2" and int(ds.NumberOfFrames) == 96
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"] and "ImagePositionPatient" not in ds
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    assert "ConversionSourceAttributesSequence" in frame and "UnassignedPerFrameConvertedAttributesSequence" in frame


@pytest.mark.parametrize("number", [2, 3, 4])
def test_legacy_converts_exactly_like_its_classic_twin(twins: Twins, legacy: Legacy, number: int) -> None:
    _, _, twins_root = twins
    _, root = legacy
    a, b = _index(twins_root / "classic" / "out")[number], _index(root / "out")[number]
    img_a = nib.Nifti1Image.from_filename(twins_root / "classic" / "out" / a["output_path"])
    img_b = nib.Nifti1Image.from_filename(root / "out" / b["output_path"])
    assert np.allclose(img_a.affine, img_b.affine, atol=1e-6)
    assert np.array_equal(np.asarray(img_a.dataobj), np.asarray(img_b.dataobj))
    assert (a["n_slices"], a["tilt_deg"], a["max_gap_mm"]) == (b["n_slices"], b["tilt_deg"], b["max_gap_mm"])


def test_no_identifier_survives_in_the_converted_attributes(legacy: Legacy) -> None:
    truth, root = legacy
    unassigned = [p for p in truth.planted if "Unassigned" in p.location and p.scope == "orbitct" and p.searchable]
    assert {p.location.split(".")[1].split("[")[0] for p in unassigned} == {
        "UnassignedSharedConvertedAttributesSequence", "UnassignedPerFrameConvertedAttributesSequence"
    }
    forbidden = truth.orbitct_forbidden_bytes
    for path in sorted(p for p in (root / "out").rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert [v for v in forbidden if v in data] == [], path
    for path in sorted(p for p in (root / "out" / "anonymized").rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        assert [str(e.tag) for e in ds.iterall() if e.tag.is_private] == [], path


def test_basic_profile_maps_conversion_sources_like_the_classic_files(
    twins: Twins, legacy: Legacy, tmp_path: Path
) -> None:
    """Under the basic profile each frame's conversion source is remapped with the same key as the
    classic file it names: it names that file's new SOP Instance UID, never the original; and
    the times in the per-frame converted attributes are gone."""
    classic, _, twins_root = twins
    truth, root = legacy
    key = tmp_path / "deid.key"
    outs = {}
    for kind, inp in (("classic", twins_root / "classic" / "in"), ("legacy", root / "in")):
        outs[kind] = tmp_path / kind
        args = [str(inp), str(outs[kind]), "anonymize", "--profile", "basic", "--deid-key", str(key), "-q"]
        assert main(args) == ExitCode.OK
    new_classic_uids = {}
    for path in (outs["classic"] / "anonymized").rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.SeriesNumber == 3:
                new_classic_uids[int(ds.InstanceNumber)] = ds.SOPInstanceUID
    assert len(new_classic_uids) == 96
    (path,) = [p for p in (outs["legacy"] / "anonymized").rglob("*")
               if p.is_file() and pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 3]
    data = path.read_bytes()
    originals = classic.series_by_number(3).sop_instance_uids
    assert [u for u in originals if u.encode() in data] == []
    ds = pydicom.dcmread(path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        source = frame.ConversionSourceAttributesSequence[0]
        converted = frame.UnassignedPerFrameConvertedAttributesSequence[0]
        assert source.ReferencedSOPInstanceUID == new_classic_uids[int(converted.InstanceNumber)]
        assert "AcquisitionTime" not in converted or converted.AcquisitionTime in ("", None)
        assert "ContentTime" not in converted or converted.ContentTime in ("", None)
    assert [v for v in truth.basic_forbidden_bytes if v in data] == []
