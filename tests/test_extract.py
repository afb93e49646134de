"""The extract stage, tested in world coordinates on generated phantoms with known markers."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image, PngImagePlugin
from pydicom.uid import JPEG2000Lossless, RLELossless
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, Phantom, SeriesSpec, Sphere, write_exam
from orbitct_app.volume import AIR_HU

# Fine enough that a 2 mm marker is sampled by several pixels and slices: its sampled centroid is
# then within a few tenths of a millimetre of the truth, so 1 mm tolerance tests the geometry.
FINE: dict[str, Any] = {"rows": 200, "cols": 200, "pixel_spacing": (1.1, 1.15), "n_slices": 84, "slice_step": 1.0}

WORLD_SERIES = {
    2: SeriesSpec(kind="axial", **FINE, series_description="ascending"),
    3: SeriesSpec(kind="axial", **FINE, order="descending", series_description="descending"),
    4: SeriesSpec(kind="axial", **FINE, tilt_deg=20.0, series_description="tilt plus"),
    5: SeriesSpec(kind="axial", **FINE, tilt_deg=-20.0, order="descending", series_description="tilt minus"),
    6: SeriesSpec(kind="axial", **FINE, unsigned=True, padding=True, series_description="unsigned padded"),
    7: SeriesSpec(kind="axial", **FINE, per_slice_rescale=True, series_description="per slice rescale"),
    8: SeriesSpec(kind="axial", **FINE, transfer_syntax=RLELossless, padding=True, series_description="rle"),
    9: SeriesSpec(kind="axial", **FINE, transfer_syntax=JPEG2000Lossless, unsigned=True, series_description="j2k"),
}
SPACING, SIZE = 1.0, 256
WorldRun = tuple[ExamTruth, Path, dict[int, dict[str, str]]]
"""The exam, the output folder and the index rows by series number."""


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> WorldRun:
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
    img = nib.Nifti1Image.from_filename(out / row["output_path"])
    return np.asarray(img.dataobj), img


def marker_centroids_ras(data: NDArray[np.int16], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """HU-weighted centroids (RAS mm) of the dense blobs (> 1500 HU, face-connected) in a volume.

    Only the dense voxels are grouped (neighbours one voxel apart), so large volumes cost no
    volume-sized label array.
    """
    points = np.argwhere(data > 1500)
    pairs = cKDTree(points).query_pairs(1.01, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    n, blob = connected_components(graph, directed=False)
    weights = np.clip(data[tuple(points.T)].astype(np.float64) - 1000.0, 0, None)
    total = np.bincount(blob, weights, minlength=n)
    ijk = np.stack([np.bincount(blob, weights * points[:, a], minlength=n) for a in range(3)], axis=1) / total[:, None]
    ras: NDArray[np.float64] = nib.affines.apply_affine(affine, ijk)
    return ras


def covered_markers(truth: ExamTruth, number: int) -> list[Sphere]:
    """The markers wholly inside a series' slab (its first to last slice plane, with margin)."""
    series = truth.series_by_number(number)
    assert series.slice_normal is not None
    normal = np.asarray(series.slice_normal) / np.linalg.norm(series.slice_normal)
    offsets = np.asarray(series.positions_lps) @ normal
    margin = truth.phantom.marker_radius_mm + 1.0
    return [
        m
        for m in truth.phantom.markers
        if offsets.min() + margin <= np.asarray(m.center_lps) @ normal <= offsets.max() - margin
    ]


def qc_title(png: Path) -> str:
    """The title a QC picture carries in its PNG text."""
    with Image.open(png) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile)
        return str(image.text["Title"])


def report_warnings(out: Path) -> str:
    """The warnings section of ``report.html``."""
    page = (out / "report.html").read_text(encoding="utf-8")
    start = page.index('<section id="warnings">')
    return page[start : page.index("</section>", start)]


def world_to_voxel(img: nib.Nifti1Image, points_ras: NDArray[np.float64]) -> NDArray[np.float64]:
    voxels: NDArray[np.float64] = nib.affines.apply_affine(np.linalg.inv(img.affine), points_ras)
    return voxels


