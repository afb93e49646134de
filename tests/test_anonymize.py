"""The anonymize stage on generated exams: the PHI battery, survival, bytes, atomicity, reports."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

import orbitct_app
from orbitct_app import __version__, atomic, pipeline
from orbitct_app.anonymize import stage as anonymize
from orbitct_app.cli import main
from orbitct_app.deid import ORBITCT, apply_profile, mark_deidentified
from orbitct_app.deid import files as deid_files
from orbitct_app.dicomio import write
from orbitct_app.dicomio.chunks import Piece
from orbitct_app.errors import DeidError, ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.records import read_record
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ORBITCT_ATTRIBUTES, ExamTruth, SeriesSpec, write_exam

from hostile import write_sr

EXAM_A, EXAM_B = "exam_001", "exam_002"


# --- helpers ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Input:
    root: Path
    truths: dict[str, ExamTruth]

    @property
    def forbidden(self) -> list[bytes]:
        return sorted({b for t in self.truths.values() for b in t.orbitct_forbidden_bytes})


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files_under(root)}


def leaks(root: Path, forbidden: Iterable[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, value) where a forbidden value occurs in the raw bytes of a file under root."""
    forbidden = list(forbidden)
    found = []
    for path in files_under(root):
        data = path.read_bytes()
        found += [(str(path.relative_to(root)), v) for v in forbidden if v in data]
    return found


def private_elements(ds: Dataset) -> list[str]:
    """Private tags at any depth, private sequences' contents included, and private file meta."""
    found = [str(e.tag) for e in ds.iterall() if e.tag.is_private]
    meta = getattr(ds, "file_meta", None) or {}
    found += [str(t) for t in (0x00020100, 0x00020102) if t in meta]
    return found


def check_deidentified(ds: Dataset, pseudonym: str) -> None:
    """The twelve attributes hold their documented values wherever they occur; nothing private."""
    assert private_elements(ds) == []
    for elem in ds.iterall():
        if elem.keyword in ("PatientName", "PatientID"):
            assert str(elem.value) == pseudonym, elem.keyword
        elif elem.keyword in ORBITCT_ATTRIBUTES:
            assert elem.value in ("", None), elem.keyword
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == f"orbitct-app {__version__} profile orbitct"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID


def expected_outputs(truth: ExamTruth, min_slices: int) -> set[str]:
    return {
        str(f.relative_to(truth.path))
        for s in truth.series
        if s.n_instances > min_slices
        for f in s.files
    }


def outputs(out: Path, dicom_id: str) -> set[str]:
    root = out / "anonymized" / dicom_id
    return {str(p.relative_to(root)) for p in files_under(root)}


def run(inp: Path, out: Path, **kwargs: Any) -> pipeline.RunSummary:
    kwargs.setdefault("n_procs", 1)
    stage = kwargs.pop("stage", Stage.ANONYMIZE)
    options = Options(inp, out, stage=stage, **kwargs)
    options.validate()
    return pipeline.run(options)


def report(out: Path) -> list[dict[str, str]]:
    return read_csv(out / "anonymize_report.csv")


def write_media_index(path: Path, marker: str) -> None:
    """A DICOMDIR-like media index file naming the patient."""
    record = Dataset()
    record.DirectoryRecordType = "PATIENT"
    record.PatientName = marker
    record.PatientID = marker
    ds = Dataset()
    ds.FileSetID = "SYNTH"
    ds.DirectoryRecordSequence = Sequence([record])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_sr_series(folder: Path, n: int, marker: str) -> str:
    """``n`` text structured reports (no pixel data) in one series; returns its UID."""
    series_uid = generate_uid()
    for k in range(n):
        write_sr(folder / f"SR{k:03d}.dcm", series_uid, marker, series_number=500, instance=k + 1)
    return series_uid


HARMLESS_JUNK = {
    "README.txt": b"exported from PACS\n",
    ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(64),
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64),
}
PROBLEM_FILES = {"empty": b"", "x.dcm": b"this is not DICOM at all\n" * 4}
JUNK = {**HARMLESS_JUNK, **PROBLEM_FILES}


