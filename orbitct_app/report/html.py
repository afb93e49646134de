"""``OUTPUT_DIR/report.html``: one self-contained page for checking a whole output folder.

Built from the per-exam records (the same rows as the CSVs) and the run records under
``logs/``: totals, warnings, a table per exam with every series' decision and reason, the QC
thumbnails, and the options, versions and timings of the runs. It is rebuilt at the end of
every run and by the ``report`` stage.

Self-contained and offline: styles are inline, there is no script, and every picture is a
small JPEG thumbnail embedded as a ``data:`` URI (at most
:data:`orbitct_app.pictures.THUMBNAIL_MAX_BYTES` each, typically 14-18 KB) that links to the full QC
PNG by a relative path. The page makes no network request; a dataset of 1000 exams gives a page a
browser opens (its size and build time: ``docs/performance.md``).

It shows what the CSVs show and nothing more: exam folder names (``dicom_id``), series numbers,
descriptions and UIDs, decisions, reasons, counts, options and versions. No other header value
reaches it. It reads the rows only (their cells, and the flags and notes the stages put in them):
it imports no stage.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orbitct_app import __version__, atomic
from orbitct_app.paths import InputEntry
from orbitct_app.report.records import ExamRecord, iter_records
from orbitct_app.report.tables import ANONYMIZE_REPORT, EXTRACT_REPORT, NOT_DEIDENTIFIED, AnonymizeRow, ExtractRow

# pictures (PIL) is imported where a QC thumbnail must be made from its PNG, so that an
# anonymize-only run never loads it.

OutcomeRow = AnonymizeRow | ExtractRow
"""A row with a decision: a series, a file or an exam in either stage's report."""

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
TILT_WARNING_DEG = 0.1
"""A measured gantry tilt at least this large (degrees) is listed among the warnings."""
_DATA_URI = re.compile(r"^data:image/(jpeg|png);base64,[A-Za-z0-9+/=]+$")


@dataclasses.dataclass
class SeriesLine:
    """One line of an exam's table: a series (or one part of it) through both stages."""

    uid: str
    number: Any
    description: str
    anonymize: AnonymizeRow | None = None
    extract: ExtractRow | None = None

    @property
    def part(self) -> str:
        return str(self.extract.part or "") if self.extract is not None else ""


@dataclasses.dataclass
class ExamView:
    """What the records say about one exam."""

    dicom_id: str
    records: dict[str, ExamRecord]
    lines: list[SeriesLine]
    other_rows: list[tuple[str, OutcomeRow]]
    """(stage, row) of rows that are not a series: skipped or failed files, exam failures."""

    @property
    def failed(self) -> bool:
        return any(not r.complete for r in self.records.values())

    @property
    def planned(self) -> bool:
        """The extract record is a dry run's: its rows are the plan, nothing was written."""
        record = self.records.get("extract")
        return record is not None and bool(record.fingerprint.get("dry_run"))


@dataclasses.dataclass(frozen=True)
class Finding:
    """One warning of the page: what a curator should look at, in which exam."""

    dicom_id: str
    anchor: str
    what: str
    detail: str
    picture: str = ""
    """A small JPEG ``data:`` URI shown with the warning (a frame where text was found)."""


@dataclasses.dataclass
class ReportData:
    exams: list[ExamView]
    missing: list[str]
    totals: dict[str, int]
    warnings: list[Finding]
    input_entries: Sequence[InputEntry] = ()
    """Top-level entries of INPUT_DIR that are not exams (hidden folders, files, links)."""


def collect(
    state_dir: Path, exam_names: Iterable[str] = (), input_entries: Sequence[InputEntry] = ()
) -> ReportData:
    """Gather the records of every exam (and the exams of ``exam_names`` without a record)."""
    by_exam: dict[str, dict[str, ExamRecord]] = {}
    for stage in ("anonymize", "extract"):
        for record in iter_records(state_dir, stage):
            by_exam.setdefault(record.dicom_id, {})[stage] = record
    exams = [_exam_view(dicom_id, by_exam[dicom_id]) for dicom_id in sorted(by_exam)]
    missing = sorted(set(exam_names) - set(by_exam))
    anchors = _anchors(exams)
    return ReportData(exams, missing, _totals(exams), _warnings(exams, anchors), input_entries)


