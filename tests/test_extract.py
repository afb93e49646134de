"""The extract stage, tested in world coordinates on generated phantoms with known markers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.uid import JPEG2000Lossless, RLELossless
from scipy import ndimage

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.reports import read_csv
from orbitct_app.synthetic import ExamTruth, Phantom, SeriesSpec, write_exam

# Fine enough that a 2 mm marker is sampled by several pixels and slices: its sampled centroid is
# then within a few tenths of a millimetre of the truth, so 1 mm tolerance tests the geometry.
FINE = {"rows": 200, "cols": 200, "pixel_spacing": (1.1, 1.15), "n_slices": 84, "slice_step": 1.0}

WORLD_SERIES = {
    2: SeriesSpec(kind="axial", **FINE, series_description="ascending"),  # type: ignore[arg-type]
    3: SeriesSpec(kind="axial", **FINE, order="descending", series_description="descending"),  # type: ignore[arg-type]
    4: SeriesSpec(kind="axial", **FINE, tilt_deg=20.0, series_description="tilt plus"),  # type: ignore[arg-type]
    5: SeriesSpec(kind="axial", **FINE, tilt_deg=-20.0, order="descending", series_description="tilt minus"),  # type: ignore[arg-type]
    6: SeriesSpec(kind="axial", **FINE, unsigned=True, padding=True, series_description="unsigned padded"),  # type: ignore[arg-type]
    7: SeriesSpec(kind="axial", **FINE, per_slice_rescale=True, series_description="per slice rescale"),  # type: ignore[arg-type]
    8: SeriesSpec(kind="axial", **FINE, transfer_syntax=RLELossless, padding=True, series_description="rle"),  # type: ignore[arg-type]
    9: SeriesSpec(kind="axial", **FINE, transfer_syntax=JPEG2000Lossless, unsigned=True, series_description="j2k"),  # type: ignore[arg-type]
}
SPACING, SIZE = 1.0, 256


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExamTruth, Path, dict[int, dict[str, str]]]:
    """One exam holding every variant (shuffled extensionless names), extracted once."""
    root = tmp_path_factory.mktemp("world")
    series = [s.__class__(**{**s.__dict__, "series_number": n}) for n, s in WORLD_SERIES.items()]
    truth = write_exam(root / "in", "exam_w", series, seed=7, shuffle_names=True)
    out = root / "out"
    code = main([str(root / "in"), str(out), "extract", "--spacing", str(SPACING), "--size", str(SIZE), "-q"])
    assert code == ExitCode.OK
    index = {int(r["series_number"]): r for r in read_csv(out / "series_index.csv")}
    return truth, out, index


def load(out: Path, row: dict[str, str]) -> tuple[NDArray[np.int16], nib.Nifti1Image]:
    img = nib.load(out / row["output_path"])
    return np.asarray(img.dataobj), img


def marker_centroids_ras(data: NDArray[np.int16], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """HU-weighted centroids (RAS mm) of the dense blobs (> 1500 HU) in a volume."""
    labels, n = ndimage.label(data > 1500)
    weights = np.clip(data.astype(np.float64) - 1000.0, 0, None)
    centroids = ndimage.center_of_mass(weights, labels, range(1, n + 1))
    ijk = np.asarray(centroids, dtype=np.float64).reshape(-1, 3)
    return nib.affines.apply_affine(affine, ijk)


def covered_markers(truth: ExamTruth, number: int) -> list:  # type: ignore[type-arg]
    """The markers wholly inside a series' slab (its first to last slice plane, with margin)."""
    series = truth.series_by_number(number)
    normal = np.asarray(series.slice_normal) / np.linalg.norm(series.slice_normal)
    offsets = np.asarray(series.positions_lps) @ normal
    margin = truth.phantom.marker_radius_mm + 1.0
    return [
        m
        for m in truth.phantom.markers
        if offsets.min() + margin <= np.asarray(m.center_lps) @ normal <= offsets.max() - margin
    ]


def world_to_voxel(img: nib.Nifti1Image, points_ras: NDArray[np.float64]) -> NDArray[np.float64]:
    return nib.affines.apply_affine(np.linalg.inv(img.affine), points_ras)


@pytest.mark.parametrize("number", sorted(WORLD_SERIES))
def test_markers_land_at_their_true_world_position(world_run, number: int) -> None:  # type: ignore[no-untyped-def]
    truth, out, index = world_run
    data, img = load(out, index[number])
    found = marker_centroids_ras(data, img.affine)
    markers = covered_markers(truth, number)
    assert len(markers) >= 4 and len(found) >= len(markers)
    for marker in markers:
        distance = np.linalg.norm(found - np.asarray(marker.center_ras), axis=1).min()
        assert distance < 1.0, f"series {number}: marker {marker.name} is {distance:.2f} mm off"