def add_junk(exam_dir: Path, truth: ExamTruth) -> Path:
    """Junk files and a truncated copy of a slice; returns the truncated file."""
    for name, data in JUNK.items():
        (exam_dir / name).write_bytes(data)
    source = truth.series_by_number(2).files[0]
    truncated = source.parent / "truncated.dcm"
    data = source.read_bytes()
    truncated.write_bytes(data[: len(data) - 1000])
    return truncated


@pytest.fixture(scope="module")
def phi_input(tmp_path_factory: pytest.TempPathFactory) -> Input:
    """Two exams with every value planted; every transfer syntax the generator has."""
    root = tmp_path_factory.mktemp("phi") / "in"
    def axial(number: int, n: int, syntax: str) -> SeriesSpec:
        return SeriesSpec(
            kind="axial", series_number=number, n_slices=n, transfer_syntax=syntax, rows=64, cols=64
        )

    truths = {
        EXAM_A: write_exam(root, EXAM_A, seed=1),  # scout (1), axial (40), summary (2)
        EXAM_B: write_exam(
            root,
            EXAM_B,
            [
                SeriesSpec(kind="scout", series_number=1),
                axial(2, 12, RLELossless),
                axial(3, 12, JPEG2000Lossless),
                axial(4, 11, ImplicitVRLittleEndian),
                axial(5, 11, DeflatedExplicitVRLittleEndian),
                SeriesSpec(kind="summary", series_number=999, n_slices=1, rows=64, cols=64),
            ],
            seed=2,
            nested=True,
            shuffle_names=True,
        ),
    }
    inp = Input(root, truths)
    assert len(inp.forbidden) > 100
    for truth in truths.values():  # the planted values really are in the input files
        data = b"".join(f.read_bytes() for f in truth.files[:3])
        assert all(v in data for v in truth.orbitct_forbidden_bytes)
    return inp


Anonymized = tuple[Path, pipeline.RunSummary, str]
"""The output folder, the run's summary and its log text."""


@pytest.fixture(scope="module")
def anonymized(
    phi_input: Input, tmp_path_factory: pytest.TempPathFactory
) -> Anonymized:
    """The library run over ``phi_input`` (default options), with everything logged."""
    out = tmp_path_factory.mktemp("anon") / "out"
    before = tree_hashes(phi_input.root)
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)  # pydicom's messages too
    try:
        summary = run(phi_input.root, out)
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
    assert tree_hashes(phi_input.root) == before  # INPUT_DIR is never written
    return out, summary, "\n".join(records)


# --- the PHI battery ----------------------------------------------------------------------------


def test_battery_no_marker_in_any_output_byte(phi_input: Input, anonymized: Anonymized) -> None:
    out, summary, _ = anonymized
    assert summary.exit_code == ExitCode.OK
    assert files_under(out / "anonymized")
    assert leaks(out, phi_input.forbidden) == []


def test_battery_every_attribute_replaced_and_nothing_private_at_any_depth(
    phi_input: Input, anonymized: Anonymized
) -> None:
    out, _, _ = anonymized
    for dicom_id in phi_input.truths:
        files = files_under(out / "anonymized" / dicom_id)
        assert files
        for path in files:
            ds = pydicom.dcmread(path)
            check_deidentified(ds, dicom_id)
            # the planted nested places still exist, now clean
            item = ds.RequestAttributesSequence[0]
            assert str(item.ReferencedStudySequence[0].OtherPatientIDsSequence[0].PatientID) == dicom_id
            assert item.ReferencedStudySequence[0].OperatorsName == ""


def test_battery_logs_and_reports_carry_no_identifying_value(phi_input: Input, anonymized: Anonymized) -> None:
    out, _, log_text = anonymized
    assert "exam_001" in log_text and "kept" in log_text
    assert [v for v in phi_input.forbidden if v.decode() in log_text] == []
    rows = report(out)
    text = (out / "anonymize_report.csv").read_text()
    assert [v for v in phi_input.forbidden if v.decode() in text] == []
    assert rows