@pytest.mark.parametrize("number", sorted(WORLD_SERIES))
def test_markers_land_at_their_true_world_position(world_run: WorldRun, number: int) -> None:
    truth, out, index = world_run
    data, img = load(out, index[number])
    found = marker_centroids_ras(data, img.affine)
    markers = covered_markers(truth, number)
    assert len(markers) >= 4 and len(found) >= len(markers)
    for marker in markers:
        distance = np.linalg.norm(found - np.asarray(marker.center_ras), axis=1).min()
        assert distance < 1.0, f"series {number}: marker {marker.name} is {distance:.2f} mm off"


@pytest.mark.parametrize("number", sorted(WORLD_SERIES))
def test_inserts_keep_their_hu(world_run: WorldRun, number: int) -> None:
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
def test_headrest_is_air_and_grid_is_right(world_run: WorldRun, number: int) -> None:
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
    lps = np.array(
        [[cx + radius * np.sin(a), cy + radius * np.cos(a), cz + dz] for a in angles for dz in (-15.0, 0.0, 15.0)]
    )
    vox = np.rint(world_to_voxel(img, lps * np.array([-1, -1, 1]))).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(data.shape)), axis=1)
    assert inside.sum() >= 3  # the head-rest is inside the field of view
    assert np.all(data[tuple(vox[inside].T)] == -1000)
    # and the head itself is there: the brain centre reads brain HU
    centre = np.rint(world_to_voxel(img, np.asarray([[-cx, -cy, cz]]))[0]).astype(int)
    assert abs(int(data[tuple(centre)]) - phantom.hu_brain) < 15


def test_report_and_index_rows(world_run: WorldRun) -> None:
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
    img = nib.Nifti1Image.from_filename(tmp_path / "out" / row["output_path"])
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
    assert (
        main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"])
        == ExitCode.OK
    )
    decisions = {
        int(r["series_number"]): (r["decision"], r["reason"]) for r in read_csv(tmp_path / "out" / "extract_report.csv")
    }
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
    assert [(r["part"], r["decision"], r["n_slices"]) for r in rows] == [
        ("1", "converted", "20"),
        ("2", "converted", "20"),
    ]
    assert "repeat" in rows[0]["reason"] and "AcquisitionNumber" in rows[0]["reason"]
    paths = sorted(r["output_path"] for r in read_csv(tmp_path / "out" / "series_index.csv"))
    assert [p.endswith(f"_part-{n}.nii.gz") for n, p in enumerate(paths, 1)] == [True, True]
    for part, number in zip(paths, ("2", "3"), strict=True):  # each part is exactly its pass
        split = nib.Nifti1Image.from_filename(tmp_path / "out" / part)
        single = nib.Nifti1Image.from_filename(tmp_path / "alone" / alone[number])
        assert np.allclose(split.affine, single.affine)
        assert np.array_equal(np.asarray(split.dataobj), np.asarray(single.dataobj))


def test_exact_duplicate_files_are_dropped_and_reported(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_dup", [SeriesSpec(kind="axial", series_number=2, n_slices=20)])
    files = truth.series[0].files
    for f in files[:3]:
        shutil.copy(f, f.with_name(f.name + "_copy"))
    assert (
        main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"])
        == ExitCode.OK
    )
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "converted" and row["n_slices"] == "20" and row["duplicates"] == "3"
    assert "exact duplicate" in row["reason"]


def test_missing_slices_are_interpolated_and_the_gap_reported(tmp_path: Path) -> None:
    truth = write_exam(
        tmp_path / "in", "exam_gap", [SeriesSpec(kind="axial", series_number=2, n_slices=30, slice_step=2.0)]
    )
    for f in truth.series[0].files[10:13]:  # three slices missing: an 8 mm gap
        f.unlink()
    # over 3 x the 2 mm spacing, so by default the series would be split there; --max-gap keeps it whole
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]
    assert main([*args, "--max-gap", "8.5"]) == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "converted" and float(row["max_gap_mm"]) == pytest.approx(8.0)
    assert "largest gap 8 mm" in row["reason"]
    (index,) = read_csv(tmp_path / "out" / "series_index.csv")
    img = nib.Nifti1Image.from_filename(tmp_path / "out" / index["output_path"])
    data = np.asarray(img.dataobj)
    # the gap is filled by interpolation, not left as air: the brain at the head centre is there
    # on every output slice between the first and last input slice
    cx, cy, _ = truth.phantom.center_lps
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


