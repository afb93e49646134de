"""The anonymize stage's fast path (de-identification on the file's bytes, pixel data copied raw)
and its audit of the bytes as written: the same output as the pydicom path, the fallback for
unusual files, and an audit that catches what a broken writer lets through."""

from __future__ import annotations

import io
import shutil
import struct
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

import orbitct_app
from orbitct_app import pipeline
from orbitct_app.deid import ORBITCT, Action, DeidStats, Profile, audit, basic_profile, raw
from orbitct_app.deid import files as deid_files
from orbitct_app.dicomio import write
from orbitct_app.dicomio.chunks import Piece
from orbitct_app.dicomio.parse import LONG_VRS, parse_part10
from orbitct_app.dicomio.structure import Layout
from orbitct_app.errors import DeidError, ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

from fresh_process import comparable_output, run_cli

KEY = b"0123456789abcdefghijklmnopqrstuv"
PROFILES = {
    "orbitct": ORBITCT,
    "basic": basic_profile(),
    "basic-options": basic_profile(["patient-characteristics", "device-identity", "institution-identity"], True),
}
SHARED = Path(orbitct_app.__file__).resolve().parents[2] / "shared" / "data"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def secrets_for(profile: Profile) -> deid_files.Secrets:
    return deid_files.Secrets.for_profile(profile, KEY if profile.needs_key else None)


WritePath = Callable[
    [int, Layout, Profile, str, deid_files.Secrets], tuple[list[Piece], DeidStats]
]
"""deid_files.fast_pieces or deid_files.pydicom_pieces."""


def _written(data: bytes, profile: Profile, pseudonym: str, path: WritePath) -> tuple[bytes, deid_files.Secrets]:
    """The bytes one path of anonymize_file writes for ``data`` (held in a temporary file)."""
    secrets = secrets_for(profile)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.dcm"
        source.write_bytes(data)
        with deid_files._quiet_pydicom(), open(source, "rb") as fh:
            layout = deid_files._layout_of(fh.fileno())
            pieces, _ = path(fh.fileno(), layout, profile, pseudonym, secrets)
    return b"".join(p if isinstance(p, bytes) else data[p.offset : p.offset + p.length] for p in pieces), secrets


def pydicom_path(data: bytes, profile: Profile, pseudonym: str = "exam_x") -> tuple[bytes, deid_files.Secrets]:
    """What the pydicom path writes for ``data`` (dcmread, the walker, encode_part10)."""
    return _written(data, profile, pseudonym, deid_files.pydicom_pieces)


def fast_path(data: bytes, profile: Profile, pseudonym: str = "exam_x") -> tuple[bytes, deid_files.Secrets]:
    """What the fast path writes for ``data`` (raw.deidentify, the pixel data element copied);
    raw.Unsupported where it does not apply."""
    return _written(data, profile, pseudonym, deid_files.fast_pieces)


def run(inp: Path, out: Path, **kwargs: Any) -> pipeline.RunSummary:
    kwargs.setdefault("n_procs", 1)
    options = Options(inp, out, stage=Stage.ANONYMIZE, **kwargs)
    options.validate()
    return pipeline.run(options)


def header_end(data: bytes) -> int:
    """Where pydicom's header reading stops: the pixel data element (independent of raw.py)."""
    fp = io.BytesIO(data)
    pydicom.dcmread(fp, stop_before_pixels=True)
    return fp.tell()


Exams = tuple[Path, dict[str, ExamTruth]]
"""The input root and the truth of each exam in it."""


@pytest.fixture(scope="module")
def exams(tmp_path_factory: pytest.TempPathFactory) -> Exams:
    """Planted identifiers at every depth, in every transfer syntax the generator has."""
    root = tmp_path_factory.mktemp("fast") / "in"

    def axial(number: int, syntax: str, n: int = 11) -> SeriesSpec:
        return SeriesSpec(kind="axial", series_number=number, n_slices=n, transfer_syntax=syntax, rows=32, cols=32)

    truths = {
        "exam_a": write_exam(root, "exam_a", [axial(2, ExplicitVRLittleEndian)], seed=21),
        "exam_b": write_exam(
            root,
            "exam_b",
            [axial(2, ImplicitVRLittleEndian, 3), axial(3, RLELossless, 3), axial(4, JPEG2000Lossless, 3),
             axial(5, DeflatedExplicitVRLittleEndian, 3)],
            seed=22,
            nested=True,
        ),
    }
    return root, truths


