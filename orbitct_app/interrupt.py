"""Stopping cleanly: SIGINT and SIGTERM, a main process that dies, and steps that must not be split.

- In the main process, :func:`handling_signals` turns SIGINT and SIGTERM into
  :class:`Interrupted`, raised in the main thread. It unwinds what runs (``finally`` blocks remove
  temporary files) up to :func:`orbitct_app.pipeline.run`, which stops the workers and writes the
  reports it can.
- A worker process (:func:`become_worker`) is tied to its main process by two pipes
  (:class:`WorkerLink`) whose writing ends only the main process holds. The main process closes
  the *stop* pipe to stop the run: the worker then refuses new exams and interrupts the running
  one (SIGTERM to its own main thread raises :class:`Interrupted` there, see :func:`worker_exam`).
  When the main process ends for any reason (SIGKILL, a crash), the kernel closes the *alive*
  pipe and the worker exits at once (``os._exit``), writing nothing more. The fork server exits
  by multiprocessing's own rule once its last client has gone (it waits for EOF on a pipe that the
  main process and every worker hold open), so nothing is left running.
- :func:`uninterrupted` wraps steps that must happen together (the two renames that replace a
  staged folder): a signal arriving meanwhile takes effect after them, and a worker whose main
  process died waits for them before it exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from types import FrameType
from typing import Any, TypeVar

from orbitct_app.errors import ExitCode

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals a run stops on cleanly."""

T = TypeVar("T")


class Interrupted(BaseException):
    """SIGINT or SIGTERM asked the run to stop.

    A BaseException (like KeyboardInterrupt), so that the per-exam ``except Exception`` handlers
    let it through and it unwinds the whole run.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> ExitCode:
        return exit_code(self.signum)


def exit_code(signum: int) -> ExitCode:
    """The exit code of a run stopped by ``signum``: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED


def message(signum: int) -> str:
    """The one line that says a run was stopped by ``signum`` and how to go on."""
    return (
        f"interrupted by {signal.Signals(signum).name}: the run stopped; rerun the same command to "
        "resume (exams completed so far are kept and skipped)"
    )


@dataclasses.dataclass
class _State:
    depth: int = 0
    """Steps that must not be split, running now (see :func:`uninterrupted`)."""
    pending: int | None = None
    """A signal that arrived during such steps."""
    worker: bool = False
    in_exam: bool = False
    interrupting: bool = False
    stop: multiprocessing.connection.Connection | None = None
    run_over: bool = False
    """The main process's run has ended: a signal now changes nothing."""


_state = _State()
_section = threading.RLock()
"""Held during steps that must not be split; a worker whose main process died takes it to exit."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.run_over:
        return  # the handlers are being put back: nothing more to stop (see handling_signals)
    if _state.depth:
        _state.pending = signum  # taken up when the steps are done
        return
    if _state.worker:
        if not _state.in_exam or _state.interrupting:
            return  # idle: the pool decides; already stopping: let the clean-up finish
        _state.interrupting = True
    raise Interrupted(signum)


@contextlib.contextmanager
def handling_signals(*, then_ignore: bool = False) -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`Interrupted` in the main thread.

    Afterwards the handlers in place before are restored, or with ``then_ignore`` (for a process
    that only ends after this) both signals are ignored: the work is done, and a signal now would
    only kill the process before it reports its exit code. Called from another thread (signal
    handlers belong to the main thread) it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    _state.run_over = False
    try:
        yield
    finally:
        # From here a signal, or one a thread still at work passes on (see uninterrupted), raises
        # nothing: raised while the handlers are put back, it would leave one of ours in place to
        # raise again while the interpreter shuts down.
        _state.run_over = True
        for signum, handler in previous.items():
            if then_ignore:
                signal.signal(signum, signal.SIG_IGN)
            elif handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Run the steps within together: a SIGINT or SIGTERM arriving meanwhile takes effect right
    after them, and a worker whose main process died exits only after them."""
    pending = None
    try:
        with _section:
            _state.depth += 1
            try:
                yield
            finally:
                _state.depth -= 1
                if _state.depth == 0:
                    pending, _state.pending = _state.pending, None
    finally:
        if pending is not None:
            if threading.current_thread() is threading.main_thread():
                _on_signal(pending, None)
            else:  # the handler runs in the main thread
                signal.pthread_kill(threading.main_thread().ident or 0, pending)


# --- worker processes ---------------------------------------------------------------------------


class WorkerLink:
    """The two pipes between a pool's main process and its workers (see the module docstring).

    Create it in the main process before the workers start and give :attr:`worker_ends` to each
    worker's initializer, which passes them to :func:`become_worker`.
    """

    def __init__(self, context: BaseContext) -> None:
        self._alive_r, self._alive_w = context.Pipe(duplex=False)
        self._stop_r, self._stop_w = context.Pipe(duplex=False)

    @property
    def worker_ends(self) -> tuple[multiprocessing.connection.Connection, multiprocessing.connection.Connection]:
        """(alive, stop): the reading ends, for the workers."""
        return self._alive_r, self._stop_r

    def stop(self) -> None:
        """Ask every worker to stop: no new exam, and the running one is interrupted."""
        self._stop_w.close()

    def close(self) -> None:
        """Release the pipes; a worker still running exits at once (as if this process had died)."""
        for end in (self._stop_w, self._alive_w, self._stop_r, self._alive_r):
            end.close()


def become_worker(
    alive: multiprocessing.connection.Connection, stop: multiprocessing.connection.Connection
) -> None:
    """Make this process a worker tied to its pool's main process (call it in the initializer).

    SIGINT and SIGTERM interrupt the exam running under :func:`worker_exam` (and are ignored
    between exams: the pool ends idle workers); the main process closing ``stop`` does the same
    for every worker; the main process ending closes ``alive``, and this process then exits at
    once.
    """
    _state.worker = True
    _state.run_over = False  # (forked from a process whose run may have ended)
    _state.stop = stop
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    main_thread = threading.main_thread().ident or 0

    def watch() -> None:
        waiting = [alive, stop]
        while True:
            ready = multiprocessing.connection.wait(waiting)
            if alive in ready:  # EOF: the main process is gone; write nothing more
                with _section:
                    os._exit(1)
            if stop in ready:  # EOF: the run stops
                waiting = [alive]
                signal.pthread_kill(main_thread, signal.SIGTERM)

    threading.Thread(target=watch, name="orbitct-main-watch", daemon=True).start()


def worker_exam(func: Callable[..., T], *args: Any) -> T | None:
    """``func(*args)`` in a worker: None when the run is stopping (nothing done) or a signal
    interrupted it (its ``finally`` blocks have removed its temporary files)."""
    try:
        return _exam(func, *args)
    except Interrupted:  # also one raised while _exam ended
        return None


def _exam(func: Callable[..., T], *args: Any) -> T | None:
    _state.interrupting = False
    _state.in_exam = True
    try:
        if _state.stop is not None and _state.stop.poll():  # EOF: the run is stopping
            return None
        return func(*args)
    finally:
        _state.in_exam = False