# --- what the grid cuts: a body wider than the default 256 mm field of view -----------------

WIDE = Phantom.wide(440.0, marker_radius_mm=4.0)  # 440 mm from side to side, markers 25 mm inside the skin
WIDE_SERIES = SeriesSpec(
    kind="axial", series_number=2, rows=256, cols=256, pixel_spacing=(2.0, 2.0), n_slices=24, slice_step=2.0
)


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExamTruth, dict[str, Path]]:
    """The wide body extracted at the default grid (512 x 0.5 mm) and with ``--size fit``."""
    root = tmp_path_factory.mktemp("wide")
    truth = write_exam(root / "in", "exam_wide", [WIDE_SERIES], seed=5, phantom=WIDE)
    outs = {"default": root / "default", "fit": root / "fit"}
    assert main([str(root / "in"), str(outs["default"]), "extract", "-q"]) == ExitCode.OK
    assert main([str(root / "in"), str(outs["fit"]), "extract", "--size", "fit", "-q"]) == ExitCode.OK
    return truth, outs


def _ellipsoid_fraction_outside(phantom: Phantom, zs: NDArray[np.float64], half_width: float) -> float:
    """Of the skin ellipsoid's cross-sections at ``zs``, the area fraction with |x - centre| > half_width."""
    a, b, c = phantom.head_semi_axes_mm
    scale = np.sqrt(np.clip(1 - ((zs - phantom.center_lps[2]) / c) ** 2, 0, None))
    areas = np.pi * a * b * scale**2
    t = np.clip(half_width / (a * scale), 0, 1)
    outside = 1 - 2 / np.pi * (t * np.sqrt(1 - t**2) + np.arcsin(t))
    return float((areas * outside).sum() / areas.sum())