@pytest.mark.parametrize("number", sorted(WORLD_SERIES))
def test_inserts_keep_their_hu(world_run, number: int) -> None:  # type: ignore[no-untyped-def]
    truth, out, index = world_run
    data, img = load(out, index[number])
    k, j, i = np.indices(data.shape)  # nibabel order (i, j, k) -> index arrays per axis
    for insert in truth.phantom.inserts:
        centre = world_to_voxel(img, np.asarray([insert.center_ras]))[0]
        inside = (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= (
            (insert.radius_mm - 3.0) / SPACING
        ) ** 2
        assert inside.sum() > 50
        mean = float(data[inside].mean())
        assert abs(mean - insert.hu) < 10.0, f"{insert.name}: {mean:.1f} HU, truth {insert.hu}"


@pytest.mark.parametrize("number", sorted(WORLD_SERIES))
def test_headrest_is_air_and_grid_is_right(world_run, number: int) -> None:  # type: ignore[no-untyped-def]
    truth, out, index = world_run
    data, img = load(out, index[number])
    phantom: Phantom = truth.phantom
    assert data.dtype == np.int16
    assert data.shape[:2] == (SIZE, SIZE)
    assert np.allclose(img.header.get_zooms(), (SPACING,) * 3)
    assert int(data.min()) == -1000
    assert img.header["qform_code"] == 1 and img.header["sform_code"] == 1
    assert np.allclose(img.get_qform(), img.get_sform(), atol=1e-4)
    # points in the middle of the head-rest shell, posterior (+y in LPS) of the head centre
    cx, cy, cz = phantom.center_lps
    radius = phantom.headrest_inner_radius_mm + phantom.headrest_thickness_mm / 2
    angles = np.radians([-20.0, 0.0, 20.0])
    lps = np.array([[cx + radius * np.sin(a), cy + radius * np.cos(a), cz + dz] for a in angles for dz in (-15.0, 0.0, 15.0)])
    vox = np.rint(world_to_voxel(img, lps * np.array([-1, -1, 1]))).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(data.shape)), axis=1)
    assert inside.sum() >= 3  # the head-rest is inside the field of view
    assert np.all(data[tuple(vox[inside].T)] == -1000)
    # and the head itself is there: the brain centre reads brain HU
    centre = np.rint(world_to_voxel(img, np.asarray([[-cx, -cy, cz]]))[0]).astype(int)
    assert abs(int(data[tuple(centre)]) - phantom.hu_brain) < 15


def test_report_and_index_rows(world_run) -> None:  # type: ignore[no-untyped-def]
    truth, out, index = world_run
    rows = read_csv(out / "extract_report.csv")
    assert {int(r["series_number"]) for r in rows} == set(WORLD_SERIES)
    assert all(r["decision"] == "converted" for r in rows)
    tilts = {int(r["series_number"]): float(r["tilt_deg"]) for r in rows}
    assert tilts[4] == pytest.approx(20.0, abs=0.01) and tilts[5] == pytest.approx(20.0, abs=0.01)
    assert tilts[2] == pytest.approx(0.0, abs=0.01)
    header = (out / "series_index.csv").read_text().splitlines()[0]
    assert header.startswith(
        "dicom_id,series_instance_uid,series_description,original_spacing_x,original_spacing_y,"
        "original_spacing_z,target_spacing_x,target_spacing_y,target_spacing_z,output_path"
    )
    row = index[4]
    assert float(row["original_spacing_x"]) == pytest.approx(1.15)  # columns (PixelSpacing[1])
    assert float(row["original_spacing_y"]) == pytest.approx(1.1)
    assert float(row["original_spacing_z"]) == pytest.approx(np.cos(np.radians(20.0)), abs=1e-3)
    assert row["series_instance_uid"] == truth.series_by_number(4).series_instance_uid
    sidecar = json.loads((out / row["output_path"]).with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Source"]["SeriesInstanceUID"] == row["series_instance_uid"]
    assert sidecar["Processing"]["TargetSpacingMM"] == SPACING
    assert len(sidecar["Slices"]) == 84
    assert sidecar["Source"]["Manufacturer"]


def test_default_grid_is_512_at_half_mm(tmp_path: Path) -> None:
    write_exam(tmp_path / "in", "exam_d", [SeriesSpec(kind="axial", series_number=2)], seed=3)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "-q"]) == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "series_index.csv")
    img = nib.load(tmp_path / "out" / row["output_path"])
    assert img.shape[:2] == (512, 512) and np.allclose(img.header.get_zooms(), 0.5)
    rotation = img.affine[:3, :3] / 0.5
    assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)  # orthonormal, untilted grid
    assert img.get_data_dtype() == np.int16


