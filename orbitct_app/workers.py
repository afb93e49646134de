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
import os
import sys
from multiprocessing.context import ForkServerContext

from orbitct_app import stages
from orbitct_app.errors import UsageError
from orbitct_app.options import Options, Stage
from orbitct_app.paths import find_exams

logger = logging.getLogger(__name__)


def context(stage: Stage) -> ForkServerContext:
    """The multiprocessing context of the workers, its fork server preloading ``stage``'s modules."""
    ctx = multiprocessing.get_context("forkserver")
    # the command line too: each worker re-imports the main module (the orbitct-app script)
    ctx.set_forkserver_preload(["orbitct_app.cli", *stages.preload(stage)])
    return ctx


def start_server(stage: Stage) -> ForkServerContext:
    """The workers' context, with its fork server running (started now if it is not).

    The server and the workers it forks get no stderr (``/dev/null``): they report through the
    run's log queue, and what multiprocessing itself prints there is a traceback when a run is
    interrupted while a worker is being started (a lock the stopping run already released),
    which must not reach the console or a batch system's log as anything but the one line the
    run writes.
    """
    ctx = context(stage)
    saved = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(quiet, 2)
        multiprocessing.forkserver.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)
    return ctx


def uses_workers(options: Options, n_exams: int) -> bool:
    """Whether a run of ``options`` over ``n_exams`` exams runs them in worker processes."""
    return options.stage is not Stage.REPORT and min(options.n_procs, n_exams) > 1


def start_early(options: Options) -> bool:
    """Start the fork server now if the run will need it (True when started).

    Call it before importing the stage modules; the server then loads them while this process
    does the same. Any problem listing the exams is left for the run to report.
    """
    try:
        n_exams = len(find_exams(options.input_dir, options.participant_labels))
    except (OSError, UsageError):
        return False
    if not uses_workers(options, n_exams):
        return False
    start_server(options.stage)
    logger.debug("fork server started early for %d exam(s)", n_exams)
    return True
