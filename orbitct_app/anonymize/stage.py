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
3. :func:`anonymize_file` reads each kept file once, applies the profile
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
import io
import logging
import mmap
import os
import struct
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from orbitct_app import __version__, atomic, dicom_bytes
from orbitct_app.chunks import Piece, Span, read_exactly, write_pieces
from orbitct_app.deid import (
    DeidStats,
    Profile,
    apply_profile,
    audit,
    check_pseudonym,
    get_profile,
    keys,
    mapping,
    mark_deidentified,
    raw,
)
from orbitct_app.deid.apply import PRIVATE_RULE
from orbitct_app.discover import Exam, SeriesInfo, SkippedFile, SliceInfo, read_slice_info, scan_exam
from orbitct_app.errors import DeidError, ExamError, OrbitctError, SkipKind, UsageError, resource_error
from orbitct_app.options import Options
from orbitct_app.paths import iter_exam_files, open_regular
from orbitct_app.report.records import ExamRecord, read_record
from orbitct_app.report.tables import ANONYMIZE_REPORT, DEID_AUDIT, DRY_RUN, AnonymizeRow, AuditRow, DryRunRow, Row

logger = logging.getLogger(__name__)

NAME = "anonymize"

IMPLEMENTATION_VERSION_NAME = f"ORBITCT_{__version__}"[:16]
"""ImplementationVersionName of the files written (SH, at most 16 characters)."""

FLAG_BURNED_IN = "burned_in_annotation"
FLAG_SECONDARY_CAPTURE = "secondary_capture"
FLAG_PIXEL_TEXT = "pixel_text"
"""``--pixel-text``: the OCR engine read text burned into the series' pixels."""
FLAG_PIXEL_TEXT_UNCHECKED = "pixel_text_unchecked"
"""``--pixel-text``: some frames could not be decoded, so they were not checked for text."""

