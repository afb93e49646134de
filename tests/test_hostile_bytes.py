"""Hostile bytes (issue 19): bytes after the data set, bombs, weak keys, spreadsheet formulas,
forged log lines, and reasons that say what happened.

Every hostile file is generated here (``tests/hostile.py``), never copied from a corpus; every
case asserts exactly what exists afterwards. The table of ``docs/hostile-input.md`` lists
them.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import struct
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from orbitct_app import __version__, discover
from orbitct_app.cli import main
from orbitct_app.deid import ORBITCT, audit, basic_profile, keys, raw
from orbitct_app.deid import files as deid_files
from orbitct_app.dicomio.chunks import CHUNK_BYTES, Piece, read_chunks
from orbitct_app.dicomio.parse import parse_part10
from orbitct_app.dicomio.structure import Damaged, file_structure
from orbitct_app.errors import ExitCode, UsageError
from orbitct_app.report.tables import read_csv
from orbitct_app.safe_text import csv_cell, escape_controls
from orbitct_app.synthetic import SeriesSpec, write_exam

import hostile
from hostile import PLANTED, TRAILING

EXAM = "exam_b"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data"
OFF = ["--pixel-text", "off", "-q", "--n-procs", "1"]


def _strong_key(path: Path, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bytes((seed + 7 * i) % 256 for i in range(32)).hex() + "\n")
    path.chmod(0o600)
    return path


def _exam(root: Path, syntax: str = ExplicitVRLittleEndian, n: int = 12, seed: int = 9) -> list[Path]:
    truth = write_exam(root, EXAM, [SeriesSpec(kind="axial", series_number=2, n_slices=n, rows=16, cols=16,
                                               transfer_syntax=syntax)], seed=seed)
    return sorted(truth.series_by_number(2).files)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(out: Path, table: str = "anonymize_report") -> list[dict[str, str]]:
    return read_csv(out / f"{table}.csv")


def _file_rows(out: Path, table: str = "anonymize_report") -> dict[str, dict[str, str]]:
    return {r["path"]: r for r in _rows(out, table) if r["path"]}


# --- nothing after the data set survives ------------------------------------------------------------

PLACES = [*sorted(TRAILING), "preamble", "file_meta"]
"""Where hostile bytes are planted in a file that is otherwise clean, one place per file."""


def _plant(path: Path, place: str) -> None:
    if place == "preamble":
        hostile.plant_in_preamble(path)
    elif place == "file_meta":
        hostile.plant_in_file_meta(path)
    else:
        hostile.plant_trailing(path, place)


@pytest.mark.parametrize(
    ("profile", "syntax", "in_place"),
    [("orbitct", ExplicitVRLittleEndian, False), ("orbitct", ImplicitVRLittleEndian, False),
     ("orbitct", RLELossless, True), ("basic", ExplicitVRLittleEndian, True),
     ("basic", ImplicitVRLittleEndian, False), ("basic", RLELossless, False)],
)
def test_nothing_after_the_data_set_is_ever_written(tmp_path: Path, profile: str, syntax: str, in_place: bool) -> None:
    """Every kind of bytes after the data set (item-tagged text, text where an item length
    goes, trailing padding holding text, text after padding, untagged text, zeros then text, an
    element out of order), and text in the preamble and the file meta: each file is written
    exactly as its clean twin is, so nothing planted survives anywhere, and the audit is clean."""
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    files = _exam(clean, syntax)
    shutil.copytree(clean, dirty)
    planted = {}
    for place, path in zip(PLACES, files, strict=False):  # one file for each place
        target = dirty / path.relative_to(clean)
        _plant(target, place)
        planted[str(path.relative_to(clean / EXAM))] = place
    assert len(planted) == len(PLACES) and all(PLANTED in (dirty / EXAM / rel).read_bytes() for rel in planted)
    extra = (["--profile", "basic", "--deid-key", str(_strong_key(tmp_path / "keys" / "k"))]
             if profile == "basic" else [])
    extra += ["--in-place"] if in_place else []
    written = {}
    for name, root in (("clean", clean), ("dirty", dirty)):
        out = tmp_path / f"out-{name}"
        assert main([str(root), str(out), "anonymize", *OFF, *extra]) == ExitCode.OK
        assert _rows(out, "deid_audit") == []
        written[name] = _outputs(root / EXAM if in_place else out / "anonymized" / EXAM)
    assert written["dirty"] == written["clean"]  # byte for byte: the planted bytes are gone
    assert len(written["dirty"]) == len(files)
    assert not any(PLANTED in data or PLANTED.lower() in data.lower() for data in written["dirty"].values())


@pytest.mark.parametrize("where", ["inside", "after"])
def test_bytes_after_a_deflated_data_set_are_never_written(tmp_path: Path, where: str) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    files = _exam(clean, DeflatedExplicitVRLittleEndian)
    shutil.copytree(clean, dirty)
    for path in files[:4]:
        hostile.deflated_trailing(dirty / path.relative_to(clean), where)
    written = {}
    for name, root in (("clean", clean), ("dirty", dirty)):
        out = tmp_path / f"out-{name}"
        assert main([str(root), str(out), "anonymize", *OFF]) == ExitCode.OK
        assert _rows(out, "deid_audit") == []
        written[name] = _outputs(out / "anonymized" / EXAM)
    assert written["dirty"] == written["clean"]


def test_trailing_padding_inside_a_sequence_is_removed_by_both_profiles(tmp_path: Path) -> None:
    files = _exam(tmp_path / "in")
    for path in files:
        hostile.plant_nested_padding(path)
    for extra in ([], ["--profile", "basic", "--deid-key", str(_strong_key(tmp_path / "keys" / "k"))]):
        out = tmp_path / f"out{len(extra)}"
        assert main([str(tmp_path / "in"), str(out), "anonymize", *OFF, *extra]) == ExitCode.OK
        written = _outputs(out / "anonymized" / EXAM)
        assert len(written) == len(files) and not any(PLANTED in data for data in written.values())
        assert all("ReferencedImageSequence" in pydicom.dcmread(io.BytesIO(d)) for d in written.values())
        assert _rows(out, "deid_audit") == []


def test_the_audit_finds_bytes_after_the_data_set_and_a_preamble_that_is_not_zero(tmp_path: Path) -> None:
    """--audit-only over an output someone changed afterwards: appended bytes and a written
    preamble are findings (the app never writes either)."""
    files = _exam(tmp_path / "in")
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "anonymize", *OFF]) == ExitCode.OK
    written = sorted((out / "anonymized" / EXAM).rglob("*.dcm"))
    hostile.plant_trailing(written[0], "item_tag_then_text")
    hostile.plant_trailing(written[1], "zeros_then_text")
    hostile.plant_in_preamble(written[2])
    assert main([str(tmp_path / "in"), str(out), "anonymize", "--audit-only", *OFF]) == ExitCode.FAILED
    findings = {(r["path"], r["check"]) for r in _rows(out, "deid_audit")}
    rel = [str(p.relative_to(out / "anonymized" / EXAM)) for p in written]
    assert findings == {(rel[0], "trailing_data"), (rel[1], "trailing_data"), (rel[2], "preamble")}
    assert len(files) == len(written)


# --- bounded by design ------------------------------------------------------------------------------------


def test_deflate_bombs_fail_alone_with_the_limit_they_crossed(tmp_path: Path) -> None:
    """A small file inflating past 64 MiB, a file of about 1 MB inflating past 100 times its
    size, and one of 3.5 MB inflating past 256 MiB are each refused with the cap they crossed;
    a deflated file under its cap is written."""
    files = _exam(tmp_path / "in", DeflatedExplicitVRLittleEndian, n=14)
    hostile.deflate_bomb(files[0], 80 << 20)
    hostile.deflate_bomb(files[1], 200 << 20, noise=1 << 20)
    hostile.deflate_bomb(files[2], 300 << 20, noise=3 << 20)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "anonymize", *OFF]) == ExitCode.FAILED
    rows = _file_rows(out)
    rel = [str(p.relative_to(tmp_path / "in" / EXAM)) for p in files]
    assert set(rows) == set(rel[:3])
    size = files[1].stat().st_size
    assert rows[rel[0]]["reason"].startswith("deflated data set inflates to more than 64 MiB")
    assert rows[rel[1]]["reason"].startswith(f"deflated data set inflates to more than {100 * (size - 300) >> 20}") \
        or rows[rel[1]]["reason"].startswith(f"deflated data set inflates to more than {(100 * size) >> 20}")
    assert rows[rel[2]]["reason"].startswith("deflated data set inflates to more than 256 MiB")
    assert sorted(_outputs(out / "anonymized" / EXAM)) == sorted(rel[3:])


@pytest.mark.parametrize(("syntax", "kind"), [
    (ExplicitVRLittleEndian, "undefined"), (ExplicitVRLittleEndian, "defined"), (ExplicitVRLittleEndian, "un"),
    (ImplicitVRLittleEndian, "undefined"), (ImplicitVRLittleEndian, "defined"),
])
def test_deep_nesting_fails_alone_and_64_levels_are_de_identified(tmp_path: Path, syntax: str, kind: str) -> None:
    files = _exam(tmp_path / "in", syntax, n=14)
    options = {"undefined": {"undefined": True}, "defined": {"undefined": False}, "un": {"un": True}}[kind]
    for path, depth in zip(files, (5000, 65, 64), strict=False):  # three files of the series
        hostile.plant_deep(path, depth, **options)
    for extra in ([], ["--profile", "basic", "--deid-key", str(_strong_key(tmp_path / "keys" / "k"))]):
        out = tmp_path / f"out{len(extra)}"
        assert main([str(tmp_path / "in"), str(out), "anonymize", *OFF, *extra]) == ExitCode.FAILED
        rows = _file_rows(out)
        rel = [str(p.relative_to(tmp_path / "in" / EXAM)) for p in files]
        assert set(rows) == set(rel[:2])
        assert all("sequences nested deeper than 64 levels" in rows[r]["reason"] for r in rel[:2])
        written = _outputs(out / "anonymized" / EXAM)
        assert sorted(written) == sorted(rel[2:])  # 64 levels: written, the name at level 64 replaced
        assert PLANTED[:-1] not in written[rel[2]] and _rows(out, "deid_audit") == []


def test_no_parser_recurses_into_a_file_nested_5000_levels_deep(tmp_path: Path) -> None:
    """Each parser that could recurse stops at the limit: the fast header parse and the writer
    say Unsupported, the walk Damaged, the audit's scanners give up (a finding, never a crash)."""
    files = _exam(tmp_path / "in")
    for undefined in (True, False):
        hostile.plant_deep(files[0], 5000, undefined=undefined)
        data = files[0].read_bytes()
        with pytest.raises(raw.Unsupported):
            parse_part10(data)
        with pytest.raises(Damaged, match="nested deeper than 64"):
            file_structure(data)
        assert audit._Scan.of(data, ORBITCT, "exam_b", "f") is None
        findings = audit.audit_file(files[0], "f", ORBITCT, EXAM, set(), audit.PhiList(()))
        if undefined:  # its end cannot be found: what follows the last element is not the data set
            trailing = [f for f in findings if f.check == "trailing_data"]  # (the original's names are findings too)
            assert len(trailing) == 1 and "nested deeper than 64 levels" in trailing[0].detail
        else:  # its end is known, its items cannot be read
            assert [f.detail for f in findings if f.check == "unreadable"] == ["an element cannot be parsed"]
        files[0].write_bytes((tmp_path / "in" / EXAM / files[1].relative_to(tmp_path / "in" / EXAM)).read_bytes())


