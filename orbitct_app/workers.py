"""The worker processes' fork server: it imports the stage modules once, and can start early.

Workers are forked from a fork server (a fresh interpreter, never a copy of the main process with
its threads) that has imported the stage modules (numpy, pydicom, cc3d ...), so each worker
starts with them loaded. Starting that server takes as long as the main process's own imports;
:func:`start_early` starts it before them, so the two overlap. Workers and server never outlive
the main process, and stop when the run is interrupted (:mod:`orbitct_app.interrupt`).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import ForkServerContext

from orbitct_app.errors import UsageError
from orbitct_app.options import Options, Stage

logger = logging.getLogger(__name__)


def context(stage: Stage) -> ForkServerContext:
    """The multiprocessing context of the workers, its fork server preloading ``stage``'s modules."""
    ctx = multiprocessing.get_context("forkserver")
    # the command line too: each worker re-imports the main module (the orbitct-app script)
    ctx.set_forkserver_preload(["orbitct_app.cli", *(f"orbitct_app.{name}" for name in stage.module_names)])
    return ctx  # type: ignore[return-value]


def uses_workers(options: Options, n_exams: int) -> bool:
    """Whether a run of ``options`` over ``n_exams`` exams runs them in worker processes."""
    return options.stage is not Stage.REPORT and min(options.n_procs, n_exams) > 1


def start_early(options: Options) -> bool:
    """Start the fork server now if the run will need it (True when started).

    Call it before importing the stage modules; the server then loads them while this process
    does the same. Any problem listing the exams is left for the run to report.
    """
    try:
        n_exams = len(options.exam_dirs())
    except (OSError, UsageError):
        return False
    if not uses_workers(options, n_exams):
        return False
    context(options.stage)
    multiprocessing.forkserver.ensure_running()
    logger.debug("fork server started early for %d exam(s)", n_exams)
    return True
