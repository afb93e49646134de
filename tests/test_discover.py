"""Exam discovery: DICOM recognised by content at any depth, junk skipped with reasons."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from orbitct_app.discover import read_slice_info, scan_exam
from orbitct_app.errors import NotDicomError, UsageError
from orbitct_app.paths import find_exams
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

SMALL_AXIAL = SeriesSpec(kind="axial", rows=32, cols=32, pixel_spacing=(7.0, 7.0), n_slices=12)


def _small_exam(root: Path, name: str = "exam_001", **kwargs: Any) -> ExamTruth:
    series = [SeriesSpec(kind="scout", series_number=1), SMALL_AXIAL, SeriesSpec(kind="summary")]
    return write_exam(root, name, series, **kwargs)


def test_nested_extensionless_files_are_found_and_grouped(tmp_path: Path) -> None:
    truth = _small_exam(tmp_path, nested=True, shuffle_names=True)
    assert all(f.suffix == "" for f in truth.files)
    assert any(len(f.relative_to(truth.path).parts) > 2 for f in truth.files)
    exam = scan_exam(truth.path)
    assert exam.dicom_id == "exam_001"
    assert exam.skipped == ()
    found = {s.series_uid: s.n_files for s in exam.series}
    assert found == {s.series_instance_uid: s.n_instances for s in truth.series}
    by_number = {s.series_number: s for s in exam.series}
    assert by_number[2].n_files == 12 and by_number[2].modality == "CT"
    # slices of a series are ordered by InstanceNumber and carry their geometry
    numbers = [n for s in by_number[2].slices if (n := s.instance_number) is not None]
    assert len(numbers) == 12 and numbers == sorted(numbers)
    assert all(s.position is not None and s.orientation is not None for s in by_number[2].slices)


def _write_dicomdir(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "DEMO"
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("README.txt", b"This folder holds the exam.\n", "not DICOM"),
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + b"\x00" * 200, "not DICOM"),
        ("Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 300, "not DICOM"),
        ("empty", b"", "empty file"),
        ("notes.dcm", b"patient said hello\n" * 20, "not DICOM"),
    ],
)
def test_junk_files_are_skipped_with_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    truth = _small_exam(tmp_path)
    (truth.path / "sub").mkdir()
    (truth.path / "sub" / name).write_bytes(content)
    exam = scan_exam(truth.path)
    assert [(str(s.path), reason in s.reason) for s in exam.skipped] == [(f"sub/{name}", True)]
    assert exam.n_files == len(truth.files)  # the rest is still found


def test_truncated_dicom_and_dicomdir_are_skipped(tmp_path: Path) -> None:
    truth = _small_exam(tmp_path)
    victim = truth.series_by_number(2).files[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])  # pixel data cut short
    header_only = truth.path / "cut_in_header"
    header_only.write_bytes(data[:400])
    _write_dicomdir(truth.path / "DICOMDIR")
    exam = scan_exam(truth.path)
    reasons = {str(s.path): s.reason for s in exam.skipped}
    assert "truncated" in reasons[str(victim.relative_to(truth.path))]
    assert "truncated" in reasons["cut_in_header"] or "unreadable" in reasons["cut_in_header"]
    assert "DICOMDIR" in reasons["DICOMDIR"]
    assert {s.series_number: s.n_files for s in exam.series}[2] == 11


def test_deflated_files_are_read_whole(tmp_path: Path) -> None:
    """A deflated data set is one zlib stream: its pixel data is found by inflating it."""
    spec = SeriesSpec(kind="axial", rows=16, cols=16, n_slices=3, transfer_syntax=DeflatedExplicitVRLittleEndian)
    truth = write_exam(tmp_path, "exam_001", [spec])
    exam = scan_exam(truth.path)
    assert exam.skipped == ()
    assert [(s.n_files, s.has_pixel_data) for s in exam.series] == [(3, True)]
    victim = truth.files[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 40])
    reasons = [s.reason for s in scan_exam(truth.path).skipped]
    assert len(reasons) == 1 and "truncated" in reasons[0]


def test_dicom_without_preamble_is_recognised(tmp_path: Path) -> None:
    truth = _small_exam(tmp_path)
    source = truth.series_by_number(2).files[0]
    ds = pydicom.dcmread(source)
    raw = tmp_path / "raw_dataset"
    ds.preamble = None
    del ds.file_meta  # a bare implicit-VR data set, as some old archives hold
    pydicom.dcmwrite(raw, ds, implicit_vr=True, little_endian=True)
    assert raw.read_bytes()[128:132] != b"DICM"
    info = read_slice_info(raw)
    assert info.sop_instance_uid == ds.SOPInstanceUID
    assert info.has_pixel_data


def test_empty_exam_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "exam_empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="orbitct_app"):
        exam = scan_exam(tmp_path / "exam_empty")
    assert exam.series == () and exam.skipped == ()
    assert "holds no files" in caplog.text


def test_empty_series_uid_falls_back_without_merging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    series = [
        SeriesSpec(kind="axial", rows=32, cols=32, pixel_spacing=(7.0, 7.0), n_slices=12, series_number=2),
        SeriesSpec(kind="axial", rows=32, cols=32, pixel_spacing=(7.0, 7.0), n_slices=11, series_number=3),
    ]
    truth = write_exam(tmp_path, "exam_nouid", series)
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = ""
        ds.save_as(f)
    with caplog.at_level(logging.WARNING, logger="orbitct_app"):
        exam = scan_exam(truth.path)
    assert sorted(s.n_files for s in exam.series) == [11, 12]  # two groups, not one
    assert all(s.series_uid == "" and s.key.startswith("no-uid-S") for s in exam.series)
    assert len({s.key for s in exam.series}) == 2
    assert "no SeriesInstanceUID" in caplog.text
    # the key is stable: a second scan gives the same grouping keys
    assert [s.key for s in scan_exam(truth.path).series] == [s.key for s in exam.series]


def test_find_exams_lists_first_level_folders(tmp_path: Path) -> None:
    for name in ("b_exam", "a_exam", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "stray_file.dcm").write_bytes(b"x")
    assert [p.name for p in find_exams(tmp_path)] == ["a_exam", "b_exam"]
    assert [p.name for p in find_exams(tmp_path, ["b_exam"])] == ["b_exam"]
    with pytest.raises(UsageError, match="c_exam"):
        find_exams(tmp_path, ["a_exam", "c_exam"])


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = _small_exam(tmp_path)
    victim = truth.series_by_number(2).files[0]
    real_open = os.open

    def deny(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> int:
        if Path(path) == victim:  # permissions do not stop root: refuse here
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    exam = scan_exam(truth.path)
    assert [(s.path, s.reason) for s in exam.skipped] == [
        (victim.relative_to(truth.path), "cannot read file (Permission denied)")
    ]
    assert {s.series_number: s.n_files for s in exam.series}[2] == 11


def test_not_dicom_error_has_a_reason(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\x08\x00\x05\x00garbage that is too short")
    with pytest.raises(NotDicomError):
        read_slice_info(f)


@pytest.mark.realdata
def test_real_exams_are_discovered(shared_data: Path) -> None:
    exams = {p.name: scan_exam(p) for p in find_exams(shared_data / "exams")}
    assert set(exams) == {"philips_head_phantom", "philips_tilt_phantom", "siemens_body_j2k"}
    head = exams["philips_head_phantom"]
    assert {s.series_number: s.n_files for s in head.series} == {100: 1, 201: 28, 202: 140, 401: 6}
    assert all("DICOMDIR" in s.reason for s in head.skipped) and len(head.skipped) == 4
    summary = next(s for s in head.series if s.series_number == 401)
    assert summary.is_secondary_capture and summary.burned_in_annotation
    tilt = exams["philips_tilt_phantom"]
    assert {s.series_number: s.n_files for s in tilt.series} == {100: 1, 201: 54, 401: 5}
    body = exams["siemens_body_j2k"]
    assert [s.n_files for s in body.series] == [20]
    assert body.series[0].series_uid == "" and body.series[0].key.startswith("no-uid")
    assert body.series[0].first.transfer_syntax == "1.2.840.10008.1.2.4.90"
