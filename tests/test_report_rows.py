"""Typed report rows: columns from the row classes, unknown keys an error, records that round-trip,
and records of an earlier format done again."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.records import ExamRecord, read_record, record_path, write_record
from orbitct_app.report.tables import (
    ANONYMIZE_REPORT,
    EXTRACT_REPORT,
    SERIES_INDEX,
    TABLES,
    AnonymizeRow,
    ExtractRow,
    to_csv,
)
from orbitct_app.synthetic import SeriesSpec, write_exam

QUICK = ["--spacing", "4", "--size", "64", "-q", "--n-procs", "1"]


def test_columns_are_the_row_fields_but_the_record_only_ones() -> None:
    for table in TABLES:
        fields = [f.name for f in dataclasses.fields(table.row_type)]
        assert fields[0] == "dicom_id" and set(table.columns) <= set(fields)
        assert [f for f in fields if f in table.columns] == list(table.columns)  # same order
    assert "decision" in ANONYMIZE_REPORT.columns and "action" not in ANONYMIZE_REPORT.columns
    assert "pixel_text_thumbnail" not in ANONYMIZE_REPORT.columns
    assert {"qc_path", "qc_thumbnail", "crop_note", "uneven_spacing"}.isdisjoint(EXTRACT_REPORT.columns)


def test_a_misspelt_or_unknown_column_is_an_error() -> None:
    with pytest.raises(TypeError, match="action"):
        AnonymizeRow(dicom_id="e", action="kept")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="decison"):
        EXTRACT_REPORT.parse({"dicom_id": "e", "decison": "converted"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExtractRow(dicom_id="e", decision="converted").decision = "failed"  # type: ignore[misc]


def test_csv_cells_keep_their_format() -> None:
    rows = [
        ExtractRow(dicom_id="e", decision="converted", reason="=cmd()", spacing_min=0.123456789, tilt_deg=0.0,
                   n_slices=40, qc_thumbnail="data:image/jpeg;base64,AAAA"),
        ExtractRow(dicom_id="", path="-notes", decision="skipped", reason="not a folder"),
    ]
    lines = to_csv(EXTRACT_REPORT, rows).splitlines()
    assert lines[0] == ",".join(EXTRACT_REPORT.columns)
    cells = dict(zip(EXTRACT_REPORT.columns, lines[1].split(","), strict=True))
    assert cells["reason"] == "'=cmd()" and cells["spacing_min"] == "0.123457" and cells["tilt_deg"] == "0"
    assert cells["n_slices"] == "40" and cells["part"] == "" and cells["spacing_max"] == ""
    assert "base64" not in lines[1]  # a record-only field is no cell
    assert dict(zip(EXTRACT_REPORT.columns, lines[2].split(","), strict=True))["path"] == "'-notes"


def test_a_record_round_trips(tmp_path: Path) -> None:
    row = AnonymizeRow(dicom_id="exam", series_instance_uid="1.2.3", series_number=2, n_files=12,
                       decision="kept", reason="12 slices", pixel_text_thumbnail="data:image/jpeg;base64,AA")
    record = ExamRecord("exam", "anonymize", "complete", {"version": "x"}, rows={ANONYMIZE_REPORT.name: [row]})
    write_record(tmp_path, record)
    assert read_record(tmp_path, "anonymize", "exam") == record


def test_a_record_with_the_old_action_key_is_read_as_decision(tmp_path: Path) -> None:
    path = record_path(tmp_path, "anonymize", "exam")
    path.parent.mkdir(parents=True)
    rows = {ANONYMIZE_REPORT.name: [{"dicom_id": "exam", "action": "dropped", "reason": "scout"}]}
    path.write_text(json.dumps({"dicom_id": "exam", "stage": "anonymize", "status": "complete",
                                "fingerprint": {}, "rows": rows}))
    record = read_record(tmp_path, "anonymize", "exam")
    assert record is not None
    assert ANONYMIZE_REPORT.rows(record.rows) == [AnonymizeRow(dicom_id="exam", decision="dropped", reason="scout")]


def test_a_record_whose_rows_do_not_parse_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = record_path(tmp_path, "extract", "exam")
    path.parent.mkdir(parents=True)
    broken: list[dict[str, object]] = [
        {SERIES_INDEX.name: [{"dicom_id": "exam", "voxels": 3}]}, {"no_such_table": []}, {"x": 1}
    ]
    for rows in broken:
        path.write_text(json.dumps({"dicom_id": "exam", "stage": "extract", "status": "complete",
                                    "fingerprint": {}, "rows": rows}))
        with caplog.at_level(logging.WARNING):
            assert read_record(tmp_path, "extract", "exam") is None
        assert "ignoring unreadable record" in caplog.text


def test_an_exam_whose_record_is_of_an_earlier_format_is_done_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_exam(tmp_path / "in", "exam", [SeriesSpec(kind="axial", series_number=2, rows=32, cols=32,
                                                    pixel_spacing=(6.0, 6.0), n_slices=12, slice_step=5.0)],
               plant_phi=False)
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), str(out), "all", *QUICK]
    assert main(args) == ExitCode.OK
    anonymize_csv = (out / "anonymize_report.csv").read_text()
    for stage, change in (("anonymize", "old_key"), ("extract", "unknown_key")):
        path = record_path(out / ".orbitct", stage, "exam")
        data = json.loads(path.read_text())
        del data["fingerprint"]["record_format"]  # as an earlier version wrote it
        for table_rows in data["rows"].values():
            for row in table_rows:
                if change == "old_key" and "decision" in row:
                    row["action"] = row.pop("decision")
                elif change == "unknown_key":
                    row["voxels"] = 1
        path.write_text(json.dumps(data))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(args) == ExitCode.OK
    assert "already complete; skipped" not in caplog.text  # both stages done again
    assert "ignoring unreadable record" in caplog.text  # the extract record
    assert (out / "anonymize_report.csv").read_text() == anonymize_csv
    record = read_record(out / ".orbitct", "extract", "exam")
    assert record is not None and [r.decision for r in EXTRACT_REPORT.rows(record.rows)] == ["converted"]