def write_report(
    output_dir: Path,
    state_dir: Path,
    *,
    runs: Sequence[Mapping[str, Any]] = (),
    exam_names: Iterable[str] = (),
    input_entries: Sequence[InputEntry] = (),
) -> Path:
    """Build ``OUTPUT_DIR/report.html`` from the records and run records; write it atomically.

    Parameters
    ----------
    output_dir
        The run's OUTPUT_DIR (QC pictures are linked relative to it).
    state_dir
        Where the per-exam records are (``OUTPUT_DIR/.orbitct``).
    runs
        Run records (see :func:`orbitct_app.provenance.run_record`), oldest first; the last one
        is shown in full.
    exam_names
        Every exam of INPUT_DIR: those without a record are listed as not processed.
    input_entries
        The top-level entries of INPUT_DIR that are not exams, listed with their reasons.
    """
    data = collect(state_dir, exam_names, input_entries)
    page = render_page(data, runs, output_dir)
    path = output_dir / REPORT_NAME
    atomic.write_text(path, page)
    return path


# --- data ---------------------------------------------------------------------------------------


def _exam_view(dicom_id: str, records: dict[str, ExamRecord]) -> ExamView:
    lines: dict[tuple[str, str], SeriesLine] = {}
    anonymize_rows: dict[str, AnonymizeRow] = {}
    other: list[tuple[str, OutcomeRow]] = []
    for stage, record in records.items():
        for row in _outcome_rows(record):
            uid = row.series_instance_uid
            if not uid or (isinstance(row, AnonymizeRow) and row.path):  # an exam's or a file's row
                other.append((stage, row))
            elif isinstance(row, AnonymizeRow):
                anonymize_rows[uid] = row
            else:
                key = (uid, str(row.part or ""))
                lines[key] = SeriesLine(uid, row.series_number, row.series_description, extract=row)
    for uid, anonymized in anonymize_rows.items():
        matched = [line for (u, _), line in lines.items() if u == uid]
        for line in matched:
            line.anonymize = anonymized
        if not matched:
            lines[(uid, "")] = SeriesLine(
                uid, anonymized.series_number, anonymized.series_description, anonymize=anonymized
            )
    ordered = sorted(lines.values(), key=lambda s: (_number_key(s.number), s.uid, _number_key(s.part)))
    return ExamView(dicom_id, records, ordered, other)


def _number_key(value: Any) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value or ""))


def _outcome_rows(record: ExamRecord) -> list[OutcomeRow]:
    """The rows of a record's stage report (``anonymize_report`` or ``extract_report``)."""
    table = ANONYMIZE_REPORT if record.stage == "anonymize" else EXTRACT_REPORT
    return list(table.rows(record.rows))


def _decision(row: OutcomeRow | None) -> str:
    return row.decision if row is not None else ""


def _totals(exams: Sequence[ExamView]) -> dict[str, int]:
    seen: set[tuple[str, str]] = set()
    totals = dict.fromkeys(
        ("exams", "exams_failed", "series_seen", "kept", "dropped", "converted", "excluded", "failed"), 0
    )
    totals["exams"] = len(exams)
    for exam in exams:
        totals["exams_failed"] += exam.failed
        for line in exam.lines:
            seen.add((exam.dicom_id, line.uid))
        for record in exam.records.values():
            for row in _outcome_rows(record):
                outcome = row.decision
                if outcome in ("kept", "dropped", "converted", "excluded", "failed"):
                    totals[outcome] += 1
    totals["series_seen"] = len(seen)
    return totals


def _anchors(exams: Sequence[ExamView]) -> dict[str, str]:
    return {exam.dicom_id: f"exam-{n}" for n, exam in enumerate(exams, start=1)}


