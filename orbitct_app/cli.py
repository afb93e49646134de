"""The ``orbitct-app`` command: parse, validate, set up logging, call the pipeline, exit.

Tests call :func:`main` with a list of arguments and check the returned exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TextIO

import click

from orbitct_app import __version__, interrupt, memory, provenance, stages, workers
from orbitct_app.errors import ExitCode, UsageError, one_line, safe_traceback, withhold_warning_text
from orbitct_app.options import (
    CONTRAST_CHOICES,
    DEFAULT_BODY_THRESHOLD_HU,
    DEFAULT_CONTRAST,
    DEFAULT_KERNEL,
    DEFAULT_MIN_SLICES,
    DEFAULT_PIXEL_TEXT,
    DEFAULT_PROFILE,
    DEFAULT_SIZE,
    DEFAULT_SPACING_MM,
    FIT_MULTIPLE,
    KERNEL_CHOICES,
    MAX_GAP_SPACINGS,
    PIXEL_TEXT_MODES,
    PROFILES,
    RETAIN_OPTIONS,
    SIZE_FIT,
    Options,
    Stage,
)
from orbitct_app.progress import Progress
from orbitct_app.safe_text import ControlCharFilter, escape_controls
from orbitct_app.threads import usable_cores

logger = logging.getLogger(__name__)

PROG = "orbitct-app"
EPILOG = """\b
Examples:
  # de-identify, then convert every exam (each first-level folder of /data/raw is one exam)
  orbitct-app /data/raw /data/out all
\b
  # only two exams, keeping thin-section series (0.5-1.5 mm apart), on 4 cores
  orbitct-app /data/raw /data/out all --participant-label exam_001 \\
      --participant-label exam_002 --thickness 0.5 1.5 --n-procs 4
\b
  # convert an already de-identified tree
  orbitct-app /data/anonymized /data/out extract
\b
  # one non-contrast, soft-kernel series per exam; first see the plan (headers only)
  orbitct-app /data/anonymized /data/out extract --contrast without --kernel soft \\
      --one-per-exam --dry-run
\b
  # PS3.15 basic profile: keyed UIDs, dates shifted per patient, mapping files for the owner
  orbitct-app /data/raw /data/out all --profile basic --deid-key ~/keys/study.key \\
      --dates shift --retain patient-characteristics --map-dir ~/keys/maps
