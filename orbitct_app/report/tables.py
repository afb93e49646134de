"""The run's tables: one frozen dataclass per CSV (its rows), and the CSV text of its rows.

Every table's columns are the fields of its row class, in order (:attr:`Table.columns`);
a field marked :func:`record_only` is kept in the exam's record (for ``report.html``) and is
no column. Building a row with a key that is no field raises ``TypeError``, so a misspelt
column cannot be dropped silently. The top-level CSVs are rebuilt from the exams' records
(:func:`orbitct_app.report.records.merge_tables`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from orbitct_app.safe_text import csv_cell

_RECORD_ONLY = "record_only"


def record_only(default: Any = "") -> Any:
    """A row field kept in the exam's record but written to no CSV (e.g. a thumbnail)."""
    return dataclasses.field(default=default, metadata={_RECORD_ONLY: True})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    """A row of one of the run's tables (every table starts with the exam folder's name)."""

    dicom_id: str


NOT_DEIDENTIFIED = "not_deidentified"
"""The flag of a file ``--in-place`` leaves in INPUT_DIR as it was, identifiers and all (it could
not be read, de-identified or deleted): ``report.html`` lists each one at the top."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnonymizeRow(Row):
    """A row of ``anonymize_report.csv``: a series, or a file that is not part of a kept series,
    or an exam that failed as a whole (no UID, no path)."""

    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    n_files: int | None = None
    decision: str
    """``kept`` or ``dropped`` (a series); ``skipped``, ``dropped``, ``deleted`` or ``failed``."""
    reason: str = ""
    flags: str = ""
    """``;``-separated: ``burned_in_annotation``, ``secondary_capture``, ``pixel_text``,
    ``pixel_text_unchecked`` (a series); :data:`NOT_DEIDENTIFIED` (a file)."""
    path: str = ""
    pixel_text: str = ""
    """What the check for text burned into the pixels found (``--pixel-text``; a count of words,
    a box and a confidence, never the words)."""
    frames_checked: str = ""
    """How many frames the check read, e.g. ``240/240 (10 whole, 230 top and bottom bands)``."""
    pixel_text_thumbnail: str = record_only()
    """A JPEG ``data:`` URI of the frame where text was found (the text blanked, a box round it)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditRow(Row):
    """A row of ``deid_audit.csv``: one finding of the de-identification audit (where, never
    the offending value)."""

    path: str
    check: str
    tag: str = ""
    keyword: str = ""
    location: str = ""
    detail: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DryRunRow(Row):
    """A row of ``anonymize_dry_run.csv``: how often one rule of the profile would apply to a
    series (``action``: the rule's action, e.g. ``X`` or ``U``)."""

    series_instance_uid: str = ""
    series_number: int | None = None
    tag: str
    keyword: str = ""
    action: str
    count: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExtractRow(Row):
    """A row of ``extract_report.csv``: a series or one part of it, a file that failed alone,
    or an exam that failed as a whole."""

    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    part: int | None = None
    decision: str
    """``converted``, ``excluded`` or ``failed`` (``skipped``: an entry of INPUT_DIR)."""
    reason: str = ""
    n_slices: int | None = None
    spacing_min: float | None = None
    spacing_median: float | None = None
    spacing_max: float | None = None
    max_gap_mm: float | None = None
    tilt_deg: float | None = None
    orientation: str = ""
    duplicates: int | None = None
    body_cropped_fraction: float | None = None
    kernel: str = ""
    kernel_class: str = ""
    contrast: str = ""
    contrast_evidence: str = ""
    output_path: str = ""
    path: str = ""
    uneven_spacing: bool = record_only(False)
    """The slice gaps are uneven enough to warn about (see ``reason``)."""
    crop_note: str = record_only()
    """How much of the body the output grid cuts, in words ('' when nothing is cut)."""
    qc_path: str = record_only()
    """The QC picture, relative to OUTPUT_DIR ('' when it could not be drawn)."""
    qc_thumbnail: str = record_only()
    """A small JPEG of the QC picture as a ``data:`` URI."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexRow(Row):
    """A row of ``series_index.csv``: one written NIfTI."""

    series_instance_uid: str
    series_description: str
    original_spacing_x: float
    original_spacing_y: float
    original_spacing_z: float
    target_spacing_x: float
    target_spacing_y: float
    target_spacing_z: float
    output_path: str
    series_number: int | None
    part: int | None
    shape_x: int
    shape_y: int
    shape_z: int
    n_slices: int
    tilt_deg: float
    max_gap_mm: float
    body_cropped_fraction: float
    convolution_kernel: str
    kernel_class: str
    contrast: str


R = TypeVar("R", bound=Row)


@dataclasses.dataclass(frozen=True)
class Table(Generic[R]):
    """A top-level CSV: its file name, the stage that fills it and the class of its rows."""

    name: str
    stage: str
    row_type: type[R]
    optional: bool = False
    """Written only when some record has rows for it (and removed when none has)."""
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Keys of records made before a column was renamed, and their names now."""

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV's columns: the row class's fields in order, but those kept in records only."""
        return tuple(f.name for f in dataclasses.fields(self.row_type) if not f.metadata.get(_RECORD_ONLY))

    def rows(self, by_table: Mapping[str, Sequence[Row]]) -> list[R]:
        """This table's rows among rows by table name (e.g. an exam record's)."""
        return [row for row in by_table.get(self.name, ()) if isinstance(row, self.row_type)]

    def parse(self, cells: Mapping[str, Any]) -> R:
        """A row from its stored cells (a record's JSON).

        Raises
        ------
        TypeError
            When a cell is no field of the row (or a required one is missing).
        """
        return self.row_type(**{self.renamed.get(key, key): value for key, value in cells.items()})


ANONYMIZE_REPORT = Table("anonymize_report", "anonymize", AnonymizeRow, renamed={"action": "decision"})
DEID_AUDIT = Table("deid_audit", "anonymize", AuditRow)
"""Findings of the de-identification audit: where, never the offending value."""
DRY_RUN = Table("anonymize_dry_run", "anonymize", DryRunRow, optional=True)
"""``--dry-run``: per series, how often each rule of the profile would apply."""
EXTRACT_REPORT = Table("extract_report", "extract", ExtractRow)
SERIES_INDEX = Table("series_index", "extract", IndexRow)
TABLES: tuple[Table[Any], ...] = (ANONYMIZE_REPORT, DEID_AUDIT, DRY_RUN, EXTRACT_REPORT, SERIES_INDEX)
BY_NAME: dict[str, Table[Any]] = {table.name: table for table in TABLES}


def to_csv(table: Table[Any], rows: Iterable[Row]) -> str:
    """Rows of a table as CSV text (its columns, empty cells for None).

    Every cell that a spreadsheet would run as a formula is neutralised
    (:func:`~orbitct_app.safe_text.csv_cell`).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, column)) for column in table.columns])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return csv_cell(";".join(str(_cell(v)) for v in value))
    return csv_cell(value)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read one of the run's CSV files as a list of dicts (for tests and tools)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