def test_the_profile_walker_refuses_a_data_set_nested_past_the_limit() -> None:
    """apply_profile (the pydicom path's walker) is never reached with a file nested deeper than
    64 levels (discovery refuses it), and refuses such a data set itself, whatever its depth."""
    from orbitct_app.deid import apply_profile

    def nested(depth: int) -> Dataset:
        ds = Dataset()
        ds.PatientName = "Planted^Deep"
        for _ in range(depth):
            outer = Dataset()
            outer.ContentSequence = Sequence([ds])
            ds = outer
        return ds

    ds = nested(64)
    apply_profile(ds, ORBITCT, pseudonym=EXAM)
    inner = ds
    for _ in range(64):
        inner = inner.ContentSequence[0]
    assert str(inner.PatientName) == EXAM
    for depth in (65, 5000):
        with pytest.raises(Exception, match="nested deeper than 64 levels"):
            apply_profile(nested(depth), ORBITCT, pseudonym=EXAM)


MATRICES = {
    "65535x65535 over 10 bytes": ({"rows": 65535, "columns": 65535, "pixel_bytes": 10}, "a frame of 8191 MiB declared"),
    "one row short": ({"rows": 16, "columns": 16, "pixel_bytes": 16 * 15 * 2},
                      "pixel data shorter than its header declares: 480 bytes for 512"),
    "100000 frames over one": ({"rows": 16, "columns": 16, "frames": 100000, "pixel_bytes": 512},
                               "pixel data shorter than its header declares: 512 bytes for 51200000"),
    "far too long": ({"rows": 16, "columns": 16, "pixel_bytes": (2 << 20) + 1024}, "more than twice the 512"),
    "compressed 65535x65535": ({"rows": 65535, "columns": 65535, "pixel_bytes": 10, "encapsulated": True},
                               "a frame of 8191 MiB declared"),
    "compressed 1000 frames of 4096x4096 over 4 kB": (
        {"rows": 4096, "columns": 4096, "frames": 1000, "pixel_bytes": 4096, "encapsulated": True},
        "compressed pixel data of 4136 bytes cannot hold the 33554432000 bytes"),
}


