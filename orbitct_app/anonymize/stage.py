"""The anonymize stage: drop short series, de-identify every kept file, write it atomically.

Per exam (a first-level folder of INPUT_DIR; its name ``dicom_id`` is the pseudonym):

1. :func:`~orbitct_app.discover.scan_exam` groups the DICOM files by SeriesInstanceUID and lists
   every other file with the reason it is skipped (non-DICOM, unreadable, truncated, DICOMDIR).
2. :func:`decide_series` drops a series without pixel data (structured reports, presentation
   states, key objects: free text the profile does not clean) and a series of ``--min-slices``
   instances or fewer (scouts and exam-summary screens, which often show the patient's name in
   their pixels). Kept series with BurnedInAnnotation YES, or that are secondary captures, are
   flagged in the report and logged as warnings; under the basic profile they are dropped unless
   ``--keep-burned-in`` is given.
3. :func:`~orbitct_app.deid.files.anonymize_file` reads each kept file once, applies the profile
   (:mod:`orbitct_app.deid`), records PatientIdentityRemoved / DeidentificationMethod (and, for
   the basic profile, DeidentificationMethodCodeSequence), rebuilds a consistent file meta and
   writes it. Pixel data and the transfer syntax are kept byte for byte (never decoded). The
   common case is done on the file's bytes (:mod:`orbitct_app.deid.raw`, the pixel data element
   copied raw); anything unusual goes through pydicom (the same bytes where both apply).
4. The audit (:mod:`orbitct_app.deid.audit`) checks each file's bytes as they are written, with
   a parser of its own, and :func:`~orbitct_app.deid.audit.audit_tree` adds what can only be
   checked once the exam is done (``deid_audit.csv``); under the basic profile the original UIDs
   and PatientIDs go to ``--map-dir`` (never OUTPUT_DIR).

With ``--dry-run`` no file is written: each kept file is de-identified in memory and the rules
applied are counted per series (``anonymize_dry_run.csv``).

Output goes to ``OUTPUT_DIR/anonymized/<dicom_id>/<relative path>``, assembled in a staged
folder that replaces the final one as a whole. With ``--in-place`` every kept file is replaced
atomically (temporary file beside it, fsync, rename), the files of dropped series and DICOMDIR /
media index files are deleted, and other files are left alone.

Nothing identifying reaches a log line, an exception message or a report: series are named by
number and UID (the new UID when the profile remaps UIDs), files by their path relative to the
exam, errors by their type.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from orbitct_app import atomic
from orbitct_app.deid import (
    Profile,
    apply_profile,
    audit,
    check_pseudonym,
    get_profile,
    keys,
    mapping,
)
from orbitct_app.deid.apply import PRIVATE_RULE
from orbitct_app.deid.files import (
    Secrets,
    anonymize_file,
    copy_unchanged,
    dry_file,
    method_values,
    replace_in_place,
    safe_reason,
)
from orbitct_app.dicomio.structure import Layout
from orbitct_app.discover import Exam, SeriesInfo, SkippedFile, SliceInfo, read_slice_info, scan_exam
from orbitct_app.errors import ExamError, OrbitctError, SkipKind, UsageError, resource_error
from orbitct_app.options import Options
from orbitct_app.paths import iter_exam_files
from orbitct_app.report.records import ExamRecord, read_record
from orbitct_app.report.tables import (
    ANONYMIZE_REPORT,
    DEID_AUDIT,
    DRY_RUN,
    NOT_DEIDENTIFIED,
    AnonymizeRow,
    AuditRow,
    DryRunRow,
    Row,
)

logger = logging.getLogger(__name__)

NAME = "anonymize"

LEFT_IDENTIFIED = "NOT de-identified: left in place unchanged, it may hold identifying values"
"""What an ``--in-place`` row says of a file left as it was (flagged :data:`NOT_DEIDENTIFIED`)."""
FLAG_BURNED_IN = "burned_in_annotation"
FLAG_SECONDARY_CAPTURE = "secondary_capture"
FLAG_PIXEL_TEXT = "pixel_text"
"""``--pixel-text``: the OCR engine read text burned into the series' pixels."""
FLAG_PIXEL_TEXT_UNCHECKED = "pixel_text_unchecked"
"""``--pixel-text``: some frames could not be decoded, so they were not checked for text."""

@dataclasses.dataclass(frozen=True)
class SeriesDecision:
    """Whether a series is kept, why, and what a reviewer should look at."""

    keep: bool
    reason: str
    flags: tuple[str, ...] = ()


