"""Provenance: what ran, where, with which versions and options."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import socket
import sys
import uuid
from collections.abc import Sequence

from orbitct_app import __version__
from orbitct_app.options import Options

DEPENDENCIES = (
    "pydicom",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "click",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
)


def dependency_versions() -> dict[str, str]:
    """Installed versions of the runtime dependencies ('not installed' when missing)."""
    versions = {}
    for name in DEPENDENCIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
        f"host: {socket.gethostname()}, usable cores: {len(os.sched_getaffinity(0))}, "
        f"pid {os.getpid()}",
        f"dependencies: {deps}",
        f"options: {json.dumps(options.as_record(), sort_keys=True)}",
    ]