def test_declared_pixel_dimensions_are_checked_against_the_bytes(tmp_path: Path) -> None:
    """A header that declares more (or absurdly less) than its pixel data holds fails in
    discovery with what it declares and what is there: neither stage allocates for it. The
    rest of the series is converted."""
    native = _exam(tmp_path / "in", n=16)
    compressed = _exam(tmp_path / "in2", RLELossless, n=16)
    cases: dict[str, str] = {}
    for (_, (kwargs, reason)), path in zip(MATRICES.items(), native[:4] + compressed[:2], strict=True):
        if kwargs.get("encapsulated"):
            path = tmp_path / "in" / EXAM / f"C_{path.name}"
            shutil.copy(compressed[len(cases) - 4], path)
        hostile.declare_matrix(path, **kwargs)  # type: ignore[arg-type]
        cases[str(path.relative_to(tmp_path / "in" / EXAM))] = reason
    hostile.declare_matrix(native[4], 16, 16, pixel_bytes=16 * 16 * 2 + 2)  # one pad word: fine
    for stage in ("anonymize", "extract"):
        out = tmp_path / f"out-{stage}"
        assert main([str(tmp_path / "in"), str(out), stage, *OFF, "--spacing", "2", "--size", "32"]) == ExitCode.FAILED
        table = "anonymize_report" if stage == "anonymize" else "extract_report"
        rows = _file_rows(out, table)
        assert set(rows) == set(cases)
        for rel, reason in cases.items():
            assert reason in rows[rel]["reason"], (rel, rows[rel]["reason"])
    converted = [r for r in _rows(tmp_path / "out-extract", "extract_report") if r["decision"] == "converted"]
    assert len(converted) == 1 and converted[0]["n_slices"] == str(16 - 4)