@dataclasses.dataclass
class Secrets:
    """What de-identifying one exam must remember but never write into OUTPUT_DIR.

    The key, the original UIDs and PatientIDs seen (for the mapping files and the audit) and
    the per-patient date offsets. Held in memory only while the exam is processed.
    """

    key: bytes | None = None
    uids: keys.UidMap | None = None
    patient_ids: set[str] = dataclasses.field(default_factory=set)
    _offsets: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: Profile, key: bytes | None) -> Secrets:
        """Secrets for ``profile``; a key is needed when the profile remaps UIDs or shifts dates.

        Raises
        ------
        DeidError
            If the profile needs a key and none is given.
        """
        if not profile.needs_key:
            return cls()
        if key is None:
            raise DeidError(f"the {profile.name} profile needs a de-identification key (--deid-key)")
        return cls(key=key, uids=keys.UidMap(key))

    def date_offset(self, patient_id: str, pseudonym: str) -> int | None:
        """The date offset of a patient (by original PatientID, else the exam's pseudonym)."""
        if self.key is None:
            return None
        patient = patient_id or f"exam:{pseudonym}"
        if patient not in self._offsets:
            self._offsets[patient] = keys.date_offset_days(self.key, patient)
        return self._offsets[patient]


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
            for series, decision in self.decisions:
                self._series_row(series, decision)
                if not decision.keep:
                    continue
                for info in series.slices:
                    rel = self.public_rel(info.path.relative_to(self.exam.path))
                    prior = self.prior(info)
                    if prior == "other":
                        self._marked_elsewhere(series, rel, "not copied")
                        continue
                    target = staging / rel
                    if target.parent not in made:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        made.add(target.parent)
                    work = copy_unchanged if prior == "ours" else anonymize_file
                    self._one_file(series, rel, work, info.path, target, audit_rel=str(rel), layout=info.layout)
            self._skipped_files("staged")

    def run_dry(self) -> None:
        """De-identify every kept file in memory and count the rules per series; write nothing."""
        for series, decision in self.decisions:
            self._series_row(series, decision)
            if not decision.keep:
                continue
            rules: collections.Counter[tuple[int, str]] = collections.Counter()
            for info in series.slices:
                rel = self.public_rel(info.path.relative_to(self.exam.path))
                if self.prior(info) == "other":
                    self._marked_elsewhere(series, rel, "would not be copied")
                elif not self.prior(info):
                    self._one_file(series, rel, _dry_file, info.path, rules, layout=info.layout)
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
        self._skipped_files("dry")

    def run_in_place(self) -> None:
        """Replace kept files atomically; delete dropped series and media index files."""
        for series, decision in self.decisions:
            self._series_row(series, decision)
            if decision.keep:
                for info in series.slices:
                    rel = self.public_rel(info.path.relative_to(self.exam.path))
                    prior = self.prior(info)
                    if prior == "ours":  # done by an interrupted run: never mapped twice
                        self.counts["unchanged"] += 1
                    elif prior == "other":
                        self._marked_elsewhere(series, rel, "left unchanged")
                    else:
                        self._one_file(series, rel, self._replace_in_place, info.path,
                                       audit_rel=str(info.path.relative_to(self.exam.path)), layout=info.layout)
            else:
                for info in series.slices:
                    rel = self.public_rel(info.path.relative_to(self.exam.path))
                    self._delete(rel, info.path, None)
        self._skipped_files("in_place")

    # --- pieces ---------------------------------------------------------------------------

    def _replace_in_place(self, path: Path, *args: Any, layout: dicom_bytes.Layout | None = None) -> None:
        """Replace one file in place; with ``--map-dir`` its new mappings are journaled before
        the file is replaced, so an interrupted run never loses the link to an original."""
        journal = None
        if self.options.map_dir is not None and self.secrets.uids is not None:
            journal = functools.partial(mapping.journal_exam_maps, self.options.map_dir, self.exam.dicom_id,
                                        self.secrets.uids.mapped, self.secrets.patient_ids, self._journaled)
        _replace_in_place(path, *args, before_replace=journal, layout=layout)

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
                consequence = "left in place unchanged" if self.options.in_place else "not copied"
                rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="failed",
                                         reason=f"{skipped.reason}; {consequence}"))
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
                    "in_place": "NOT de-identified: left in place unchanged, it may hold identifying values",
                }[mode])
            elif mode == "in_place" and skipped.kind in (SkipKind.MEDIA_INDEX, SkipKind.NON_IMAGE):
                self._delete(self.public_rel(skipped.path), self.exam.path / skipped.path, skipped.reason)
            elif skipped.kind is SkipKind.NON_IMAGE:
                self._skipped_row(skipped, "dropped", f"{skipped.reason}; not copied")
            else:
                self._skipped_row(skipped, "skipped", f"{skipped.reason}; left alone" if mode == "in_place"
                                  else skipped.reason)

    def _one_file(self, series: SeriesInfo, rel: Path, work: Callable[..., Any], *paths: Any,
                  audit_rel: str | None = None, layout: dicom_bytes.Layout | None = None) -> None:
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
            self.rows.append(dataclasses.replace(self.public_cells(series), path=str(rel), decision="failed",
                                                 reason=reason))
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
            why = f"cannot delete ({err.strerror or type(err).__name__})"
            self.rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(rel), decision="failed", reason=why))
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

    def _problem_row(self, skipped: SkippedFile, consequence: str) -> None:
        """A file that should have been usable DICOM: a failure of this exam."""
        self.counts["failed"] += 1
        self._skipped_row(skipped, "failed", f"{skipped.reason}; {consequence}")
        logger.error("%s: %s: %s; %s", self.exam.dicom_id, self.public_rel(skipped.path), skipped.reason,
                     consequence)

    def _skipped_row(self, skipped: SkippedFile, decision: str, reason: str) -> None:
        if decision in ("skipped", "dropped"):
            self.counts["skipped"] += 1
        self.rows.append(AnonymizeRow(dicom_id=self.exam.dicom_id, path=str(self.public_rel(skipped.path)),
                                      decision=decision, reason=reason))


# --- one file ---------------------------------------------------------------------------------


Written = Callable[[tuple[bytes | audit.FileRegion, ...]], None]
"""Called with a file's parts once it is complete (bytes built in memory, and regions of the
file itself that were copied from the source): the stage audits them."""


