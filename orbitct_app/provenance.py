"""Provenance: what ran, where, with which versions and options.

- every run's log opens with :func:`log_header`;
- every run writes ``OUTPUT_DIR/logs/run-<UTC start>-<run id>.json`` (:func:`run_record`): the
  command line, an equivalent command with every option spelled out, the resolved options
  (:func:`options_from_record` reads them back), versions, host, container, start and end,
  timings and counts;
- ``OUTPUT_DIR/dataset_description.json`` describes the output as a BIDS derivative
  (:func:`dataset_description`), rebuilt at the end of every run;
- each NIfTI sidecar carries :func:`generated_by`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orbitct_app import __version__, atomic
from orbitct_app.options import Options, Stage
from orbitct_app.threads import usable_cores

logger = logging.getLogger(__name__)

DEPENDENCIES = (
    "pydicom",
    "numpy",
    "connected-components-3d",
    "nibabel",
    "click",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pillow",
    "isal",
    "pytesseract",
)


def dependency_versions() -> dict[str, str]:
    """Installed versions of the runtime dependencies ('not installed' when missing)."""
    return dict(_dependency_versions())


@functools.lru_cache(maxsize=1)
def _dependency_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: a run asks for them for its log and twice for its record."""
    versions = []
    for name in DEPENDENCIES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return tuple(versions)


def new_run_id() -> str:
    """A short unique id for one run (it names the run's provenance files)."""
    return uuid.uuid4().hex[:12]


def log_header(options: Options, argv: Sequence[str] | None, run_id: str) -> list[str]:
    """Lines that open every run's log: command, versions, host and options."""
    command = shlex.join(["orbitct-app", *(argv if argv is not None else sys.argv[1:])])
    deps = ", ".join(f"{k} {v}" for k, v in dependency_versions().items())
    return [
        f"orbitct-app {__version__} run {run_id}",
        f"command: {command}",
        f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}",
        f"host: {socket.gethostname()}, usable cores: {usable_cores()}, pid {os.getpid()}",
        f"dependencies: {deps}",
        f"options: {json.dumps(options.as_record(), sort_keys=True)}",
    ]


# --- BIDS derivative description and container --------------------------------------------------

TOOL_NAME = "orbitct-app"
CODE_URL = "https://github.com/orbitct/orbitct-app"
BIDS_VERSION = "1.10.0"
DATASET_DESCRIPTION = "dataset_description.json"
DEFAULT_DATASET_NAME = "orbitct-app CT NIfTI derivatives"

CONTAINER_ENV = "ORBITCT_CONTAINER"
"""Set by the project's container images (e.g. ``ENV ORBITCT_CONTAINER=docker`` in the
Dockerfile): the container type written to ``GeneratedBy.Container.Type``."""
CONTAINER_IMAGE_ENV = "ORBITCT_CONTAINER_IMAGE"
"""Optional, set by the images too: the image reference (``GeneratedBy.Container.Tag``)."""
_APPTAINER_ENV = (("APPTAINER_CONTAINER", "apptainer"), ("SINGULARITY_CONTAINER", "singularity"))