# --- the fast path writes what the pydicom path writes ----------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_fast_path_writes_exactly_what_the_pydicom_path_writes(exams: Exams, name: str) -> None:
    _, truths = exams
    profile = PROFILES[name]
    taken = set()
    for truth in truths.values():
        for series in truth.series:
            for path in series.files:
                data = path.read_bytes()
                try:
                    result, fast_secrets = fast_path(data, profile)
                except raw.Unsupported:
                    assert series.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
                    continue
                expected, secrets = pydicom_path(data, profile)
                assert result == expected, (path.name, series.transfer_syntax_uid)
                taken.add(series.transfer_syntax_uid)
                if secrets.uids is not None:  # the same UIDs mapped, the same patients seen
                    assert fast_secrets.uids is not None and fast_secrets.uids.mapped == secrets.uids.mapped
                assert fast_secrets.patient_ids == secrets.patient_ids
    assert taken == {ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless}


@pytest.mark.parametrize(
    "folder", [SHARED, PYDICOM_FILES], ids=["shared-real-data", "pydicom-test-files"]
)
def test_fast_path_on_real_and_odd_files(folder: Path) -> None:
    """Real exams and pydicom's collection of odd files: wherever the fast path takes a file,
    its bytes are the pydicom path's; wherever it does not, it says so (never an error)."""
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (shared data is not part of a fresh clone)")
    compared = 0
    for path in files_under(folder):
        data = path.read_bytes()
        for profile in (ORBITCT, PROFILES["basic-options"]):
            try:
                result, _ = fast_path(data, profile)
            except (raw.Unsupported, DeidError):  # DeidError: not DICOM, or damaged
                continue
            expected, _ = pydicom_path(data, profile)
            assert result == expected, path
            compared += 1
    assert compared > 20


def test_pixel_data_element_copied_raw_native_and_encapsulated(exams: Exams) -> None:
    """The pixel data value is a span of the source (copied, never read into memory); the
    element around it is the source's."""
    _, truths = exams
    syntaxes = set()
    for truth in truths.values():
        for series in truth.series:
            if series.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
                continue
            for path in series.files:
                data = path.read_bytes()
                with open(path, "rb") as fh:
                    layout = deid_files._layout_of(fh.fileno())
                    pieces, _ = deid_files.fast_pieces(fh.fileno(), layout, ORBITCT, "exam_x", secrets_for(ORBITCT))
                spans = [p for p in pieces if not isinstance(p, bytes)]
                start = header_end(data)
                assert len(spans) == 1 and start < spans[0].offset < spans[0].offset + spans[0].length <= len(data)
                written, _ = fast_path(data, ORBITCT)
                assert written.endswith(data[start:])  # tag, VR, length, value (and delimiter)
                assert pydicom.dcmread(io.BytesIO(written)).PixelData == pydicom.dcmread(path).PixelData
                syntaxes.add(series.transfer_syntax_uid)
    assert {RLELossless, JPEG2000Lossless} < syntaxes  # encapsulated
    assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian} < syntaxes  # native


def test_file_meta_as_pydicom_writes_it() -> None:
    for sop_class, instance, version in [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "ORBITCT_0.1.0"),
        ("1.2.840.10008.5.1.4.1.1.2.1", "1.2.3.45", "ORBITCT_0.10.10"),
    ]:
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(instance)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = version
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_file_meta_info(buffer, meta, enforce_standard=True)
        ours = write.file_meta_bytes(sop_class, instance, ExplicitVRLittleEndian, version, PYDICOM_IMPLEMENTATION_UID)
        assert ours == b"\0" * 128 + b"DICM" + buffer.getvalue()


# --- unusual files take the full path --------------------------------------------------------------


