"""The anonymize stage (not built yet: issue 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orbitct_app.options import Options
from orbitct_app.reports import ExamRecord, Row

NAME = "anonymize"


def fingerprint(options: Options) -> dict[str, Any]:
    """The options whose change makes a completed exam out of date."""
    return {"min_slices": options.min_slices, "profile": options.profile, "in_place": options.in_place}


def run_exam(exam_dir: Path, options: Options) -> ExamRecord:
    raise NotImplementedError("the anonymize stage is not built yet")


def failure_rows(dicom_id: str, reason: str) -> dict[str, list[Row]]:
    return {"anonymize_report": [{"dicom_id": dicom_id, "action": "failed", "reason": reason}]}


def summarize(record: ExamRecord) -> str:
    c = record.counts
    return f"{c.get('kept', 0)} series kept, {c.get('dropped', 0)} dropped"