def fingerprint(options: Options) -> dict[str, Any]:
    """The options whose change makes a completed exam out of date.

    For the basic profile: its options, the key's fingerprint (never the key) and the mapping
    folder. The phi list and a dry run are included only when given, so the orbitct fingerprint
    is unchanged.
    """
    result: dict[str, Any] = {
        "min_slices": options.min_slices, "profile": options.profile, "in_place": options.in_place,
        "pixel_text": options.pixel_text,
    }
    profile = profile_for(options)
    if profile.needs_key:
        result["options"] = list(profile.options)
        result["keep_burned_in"] = options.keep_burned_in
        result["key"] = keys.key_fingerprint(keys.load_key(options.deid_key)) if options.deid_key else ""
        if options.map_dir is not None:  # an exam done without it has no mapping fragment there
            result["map_dir"] = str(options.map_dir)
    if options.phi_list is not None:
        result["phi_list"] = audit.phi_list_digest(options.phi_list)
    if options.dry_run:
        result["dry_run"] = True
    return result


def source(options: Options) -> Path:
    """Anonymize reads INPUT_DIR."""
    return options.input_dir


def prepare(options: Options) -> None:
    """Create the basic profile's key file when it does not exist yet; log its fingerprint.

    Done once before any exam runs, so every worker reads the same key (SLURM tasks starting
    together also end up with one key: see :func:`keys.ensure_key`).
    """
    if options.deid_key is None or options.audit_only:
        return
    key, created = keys.ensure_key(options.deid_key)
    if created:
        logger.warning(
            "created a new de-identification key in %s: keep it secret and reuse it for every run "
            "of this dataset (the same key gives the same UIDs)",
            options.deid_key,
        )
    logger.info("de-identification key %s (fingerprint %s)", options.deid_key, keys.key_fingerprint(key))


def finish(options: Options) -> None:
    """Rebuild the mapping files for the data owner (``--map-dir``) from every exam's fragment."""
    if options.map_dir is None or options.dry_run:
        return
    maps = mapping.merge_maps(options.map_dir)
    if maps:
        logger.info("mapping files for the data owner: %s", ", ".join(str(p) for p in maps.values()))


def log_filters(options: Options) -> list[logging.Filter]:
    """Under the basic profile, UID-like tokens of log lines (file names of PACS exports, for
    instance) are written as the new UIDs the output has."""
    if options.profile != "basic" or options.deid_key is None:
        return []
    return [NewUidsInLogs(options.deid_key)]


class NewUidsInLogs(logging.Filter):
    """Rewrite UID-like tokens of a record's message as the new UIDs the basic profile gives them
    (once the key file exists: the run creates it before its first exam)."""

    def __init__(self, key_path: Path) -> None:
        super().__init__()
        self.key_path = key_path
        self.uids: keys.UidMap | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.uids is None and self.key_path.is_file():
            with contextlib.suppress(UsageError):
                self.uids = keys.UidMap(keys.load_key(self.key_path))
        message = record.getMessage()
        redacted = keys.remap_uid_tokens(message, self.uids)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def output_folder(dicom_id: str, options: Options) -> Path | None:
    """The exam's de-identified folder in OUTPUT_DIR (None when the run writes none there)."""
    if options.in_place or options.dry_run or options.audit_only:
        return None
    return options.anonymized_dir / dicom_id


def modifies_source(options: Options) -> bool:
    """Whether the stage changes the exam folder it reads (``--in-place``)."""
    return options.in_place and not options.dry_run and not options.audit_only


def stale_reason(record: ExamRecord, exam_dir: Path, options: Options) -> str:
    """Under ``--in-place``: why the exam folder no longer holds what this stage made of it
    ('' when it does): a DICOM file in it lacks this run's de-identification mark (the
    profile's DeidentificationMethod, and with a key the key mark), as after a backup of the
    original files was restored over it."""
    if not modifies_source(options):
        return ""
    profile = profile_for(options)
    key = keys.load_key(options.deid_key) if profile.needs_key and options.deid_key else None
    expected = method_values(profile, Secrets(key=key), exam_dir.name)
    for path in iter_exam_files(exam_dir):
        if isinstance(path, Path):
            try:
                info = read_slice_info(path)
            except OrbitctError:
                continue  # not DICOM, or a problem file: its failure already makes the exam redone
            if info.patient_identity_removed != "YES" or not set(expected) <= set(info.deidentification_method):
                return f"{path.relative_to(exam_dir)} is not de-identified (restored from a backup?)"
    return ""