def _with_trailing_elements(path: Path, marker: str) -> None:
    """Rewrite a file with a private group and trailing padding after its pixel data."""
    ds = pydicom.dcmread(path)
    ds.add_new(0x7FE10010, "LO", "PRIVATE CREATOR AFTER PIXELS")
    ds.add_new(0x7FE11001, "LO", marker)
    item = Dataset()
    item.PatientName = marker + "NESTED"
    ds.add_new(0x7FE11002, "SQ", [item])
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 16)
    ds.save_as(path, enforce_file_format=True)


def test_private_elements_after_the_pixel_data_never_survive(tmp_path: Path) -> None:
    root = tmp_path / "in"
    truth = write_exam(root, "exam_t", [SeriesSpec(kind="axial", series_number=2, n_slices=11, rows=32, cols=32)],
                       seed=24)
    marker = "PHIAFTERPIXELS"
    for path in truth.files:
        _with_trailing_elements(path, marker)
        with pytest.raises(raw.Unsupported, match="after the pixel data"):
            fast_path(path.read_bytes(), ORBITCT)
    for in_place in (False, True):
        out = tmp_path / f"out{in_place}"
        summary = run(root, out, in_place=in_place)
        assert summary.exit_code == ExitCode.OK
        written = files_under(root / "exam_t") if in_place else files_under(out / "anonymized" / "exam_t")
        assert len(written) == 11
        for path in written:
            data = path.read_bytes()
            assert marker.encode() not in data and b"PRIVATE CREATOR" not in data
            ds = pydicom.dcmread(path)
            assert [e.tag for e in ds.iterall() if e.tag.is_private] == []
            assert str(ds.PatientName) == "exam_t"
        assert read_csv(out / "deid_audit.csv") == []


def _insert_sorted(data: bytes, tag: int, element: bytes) -> bytes:
    """``data`` with ``element`` (tag ``tag``) inserted among the top-level elements in order."""
    parsed = parse_part10(data)
    at = next((e.start - (12 if e.vr and e.vr.encode() in LONG_VRS else 8) for e in parsed.elements
               if e.tag > tag), parsed.pixel_pos)
    return data[:at] + element + data[at:]


def test_unusual_encodings_are_left_to_the_pydicom_path(exams: Exams) -> None:
    _, truths = exams
    source = truths["exam_a"].series[0].files[0].read_bytes()
    at = header_end(source)
    cases = {"no preamble": source[128 + 4:]}
    # a sequence stored as UN (pydicom reads its items as implicit VR)
    item = struct.pack("<HHL", 0x0010, 0x0010, 4) + b"NAME"
    un_sequence = struct.pack("<HH", 0x0040, 0x0260) + b"UN\0\0" + struct.pack("<L", len(item) + 8)
    un_sequence += struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item
    cases["sequence stored as UN"] = _insert_sorted(source, 0x00400260, un_sequence)
    # an element out of order: damaged (discovery fails such a file; so does anonymize_file)
    late = struct.pack("<HH", 0x0008, 0x0005) + b"CS" + struct.pack("<H", 10) + b"ISO_IR 100"
    with pytest.raises(DeidError, match="element tags out of order"):
        fast_path(source[:at] + late + source[at:], ORBITCT)
    # an undefined length that is not a sequence
    odd = struct.pack("<HH", 0x0040, 0x0280) + b"OB\0\0" + struct.pack("<L", 0xFFFFFFFF)
    odd += struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    cases["undefined length OB"] = _insert_sorted(source, 0x00400280, odd)
    if PYDICOM_FILES.is_dir():
        cases["deflated"] = (PYDICOM_FILES / "image_dfl.dcm").read_bytes()
        cases["big endian"] = (PYDICOM_FILES / "MR_small_bigendian.dcm").read_bytes()
    for data in cases.values():
        with pytest.raises(raw.Unsupported):
            fast_path(data, ORBITCT)
    # a profile keeping safe private attributes is left to the walker, which knows the list
    with pytest.raises(raw.Unsupported):
        fast_path(source, basic_profile(["safe-private"]))