def test_a_big_sparse_file_is_copied_in_bounded_chunks_and_stays_sparse(tmp_path: Path) -> None:
    """A 256 MiB multi-frame file whose pixel data is a hole: anonymize_file never holds more
    than a few MiB (traced Python allocations), the copy is sparse too and equal byte for byte
    in its pixel data, and the audit searches the pixel data for the phi list in pieces."""
    files = _exam(tmp_path / "in")
    size = hostile.sparse_multiframe(files[0], 512)
    with open(files[0], "r+b") as fh:  # the phi string as the last pixel bytes (data, not a hole)
        fh.seek(size - len(PLANTED))
        fh.write(PLANTED)
    dst = tmp_path / "out.dcm"
    parts: list[tuple[bytes | audit.FileRegion, ...]] = []
    tracemalloc.start()
    try:
        deid_files.anonymize_file(files[0], dst, ORBITCT, EXAM, written=parts.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CHUNK_BYTES // 2, peak  # the header and one buffer at most
    assert dst.stat().st_blocks * 512 < size // 8  # the hole stayed a hole
    source = file_structure(files[0].read_bytes()).extent
    copy = file_structure(dst.read_bytes()).extent
    assert copy.end == dst.stat().st_size and copy.pixel_value is not None and source.pixel_value is not None

    def digest(path: Path, start: int) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in read_chunks(fh.fileno(), start, os.fstat(fh.fileno()).st_size - start):
                h.update(chunk)
        return h.hexdigest()

    assert digest(files[0], source.pixel_value) == digest(dst, copy.pixel_value)
    phi = audit.PhiList(((1, PLANTED.lower()),))
    found = audit.audit_written(parts[0], "f", ORBITCT, EXAM, phi)
    assert found.complete and [f.detail for f in found.findings] == ["phi list line 1"]


def test_a_header_bigger_than_its_limit_is_refused(tmp_path: Path) -> None:
    files = _exam(tmp_path / "in")
    ds = pydicom.dcmread(files[0])
    ds.add_new(0x00420011, "OB", b"")  # EncapsulatedDocument, to be made 65 MiB long (a hole)
    ds.save_as(files[0], enforce_file_format=True)
    data = files[0].read_bytes()
    parsed = parse_part10(data)
    element = next(e for e in parsed.elements if e.tag == 0x00420011)
    big = 65 << 20
    files[0].write_bytes(data[: element.start - 4] + struct.pack("<L", big))
    with open(files[0], "r+b") as fh:
        fh.truncate(element.start + big)
        fh.seek(element.start + big)
        fh.write(data[element.end :])
    with pytest.raises(Exception, match="holds 65 MiB besides its pixel data"):
        discover.read_slice_info(files[0])


# --- key hygiene --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_a_key_others_can_read_or_write_is_refused_with_the_fix(
    tmp_path: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _exam(tmp_path / "in")
    key = _strong_key(tmp_path / "keys" / "study.key")
    key.chmod(mode)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "anonymize", "--profile", "basic", "--deid-key", str(key)]) \
        == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"chmod 600 {key}" in err and f"mode {mode:04o}" in err
    assert not out.exists()
    key.chmod(0o600)
    assert keys.load_key(key) == key.read_bytes().rstrip()  # the key itself, unchanged