\b
Outputs: OUTPUT_DIR/anonymized/, OUTPUT_DIR/nifti/ (NIfTI, JSON sidecar and _qc.png per
series), report.html, dataset_description.json, series_index.csv, anonymize_report.csv,
extract_report.csv and logs/ (the log and a run-*.json record per run). Exit codes: 0 ok, 2 usage
error, 3 some exams or series failed, 4 nothing produced, 1 internal error, 130/143 stopped by
SIGINT/SIGTERM (a rerun resumes).
"""

# Loggers whose INFO messages reach the console; everything else shows from WARNING up.
_CONSOLE_INFO_LOGGERS = ("orbitct_app.pipeline", "orbitct_app.cli")


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int | Literal["fit"]:
    """``--size``: a whole number >= 1, or ``fit``."""
    if value == SIZE_FIT:
        return SIZE_FIT
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise click.BadParameter(f"{value!r} is neither a whole number >= 1 nor {SIZE_FIT!r}", ctx, param)
    return number


@click.command(
    name=PROG,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100, "terminal_width": 100},
)
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.argument("stage", type=click.Choice([s.value for s in Stage]))
@click.option(
    "--participant-label",
    "participant_labels",
    multiple=True,
    metavar="LABEL",
    help="Process only this exam folder (repeatable; @FILE reads one label per line). "
    "Default: all exams.",
)
@click.option(
    "--min-slices",
    type=click.IntRange(min=0),
    default=DEFAULT_MIN_SLICES,
    show_default=True,
    help="anonymize drops series with this many instances or fewer (scouts, summary screens).",
)
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default=DEFAULT_PROFILE,
    show_default=True,
    help="De-identification profile.",
)
@click.option(
    "--deid-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="PATH",
    help="basic profile: file holding the secret key that maps UIDs and dates (created with a "
    "random key if absent; never inside INPUT_DIR or OUTPUT_DIR).",
)
@click.option(
    "--retain",
    multiple=True,
    type=click.Choice(RETAIN_OPTIONS),
    help="basic profile: a PS3.15 retain option (repeatable).",
)
@click.option(
    "--dates",
    type=click.Choice(("remove", "shift")),
    default="remove",
    show_default=True,
    help="basic profile: remove dates, or shift them by a keyed per-patient offset.",
)
@click.option(
    "--keep-burned-in",
    is_flag=True,
    help="basic profile: keep series with burned-in annotation and secondary captures.",
)
@click.option(
    "--map-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="PATH",
    help="basic profile: write original -> new UID and PatientID CSVs here (outside OUTPUT_DIR).",
)
@click.option(
    "--phi-list",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Identifying strings (one per line) the audit searches the output for.",
)
@click.option(
    "--pixel-text",
    type=click.Choice(PIXEL_TEXT_MODES),
    default=DEFAULT_PIXEL_TEXT,
    show_default=True,
    help="anonymize: look for text burned into the pixels of every kept series (OCR, offline); "
    "flag keeps and reports it, drop drops the series, off skips the check.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="anonymize: list what each rule would do; write no DICOM. extract: decide every series "
    "from the headers and write the reports (the plan); write no NIfTI. Not for all.",
)
@click.option("--audit-only", is_flag=True, help="anonymize: only audit an earlier output.")
@click.option(
    "--in-place",
    is_flag=True,
    help="Anonymize INPUT_DIR itself (overwrites files atomically, deletes dropped series).",
)
@click.option(
    "--thickness",
    nargs=2,
    type=click.FloatRange(min=0),
    metavar="MIN MAX",
    default=None,
    help="Keep series whose slice spacing (mm, measured from positions) is in [MIN, MAX].",
)
@click.option(
    "--contrast",
    type=click.Choice(CONTRAST_CHOICES),
    default=DEFAULT_CONTRAST,
    show_default=True,
    help="Keep every series, only series without contrast evidence (Contrast/Bolus attributes, "
    "description keywords such as C+ or CTA), or only series with it.",
)
@click.option(
    "--kernel",
    type=click.Choice(KERNEL_CHOICES),
    default=DEFAULT_KERNEL,
    show_default=True,
    help="Keep every series, or only soft- or sharp-kernel series (vendor kernel table; an "
    "unknown kernel is kept only under any).",
)
@click.option(
    "--one-per-exam",
    is_flag=True,
    help="After every other rule, convert one series per exam: the smallest slice spacing, then "
    "a soft kernel, then the most slices, then the lowest SeriesNumber.",
)
@click.option(
    "--spacing",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SPACING_MM,
    show_default=True,
    metavar="MM",
    help="Isotropic target voxel spacing in mm.",
)
@click.option(
    "--size",
    type=str,
    callback=_size,
    default=str(DEFAULT_SIZE),
    show_default=True,
    metavar="N|fit",
    help="In-plane output size (N x N), centred on the body; 'fit': the smallest multiple of "
    f"{FIT_MULTIPLE} that holds the whole body.",
)
@click.option(
    "--max-gap",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MM",
    help="Split a series into parts where neighbouring slices are more than MM apart (nothing is "
    f"interpolated across). Default: {MAX_GAP_SPACINGS:g} x the series' median slice spacing.",
)
@click.option(
    "--body-threshold",
    type=float,
    default=DEFAULT_BODY_THRESHOLD_HU,
    show_default=True,
    metavar="HU",
    help="Body-mask threshold in HU.",
)
@click.option(
    "--n-procs",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Worker processes (exams run in parallel). Default: the usable cores.",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="PATH",
    help="Log file (DEBUG detail). Default: OUTPUT_DIR/logs/orbitct-app.log.",
)
@click.option("--force", is_flag=True, help="Redo exams that a previous run completed.")
@click.option("-v", "--verbose", count=True, help="More detail on the console (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on the console.")
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@click.pass_context
def command(
    ctx: click.Context,
    input_dir: Path,
    output_dir: Path,
    stage: str,
    participant_labels: tuple[str, ...],
    min_slices: int,
    profile: str,
    deid_key: Path | None,
    retain: tuple[str, ...],
    dates: str,
    keep_burned_in: bool,
    map_dir: Path | None,
    phi_list: Path | None,
    pixel_text: str,
    dry_run: bool,
    audit_only: bool,
    in_place: bool,
    thickness: tuple[float, float] | None,
    contrast: str,
    kernel: str,
    one_per_exam: bool,
    spacing: float,
    size: int | Literal["fit"],
    max_gap: float | None,
    body_threshold: float,
    n_procs: int | None,
    log_path: Path | None,
    force: bool,
    verbose: int,
    quiet: bool,
) -> int:
    """Turn clinical CT DICOM exams into a de-identified, analysis-ready NIfTI dataset.

    Each first-level folder of INPUT_DIR is one exam. STAGE is one of: anonymize (drop short
    series, mask identifying attributes, remove private tags), extract (axial CT series to
    0.5 mm isotropic, body-masked NIfTI), all (both, extracting from the anonymized copy) or
    report (after runs over parts of INPUT_DIR, e.g. SLURM array tasks: rebuild the tables and
    list failed or missing exams).
    """
    try:
        labels = expand_labels(participant_labels)
    except OSError as err:
        raise click.UsageError(f"cannot read participant labels: {err}", ctx) from err
    options = Options(
        input_dir=input_dir,
        output_dir=output_dir,
        stage=Stage(stage),
        participant_labels=labels,
        min_slices=min_slices,
        profile=profile,
        in_place=in_place,
        thickness=thickness or None,
        contrast=contrast,
        kernel=kernel,
        one_per_exam=one_per_exam,
        spacing=spacing,
        size=size,
        max_gap=max_gap,
        body_threshold=body_threshold,
        n_procs=n_procs or usable_cores(),
        log_path=log_path,
        force=force,
        deid_key=deid_key,
        retain=retain,
        shift_dates=dates == "shift",
        keep_burned_in=keep_burned_in,
        map_dir=map_dir,
        phi_list=phi_list,
        pixel_text=pixel_text,
        dry_run=dry_run,
        audit_only=audit_only,
    )
    try:
        options.validate()
    except UsageError as err:
        raise click.UsageError(str(err), ctx) from err
    problem = stages.unmet_requirement(options)  # e.g. --pixel-text flag without the OCR engine
    if problem is not None:
        raise click.UsageError(problem, ctx)
    workers.start_early(options)  # before the heavy imports below, so that they overlap
    numpy_left_out = (
        ctx.obj.owns_process and options.stage is Stage.ANONYMIZE and not options.checks_pixel_text
        and leave_numpy_unloaded()
    )
    from orbitct_app import pipeline  # imported here so that --help and --version stay quick

    progress = None if quiet else Progress(stage, sys.stderr)
    assert options.log_path is not None  # Options sets it
    try:
        close_logging = configure_logging(
            options.log_path,
            verbose=verbose,
            quiet=quiet,
            progress=progress,
            filters=[f for module in stages.for_run(options.stage) for f in module.log_filters(options)],
        )
    except OSError as err:
        raise click.UsageError(f"cannot write the log file {options.log_path}: {err.strerror}", ctx) from err

    run_id = provenance.new_run_id()
    try:
        for line in provenance.log_header(options, ctx.obj.argv, run_id):
            logging.getLogger(provenance.__name__).info(line)
        logger.info("%s %s: %s -> %s (log: %s)", PROG, stage, options.input_dir, options.output_dir, options.log_path)
        if numpy_left_out:
            logger.debug("numpy left unloaded: an anonymize run without --pixel-text decodes no pixel data")
        if progress is not None:
            progress.start()
        try:
            summary = pipeline.run(options, progress=progress, run_id=run_id, argv=ctx.obj.argv)
        finally:
            if progress is not None:
                progress.close()
        logger.info("report: %s; provenance: %s", summary.report, summary.run_record)
        if summary.interrupted is not None:
            logger.warning("%s", interrupt.message(summary.interrupted))
    except interrupt.Interrupted as err:  # before the run, or a second signal while it ended
        logger.warning("%s", interrupt.message(err.signum))
        return int(err.exit_code)
    except UsageError as err:
        raise click.UsageError(str(err), ctx) from err
    except OSError as err:
        logger.error("cannot continue: %s", one_line(err))
        return int(ExitCode.FAILED)
    except Exception as err:  # noqa: BLE001 - a bug: say so in one line, details in the log
        logger.error("internal error: %s; details in %s", one_line(err), options.log_path)
        logger.debug("%s", safe_traceback(err))
        return int(ExitCode.ERROR)
    finally:
        close_logging()
    return int(summary.exit_code)


@dataclasses.dataclass(frozen=True)
class Invocation:
    """How the command was invoked (click's context object)."""

    argv: tuple[str, ...]
    owns_process: bool
    """The process runs only this command (the console script; not a test or a caller's program)."""


def leave_numpy_unloaded() -> bool:
    """Keep numpy out of this process; True when it was not loaded yet and now cannot be.

    For an anonymize run with ``--pixel-text off``: it never decodes pixel data, but pydicom (for
    which numpy is optional) imports numpy and, with it, its pixel decoders and their libraries
    whenever numpy is installed. Leaving them out makes an anonymize run markedly faster, more so when the libraries
    are no longer in the page cache (the figures: ``docs/performance.md``). A ``None``
    entry in ``sys.modules`` makes ``import numpy`` raise ImportError (the import system's
    documented way to block a module), which pydicom handles as numpy being absent. Only for a
    process that runs nothing else (:attr:`Invocation.owns_process`), and only before pydicom is
    imported: once it is, its choice is made.
    """
    if "numpy" in sys.modules or "pydicom" in sys.modules:
        return False
    sys.modules["numpy"] = None  # type: ignore[assignment]
    return True


def expand_labels(values: Sequence[str]) -> tuple[str, ...]:
    """Participant labels with every ``@FILE`` replaced by the labels it lists (one per line).

    Blank lines and lines starting with ``#`` are ignored; a leading ``sub-`` is not special.
    """
    labels: list[str] = []
    for value in values:
        if value.startswith("@"):
            text = Path(value[1:]).expanduser().read_text(encoding="utf-8")
            labels.extend(
                line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
            )
        else:
            labels.append(value)
    return tuple(labels)


def configure_logging(
    log_path: Path,
    *,
    verbose: int = 0,
    quiet: bool = False,
    progress: Progress | None = None,
    filters: Sequence[logging.Filter] = (),
) -> Callable[[], None]:
    """Send the package's logs to ``log_path`` (everything) and the console (a summary).

    With an interactive ``progress`` bar, console lines are written above the bar (it is
    erased and redrawn around each). ``filters`` (the stages' log filters, such as the basic
    profile's, which writes UID-like tokens as their new UIDs) go on both. Returns a function
    that removes the handlers again.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    package = logging.getLogger("orbitct_app")
    console = _ConsoleHandler(sys.stderr, progress)
    console.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console.addFilter(_ConsoleFilter(verbose=verbose, quiet=quiet))
    file_handler = _LogFileHandler(log_path, console)
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s")
    )
    for handler in (file_handler, console):  # a name's newline never forges a line
        handler.addFilter(ControlCharFilter())
    for log_filter in filters:
        file_handler.addFilter(log_filter)
        console.addFilter(log_filter)
    package.addHandler(file_handler)
    package.addHandler(console)
    previous_level = package.level
    package.setLevel(logging.DEBUG)

    def close() -> None:
        for handler in (file_handler, console):
            package.removeHandler(handler)
            handler.close()
        package.setLevel(previous_level)

    return close


class _LogFileHandler(logging.FileHandler):
    """The log file; when it cannot be written (a full disk), that is said once on the console.

    logging's own handler prints a traceback on stderr for every record it fails to write.
    """

    def __init__(self, path: Path, console: logging.Handler) -> None:
        super().__init__(path, encoding="utf-8")
        self.console = console
        self.failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed(sys.exc_info()[1])

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            self._failed(err)

    def close(self) -> None:
        try:
            super().close()
        except OSError as err:
            self._failed(err)

    def _failed(self, err: BaseException | None) -> None:
        if self.failed:
            return
        self.failed = True
        reason = one_line(err) if err is not None else "unknown error"
        self.console.handle(
            logging.makeLogRecord(
                {
                    "name": __name__,
                    "levelno": logging.ERROR,
                    "levelname": "ERROR",
                    "msg": "cannot write the log file %s (%s); its lines are lost from here on",
                    "args": (self.baseFilename, reason),
                }
            )
        )


class _ConsoleHandler(logging.StreamHandler[TextIO]):
    """stderr, sharing the line with an interactive progress bar."""

    def __init__(self, stream: TextIO, progress: Progress | None) -> None:
        super().__init__(stream)
        self.progress = progress if progress is not None and progress.interactive else None

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is None:
            super().emit(record)
            return
        with self.progress.lock:
            self.progress.clear()
            super().emit(record)
            self.progress.redraw()


class _ConsoleFilter(logging.Filter):
    """Keep the console concise: the pipeline's progress and summary, and every warning."""

    def __init__(self, *, verbose: int, quiet: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if self.quiet:
            return False
        if self.verbose:
            return True
        return record.levelno >= logging.INFO and record.name in _CONSOLE_INFO_LOGGERS


def main(args: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """Run the command line with ``args`` (default: ``sys.argv[1:]``); return the exit code.

    ``owns_process``: this process runs nothing but this command (the console script), so it may
    leave libraries the stage does not need unloaded (see :func:`leave_numpy_unloaded`), and once
    the run is over it ignores SIGINT and SIGTERM until it exits (see
    :func:`interrupt.handling_signals`). During the run both stop it cleanly: exit code 130 or 143
    and one line on stderr.
    """
    argv = list(args) if args is not None else sys.argv[1:]
    memory.prefer_small_pages()
    withhold_warning_text()
    try:
        with interrupt.handling_signals(then_ignore=owns_process):  # SIGINT and SIGTERM stop the run cleanly
            result = command.main(
                args=argv, prog_name=PROG, standalone_mode=False, obj=Invocation(tuple(argv), owns_process)
            )
    except click.UsageError as err:
        click.echo(f"{PROG}: error: {escape_controls(err.format_message())} (see '{PROG} --help')", err=True)
        return int(ExitCode.USAGE)
    except click.ClickException as err:
        click.echo(f"{PROG}: error: {escape_controls(err.format_message())}", err=True)
        return err.exit_code
    except interrupt.Interrupted as err:  # before logging was set up, or after it was closed
        click.echo(f"WARNING: {interrupt.message(err.signum)}", err=True)  # as the console shows it
        return int(err.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"WARNING: {interrupt.message(signal.SIGINT)}", err=True)
        return int(ExitCode.INTERRUPTED)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(owns_process=True))
