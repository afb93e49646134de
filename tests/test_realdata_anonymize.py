"""The anonymize stage on the public real CT exams in ../shared/data (skipped when absent)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless

from orbitct_app import pipeline
from orbitct_app.deid import ORBITCT, apply_profile, mark_deidentified
from orbitct_app.deid import files as deid_files
from orbitct_app.dicomio import write
from orbitct_app.errors import ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.tables import read_csv

from fresh_process import comparable_output, run_cli

pytestmark = pytest.mark.realdata

HEAD = "philips_head_phantom"
J2K = "siemens_body_j2k"
TWELVE = {pydicom.datadict.keyword_for_tag(tag) for tag in ORBITCT.actions}
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _identifying_values(ds: Dataset) -> set[bytes]:
    """The input's values of the twelve attributes (at any depth) worth searching the output for.

    Values of three characters or more that no other text attribute repeats (the phantom's
    PatientName HEAD is also its body part, which the orbitct profile keeps).
    """
    others = b"\\".join(
        str(e.value).encode() for e in ds.iterall() if e.keyword not in TWELVE and e.VR in TEXT_VRS
    )
    values = {
        str(e.value).encode()
        for e in ds.iterall()
        if e.keyword in TWELVE and e.value not in (None, "") and len(str(e.value)) >= 3
    }
    return {v for v in values if v not in others}


@pytest.fixture(scope="module")
def head_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    exams = shared_data / "exams"
    out = tmp_path_factory.mktemp("real") / "out"
    before = _digest(_files(exams / HEAD))
    options = Options(exams, out, stage=Stage.ANONYMIZE, participant_labels=(HEAD, J2K), n_procs=1)
    options.validate()
    summary = pipeline.run(options)
    assert summary.exit_code == ExitCode.OK
    assert _digest(_files(exams / HEAD)) == before  # the shared data is never written
    return exams, out


def test_scout_and_summary_screens_dropped_axial_series_kept(head_run: tuple[Path, Path]) -> None:
    _, out = head_run
    result = out / "anonymized" / HEAD
    folders = {p.relative_to(result).parts[0] for p in _files(result)}
    assert folders == {"S2010", "S2020"}  # S1000 scout and S4010 summary screens are gone
    assert len(_files(result / "S2010")) == 28
    assert len(_files(result / "S2020")) == 140  # DIRFILE (media index) is not copied
    rows = [r for r in read_csv(out / "anonymize_report.csv") if r["dicom_id"] == HEAD]
    by_number = {r["series_number"]: r for r in rows if r["series_number"]}
    assert {n: r["decision"] for n, r in by_number.items()} == {
        "100": "dropped", "201": "kept", "202": "kept", "401": "dropped"
    }
    skipped = sorted(r["path"] for r in rows if r["decision"] == "skipped")
    assert skipped == ["S1000/DIRFILE", "S2010/DIRFILE", "S2020/DIRFILE", "S4010/DIRFILE"]


def test_no_private_element_or_identifying_value_left(head_run: tuple[Path, Path]) -> None:
    exams, out = head_run
    source = pydicom.dcmread(exams / HEAD / "S2020" / "I10")
    assert sum(e.tag.is_private for e in source.iterall()) == 41
    values = _identifying_values(source)
    assert {b"PLASTIC", b"QMC", b"NOTTINGHAM"} <= values
    for path in _files(out / "anonymized" / HEAD):
        data = path.read_bytes()
        assert [v for v in values if v in data] == [], path
        ds = pydicom.dcmread(path)
        assert [e.tag for e in ds.iterall() if e.tag.is_private] == []
        assert ds.PatientName == HEAD and ds.PatientID == HEAD
        assert ds.InstitutionName == "" and ds.InstitutionAddress == ""
        assert ds.PatientIdentityRemoved == "YES"
    record = out / ".orbitct" / "anonymize" / f"{HEAD}.json"
    text = (out / "anonymize_report.csv").read_text() + record.read_text()
    assert "PLASTIC" not in text and "NOTTINGHAM" not in text


def test_pixel_data_byte_identical(head_run: tuple[Path, Path]) -> None:
    exams, out = head_run
    for rel in ("S2010/I10", "S2020/I700"):
        a = pydicom.dcmread(exams / HEAD / rel)
        b = pydicom.dcmread(out / "anonymized" / HEAD / rel)
        assert b.PixelData == a.PixelData
        assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID


def test_jpeg2000_exam_with_empty_uids(head_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    exams, out = head_run
    sources = _files(exams / J2K)
    result = out / "anonymized" / J2K
    assert len(_files(result)) == len(sources) == 20
    for src in sources:
        a = pydicom.dcmread(src)
        b = pydicom.dcmread(result / src.relative_to(exams / J2K))
        assert b.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert b.PixelData == a.PixelData
        # the empty UIDs of the data set are taken from the file meta, so the output is consistent
        assert a.SOPInstanceUID == "" and b.SOPInstanceUID == a.file_meta.MediaStorageSOPInstanceUID
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert b.file_meta.MediaStorageSOPClassUID == b.SOPClassUID == a.file_meta.MediaStorageSOPClassUID
        assert [e.tag for e in b.iterall() if e.tag.is_private] == []
        assert b.PatientName == J2K
    # and without decoding a pixel
    def refuse(*args: object) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Dataset, "pixel_array", property(refuse))
    monkeypatch.setattr(Dataset, "decompress", refuse)
    deid_files.anonymize_file(sources[0], out / "again.dcm", ORBITCT, J2K)


@pytest.mark.parametrize("name", ["ctbrain1.dcm", "eCT_Supplemental.dcm", "JPEG-LL.dcm", "693_J2KR.dcm"])
def test_single_files_with_fake_identifying_fields(shared_data: Path, tmp_path: Path, name: str) -> None:
    source = shared_data / "edge_cases" / "single_files" / name
    a = pydicom.dcmread(source)
    dst = tmp_path / name
    deid_files.anonymize_file(source, dst, ORBITCT, "exam_x")
    b = pydicom.dcmread(dst)
    for elem in b.iterall():
        if elem.keyword in ("PatientName", "PatientID"):
            assert elem.value == "exam_x"
        elif elem.keyword in TWELVE:
            assert elem.value in ("", None), elem.keyword
    assert [e.tag for e in b.iterall() if e.tag.is_private] == []
    assert b.PixelData == a.PixelData
    assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
    # values of the twelve that occur only in those attributes are gone from the bytes
    values = _identifying_values(a)
    assert values
    assert [v for v in values if v in dst.read_bytes()] == []


def test_fast_writer_writes_exactly_what_pydicom_writes(shared_data: Path) -> None:
    def both_writers(path: Path) -> list[bytes]:
        results = []
        for writer in (write.write_part10, lambda fh, ds: pydicom.dcmwrite(fh, ds, enforce_file_format=True)):
            ds = pydicom.dcmread(path)
            apply_profile(ds, ORBITCT, pseudonym="exam_x")
            mark_deidentified(ds, "test")
            ds.file_meta = write.file_meta_for(ds)
            buffer = io.BytesIO()
            writer(buffer, ds)
            results.append(buffer.getvalue())
        return results

    paths = [
        shared_data / "exams" / HEAD / "S2020" / "I10",
        shared_data / "exams" / HEAD / "S4010" / "I40",
        _files(shared_data / "exams" / J2K)[0],
        *_files(shared_data / "edge_cases" / "single_files"),
    ]
    for path in paths:
        ours, theirs = both_writers(path)
        assert ours == theirs, path.name


def test_console_script_run_without_numpy_writes_the_same(shared_data: Path, tmp_path: Path) -> None:
    """The console script keeps numpy out of an anonymize run with --pixel-text off; on the real
    exams (JPEG 2000, scouts, summary screens, tilted series) it writes byte for byte what a
    process with numpy writes."""
    exams = shared_data / "exams"
    outputs = {}
    for owns_process in (True, False):
        out = tmp_path / f"out-{owns_process}"
        args = [str(exams), str(out), "anonymize", "-q", "--n-procs", "1", "--pixel-text", "off"]
        exit_code, loaded = run_cli(args, owns_process=owns_process)
        assert exit_code == ExitCode.OK
        assert ("numpy" in loaded) is not owns_process
        outputs[owns_process] = comparable_output(out)
    assert outputs[True] == outputs[False]
    assert sum(name.startswith("anonymized/") for name in outputs[True]) > 168  # the head exam keeps 168