def container(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> dict[str, str] | None:
    """The container this process runs in, as a BIDS ``GeneratedBy.Container`` object, or None.

    Apptainer/Singularity are recognised by the variables their runtime sets
    (``APPTAINER_CONTAINER``, ``SINGULARITY_CONTAINER``: the image file; only its name is
    kept); otherwise ``ORBITCT_CONTAINER`` (set in the project's images) names the type, and a
    ``/.dockerenv`` or ``/run/.containerenv`` file means Docker or Podman. The tag is
    ``ORBITCT_CONTAINER_IMAGE`` when set.
    """
    env = os.environ if environ is None else environ
    tag = env.get(CONTAINER_IMAGE_ENV, "").strip()
    kind = ""
    for variable, name in _APPTAINER_ENV:
        image = env.get(variable, "").strip()
        if image:
            kind = name
            tag = tag or Path(image).name
            break
    if not kind:
        kind = env.get(CONTAINER_ENV, "").strip().lower()
    if not kind:
        if (root / ".dockerenv").exists():
            kind = "docker"
        elif (root / "run" / ".containerenv").exists():
            kind = "podman"
    if not kind:
        return None
    result = {"Type": kind}
    if tag:
        result["Tag"] = tag
    return result


def generated_by() -> dict[str, Any]:
    """The BIDS ``GeneratedBy`` entry of this tool (with ``Container`` when in one)."""
    entry: dict[str, Any] = {"Name": TOOL_NAME, "Version": __version__, "CodeURL": CODE_URL}
    found = container()
    if found is not None:
        entry["Container"] = found
    return entry


def dataset_description(existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``dataset_description.json`` of OUTPUT_DIR as a BIDS derivative.

    Keys a person added to an existing file (License, Authors, ...) are kept; ``Name`` is kept
    when present; BIDSVersion, DatasetType and this tool's GeneratedBy entry are set.
    """
    description: dict[str, Any] = dict(existing or {})
    description.setdefault("Name", DEFAULT_DATASET_NAME)
    description["BIDSVersion"] = BIDS_VERSION
    description["DatasetType"] = "derivative"
    others = [g for g in description.get("GeneratedBy", []) if isinstance(g, dict) and g.get("Name") != TOOL_NAME]
    description["GeneratedBy"] = [generated_by(), *others]
    return description


def write_dataset_description(output_dir: Path) -> Path:
    """Write (or update) ``OUTPUT_DIR/dataset_description.json`` atomically."""
    path = output_dir / DATASET_DESCRIPTION
    existing: dict[str, Any] | None = None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        existing = loaded if isinstance(loaded, dict) else None
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        logger.warning("replacing unreadable %s (%s)", path, err)
    atomic.write_text(path, json.dumps(dataset_description(existing), indent=2, sort_keys=False) + "\n")
    return path


# --- per-run record -----------------------------------------------------------------------------

RUN_RECORD_GLOB = "run-*.json"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def command_line(options: Options) -> list[str]:
    """An ``orbitct-app`` command line that runs with exactly ``options``.

    Every option is spelled out (defaults included), so the command repeats the run even when
    a later version changes a default.
    """
    args = [TOOL_NAME, str(options.input_dir), str(options.output_dir), options.stage.value]
    for label in options.participant_labels:
        args += ["--participant-label", label]
    args += ["--min-slices", str(options.min_slices), "--profile", options.profile]
    if options.stage.anonymizes:
        args += ["--pixel-text", options.pixel_text]
    if options.in_place:
        args.append("--in-place")
    if options.thickness is not None:
        args += ["--thickness", repr(float(options.thickness[0])), repr(float(options.thickness[1]))]
    args += ["--contrast", options.contrast, "--kernel", options.kernel]
    if options.one_per_exam:
        args.append("--one-per-exam")
    if options.dry_run:
        args.append("--dry-run")
    args += [
        "--spacing", repr(float(options.spacing)),
        "--size", str(options.size),
        *(["--max-gap", repr(float(options.max_gap))] if options.max_gap is not None else []),
        "--body-threshold", repr(float(options.body_threshold)),
        "--n-procs", str(options.n_procs),
        "--log", str(options.log_path),
    ]
    if options.force:
        args.append("--force")
    return args


def options_from_record(record: Mapping[str, Any]) -> Options:
    """The :class:`Options` saved by :meth:`Options.as_record` (e.g. in a run record)."""
    values = dict(record)
    thickness = values.get("thickness")
    values["thickness"] = tuple(float(t) for t in thickness) if thickness else None
    values["participant_labels"] = tuple(values.get("participant_labels") or ())
    values["stage"] = Stage(values["stage"])
    for key in ("input_dir", "output_dir"):
        values[key] = Path(values[key])
    if values.get("log_path") is not None:
        values["log_path"] = Path(values["log_path"])
    known = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) in the record: {', '.join(unknown)}")
    return Options(**values)


def host_facts() -> dict[str, Any]:
    """Where a run ran: host, platform, Python, usable cores, pid."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "usable_cores": usable_cores(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }


def run_record(
    options: Options,
    *,
    run_id: str,
    argv: Sequence[str] | None,
    started: datetime.datetime,
    finished: datetime.datetime,
    timings: Mapping[str, Any],
    exams: Mapping[str, Any],
    counts: Mapping[str, int],
    exit_code: int,
) -> dict[str, Any]:
    """Everything needed to know and repeat one run (written as ``logs/run-*.json``)."""
    return {
        "run_id": run_id,
        "tool": {"Name": TOOL_NAME, "Version": __version__, "CodeURL": CODE_URL},
        "command": [TOOL_NAME, *argv] if argv is not None else None,
        "equivalent_command": command_line(options),
        "options": options.as_record(),
        "versions": {TOOL_NAME: __version__, "python": platform.python_version(), **dependency_versions()},
        "host": host_facts(),
        "container": container(),
        "started": started.isoformat(timespec="milliseconds"),
        "finished": finished.isoformat(timespec="milliseconds"),
        "seconds": round((finished - started).total_seconds(), 3),
        "timings": dict(timings),
        "exams": dict(exams),
        "counts": dict(counts),
        "exit_code": int(exit_code),
    }


def run_record_path(output_dir: Path, started: datetime.datetime, run_id: str) -> Path:
    """``OUTPUT_DIR/logs/run-<UTC timestamp>-<run id>.json`` (sorts by start time)."""
    stamp = started.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return output_dir / "logs" / f"run-{stamp}-{run_id}.json"


def write_run_record(output_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write a run record atomically and return its path."""
    started = datetime.datetime.fromisoformat(str(record["started"]))
    path = run_record_path(output_dir, started, str(record["run_id"]))
    atomic.write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def read_run_records(output_dir: Path) -> list[dict[str, Any]]:
    """All readable run records of OUTPUT_DIR, oldest first."""
    records = []
    for path in sorted((output_dir / "logs").glob(RUN_RECORD_GLOB)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable run record %s (%s)", path, err)
            continue
        if isinstance(data, dict):
            records.append(data)
    return sorted(records, key=lambda r: str(r.get("started", "")))
