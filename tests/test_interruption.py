"""Stopping a run: SIGKILL, SIGTERM and SIGINT at several moments, with and without workers.

Each test runs the installed ``orbitct-app`` console script on generated exams, signals it when
its log shows the chosen moment, and checks what is left: no process of the run, INPUT_DIR
unchanged (under ``--in-place``: every file its original or its de-identified bytes), no temporary
file after a handled signal, the exit code and the one line on stderr, outputs that are complete
where they appear, and a rerun that ends equal to an uninterrupted run.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orbitct_app import atomic, interrupt
from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.records import read_record
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

from fresh_process import comparable_output

APP = Path(sys.executable).with_name("orbitct-app")
QUICK = ["--spacing", "4", "--size", "64", "-q"]
EXAMS = [f"exam_{i}" for i in range(4)]
MANY_SMALL_FILES = SeriesSpec(
    kind="axial", series_number=2, rows=32, cols=32, pixel_spacing=(6.0, 6.0), n_slices=80, slice_step=2.0
)
MOMENTS = {
    "start": re.compile(r"exam\(s\) in "),  # the run has begun; no exam has finished
    "during": re.compile(r": series \d+ .*kept: "),  # the first exam is being written
    "after": re.compile(rf"\[{len(EXAMS)}/{len(EXAMS)}\]"),  # the last exam is done: the tables are next
}

pytestmark = [
    pytest.mark.skipif(not APP.is_file(), reason=f"the console script is not installed at {APP}"),
    pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc"),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source") / "in"
    for seed, name in enumerate(EXAMS):
        write_exam(root, name, [MANY_SMALL_FILES], seed=seed)
    return root


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The OUTPUT_DIR of an uninterrupted run of a stage (``in-place``: its INPUT_DIR), made once."""
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            base = tmp_path_factory.mktemp(f"reference-{kind}")
            if kind == "in-place":
                shutil.copytree(source, base / "in")
                args = [str(base / "in"), str(base / "out"), "anonymize", "--in-place"]
                made[kind] = base / "in"
            else:
                args = [str(source), str(base / "out"), kind]
                made[kind] = base / "out"
            assert main([*args, *QUICK, "--n-procs", "1"]) == ExitCode.OK
        return made[kind]

    return get


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def temporaries(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if atomic.PARTIAL_MARK in p.name]


def group_processes(pgid: int) -> list[str]:
    """The live processes of a process group (zombies excluded): their pid and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if int(group) == pgid and state != "Z":
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def run_and_signal(
    args: list[str], tmp_path: Path, moment: str, signum: int, *, group: bool = False
) -> tuple[int, str, int]:
    """Start the app (in a session of its own), wait for ``moment`` in its log, send ``signum``
    to it (``group``: to its whole process group, like Ctrl-C in a terminal); return its exit
    code, its stderr and its process group."""
    log = tmp_path / "run.log"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([str(APP), *args, "--log", str(log)], stderr=stderr, start_new_session=True)

    def reached() -> bool:
        assert proc.poll() is None, f"the run ended before {moment}: {stderr_path.read_text()}"
        return log.is_file() and MOMENTS[moment].search(log.read_text(errors="replace")) is not None

    try:
        wait_until(reached, 120, moment)
        (os.killpg if group else os.kill)(proc.pid, signum)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, stderr_path.read_text(), proc.pid


def assert_no_process_left(pgid: int) -> None:
    wait_until(lambda: not group_processes(pgid), 15, f"the run's processes to end: {group_processes(pgid)}")


def assert_in_place_files_whole(inp: Path, original: dict[str, str], deidentified: dict[str, str]) -> None:
    """Every file of INPUT_DIR holds its original or its de-identified bytes (never half of one)."""
    now = {rel: digest for rel, digest in hashes(inp).items() if atomic.PARTIAL_MARK not in rel}
    assert now.keys() == original.keys()
    assert all(now[rel] in (original[rel], deidentified[rel]) for rel in now)


def assert_outputs_consistent(out: Path, expected: Path) -> None:
    """What a stopped run left under final names is complete: each exam folder equals the
    uninterrupted run's, and each exam with a complete record has its folder."""
    for folder in ("anonymized", "nifti"):
        for exam in (out / folder).glob("*"):
            if atomic.PARTIAL_MARK in exam.name:
                continue  # a killed run's staging folder (a handled signal leaves none)
            assert hashes(exam).keys() == hashes(expected / folder / exam.name).keys(), exam
            if folder == "anonymized":
                assert hashes(exam) == hashes(expected / folder / exam.name), exam
    for name in EXAMS:
        record = read_record(out / ".orbitct", "anonymize", name)
        if record is not None and record.complete and (expected / "anonymized").is_dir():
            assert (out / "anonymized" / name).is_dir()
    if (out / "anonymize_report.csv").is_file():  # rows only for exams that have a record
        recorded = {n for n in EXAMS if read_record(out / ".orbitct", "anonymize", n) is not None}
        rows = read_csv(out / "anonymize_report.csv")
        assert {r["dicom_id"] for r in rows} == recorded
        assert rows == [r for r in read_csv(expected / "anonymize_report.csv") if r["dicom_id"] in recorded]