def anonymize_file(
    src: Path,
    dst: Path,
    profile: Profile,
    pseudonym: str,
    secrets: Secrets | None = None,
    written: Written | None = None,
    *,
    layout: dicom_bytes.Layout | None = None,
) -> DeidStats:
    """De-identify ``src`` with ``profile`` and write the result to ``dst``.

    Only the data set is written: the bytes after it (trailing padding, garbage after the last
    element, anything after a complete pixel data element) never reach ``dst``. The header
    (everything but the pixel data) is read into memory; the pixel data element is copied from
    ``src`` in bounded chunks (:mod:`orbitct_app.chunks`), never decoded, so memory stays flat
    whatever the size of the file. The transfer syntax is kept; the file meta is rebuilt
    consistent with the data set (see :func:`file_meta_for`). ``dst`` is written directly (and
    removed again if writing fails); the caller makes its appearance atomic.

    The common case is de-identified on the header's bytes (:mod:`orbitct_app.deid.raw`); any
    other file (deflated or big-endian data, elements after the pixel data, sequences stored
    as UN, earlier de-identification codes ...) is read with pydicom and encoded by
    :func:`encode_part10`. Both give the same bytes where both apply.

    Parameters
    ----------
    src, dst
        The DICOM file to read and the file to write (may not be the same).
    profile
        The de-identification table.
    pseudonym
        PatientName / PatientID value.
    secrets
        The key, UID map and patient memory of the exam; needed by a profile that remaps UIDs
        or shifts dates (see :attr:`Profile.needs_key`).
    written
        Called with the parts of ``dst`` once it is complete (the stage audits them).
    layout
        Where the data set ends and the pixel data lies, as discovery found it
        (:attr:`SliceInfo.layout`); found here when not given.

    Returns
    -------
    DeidStats
        What the profile changed.

    Raises
    ------
    DeidError
        With a reason that holds no header value (the type of the underlying error).
    ResourceError
        When ``dst`` cannot be written for lack of room (full disk, quota, file size limit).
    """
    stage = "reading"
    try:
        with _quiet_pydicom(), open_regular(src) as source:
            fd = source.fileno()
            layout = layout if layout is not None else _layout_of(fd)
            stage = "de-identifying"
            pieces, stats = _deidentified(fd, layout, profile, pseudonym,
                                          secrets if secrets is not None else Secrets())
            stage = "writing"
            _write_file(dst, pieces, fd)
    except OrbitctError:
        raise
    except Exception as err:  # noqa: BLE001 - the message may quote a header value: drop it
        if (resource := resource_error(err)) is not None:
            raise resource from None
        raise DeidError(f"{safe_reason(err)} while {stage}") from None
    if written is not None:
        written(_audit_parts(pieces, dst))
    return stats


def _write_file(dst: Path, pieces: list[Piece], source: int) -> None:
    """Write ``dst`` from its pieces; never leave half a file."""
    try:
        with open(dst, "wb") as fh:
            write_output(fh, pieces, source)
    except BaseException:
        with contextlib.suppress(OSError):
            dst.unlink()
        raise


def write_output(fh: BinaryIO, parts: Sequence[Piece], source: int | None = None) -> None:
    """Write a de-identified file to ``fh``: the concatenation of ``parts`` (bytes built in
    memory, and spans of the ``source`` file descriptor copied in bounded chunks). The one
    place every path writes."""
    write_pieces(fh, parts, source)


def _audit_parts(pieces: Sequence[Piece], dst: Path) -> tuple[bytes | audit.FileRegion, ...]:
    """The parts of a written file for its audit: spans become regions of the file itself."""
    parts: list[bytes | audit.FileRegion] = []
    offset = 0
    for piece in pieces:
        if isinstance(piece, Span):
            parts.append(audit.FileRegion(dst, offset, piece.length))
            offset += piece.length
        else:
            parts.append(piece)
            offset += len(piece)
    return tuple(parts)


def _layout_of(fd: int) -> dicom_bytes.Layout:
    """The layout of an open file, walked here (callers that did not discover the file)."""
    if os.fstat(fd).st_size == 0:
        raise DeidError("empty file (0 bytes)")
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            structure = dicom_bytes.file_structure(view)
        except dicom_bytes.Damaged as err:
            raise DeidError(str(err)) from None
        finally:
            view.release()
    if not structure.byte_order_matches:
        raise DeidError(structure.mismatch)
    return structure.layout


