"""The extract stage on public real CT data (skipped when ../shared/data is absent)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def real_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "out"
    assert main([str(shared_data / "exams"), str(out), "extract", "-q"]) == ExitCode.OK
    return out


def _rows(out: Path, name: str) -> dict[tuple[str, int], dict[str, str]]:
    return {(r["dicom_id"], int(r["series_number"] or -1)): r for r in read_csv(out / name)}


def test_philips_head_series_convert(real_run: Path) -> None:
    report = _rows(real_run, "extract_report.csv")
    for number in (201, 202):
        assert report[("philips_head_phantom", number)]["decision"] == "converted"
    assert report[("philips_head_phantom", 100)]["reason"] == "localizer (scout)"
    assert "secondary capture" in report[("philips_head_phantom", 401)]["reason"]
    index = _rows(real_run, "series_index.csv")
    img = nib.Nifti1Image.from_filename(real_run / index[("philips_head_phantom", 202)]["output_path"])
    assert img.shape[:2] == (512, 512) and np.allclose(img.header.get_zooms(), 0.5)
    data = np.asarray(img.dataobj)
    assert data.min() == -1000 and data.max() > 500  # dense shell present, outside is air


def test_jpeg2000_series_with_empty_uids_decodes(real_run: Path) -> None:
    (row,) = [r for r in read_csv(real_run / "extract_report.csv") if r["dicom_id"] == "siemens_body_j2k"]
    assert row["decision"] == "converted" and row["series_instance_uid"] == ""
    (index,) = [r for r in read_csv(real_run / "series_index.csv") if r["dicom_id"] == "siemens_body_j2k"]
    data = np.asarray(nib.Nifti1Image.from_filename(real_run / index["output_path"]).dataobj)
    assert (data > 0).sum() > 1000  # soft tissue decoded, not a blank volume


def _alignment(nifti: Path, dicoms: Sequence[pydicom.Dataset], shift_lps: tuple[float, float, float]) -> float:
    """Median |HU(NIfTI at the DICOM pixel's world position) - HU(DICOM pixel)| over body pixels."""
    img = nib.Nifti1Image.from_filename(nifti)
    data = np.asarray(img.dataobj).astype(np.float32)
    to_voxel = np.linalg.inv(img.affine)
    rng = np.random.default_rng(0)
    diffs = []
    for ds in dicoms:
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        j, i = np.nonzero(hu > -500)
        pick = rng.choice(len(i), size=min(3000, len(i)), replace=False)
        j, i = j[pick], i[pick]
        row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        lps = np.asarray(ds.ImagePositionPatient, float) + i[:, None] * dc * row + j[:, None] * dr * col
        ras = (lps + np.asarray(shift_lps)) * np.array([-1.0, -1.0, 1.0])
        ijk = nib.affines.apply_affine(to_voxel, ras).T
        value = ndimage.map_coordinates(data, ijk, order=1, cval=np.nan)
        kept = np.isfinite(value) & (value > -1000)  # points the body mask kept
        diffs.append(np.abs(value[kept] - hu[j[kept], i[kept]]))
    return float(np.median(np.concatenate(diffs)))


def test_gantry_tilt_lands_where_the_dicom_geometry_says(real_run: Path, shared_data: Path) -> None:
    index = _rows(real_run, "series_index.csv")
    row = index[("philips_tilt_phantom", 201)]
    assert float(row["tilt_deg"]) == pytest.approx(18.5, abs=0.05)
    files = sorted((shared_data / "exams" / "philips_tilt_phantom" / "S2010").glob("I*"))
    dicoms = [pydicom.dcmread(f) for f in files]
    normal = np.cross(dicoms[0].ImageOrientationPatient[:3], dicoms[0].ImageOrientationPatient[3:])
    dicoms.sort(key=lambda d: float(np.dot(d.ImagePositionPatient, normal)))
    interior = dicoms[2:-2:4]
    nifti = real_run / row["output_path"]
    aligned = _alignment(nifti, interior, (0.0, 0.0, 0.0))
    assert aligned < 45.0
    for axis in range(3):
        for sign in (-1.0, 1.0):
            x, y, z = (sign if a == axis else 0.0 for a in range(3))
            assert _alignment(nifti, interior, (x, y, z)) > 1.8 * aligned


def test_edge_cases_convert_or_are_excluded_with_a_reason(shared_data: Path, tmp_path: Path) -> None:
    code = main(
        [str(shared_data / "edge_cases"), str(tmp_path / "out"), "extract", "-q", "--spacing", "1", "--size", "256"]
    )
    assert code in (ExitCode.OK, ExitCode.NOTHING)
    rows = read_csv(tmp_path / "out" / "extract_report.csv")
    assert {r["dicom_id"] for r in rows} >= {
        "gantrytilting_001",
        "notavolume_001",
        "single_files",
        "slicecount_001",
        "sliceincrement_001",
        "sliceincrement_002",
        "sliceorientation_001",
    }
    for row in rows:
        assert row["decision"] in ("converted", "excluded"), row
        assert row["decision"] == "converted" or row["reason"], row
    by_id = {r["dicom_id"]: r for r in rows}
    assert "not a volume" in by_id["notavolume_001"]["reason"]
    assert float(by_id["gantrytilting_001"]["tilt_deg"]) == pytest.approx(14.0, abs=0.1)
    assert float(by_id["sliceincrement_001"]["max_gap_mm"]) == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize("exam", ["philips_head_phantom", "philips_tilt_phantom", "siemens_body_j2k"])
def test_slab_components_match_whole_volume_labelling_on_real_series(shared_data: Path, exam: str) -> None:
    from orbitct_app import discover, volume
    from orbitct_app.components import largest_component

    found = discover.scan_exam(shared_data / "exams" / exam)
    stacks = [volume.plan_stacks(s).stacks[0] for s in found.series if s.n_instances > 10]
    assert stacks
    for stack in stacks:
        vol = volume.load_hu(stack)
        labels, n = ndimage.label(vol > -200)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        sizes[0] = 0
        component = largest_component(vol, -200)
        assert component is not None and component.n_voxels == sizes.max()
        got = np.empty(vol.shape, dtype=bool)
        for k in range(vol.shape[0]):
            component.plane(k, got[k])
        np.testing.assert_array_equal(got, labels == np.argmax(sizes))


def test_choosing_one_series_per_real_exam(shared_data: Path, tmp_path: Path) -> None:
    """What --one-per-exam --contrast without --kernel soft chooses in ../shared/data/exams, and
    that the dry run planned exactly that.

    philips_head_phantom: series 202 (1 mm, 140 slices) over 201 (5 mm), both kernel UB (Philips
    brain, soft); philips_tilt_phantom: its only axial series, 201 (kernel UB); siemens_body_j2k:
    nothing, its series says contrast (ContrastBolusAgent APPLIED, a ContrastBolusStartTime; its
    ContrastBolusVolume 0 is no evidence) and its kernel Br38f is soft.
    """
    options = ["--one-per-exam", "--contrast", "without", "--kernel", "soft", "--spacing", "1", "--size", "256", "-q"]
    reports = {}
    for name, extra in (("dry", ["--dry-run"]), ("real", [])):
        assert main([str(shared_data / "exams"), str(tmp_path / name), "extract", *options, *extra]) == ExitCode.OK
        reports[name] = read_csv(tmp_path / name / "extract_report.csv")
    # the same rows, but for the share of the body the grid cuts: only the pixels tell (nothing here)
    assert {r["body_cropped_fraction"] for r in reports["real"] if r["decision"] == "converted"} == {"0"}
    assert reports["dry"] == [{**row, "body_cropped_fraction": ""} for row in reports["real"]]
    rows = _rows(tmp_path / "real", "extract_report.csv")
    chosen = sorted(key for key, row in rows.items() if row["decision"] == "converted")
    assert chosen == [("philips_head_phantom", 202), ("philips_tilt_phantom", 201)]
    assert rows[("philips_head_phantom", 201)]["reason"] == "one-per-exam: series 202 (" + \
        rows[("philips_head_phantom", 202)]["series_instance_uid"] + ") chosen"
    assert {rows[k]["kernel_class"] for k in chosen} == {"soft"} and {rows[k]["kernel"] for k in chosen} == {"UB"}
    (body,) = [row for (exam, _), row in rows.items() if exam == "siemens_body_j2k"]
    assert body["decision"] == "excluded" and body["kernel"] == "Br38f" and body["kernel_class"] == "soft"
    assert body["reason"] == (
        "contrast-enhanced (ContrastBolusAgent; ContrastBolusStartTime): excluded by --contrast without"
    )
    assert sorted(_rows(tmp_path / "real", "series_index.csv")) == chosen


def test_no_real_series_is_split_or_cropped_without_cause(real_run: Path, shared_data: Path, tmp_path: Path) -> None:
    """Nothing here has blocks of slices apart; the heads fit the default 256 mm grid, the
    Siemens abdomen (about 356 mm wide) does not, and ``--size fit`` keeps all of it."""
    rows = read_csv(real_run / "extract_report.csv")
    assert not [r for r in rows if r["part"]]
    cropped = {r["dicom_id"]: r["body_cropped_fraction"] for r in rows if r["decision"] == "converted"}
    assert cropped["philips_head_phantom"] == cropped["philips_tilt_phantom"] == "0"
    fraction = float(cropped["siemens_body_j2k"])
    assert 0.1 < fraction < 0.3
    fit = tmp_path / "fit"
    label = ["--participant-label", "siemens_body_j2k"]
    args = [str(shared_data / "exams"), str(fit), "extract", "-q", "--size", "fit", *label]
    assert main(args) == ExitCode.OK
    (row,) = read_csv(fit / "series_index.csv")
    assert row["body_cropped_fraction"] == "0" and int(row["shape_x"]) == 736  # 356 mm: 713 gaps of 0.5 mm
    # the fraction the default grid reported is what lies outside it of the whole body written by fit
    whole = nib.Nifti1Image.from_filename(fit / row["output_path"])
    (default_row,) = [r for r in read_csv(real_run / "series_index.csv") if r["dicom_id"] == "siemens_body_j2k"]
    default = nib.Nifti1Image.from_filename(real_run / default_row["output_path"])
    body = np.argwhere(np.asarray(whole.dataobj)[::2, ::2, ::2] > -1000) * 2
    ijk = nib.affines.apply_affine(np.linalg.inv(default.affine) @ whole.affine, body)
    outside = (ijk[:, :2] < -0.5).any(axis=1) | (ijk[:, :2] > 511.5).any(axis=1)
    assert outside.mean() == pytest.approx(fraction, abs=0.01)


def test_uneven_real_stacks_stay_whole(shared_data: Path) -> None:
    """sliceincrement_001 (gaps of 5, 5 and 10 mm: one missing slice) and _002 (0.75, 0.75 and
    1.5 mm, tilted) are one volume each: no gap wider than 3 x their median spacing."""
    from orbitct_app import discover, volume

    for name, gaps in (("sliceincrement_001", [5.0, 5.0, 10.0]), ("sliceincrement_002", [0.75, 0.75, 1.5])):
        (series,) = discover.scan_exam(shared_data / "edge_cases" / name).series
        (stack,) = volume.plan_stacks(series).stacks
        assert stack.part == 0 and stack.split_reason == ""
        np.testing.assert_allclose(stack.geometry.gaps, gaps, atol=0.01)
