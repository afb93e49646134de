"""The run's tables: their columns, and their merge from the exams' records into top-level CSVs.

The top-level CSVs are rebuilt from every exam's record (:mod:`orbitct_app.report.records`) at
the end of every run and replaced atomically, under a lock, so concurrent runs over disjoint
exams (SLURM array tasks) end with complete tables.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orbitct_app import atomic, locks
from orbitct_app.report.records import Row, iter_records
from orbitct_app.safe_text import csv_cell

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Table:
    """A top-level CSV: its file name, the stage that fills it and its columns in order."""

    name: str
    stage: str
    columns: tuple[str, ...]
    optional: bool = False
    """Written only when some record has rows for it (and removed when none has)."""

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"


ANONYMIZE_REPORT = Table(
    "anonymize_report",
    "anonymize",
    (
        "dicom_id",
        "series_instance_uid",
        "series_number",
        "series_description",
        "modality",
        "n_files",
        "action",
        "reason",
        "flags",
        "path",
        "pixel_text",
        "frames_checked",
    ),
)
"""``pixel_text``: what the check for text burned into the pixels found (``--pixel-text``; a count
of words, a box and a confidence, never the words); ``frames_checked``: how many frames it read,
e.g. ``240/240 (10 whole, 230 top and bottom bands)``."""
EXTRACT_REPORT = Table(
    "extract_report",
    "extract",
    (
        "dicom_id",
        "series_instance_uid",
        "series_number",
        "series_description",
        "part",
        "decision",
        "reason",
        "n_slices",
        "spacing_min",
        "spacing_median",
        "spacing_max",
        "max_gap_mm",
        "tilt_deg",
        "orientation",
        "duplicates",
        "body_cropped_fraction",
        "kernel",
        "kernel_class",
        "contrast",
        "contrast_evidence",
        "output_path",
        "path",
    ),
)
SERIES_INDEX = Table(
    "series_index",
    "extract",
    (
        "dicom_id",
        "series_instance_uid",
        "series_description",
        "original_spacing_x",
        "original_spacing_y",
        "original_spacing_z",
        "target_spacing_x",
        "target_spacing_y",
        "target_spacing_z",
        "output_path",
        "series_number",
        "part",
        "shape_x",
        "shape_y",
        "shape_z",
        "n_slices",
        "tilt_deg",
        "max_gap_mm",
        "body_cropped_fraction",
        "convolution_kernel",
        "kernel_class",
        "contrast",
    ),
)
DEID_AUDIT = Table(
    "deid_audit",
    "anonymize",
    ("dicom_id", "path", "check", "tag", "keyword", "location", "detail"),
)
"""Findings of the de-identification audit: where, never the offending value."""
DRY_RUN = Table(
    "anonymize_dry_run",
    "anonymize",
    ("dicom_id", "series_instance_uid", "series_number", "tag", "keyword", "action", "count"),
    optional=True,
)
"""``--dry-run``: per series, how often each rule of the profile would apply."""
TABLES = (ANONYMIZE_REPORT, DEID_AUDIT, DRY_RUN, EXTRACT_REPORT, SERIES_INDEX)

def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as CSV text with the given columns (missing values empty, extra keys ignored).

    Every cell that a spreadsheet would run as a formula is neutralised
    (:func:`~orbitct_app.safe_text.csv_cell`).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", restval="", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return csv_cell(";".join(str(_cell(v)) for v in value))
    return csv_cell(value)


@contextlib.contextmanager
def merge_lock(state_dir: Path) -> Iterator[None]:
    """Hold the run-end lock: concurrent runs rebuild their shared outputs one at a time.

    Not re-entrant: do not take it twice in one process.
    """
    with locks.file_lock(state_dir / "merge.lock", "the run-end merge", quiet=True):
        yield


def merge_tables(
    state_dir: Path, output_dir: Path, extra_rows: Mapping[str, list[Row]] | None = None
) -> dict[str, Path]:
    """Rebuild every top-level CSV from all stored records (call with :func:`merge_lock` held).

    ``extra_rows`` (by table name) come first: rows that belong to no exam, such as the
    top-level entries of INPUT_DIR that are not exams. A table is written when at least one
    record of its stage exists.
    """
    written: dict[str, Path] = {}
    for table in TABLES:
        records = list(iter_records(state_dir, table.stage))
        if not records:
            continue
        rows = [
            *(extra_rows or {}).get(table.name, []),
            *(row for record in records for row in record.rows.get(table.name, [])),
        ]
        path = output_dir / table.filename
        if table.optional and not rows:
            path.unlink(missing_ok=True)
            continue
        atomic.write_text(path, to_csv(table.columns, rows))
        written[table.name] = path
    return written


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read one of the run's CSV files as a list of dicts (for tests and tools)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