def _deidentified(fd: int, layout: dicom_bytes.Layout, profile: Profile, pseudonym: str,
                  secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The pieces of the de-identified file: the fast path where it applies, else pydicom's."""
    if not layout.deflated:
        try:
            return fast_pieces(fd, layout, profile, pseudonym, secrets)
        except OrbitctError:
            raise
        except Exception as err:  # noqa: BLE001 - Unsupported, or a file the fast path misreads
            if not isinstance(err, raw.Unsupported):
                logger.debug("fast path failed (%s); using pydicom", type(err).__name__)
    return pydicom_pieces(fd, layout, profile, pseudonym, secrets)


def fast_pieces(fd: int, layout: dicom_bytes.Layout, profile: Profile, pseudonym: str,
                secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The fast path: the header de-identified on its bytes (:func:`raw.deidentify`), the pixel
    data element copied.

    Raises
    ------
    raw.Unsupported
        When the file needs the pydicom path (elements after the pixel data, among others).
    """
    if layout.deflated:
        raise raw.Unsupported("a deflated data set")
    header, tail = _header_and_tail(fd, layout)
    if tail:
        raise raw.Unsupported("elements after the pixel data")
    result = raw.deidentify(
        header, _plan(profile, pseudonym, secrets),
        version_name=IMPLEMENTATION_VERSION_NAME, implementation_uid=PYDICOM_IMPLEMENTATION_UID,
    )
    pieces: list[Piece] = [result.head]
    if layout.pixel_start is not None:
        pieces += pixel_pieces(fd, layout, implicit=result.implicit, little=True)
    return pieces, result.stats


def pydicom_pieces(fd: int, layout: dicom_bytes.Layout, profile: Profile, pseudonym: str,
                   secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The pydicom path: the data set read without its pixel data (:func:`_read_dataset`),
    de-identified (:func:`deidentify_dataset`) and encoded with the pixel data element copied
    (:func:`encode_part10`)."""
    ds = _read_dataset(fd, layout)
    stats = deidentify_dataset(ds, profile, pseudonym, secrets)
    return encode_part10(ds, _pixels_of(fd, layout, ds)), stats


def _header_and_tail(fd: int, layout: dicom_bytes.Layout) -> tuple[bytes, bytes]:
    """The file's bytes before its pixel data element (all of its data set when it has none),
    and its data set's bytes after it (elements after the pixel data)."""
    if layout.pixel_start is None or layout.pixel_end is None:
        return read_exactly(fd, 0, layout.end), b""
    tail = read_exactly(fd, layout.pixel_end, layout.end - layout.pixel_end)
    return read_exactly(fd, 0, layout.pixel_start), tail


def _parse(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _read_dataset(fd: int, layout: dicom_bytes.Layout) -> Dataset:
    """The file's data set as pydicom reads it, without its pixel data (unless deflated) and
    without anything after its end.

    A deflated data set is inflated here (within its cap) and cut at its end; pydicom reads it
    as the explicit VR little endian data set it is, under a file meta that says so, and the
    file meta's transfer syntax is then set back to deflated.
    """
    ds = _read_deflated(fd, layout) if layout.deflated else _parse(b"".join(_header_and_tail(fd, layout)))
    if ds.original_encoding != (layout.implicit, layout.little):
        # pydicom reads a data set encoded otherwise than its transfer syntax says as it is
        # encoded, but records the transfer syntax's encoding: record the one it read
        ds.set_original_encoding(layout.implicit, layout.little, ds.original_character_set)
    return ds


def _read_deflated(fd: int, layout: dicom_bytes.Layout) -> Dataset:
    """See :func:`_read_dataset`."""
    head = dicom_bytes.explicit_prefix(read_exactly(fd, 0, layout.data_start))
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        deflated = view[layout.data_start :]
        try:
            stream = dicom_bytes.inflate(deflated)
        finally:
            deflated.release()
            view.release()
    del stream[layout.end :]  # trailing data: never read
    stream[0:0] = head  # in place: the data set is the biggest thing held here
    with _BufferReader(stream) as reader:
        ds = pydicom.dcmread(reader, force=True)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


class _BufferReader(io.RawIOBase):
    """A binary file over a buffer, without copying it (``io.BytesIO`` copies a bytearray)."""

    def __init__(self, buffer: bytearray) -> None:
        super().__init__()
        self._view = memoryview(buffer)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, copied once (``RawIOBase.read`` would copy twice)."""
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        data = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return data

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._view.release()
        super().close()


@dataclasses.dataclass(frozen=True)
class _Pixels:
    """The source's pixel data element, to be copied into a file pydicom encodes."""

    fd: int
    layout: dicom_bytes.Layout
    implicit: bool
    little: bool
    bits_allocated: int


def _pixels_of(fd: int, layout: dicom_bytes.Layout, ds: Dataset) -> _Pixels | None:
    if layout.pixel_start is None:
        return None
    bits = ds.get("BitsAllocated", 16)
    return _Pixels(fd, layout, layout.implicit, layout.little, int(bits) if isinstance(bits, int) else 16)


def pixel_pieces(
    fd: int, layout: dicom_bytes.Layout, *, implicit: bool, little: bool, to_implicit: bool | None = None,
    bits_allocated: int = 16,
) -> list[Piece]:
    """The source's top-level pixel data element as pydicom writes it: its header rebuilt (in
    the target encoding ``to_implicit``, the source's by default), its value a span of the
    source copied raw, and for encapsulated pixel data the sequence delimiter.

    A header written in explicit VR from an implicit VR source gets the VR pydicom gives it:
    OB for encapsulated pixel data and for 8 bits or fewer, OW above (OF and OD for float and
    double float pixel data).
    """
    start, end = layout.pixel_start, layout.pixel_end
    assert start is not None and end is not None
    order = "<" if little else ">"
    head = read_exactly(fd, start, min(12, end - start))
    group, number = struct.unpack_from(order + "HH", head)
    vr_code = head[4:6]
    vr: str | None = None
    if not implicit and vr_code in dicom_bytes.LONG_VRS and len(head) >= 12:
        vr, length, value = vr_code.decode("ascii"), struct.unpack_from(order + "L", head, 8)[0], start + 12
    elif not implicit and vr_code in dicom_bytes.SHORT_VRS:
        vr, length, value = vr_code.decode("ascii"), struct.unpack_from(order + "H", head, 6)[0], start + 8
    else:
        length, value = struct.unpack_from(order + "L", head, 4)[0], start + 8
    undefined = length == _UNDEFINED_LENGTH
    value_length = end - 8 - value if undefined else length
    if value + value_length + (8 if undefined else 0) != end:
        raise DeidError("the pixel data element is not where discovery found it (the file changed while read)")
    target_implicit = implicit if to_implicit is None else to_implicit
    if not target_implicit and (vr is None or target_implicit != implicit):
        tag = group << 16 | number
        vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OB" if undefined or bits_allocated <= 8 else "OW")
    header = struct.pack(order + "HH", group, number)
    if target_implicit:
        header += struct.pack(order + "L", length)
    elif vr in EXPLICIT_VR_LENGTH_32:
        header += vr.encode("ascii") + struct.pack(order + "HL", 0, length)
    elif not undefined and length <= 0xFFFF and vr is not None:
        header += vr.encode("ascii") + struct.pack(order + "H", length)
    else:  # a long value of a short VR: pydicom writes it as UN
        header += b"UN" + struct.pack(order + "HL", 0, length)
    pieces: list[Piece] = [header]
    if value_length:
        pieces.append(Span(value, value_length))
    if undefined:
        pieces.append(struct.pack(order + "HHL", 0xFFFE, 0xE0DD, 0))
    return pieces


def _plan(profile: Profile, pseudonym: str, secrets: Secrets) -> raw.Plan:
    """What :func:`raw.deidentify` needs beyond the table (see :func:`deidentify_dataset`)."""
    if profile.needs_key and secrets.key is None:
        raise DeidError(f"the {profile.name} profile needs a de-identification key (--deid-key)")
    check_pseudonym(pseudonym)

    def date_offset(patient_id: str) -> int | None:
        if secrets.key is None:
            return None
        if patient_id:
            secrets.patient_ids.add(patient_id)
        return secrets.date_offset(patient_id, pseudonym)

    marks: list[tuple[int, str, Any]] = [
        (0x00120062, "CS", "YES"),
        (0x00120063, "LO", method_values(profile, secrets, pseudonym)),
    ]
    if profile.codes:
        marks.append((0x00120064, "SQ", tuple(profile.codes)))
    if profile.temporal:
        marks.append((0x00280303, "CS", profile.temporal))
    return raw.Plan(profile, pseudonym, secrets.uids, date_offset, tuple(marks))


def method_values(profile: Profile, secrets: Secrets, pseudonym: str) -> list[str]:
    """DeidentificationMethod of a file this run writes: the profile's values and, when a key
    is used, the key mark (:func:`keys.deid_mark`) by which a rerun recognises the file."""
    values = profile.method_values(__version__)
    values = [values] if isinstance(values, str) else list(values)
    if secrets.key is not None:
        values.append(keys.deid_mark(secrets.key, pseudonym))
    return values


def deidentify_dataset(
    ds: Dataset, profile: Profile, pseudonym: str, secrets: Secrets | None, *, count_rules: bool = False
) -> DeidStats:
    """Apply ``profile`` to a data set read from a file, mark it and give it a new file meta.

    Empty SOP Class / SOP Instance UIDs of the data set are first taken from the old file meta,
    so that a profile remapping UIDs replaces them too (the file meta follows the data set).
    """
    secrets = secrets if secrets is not None else Secrets()
    if profile.needs_key and secrets.key is None:
        raise DeidError(f"the {profile.name} profile needs a de-identification key (--deid-key)")
    _fill_uids_from_meta(ds)
    offset = None
    if secrets.key is not None:
        patient_id = str(ds.get("PatientID", "") or "").strip()
        if patient_id:
            secrets.patient_ids.add(patient_id)
        offset = secrets.date_offset(patient_id, pseudonym)
    stats = apply_profile(
        ds, profile, pseudonym=pseudonym, uids=secrets.uids, date_offset=offset, count_rules=count_rules
    )
    mark_deidentified(ds, method_values(profile, secrets, pseudonym), codes=profile.codes, temporal=profile.temporal)
    ds.file_meta = file_meta_for(ds)
    return stats


def _fill_uids_from_meta(ds: Dataset) -> None:
    old = getattr(ds, "file_meta", None)
    if not old:
        return
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        if not str(ds.get(keyword, "") or "").strip("\0 "):
            value = str(old.get(meta_keyword, "") or "").strip("\0 ")
            if value:
                setattr(ds, keyword, value)


def _dry_file(path: Path, rules: collections.Counter[tuple[int, str]], profile: Profile,
              pseudonym: str, secrets: Secrets, written: object = None, *,
              layout: dicom_bytes.Layout | None = None) -> None:
    """De-identify ``path`` in memory only and add the rules applied to ``rules``."""
    try:
        with _quiet_pydicom(), open_regular(path) as source:
            fd = source.fileno()
            ds = _read_dataset(fd, layout if layout is not None else _layout_of(fd))
            stats = deidentify_dataset(ds, profile, pseudonym, secrets, count_rules=True)
    except OrbitctError:
        raise
    except Exception as err:  # noqa: BLE001 - the message may quote a header value: drop it
        raise DeidError(f"{safe_reason(err)} while de-identifying") from None
    rules.update(stats.rules or {})


def file_meta_for(ds: Dataset) -> FileMetaDataset:
    """A fresh, consistent File Meta Information for ``ds`` as read from a file.

    The transfer syntax is the one the file was read with. MediaStorageSOPClassUID and
    MediaStorageSOPInstanceUID are the data set's SOPClassUID and SOPInstanceUID; where the data
    set's value is empty the old file meta's value is used and copied into the data set. Every
    other element of the old file meta (source and sending AE titles, private information) is
    dropped.

    Raises
    ------
    DeidError
        If neither the data set nor the old file meta gives a SOP Class or SOP Instance UID.
    """
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = str(old.get("TransferSyntaxUID", "") or "")
    if not syntax:  # a data set without file meta: the encoding it was read with
        implicit, little = ds.original_encoding
        if implicit:
            syntax = ImplicitVRLittleEndian
        else:
            syntax = ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        value = str(ds.get(keyword, "") or "").strip("\0 ")
        if not value:
            value = str(old.get(meta_keyword, "") or "").strip("\0 ")
            if not value:
                raise DeidError(f"no {'SOP Class UID' if keyword == 'SOPClassUID' else 'SOP Instance UID'} "
                                "in the data set or its file meta")
            setattr(ds, keyword, value)
        setattr(meta, meta_keyword, UID(value))
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def transfer_syntax_encoding(syntax: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of a transfer syntax's data set; a syntax pydicom does not
    know (Deflated Image Frame Compression, newer or private ones) is explicit VR little endian,
    as PS3.5 gives every transfer syntax but the implicit, big endian and deflated ones."""
    uid = UID(syntax)
    if uid.is_transfer_syntax:
        return uid.is_implicit_VR, uid.is_little_endian
    return False, True


def write_part10(fh: BinaryIO, ds: Dataset) -> None:
    """Write ``ds`` (with its pixel data, if any) as a Part 10 file to ``fh`` (see
    :func:`encode_part10`)."""
    write_output(fh, encode_part10(ds))


def encode_part10(ds: Dataset, pixels: _Pixels | None = None) -> list[Piece]:
    """``ds`` and its (consistent) file meta as a DICOM Part 10 file, in pieces.

    The bytes are those of ``pydicom.dcmwrite(fh, ds, enforce_file_format=True)`` with a zero
    preamble (never the source's), written faster: elements still raw as read (nearly all of
    them) are copied with their header instead of going through pydicom's per-element encoder.
    A data set whose encoding (implicit or explicit VR) or character set changes is encoded
    element by element as pydicom's writer does; a transfer syntax pydicom does not know is
    explicit VR little endian (:func:`transfer_syntax_encoding`). With ``pixels``, the source's
    pixel data element (not in ``ds``) is put in its place among the elements
    (:func:`pixel_pieces`). A deflated data set (pixel data included) is deflated as it is
    encoded, never held encoded in memory.
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    deflated = syntax == DeflatedExplicitVRLittleEndian
    if deflated and pixels is not None:
        raise ValueError("a deflated data set is encoded whole, its pixel data included")
    implicit, little = transfer_syntax_encoding(syntax)
    if pixels is not None and pixels.little != little:
        raise DeidError(f"data set encoding ({dicom_bytes.describe_encoding(pixels.implicit, pixels.little)}) "
                        f"does not match its transfer syntax ({syntax.name}): its byte order cannot be changed")
    pieces: list[Piece] = []
    buffer = io.BytesIO()
    fp = DicomFileLike(buffer)
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    sink = _Deflater() if deflated else None
    if sink is not None:  # the data set is deflated as it is encoded (PS3.5 A.5), never held whole
        fp = DicomFileLike(sink)
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
    encoded = ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set
    if encoded:  # the same test and correction as pydicom's writer
        ds = correct_ambiguous_vr(ds, little)
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    order = "<" if little else ">"
    pixel_tag = None
    if pixels is not None:
        pixel_tag = struct.unpack_from(order + "HH", read_exactly(pixels.fd, pixels.layout.pixel_start or 0, 4))
        pixel_tag = pixel_tag[0] << 16 | pixel_tag[1]
    out: Any = sink if sink is not None else buffer
    for tag in [*sorted(ds.keys()), None]:
        if pixels is not None and pixel_tag is not None and (tag is None or tag > pixel_tag):
            pieces.append(buffer.getvalue())
            pieces += pixel_pieces(pixels.fd, pixels.layout, implicit=pixels.implicit, little=pixels.little,
                                   to_implicit=implicit, bits_allocated=pixels.bits_allocated)
            out = buffer = io.BytesIO()
            fp = DicomFileLike(buffer)
            fp.is_implicit_VR, fp.is_little_endian = implicit, little
            pixel_tag = None
        if tag is None:
            break
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        if encoded:
            write_data_element(fp, ds[tag], encodings)
            continue
        elem = cast("DataElement | RawDataElement", ds.get_item(tag))  # pydicom's overload omits raw ones
        if not isinstance(elem, RawDataElement) or (header := _raw_header(elem, implicit, order)) is None:
            write_data_element(fp, ds[tag], encodings)
            continue
        out.write(header)
        out.write(elem.value or b"")  # (_raw_header gives None for a None value)
        if elem.length == _UNDEFINED_LENGTH:
            out.write(struct.pack(order + "HHL", 0xFFFE, 0xE0DD, 0))
    if sink is not None:
        buffer.write(sink.finish())
    if buffer.tell():
        pieces.append(buffer.getvalue())
    return pieces


class _Deflater:
    """A write-only file that deflates what is written to it (raw deflate, as pydicom writes a
    deflated data set: default level, padded to an even length with one NUL)."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._parts.append(self._compressor.compress(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("a deflating stream cannot seek")

    def finish(self) -> bytes:
        out = b"".join(self._parts) + self._compressor.flush()
        return out + b"\0" if len(out) % 2 else out


_UNDEFINED_LENGTH = 0xFFFFFFFF


def _raw_header(elem: RawDataElement, implicit: bool, order: str) -> bytes | None:
    """Tag, VR and length of a raw element as pydicom writes them; None to let pydicom do it."""
    if elem.value is None:
        return None
    undefined = elem.length == _UNDEFINED_LENGTH
    length = _UNDEFINED_LENGTH if undefined else len(elem.value)
    tag = struct.pack(order + "HH", elem.tag >> 16, elem.tag & 0xFFFF)
    if implicit:
        return tag + struct.pack(order + "L", length)
    vr = elem.VR
    if vr is None or len(vr) != 2 or not vr.isascii():
        return None
    if vr in EXPLICIT_VR_LENGTH_32:
        return tag + vr.encode() + struct.pack(order + "HL", 0, length)
    if undefined:
        return tag + vr.encode() + struct.pack(order + "L", length)
    if length > 0xFFFF:
        return None  # pydicom writes it as UN
    return tag + vr.encode() + struct.pack(order + "H", length)


def _replace_in_place(path: Path, profile: Profile, pseudonym: str, secrets: Secrets | None = None,
                      written: Written | None = None, *, before_replace: Callable[[], None] | None = None,
                      layout: dicom_bytes.Layout | None = None) -> None:
    """Replace ``path`` by its de-identified version: either the old or the new file, never half.

    ``before_replace`` runs once the new file is complete, before it takes the old one's place.
    """
    mode = path.lstat().st_mode
    with atomic.atomic_file(path, fsync=True) as tmp:
        anonymize_file(path, tmp, profile, pseudonym, secrets, written, layout=layout)
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode & 0o7777)
        if before_replace is not None:
            before_replace()


def copy_unchanged(src: Path, dst: Path, profile: Profile, pseudonym: str, secrets: Secrets | None = None,
                   written: Written | None = None, *, layout: dicom_bytes.Layout | None = None) -> None:
    """Copy a file this key already de-identified for this exam as it is (its UIDs and dates
    are the new ones: mapping them again would make them others), in bounded chunks: its data
    set only, without what may have been appended to it (a deflated file is copied whole; the
    audit checks that nothing follows its data set)."""
    with open_regular(src) as source:
        fd = source.fileno()
        layout = layout if layout is not None else _layout_of(fd)
        end = os.fstat(fd).st_size if layout.deflated else layout.end
        pieces: list[Piece] = [Span(0, end)]
        _write_file(dst, pieces, fd)
    if written is not None:
        written(_audit_parts(pieces, dst))


def safe_reason(err: BaseException) -> str:
    """A one-line reason for ``err`` that can never quote a header value.

    Our own errors carry messages written to be safe; for an OS error the system's text is
    used; for anything else only the exception type.
    """
    if isinstance(err, OrbitctError):
        return " ".join(str(err).split()) or err.default_message
    if isinstance(err, OSError):
        return f"{type(err).__name__}: {err.strerror}" if err.strerror else type(err).__name__
    return type(err).__name__


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation and warnings, whose messages quote header values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pydicom_config.disable_value_validation():
            yield


__all__ = [
    "anonymize_file",
    "decide_pixel_text",
    "decide_series",
    "deidentify_dataset",
    "failure_rows",
    "file_meta_for",
    "fingerprint",
    "finish",
    "FLAG_PIXEL_TEXT",
    "FLAG_PIXEL_TEXT_UNCHECKED",
    "log_filters",
    "method_values",
    "modifies_source",
    "NAME",
    "NewUidsInLogs",
    "output_folder",
    "prepare",
    "profile_for",
    "run_exam",
    "safe_reason",
    "Secrets",
    "SeriesDecision",
    "source",
    "stale_reason",
    "summarize",
    "write_part10",
]