def profile_for(options: Options) -> Profile:
    """The profile of a run, with its options."""
    return get_profile(options.profile, options.retain, options.shift_dates)


def failure_rows(dicom_id: str, reason: str) -> dict[str, list[Row]]:
    """The report row of an exam that failed as a whole."""
    return {ANONYMIZE_REPORT.name: [AnonymizeRow(dicom_id=dicom_id, decision="failed", reason=reason)]}


def summarize(record: ExamRecord) -> str:
    """One line for the progress log."""
    c = record.counts
    text = f"{c.get('kept', 0)} series kept, {c.get('dropped', 0)} dropped, {c.get('files', 0)} files"
    if c.get("skipped", 0):
        text += f", {c['skipped']} skipped"
    if c.get("deleted", 0):
        text += f", {c['deleted']} deleted"
    if c.get("failed", 0):
        text += f", {c['failed']} FAILED"
    return text


def decide_series(series: SeriesInfo, min_slices: int, *, drop_burned_in: bool = False) -> SeriesDecision:
    """Keep or drop one series (the stage's only selection rules).

    Parameters
    ----------
    series
        The series as discovered.
    min_slices
        A series of this many instances (frames count one each) or fewer is dropped.
    drop_burned_in
        Drop a series with BurnedInAnnotation YES, or a secondary capture (the basic profile
        without ``--keep-burned-in``): its pixels may show identifying text no header rule
        removes.
    """
    if not series.has_pixel_data:
        without = sum(not s.has_pixel_data for s in series.slices)
        return SeriesDecision(
            False,
            f"no pixel data in {without} of {series.n_files} file(s) (structured report, "
            "presentation state or key object: free text the profile does not clean)",
        )
    n = series.n_instances
    if n <= min_slices:
        return SeriesDecision(
            False, f"{n} instance(s) <= --min-slices {min_slices} (scout or summary screen)"
        )
    flags = []
    if series.burned_in_annotation:
        flags.append(FLAG_BURNED_IN)
    if series.is_secondary_capture:
        flags.append(FLAG_SECONDARY_CAPTURE)
    if flags and drop_burned_in:
        what = " and ".join(
            text for flag, text in ((FLAG_BURNED_IN, "BurnedInAnnotation YES"),
                                    (FLAG_SECONDARY_CAPTURE, "secondary capture")) if flag in flags
        )
        return SeriesDecision(
            False, f"{what}: its pixels may show identifying text; dropped under the basic "
            "profile (--keep-burned-in keeps it)", tuple(flags)
        )
    return SeriesDecision(True, f"{n} instances > --min-slices {min_slices}", tuple(flags))


def decide_pixel_text(decision: SeriesDecision, check: Any, mode: str) -> SeriesDecision:
    """A kept series' decision once its pixels were checked for text (``--pixel-text``).

    ``check`` is the :class:`~orbitct_app.anonymize.pixel_text.SeriesCheck` of the series. Text found: the
    series is flagged (``flag``) or dropped (``drop``). Frames that could not be decoded: flagged
    as unchecked, or dropped under ``drop`` (what cannot be checked is not passed on).
    """
    if check.finding is not None:
        flag, what = FLAG_PIXEL_TEXT, "text burned into its pixels"
    elif not check.complete:
        flag, what = FLAG_PIXEL_TEXT_UNCHECKED, "pixels that could not be checked for text"
    else:
        return decision
    flags = (*decision.flags, flag)
    if mode == "drop":
        return SeriesDecision(False, f"{what} ({check.result()}); dropped by --pixel-text drop", flags)
    return SeriesDecision(decision.keep, decision.reason, flags)


