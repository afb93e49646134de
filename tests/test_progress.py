"""Progress on the console: a bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.pipeline import ExamOutcome
from orbitct_app.progress import Progress
from orbitct_app.report.records import ExamRecord
from orbitct_app.synthetic import SeriesSpec, write_exam

SMALL = SeriesSpec(
    kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=24, slice_step=5.0
)


class Terminal(io.StringIO):
    """A stream that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outcome(name: str, *, resumed: bool = False, converted: int = 1, excluded: int = 1) -> ExamOutcome:
    record = ExamRecord(name, "extract", "complete", {}, counts={"converted": converted, "excluded": excluded})
    return ExamOutcome(name, {"extract": record}, ["extract"] if resumed else [])


def test_terminal_gets_a_bar_redrawn_in_place() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress("extract", stream, clock=clock)
    assert progress.interactive
    progress(0, 4, None)
    clock.now += 10
    progress(1, 4, outcome("a"))
    clock.now += 10
    progress(2, 4, outcome("b", converted=2, excluded=0))
    text = stream.getvalue()
    last = text.split("\r\x1b[2K")[-1]
    assert "\n" not in text  # redrawn in place, never a new line before the end
    assert last.startswith("extract [############------------]")
    assert " 2/4 exams" in last and "4 series (3 converted)" in last
    assert "10.0 s/exam" in last and "0:20 left" in last
    progress(4, 4, outcome("c"))  # the last exam: the bar stays on its own line
    assert stream.getvalue().endswith("\n") and "done in 0:20" in stream.getvalue()
    progress.close()
    assert stream.getvalue().count("\n") == 1


def test_bar_fits_the_terminal_and_counts_resumed_exams_out_of_the_rate() -> None:
    clock = Clock()
    progress = Progress("all", Terminal(), clock=clock)
    progress(0, 10, None)
    for n in range(1, 6):
        progress(n, 10, outcome(f"r{n}", resumed=True))  # done earlier: instant
    clock.now += 30
    progress(6, 10, outcome("p"))
    assert progress.rate_text() == "30.0 s/exam"
    assert progress.time_left() == pytest.approx(120.0)
    assert len(progress.bar_line(width=40)) == 39


def test_not_a_terminal_gets_plain_lines_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orbitct_app")
    stream, clock = io.StringIO(), Clock()
    progress = Progress("extract", stream, interval=30, clock=clock)
    assert not progress.interactive
    progress(0, 5, None)
    for n in range(1, 4):
        clock.now += 12
        progress(n, 5, outcome(f"e{n}"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert lines == ["progress: extract 3/5 exams (60%), 6 series (3 converted), 12.0 s/exam, about 0:24 left"]
    clock.now += 31
    progress.tick()  # a timer tick between exams also reports
    clock.now += 5
    progress.tick()  # but not before the interval has passed again
    progress(5, 5, outcome("e5"))
    progress.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) == 3 and lines[-1].endswith("done in 1:12")
    assert stream.getvalue() == ""  # nothing drawn


def _exams(root: Path, names: list[str]) -> Path:
    for seed, name in enumerate(names):
        write_exam(root, name, [SMALL], seed=seed)
    return root


def test_pipeline_reports_the_total_first_then_each_exam(tmp_path: Path) -> None:
    from orbitct_app import pipeline
    from orbitct_app.options import Options, Stage

    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    calls: list[tuple[int, int, str | None]] = []
    options = Options(inp, tmp_path / "out", Stage.EXTRACT, spacing=2, size=96, n_procs=1)
    pipeline.run(options, progress=lambda d, t, o: calls.append((d, t, o.dicom_id if o else None)))
    assert calls == [(0, 2, None), (1, 2, "exam_a"), (2, 2, "exam_b")]


def test_cli_draws_the_bar_on_a_terminal_with_log_lines_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = _exams(tmp_path / "in", ["exam_a", "exam_b"])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert (
        main([str(inp), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "96", "--n-procs", "1"])
        == ExitCode.OK
    )
    text = terminal.getvalue()
    assert "extract [" in text and "2/2 exams" in text and "2 series (2 converted)" in text
    # what the terminal shows: each line as left by its last carriage return and erase
    screen = [line.split("\r")[-1].removeprefix("\x1b[2K") for line in text.split("\n")]
    assert screen[-1] == ""  # ends on a fresh line
    bars = [line for line in screen if line.startswith("extract [")]
    assert len(bars) == 1 and "2/2 exams" in bars[0] and "done in" in bars[0]  # the final bar stays
    for line in screen[:-1]:
        assert line.startswith(("INFO: ", "extract [")), repr(line)  # never a log line glued to the bar
    assert any(line.startswith("INFO: [2/2] exam_b") for line in screen)


def test_cli_logs_plain_progress_lines_when_not_on_a_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inp = _exams(tmp_path / "in", ["exam_a"])
    assert (
        main([str(inp), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "96", "--n-procs", "1"])
        == ExitCode.OK
    )
    assert "progress: extract 1/1 exams (100%), 1 series (1 converted)" in caplog.text
    assert "\r" not in caplog.text
    log = (tmp_path / "out" / "logs" / "orbitct-app.log").read_text()
    assert "progress: extract 1/1 exams" in log


def test_quiet_shows_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inp = _exams(tmp_path / "in", ["exam_a"])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([str(inp), str(tmp_path / "out"), "extract", "--spacing", "2", "--size", "96", "-q"]) == ExitCode.OK
    assert terminal.getvalue() == ""