WEAK_KEYS = {
    "one byte repeated": b"\x5f" * 16,
    "two bytes repeated": b"ab" * 16,
    "hexadecimal of one byte": ("5f" * 32).encode(),
    "hexadecimal of 15 byte values": bytes(range(15)).hex().encode() * 2,
    "a phrase of 13 letters": b"correct horse battery staple",
}


@pytest.mark.parametrize("name", sorted(WEAK_KEYS))
def test_a_key_with_too_little_entropy_is_refused(tmp_path: Path, name: str) -> None:
    key = tmp_path / "k"
    key.write_bytes(WEAK_KEYS[name] + b"\n")
    key.chmod(0o600)
    with pytest.raises(UsageError, match="carries too little entropy"):
        keys.load_key(key)


def test_the_keys_the_app_makes_and_strong_keys_pass(tmp_path: Path) -> None:
    made, created = keys.ensure_key(tmp_path / "made.key")
    assert created and keys.key_problem(made) == ""
    assert all(keys.key_problem(secrets.token_hex(32).encode()) == "" for _ in range(20000))
    for strong in (bytes(range(16)), bytes(range(16)).hex().encode(), b"Tr0ub4dor&3-plus-some-more!"):
        assert keys.key_problem(strong) == ""
    assert keys.key_material(b"00ff" * 8) == b"\x00\xff" * 8 and keys.key_material(b"xyz") == b"xyz"
    assert keys.key_problem(b"short") == "holds fewer than 16 bytes"


@pytest.mark.parametrize("case", ["file_link_into_input", "folder_link_into_output", "file_link_into_output"])
def test_a_key_path_leading_into_input_or_output_is_refused(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _exam(tmp_path / "in")
    out = tmp_path / "out"
    (out / "keys").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if case == "file_link_into_input":
        (elsewhere / "k.key").symlink_to(files[0])
    elif case == "folder_link_into_output":
        (elsewhere / "keys").symlink_to(out / "keys", target_is_directory=True)
    else:
        _strong_key(out / "keys" / "real.key")
        (elsewhere / "k.key").symlink_to(out / "keys" / "real.key")
    key = elsewhere / ("keys/k.key" if case == "folder_link_into_output" else "k.key")
    before = hostile.tree_state(tmp_path / "in")
    assert main([str(tmp_path / "in"), str(out), "anonymize", "--profile", "basic", "--deid-key", str(key)]) \
        == ExitCode.USAGE
    which = "INPUT_DIR" if "input" in case else "OUTPUT_DIR"
    assert f"--deid-key must not be inside {which}" in capsys.readouterr().err
    assert hostile.tree_state(tmp_path / "in") == before and not (out / "keys" / "k.key").exists()


# --- safe text in every output ------------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://x.invalid\",\"y\")", "+1+1", "@SUM(A1)", "-2+3", "\tx", "\r=1"]


def test_csv_cells_that_would_be_formulas_are_neutralised_and_numbers_kept() -> None:
    for value in FORMULAS:
        assert csv_cell(value) == "'" + value
    for value in ("-200", "-1.5e3", "+7", "-.5", "12", "exam_001", "a=b", "", "'=x"):
        assert csv_cell(value) == value
    assert csv_cell(-200) == -200 and csv_cell(None) is None


def test_every_csv_neutralises_formulas_from_names_and_headers(tmp_path: Path) -> None:
    """An exam folder named like a formula, formula descriptions and a formula PatientID: in
    every table and mapping file the cell starts with a single quote; numbers stay numbers."""
    dicom_id = "=cmd|' -C calc'!A0"
    root = tmp_path / "in"
    truth = write_exam(root, dicom_id, [
        SeriesSpec(kind="axial", series_number=2, n_slices=12, rows=32, cols=32),
        SeriesSpec(kind="axial", series_number=3, n_slices=12, rows=32, cols=32,
                   transfer_syntax=ImplicitVRLittleEndian),
    ], seed=3)
    for number, description in ((2, FORMULAS[0]), (3, "@SUM(A1)")):
        for path in truth.series_by_number(number).files:
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = description
            ds.PatientID = "=1+1"
            ds.save_as(path, enforce_file_format=True)
    (root / dicom_id / "-notes.txt").write_text("not DICOM")
    out = tmp_path / "out"
    assert main([str(root), str(out), "all", *OFF, "--spacing", "2", "--size", "32"]) == ExitCode.OK
    key = _strong_key(tmp_path / "keys" / "k")
    out2 = tmp_path / "out2"
    assert main([str(root), str(out2), "anonymize", *OFF, "--profile", "basic", "--deid-key", str(key),
                 "--map-dir", str(tmp_path / "maps"), "--keep-burned-in"]) == ExitCode.OK
    csvs = [*out.glob("*.csv"), *out2.glob("*.csv"), *(tmp_path / "maps").glob("*.csv")]
    cells = 0
    for path in csvs:
        import csv

        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    cells += 1
                    if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
                        assert csv_cell(cell) == cell, (path.name, cell)  # only plain numbers
    assert cells > 50
    anonymize_rows = _rows(out)
    assert {r["dicom_id"] for r in anonymize_rows} == {"'" + dicom_id}
    assert {r["series_description"] for r in anonymize_rows if r["series_description"]} == {
        "'" + FORMULAS[0], "'@SUM(A1)"}
    assert any(r["path"] == "'-notes.txt" for r in anonymize_rows)
    assert read_csv(tmp_path / "maps" / "patient_id_map.csv")[0]["id_old"] == "'=1+1"
    assert {r["series_description"] for r in _rows(out, "series_index")} == {"'" + FORMULAS[0], "'@SUM(A1)"}


def test_a_newline_in_a_name_never_forges_a_log_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "in"
    _exam(root)
    (root / EXAM / "notes\nINFO forged: all exams passed.txt").write_text("not DICOM")
    (root / "exam\nERROR forged").mkdir()
    (root / "exam\nERROR forged" / "f.txt").write_text("x")
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--pixel-text", "off", "-v", "--n-procs", "2"]) == ExitCode.FAILED
    console = capsys.readouterr().err
    log = (out / "logs" / "orbitct-app.log").read_text(encoding="utf-8")
    for text in (console, log):
        assert not any(line.startswith(("INFO forged", "ERROR forged")) for line in text.splitlines())
        assert "exam\\nERROR forged" in text
    assert "notes\\nINFO forged" in log
    assert escape_controls("a\x1b[2Jb\u2028c\r") == "a\\x1b[2Jb\\u2028c\\r"


def test_report_html_escapes_names_and_descriptions(tmp_path: Path) -> None:
    dicom_id = "<img src=x onerror=alert(1)>"
    truth = write_exam(tmp_path / "in", dicom_id, [SeriesSpec(kind="axial", series_number=2, n_slices=12, rows=32,
                                                              cols=32)], seed=2)
    for path in truth.series_by_number(2).files:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = "<script>alert(1)</script>"
        ds.save_as(path, enforce_file_format=True)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "all", *OFF, "--spacing", "2", "--size", "32"]) == ExitCode.OK
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- reasons that say what happened ---------------------------------------------------------------------