def test_exclusions_have_reasons(tmp_path: Path) -> None:
    series = [
        SeriesSpec(kind="scout", series_number=1),
        SeriesSpec(kind="axial", series_number=2),
        SeriesSpec(kind="coronal", series_number=3),
        SeriesSpec(kind="axial", series_number=4, modality="MR"),
        SeriesSpec(kind="summary", series_number=5),
        SeriesSpec(kind="axial", series_number=6, n_slices=2),
        SeriesSpec(kind="axial", series_number=7, image_type=("DERIVED", "SECONDARY", "AXIAL")),
        SeriesSpec(kind="coronal", series_number=8),
    ]
    truth = write_exam(tmp_path / "in", "exam_x", series)
    # series 8 becomes a sagittal reformat: rows run posterior, columns inferior, stepped along x
    for k, f in enumerate(truth.series_by_number(8).files):
        _retag([f], ImageOrientationPatient=[0, 1, 0, 0, 0, -1], ImagePositionPatient=[-40.0 + 2 * k, -110.0, 150.0])
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]) == ExitCode.OK
    decisions = {int(r["series_number"]): (r["decision"], r["reason"]) for r in read_csv(tmp_path / "out" / "extract_report.csv")}
    assert decisions[7][0] == "converted"  # DERIVED\SECONDARY but axial CT: still a reconstruction
    assert decisions[8] == ("excluded", "sagittal, not axial")
    log = (tmp_path / "out" / "logs" / "orbitct-app.log").read_text()
    for number in range(1, 9):  # every decision is in the log
        assert f"exam_x: series {number} (" in log
    assert decisions[1] == ("excluded", "localizer (scout)")
    assert decisions[2][0] == "converted"
    assert decisions[3] == ("excluded", "coronal, not axial")
    assert decisions[4] == ("excluded", "modality MR, not CT")
    assert decisions[5][0] == "excluded" and "secondary capture" in decisions[5][1]
    assert decisions[6][0] == "excluded" and "too few slices" in decisions[6][1]


def test_axial_label_does_not_override_geometry(tmp_path: Path) -> None:
    spec = SeriesSpec(kind="coronal", series_number=3, image_type=("ORIGINAL", "PRIMARY", "AXIAL"))
    write_exam(tmp_path / "in", "exam_l", [spec])
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "-q"]) == ExitCode.NOTHING
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "excluded" and "ImageType says AXIAL but the slices are coronal" in row["reason"]


def test_thickness_filter_measures_spacing_along_the_normal(tmp_path: Path) -> None:
    series = [
        SeriesSpec(kind="axial", series_number=2, slice_step=1.0, n_slices=30),
        SeriesSpec(kind="axial", series_number=3, slice_step=3.0, n_slices=20),
        # a 1.6 mm table step tilted by 30 degrees is 1.39 mm apart along the normal
        SeriesSpec(kind="axial", series_number=4, slice_step=1.6, tilt_deg=30.0, n_slices=20),
    ]
    write_exam(tmp_path / "in", "exam_t", series)
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]
    assert main([*args, "--thickness", "0.5", "1.5"]) == ExitCode.OK
    decisions = {int(r["series_number"]): r for r in read_csv(tmp_path / "out" / "extract_report.csv")}
    assert decisions[2]["decision"] == "converted"
    assert decisions[3]["decision"] == "excluded" and "outside --thickness 0.5-1.5" in decisions[3]["reason"]
    assert decisions[4]["decision"] == "converted"
    assert float(decisions[4]["spacing_median"]) == pytest.approx(1.6 * np.cos(np.radians(30)), abs=1e-3)
    indexed = {int(r["series_number"]) for r in read_csv(tmp_path / "out" / "series_index.csv")}
    assert indexed == {2, 4}


def _retag(files: list[Path], **values: object) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(f)