def run_exam(exam_dir: Path, options: Options) -> ExamRecord:
    """Anonymize one exam; a file's failure is recorded and the exam goes on.

    Raises
    ------
    ProfileError
        If the profile is not built yet (the exam is recorded as failed).
    DeidError
        If the exam folder name cannot serve as the pseudonym.
    ResourceError
        If the output cannot be written for lack of room (full disk, quota): the exam fails as a
        whole, its staged folder discarded (under ``--in-place`` the files already replaced stay,
        each whole, and the rest is left as it was).
    """
    profile = profile_for(options)
    pseudonym = check_pseudonym(exam_dir.name)
    if options.audit_only:
        return audit_only_exam(exam_dir, options, profile)
    key = keys.load_key(options.deid_key) if profile.needs_key and options.deid_key else None
    secrets = Secrets.for_profile(profile, key)
    started = time.monotonic()
    if options.in_place:
        stale = atomic.remove_stale_tree(exam_dir)
        if stale:
            logger.info("%s: removed %d temporary file(s) left by an interrupted run", exam_dir.name, stale)
    exam = scan_exam(exam_dir)
    work = _ExamWork(exam, profile, pseudonym, options, secrets)
    if not exam.series:
        raise ExamError(f"no DICOM image files in the exam folder ({len(exam.skipped)} other file(s))",
                        rows={ANONYMIZE_REPORT.name: work.unusable_rows()})
    if options.dry_run:
        work.run_dry()
    elif options.in_place:
        work.run_in_place()
    else:
        work.run_staged(options.anonymized_dir)
    audit_rows: list[Row] = []
    if not options.dry_run:
        originals = set(secrets.uids.mapped) if secrets.uids is not None else set()
        audit_rows = run_audit(options.anonymized_dir / exam.dicom_id, exam.dicom_id, options, profile,
                               pseudonym, originals, work.written)
        work.counts["audit_findings"] = len(audit_rows)
        if options.map_dir is not None and secrets.uids is not None:
            mapping.write_exam_maps(options.map_dir, exam.dicom_id, secrets.uids.mapped,
                                    secrets.patient_ids, keep_earlier=options.in_place)
    seconds = time.monotonic() - started
    files = work.counts["files"]
    logger.info(
        "%s: wrote %d file(s) in %.2f s (%.0f files/s)",
        exam.dicom_id,
        files,
        seconds,
        files / seconds if seconds > 0 else 0.0,
    )
    names = ("kept", "dropped", "skipped", "failed", "files", "deleted")
    counts = {name: work.counts[name] for name in names}
    counts["produced"] = counts["kept"]
    if work.counts["audit_findings"]:
        counts["audit_findings"] = work.counts["audit_findings"]
    rows = {ANONYMIZE_REPORT.name: work.rows, DEID_AUDIT.name: audit_rows}
    if options.dry_run:
        rows[DRY_RUN.name] = work.dry_rows
    return ExamRecord(
        dicom_id=exam.dicom_id,
        stage=NAME,
        status="complete",
        fingerprint={},
        rows=rows,
        counts=counts,
    )


def run_audit(
    exam_out: Path, dicom_id: str, options: Options, profile: Profile, pseudonym: str, originals: set[str],
    written: Mapping[str, audit.Written] | None = None,
) -> list[Row]:
    """Audit one exam's de-identified folder; log and return the findings as report rows.

    ``originals`` are the UIDs the profile replaced (none under orbitct, which keeps UIDs);
    ``written`` what the audit found in the bytes of the files this run wrote (see
    :func:`audit.audit_tree`): every other file of the folder is read from disk.
    """
    findings = audit.audit_tree(
        exam_out, profile, pseudonym=pseudonym, original_uids=originals, phi_strings=_phi(options),
        written=written,
    )
    rows: list[Row] = [AuditRow(dicom_id=dicom_id, **f.row()) for f in findings]
    if findings:
        logger.error(
            "%s: the de-identification audit found %d problem(s) in the output; see deid_audit.csv",
            dicom_id,
            len(findings),
        )
    else:
        logger.info("%s: de-identification audit: no finding", dicom_id)
    return rows


def _phi(options: Options) -> audit.PhiList:
    return audit.read_phi_list(options.phi_list) if options.phi_list is not None else audit.PhiList(())


def audit_only_exam(exam_dir: Path, options: Options, profile: Profile) -> ExamRecord:
    """``--audit-only``: audit an exam anonymized earlier; original UIDs are re-read from INPUT_DIR.

    The exam's stored anonymize record keeps its rows; its audit rows and count are replaced.
    """

    dicom_id = exam_dir.name
    out = options.anonymized_dir / dicom_id
    if not out.is_dir():
        raise ExamError("no de-identified folder to audit (run anonymize first)")
    originals = audit.original_uids(exam_dir) if profile.needs_key else set()
    rows = run_audit(out, dicom_id, options, profile, dicom_id, originals)
    record = read_record(options.state_dir, NAME, dicom_id)
    if record is None:
        record = ExamRecord(dicom_id=dicom_id, stage=NAME, status="complete", fingerprint={}, rows={})
    record.rows[DEID_AUDIT.name] = rows
    record.counts["audit_findings"] = len(rows)
    return record