def _series_label(line: SeriesLine) -> str:
    number = line.number if line.number not in (None, "") else "?"
    part = f" part {line.part}" if line.part else ""
    return f"series {number}{part}"


def _warnings(exams: Sequence[ExamView], anchors: Mapping[str, str]) -> list[Finding]:
    found: list[Finding] = []
    for exam in exams:
        anchor = anchors[exam.dicom_id]

        def add(what: str, detail: str, picture: str = "") -> None:
            found.append(Finding(exam.dicom_id, anchor, what, detail, picture))  # noqa: B023

        for stage, record in exam.records.items():
            if not record.complete:
                add("exam failed", f"{stage}: {record.error}")
        for line in exam.lines:
            label = _series_label(line)
            anon, ext = line.anonymize, line.extract
            if anon is not None:
                flags = [f for f in anon.flags.split(";") if f]
                if "burned_in_annotation" in flags:
                    add("burned-in annotation", f"{label} kept but flagged BurnedInAnnotation: review its pixels")
                if "secondary_capture" in flags:
                    add("secondary capture", f"{label} kept but is a secondary capture: review its pixels")
                kept = anon.decision == "kept"
                if "pixel_text" in flags and kept:
                    add("text in pixels", f"{label} kept but its pixels show text: {anon.pixel_text}; "
                        "review it (the thumbnail blanks the text, the red box marks it)", anon.pixel_text_thumbnail)
                if "pixel_text_unchecked" in flags and kept:
                    add("pixels not checked", f"{label} kept, but {anon.pixel_text}: review its pixels")
            for stage, row in (("anonymize", anon), ("extract", ext)):
                if row is not None and row.decision == "failed":
                    add("series failed", f"{stage}: {label}: {row.reason}")
            if ext is None:
                continue
            smallest, median, largest = ext.spacing_min, ext.spacing_median, ext.spacing_max
            if ext.uneven_spacing and smallest is not None and median is not None and largest is not None:
                add("uneven spacing", f"{label}: slice gaps {smallest:.3g}-{largest:.3g} mm (median {median:.3g} mm)")
            if ext.tilt_deg is not None and abs(ext.tilt_deg) >= TILT_WARNING_DEG:
                add("gantry tilt", f"{label}: {ext.tilt_deg:.3g} degrees (resampled onto an untilted grid)")
            if ext.duplicates:
                add("duplicate slices", f"{label}: {ext.duplicates} exact duplicate file(s) dropped")
            if ext.crop_note:
                add("body cropped", f"{label}: {ext.crop_note}; --size fit keeps the whole body")
            if line.part:
                add("series split", f"{label}: {ext.reason}")
        for stage, other in exam.other_rows:
            if isinstance(other, AnonymizeRow) and NOT_DEIDENTIFIED in other.flags.split(";"):
                add("NOT de-identified", f"{stage}: {other.path}: {other.reason}")
            elif other.decision == "failed" and other.path:
                add("file failed", f"{stage}: {other.path}: {other.reason}")
            elif other.decision == "failed" and not any(not r.complete for r in exam.records.values()):
                add("exam failed", f"{stage}: {other.reason}")
    return found


# --- page ---------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0;
       color: #1d232a; background: #f6f7f9; }