def test_two_passes_under_one_uid_are_split(tmp_path: Path) -> None:
    series = [
        SeriesSpec(kind="axial", series_number=2, n_slices=20),
        SeriesSpec(kind="axial", series_number=3, n_slices=20, convolution_kernel="H60s"),
    ]
    truth = write_exam(tmp_path / "in", "exam_p", series)
    quick = ["--spacing", "2", "--size", "128", "-q"]
    # each pass on its own first: what a correct split must reproduce
    assert main([str(tmp_path / "in"), str(tmp_path / "alone"), "extract", *quick]) == ExitCode.OK
    alone = {r["series_number"]: r["output_path"] for r in read_csv(tmp_path / "alone" / "series_index.csv")}
    first, second = truth.series
    _retag(first.files, AcquisitionNumber=1)
    _retag(second.files, SeriesInstanceUID=first.series_instance_uid, SeriesNumber=2, AcquisitionNumber=2)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", *quick]) == ExitCode.OK
    rows = read_csv(tmp_path / "out" / "extract_report.csv")
    assert [(r["part"], r["decision"], r["n_slices"]) for r in rows] == [("1", "converted", "20"), ("2", "converted", "20")]
    assert "repeat" in rows[0]["reason"] and "AcquisitionNumber" in rows[0]["reason"]
    paths = sorted(r["output_path"] for r in read_csv(tmp_path / "out" / "series_index.csv"))
    assert [p.endswith(f"_part-{n}.nii.gz") for n, p in enumerate(paths, 1)] == [True, True]
    for part, number in zip(paths, ("2", "3"), strict=True):  # each part is exactly its pass
        split, single = nib.load(tmp_path / "out" / part), nib.load(tmp_path / "alone" / alone[number])
        assert np.allclose(split.affine, single.affine)
        assert np.array_equal(np.asarray(split.dataobj), np.asarray(single.dataobj))


def test_exact_duplicate_files_are_dropped_and_reported(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_dup", [SeriesSpec(kind="axial", series_number=2, n_slices=20)])
    files = truth.series[0].files
    for f in files[:3]:
        shutil.copy(f, f.with_name(f.name + "_copy"))
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]) == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "converted" and row["n_slices"] == "20" and row["duplicates"] == "3"
    assert "exact duplicate" in row["reason"]


def test_missing_slices_are_interpolated_and_the_gap_reported(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_gap", [SeriesSpec(kind="axial", series_number=2, n_slices=30, slice_step=2.0)])
    for f in truth.series[0].files[10:13]:  # three slices missing: an 8 mm gap
        f.unlink()
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]) == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "converted" and float(row["max_gap_mm"]) == pytest.approx(8.0)
    assert "largest gap 8 mm" in row["reason"]
    (index,) = read_csv(tmp_path / "out" / "series_index.csv")
    img = nib.load(tmp_path / "out" / index["output_path"])
    data = np.asarray(img.dataobj)
    # the gap is filled by interpolation, not left as air: the brain at the head centre is there
    # on every output slice between the first and last input slice
    cx, cy, cz = truth.phantom.center_lps
    positions = np.asarray(truth.series[0].positions_lps)
    zs = np.arange(positions[:, 2].min() + 1, positions[:, 2].max() - 1, 2.0)
    vox = np.rint(world_to_voxel(img, np.array([[-cx, -cy, z] for z in zs]))).astype(int)
    assert np.all(data[tuple(vox.T)] > -200)


def test_bad_files_and_an_exam_without_dicom_are_failures(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_bad", [SeriesSpec(kind="axial", series_number=2, n_slices=12)])
    (truth.path / "notes.txt").write_text("harmless")
    (truth.path / "zero.dcm").write_bytes(b"")
    victim = truth.series[0].files[5]
    victim.write_bytes(victim.read_bytes()[:-500])
    (tmp_path / "in" / "exam_nodicom").mkdir()
    (tmp_path / "in" / "exam_nodicom" / "readme.txt").write_text("no images here")
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]
    assert main(args) == ExitCode.FAILED
    rows = read_csv(tmp_path / "out" / "extract_report.csv")
    by_path = {r["path"]: r for r in rows if r["path"] and r["dicom_id"] == "exam_bad"}
    assert set(by_path) == {"zero.dcm", str(victim.relative_to(truth.path))}
    assert all(r["decision"] == "failed" for r in by_path.values())
    assert by_path["zero.dcm"]["reason"] == "empty file (0 bytes)"
    converted = [r for r in rows if r["decision"] == "converted"]
    assert len(converted) == 1 and converted[0]["n_slices"] == "11"  # the rest still converts
    nodicom = [r for r in rows if r["dicom_id"] == "exam_nodicom"]
    assert [(r["path"], r["decision"]) for r in nodicom] == [("", "failed"), ("readme.txt", "excluded")]
    assert "no DICOM image files" in nodicom[0]["reason"]  # the exam fails, and each file says why
    assert nodicom[1]["reason"].startswith("not DICOM")