class _ExamWork:
    """The rows and counts of one exam while its files are processed."""

    def __init__(
        self, exam: Exam, profile: Profile, pseudonym: str, options: Options, secrets: Secrets
    ) -> None:
        self.exam = exam
        self.profile = profile
        self.pseudonym = pseudonym
        self.options = options
        self.secrets = secrets
        self.rows: list[Row] = []
        self.dry_rows: list[Row] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.mark = keys.deid_mark(secrets.key, pseudonym) if secrets.key is not None else None
        self._public: dict[str, AnonymizeRow] = {}
        """The public cells of each series (its row with no decision yet), by key."""
        drop = profile.needs_key and not options.keep_burned_in
        self.decisions = [
            (s, decide_series(s, options.min_slices, drop_burned_in=drop)) for s in self._merged_series()
        ]
        self.phi = _phi(options)
        self.written: dict[str, audit.Written] = {}
        """The audit of each file written, by its path relative to the exam's output folder."""
        self._journaled: set[tuple[str, str]] = set()
        """Mapping entries already in this exam's journal (``--in-place --map-dir``)."""
        self.pixel_checks: dict[str, Any] = {}
        """``--pixel-text``: the check of each kept series (:class:`pixel_text.SeriesCheck`), by key."""
        if options.checks_pixel_text:
            self.decisions = [(s, self._check_pixels(s, d)) for s, d in self.decisions]

    def prior(self, info: SliceInfo) -> str:
        """Whether this app already de-identified a file with a key: ``ours`` (this key, this
        exam: a rerun leaves it as it is), ``other`` (another key or exam: never touched again),
        or '' (not marked)."""
        marks = [v for v in info.deidentification_method if v.startswith(keys.KEY_MARK)]
        if not marks or self.mark is None:
            return ""
        return "ours" if self.mark in marks and info.patient_identity_removed == "YES" else "other"

    def _merged_series(self) -> list[SeriesInfo]:
        """The exam's series, with the files this key already de-identified (an interrupted
        ``--in-place`` run) put back with the rest of their series: their SeriesInstanceUID is
        the new UID of the others', so discovery sees two series where there is one."""
        series = list(self.exam.series)
        if self.secrets.key is None:
            return series
        by_key = {s.key: s for s in series}
        for done in [s for s in series if s.slices and all(self.prior(i) == "ours" for i in s.slices)]:
            self._public[done.key] = AnonymizeRow(  # already de-identified: its values are the public ones
                dicom_id=done.dicom_id, series_instance_uid=done.series_uid,
                series_number=done.series_number, series_description=done.description,
                modality=done.modality, decision="",
            )
            for original in series:
                if original is not done and original.series_uid and original.key in by_key and \
                        keys.new_uid(self.secrets.key, original.series_uid) == done.series_uid:
                    by_key[original.key] = dataclasses.replace(original, slices=original.slices + done.slices)
                    del by_key[done.key]
                    break
        return list(by_key.values())

    def public_cells(self, series: SeriesInfo) -> AnonymizeRow:
        """The series' report cells as they are written: through the profile (new UID, no
        description under the basic profile), never the original values the profile replaces
        (a row with no decision yet: :func:`dataclasses.replace` gives it one)."""
        if series.key not in self._public:
            ds = Dataset()
            ds.SeriesInstanceUID = series.series_uid
            ds.SeriesDescription = series.description
            ds.Modality = series.modality
            apply_profile(ds, self.profile, pseudonym=self.pseudonym, uids=self.secrets.uids, date_offset=0)
            self._public[series.key] = AnonymizeRow(
                dicom_id=series.dicom_id,
                series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
                series_number=series.series_number,
                series_description=str(ds.get("SeriesDescription", "") or ""),
                modality=str(ds.get("Modality", "") or ""),
                decision="",
            )
        return self._public[series.key]

    def public_rel(self, rel: Path) -> Path:
        """``rel`` with every UID-like token of its folder and file names remapped, when the
        profile remaps UIDs (PACS exports often name files by SOPInstanceUID)."""
        if self.secrets.uids is None:
            return rel
        return Path(*(keys.remap_uid_tokens(part, self.secrets.uids) for part in rel.parts))

    def label(self, series: SeriesInfo) -> str:
        number = series.series_number if series.series_number is not None else "?"
        uid = self.public_cells(series).series_instance_uid if series.series_uid else ""
        if not uid and self.profile.needs_key:
            return f"series {number}"
        return f"series {number} ({uid or series.key})"

    # --- the two ways of writing ------------------------------------------------------------

    def run_staged(self, root: Path) -> None:
        """Write the kept files to ``root/<dicom_id>`` through a staged folder."""
        final = root / self.exam.dicom_id
        atomic.remove_stale(root, self.exam.dicom_id)
        made: set[Path] = set()
        with atomic.staged_directory(final) as staging:

            def one(series: SeriesInfo, info: SliceInfo, rel: Path, prior: str) -> None:
                if prior == "other":
                    self._marked_elsewhere(series, rel, "not copied")
                    return
                target = staging / rel
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                work = copy_unchanged if prior == "ours" else anonymize_file
                self._one_file(series, rel, work, info.path, target, audit_rel=str(rel), layout=info.layout)

            self._each_file("staged", one)

    def run_dry(self) -> None:
        """De-identify every kept file in memory and count the rules per series; write nothing."""
        rules: collections.Counter[tuple[int, str]] = collections.Counter()

        def one(series: SeriesInfo, info: SliceInfo, rel: Path, prior: str) -> None:
            if prior == "other":
                self._marked_elsewhere(series, rel, "would not be copied")
            elif not prior:
                self._one_file(series, rel, dry_file, info.path, rules, layout=info.layout)

        def counted(series: SeriesInfo) -> None:
            cells = self.public_cells(series)
            for (tag, action), count in sorted(rules.items()):
                self.dry_rows.append(
                    DryRunRow(
                        dicom_id=cells.dicom_id,
                        series_instance_uid=cells.series_instance_uid,
                        series_number=cells.series_number,
                        tag="private" if tag == PRIVATE_RULE else f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                        keyword="" if tag == PRIVATE_RULE else pydicom.datadict.keyword_for_tag(tag),
                        action=action,
                        count=count,
                    )
                )
            rules.clear()

        self._each_file("dry", one, series_done=counted)

    def run_in_place(self) -> None:
        """Replace kept files atomically; delete dropped series and media index files."""

        def one(series: SeriesInfo, info: SliceInfo, rel: Path, prior: str) -> None:
            if prior == "ours":  # done by an interrupted run: never mapped twice
                self.counts["unchanged"] += 1
            elif prior == "other":
                self._marked_elsewhere(series, rel, "left unchanged")
            else:
                self._one_file(series, rel, self._replace_in_place, info.path,
                               audit_rel=str(info.path.relative_to(self.exam.path)), layout=info.layout)

        def dropped(info: SliceInfo, rel: Path) -> None:
            self._delete(rel, info.path, None)

        self._each_file("in_place", one, dropped=dropped)

    def _each_file(
        self,
        mode: str,
        one: Callable[[SeriesInfo, SliceInfo, Path, str], None],
        *,
        dropped: Callable[[SliceInfo, Path], None] | None = None,
        series_done: Callable[[SeriesInfo], None] | None = None,
    ) -> None:
        """The walk the three ways of writing share: each series gets its row; each file of a
        kept series goes to ``one`` with its public path relative to the exam (see
        :meth:`public_rel`) and its earlier mark (see :meth:`prior`), then ``series_done`` runs;
        each file of a dropped series goes to ``dropped`` (when given); last, the files that are
        not de-identified (:meth:`_skipped_files`, in ``mode``)."""
        for series, decision in self.decisions:
            self._series_row(series, decision)
            if not decision.keep:
                if dropped is not None:
                    for info in series.slices:
                        dropped(info, self.public_rel(info.path.relative_to(self.exam.path)))
                continue
            for info in series.slices:
                one(series, info, self.public_rel(info.path.relative_to(self.exam.path)), self.prior(info))
            if series_done is not None:
                series_done(series)
        self._skipped_files(mode)

    # --- pieces ---------------------------------------------------------------------------

    def _replace_in_place(self, path: Path, *args: Any, layout: Layout | None = None) -> None:
        """Replace one file in place; with ``--map-dir`` its new mappings are journaled before
        the file is replaced, so an interrupted run never loses the link to an original."""
        journal = None
        if self.options.map_dir is not None and self.secrets.uids is not None:
            journal = functools.partial(mapping.journal_exam_maps, self.options.map_dir, self.exam.dicom_id,
                                        self.secrets.uids.mapped, self.secrets.patient_ids, self._journaled)
        replace_in_place(path, *args, before_replace=journal, layout=layout)

    def _marked_elsewhere(self, series: SeriesInfo, rel: Path, consequence: str) -> None:
        """A file orbitct-app de-identified with another key or for another exam: untouched."""
        self.counts["failed"] += 1
        reason = f"already de-identified by orbitct-app with another key or for another exam; {consequence}"
        self.rows.append(
            dataclasses.replace(self.public_cells(series), path=str(rel), decision="failed", reason=reason)
        )
        logger.error("%s: %s: %s", self.exam.dicom_id, rel, reason)

    def unusable_rows(self) -> list[Row]:
        """One row per file of an exam that fails as a whole (it holds no DICOM image): each
        file with its own reason. Nothing is copied, deleted or changed."""
        rows: list[Row] = []
        for skipped in self.exam.skipped:
            rel = self.public_rel(skipped.path)
            if skipped.is_problem:
                in_place = modifies_source(self.options)
                consequence = LEFT_IDENTIFIED if in_place else "not copied"
                rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="failed",
                                         reason=f"{skipped.reason}; {consequence}",
                                         flags=NOT_DEIDENTIFIED if in_place else ""))
                logger.error("%s: %s: %s; %s", self.exam.dicom_id, rel, skipped.reason, consequence)
            else:
                rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="skipped",
                                         reason=skipped.reason))
        return rows

    def _skipped_files(self, mode: str) -> None:
        """Rows (and, in place, deletions) for the files that are not de-identified.

        ``mode`` is how the exam is written: ``staged``, ``dry`` or ``in_place``. A problem file
        (damaged, unreadable, a link ...) is never deleted: in place it stays unchanged and is
        reported as not de-identified. Media index files and non-image objects are never
        copied, and deleted in place (they may name the patient in free text).
        """
        for skipped in self.exam.skipped:
            if skipped.is_problem:
                self._problem_row(skipped, {
                    "staged": "not copied", "dry": "would not be copied",
                    "in_place": LEFT_IDENTIFIED,
                }[mode], identified=mode == "in_place")
            elif mode == "in_place" and skipped.kind in (SkipKind.MEDIA_INDEX, SkipKind.NON_IMAGE):
                self._delete(self.public_rel(skipped.path), self.exam.path / skipped.path, skipped.reason)
            elif skipped.kind is SkipKind.NON_IMAGE:
                self._skipped_row(skipped, "dropped", f"{skipped.reason}; not copied")
            else:
                self._skipped_row(skipped, "skipped", f"{skipped.reason}; left alone" if mode == "in_place"
                                  else skipped.reason)

    def _one_file(self, series: SeriesInfo, rel: Path, work: Callable[..., Any], *paths: Any,
                  audit_rel: str | None = None, layout: Layout | None = None) -> None:
        """Run ``work`` on one file; with ``audit_rel``, audit the bytes it wrote (by that path
        relative to the exam's output folder) as soon as the file is complete (before it is
        moved into place), and keep that audit once ``work`` succeeded.

        Raises
        ------
        ResourceError
            When the output cannot be written for lack of room (a full disk): that fails the
            whole exam, never one file (its staged folder is then discarded).
        """
        audited: list[audit.Written] = []

        def written(parts: tuple[bytes | audit.FileRegion, ...]) -> None:
            if audit_rel is None:
                return
            try:
                audited.append(audit.audit_written(parts, audit_rel, self.profile, self.pseudonym, self.phi))
            except Exception as err:  # noqa: BLE001 - the file is then audited from disk
                logger.debug("%s: %s: audit of the written bytes failed (%s)", self.exam.dicom_id, rel,
                             type(err).__name__)

        try:
            work(*paths, self.profile, self.pseudonym, self.secrets, written, layout=layout)
        except Exception as err:  # noqa: BLE001 - one file's failure must not stop the exam
            if (resource := resource_error(err)) is not None:
                raise resource from None
            reason = safe_reason(err)
            self.counts["failed"] += 1
            flags = ""
            if modifies_source(self.options):  # a file is replaced only once its copy is whole
                reason, flags = f"{reason}; {LEFT_IDENTIFIED}", NOT_DEIDENTIFIED
            self.rows.append(dataclasses.replace(self.public_cells(series), path=str(rel), decision="failed",
                                                 reason=reason, flags=flags))
            logger.error("%s: %s: de-identification failed: %s", self.exam.dicom_id, rel, reason)
        else:
            self.counts["files"] += 1
            if audit_rel is not None and audited:
                self.written[audit_rel] = audited[-1]

    def _delete(self, rel: Path, path: Path, reason: str | None) -> None:
        """Delete a file in place; ``reason`` is given for a media index file (it gets a row)."""
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as err:
            self.counts["failed"] += 1
            why = f"cannot delete ({err.strerror or type(err).__name__}); {LEFT_IDENTIFIED}"
            self.rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="failed", reason=why,
                                          flags=NOT_DEIDENTIFIED))
            logger.error("%s: %s: %s", self.exam.dicom_id, rel, why)
            return
        self.counts["deleted"] += 1
        if reason is not None:  # a media index file (dropped series are reported per series)
            self.counts["skipped"] += 1
            self.rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="deleted",
                                          reason=reason))
            logger.info("%s: deleted %s (%s)", self.exam.dicom_id, rel, reason)
        else:
            logger.debug("%s: deleted %s (dropped series)", self.exam.dicom_id, rel)

    def _check_pixels(self, series: SeriesInfo, decision: SeriesDecision) -> SeriesDecision:
        """``--pixel-text``: look for text in the pixels of a kept series (see :mod:`pixel_text`)."""
        if not decision.keep:
            return decision
        from orbitct_app.anonymize import pixel_text  # numpy and the decoders: only when the check runs

        started = time.monotonic()
        # overlay planes only where the profile keeps them (basic removes the groups 60xx)
        check = pixel_text.check_series(series, overlays=not self.profile.removes_group(0x6000))
        self.pixel_checks[series.key] = check
        logger.debug("%s: %s: pixel text check in %.3f s: %s", self.exam.dicom_id, self.label(series),
                     time.monotonic() - started, check.summary())
        if check.finding is not None or not check.complete:
            logger.warning("%s: %s: %s", self.exam.dicom_id, self.label(series), check.summary())
        return decide_pixel_text(decision, check, self.options.pixel_text)

    def _series_row(self, series: SeriesInfo, decision: SeriesDecision) -> None:
        action = "kept" if decision.keep else "dropped"
        self.counts[action] += 1
        reason = decision.reason
        if not decision.keep and self.options.in_place:
            reason += "; files deleted"
        self.rows.append(
            self._pixel_cells(series, dataclasses.replace(
                self.public_cells(series), n_files=series.n_files, decision=action, reason=reason,
                flags=";".join(decision.flags),
            ))
        )
        label = self.label(series)
        if decision.flags and decision.keep:
            logger.warning(
                "%s: %s kept but flagged %s: its pixels may show identifying text; review it",
                self.exam.dicom_id,
                label,
                ", ".join(decision.flags),
            )
        logger.info("%s: %s %s: %s", self.exam.dicom_id, label, action, reason)

    def _pixel_cells(self, series: SeriesInfo, row: AnonymizeRow) -> AnonymizeRow:
        """``row`` with the cells of the pixel text check (unchanged when the series was not
        checked); the thumbnail is kept in the record for report.html, not written to the CSV."""
        check = self.pixel_checks.get(series.key)
        if check is None:
            return row
        thumbnail = check.finding.thumbnail if check.finding is not None else ""
        return dataclasses.replace(row, pixel_text=check.result(), frames_checked=check.frames_text(),
                                   pixel_text_thumbnail=thumbnail or "")

    def _problem_row(self, skipped: SkippedFile, consequence: str, *, identified: bool) -> None:
        """A file that should have been usable DICOM: a failure of this exam (``identified``: left
        in INPUT_DIR as it was)."""
        self.counts["failed"] += 1
        self._skipped_row(skipped, "failed", f"{skipped.reason}; {consequence}",
                          flags=NOT_DEIDENTIFIED if identified else "")
        logger.error("%s: %s: %s; %s", self.exam.dicom_id, self.public_rel(skipped.path), skipped.reason,
                     consequence)

    def _skipped_row(self, skipped: SkippedFile, decision: str, reason: str, flags: str = "") -> None:
        if decision in ("skipped", "dropped"):
            self.counts["skipped"] += 1
        self.rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(self.public_rel(skipped.path)),
                                      decision=decision, reason=reason, flags=flags))


__all__ = [
    "decide_pixel_text",
    "decide_series",
    "failure_rows",
    "fingerprint",
    "finish",
    "FLAG_PIXEL_TEXT",
    "FLAG_PIXEL_TEXT_UNCHECKED",
    "log_filters",
    "modifies_source",
    "NAME",
    "NewUidsInLogs",
    "output_folder",
    "prepare",
    "profile_for",
    "run_exam",
    "SeriesDecision",
    "source",
    "stale_reason",
    "summarize",
]