header { background: #16324f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .85; }
nav { padding: 8px 28px; background: #e4e9ef; }
nav a { margin-right: 18px; }
main { padding: 8px 28px 40px; }
h2 { margin-top: 28px; border-bottom: 2px solid #c9d3de; padding-bottom: 4px; }
h3 { margin: 22px 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #d5dde6; border-radius: 6px; padding: 8px 14px; min-width: 92px; }
.card b { display: block; font-size: 24px; }
.card.bad b { color: #b3261e; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 10px; }
th, td { border: 1px solid #d5dde6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .uid { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.uid { word-break: break-all; max-width: 220px; display: inline-block; }
.converted { color: #1a6b2f; font-weight: 600; }
.kept { color: #1a6b2f; }
.excluded, .dropped, .skipped, .deleted { color: #6b5d1a; }
.failed { color: #b3261e; font-weight: 600; }
.flag { background: #fde7c7; border-radius: 3px; padding: 0 4px; font-size: 12px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 4px 0; }
figcaption { font-size: 12px; max-width: 448px; }
img.pixel-text { display: block; margin-top: 4px; max-width: 192px; border: 1px solid #999; }
img.qc { width: 448px; height: auto; display: block; border: 1px solid #999; background: #181818; }
tr.outcome-failed td:first-child { border-left: 4px solid #b3261e; }
.exam { background: #fff; border: 1px solid #d5dde6; border-radius: 6px; padding: 4px 14px 10px; margin: 14px 0; }
.exam.bad { border-color: #b3261e; }
.muted { color: #5b6775; }
.planned { background: #e4eefb; border-left: 4px solid #2f6fb3; padding: 4px 8px; }
pre { white-space: pre-wrap; word-break: break-all; background: #fff; border: 1px solid #d5dde6; padding: 8px; }
"""


def render_page(data: ReportData, runs: Sequence[Mapping[str, Any]], output_dir: Path) -> str:
    """The whole page as a string."""
    anchors = _anchors(data.exams)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    latest = runs[-1] if runs else None
    run_note = (
        f" · last run {_e(latest.get('run_id', ''))} ({_e(latest.get('options', {}).get('stage', ''))})"
        if latest
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>orbitct-app report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>orbitct-app report</h1>",
        f"<p>{len(data.exams)} exam(s) · generated {_e(now)} by orbitct-app {_e(__version__)}{run_note}</p></header>",
        ('<nav><a href="#summary">Summary</a><a href="#warnings">Warnings</a>'
         '<a href="#exams">Exams</a><a href="#runs">Runs, options, versions, timings</a></nav>'),
        "<main>",
        _summary_section(data),
        _warnings_section(data),
        _exam_index(data, anchors),
        *(_exam_section(exam, anchors[exam.dicom_id], output_dir) for exam in data.exams),
        _runs_section(runs),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _summary_section(data: ReportData) -> str:
    t = data.totals
    cards = [
        ("exams", t["exams"], False),
        ("exams failed", t["exams_failed"], t["exams_failed"] > 0),
        ("not processed", len(data.missing), bool(data.missing)),
        ("series seen", t["series_seen"], False),
        ("kept", t["kept"], False),
        ("dropped", t["dropped"], False),
        ("converted", t["converted"], False),
        ("excluded", t["excluded"], False),
        ("failed", t["failed"], t["failed"] > 0),
        ("warnings", len(data.warnings), False),
    ]
    html_cards = "".join(
        f'<div class="card{" bad" if bad else ""}" data-total="{_e(name)}"><b>{value}</b>{_e(name)}</div>'
        for name, value, bad in cards
    )
    note = (
        '<p class="muted">kept/dropped: anonymize decisions per series; converted/excluded: extract '
        "decisions per series or part; failed: series, files or exams that failed in either stage.</p>"
    )
    planned = [exam.dicom_id for exam in data.exams if exam.planned]
    if planned:
        note += (
            f'<p class="planned">{len(planned)} exam(s) show the plan of an extract dry run (decisions and '
            "reasons from the headers; converted means a real run would convert it; nothing was written): "
            f"{_e(', '.join(planned))}</p>"
        )
    missing = ""
    if data.missing:
        missing = (
            f'<p class="failed">{len(data.missing)} exam(s) of INPUT_DIR have no record yet (not processed, '
            f"or their run was killed): {_e(', '.join(data.missing))}</p>"
        )
    not_deidentified = sum(w.what == "NOT de-identified" for w in data.warnings)
    if not_deidentified:
        missing += (
            f'<p class="failed"><b>{not_deidentified} file(s) in INPUT_DIR are NOT de-identified</b>  (--in-place '
            "left them as they were: damaged or unreadable, or their copy could not be written, or they could "
            "not be deleted): see the warnings; fix or remove them before sharing.</p>"
        )
    if data.input_entries:
        items = "".join(f"<li>{_e(e.name)}: {_e(e.reason)}</li>" for e in data.input_entries)
        missing += (
            f'<p>{len(data.input_entries)} entr(y/ies) of INPUT_DIR are not exams:</p><ul class="muted">{items}</ul>'
        )
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{html_cards}</div>{note}{missing}</section>'


def _warnings_section(data: ReportData) -> str:
    if not data.warnings:
        return '<section id="warnings"><h2>Warnings</h2><p>None.</p></section>'
    rows = "".join(
        f'<tr><td><a href="#{w.anchor}">{_e(w.dicom_id)}</a></td><td>{_e(w.what)}</td><td>{_e(w.detail)}'
        f"{_warning_picture(w)}</td></tr>"
        for w in data.warnings
    )
    counts: dict[str, int] = {}
    for w in data.warnings:
        counts[w.what] = counts.get(w.what, 0) + 1
    overview = ", ".join(f"{n} {_e(what)}" for what, n in sorted(counts.items()))
    return (
        f'<section id="warnings"><h2>Warnings</h2><p>{overview}</p>'
        f"<table><thead><tr><th>exam</th><th>warning</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _warning_picture(warning: Finding) -> str:
    """The warning's thumbnail (only an embedded JPEG or PNG, never a link), or ''."""
    if not _DATA_URI.match(warning.picture):
        return ""
    return f'<br><img class="pixel-text" src="{warning.picture}" alt="{_e(warning.what)}: where it was found">'


def _exam_index(data: ReportData, anchors: Mapping[str, str]) -> str:
    rows = []
    for exam in data.exams:
        a, x = exam.records.get("anonymize"), exam.records.get("extract")
        status = "failed" if exam.failed else "complete"
        counts = []
        if a is not None:
            counts.append(f"{a.counts.get('kept', 0)} kept, {a.counts.get('dropped', 0)} dropped")
        if x is not None:
            counts.append(
                f"{x.counts.get('converted', 0)} converted, {x.counts.get('excluded', 0)} excluded, "
                f"{x.counts.get('failed', 0)} failed" + (" (extract dry run: the plan)" if exam.planned else "")
            )
        rows.append(
            f'<tr><td><a href="#{anchors[exam.dicom_id]}">{_e(exam.dicom_id)}</a></td>'
            f'<td class="{status}">{status}</td><td>{_e("; ".join(counts))}</td></tr>'
        )
    return (
        '<section id="exams"><h2>Exams</h2><table><thead><tr><th>exam</th><th>status</th><th>series</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _exam_section(exam: ExamView, anchor: str, output_dir: Path) -> str:
    timing = ", ".join(
        f"{stage} {record.seconds:.1f} s" + ("" if record.complete else f" (failed: {record.error})")
        for stage, record in exam.records.items()
    )
    has_anonymize = "anonymize" in exam.records
    has_extract = "extract" in exam.records
    head = ["series", "description", "SeriesInstanceUID"]
    if has_anonymize:
        head += ["anonymize", "reason"]
    if has_extract:
        head += ["extract", "reason", "slices", "spacing (mm)", "tilt (°)", "kernel · contrast", "output"]
    rows = []
    for line in exam.lines:
        rows.append(_series_row(line, has_anonymize, has_extract, output_dir, exam.planned))
    table = (
        f"<table><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No series.</p>"
    )
    other = ""
    if exam.other_rows:
        items = "".join(
            f"<tr><td>{_e(stage)}</td><td><code>{_e(row.path)}</code></td>"
            f'<td class="{_e(row.decision)}">{_e(row.decision)}</td><td>{_e(row.reason)}</td></tr>'
            for stage, row in exam.other_rows
        )
        other = (
            "<h4>Files and exam-level outcomes</h4><table><thead><tr><th>stage</th><th>path</th>"
            f"<th>outcome</th><th>reason</th></tr></thead><tbody>{items}</tbody></table>"
        )
    figures = [
        _qc_figure(line, output_dir)
        for line in exam.lines
        if line.extract is not None and line.extract.decision == "converted" and not exam.planned
    ]
    gallery = f'<div class="gallery">{"".join(figures)}</div>' if figures else ""
    css = "exam bad" if exam.failed else "exam"
    plan = (
        '<p class="planned">Extract dry run: the decisions a real run would make, from the headers; '
        "no NIfTI was written (the output column names the planned files).</p>"
        if exam.planned
        else ""
    )
    return (
        f'<section class="{css}" id="{anchor}"><h3>{_e(exam.dicom_id)}</h3>'
        f'<p class="muted">{_e(timing)}</p>{plan}{table}{gallery}{other}</section>'
    )


def _series_row(
    line: SeriesLine, has_anonymize: bool, has_extract: bool, output_dir: Path, planned: bool = False
) -> str:
    anon, ext = line.anonymize, line.extract
    decision = _decision(ext)
    number = "" if line.number is None else line.number
    part = f" part {line.part}" if line.part else ""
    cells = [
        f'<td class="num">{_e(number)}{_e(part)}</td>',
        f"<td>{_e(line.description)}</td>",
        f'<td><span class="uid">{_e(line.uid)}</span></td>',
    ]
    if has_anonymize:
        anonymized = _decision(anon)
        flags = "".join(f' <span class="flag">{_e(f)}</span>' for f in (anon.flags if anon else "").split(";") if f)
        cells += [
            f'<td class="{_e(anonymized)}">{_e(anonymized or "—")}{flags}</td>',
            f"<td>{_e(anon.reason if anon else '')}</td>",
        ]
    if has_extract:
        spacing = ""
        if ext is not None and ext.spacing_median is not None:
            spacing = f"{ext.spacing_median:.3g}"
            smallest, largest = f"{ext.spacing_min:.3g}", f"{ext.spacing_max:.3g}"
            if smallest != largest:
                spacing += f" ({smallest}-{largest})"
        tilt = ext.tilt_deg if ext is not None else None
        output = ext.output_path if ext is not None else ""
        output_cell = f'<a href="{_href(output)}"><code>{_e(Path(output).name)}</code></a>' if output else ""
        shown = decision or "—"
        if planned and output:
            output_cell, shown = f"<code>{_e(Path(output).name)}</code> (planned)", f"{decision} (dry run)"
        cells += [
            f'<td class="{_e(decision)}">{_e(shown)}</td>',
            f"<td>{_e(ext.reason if ext else '')}</td>",
            f'<td class="num">{_e(ext.n_slices if ext else "")}</td>',
            f'<td class="num">{_e(spacing)}</td>',
            f'<td class="num">{"" if tilt is None else f"{tilt:.3g}"}</td>',
            f"<td>{_e(_kernel_contrast(ext))}</td>",
            f"<td>{output_cell}</td>",
        ]
    attributes = f' class="series outcome-{_e(decision or _decision(anon) or "none")}"'
    if decision == "converted" and not planned:
        attributes += f' data-output="{_e(output)}"'
    return f"<tr{attributes}>{''.join(cells)}</tr>"


def _kernel_contrast(row: ExtractRow | None) -> str:
    """'soft (H30s) · contrast: ContrastBolusAgent' for the exam table ('' without a kernel class)."""
    if row is None or not row.kernel_class:
        return ""
    kind, kernel = row.kernel_class, row.kernel
    contrast = row.contrast_evidence or "none"
    return f"{kind}{f' ({kernel})' if kernel else ''} · contrast: {contrast}"


def _qc_figure(line: SeriesLine, output_dir: Path) -> str:
    """A converted series' QC thumbnail, linked to the full picture, with its caption."""
    row = line.extract
    output, path = (row.output_path, row.qc_path) if row is not None else ("", "")
    caption = (
        f"<figcaption>{_e(_series_label(line))} · {_e(line.description)}<br>"
        f"<code>{_e(Path(output).name)}</code></figcaption>"
    )
    thumbnail = row.qc_thumbnail if row is not None else ""
    if not _DATA_URI.match(thumbnail):
        thumbnail = _thumbnail_from_png(output_dir / path) if path else ""
    if not thumbnail:
        return f'<figure data-output="{_e(output)}"><p class="failed">QC picture missing</p>{caption}</figure>'
    alt = f"QC picture of {_series_label(line)} ({line.description})"
    return (
        f'<figure data-output="{_e(output)}"><a href="{_href(path)}">'
        f'<img class="qc" src="{thumbnail}" alt="{_e(alt)}" loading="lazy"></a>{caption}</figure>'
    )


def _thumbnail_from_png(path: Path) -> str:
    """A thumbnail made from the QC picture on disk (records without one), or ''."""
    from PIL import Image, UnidentifiedImageError

    from orbitct_app import pictures

    try:
        with Image.open(path) as image:
            image.load()
            return pictures.thumbnail_data_uri(image)
    except (OSError, UnidentifiedImageError):
        return ""


def _href(relative: str) -> str:
    """A relative link to a file under OUTPUT_DIR (never an absolute or network address)."""
    return _e(urllib.parse.quote(Path(relative).as_posix()))


def _runs_section(runs: Sequence[Mapping[str, Any]]) -> str:
    if not runs:
        return '<section id="runs"><h2>Runs</h2><p>No run record.</p></section>'
    latest = runs[-1]
    history = "".join(
        f"<tr><td>{_e(r.get('started', ''))}</td><td><code>{_e(r.get('run_id', ''))}</code></td>"
        f"<td>{_e(r.get('options', {}).get('stage', ''))}</td>"
        f"<td class=\"num\">{_e(r.get('exams', {}).get('total', ''))}</td>"
        f"<td class=\"num\">{_e(r.get('exams', {}).get('processed', ''))}</td>"
        f"<td class=\"num\">{_e(r.get('exams', {}).get('resumed', ''))}</td>"
        f"<td class=\"num\">{_e(r.get('seconds', ''))}</td><td class=\"num\">{_e(r.get('exit_code', ''))}</td></tr>"
        for r in runs
    )
    options = _key_values(latest.get("options", {}))
    versions = _key_values(latest.get("versions", {}))
    timings = latest.get("timings", {})
    timing_rows = []
    for phase, seconds in timings.get("phases", {}).items():
        timing_rows.append(f'<tr><td>{_e(phase)}</td><td class="num">{_e(seconds)}</td><td></td></tr>')
    for stage, facts in timings.get("stages", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in facts.items() if k != "exam_seconds")
        timing_rows.append(
            f'<tr><td>{_e(stage)} (sum over exams)</td><td class="num">{_e(facts.get("exam_seconds", ""))}</td>'
            f"<td>{_e(detail)}</td></tr>"
        )
    container = latest.get("container")
    container_text = ", ".join(f"{k} {v}" for k, v in container.items()) if isinstance(container, dict) else "none"
    command = " ".join(latest.get("equivalent_command") or [])
    return (
        '<section id="runs"><h2>Runs</h2>'
        "<table><thead><tr><th>started (UTC)</th><th>run id</th><th>stage</th><th>exams</th><th>processed</th>"
        f"<th>resumed</th><th>seconds</th><th>exit code</th></tr></thead><tbody>{history}</tbody></table>"
        f"<h3>Last run: <code>{_e(latest.get('run_id', ''))}</code></h3>"
        f"<p>{_e(latest.get('started', ''))} to {_e(latest.get('finished', ''))} ({_e(latest.get('seconds', ''))} s); "
        f"container: {_e(container_text)}. The full record, with the command line, is "
        f"<code>logs/run-*-{_e(latest.get('run_id', ''))}.json</code>.</p>"
        f"<p>To repeat it:</p><pre>{_e(command)}</pre>"
        f"<h3>Timings (seconds)</h3><table><thead><tr><th>what</th><th>seconds</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(timing_rows)}</tbody></table>"
        f"<h3>Options</h3>{options}<h3>Versions</h3>{versions}</section>"
    )


def _key_values(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td><code>{_e(_plain(v))}</code></td></tr>" for k, v in values.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "—"
    if value is None:
        return "—"
    return str(value)

