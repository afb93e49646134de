"""Progress of a run on the console, driven by the command line (the library stays quiet).

:class:`Progress` is the pipeline's ``progress`` callback. On an interactive terminal it draws
one line at the bottom of stderr, redrawn in place with ``\\r``::

    extract [##########----------]  12/40 exams  31 series (24 converted)  2.1 s/exam  0:58 left

When stderr is not a terminal (a log file, a SLURM output file) it writes a plain line through
logging at most every ``interval`` seconds instead, and one at the end::

    progress: extract 12/40 exams (30%), 31 series (24 converted), 2.1 s/exam, about 0:58 left

Exams completed by an earlier run (resumed) count as done but not in the rate.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from orbitct_app.pipeline import ExamOutcome

logger = logging.getLogger("orbitct_app.cli")

DEFAULT_INTERVAL_S = 30.0
"""Seconds between plain progress lines when stderr is not a terminal."""
_BAR_WIDTH = 24


class Progress:
    """Exams and series done, rate and time left, for one run.

    Parameters
    ----------
    stage
        The label (the run's stage).
    stream
        Where the interactive bar is drawn (stderr).
    interactive
        Draw a bar (True) or log plain lines (False); default: whether ``stream`` is a TTY.
    interval
        Seconds between plain lines in the non-interactive mode.
    clock
        Monotonic time source (tests pass a fake one).
    """

    def __init__(
        self,
        stage: str,
        stream: TextIO,
        *,
        interactive: bool | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.stream = stream
        self.interactive = _isatty(stream) if interactive is None else interactive
        self.interval = interval
        self.clock = clock
        self.lock = threading.RLock()
        self.started = clock()
        self.total: int | None = None
        self.done = 0
        self.resumed = 0
        self.series = 0
        self.kept = 0
        self.converted = 0
        self.extracting = stage in ("extract", "all")
        self._drawn = False
        self._last_line = self.started
        self._closed = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the pipeline's callback ---------------------------------------------------------------
    def __call__(self, done: int, total: int, outcome: ExamOutcome | None) -> None:
        with self.lock:
            self.total = total
            self.done = done
            if outcome is not None:
                self._count(outcome)
            if total and done >= total:
                self._finish()  # before the run's closing lines (tables, report)
            elif self.interactive:
                self.redraw()
            elif outcome is not None and self.clock() - self._last_line >= self.interval:
                self._log_line()

    def _count(self, outcome: ExamOutcome) -> None:
        if outcome.records and set(outcome.records) <= set(outcome.resumed):
            self.resumed += 1
        seen = 0
        for name, record in outcome.records.items():
            c = record.counts
            if name == "anonymize":
                seen = max(seen, c.get("kept", 0) + c.get("dropped", 0))
            else:
                seen = max(seen, c.get("converted", 0) + c.get("excluded", 0) + c.get("failed", 0))
        self.series += seen
        if "anonymize" in outcome.records:
            self.kept += outcome.records["anonymize"].counts.get("kept", 0)
        if "extract" in outcome.records:
            self.extracting = True
            self.converted += outcome.records["extract"].counts.get("converted", 0)

    @property
    def produced(self) -> str:
        """What the run made so far: series converted (when extracting) or kept."""
        return f"{self.converted} converted" if self.extracting else f"{self.kept} kept"

    # --- text ----------------------------------------------------------------------------------
    def rate_text(self) -> str:
        """Seconds per exam (or exams per second), over exams processed in this run."""
        processed = self.done - self.resumed
        elapsed = self.clock() - self.started
        if processed <= 0 or elapsed <= 0:
            return "-- s/exam"
        per_exam = elapsed / processed
        return f"{per_exam:.1f} s/exam" if per_exam >= 1 else f"{1 / per_exam:.1f} exams/s"

    def time_left(self) -> float | None:
        """Estimated seconds left, or None before the first processed exam."""
        processed = self.done - self.resumed
        if self.total is None or processed <= 0:
            return None
        return (self.clock() - self.started) / processed * (self.total - self.done)

    def bar_line(self, width: int | None = None) -> str:
        """The interactive line (cut to the terminal width)."""
        total = self.total or 0
        filled = _BAR_WIDTH * self.done // total if total else 0
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        left = self.time_left()
        left_text = f"{_duration(left)} left" if left is not None else "--:-- left"
        if self.total is not None and self.done >= self.total:
            left_text = f"done in {_duration(self.clock() - self.started)}"
        line = (
            f"{self.stage} [{bar}] {self.done:>{len(str(total))}}/{total} exams  "
            f"{self.series} series ({self.produced})  {self.rate_text()}  {left_text}"
        )
        width = width or shutil.get_terminal_size(fallback=(100, 24)).columns
        return line[: max(10, width - 1)]

    def plain_line(self) -> str:
        percent = f" ({100 * self.done // self.total}%)" if self.total else ""
        left = self.time_left()
        if self.total is not None and self.done >= self.total:
            tail = f"done in {_duration(self.clock() - self.started)}"
        else:
            tail = f"about {_duration(left)} left" if left is not None else "time left unknown yet"
        return (
            f"progress: {self.stage} {self.done}/{self.total if self.total is not None else '?'} exams{percent}, "
            f"{self.series} series ({self.produced}), {self.rate_text()}, {tail}"
        )

    # --- output --------------------------------------------------------------------------------
    def redraw(self) -> None:
        """Draw the bar again (interactive mode; a no-op before the total is known)."""
        with self.lock:
            if not self.interactive or self._closed or self.total is None:
                return
            self.stream.write("\r\x1b[2K" + self.bar_line())
            self.stream.flush()
            self._drawn = True

    def clear(self) -> None:
        """Erase the bar so a log line can be written where it was."""
        with self.lock:
            if self._drawn:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._drawn = False

    def tick(self) -> None:
        """Refresh on a timer: redraw the bar, or log a plain line when one is due."""
        with self.lock:
            if self._closed or self.total is None:
                return
            if self.interactive:
                self.redraw()
            elif self.clock() - self._last_line >= self.interval:
                self._log_line()

    def _log_line(self) -> None:
        self._last_line = self.clock()
        logger.info("%s", self.plain_line())

    def start(self, refresh: float = 1.0) -> None:
        """Refresh in a background thread every ``refresh`` seconds until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(refresh):
                self.tick()

        self._ticker = threading.Thread(target=loop, name="orbitct-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop refreshing; leave the final bar on its own line, or log a final plain line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._finish()

    def _finish(self) -> None:
        """The last output, once: the final bar left on its own line, or a final plain line."""
        with self.lock:
            if self._closed:
                return
            if self.total is not None:
                if self.interactive:
                    self.redraw()
                    self.stream.write("\n")
                    self.stream.flush()
                    self._drawn = False
                else:
                    self._log_line()
            self._closed = True


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
