"""Bad input and a hostile environment: one clear reason each, the rest of the run completes."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

QUICK = ["--spacing", "2", "--size", "128", "-q"]
ROOT = Path(__file__).resolve().parents[1]


def _axial(number: int, **kw: Any) -> SeriesSpec:
    small: dict[str, Any] = {"rows": 48, "cols": 48, "pixel_spacing": (5.0, 5.0), "n_slices": 20, "slice_step": 5.0}
    return SeriesSpec(kind="axial", series_number=number, **{**small, **kw})


def test_missing_geometry_and_mixed_sizes_fail_their_series_only(tmp_path: Path) -> None:
    truth = write_exam(tmp_path / "in", "exam_b", [_axial(2), _axial(3), _axial(4)])
    for f in truth.series_by_number(2).files[4:6]:  # two slices without a position
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    odd = truth.series_by_number(3).files[7]  # one slice of another matrix size
    ds = pydicom.dcmread(odd)
    half = ds.pixel_array[::2, ::2].copy()
    ds.Rows, ds.Columns = 24, 24
    ds.PixelData = half.tobytes()
    ds.save_as(odd)
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", *QUICK]) == ExitCode.FAILED
    rows = read_csv(tmp_path / "out" / "extract_report.csv")
    by_number: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_number.setdefault(row["series_number"], []).append(row)
    (geometry,) = by_number["2"]
    assert geometry["decision"] == "failed"
    assert geometry["reason"] == "2 of 20 file(s) lack ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
    mixed = {r["part"]: r for r in by_number["3"]}
    assert mixed["1"]["decision"] == "converted" and mixed["1"]["n_slices"] == "19"
    assert mixed["2"]["decision"] == "failed" and "stray slice(s) whose matrix sizes differ" in mixed["2"]["reason"]
    assert by_number["4"][0]["decision"] == "converted"  # the rest of the exam is unaffected
    log = (tmp_path / "out" / "logs" / "orbitct-app.log").read_text()
    assert "series 2 (" in log and "lack ImagePositionPatient" in log


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_an_orientation_that_is_not_two_perpendicular_unit_vectors_fails_its_series_only(
    tmp_path: Path, dry_run: bool
) -> None:
    """Rows and columns along one axis (no slice normal), or cosines far from unit length: the
    slices cannot be placed, so the series fails with that reason; cosines rounded as scanners
    write them still convert."""
    truth = write_exam(tmp_path / "in", "exam_o", [_axial(2), _axial(3), _axial(4)])
    rewrites = {
        2: [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # rows and columns parallel
        3: [2.0, 0.0, 0.0, 0.0, 2.0, 0.0],  # perpendicular, not unit
        4: [1.0, 0.0, 0.0, 0.0, 0.99999, -0.00447],  # unit and perpendicular to six decimals
    }
    for number, orientation in rewrites.items():
        for f in truth.series_by_number(number).files:
            ds = pydicom.dcmread(f)
            ds.ImageOrientationPatient = orientation
            ds.save_as(f)
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "extract", *QUICK, *(["--dry-run"] if dry_run else [])]
    assert main(args) == ExitCode.FAILED
    rows = {r["series_number"]: r for r in read_csv(tmp_path / "out" / "extract_report.csv")}
    for label in ("2", "3"):
        assert rows[label]["decision"] == "failed"
        assert rows[label]["reason"] == (
            "20 of 20 slice(s) have an ImageOrientationPatient that is not two perpendicular unit vectors"
        )
    assert rows["4"]["decision"] == "converted"  # (a plan says what a run would decide)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write to: read-only permissions, or for root a read-only bind mount."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip("root cannot make a read-only bind mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_output_folder_that_is_not_writable(
    tmp_path: Path, read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_exam(tmp_path / "in", "exam_w", [_axial(2)])
    code = main([str(tmp_path / "in"), str(read_only_dir / "out"), "extract", *QUICK])
    assert code == ExitCode.USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    said = f"OUTPUT_DIR is not writable: {read_only_dir} (permission denied)"
    assert lines == [f"orbitct-app: error: {said} (see 'orbitct-app --help')"]
    assert not (read_only_dir / "out").exists()


def _small_files_only() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))


def test_full_disk_during_a_write(tmp_path: Path) -> None:
    """Writes beyond 96 KB fail (as on a full disk): the NIfTI fails, the run reports it and ends."""
    write_exam(
        tmp_path / "in",
        "exam_d",
        [_axial(2, rows=128, cols=128, pixel_spacing=(1.9, 1.9), n_slices=40, slice_step=3.0)],
    )
    command = [sys.executable, "-m", "orbitct_app", str(tmp_path / "in"), str(tmp_path / "out"),
               "extract", "-q", "--spacing", "1", "--size", "256"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, env=env, preexec_fn=_small_files_only, capture_output=True, text=True, timeout=300)
    assert result.returncode == ExitCode.FAILED, result.stderr
    (row,) = read_csv(tmp_path / "out" / "extract_report.csv")
    assert row["decision"] == "failed" and "File too large" in row["reason"]
    assert not list((tmp_path / "out").rglob("*.nii.gz"))  # nothing partial under a final name
    assert not [p for p in (tmp_path / "out").rglob("*") if ".partial-" in p.name]
    assert "File too large" in result.stderr
