"""The pipeline's stages, in one place: which there are, in what order, and what each provides.

A run is ``anonymize``, ``extract`` or both in that order (``all``); ``report`` runs no stage. Each
stage is a module providing :class:`StageModule` (:mod:`orbitct_app.anonymize.stage`,
:mod:`orbitct_app.extract.stage`). The pipeline and the command line reach the stages only
through this module, and mypy checks each module against the protocol where :func:`load`
returns it. A stage is imported only when a run needs it, so an anonymize-only run never loads
extract's numeric libraries.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from orbitct_app.options import Options, Stage
from orbitct_app.report.records import ExamRecord
from orbitct_app.report.tables import Row

ORDER = ("anonymize", "extract")
"""The stages, in the order a run executes them."""

MODULES = {"anonymize": "orbitct_app.anonymize.stage", "extract": "orbitct_app.extract.stage"}
"""Each stage's module, by name (what the workers' fork server imports ahead: :func:`preload`)."""


class StageModule(Protocol):
    """What a stage provides to the pipeline."""

    NAME: str
    """The stage's name, as in :data:`ORDER` (and its records' folder under OUTPUT_DIR/.orbitct)."""

    def source(self, options: Options) -> Path:
        """The root the stage reads exams from."""
        ...

    def prepare(self, options: Options) -> None:
        """Once per run, in the main process, before the first exam (e.g. create the key)."""
        ...

    def finish(self, options: Options) -> None:
        """Once per run, in the main process, after the exams (also after an interruption)."""
        ...

    def log_filters(self, options: Options) -> list[logging.Filter]:
        """Filters for the run's log handlers (e.g. the basic profile's UID rewriting)."""
        ...

    def fingerprint(self, options: Options) -> dict[str, Any]:
        """The options whose change makes a completed exam out of date."""
        ...

    def run_exam(self, exam_dir: Path, options: Options) -> ExamRecord:
        """Process one exam folder; a file's or series' failure is a row, not an exception."""
        ...

    def failure_rows(self, dicom_id: str, reason: str) -> dict[str, list[Row]]:
        """The report rows of an exam that failed as a whole."""
        ...

    def summarize(self, record: ExamRecord) -> str:
        """One line for the progress log."""
        ...

    def output_folder(self, dicom_id: str, options: Options) -> Path | None:
        """The exam's folder in OUTPUT_DIR (None when the stage writes none)."""
        ...

    def modifies_source(self, options: Options) -> bool:
        """Whether the stage changes the exam folder it reads (``--in-place``)."""
        ...

    def stale_reason(self, record: ExamRecord, exam_dir: Path, options: Options) -> str:
        """The stage's own reason why a completed record no longer holds ('' when it does)."""
        ...


def load(name: str) -> StageModule:
    """The stage called ``name``, imported now if it was not.

    Raises
    ------
    KeyError
        When there is no such stage.
    """
    if name == "anonymize":
        from orbitct_app.anonymize import stage as anonymize

        return anonymize
    if name == "extract":
        from orbitct_app.extract import stage as extract

        return extract
    raise KeyError(name)


def unmet_requirement(options: Options) -> str | None:
    """Why a stage of this run cannot start on this machine (one line), or None when all can.

    ``--pixel-text flag`` and ``drop`` need the OCR engine. Checked before the run starts, with
    only the engine's module imported (no stage, no numpy).
    """
    if options.checks_pixel_text:
        from orbitct_app.anonymize import ocr

        problem = ocr.engine_problem()
        if problem is not None:
            return f"--pixel-text {options.pixel_text} needs an OCR engine: {problem}"
    return None


def names(stage: Stage) -> tuple[str, ...]:
    """The stages a run of ``stage`` executes, in order (none for ``report``)."""
    return tuple(name for name in ORDER if (stage.anonymizes if name == "anonymize" else stage.extracts))


def for_run(stage: Stage) -> list[StageModule]:
    """The stage modules a run of ``stage`` executes, in order."""
    return [load(name) for name in names(stage)]


def preload(stage: Stage) -> list[str]:
    """The modules of the stages a run of ``stage`` executes, without importing them."""
    return [MODULES[name] for name in names(stage)]
