"""Runs over many exams: resume records, --force, the report stage, concurrent runs, kills."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.pipeline import ExamOutcome
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

QUICK = ["--spacing", "2", "--size", "128", "-q"]
SMALL = SeriesSpec(
    kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=24, slice_step=5.0
)


def _exams(root: Path, names: list[str]) -> Path:
    for seed, name in enumerate(names):
        write_exam(root, name, [SeriesSpec(kind="scout", series_number=1), SMALL], seed=seed)
    return root


def _niftis(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("nifti/*/*.nii.gz"))}


def test_rerun_skips_complete_exams_and_force_redoes_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    out = tmp_path / "out"
    assert main([str(inp), str(out), "extract", *QUICK]) == ExitCode.OK
    first = _niftis(out)
    index = (out / "series_index.csv").read_text()
    assert len(first) == 2
    caplog.clear()
    assert main([str(inp), str(out), "extract", *QUICK]) == ExitCode.OK
    assert _niftis(out) == first  # nothing rewritten
    assert (out / "series_index.csv").read_text() == index  # tables still complete
    assert caplog.text.count("already complete; skipped") == 2
    assert main([str(inp), str(out), "extract", *QUICK, "--force"]) == ExitCode.OK
    redone = _niftis(out)
    assert redone.keys() == first.keys() and all(redone[k] != first[k] for k in first)


def test_changed_options_make_exams_out_of_date(tmp_path: Path) -> None:
    inp = _exams(tmp_path / "in", ["exam_a"])
    out = tmp_path / "out"
    assert main([str(inp), str(out), "extract", *QUICK]) == ExitCode.OK
    assert main([str(inp), str(out), "extract", "--spacing", "3", "--size", "96", "-q"]) == ExitCode.OK
    (row,) = read_csv(out / "series_index.csv")
    assert row["target_spacing_x"] == "3" and row["shape_x"] == "96"


def test_report_stage_lists_missing_and_failed_exams(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inp = _exams(tmp_path / "in", ["exam_a", "exam_b", "exam_c"])
    out = tmp_path / "out"
    assert main([str(inp), str(out), "extract", *QUICK, "--participant-label", "exam_a"]) == ExitCode.OK
    caplog.clear()
    assert main([str(inp), str(out), "report", "-q"]) == ExitCode.FAILED
    assert "2 exam(s) lack a record of extract" in caplog.text and "exam_b, exam_c" in caplog.text
    assert {r["dicom_id"] for r in read_csv(out / "series_index.csv")} == {"exam_a"}
    assert (
        main([str(inp), str(out), "extract", *QUICK, "--participant-label", "exam_b", "--participant-label", "exam_c"])
        == ExitCode.OK
    )
    assert main([str(inp), str(out), "report", "-q"]) == ExitCode.OK
    assert {r["dicom_id"] for r in read_csv(out / "series_index.csv")} == {"exam_a", "exam_b", "exam_c"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orbitct_app", *args]


def test_concurrent_runs_on_disjoint_exams_end_with_complete_tables(tmp_path: Path) -> None:
    names = [f"exam_{i}" for i in range(6)]
    inp = _exams(tmp_path / "in", names)
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            _cli(str(inp), str(out), "extract", *QUICK, "--n-procs", "1", "--log", str(tmp_path / f"task{t}.log"),
                 *[a for n in names[t::3] for a in ("--participant-label", n)]),
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        for t in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert sorted(r["dicom_id"] for r in read_csv(out / "series_index.csv")) == names
    report = read_csv(out / "extract_report.csv")
    assert sorted({r["dicom_id"] for r in report}) == names and len(report) == 12
    page = (out / "report.html").read_text()  # the page, too, ends complete
    assert all(f'data-output="{r["output_path"]}"' in page for r in read_csv(out / "series_index.csv"))
    assert len(list((out / "logs").glob("run-*.json"))) == 3


def _valid_gzip(path: Path) -> bool:
    try:
        with gzip.open(path) as fh:
            while fh.read(1 << 20):
                pass
        return True
    except (OSError, EOFError):
        return False


def test_killed_run_leaves_no_partial_output_and_rerun_completes(tmp_path: Path) -> None:
    names = [f"exam_{i}" for i in range(4)]
    inp = _exams(tmp_path / "in", names)
    reference = tmp_path / "reference"
    assert main([str(inp), str(reference), "extract", "-q", "--spacing", "1", "--size", "192"]) == ExitCode.OK
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for delay in (0.8, 1.6, 2.4, 3.2):
        proc = subprocess.Popen(
            _cli(str(inp), str(out), "extract", "-q", "--spacing", "1", "--size", "192", "--n-procs", "2"),
            env=env,
            start_new_session=True,
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: workers die too
        proc.wait()
        for nifti in out.glob("nifti/*/*.nii.gz"):  # final names hold complete files only
            assert _valid_gzip(nifti), nifti
        for folder in out.glob("nifti/*"):
            assert not folder.name.startswith(".") or ".partial-" in folder.name
    assert main([str(inp), str(out), "extract", "-q", "--spacing", "1", "--size", "192"]) == ExitCode.OK
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]
    assert _names(out) == _names(reference)
    for rel in _names(reference):
        assert (out / rel).read_bytes() == (reference / rel).read_bytes() or (
            rel.endswith(".nii.gz") and _same_nifti(out / rel, reference / rel)
        )


def _names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("nifti/*/*"))


def _same_nifti(a: Path, b: Path) -> bool:
    with gzip.open(a) as fa, gzip.open(b) as fb:
        return fa.read() == fb.read()


def test_report_stage_flags_an_exam_killed_between_stages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    out = tmp_path / "out"
    assert main([str(inp), str(out), "all", *QUICK]) == ExitCode.OK
    (out / ".orbitct" / "extract" / "exam_b.json").unlink()  # as if killed after anonymize
    caplog.clear()
    assert main([str(inp), str(out), "report", "-q"]) == ExitCode.FAILED
    assert "1 exam(s) lack a record of anonymize and extract" in caplog.text and "exam_b" in caplog.text


def test_library_warnings_never_print_their_text(tmp_path: Path) -> None:
    """pydicom's validation warnings quote header values: none reaches stderr, in any process."""
    import pydicom

    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    token = "ZZWARNEDQQ"
    for path in inp.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.{token}"  # an invalid UID: pydicom warns
            ds.save_as(path)
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli(str(inp), str(out), "all", "--n-procs", "2", *QUICK), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert token not in proc.stderr and "Warning" not in proc.stderr
    log = (out / "logs" / "orbitct-app.log").read_text()
    assert "UserWarning from" in log and "text withheld" in log
    withheld_in = {line.split()[3] for line in log.splitlines() if "text withheld" in line}
    assert any(name.startswith("ForkServerProcess") for name in withheld_in), withheld_in  # workers too


def test_an_input_dir_gone_by_the_end_still_gets_its_tables_and_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """INPUT_DIR unmounted (here: moved away) after the last exam: the tables, report and run
    record are written from the listing the run started with, the log says why, and the
    run's exit code is its exams' (not a usage error with no tables)."""
    from orbitct_app import pipeline
    from orbitct_app.options import Options, Stage

    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    out = tmp_path / "out"
    options = Options(inp, out, Stage.EXTRACT, spacing=2, size=96, n_procs=1)

    def move_input_away_after_the_last(done: int, total: int, outcome: ExamOutcome | None) -> None:
        if outcome is not None and done == total:
            inp.rename(tmp_path / "elsewhere")

    summary = pipeline.run(options, progress=move_input_away_after_the_last)
    assert not inp.exists()
    assert summary.exit_code == ExitCode.OK
    assert "cannot list INPUT_DIR" in caplog.text and "the exams this run started with" in caplog.text
    assert sorted(r["dicom_id"] for r in read_csv(out / "series_index.csv")) == ["exam_a", "exam_b"]
    page = (out / "report.html").read_text()
    assert "exam_a" in page and "exam_b" in page
    assert len(list((out / "logs").glob("run-*.json"))) == 1