def test_a_fast_path_error_falls_back_to_the_pydicom_path(
    exams: Exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the fast path misreads (here: every file) is still written, by pydicom."""
    root, truths = exams
    expected = {}
    for path in truths["exam_a"].files:
        expected[path.name] = pydicom_path(path.read_bytes(), ORBITCT, "exam_a")[0]

    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("a bug in the fast path")

    monkeypatch.setattr(raw, "parse_part10", broken)
    out = tmp_path / "out"
    assert run(root, out, participant_labels=("exam_a",)).exit_code == ExitCode.OK
    written = files_under(out / "anonymized" / "exam_a")
    assert {p.name: p.read_bytes() for p in written} == expected


# --- the audit of the bytes as written ---------------------------------------------------------------


def test_audit_reads_no_file_back(exams: Exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clean runs are audited on the bytes as written (orbitct, and basic with its UIDs),
    deflated files included: no file is read back."""
    root, truths = exams

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a written file was read back for the audit")

    real = audit.audit_file
    read_back = []

    def count(path: Path, *args: Any) -> list[audit.Finding]:
        read_back.append(path.name)
        return real(path, *args)

    monkeypatch.setattr(audit, "audit_file", count)
    summary = run(root, tmp_path / "out", participant_labels=("exam_a", "exam_b"), min_slices=0)
    assert summary.exit_code == ExitCode.OK and summary.count("files") == 23
    assert any(s.transfer_syntax_uid == DeflatedExplicitVRLittleEndian for s in truths["exam_b"].series)
    assert read_back == []
    key = tmp_path / "key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    summary = run(root, tmp_path / "out-basic", participant_labels=("exam_a",), profile="basic", deid_key=key)
    assert summary.exit_code == ExitCode.OK and summary.count("files") == 11
    assert read_back == []
    assert read_csv(tmp_path / "out-basic" / "deid_audit.csv") == []


def _leaky_walker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the writer: private elements are copied instead of removed."""
    real = raw._Walker.dataset

    def dataset(self: raw._Walker, elements: list[raw.Element], out: list[tuple[int, bytes]]) -> None:
        real(self, elements, out)
        out.extend((e.tag, self.copy(e)) for e in elements if e.tag >> 16 & 1 and e.items is None
                   and e.vr != "SQ")
        out.sort(key=lambda pair: pair[0])

    monkeypatch.setattr(raw._Walker, "dataset", dataset)


def test_audit_catches_a_writer_that_keeps_private_elements(
    exams: Exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, truths = exams
    _leaky_walker(monkeypatch)
    read_back: list[Path] = []
    real = audit.audit_file

    def count(path: Path, *args: Any) -> list[audit.Finding]:
        read_back.append(path)
        return real(path, *args)

    monkeypatch.setattr(audit, "audit_file", count)
    out = tmp_path / "out"
    summary = run(root, out, participant_labels=("exam_a",))
    assert summary.exit_code == ExitCode.FAILED
    rows = read_csv(out / "deid_audit.csv")
    assert {r["path"] for r in rows if r["check"] == "private"} == {
        str(f.relative_to(truths["exam_a"].path)) for f in truths["exam_a"].series[0].files
    }
    assert read_back == []  # caught in the bytes as written


def test_audit_catches_a_writer_that_keeps_a_masked_attribute(
    exams: Exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = exams
    real = raw._Walker.apply

    def apply(self: raw._Walker, elem: raw.Element, action: Action) -> bytes | None:
        if elem.tag in (0x00100010, 0x00080080):  # PatientName, InstitutionName left as they were
            return self.copy(elem)
        return real(self, elem, action)

    monkeypatch.setattr(raw._Walker, "apply", apply)
    out = tmp_path / "out"
    assert run(root, out, participant_labels=("exam_a",)).exit_code == ExitCode.FAILED
    rows = read_csv(out / "deid_audit.csv")
    found = {(r["keyword"], r["detail"]) for r in rows if r["check"] == "attribute"}
    assert ("PatientName", "not the pseudonym") in found and ("InstitutionName", "not empty") in found
    text = (out / "deid_audit.csv").read_text()
    assert "PHI" not in text  # the audit names the attribute, never its value


@pytest.mark.parametrize("what", ["elements", "garbage"])
def test_audit_catches_what_a_writer_appends_after_the_pixel_data(
    exams: Exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """Private elements appended after the pixel data are private findings; bytes that are no
    element (an item tag and text) are trailing data: every output ends where its data set does."""
    root, _ = exams
    real = deid_files.fast_pieces
    if what == "elements":
        trailing = (struct.pack("<HH", 0x7FE1, 0x0010) + b"LO" + struct.pack("<H", 8) + b"CREATOR "
                    + struct.pack("<HH", 0x7FE1, 0x1001) + b"LO" + struct.pack("<H", 10) + b"PHITRAILER")
    else:
        trailing = b"\xfe\xff\x00\xe0" + b"Smith^John 1970-01-01"

    def appending(*args: Any, **kwargs: Any) -> tuple[list[Any], Any]:
        pieces, stats = real(*args, **kwargs)
        return [*pieces, trailing], stats

    monkeypatch.setattr(deid_files, "fast_pieces", appending)
    out = tmp_path / "out"
    assert run(root, out, participant_labels=("exam_a",)).exit_code == ExitCode.FAILED
    rows = read_csv(out / "deid_audit.csv")
    assert len({r["path"] for r in rows}) == 11
    if what == "elements":
        assert {(r["tag"], r["location"]) for r in rows if r["check"] == "private"} == {
            ("(7FE1,0010)", "top"), ("(7FE1,1001)", "top")
        }
        assert {r["check"] for r in rows} == {"private"}
    else:
        assert {r["check"] for r in rows} == {"trailing_data"}
        assert all(r["detail"].startswith(f"{len(trailing)} byte(s) after the end of the data set") for r in rows)


def test_audit_scan_finds_what_the_pydicom_checks_find(exams: Exams) -> None:
    """On clean outputs and on original files full of identifiers, the byte scan of the audit
    gives the findings (and the header end) that pydicom's parse gives."""
    _, truths = exams
    scanned = 0
    for truth in truths.values():
        for path in truth.files:
            data = path.read_bytes()
            outputs = [data]
            for profile in PROFILES.values():
                outputs.append(pydicom_path(data, profile)[0])
            for blob in outputs:
                for profile in PROFILES.values():
                    lean = audit._Scan.of(blob, profile, "exam_x", "f")
                    if lean is None:
                        continue
                    fp = io.BytesIO(blob)
                    ds = audit._read_from(fp)
                    assert ds is not None
                    expected = audit._check_dataset(ds, "f", profile, "exam_x", "") + audit._check_meta(ds, "f", set())
                    assert lean[0] == expected, path.name
                    assert lean[1] == fp.tell()
                    scanned += 1
    assert scanned > 100
    # the originals hold findings of every kind the scan reports
    original = truths["exam_b"].series[0].files[0].read_bytes()
    scanned_original = audit._Scan.of(original, ORBITCT, "exam_x", "f")
    assert scanned_original is not None
    checks = {f.check for f in scanned_original[0]}
    assert checks == {"attribute", "private"}


# --- start-up ------------------------------------------------------------------------------------------


ODD_FILES = (
    "CT_small.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEndNoMeta.dcm", "image_dfl.dcm", "UN_sequence.dcm",
    "nested_priv_SQ.dcm", "priv_SQ.dcm", "no_meta.dcm", "MR_truncated.dcm", "badVR.dcm", "reportsi.dcm",
    "rtstruct.dcm", "SC_rgb_small_odd_big_endian.dcm", "JPEG2000.dcm", "rtdose_rle_1frame.dcm",
)


@pytest.mark.parametrize(
    "extra",
    [[], ["--profile", "basic", "--dates", "shift"], ["--dry-run"], ["--in-place"]],
    ids=["orbitct", "basic-shift", "dry-run", "in-place"],
)
def test_an_anonymize_run_of_its_own_leaves_numpy_unloaded_and_writes_the_same(
    exams: Exams, tmp_path: Path, extra: list[str]
) -> None:
    """The console script's anonymize run with --pixel-text off keeps numpy (and every numeric
    library) out of its process; on every encoding, odd and broken file the output is byte for byte what a process
    with numpy writes."""
    root, _ = exams
    if "basic" in extra:
        extra = [*extra, "--deid-key", str(tmp_path / "deid.key"), "--map-dir", str(tmp_path / "maps")]
    outputs = {}
    for owns_process in (True, False):
        inp, out = tmp_path / f"in-{owns_process}", tmp_path / f"out-{owns_process}"
        shutil.copytree(root, inp)
        (inp / "exam_odd").mkdir()
        for name in ODD_FILES if PYDICOM_FILES.is_dir() else ():
            shutil.copy(PYDICOM_FILES / name, inp / "exam_odd" / name)
        exit_code, loaded = run_cli(
            [str(inp), str(out), "anonymize", "-q", "--n-procs", "1", "--min-slices", "0", "--pixel-text", "off",
             *extra],
            owns_process=owns_process,
        )
        assert exit_code in (ExitCode.OK, ExitCode.FAILED)  # FAILED: the truncated file
        assert bool(loaded) is not owns_process, loaded  # pydicom loads numpy unless kept out
        assert all(m.split(".")[0] == "numpy" for m in loaded)  # and never scipy, nibabel, cc3d
        assert (out / "report.html").is_file() and (out / "dataset_description.json").is_file()
        log = (out / "logs" / "orbitct-app.log").read_text(encoding="utf-8").splitlines()
        assert f"orbitct_app.provenance: orbitct-app {orbitct_app.__version__} run " in log[0]  # the header first
        assert any("numpy left unloaded" in line for line in log) is owns_process
        written = comparable_output(out)
        if "--in-place" in extra:
            written |= {f"input/{name}": data for name, data in comparable_output(inp).items()}
        outputs[owns_process] = (exit_code, written)
    assert outputs[True] == outputs[False]
    written = outputs[True][1]
    dicom = [name for name in written if name.startswith(("anonymized/", "input/"))]
    assert bool(dicom) is ("--dry-run" not in extra)
    assert any("exam_odd" in name for name in dicom) or "--dry-run" in extra or not PYDICOM_FILES.is_dir()


def test_numpy_is_left_loaded_once_pydicom_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    from orbitct_app import cli

    monkeypatch.setitem(sys.modules, "numpy", sys.modules["numpy"])  # restored whatever happens
    assert "pydicom" in sys.modules  # this test process: pydicom has made its choice
    assert cli.leave_numpy_unloaded() is False
    assert sys.modules["numpy"] is not None


# --- damaged headers ------------------------------------------------------------------------------------


def _damaged(exams: Exams, seed: int, n: int) -> list[bytes]:
    """Files of the exams with one to three header bytes changed at random (fixed seed)."""
    import random

    _, truths = exams
    sources = [f for t in truths.values() for s in t.series if s.transfer_syntax_uid != DeflatedExplicitVRLittleEndian
               for f in s.files]
    rng = random.Random(seed)
    damaged = []
    for _ in range(n):
        data = bytearray(rng.choice(sources).read_bytes())
        end = header_end(bytes(data))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(132, end)] = rng.randrange(256)
        damaged.append(bytes(data))
    return damaged


