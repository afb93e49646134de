"""The extract stage (not built yet: issue 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orbitct_app.options import Options
from orbitct_app.reports import ExamRecord, Row

NAME = "extract"


def fingerprint(options: Options) -> dict[str, Any]:
    """The options whose change makes a completed exam out of date."""
    return {
        "source": str(options.extract_source),
        "thickness": list(options.thickness) if options.thickness else None,
        "spacing": options.spacing,
        "size": options.size,
        "body_threshold": options.body_threshold,
    }


def run_exam(exam_dir: Path, options: Options) -> ExamRecord:
    raise NotImplementedError("the extract stage is not built yet")


def failure_rows(dicom_id: str, reason: str) -> dict[str, list[Row]]:
    return {"extract_report": [{"dicom_id": dicom_id, "decision": "failed", "reason": reason}]}


def summarize(record: ExamRecord) -> str:
    c = record.counts
    return f"{c.get('converted', 0)} converted, {c.get('excluded', 0)} excluded, {c.get('failed', 0)} failed"