def test_battery_through_the_command_line(
    phi_input: Input, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    before = tree_hashes(phi_input.root)
    # two exams on two workers: the worker processes' log lines are checked too
    code = main([str(phi_input.root), str(out), "anonymize", "-vv", "--n-procs", "2"])
    captured = capfd.readouterr()
    assert code == ExitCode.OK, captured.err
    assert tree_hashes(phi_input.root) == before
    log = out / "logs" / "orbitct-app.log"
    assert "anonymize done" in log.read_text()
    assert leaks(out, phi_input.forbidden) == []  # files, CSV, records and the log
    console = captured.out + captured.err
    assert "kept" in console
    assert [v for v in phi_input.forbidden if v.decode() in console] == []
    for path in files_under(out / "anonymized"):
        check_deidentified(pydicom.dcmread(path), path.relative_to(out / "anonymized").parts[0])


# --- which series survive -----------------------------------------------------------------------


def test_short_series_dropped_every_other_series_complete(phi_input: Input, anonymized: Anonymized) -> None:
    out, summary, _ = anonymized
    for dicom_id, truth in phi_input.truths.items():
        assert outputs(out, dicom_id) == expected_outputs(truth, 10)
    assert summary.count("kept") == 1 + 4
    assert summary.count("dropped") == 2 + 2
    assert summary.count("produced") == 5
    assert summary.count("files") == 40 + 12 + 12 + 11 + 11
    rows = {(r["dicom_id"], r["series_number"]): r for r in report(out)}
    assert rows[(EXAM_A, "1")]["decision"] == "dropped"
    assert "1 instance(s) <= --min-slices 10" in rows[(EXAM_A, "1")]["reason"]
    assert rows[(EXAM_A, "999")]["decision"] == "dropped"
    assert rows[(EXAM_A, "2")]["decision"] == "kept"
    assert rows[(EXAM_A, "2")]["n_files"] == "40"
    truth = phi_input.truths[EXAM_A]
    assert rows[(EXAM_A, "2")]["series_instance_uid"] == truth.series_by_number(2).series_instance_uid
    assert rows[(EXAM_A, "2")]["modality"] == "CT"
    assert rows[(EXAM_A, "2")]["series_description"] == "Head 3.0 H30s"


@pytest.mark.parametrize("min_slices", [11, 0])
def test_min_slices_option(phi_input: Input, tmp_path: Path, min_slices: int) -> None:
    out = tmp_path / "out"
    code = main(
        [str(phi_input.root), str(out), "anonymize", "--min-slices", str(min_slices), "--n-procs", "1"]
    )
    assert code == ExitCode.OK
    for dicom_id, truth in phi_input.truths.items():
        assert outputs(out, dicom_id) == expected_outputs(truth, min_slices)
    dropped = {
        r["series_number"] for r in report(out) if r["dicom_id"] == EXAM_B and r["decision"] == "dropped"
    }
    assert dropped == ({"1", "4", "5", "999"} if min_slices == 11 else set())
    if min_slices == 0:  # kept summary screens are flagged and warned about
        flagged = [r for r in report(out) if r["flags"]]
        assert {r["series_number"] for r in flagged} == {"999"}
        assert all(r["flags"] == "burned_in_annotation;secondary_capture" for r in flagged)
        assert "kept but flagged burned_in_annotation, secondary_capture" in (
            out / "logs" / "orbitct-app.log"
        ).read_text()


def test_participant_label(phi_input: Input, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([str(phi_input.root), str(out), "anonymize", "--participant-label", EXAM_B]) == 0
    assert sorted(p.name for p in (out / "anonymized").iterdir()) == [EXAM_B]
    assert {r["dicom_id"] for r in report(out)} == {EXAM_B}


# --- bytes that must not change -----------------------------------------------------------------


def test_pixel_data_and_transfer_syntax_identical(phi_input: Input, anonymized: Anonymized) -> None:
    out, _, _ = anonymized
    syntaxes = set()
    for dicom_id, truth in phi_input.truths.items():
        for series in truth.series:
            if series.n_instances <= 10:
                continue
            for src in series.files:
                dst = out / "anonymized" / dicom_id / src.relative_to(truth.path)
                a, b = pydicom.dcmread(src), pydicom.dcmread(dst)
                assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
                assert b.file_meta.TransferSyntaxUID == series.transfer_syntax_uid
                assert b.PixelData == a.PixelData
                assert b.SOPInstanceUID == a.SOPInstanceUID
                assert b.SeriesInstanceUID == a.SeriesInstanceUID
                syntaxes.add(str(b.file_meta.TransferSyntaxUID))
                if b.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
                    assert a.PixelData in dst.read_bytes()  # verbatim in the file
                assert dst.read_bytes()[128:132] == b"DICM"
    assert syntaxes == {
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEG2000Lossless,
    }


def test_pixel_data_is_never_decoded(
    phi_input: Input, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Dataset, "pixel_array", property(refuse))
    monkeypatch.setattr(Dataset, "convert_pixel_data", refuse)
    monkeypatch.setattr(Dataset, "decompress", refuse)
    monkeypatch.setattr(pydicom.pixels, "pixel_array", refuse)
    monkeypatch.setattr(pydicom.pixels, "iter_pixels", refuse)
    summary = run(phi_input.root, tmp_path / "out", participant_labels=(EXAM_B,))
    assert summary.exit_code == ExitCode.OK
    assert summary.count("files") == 46


def test_file_meta_rebuilt_without_private_information(tmp_path: Path) -> None:
    root = tmp_path / "in"
    truth = write_exam(root, "exam_m", [SeriesSpec(kind="axial", n_slices=11, rows=32, cols=32)], seed=5)
    for path in truth.files:
        ds = pydicom.dcmread(path)
        ds.file_meta.SourceApplicationEntityTitle = "PHIAETITLE"
        ds.file_meta.PrivateInformationCreatorUID = UID("1.2.3.4")
        ds.file_meta.PrivateInformation = b"PHIPRIVATEMETA"
        del ds.SOPClassUID  # found only in the file meta: copied into the data set
        ds.save_as(path, enforce_file_format=False)
    assert run(root, tmp_path / "out").exit_code == ExitCode.OK
    for path in files_under(tmp_path / "out" / "anonymized"):
        data = path.read_bytes()
        assert b"PHIAETITLE" not in data and b"PHIPRIVATEMETA" not in data
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        check_deidentified(ds, "exam_m")
        assert ds.file_meta.ImplementationVersionName == write.IMPLEMENTATION_VERSION_NAME


# --- junk, failures and exit codes --------------------------------------------------------------


@pytest.fixture()
def junk_input(tmp_path: Path) -> tuple[Path, ExamTruth, Path]:
    root = tmp_path / "in"
    truth = write_exam(
        root,
        "exam_j",
        [
            SeriesSpec(kind="scout", series_number=1),
            SeriesSpec(kind="axial", series_number=2, n_slices=12, rows=32, cols=32),
        ],
        seed=4,
    )
    truncated = add_junk(truth.path, truth)
    write_media_index(truth.path / "DIRFILE", "PHIDIRECTORYNAME")
    write_sr_series(truth.path / "SR", 12, "PHIREPORTTEXT")
    return root, truth, truncated


def test_junk_and_truncated_files_skipped_with_reasons(
    junk_input: tuple[Path, ExamTruth, Path], tmp_path: Path
) -> None:
    root, truth, _ = junk_input
    out = tmp_path / "out"
    before = tree_hashes(root)
    # junk is skipped quietly; files that should have been DICOM are failures (exit code 3)
    assert main([str(root), str(out), "anonymize"]) == ExitCode.FAILED
    assert tree_hashes(root) == before
    assert outputs(out, "exam_j") == expected_outputs(truth, 10)
    rows = report(out)
    skipped = {r["path"]: r["reason"] for r in rows if r["decision"] == "skipped"}
    failed = {r["path"]: r["reason"] for r in rows if r["decision"] == "failed"}
    assert set(skipped) == {"README.txt", ".DS_Store", "Thumbs.db", "DIRFILE"}
    assert set(failed) == {"empty", "x.dcm", "S002/truncated.dcm"}
    assert failed["empty"].startswith("empty file")
    for name in ("README.txt", ".DS_Store", "Thumbs.db"):
        assert skipped[name].startswith("not DICOM"), name
    assert failed["x.dcm"].startswith("named like DICOM (.dcm) but not DICOM")
    assert failed["S002/truncated.dcm"].startswith("truncated file")
    assert skipped["DIRFILE"].startswith("DICOMDIR / media index file")
    sr = [r for r in rows if r["series_number"] == "500"]
    assert len(sr) == 1 and sr[0]["decision"] == "dropped" and sr[0]["modality"] == "SR"
    assert sr[0]["reason"].startswith("no pixel data in 12 of 12 file(s)")
    assert leaks(out, [b"PHIDIRECTORYNAME", b"PHIREPORTTEXT", *truth.orbitct_forbidden_bytes]) == []
    record = read_record(out / ".orbitct", "anonymize", "exam_j")
    assert record is not None
    assert record.counts == {
        "kept": 1, "dropped": 2, "skipped": 4, "failed": 3, "files": 12, "deleted": 0, "produced": 1
    }


def test_a_file_that_fails_to_write_is_a_failure(
    junk_input: tuple[Path, ExamTruth, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, truth, _ = junk_input
    victim = truth.series_by_number(2).files[3]
    real_write = deid_files.write_output
    secret = truth.orbitct_forbidden_bytes[0].decode()
    victim_uid = pydicom.dcmread(victim, stop_before_pixels=True).SOPInstanceUID

    def failing_write(fh: BinaryIO, parts: list[Piece], source: int | None = None) -> None:
        first = parts[0]
        if isinstance(first, bytes) and victim_uid.encode() in first:
            raise ValueError(f"cannot encode {secret}")  # a message quoting a header value
        real_write(fh, parts, source)

    monkeypatch.setattr(deid_files, "write_output", failing_write)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--n-procs", "1"]) == ExitCode.FAILED
    rel = str(victim.relative_to(truth.path))
    assert outputs(out, "exam_j") == expected_outputs(truth, 10) - {rel}  # the rest was written
    failed = [r for r in report(out) if r["decision"] == "failed" and r["series_number"]]
    assert len(failed) == 1
    assert failed[0]["path"] == rel and failed[0]["reason"] == "ValueError while writing"
    assert failed[0]["series_number"] == "2"
    assert leaks(out, [secret.encode()]) == []
    log = (out / "logs" / "orbitct-app.log").read_text()
    assert "de-identification failed: ValueError while writing" in log


def test_in_place_every_file_left_identified_is_flagged_and_listed_at_the_top_of_the_page(
    junk_input: tuple[Path, ExamTruth, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under --in-place a file stays as it was when it is damaged, when its de-identified copy
    cannot be written, or when a dropped series' file cannot be deleted: each such row carries
    the not_deidentified flag and says so, and report.html counts and lists every one, whatever
    the reason's wording. Files that are written or deleted carry no such flag."""
    root, truth, truncated = junk_input
    unwritable = truth.series_by_number(2).files[3]
    undeletable = truth.series_by_number(1).files[0]  # the scout: a dropped series
    unwritable_bytes, undeletable_bytes = unwritable.read_bytes(), undeletable.read_bytes()
    unwritable_uid = pydicom.dcmread(unwritable, stop_before_pixels=True).SOPInstanceUID
    real_write, real_unlink = deid_files.write_output, Path.unlink

    def failing_write(fh: BinaryIO, parts: list[Piece], source: int | None = None) -> None:
        first = parts[0]
        if isinstance(first, bytes) and unwritable_uid.encode() in first:
            raise ValueError("cannot encode")
        real_write(fh, parts, source)

    def failing_unlink(path: Path, missing_ok: bool = False) -> None:
        if path == undeletable:
            raise PermissionError(13, "Permission denied")
        real_unlink(path, missing_ok)

    monkeypatch.setattr(deid_files, "write_output", failing_write)
    monkeypatch.setattr(Path, "unlink", failing_unlink)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place", "--n-procs", "1"]) == ExitCode.FAILED
    assert unwritable.read_bytes() == unwritable_bytes and undeletable.read_bytes() == undeletable_bytes
    rows = report(out)
    flagged = {r["path"]: r for r in rows if "not_deidentified" in r["flags"].split(";")}
    left = {str(f.relative_to(truth.path)) for f in (unwritable, undeletable, truncated)}
    assert left <= set(flagged)
    assert set(flagged) == {r["path"] for r in rows if r["decision"] == "failed" and r["path"]}
    assert all(r["decision"] == "failed" and "NOT de-identified" in r["reason"] for r in flagged.values())
    assert flagged[str(undeletable.relative_to(truth.path))]["reason"].startswith("cannot delete (Permission denied)")
    page = (out / "report.html").read_text()
    assert f"<b>{len(flagged)} file(s) in INPUT_DIR are NOT de-identified</b>" in page
    assert all(path in page for path in flagged)


def test_basic_profile_without_a_key_is_a_usage_error(phi_input: Input, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main([str(phi_input.root), str(out), "anonymize", "--profile", "basic", "--n-procs", "1"])
    assert code == ExitCode.USAGE
    assert not out.exists()


def test_unusable_pseudonym_fails_the_exam(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_exam(root, "x" * 70, [SeriesSpec(kind="axial", n_slices=11, rows=32, cols=32)], seed=6)
    summary = run(root, tmp_path / "out")
    assert summary.exit_code == ExitCode.FAILED
    assert "longer than 64 characters" in report(tmp_path / "out")[0]["reason"]


def test_safe_reason_never_quotes_values() -> None:
    assert deid_files.safe_reason(ValueError("PHI123")) == "ValueError"
    assert deid_files.safe_reason(OSError(28, "No space left on device")) == "OSError: No space left on device"
    assert deid_files.safe_reason(DeidError("no SOPClassUID")) == "no SOPClassUID"


# --- resume, rerun, all -------------------------------------------------------------------------


def test_rerun_resumes_and_force_replaces_the_exam_folder(phi_input: Input, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(phi_input.root), str(out), "anonymize", "--participant-label", EXAM_A, "--n-procs", "1"]
    assert main(args) == ExitCode.OK
    exam_out = out / "anonymized" / EXAM_A
    first = tree_hashes(exam_out)
    stamp = {p: p.stat().st_mtime_ns for p in files_under(exam_out)}
    assert main(args) == ExitCode.OK  # complete with the same options: not redone
    assert {p: p.stat().st_mtime_ns for p in files_under(exam_out)} == stamp
    stale = out / "anonymized" / f".{EXAM_A}.partial-host-1-deadbeef"
    (stale / "S002").mkdir(parents=True)
    (stale / "S002" / "IM00001.dcm").write_bytes(b"half")
    (exam_out / "leftover.dcm").write_bytes(b"from an older run")
    assert main([*args, "--force"]) == ExitCode.OK
    assert not stale.exists()
    assert tree_hashes(exam_out) == first  # same content, old extras gone: a whole new folder
    assert main([*args, "--min-slices", "0"]) == ExitCode.OK  # other options: redone
    assert len(files_under(exam_out)) == 43


def test_exam_with_nothing_kept_leaves_an_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_exam(root, "exam_s", [SeriesSpec(kind="scout")], seed=7)
    summary = run(root, tmp_path / "out")
    assert summary.exit_code == ExitCode.NOTHING
    folder = tmp_path / "out" / "anonymized" / "exam_s"
    assert folder.is_dir() and not any(folder.iterdir())


def test_all_extracts_from_the_anonymized_copy(phi_input: Input, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [str(phi_input.root), str(out), "all", "--participant-label", EXAM_A,
         "--spacing", "4", "--size", "48", "--n-procs", "1"]
    )
    assert code == ExitCode.OK
    record = read_record(out / ".orbitct", "extract", EXAM_A)
    assert record is not None and record.fingerprint["source"] == str(out / "anonymized")
    assert read_csv(out / "series_index.csv")
    assert leaks(out, phi_input.truths[EXAM_A].orbitct_forbidden_bytes) == []


# --- in place -----------------------------------------------------------------------------------


def test_in_place_rewrites_kept_files_and_deletes_the_rest(
    junk_input: tuple[Path, ExamTruth, Path], tmp_path: Path
) -> None:
    root, truth, truncated = junk_input
    for problem in [truncated, *(truth.path / name for name in PROBLEM_FILES)]:
        problem.unlink()  # see the next test
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.OK
    exam = truth.path
    remaining = {str(p.relative_to(exam)) for p in files_under(exam)}
    assert remaining == expected_outputs(truth, 10) | set(HARMLESS_JUNK)  # junk left alone
    for name, data in HARMLESS_JUNK.items():
        assert (exam / name).read_bytes() == data
    assert leaks(root, [b"PHIDIRECTORYNAME", b"PHIREPORTTEXT", *truth.orbitct_forbidden_bytes]) == []
    assert leaks(out, [b"PHIDIRECTORYNAME", b"PHIREPORTTEXT", *truth.orbitct_forbidden_bytes]) == []
    for rel in expected_outputs(truth, 10):
        check_deidentified(pydicom.dcmread(exam / rel), "exam_j")
    rows = report(out)
    assert {r["path"]: r["decision"] for r in rows if r["path"]} == {
        **dict.fromkeys(HARMLESS_JUNK, "skipped"),
        "DIRFILE": "deleted",
    }
    assert all(r["reason"].endswith("files deleted") for r in rows if r["decision"] == "dropped")
    assert not (out / "anonymized").exists()


def test_in_place_leaves_an_unusable_dicom_file_and_says_so(
    junk_input: tuple[Path, ExamTruth, Path], tmp_path: Path
) -> None:
    root, _, truncated = junk_input
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.FAILED
    assert truncated.exists()
    failed = [r for r in report(out) if r["decision"] == "failed"]
    assert sorted(r["path"] for r in failed) == ["S002/truncated.dcm", "empty", "x.dcm"]
    assert all("NOT de-identified: left in place unchanged, it may hold identifying values" in r["reason"]
               for r in failed)


def _project_root() -> Path:
    return Path(orbitct_app.__file__).resolve().parent.parent


def test_in_place_killed_mid_run_leaves_whole_files_and_a_rerun_finishes(tmp_path: Path) -> None:
    root = tmp_path / "in"
    truth = write_exam(
        root,
        "exam_k",
        [
            SeriesSpec(kind="scout", series_number=1),
            SeriesSpec(kind="axial", series_number=2, n_slices=160, rows=32, cols=32, slice_step=0.5),
        ],
        seed=8,
    )
    originals = {p: p.read_bytes() for p in truth.files}
    kept = truth.series_by_number(2).files
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(_project_root())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orbitct_app", str(root), str(out), "anonymize", "--in-place",
         "--n-procs", "1", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            changed = sum(1 for p in kept[::10] if p.read_bytes() != originals[p])
            if changed >= 2:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    new = 0
    for path in kept:
        data = path.read_bytes()
        if data == originals[path]:
            continue
        new += 1
        ds = pydicom.dcmread(path)  # complete and valid
        check_deidentified(ds, "exam_k")
        assert ds.PixelData == pydicom.dcmread(io.BytesIO(originals[path])).PixelData
    assert 0 < new < len(kept), "the run was not killed mid-way"
    # the rerun completes the job
    assert main([str(root), str(out), "anonymize", "--in-place", "--n-procs", "1"]) == ExitCode.OK
    assert not [p for p in root.rglob("*") if atomic.PARTIAL_MARK in p.name]
    assert set(files_under(truth.path)) == set(kept)
    for path in kept:
        check_deidentified(pydicom.dcmread(path), "exam_k")
    assert leaks(root, truth.orbitct_forbidden_bytes) == []


def test_in_place_removes_temporary_files_of_a_killed_run(tmp_path: Path) -> None:
    root = tmp_path / "in"
    truth = write_exam(root, "exam_t", [SeriesSpec(kind="axial", n_slices=11, rows=32, cols=32)], seed=9)
    victim = truth.files[0]
    temp = victim.with_name(f".{victim.name}{atomic.PARTIAL_MARK}host-1-0badf00d")
    shutil.copy(victim, temp)  # a complete temporary copy: it must not count as a slice
    summary = run(root, tmp_path / "out", in_place=True)
    assert summary.exit_code == ExitCode.OK
    assert not temp.exists()
    assert summary.count("files") == 11


def test_in_place_write_failing_midway_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "in"
    truth = write_exam(root, "exam_w", [SeriesSpec(kind="axial", n_slices=11, rows=32, cols=32)], seed=10)
    originals = {p: p.read_bytes() for p in truth.files}
    real_write = deid_files.write_output
    calls = []

    def half_then_fail(fh: BinaryIO, parts: list[Piece], source: int | None = None) -> None:
        calls.append(1)
        if len(calls) == 5:
            head = parts[0]
            assert isinstance(head, bytes)
            fh.write(head[: len(head) // 2])
            raise OSError(28, "No space left on device")
        real_write(fh, parts, source)

    monkeypatch.setattr(deid_files, "write_output", half_then_fail)
    summary = run(root, tmp_path / "out", in_place=True)
    # a full disk fails the exam, not one file: it stops there
    assert summary.exit_code == ExitCode.FAILED and summary.failed_exams == ["exam_w"]
    unchanged = [p for p in truth.files if p.read_bytes() == originals[p]]
    assert len(unchanged) == 7  # the failed one is whole and old, and so are those after it
    for path in set(truth.files) - set(unchanged):  # the four before it: whole and new
        check_deidentified(pydicom.dcmread(path), "exam_w")
    assert files_under(truth.path) == sorted(truth.files)  # no temporary file left
    (failed,) = report(tmp_path / "out")
    assert failed["decision"] == "failed" and not failed["path"]
    assert failed["reason"] == "cannot write the output (No space left on device); rerun when there is room"


def test_interrupted_exam_never_appears_half_written(
    phi_input: Input, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = [str(phi_input.root), str(out), "anonymize", "--participant-label", EXAM_A, "--n-procs", "1"]
    assert main(args) == ExitCode.OK
    before = tree_hashes(out / "anonymized" / EXAM_A)
    real = deid_files.anonymize_file
    calls = []

    def interrupted(*a: Any, **kw: Any) -> object:
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt  # like Ctrl-C or a kill in the middle of the exam
        return real(*a, **kw)

    monkeypatch.setattr(anonymize, "anonymize_file", interrupted)
    assert main([*args, "--force"]) == 130
    assert tree_hashes(out / "anonymized" / EXAM_A) == before  # the old complete folder
    assert sorted(p.name for p in (out / "anonymized").iterdir()) == [EXAM_A]  # no staging left


def _both_writers(path: Path) -> tuple[bytes, bytes]:
    """A de-identified file written by write_part10 and by pydicom.dcmwrite."""
    results = []
    for writer in (write.write_part10, lambda fh, ds: pydicom.dcmwrite(fh, ds, enforce_file_format=True)):
        ds = pydicom.dcmread(path)
        apply_profile(ds, ORBITCT, pseudonym="exam_x")
        mark_deidentified(ds, "test")
        ds.file_meta = write.file_meta_for(ds)
        buffer = io.BytesIO()
        writer(buffer, ds)
        results.append(buffer.getvalue())
    return results[0], results[1]


def test_fast_writer_writes_exactly_what_pydicom_writes(phi_input: Input) -> None:
    for truth in phi_input.truths.values():
        for series in truth.series:
            ours, theirs = _both_writers(series.files[0])
            assert ours == theirs, series.transfer_syntax_uid
