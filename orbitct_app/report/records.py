"""Per-exam completion records: what one stage did to one exam, kept under OUTPUT_DIR/.orbitct.

Every exam and stage writes one record (a JSON file holding its report rows, counts and the
state of its input and output folders) under ``OUTPUT_DIR/.orbitct/<stage>/<dicom_id>.json`` (a
hashed name for other exam names, see :func:`record_path`), atomically. The top-level tables
are rebuilt from them (:func:`merge_tables`), at the end of every run and replaced atomically,
under a lock, so concurrent runs over disjoint exams (SLURM array tasks) end with complete
tables; and a rerun knows from them which exams are done.

The rows are typed (:mod:`orbitct_app.report.tables`): a stored record whose rows are not rows
of the tables as they are now (a key that is no column) is unreadable, and its exam is done again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from orbitct_app import atomic, locks
from orbitct_app.report.tables import BY_NAME, TABLES, Row, to_csv

logger = logging.getLogger(__name__)

RECORD_FORMAT = 2
"""The version of the records' content (2: typed rows, ``decision`` in every table). It is part of
every record's fingerprint, so records of an earlier format are done again."""


@dataclasses.dataclass
class ExamRecord:
    """What one stage did to one exam: its status, the options it ran with, and its rows."""

    dicom_id: str
    stage: str
    status: str  # "complete" or "failed"
    fingerprint: dict[str, Any]
    rows: dict[str, list[Row]] = dataclasses.field(default_factory=dict)
    error: str = ""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    input_state: dict[str, Any] | None = None
    """The exam folder the stage read, as it was (:class:`orbitct_app.paths.TreeState`): a
    completed record holds only while the folder still is so."""
    output_state: dict[str, Any] | None = None
    """The exam's output folder as the stage left it (None when it writes none)."""

    @property
    def complete(self) -> bool:
        return self.status == "complete"


PLAIN_RECORD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}")
"""Exam names whose record is ``<dicom_id>.json``; any other gets a hashed name."""


def record_path(state_dir: Path, stage: str, dicom_id: str) -> Path:
    """Where the record of an exam and stage is kept.

    ``<stage>/<dicom_id>.json`` when the name is at most 128 ASCII letters, digits and ``._+-``
    (not starting with ``.``, ``+`` or ``-``); otherwise ``<stage>/~<40 hex digits of a SHA-256 of
    the name's UTF-8 bytes>.json``, so that any exam name the input file system holds has a record
    the output file system can hold. The record itself holds the name.
    """
    if PLAIN_RECORD_NAME.fullmatch(dicom_id):
        return state_dir / stage / f"{dicom_id}.json"
    digest = hashlib.sha256(os.fsencode(dicom_id)).hexdigest()[:40]
    return state_dir / stage / f"~{digest}.json"


def write_record(state_dir: Path, record: ExamRecord) -> Path:
    """Store an exam's record atomically and return its path (first removing temporary files
    that a killed run left for it)."""
    path = record_path(state_dir, record.stage, record.dicom_id)
    atomic.remove_stale(path.parent, path.name)
    atomic.write_text(path, json.dumps(dataclasses.asdict(record), indent=1, sort_keys=True))
    return path


def read_record(state_dir: Path, stage: str, dicom_id: str) -> ExamRecord | None:
    """The stored record of an exam and stage, or None when absent or unreadable."""
    path = record_path(state_dir, stage, dicom_id)
    record = _read(path)
    if record is None and path.name.startswith("~"):  # written before hashed names, if it could be
        legacy = state_dir / stage / f"{dicom_id}.json"
        with contextlib.suppress(OSError):
            if legacy.is_file():
                record = _read(legacy)
    return record if record is not None and record.dicom_id == dicom_id else None


def _read(path: Path) -> ExamRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored: dict[str, list[dict[str, Any]]] = data.pop("rows", {})
        tables = {name: BY_NAME[name] for name in stored}  # KeyError: no such table
        rows = {name: [tables[name].parse(cells) for cells in table_rows] for name, table_rows in stored.items()}
        return ExamRecord(**data, rows=rows)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        logger.warning("ignoring unreadable record %s (%s)", path, err)
        return None


def iter_records(state_dir: Path, stage: str) -> Iterable[ExamRecord]:
    """All readable records of a stage, one per exam, sorted by exam."""
    folder = state_dir / stage
    if not folder.is_dir():
        return []
    records: dict[str, ExamRecord] = {}
    for path in sorted(folder.glob("*.json")):
        record = _read(path)
        if record is None:
            continue
        # a record from before hashed names gives way to the one at the exam's record path
        if record.dicom_id not in records or path == record_path(state_dir, stage, record.dicom_id):
            records[record.dicom_id] = record
    return [records[name] for name in sorted(records)]




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
    by_stage = {stage: list(iter_records(state_dir, stage)) for stage in dict.fromkeys(t.stage for t in TABLES)}
    for table in TABLES:
        records = by_stage[table.stage]  # read once per stage, not once per table
        if not records:
            continue
        rows = [*table.rows(extra_rows or {}), *(row for record in records for row in table.rows(record.rows))]
        path = output_dir / table.filename
        if table.optional and not rows:
            path.unlink(missing_ok=True)
            continue
        atomic.write_text(path, to_csv(table, rows))
        written[table.name] = path
    return written