def assert_same_outputs(out: Path, expected: Path) -> None:
    assert comparable_output(out) == comparable_output(expected)
    niftis = sorted(str(p.relative_to(out)) for p in out.glob("nifti/*/*"))
    assert niftis == sorted(str(p.relative_to(expected)) for p in expected.glob("nifti/*/*"))
    for rel in niftis:
        if rel.endswith(".nii.gz"):
            with gzip.open(out / rel) as a, gzip.open(expected / rel) as b:
                assert a.read() == b.read(), rel


def rerun(args: list[str]) -> None:
    done = subprocess.run([str(APP), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.OK, done.stderr


# --- SIGKILL: nothing can be handled, but nothing may go on ---------------------------------------


@pytest.mark.parametrize("in_place", [False, True], ids=["staged", "in-place"])
def test_killed_main_process_stops_every_worker_and_the_fork_server(
    source: Path, reference: Callable[[str], Path], tmp_path: Path, in_place: bool
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(source, inp)
    out = tmp_path / "out"
    original = hashes(inp)
    args = [str(inp), str(out), "anonymize", *QUICK, "--n-procs", "2", *(["--in-place"] if in_place else [])]
    code, _, pgid = run_and_signal(args, tmp_path, "during", signal.SIGKILL)  # the main process only
    assert code == -signal.SIGKILL
    assert_no_process_left(pgid)  # workers, fork server and resource tracker: all gone within seconds
    if in_place:
        deidentified = hashes(reference("in-place"))
        assert_in_place_files_whole(inp, original, deidentified)
        rerun(args)
        assert hashes(inp) == deidentified and not temporaries(inp, out)
    else:
        assert hashes(inp) == original
        assert_outputs_consistent(out, reference("anonymize"))
        rerun(args)
        assert_same_outputs(out, reference("anonymize"))
        assert not temporaries(out)


# --- SIGTERM and SIGINT: handled ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "moment", "signum", "n_procs", "group"),
    [
        ("all", "during", signal.SIGTERM, 2, False),  # SLURM's time limit, with workers
        ("in-place", "during", signal.SIGINT, 2, True),  # Ctrl-C: every process of the group gets it
        ("in-place", "during", signal.SIGTERM, 1, False),  # no workers: the exam runs in this process
        ("anonymize", "start", signal.SIGINT, 2, False),
        ("anonymize", "after", signal.SIGTERM, 1, False),  # while the tables are written, or after
    ],
    ids=["all-during-SIGTERM-workers", "in-place-during-ctrl-c-workers", "in-place-during-SIGTERM-one-process",
         "anonymize-start-SIGINT-workers", "anonymize-after-SIGTERM-one-process"],
)
def test_sigterm_and_sigint_stop_cleanly_and_a_rerun_resumes(
    source: Path, reference: Callable[[str], Path], tmp_path: Path,
    stage: str, moment: str, signum: int, n_procs: int, group: bool,
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(source, inp)
    out = tmp_path / "out"
    original = hashes(inp)
    in_place = stage == "in-place"
    args = [str(inp), str(out), "anonymize" if in_place else stage, *QUICK, "--n-procs", str(n_procs)]
    args += ["--in-place"] if in_place else []
    code, stderr, pgid = run_and_signal(args, tmp_path, moment, signum, group=group)

    assert_no_process_left(pgid)
    assert not temporaries(inp, out)  # every temporary file removed on the way out
    if moment == "after" and code == ExitCode.OK:  # the run had ended when the signal came
        assert stderr == ""
    else:
        assert code == 128 + signum == interrupt.exit_code(signum)
        assert stderr.splitlines() == [f"WARNING: {interrupt.message(signum)}"], stderr
        if moment != "after":  # (then the signal may stop the run record itself)
            (run_record,) = (out / "logs").glob("run-*.json")  # written from the records so far
            assert f'"exit_code": {code}' in run_record.read_text()
    if in_place:
        assert_in_place_files_whole(inp, original, hashes(reference("in-place")))
    else:
        assert hashes(inp) == original
        assert_outputs_consistent(out, reference(stage))

    rerun(args)
    if in_place:
        assert hashes(inp) == hashes(reference("in-place"))
    else:
        assert_same_outputs(out, reference(stage))
    assert not temporaries(inp, out)


# --- the mechanisms, one at a time ----------------------------------------------------------------

_POOL = textwrap.dedent(
    """
    import concurrent.futures, json, multiprocessing, sys, time
    from pathlib import Path
    from orbitct_app import interrupt
    import jobs

    link = interrupt.WorkerLink(multiprocessing.get_context("forkserver"))
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("forkserver"), initializer=interrupt.become_worker,
        initargs=link.worker_ends,
    )
    marks = Path(sys.argv[1])
    futures = [pool.submit(interrupt.worker_exam, jobs.job, marks, n) for n in range(3)]
    while not (marks / "0.started").exists():
        time.sleep(0.01)
    link.stop()
    done, running = concurrent.futures.wait(futures, timeout=60)
    pool.shutdown(wait=True)
    link.close()
    print(json.dumps([f.result() for f in futures]))
    """
)

_JOBS = textwrap.dedent(
    """
    import time

    def job(marks, n):
        (marks / f"{n}.started").touch()
        try:
            while True:  # until interrupted
                time.sleep(0.01)
        finally:
            (marks / f"{n}.cleaned").touch()
    """
)


def test_stopped_workers_interrupt_the_running_exam_and_start_no_other(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(_JOBS)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    done = subprocess.run(
        [sys.executable, "-c", _POOL, str(marks)], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    assert done.stdout.strip() == "[null, null, null]"  # interrupted, then refused twice
    assert sorted(p.name for p in marks.iterdir()) == ["0.cleaned", "0.started"]  # its finally ran


def test_a_signal_never_falls_between_the_two_renames_of_a_staged_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "exam"
    final.mkdir()
    (final / "old.txt").write_text("old")
    real_replace = os.replace
    renames: list[str] = []

    def replace_then_signal(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        renames.append(Path(dst).name)
        if len(renames) == 1:  # final -> aside: SIGTERM arrives now
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # (the handler runs here if the signal is not deferred)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    with (
        interrupt.handling_signals(),
        pytest.raises(interrupt.Interrupted) as stopped,
        atomic.staged_directory(final) as staging,
    ):
        (staging / "new.txt").write_text("new")
    assert stopped.value.signum == signal.SIGTERM and len(renames) == 2  # taken up after both renames
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["exam"]  # the old folder removed on the way out


def test_a_rerun_removes_the_temporary_files_a_killed_run_left(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(source), str(out), "anonymize", *QUICK, "--n-procs", "1", "--participant-label", "exam_0"]
    assert main(args) == ExitCode.OK
    left = [  # as a SIGKILL leaves them: while a record, a table, the page, an exam folder were written
        atomic.partial_path(out / ".orbitct" / "anonymize" / "exam_0.json"),
        atomic.partial_path(out / "anonymize_report.csv"),
        atomic.partial_path(out / "report.html"),
        atomic.partial_path(out / "anonymized" / "exam_0"),
    ]
    for path in left:
        path.write_bytes(b"half")
    assert main([*args, "--force"]) == ExitCode.OK
    assert not temporaries(out)


@pytest.mark.parametrize("then_ignore", [True, False])
def test_a_signal_while_the_handlers_are_put_back_leaves_none_of_ours_behind(
    monkeypatch: pytest.MonkeyPatch, then_ignore: bool
) -> None:
    """The run is over: a SIGTERM now (sent by SLURM, or passed on by a thread still at work)
    raises nothing, and neither signal is left to our handler, which would raise again while the
    interpreter shuts down ("Exception ignored in: <module 'threading'>" on stderr)."""
    real_signal = signal.signal
    before = {signum: signal.getsignal(signum) for signum in interrupt.SIGNALS}
    restores: list[int] = []

    def signal_on_first_restore(signum: int, handler: object) -> object:
        previous = real_signal(signum, handler)  # type: ignore[arg-type]
        if handler is not interrupt._on_signal:
            restores.append(signum)
            if len(restores) == 1:  # one handler put back, the other not yet
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # (the handler runs here)
        return previous

    monkeypatch.setattr(signal, "signal", signal_on_first_restore)
    try:
        with interrupt.handling_signals(then_ignore=then_ignore):
            pass
        assert restores == list(interrupt.SIGNALS)  # both put back: the loop was not cut short
        for signum in interrupt.SIGNALS:
            expected = signal.SIG_IGN if then_ignore else before[signum]
            assert signal.getsignal(signum) == expected
    finally:
        for signum, handler in before.items():
            real_signal(signum, handler)