def test_fast_path_agrees_with_the_pydicom_path_on_damaged_headers(exams: Exams) -> None:
    """Odd bytes in a header either send the file to the pydicom path or give its bytes."""
    agreed = 0
    for k, data in enumerate(_damaged(exams, 1, 400)):
        profile = (ORBITCT, PROFILES["basic"])[k % 2]
        try:
            result, _ = fast_path(data, profile)
        except (raw.Unsupported, DeidError):  # DeidError: damaged past what the walk accepts
            continue
        try:
            expected, _ = pydicom_path(data, profile)
        except Exception:  # noqa: BLE001 - the pydicom path cannot write it; the fast path may
            continue
        assert result == expected, k
        agreed += 1
    assert agreed > 100


def test_audit_scan_agrees_with_pydicom_on_damaged_headers(exams: Exams) -> None:
    scanned = 0
    for k, data in enumerate(_damaged(exams, 2, 400)):
        profile = (ORBITCT, PROFILES["basic"])[k % 2]
        lean = audit._Scan.of(data, profile, "exam_x", "f")
        if lean is None:
            continue
        fp = io.BytesIO(data)
        ds = audit._read_from(fp)
        assert ds is not None, k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the damaged values
            expected = audit._check_dataset(ds, "f", profile, "exam_x", "") + audit._check_meta(ds, "f", set())
        assert (lean[0], lean[1]) == (expected, fp.tell()), k
        scanned += 1
    assert scanned > 100

