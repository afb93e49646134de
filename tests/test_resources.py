"""Resource errors are per exam: long names, a full disk, a failed record; failures are redone.

An exam whose name or paths the file system cannot hold fails alone; temporary names never exceed
NAME_MAX; a full disk (ENOSPC) fails the exams it hits, each with one line and nothing under a
final name, with no traceback and exit 3; a rerun without --force redoes failed files and exams.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from orbitct_app import atomic, pipeline
from orbitct_app.anonymize import stage as anonymize
from orbitct_app.cli import main
from orbitct_app.deid import files as deid_files
from orbitct_app.errors import ExitCode
from orbitct_app.extract import qc
from orbitct_app.extract import stage as extract
from orbitct_app.report.records import ExamRecord, iter_records, merge_tables, read_record, record_path, write_record
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

QUICK = ["--spacing", "4", "--size", "64", "-q"]
APP = Path(sys.executable).with_name("orbitct-app")
LONG_NAME = "L" * 250  # a folder or file name the file system holds, with little room to spare
FULL_DISK = "cannot write the output (No space left on device); rerun when there is room"


def small(n_slices: int = 20) -> SeriesSpec:
    return SeriesSpec(kind="axial", series_number=2, rows=32, cols=32, pixel_spacing=(6.0, 6.0),
                      n_slices=n_slices, slice_step=5.0)


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def temporaries(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if atomic.PARTIAL_MARK in p.name]


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def exams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exams") / "in"
    for seed, name in enumerate(("exam_a", "exam_b", "exam_c")):
        write_exam(root, name, [small()], seed=seed, plant_phi=False)
    return root


@pytest.fixture(scope="module")
def reference(exams: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main([str(exams), str(out), "all", *QUICK, "--n-procs", "1"]) == ExitCode.OK
    return out


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["a", "é", "漢"])  # 1, 2 and 3 bytes in UTF-8
def test_temporary_names_never_exceed_name_max(tmp_path: Path, unit: str) -> None:
    names = [unit * n for n in range(1, 256) if len((unit * n).encode()) <= atomic.NAME_MAX]
    for name in names:
        temp = atomic.partial_path(tmp_path / name)
        assert temp.parent == tmp_path and len(os.fsencode(temp.name)) <= atomic.NAME_MAX, len(name)
        assert temp.name.startswith(atomic.stale_prefix(name))
    assert len({atomic.stale_prefix(name) for name in names}) == len(names)  # one prefix per name
    longest = tmp_path / names[-1]
    with atomic.atomic_file(longest) as temp:  # the file system takes it
        temp.write_bytes(b"x")
    assert longest.read_bytes() == b"x" and os.listdir(tmp_path) == [longest.name]


def test_remove_stale_removes_only_its_own_names_temporaries(tmp_path: Path) -> None:
    long_a, long_b = "x" * 230 + "a", "x" * 230 + "b"  # the same shortened start
    names = ["a", "a.partial-b", long_a, long_b, "[a]*"]
    temps = {name: atomic.partial_path(tmp_path / name) for name in names}
    for temp in temps.values():
        temp.write_bytes(b"")
    for name in names:
        assert atomic.remove_stale(tmp_path, name) == 1
        assert not temps[name].exists()
        assert all(temps[other].exists() for other in names[names.index(name) + 1 :])


def test_record_names_hold_any_exam_name(tmp_path: Path) -> None:
    state = tmp_path / ".orbitct"
    names = ["exam_1", "sub-01.CT+2", "exam 1", "ÉXAM", ".hidden", "-x", LONG_NAME, "a" * 128, "a" * 129]
    for name in names:
        write_record(state, ExamRecord(name, "anonymize", "complete", {}, counts={"files": 1}))
    files = sorted(p.name for p in (state / "anonymize").iterdir())
    plain = ["a" * 128 + ".json", "exam_1.json", "sub-01.CT+2.json"]
    assert [f for f in files if not f.startswith("~")] == plain
    assert all(re.fullmatch(r"~[0-9a-f]{40}\.json", f) for f in files if f.startswith("~"))
    assert len(files) == len(names)
    for name in names:
        record = read_record(state, "anonymize", name)
        assert record is not None and record.dicom_id == name
        assert json.loads(record_path(state, "anonymize", name).read_text())["dicom_id"] == name
    assert [r.dicom_id for r in iter_records(state, "anonymize")] == sorted(names)
    # a record from before hashed names ("exam 1.json") is read, and gives way to the new one
    legacy = state / "anonymize" / "exam 1.json"
    record_path(state, "anonymize", "exam 1").rename(legacy)
    assert read_record(state, "anonymize", "exam 1") is not None
    write_record(state, ExamRecord("exam 1", "anonymize", "failed", {}, error="new"))
    assert [r.error for r in iter_records(state, "anonymize") if r.dicom_id == "exam 1"] == ["new"]


def test_the_merge_script_finds_records_by_the_same_names(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "orbitct-merge.sbatch"
    names = ["exam_1", "exam 1", "ÉXAM", "-x", LONG_NAME, "a" * 128, "a" * 129]
    for name in names:
        done = subprocess.run(
            ["bash", "-c", f'source <(sed -n "/^record_name()/,/^}}/p" {script}); record_name "$1"', "-", name],
            capture_output=True, text=True, check=True,
        )
        assert done.stdout == record_path(tmp_path, "anonymize", name).name, name


def test_an_exam_name_the_profile_cannot_take_fails_alone(
    exams: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(exams, inp)
    write_exam(inp, LONG_NAME, [small()], seed=7, plant_phi=False)
    out = tmp_path / "out"
    args = [str(inp), str(out), "all", *QUICK, "--n-procs", "2"]
    assert main(args) == ExitCode.FAILED
    err = stderr_lines(capsys)
    assert err == [
        f"ERROR: {LONG_NAME}: anonymize failed: the pseudonym '{LONG_NAME}' is longer than 64 characters",
        f"ERROR: 1 exam(s) failed: {LONG_NAME}",
    ]
    for folder in ("anonymized", "nifti"):  # the others are complete
        assert sorted(p.name for p in (out / folder).iterdir()) == ["exam_a", "exam_b", "exam_c"]
        for exam in ("exam_a", "exam_b", "exam_c"):
            assert hashes(out / folder / exam).keys() == hashes(reference / folder / exam).keys()
    rows = {r["dicom_id"]: r for r in read_csv(out / "anonymize_report.csv")}
    assert rows[LONG_NAME]["decision"] == "failed" and "longer than 64 characters" in rows[LONG_NAME]["reason"]
    assert (out / "report.html").is_file() and LONG_NAME in (out / "report.html").read_text()
    assert len(list((out / "logs").glob("run-*.json"))) == 1
    record = read_record(out / ".orbitct", "anonymize", LONG_NAME)
    assert (
        record is not None and not record.complete and record_path(out / ".orbitct", "anonymize", LONG_NAME).is_file()
    )
    assert main(args) == ExitCode.FAILED  # a rerun redoes the failed one only
    assert stderr_lines(capsys)[0].startswith(f"ERROR: {LONG_NAME}: anonymize failed")

    extract_out = tmp_path / "extract-only"  # extract takes the name: its NIfTI names are shortened
    assert main([str(inp), str(extract_out), "extract", *QUICK, "--n-procs", "2"]) == ExitCode.OK
    (nifti,) = (extract_out / "nifti" / LONG_NAME).glob("*.nii.gz")
    assert len(nifti.name.encode()) < 100 and read_record(extract_out / ".orbitct", "extract", LONG_NAME) is not None


def test_a_long_file_name_is_de_identified_in_place(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_l", [small(12)], seed=3)
    victim = truth.series[0].files[0]
    long_file = victim.with_name(LONG_NAME)
    victim.rename(long_file)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "anonymize", "--in-place", "-q"]) == ExitCode.OK
    ds = pydicom.dcmread(long_file)
    assert ds.PatientName == "exam_l" and ds.PatientIdentityRemoved == "YES"
    assert not temporaries(tmp_path / "in")
    assert read_csv(tmp_path / "out" / "anonymize_report.csv")[0]["decision"] == "kept"


# --- a full disk ----------------------------------------------------------------------------------


def _full_disk_for(exam: str, real: Any) -> Any:
    """``real`` (a writer), failing with ENOSPC when its arguments mention ``exam``."""

    def write(*args: Any, **kwargs: Any) -> Any:
        if any(exam in str(getattr(a, "name", a)) for a in args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize("where", ["anonymized DICOM", "NIfTI", "QC picture"])
def test_a_full_disk_fails_the_exam_it_hits_with_one_line_and_nothing_partial(
    exams: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], where: str,
) -> None:
    stage, module, writer = {
        "anonymized DICOM": ("anonymize", deid_files, "write_output"),
        "NIfTI": ("extract", extract, "write_nifti"),
        "QC picture": ("extract", qc, "write_png"),
    }[where]
    monkeypatch.setattr(module, writer, _full_disk_for("exam_b", getattr(module, writer)))
    out = tmp_path / "out"
    args = [str(exams), str(out), "all", *QUICK, "--n-procs", "1"]
    assert main(args) == ExitCode.FAILED
    assert stderr_lines(capsys) == [f"ERROR: exam_b: {stage} failed: {FULL_DISK}", "ERROR: 1 exam(s) failed: exam_b"]
    folder = "anonymized" if stage == "anonymize" else "nifti"
    assert sorted(p.name for p in (out / folder).iterdir()) == ["exam_a", "exam_c"]  # nothing of exam_b
    assert not temporaries(out)
    record = read_record(out / ".orbitct", stage, "exam_b")
    assert record is not None and record.error == FULL_DISK
    assert [r["reason"] for r in read_csv(out / f"{stage}_report.csv") if r["dicom_id"] == "exam_b"] == [FULL_DISK]
    monkeypatch.undo()  # room again: a plain rerun completes it
    assert main(args) == ExitCode.OK
    assert hashes(out / "anonymized") == hashes(reference / "anonymized")
    assert hashes(out / "nifti").keys() == hashes(reference / "nifti").keys()


def test_a_record_or_table_that_cannot_be_written_is_one_line_and_exit_3(
    exams: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [str(exams), str(out), "anonymize", *QUICK, "--n-procs", "1"]
    real_write_record = write_record

    def full_for_exam_b(state: Path, record: ExamRecord) -> Path:
        if record.dicom_id == "exam_b":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_record(state, record)

    monkeypatch.setattr(pipeline, "write_record", full_for_exam_b)
    assert main(args) == ExitCode.FAILED
    assert stderr_lines(capsys) == [
        "ERROR: exam_b: anonymize failed: cannot write its completion record: OSError: No space left on device",
        "ERROR: 1 exam(s) failed: exam_b",
    ]
    assert read_record(out / ".orbitct", "anonymize", "exam_b") is None  # redone by a rerun
    monkeypatch.setattr(pipeline, "write_record", real_write_record)
    monkeypatch.setattr(pipeline, "merge_tables", _full_disk_for("out", merge_tables))
    assert main(args) == ExitCode.FAILED
    assert stderr_lines(capsys) == [
        (f"ERROR: cannot write the run's tables and report in {out}: OSError: No space left on device; once that "
         "is fixed, `orbitct-app INPUT_DIR OUTPUT_DIR report` writes them")
    ]
    assert read_record(out / ".orbitct", "anonymize", "exam_b") is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


_FULL_DISK_LINES = [  # what a full output disk may say, besides the summary line
    re.compile(r"ERROR: exam_\d: (anonymize|extract) failed: " + re.escape(FULL_DISK)),
    re.compile(r"ERROR: exam_\d: (anonymize|extract) failed: cannot write its completion record: .*"),
    re.compile(
        r"ERROR: cannot write the log file .* \(OSError: No space left on device\); its lines are lost from here on"
    ),
    re.compile(r"ERROR: cannot write the run's tables and report in .*: OSError: No space left on device; .*"),
]


def assert_said_plainly(stderr: str) -> None:
    """Each line one of those (the log file's at most once), then the summary; no traceback."""
    *lines, summary = stderr.splitlines()
    assert all(any(p.fullmatch(line) for p in _FULL_DISK_LINES) for line in lines), stderr
    assert sum(line.startswith("ERROR: cannot write the log file") for line in lines) <= 1, stderr
    assert re.fullmatch(r"ERROR: \d exam\(s\) failed: .*", summary), stderr
    assert "Traceback" not in stderr and "Logging error" not in stderr


@pytest.mark.skipif(not APP.is_file(), reason=f"the console script is not installed at {APP}")
def test_a_full_output_disk(small_disk: Path, tmp_path: Path) -> None:
    """On a real full file system: each exam whole or absent, one line each, no traceback, exit 3;
    when not even the log can be written, that is said once; with room again, a rerun completes."""
    inp = tmp_path / "in"
    for seed in range(4):  # 2.4 MB of DICOM: more than the disk holds
        write_exam(inp, f"exam_{seed}", [small(150)], seed=seed, plant_phi=False)
    reference = tmp_path / "reference"
    assert main([str(inp), str(reference), "all", *QUICK, "--n-procs", "1"]) == ExitCode.OK
    out = small_disk / "out"
    command = [str(APP), str(inp), str(out), "all", *QUICK, "--n-procs", "2"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert_said_plainly(done.stderr)
    for exam in (out / "anonymized").iterdir():  # what is there is whole
        assert hashes(exam) == hashes(reference / "anonymized" / exam.name)
    for exam in (out / "nifti").iterdir():
        assert hashes(exam).keys() == hashes(reference / "nifti" / exam.name).keys()
    assert not temporaries(out)

    filler = small_disk / "filler"  # now not a byte left, not even for the log
    with filler.open("wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 4096)
    done = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert_said_plainly(done.stderr)
    lines = done.stderr.splitlines()
    log_line = (
        f"ERROR: cannot write the log file {out / 'logs' / 'orbitct-app.log'} (OSError: No space left on device); "
        "its lines are lost from here on"
    )
    assert lines.count(log_line) == 1
    assert lines[-2].startswith(f"ERROR: cannot write the run's tables and report in {out}: OSError: No space left")
    assert not temporaries(out)

    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.OK, done.stderr
    assert hashes(out / "anonymized") == hashes(reference / "anonymized")
    assert hashes(out / "nifti").keys() == hashes(reference / "nifti").keys()
    assert read_csv(out / "anonymize_report.csv") == read_csv(reference / "anonymize_report.csv")


# --- failures are redone --------------------------------------------------------------------------


def test_a_failed_file_is_redone_by_a_rerun_without_force(
    exams: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = deid_files.anonymize_file
    victim = sorted((exams / "exam_b").rglob("*.dcm"))[3]

    def denied(src: Path, *args: Any, **kwargs: Any) -> Any:
        if src == victim:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(src, *args, **kwargs)

    monkeypatch.setattr(anonymize, "anonymize_file", denied)
    out = tmp_path / "out"
    args = [str(exams), str(out), "anonymize", *QUICK, "--n-procs", "1"]
    assert main(args) == ExitCode.FAILED
    record = read_record(out / ".orbitct", "anonymize", "exam_b")
    assert record is not None and record.complete and record.counts["failed"] == 1
    monkeypatch.undo()  # fixed
    caplog.clear()
    assert main(args) == ExitCode.OK
    assert "exam_b: anonymize done again: the earlier run had 1 failed file(s) or series" in caplog.text
    assert caplog.text.count("already complete; skipped") == 2  # exam_a and exam_c
    assert hashes(out / "anonymized") == hashes(reference / "anonymized")