def _encode(path: Path, implicit: bool, little: bool, syntax: str) -> None:
    """Rewrite ``path`` with its data set encoded as given and ``syntax`` in its file meta
    (which may say otherwise: that is the point)."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    fp = DicomFileLike(buffer)
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def reasons(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """One exam of files that each go wrong in their own way (named by what is wrong)."""
    root = tmp_path_factory.mktemp("reasons") / "in"
    native = _exam(root, n=20)
    folder = root / EXAM
    compressed = write_exam(root, "exam_c", [SeriesSpec(kind="axial", series_number=2, n_slices=14, rows=16, cols=16,
                                                        transfer_syntax=RLELossless)], seed=5).files
    named = dict(zip(["implicit_under_explicit", "explicit_under_implicit", "big_endian_under_little",
                      "no_sop_uids", "no_instance_uid", "no_pixel_data", "earlier_deid"], native, strict=False))
    _encode(named["implicit_under_explicit"], True, True, ExplicitVRLittleEndian)
    _encode(named["explicit_under_implicit"], False, True, ImplicitVRLittleEndian)
    _encode(named["big_endian_under_little"], False, False, ExplicitVRLittleEndian)
    ds = pydicom.dcmread(named["no_sop_uids"])
    del ds.SOPInstanceUID, ds.SOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(named["no_sop_uids"], enforce_file_format=False)
    ds = pydicom.dcmread(named["no_instance_uid"])
    del ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID("")
    ds.save_as(named["no_instance_uid"], enforce_file_format=False)
    ds = pydicom.dcmread(named["no_pixel_data"])
    del ds.PixelData
    ds.save_as(named["no_pixel_data"], enforce_file_format=True)
    ds = pydicom.dcmread(named["earlier_deid"])
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = ["FACE REMOVED BY X 1.0", "DEFACED"]
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113101", "DCM", "Clean Pixel Data Option"
    ds.DeidentificationMethodCodeSequence = Sequence([item])
    ds.save_as(named["earlier_deid"], enforce_file_format=True)
    sr = folder / "SR_length_past_end.dcm"
    hostile.write_sr(sr, "1.2.3.4.5.6.7", "Planted^SR")
    data = sr.read_bytes()
    content = next(e for e in parse_part10(data).elements if e.tag == 0x0040A730)
    sr.write_bytes(data[: content.start - 4] + struct.pack("<L", 0x7FFFFF00) + data[content.start:])
    named["sr_length_past_end"] = sr
    unclosed = folder / "SR_unclosed.dcm"
    hostile.write_sr(unclosed, "1.2.3.4.5.6.8", "Planted^SR")
    ds = pydicom.dcmread(unclosed)
    ds["ContentSequence"].is_undefined_length = True
    ds.save_as(unclosed, enforce_file_format=True)
    unclosed.write_bytes(unclosed.read_bytes()[:-8])  # its sequence delimiter: gone
    named["unclosed_sequence"] = unclosed
    frame_compression = dict(zip(["dfc", "dfc_too", "implicit_under_dfc", "implicit_under_rle"], compressed,
                                 strict=False))
    for key in ("dfc", "dfc_too"):
        _encode(frame_compression[key], False, True, "1.2.840.10008.1.2.8.1")
    _encode(frame_compression["implicit_under_dfc"], True, True, "1.2.840.10008.1.2.8.1")
    _encode(frame_compression["implicit_under_rle"], True, True, RLELossless)
    named.update(frame_compression)
    return root, named


REASONS = {
    "big_endian_under_little": "data set encoding (explicit VR big endian) does not match its transfer syntax "
                               "(Explicit VR Little Endian)",
    "no_sop_uids": "no SOP Class UID and no SOP Instance UID",
    "no_instance_uid": "no SOP Instance UID in the data set or its file meta",
    "no_pixel_data": "no pixel data: an image object (CT Image Storage)",
    "sr_length_past_end": "element length beyond the end of the file",
    "unclosed_sequence": "a sequence is not closed before the end of the file",
    "implicit_under_dfc": "data set encoding (implicit VR little endian) does not match its transfer syntax "
                          "(1.2.840.10008.1.2.8.1, not known to pydicom",
}


@pytest.mark.parametrize("profile", ["orbitct", "basic"])
def test_each_file_gets_the_reason_that_says_what_happened(
    reasons: tuple[Path, dict[str, Path]], tmp_path: Path, profile: str
) -> None:
    root, named = reasons
    extra = ["--profile", "basic", "--deid-key", str(_strong_key(tmp_path / "k" / "k"))] if profile == "basic" else []
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", *OFF, *extra]) == ExitCode.FAILED
    rows = {(r["dicom_id"], r["path"]): r for r in _rows(out) if r["path"]}
    expected = {(p.relative_to(root).parts[0], str(p.relative_to(root / p.relative_to(root).parts[0]))): REASONS[k]
                for k, p in named.items() if k in REASONS}
    assert set(rows) == set(expected)
    for key, reason in expected.items():
        assert rows[key]["decision"] == "failed" and reason in rows[key]["reason"], (key, rows[key]["reason"])
    # what is written: encodings made to match their transfer syntax, Deflated Image Frame
    # Compression de-identified (explicit VR little endian), earlier de-identification kept
    for name, syntax, encoding in (("implicit_under_explicit", ExplicitVRLittleEndian, (False, True)),
                                   ("explicit_under_implicit", ImplicitVRLittleEndian, (True, True)),
                                   ("implicit_under_rle", RLELossless, (False, True)),
                                   ("dfc", "1.2.840.10008.1.2.8.1", (False, True))):
        source = named[name]
        exam = source.relative_to(root).parts[0]
        path = out / "anonymized" / exam / source.relative_to(root / exam)
        written = path.read_bytes()
        structure = file_structure(written)
        assert structure.syntax == syntax and structure.encoding_matches, name
        assert (structure.implicit, structure.little) == encoding
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == exam and ds.PixelData == pydicom.dcmread(source).PixelData
    assert _rows(out, "deid_audit") == []
    marked = pydicom.dcmread(out / "anonymized" / EXAM / named["earlier_deid"].relative_to(root / EXAM))
    methods = list(marked.DeidentificationMethod)
    assert methods[:3] == ["FACE REMOVED BY X 1.0", "DEFACED", f"orbitct-app {__version__} profile {profile}"]
    codes = [item.CodeValue for item in marked.DeidentificationMethodCodeSequence]
    assert codes == (["113101"] if profile == "orbitct" else ["113101", "113100"])


def test_a_fully_unusable_exam_fails_with_a_row_for_each_file(tmp_path: Path) -> None:
    files = _exam(tmp_path / "in", n=3)
    hostile.damage(files[0], "cut_in_header")
    files[1].write_bytes(b"")
    files[2].unlink()
    (tmp_path / "in" / EXAM / "notes.txt").write_text("a note")
    (tmp_path / "in" / EXAM / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    for stage, table in (("anonymize", "anonymize_report"), ("extract", "extract_report")):
        out = tmp_path / f"out-{stage}"
        assert main([str(tmp_path / "in"), str(out), stage, *OFF]) == ExitCode.FAILED
        rows = _rows(out, table)
        assert rows[0]["path"] == "" and rows[0]["decision"] == "failed" and "no DICOM image files" in rows[0]["reason"]
        by_path = {r["path"]: r for r in rows[1:]}
        rel = [str(p.relative_to(tmp_path / "in" / EXAM)) for p in files]
        assert set(by_path) == {rel[0], rel[1], "notes.txt", "DICOMDIR"}
        assert by_path[rel[1]]["reason"].startswith("empty file (0 bytes)")
        assert by_path[rel[0]]["decision"] == by_path[rel[1]]["decision"] == "failed"
        assert "truncated" in by_path[rel[0]]["reason"] or "damaged" in by_path[rel[0]]["reason"]
        assert by_path["notes.txt"]["reason"].startswith("not DICOM")


def test_output_dir_below_a_regular_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _exam(tmp_path / "in", n=3)
    (tmp_path / "afile").write_text("x")
    assert main([str(tmp_path / "in"), str(tmp_path / "afile" / "out"), "anonymize"]) == ExitCode.USAGE
    assert f"OUTPUT_DIR cannot be made: {tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err


def test_earlier_de_identification_is_kept_alike_by_both_paths(tmp_path: Path) -> None:
    """The fast path extends DeidentificationMethod as the pydicom path does (same bytes);
    an earlier code sequence sends a basic-profile file to the pydicom path, which merges it."""
    files = _exam(tmp_path / "in")
    ds = pydicom.dcmread(files[0])
    ds.DeidentificationMethod = "FACE REMOVED"
    ds.save_as(files[0], enforce_file_format=True)
    data = files[0].read_bytes()
    for profile in (ORBITCT, basic_profile()):
        secrets_ = deid_files.Secrets.for_profile(profile, bytes(range(32)) if profile.needs_key else None)
        with open(files[0], "rb") as fh:
            layout = deid_files._layout_of(fh.fileno())
            fast, _ = deid_files.fast_pieces(fh.fileno(), layout, profile, EXAM, secrets_)
            slow, _ = deid_files.pydicom_pieces(fh.fileno(), layout, profile, EXAM,
                                               deid_files.Secrets.for_profile(profile, secrets_.key))
        def joined(pieces: list[Piece]) -> bytes:
            return b"".join(p if isinstance(p, bytes) else data[p.offset : p.offset + p.length] for p in pieces)
        assert joined(fast) == joined(slow)
        assert next(iter(pydicom.dcmread(io.BytesIO(joined(fast))).DeidentificationMethod)) == "FACE REMOVED"


# --- a robustness sweep over pydicom's own test files ---------------------------------------------------


@pytest.mark.parametrize("profile", ["orbitct", "basic"])
def test_every_pydicom_test_file_is_written_or_fails_with_a_specific_reason(tmp_path: Path, profile: str) -> None:
    """The test files that ship inside the installed pydicom (odd encodings, broken files,
    character sets, DICOMDIRs ...): each is written, or skipped or failed with a reason that
    says what is wrong with it; never a bare exception type."""
    if not (PYDICOM_FILES / "test_files").is_dir():
        pytest.skip("pydicom's test files are not installed")
    exam = tmp_path / "in" / "exam_pydicom"
    shutil.copytree(PYDICOM_FILES / "test_files", exam / "test_files")
    shutil.copytree(PYDICOM_FILES / "charset_files", exam / "charset_files")
    extra = ["--profile", "basic", "--deid-key", str(_strong_key(tmp_path / "k" / "k")), "--keep-burned-in"] \
        if profile == "basic" else []
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "anonymize", *OFF, "--min-slices", "0", *extra]) == ExitCode.FAILED
    rows = _rows(out)
    by_path = {r["path"]: r for r in rows if r["path"]}
    written = set(_outputs(out / "anonymized" / "exam_pydicom"))
    inputs = {str(p.relative_to(exam)) for p in exam.rglob("*") if p.is_file()}
    dropped = inputs - written - set(by_path)  # files of series dropped as a whole (no pixel data)
    assert len(written) > 40 and not written & set(by_path)
    for path in dropped:
        assert "PixelData" not in pydicom.dcmread(exam / path, force=True)
    for path, row in by_path.items():
        reason = row["reason"]
        assert row["decision"] in ("failed", "skipped"), (path, row)
        assert "withheld" not in reason and " while " not in reason and "Error" not in reason, (path, reason)
    assert _rows(out, "deid_audit") == []
