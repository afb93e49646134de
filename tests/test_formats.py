"""Input breadth: compressed transfer syntaxes, acquisition numbering, slice provenance, naming."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from orbitct_app.cli import main
from orbitct_app.discover import read_slice_info
from orbitct_app.errors import ExitCode
from orbitct_app.nifti import output_stem, safe_name
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam
from orbitct_app.volume import read_pixels

QUICK = ["--spacing", "2", "--size", "128", "-q"]


def _extract(root: Path, out: Path, *extra: str) -> int:
    return main([str(root), str(out), "extract", *QUICK, *extra])


def _volume(out: Path) -> np.ndarray:
    (row,) = read_csv(out / "series_index.csv")
    return np.asarray(nib.Nifti1Image.from_filename(out / row["output_path"]).dataobj)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
@pytest.mark.parametrize("unsigned", [False, True])
def test_compressed_series_give_the_same_hu_as_their_uncompressed_twin(
    tmp_path: Path, syntax: str, unsigned: bool
) -> None:
    volumes = []
    for name, ts in (("plain", ExplicitVRLittleEndian), ("packed", syntax)):
        spec = SeriesSpec(kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=16,
                          slice_step=6.0, transfer_syntax=ts, unsigned=unsigned)
        truth = write_exam(tmp_path / name / "in", "exam_c", [spec], seed=5, plant_phi=False)
        assert pydicom.dcmread(truth.series[0].files[0]).file_meta.TransferSyntaxUID == ts
        assert _extract(tmp_path / name / "in", tmp_path / name / "out") == ExitCode.OK
        volumes.append(_volume(tmp_path / name / "out"))
    assert np.array_equal(volumes[0], volumes[1])


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "693_J2KR.dcm"])
def test_real_compressed_files_decode(shared_data: Path, name: str) -> None:
    path = shared_data / "edge_cases" / "single_files" / name
    info = read_slice_info(path)
    assert np.array_equal(read_pixels(info), pydicom.dcmread(path).pixel_array)


def test_an_undecodable_transfer_syntax_fails_its_series_with_the_syntax_named(tmp_path: Path) -> None:
    truth = write_exam(
        tmp_path / "in",
        "exam_u",
        [SeriesSpec(kind="axial", series_number=2, n_slices=8, rows=32, cols=32, transfer_syntax=RLELossless)],
        plant_phi=False,
    )
    for f in truth.series[0].files:  # claim JPEG-LS: no decoder for it is installed
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.81")
        ds.save_as(f)
    assert _extract(tmp_path / "in", tmp_path / "out") == ExitCode.FAILED
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "failed"
    assert "JPEG-LS Lossy (Near-Lossless) Image Compression" in row["reason"]
    assert "\n" not in row["reason"]


def test_acquisition_numbers_alone_do_not_split_a_series(tmp_path: Path) -> None:
    truth = write_exam(
        tmp_path / "in", "exam_a", [SeriesSpec(kind="axial", series_number=2, n_slices=24)], plant_phi=False
    )
    for i, f in enumerate(truth.series[0].files):  # one number per rotation, as GE writes them
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 1 + i // 4
        ds.save_as(f)
    assert _extract(tmp_path / "in", tmp_path / "out") == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "converted" and row["part"] == "" and row["n_slices"] == "24"


def test_sidecar_lists_every_source_slice_in_position_order(tmp_path: Path) -> None:
    spec = SeriesSpec(kind="axial", series_number=2, n_slices=18, order="descending", tilt_deg=12.0)
    truth = write_exam(tmp_path / "in", "exam_s", [spec], shuffle_names=True, plant_phi=False)
    assert _extract(tmp_path / "in", tmp_path / "out") == ExitCode.OK
    (row,) = read_csv(tmp_path / "out" / "series_index.csv")
    sidecar = json.loads((tmp_path / "out" / row["output_path"].replace(".nii.gz", ".json")).read_text())
    series = truth.series[0]
    assert series.slice_normal is not None
    normal = np.asarray(series.slice_normal) / np.linalg.norm(series.slice_normal)
    expected = sorted(
        (float(np.asarray(p) @ normal), uid)
        for p, uid in zip(series.positions_lps, series.sop_instance_uids, strict=True)
    )
    listed = [(s["OffsetAlongNormalMM"], s["SOPInstanceUID"]) for s in sidecar["Slices"]]
    assert [uid for _, uid in listed] == [uid for _, uid in expected]
    assert np.allclose([o for o, _ in listed], [o for o, _ in expected], atol=1e-3)
    assert sidecar["Geometry"]["LargestGapMM"] == pytest.approx(3.0 * np.cos(np.radians(12.0)), abs=1e-3)


def test_output_names_are_readable_unique_stable_and_safe(tmp_path: Path) -> None:
    assert safe_name("Kopf/Hals  1.0 mm Ø H30s") == "Kopf-Hals-1-0-mm-H30s"
    assert output_stem("exam_001", 3, "STD BRAIN 1MM, iDose") == "exam_001_S3_STD-BRAIN-1MM-iDose"
    series = [
        SeriesSpec(kind="axial", series_number=2, n_slices=12, series_description="Head/Neck ü"),
        SeriesSpec(kind="axial", series_number=3, n_slices=12, series_description="Same"),
        SeriesSpec(kind="axial", series_number=4, n_slices=12, series_description="Same"),
    ]
    truth = write_exam(tmp_path / "in", "exam_n", series, plant_phi=False)
    for f in truth.series_by_number(4).files:  # two series, one number and description
        ds = pydicom.dcmread(f)
        ds.SeriesNumber = 3
        ds.save_as(f)
    assert _extract(tmp_path / "in", tmp_path / "out") == ExitCode.OK
    names = sorted(Path(r["output_path"]).name for r in read_csv(tmp_path / "out" / "series_index.csv"))
    assert names[0] == "exam_n_S2_Head-Neck-u.nii.gz"
    assert all(n.startswith("exam_n_S3_Same_uid-") for n in names[1:]) and names[1] != names[2]
    assert all(n.isascii() and " " not in n for n in names)
    assert _extract(tmp_path / "in", tmp_path / "again") == ExitCode.OK  # stable across runs
    again = sorted(Path(r["output_path"]).name for r in read_csv(tmp_path / "again" / "series_index.csv"))
    assert again == names