def test_a_body_wider_than_the_grid_reports_what_is_cut(wide_run: tuple[ExamTruth, dict[str, Path]]) -> None:
    truth, outs = wide_run
    out = outs["default"]
    (row,) = read_csv(out / "extract_report.csv")
    (index,) = read_csv(out / "series_index.csv")
    fraction = float(row["body_cropped_fraction"])
    zs = np.asarray(truth.series[0].positions_lps)[:, 2]
    expected = _ellipsoid_fraction_outside(truth.phantom, zs, 128.0)  # 512 voxels of 0.5 mm
    assert expected > 0.25 and fraction == pytest.approx(expected, abs=0.01)
    assert float(index["body_cropped_fraction"]) == fraction
    assert "body cropped" in row["reason"] and f"fraction {fraction:.3g}" in row["reason"]
    data, img = load(out, index)
    assert data.shape[:2] == (512, 512)
    for marker in truth.phantom.markers[-2:]:  # the lateral markers are off the grid
        voxel = world_to_voxel(img, np.asarray([marker.center_ras]))[0]
        assert abs(voxel[0] - 255.5) > 256
    sidecar = json.loads((out / index["output_path"].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Processing"]["BodyCroppedFraction"] == pytest.approx(fraction, rel=1e-5)
    assert sidecar["Processing"]["InPlaceSize"] == 512
    title = qc_title(out / index["output_path"].replace(".nii.gz", "_qc.png"))
    assert "body cropped" in title and f"fraction {fraction:.3g}" in title
    warnings = report_warnings(out)
    assert "crop" in warnings and f"fraction {fraction:.3g}" in warnings and "series 2" in warnings


def test_size_fit_holds_the_whole_body_with_every_marker_in_place(wide_run: tuple[ExamTruth, dict[str, Path]]) -> None:
    truth, outs = wide_run
    out = outs["fit"]
    (row,) = read_csv(out / "extract_report.csv")
    (index,) = read_csv(out / "series_index.csv")
    assert row["body_cropped_fraction"] == index["body_cropped_fraction"] == "0"
    assert "crop" not in row["reason"]
    data, img = load(out, index)
    # the mask spans at most 440 mm (879 voxel gaps of 0.5 mm): 896 is the smallest multiple of 32
    assert data.shape[:2] == (896, 896)
    found = marker_centroids_ras(data, img.affine)
    markers = covered_markers(truth, 2)
    assert {"lateral_left", "lateral_right"} <= {m.name for m in markers} and len(markers) >= 4
    for marker in markers:
        distance = np.linalg.norm(found - np.asarray(marker.center_ras), axis=1).min()
        assert distance < 1.0, f"marker {marker.name} is {distance:.2f} mm off"
    sidecar = json.loads((out / index["output_path"].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Processing"]["BodyCroppedFraction"] == 0.0
    assert (sidecar["Processing"]["InPlaceSize"], sidecar["Processing"]["InPlaceSizeOption"]) == (896, "fit")
    title = qc_title(out / index["output_path"].replace(".nii.gz", "_qc.png"))
    assert "crop" not in title
    assert "crop" not in report_warnings(out)


def test_heads_report_nothing_cropped(world_run: WorldRun, tmp_path: Path) -> None:
    _, out, index = world_run
    assert {r["body_cropped_fraction"] for r in read_csv(out / "extract_report.csv")} == {"0"}
    assert {r["body_cropped_fraction"] for r in index.values()} == {"0"}
    # at the default grid too, with stacks whose length is no whole number of 0.5 mm voxels
    series = [
        SeriesSpec(kind="axial", series_number=n, n_slices=30, slice_step=1.3, tilt_deg=t)
        for n, t in ((2, 0.0), (3, 17.0))
    ]
    write_exam(tmp_path / "in", "exam_h", series, seed=4)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", "-q"]) == ExitCode.OK
    rows = read_csv(tmp_path / "out" / "extract_report.csv")
    assert [(r["decision"], r["body_cropped_fraction"]) for r in rows] == [("converted", "0")] * 2
    assert "crop" not in report_warnings(tmp_path / "out")


# --- blocks of slices far apart under one series: parts, nothing interpolated across --------

GAP_MM = 40.0
"""Table feed added between the two blocks (the gap between their slices is the step plus this)."""
BLOCKS = {
    2: SeriesSpec(kind="axial", **{**FINE, "n_slices": 60}, extra_gaps=((30, GAP_MM),), series_description="blocks"),
    3: SeriesSpec(
        kind="axial",
        **{**FINE, "n_slices": 60},
        extra_gaps=((30, GAP_MM),),
        tilt_deg=18.0,
        order="descending",
        series_description="blocks tilted",
    ),
    # uneven: one slice missing in the first block (a 2 mm gap among 1 mm steps) stays in it
    4: SeriesSpec(
        kind="axial",
        **{**FINE, "n_slices": 60},
        extra_gaps=((12, 1.0), (30, GAP_MM)),
        series_description="blocks uneven",
    ),
    # a block of two slices cannot make a volume
    5: SeriesSpec(
        kind="axial", n_slices=22, slice_step=2.0, extra_gaps=((2, GAP_MM),), series_description="short block"
    ),
}


@pytest.fixture(scope="module")
def blocks_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExamTruth, Path]:
    root = tmp_path_factory.mktemp("blocks")
    series = [dataclasses.replace(s, series_number=n) for n, s in BLOCKS.items()]
    truth = write_exam(root / "in", "exam_gaps", series, seed=9)
    out = root / "out"
    assert (
        main([str(root / "in"), str(out), "extract", "--spacing", str(SPACING), "--size", str(SIZE), "-q"])
        == ExitCode.OK
    )
    return truth, out


def _blocks(truth: ExamTruth, number: int) -> list[NDArray[np.float64]]:
    """The written slice positions (LPS) of a series, block by block (split at its widest gap)."""
    series = truth.series_by_number(number)
    normal = np.asarray(series.slice_normal)
    positions = np.asarray(series.positions_lps)
    positions = positions[np.argsort(positions @ normal)]
    cut = int(np.argmax(np.diff(positions @ normal))) + 1
    return [positions[:cut], positions[cut:]]


@pytest.mark.parametrize("number", [2, 3, 4])
def test_blocks_apart_become_parts_within_their_blocks(blocks_run: tuple[ExamTruth, Path], number: int) -> None:
    truth, out = blocks_run
    rows = [r for r in read_csv(out / "extract_report.csv") if r["series_number"] == str(number)]
    assert [(r["part"], r["decision"], r["n_slices"]) for r in rows] == [
        ("1", "converted", "30"),
        ("2", "converted", "30"),
    ]
    normal = np.asarray(truth.series_by_number(number).slice_normal)
    gap_along_normal = (FINE["slice_step"] + GAP_MM) * normal[2]
    assert (
        f"a slice gap of {gap_along_normal:.3g} mm" in rows[0]["reason"] and "nothing interpolated" in rows[0]["reason"]
    )
    assert float(rows[0]["max_gap_mm"]) < 3 and float(rows[1]["max_gap_mm"]) < 3
    assert ("uneven spacing" in rows[0]["reason"]) == (number == 4)  # the missing slice is reported
    index = {r["part"]: r for r in read_csv(out / "series_index.csv") if r["series_number"] == str(number)}
    for part, block in zip(("1", "2"), _blocks(truth, number), strict=True):
        assert index[part]["output_path"].endswith(f"_part-{part}.nii.gz")
        data, img = load(out, index[part])
        # every voxel with something in it lies between the block's first and last slice plane
        # (nothing from the gap or the other block), and the part fills its block
        offsets = block @ normal
        tissue_lps = nib.affines.apply_affine(img.affine, np.argwhere(data > AIR_HU)) * np.array([-1.0, -1.0, 1.0])
        along = tissue_lps @ normal
        assert offsets.min() - 0.01 <= along.min() < offsets.min() + 1.0
        assert offsets.max() - 1.0 < along.max() <= offsets.max() + 0.01
        found = marker_centroids_ras(data, img.affine)
        margin = truth.phantom.marker_radius_mm + 1.0
        inside = [
            m
            for m in truth.phantom.markers
            if offsets.min() + margin <= np.asarray(m.center_lps) @ normal <= offsets.max() - margin
        ]
        assert inside, "each block holds markers"
        for marker in inside:
            distance = np.linalg.norm(found - np.asarray(marker.center_ras), axis=1).min()
            assert distance < 1.0, f"series {number} part {part}: marker {marker.name} is {distance:.2f} mm off"


def test_a_block_too_short_is_excluded_and_the_rest_converts(blocks_run: tuple[ExamTruth, Path]) -> None:
    _, out = blocks_run
    rows = [r for r in read_csv(out / "extract_report.csv") if r["series_number"] == "5"]
    assert [(r["part"], r["decision"], r["n_slices"]) for r in rows] == [
        ("1", "excluded", "2"),
        ("2", "converted", "20"),
    ]
    assert (
        "too few slices to make a volume (2 < 3)" in rows[0]["reason"] and "a slice gap of 42 mm" in rows[0]["reason"]
    )
    text = report_warnings(out)
    assert "series split" in text and "series 5 part 2" in text


def test_a_larger_max_gap_keeps_one_volume(blocks_run: tuple[ExamTruth, Path], tmp_path: Path) -> None:
    truth, _ = blocks_run
    args = [str(truth.path.parent), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "128", "-q"]
    assert main([*args, "--max-gap", "45"]) == ExitCode.OK
    rows = {r["series_number"]: r for r in read_csv(tmp_path / "out" / "extract_report.csv")}
    assert len(rows) == 4 and {r["part"] for r in rows.values()} == {""}
    assert "uneven spacing" in rows["2"]["reason"] and "largest gap 41 mm" in rows["2"]["reason"]
    (index,) = [r for r in read_csv(tmp_path / "out" / "series_index.csv") if r["series_number"] == "2"]
    sidecar = json.loads((tmp_path / "out" / index["output_path"].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Processing"]["MaxSliceGapMM"] == sidecar["Processing"]["MaxGapOptionMM"] == 45.0
