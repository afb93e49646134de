"""Run the stages over exams: a process pool over exams, resume records, merged reports.

Data flows one way per exam: discover -> (anonymize) -> select -> build volume -> mask ->
resample -> write -> index. The stages (:mod:`orbitct_app.stages`: anonymize, extract) each turn
one exam folder into an :class:`ExamRecord`; this module decides which exams and stages run,
runs them in parallel, records each result atomically and rebuilds the top-level tables.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import logging.handlers
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orbitct_app import __version__, atomic, interrupt, locks, memory, provenance, stages, workers
from orbitct_app.errors import (
    ExamError,
    ExitCode,
    UsageError,
    one_line,
    resource_error,
    safe_traceback,
    withhold_warning_text,
)
from orbitct_app.options import Options, Stage
from orbitct_app.paths import InputEntry, InputListing, TreeState, exam_problem, list_input, tree_state
from orbitct_app.report.html import REPORT_NAME, write_report
from orbitct_app.report.records import (
    RECORD_FORMAT,
    ExamRecord,
    merge_lock,
    merge_tables,
    read_record,
    write_record,
)
from orbitct_app.report.tables import ANONYMIZE_REPORT, EXTRACT_REPORT, TABLES, AnonymizeRow, ExtractRow, Row
from orbitct_app.safe_text import ControlCharFilter
from orbitct_app.threads import set_threads, usable_cores

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ExamOutcome:
    """What happened to one exam in this run."""

    dicom_id: str
    records: dict[str, ExamRecord] = dataclasses.field(default_factory=dict)
    resumed: list[str] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    """A signal stopped its worker before it finished (what it recorded is on disk)."""

    @property
    def failed(self) -> bool:
        return any(not r.complete for r in self.records.values())


@dataclasses.dataclass
class RunSummary:
    """The outcome of a whole run."""

    exams: list[ExamOutcome]
    tables: dict[str, Path]
    seconds: float
    expected_stages: tuple[str, ...] = ()
    """Stages every exam should have a record of (the ``report`` stage checks these)."""
    report: Path | None = None
    """``OUTPUT_DIR/report.html``."""
    run_record: Path | None = None
    """``OUTPUT_DIR/logs/run-*.json``: options, versions and timings of this run."""
    interrupted: int | None = None
    """The signal (SIGINT, SIGTERM) that stopped the run before every exam was done."""
    outputs_written: bool = True
    """False when the tables, report or run record could not be written (e.g. a full disk)."""

    @property
    def failed_exams(self) -> list[str]:
        return [e.dicom_id for e in self.exams if e.failed]

    def count(self, key: str) -> int:
        """Sum of one count over every exam record of this run (e.g. ``converted``)."""
        return sum(r.counts.get(key, 0) for e in self.exams for r in e.records.values())

    @property
    def missing_exams(self) -> list[str]:
        """Exams without a record of an expected stage (e.g. a task killed between stages)."""
        return [
            e.dicom_id
            for e in self.exams
            if not e.failed and any(stage not in e.records for stage in self.expected_stages)
        ]

    @property
    def series_failed(self) -> int:
        return self.count("failed")

    @property
    def audit_findings(self) -> int:
        """Findings of the de-identification audit (in this run's and resumed records)."""
        return self.count("audit_findings")

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted is not None:
            return interrupt.exit_code(self.interrupted)
        if not self.outputs_written:
            return ExitCode.FAILED
        if self.failed_exams or self.missing_exams or self.series_failed or self.audit_findings:
            return ExitCode.FAILED
        if not self.exams or self.count("produced") == 0:
            return ExitCode.NOTHING
        return ExitCode.OK


def run(
    options: Options,
    *,
    progress: Callable[[int, int, ExamOutcome | None], None] | None = None,
    run_id: str | None = None,
    argv: Sequence[str] | None = None,
) -> RunSummary:
    """Run ``options.stage`` over the exams of ``options.input_dir``.

    At the end, whatever the stage: the top-level CSVs, ``dataset_description.json`` and
    ``report.html`` are rebuilt from every exam's record, and the run's provenance record
    ``logs/run-<start>-<run id>.json`` is written (all under one lock, so concurrent runs end
    with complete outputs). When they cannot be written (a full disk), that is logged in one
    line and the summary's exit code is 3.

    SIGINT or SIGTERM (:class:`~orbitct_app.interrupt.Interrupted`, or KeyboardInterrupt) stops
    the run: no new exam starts, running ones are interrupted (their temporary files removed),
    the outputs above are written from the records so far and the summary says which signal
    (:attr:`RunSummary.interrupted`). Another signal while they are written propagates.

    Parameters
    ----------
    options
        Validated run options.
    progress
        Called in this process with (0, total, None) before the first exam, then after each
        exam with (done, total, outcome).
    run_id
        Names the run record (default: a new one).
    argv
        The command-line arguments, recorded as given (None when called as a library).

    Raises
    ------
    UsageError
        When a requested participant label has no exam folder.
    """
    run_id = run_id or provenance.new_run_id()
    started_at = provenance.utc_now()
    started = time.monotonic()
    listing = list_input(options.input_dir, options.participant_labels)
    names = listing.names
    for entry in listing.problems:
        logger.error("%s: not processed: %s", entry.name, entry.reason)
    outcomes: list[ExamOutcome] = []

    def finished(outcome: ExamOutcome) -> None:
        outcomes.append(outcome)
        _log_outcome(outcome, len(outcomes), len(names))
        if progress is not None:
            progress(len(outcomes), len(names), outcome)

    stopped: int | None = None
    try:
        logger.info(
            "%s: %d exam(s) in %s, %d worker(s)",
            options.stage.value,
            len(names),
            options.input_dir,
            min(options.n_procs, max(1, len(names))),
        )
        options.output_dir.mkdir(parents=True, exist_ok=True)
        for module in stages.for_run(options.stage):
            module.prepare(options)
        if progress is not None:
            progress(0, len(names), None)
        if options.stage is Stage.REPORT:
            for name in names:
                finished(stored_outcome(name, options))
        elif not workers.uses_workers(options, len(names)):
            set_threads(options.n_procs)
            for name in names:
                finished(process_exam(name, options))
        else:
            _run_pool(names, options, min(options.n_procs, len(names)), finished)
    except interrupt.Interrupted as err:
        stopped = err.signum
    except KeyboardInterrupt:  # SIGINT where no handler of ours is installed (a library caller)
        stopped = signal.SIGINT
    outcomes.sort(key=lambda o: o.dicom_id)
    try:
        for module in stages.for_run(options.stage):
            module.finish(options)
        summary = _write_run_outputs(options, outcomes, listing, run_id, argv, started_at, started, stopped)
    except OSError as err:
        logger.error(
            "cannot write the run's tables and report in %s: %s; once that is fixed, `orbitct-app "
            "INPUT_DIR OUTPUT_DIR report` writes them", options.output_dir, one_line(err),
        )
        summary = RunSummary(outcomes, {}, time.monotonic() - started, interrupted=stopped, outputs_written=False)
    _log_summary(summary, options)
    return summary


def _write_run_outputs(
    options: Options,
    outcomes: list[ExamOutcome],
    run_listing: InputListing,
    run_id: str,
    argv: Sequence[str] | None,
    started_at: Any,
    started: float,
    interrupted: int | None = None,
) -> RunSummary:
    """Rebuild the tables, dataset_description.json and report.html; write the run record.

    Everything happens under the merge lock, so concurrent runs (SLURM tasks) take turns and
    the last one leaves complete outputs. The report lists the whole of INPUT_DIR as it is now;
    when it can no longer be listed (unmounted during the run), the listing ``run_listing`` the
    run started from stands in, and the log says so.
    """
    phases = {"exams": round(time.monotonic() - started, 3)}
    if options.stage is Stage.REPORT:  # expect every stage that any exam has a record of
        expected = tuple(n for n in stages.ORDER if any(n in o.records for o in outcomes)) or stages.ORDER[:1]
    else:
        expected = stages.names(options.stage)
    try:
        listing = list_input(options.input_dir)
    except UsageError as err:
        logger.warning("%s; the report lists the exams this run started with", err)
        listing = run_listing
    with merge_lock(options.state_dir):
        for name in (*(t.filename for t in TABLES), REPORT_NAME, provenance.DATASET_DESCRIPTION):
            atomic.remove_stale(options.output_dir, name)  # left by a killed run (only this lock's holder writes them)
        mark = time.monotonic()
        tables = merge_tables(options.state_dir, options.output_dir, input_rows(listing.ignored))
        provenance.write_dataset_description(options.output_dir)
        phases["tables"] = round(time.monotonic() - mark, 3)
        summary = RunSummary(outcomes, tables, time.monotonic() - started, expected, interrupted=interrupted)
        record = _run_record(options, summary, run_id, argv, started_at, phases)
        mark = time.monotonic()
        runs = [r for r in provenance.read_run_records(options.output_dir) if r.get("run_id") != run_id]
        summary.report = write_report(
            options.output_dir, options.state_dir, runs=[*runs, record], exam_names=listing.names,
            input_entries=listing.ignored,
        )
        phases["report"] = round(time.monotonic() - mark, 3)
        summary.seconds = time.monotonic() - started
        record = _run_record(options, summary, run_id, argv, started_at, phases)
        summary.run_record = provenance.write_run_record(options.output_dir, record)
    return summary


def _run_record(
    options: Options,
    summary: RunSummary,
    run_id: str,
    argv: Sequence[str] | None,
    started_at: Any,
    phases: dict[str, float],
) -> dict[str, Any]:
    """The provenance record of this run (see :func:`provenance.run_record`)."""
    stages: dict[str, dict[str, Any]] = {}
    for name in summary.expected_stages:
        ran = [e.records[name] for e in summary.exams if name in e.records and name not in e.resumed]
        resumed = sum(name in e.resumed for e in summary.exams)
        seconds = [r.seconds for r in ran]
        stages[name] = {
            "exam_seconds": round(sum(seconds), 3),
            "exams_processed": len(ran),
            "exams_resumed": resumed,
            "exams_failed": sum(not r.complete for r in ran),
            "slowest_exam_seconds": round(max(seconds), 3) if seconds else 0.0,
        }
    processed = sum(bool(set(e.records) - set(e.resumed)) for e in summary.exams)
    keys = ("kept", "dropped", "converted", "excluded", "failed", "files", "produced")
    return provenance.run_record(
        options,
        run_id=run_id,
        argv=argv,
        started=started_at,
        finished=provenance.utc_now(),
        timings={"phases": dict(phases), "stages": stages},
        exams={
            "total": len(summary.exams),
            "processed": processed,
            "resumed": len(summary.exams) - processed - len(summary.missing_exams),
            "failed": len(summary.failed_exams),
            "missing": len(summary.missing_exams),
        },
        counts={key: summary.count(key) for key in keys},
        exit_code=summary.exit_code,
    )


def input_rows(entries: Sequence[InputEntry]) -> dict[str, list[Row]]:
    """Report rows for the top-level entries of INPUT_DIR that are not exams (hidden folders,
    plain and special files, links to files): in both stage tables, by name in ``path``."""
    return {
        ANONYMIZE_REPORT.name: [AnonymizeRow(dicom_id="", path=e.name, decision="skipped", reason=e.reason)
                                for e in entries],
        EXTRACT_REPORT.name: [ExtractRow(dicom_id="", path=e.name, decision="skipped", reason=e.reason)
                              for e in entries],
    }


def stored_outcome(dicom_id: str, options: Options) -> ExamOutcome:
    """What earlier runs recorded for one exam (every stage that has a record)."""
    outcome = ExamOutcome(dicom_id)
    for name in stages.ORDER:
        record = read_record(options.state_dir, name, dicom_id)
        if record is not None:
            outcome.records[name] = record
            outcome.resumed.append(name)
    return outcome


def process_exam(dicom_id: str, options: Options) -> ExamOutcome:
    """Run every stage of ``options.stage`` on one exam, skipping stages already complete.

    The exam is held (:func:`locks.exam_lock`) while this runs: a concurrent run on the same
    exam waits, then finds it complete. A completed stage is skipped only while its record
    still holds: same options, the exam's files as they were, its outputs as they were left
    (see :func:`stale_reason`), and has no failed file or series and no audit finding.

    Never raises for a problem of the exam's data or of writing its output (a full disk, a name
    the file system cannot hold): a failure becomes a failed record with the reason, and the rest
    of the run goes on.
    """
    outcome = ExamOutcome(dicom_id)
    input_exam = options.input_dir / dicom_id
    held_input = input_exam if options.in_place and exam_problem(input_exam) is None else None
    with locks.exam_lock(options.state_dir, dicom_id, held_input):
        for module in stages.for_run(options.stage):
            record = _run_stage(module, dicom_id, options, outcome)
            outcome.records[module.NAME] = record
            if not record.complete:
                break  # a later stage would read this stage's incomplete output
    return outcome


def _run_stage(module: stages.StageModule, dicom_id: str, options: Options, outcome: ExamOutcome) -> ExamRecord:
    """One stage of one exam: its completed record when it still holds, else a new record."""
    fingerprint = _fingerprint(module, options)
    previous = read_record(options.state_dir, module.NAME, dicom_id)
    exam_dir = module.source(options) / dicom_id
    output = module.output_folder(dicom_id, options)
    if (
        not options.force
        and not options.audit_only
        and previous is not None
        and previous.complete
        and previous.fingerprint == fingerprint
    ):
        problems = _problems(previous)
        why = (
            f"the earlier run had {problems}" if problems else stale_reason(previous, module, exam_dir, output, options)
        )
        if not why:
            logger.info("%s: %s already complete; skipped (use --force to redo)", dicom_id, module.NAME)
            outcome.resumed.append(module.NAME)
            return previous
        logger.info("%s: %s done again: %s", dicom_id, module.NAME, why)
    started = time.monotonic()
    try:
        problem = exam_problem(exam_dir)
        if problem is not None:
            raise ExamError(problem)
        before = tree_state(exam_dir)
        record = module.run_exam(exam_dir, options)
        after = tree_state(exam_dir)
        if not module.modifies_source(options) and after != before:
            raise ExamError("the exam's files changed while it was processed (another program writing "
                            f"there? {after.change_from(before)}); run again once they are complete")
        record.input_state = dataclasses.asdict(after)
        if output is not None:
            record.output_state = dataclasses.asdict(tree_state(output))
    except Exception as err:  # noqa: BLE001 - one exam's failure must not stop the run
        reason = one_line(resource_error(err) or err)
        logger.error("%s: %s failed: %s", dicom_id, module.NAME, reason)
        logger.debug("%s: %s: %s", dicom_id, module.NAME, safe_traceback(err))
        record = _failed_record(module, dicom_id, reason, fingerprint)
        for table, more in (err.rows if isinstance(err, ExamError) else {}).items():
            record.rows.setdefault(table, []).extend(more)  # its files' own rows
    record.fingerprint = fingerprint
    record.seconds = round(time.monotonic() - started, 3)
    return _store(record, module, options)


def _fingerprint(module: stages.StageModule, options: Options) -> dict[str, Any]:
    """What a completed record must have been made with to hold: this version of the app and of
    the records, and the stage's options."""
    return {"version": __version__, "record_format": RECORD_FORMAT, **module.fingerprint(options)}


def stale_reason(
    record: ExamRecord, module: stages.StageModule, exam_dir: Path, output: Path | None, options: Options
) -> str:
    """Why a completed record no longer holds ('' when it does): the exam's files were added,
    removed or replaced since (names, sizes, modification times), its output folder changed,
    or the stage finds its own reason (see ``stages.StageModule.stale_reason``)."""
    if record.input_state is None:
        return "its record holds no input state (made by an earlier version)"
    change = tree_state(exam_dir).change_from(TreeState(**record.input_state))
    if change:
        return f"the exam's files changed since it was completed ({change})"
    if output is not None:
        if record.output_state is None:
            return "its record holds no output state (made by an earlier version)"
        change = tree_state(output).change_from(TreeState(**record.output_state))
        if change:
            return f"its output folder {output} changed since it was written ({change})"
    return module.stale_reason(record, exam_dir, options)


def _problems(record: ExamRecord) -> str:
    """What makes a complete record worth redoing (failed files or series, audit findings), or ''."""
    failed = record.counts.get("failed", 0)
    findings = record.counts.get("audit_findings", 0)
    parts = [f"{failed} failed file(s) or series"] if failed else []
    if findings:
        parts.append(f"{findings} audit finding(s)")
    return " and ".join(parts)


def _failed_record(module: stages.StageModule, dicom_id: str, reason: str, fingerprint: dict[str, Any]) -> ExamRecord:
    return ExamRecord(
        dicom_id=dicom_id,
        stage=module.NAME,
        status="failed",
        fingerprint=fingerprint,
        rows=module.failure_rows(dicom_id, reason),
        error=reason,
    )


def _store(record: ExamRecord, module: stages.StageModule, options: Options) -> ExamRecord:
    """Write an exam's record; when it cannot be written (a full disk), say so in one line (unless
    the exam already failed: its line is said) and return a failed record in its place (the exam
    then fails in this run's summary; a rerun redoes it)."""
    try:
        write_record(options.state_dir, record)
    except OSError as err:
        reason = f"cannot write its completion record: {one_line(err)}"
        log = logger.error if record.complete else logger.debug
        log("%s: %s failed: %s", record.dicom_id, module.NAME, reason)
        if not record.complete:
            return record
        failed = _failed_record(module, record.dicom_id, reason, record.fingerprint)
        failed.seconds = record.seconds
        return failed
    return record


def _log_outcome(outcome: ExamOutcome, done: int, total: int) -> None:
    parts = []
    for name, record in outcome.records.items():
        module = stages.load(name)
        state = "FAILED" if not record.complete else ("done earlier" if name in outcome.resumed else "done")
        detail = record.error if not record.complete else module.summarize(record)
        parts.append(f"{name} {state} ({detail})")
    if outcome.interrupted:
        parts.append("interrupted: a signal stopped its worker; a rerun does it")
    logger.info("[%d/%d] %s: %s", done, total, outcome.dicom_id, "; ".join(parts) or "no record")


def _log_summary(summary: RunSummary, options: Options) -> None:
    tables = ", ".join(str(p.relative_to(options.output_dir)) for p in summary.tables.values())
    logger.info(
        "%s %d exam(s) in %.1f s; outputs in %s (%s); report %s; log %s",
        "finished" if summary.interrupted is None else f"stopped by {signal.Signals(summary.interrupted).name} after",
        len(summary.exams),
        summary.seconds,
        options.output_dir,
        tables or "no tables",
        summary.report,
        options.log_path,
    )
    if summary.interrupted is not None:
        return  # the caller says it in one line; failures so far are in the reports
    if summary.failed_exams:
        logger.error(
            "%d exam(s) failed: %s", len(summary.failed_exams), ", ".join(summary.failed_exams)
        )
    elif summary.series_failed:
        logger.error(
            "%d series or file(s) failed; see the reports for the reasons", summary.series_failed
        )
    if summary.audit_findings:
        logger.error(
            "the de-identification audit found %d problem(s); see deid_audit.csv before sharing "
            "anything", summary.audit_findings
        )
    if summary.missing_exams:
        logger.error(
            "%d exam(s) lack a record of %s (never processed, or the run was killed): %s",
            len(summary.missing_exams),
            " and ".join(summary.expected_stages),
            ", ".join(summary.missing_exams),
        )


# --- parallel execution -------------------------------------------------------------------------


STOP_SECONDS = 20.0
"""How long a stopping run waits for its workers to end their interrupted exams (removing their
temporary files) before it lets them go; they then exit at once. Well within the 30 s that SLURM
leaves between SIGTERM and SIGKILL by default."""


def _run_pool(
    names: Sequence[str],
    options: Options,
    n_workers: int,
    finished: Callable[[ExamOutcome], None],
) -> None:
    """Run the exams in worker processes, calling ``finished`` with each outcome.

    On SIGINT/SIGTERM (:class:`~orbitct_app.interrupt.Interrupted`, raised in this thread) the
    workers are told to stop (:class:`~orbitct_app.interrupt.WorkerLink`): no new exam starts,
    running ones unwind, and exams that finished meanwhile still count; then it is re-raised.
    """
    context = workers.start_server(options.stage)
    log_queue = context.Queue()
    listener = logging.handlers.QueueListener(log_queue, _Forward(), respect_handler_level=False)
    listener.start()
    link = interrupt.WorkerLink(context)
    threads = max(1, min(options.n_procs, usable_cores()) // n_workers)  # --n-procs is the CPU budget
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(log_queue, threads, options.stage.extracts, *link.worker_ends),
    )
    futures: dict[concurrent.futures.Future[ExamOutcome | None], str] = {}
    clean = False
    try:
        try:
            for name in names:
                futures[pool.submit(interrupt.worker_exam, process_exam, name, options)] = name
            for future in concurrent.futures.as_completed(futures):
                name = futures.pop(future)
                outcome = _collect(future, name, options)
                finished(outcome if outcome is not None else ExamOutcome(name, interrupted=True))
        except (interrupt.Interrupted, KeyboardInterrupt):
            link.stop()
            for future in futures:  # those not started (wait() would not see them cancelled by the pool)
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            started = [future for future in futures if not future.cancelled()]
            done, running = concurrent.futures.wait(started, timeout=STOP_SECONDS)
            for future in sorted(done, key=futures.__getitem__):  # those that ended before the stop
                if not future.cancelled() and future.exception() is None:
                    outcome = future.result()
                    if outcome is not None:
                        finished(outcome)
            clean = not running
            raise
        clean = True
    finally:
        if clean:
            pool.shutdown(wait=True)
        link.close()  # a worker still running exits now
        if clean:
            listener.stop()
        else:  # leave the listener (a daemon thread): a worker that exited mid-record could block it
            pool.shutdown(wait=False, cancel_futures=True)


def _collect(
    future: concurrent.futures.Future[ExamOutcome | None], name: str, options: Options
) -> ExamOutcome | None:
    """The outcome a worker returned (None: a signal stopped it), or a failure when it died."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a worker died (e.g. out of memory)
        logger.error("%s: worker failed: %s", name, one_line(err))
        return _crashed(name, options, err)


def _crashed(dicom_id: str, options: Options, err: BaseException) -> ExamOutcome:
    """Record an exam whose worker process died without returning."""
    outcome = ExamOutcome(dicom_id)
    reason = f"worker process died: {one_line(err)}"
    for module in stages.for_run(options.stage):
        record = read_record(options.state_dir, module.NAME, dicom_id)
        if record is None or not record.complete:
            fingerprint = _fingerprint(module, options)
            record = _store(_failed_record(module, dicom_id, reason, fingerprint), module, options)
            outcome.records[module.NAME] = record
            break
        outcome.records[module.NAME] = record
    return outcome


class _Forward(logging.Handler):
    """Hand records from worker processes to this process's loggers (and their handlers)."""

    def handle(self, record: logging.LogRecord) -> bool:
        logger_ = logging.getLogger(record.name)
        if logger_.isEnabledFor(record.levelno):
            logger_.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() is used
        self.handle(record)


def _worker_init(log_queue: Any, threads: int, converts: bool, alive: Any, stop: Any) -> None:
    interrupt.become_worker(alive, stop)  # first: the main process may already be gone
    root = logging.getLogger("orbitct_app")
    handler = logging.handlers.QueueHandler(log_queue)
    handler.addFilter(ControlCharFilter())  # before the message is formatted here, in the worker
    root.handlers = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    withhold_warning_text()
    set_threads(threads)  # this worker's share of the cores
    if converts:
        memory.keep_freed_memory()
