"""The worker processes' fork server: when a run uses workers, and starting the server early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orbitct_app import stages, workers
from orbitct_app.options import Options, Stage
from orbitct_app.paths import find_exams


def _input(tmp_path: Path, n_exams: int) -> Path:
    root = tmp_path / "in"
    for i in range(n_exams):
        (root / f"exam_{i}").mkdir(parents=True)
    (root / ".hidden").mkdir(parents=True)  # not an exam
    return root


@pytest.mark.parametrize(
    ("stage", "n_procs", "n_exams", "expected"),
    [
        (Stage.ALL, 2, 2, True),
        (Stage.ANONYMIZE, 4, 3, True),
        (Stage.EXTRACT, 1, 5, False),  # one process: exams run in the main process
        (Stage.ALL, 2, 1, False),  # one exam: no pool
        (Stage.REPORT, 2, 5, False),  # reads records only
    ],
)
def test_uses_workers(tmp_path: Path, stage: Stage, n_procs: int, n_exams: int, expected: bool) -> None:
    options = Options(_input(tmp_path, n_exams), tmp_path / "out", stage=stage, n_procs=n_procs)
    assert workers.uses_workers(options, len(find_exams(options.input_dir, options.participant_labels))) is expected


def test_each_stage_names_the_modules_it_runs_in_order() -> None:
    assert stages.names(Stage.ANONYMIZE) == ("anonymize",)
    assert stages.names(Stage.ALL) == ("anonymize", "extract")
    assert stages.names(Stage.REPORT) == ()
    for stage in Stage:  # the fork server preloads each stage's module: the one load() returns
        assert stages.preload(stage) == [getattr(module, "__name__", "") for module in stages.for_run(stage)]


_PROBE = """
import json, os, sys, time
from pathlib import Path
from orbitct_app import workers
from orbitct_app.options import Options
options = Options(Path(sys.argv[1]), Path(sys.argv[2]), stage=sys.argv[3], n_procs=int(sys.argv[4]))
started = workers.start_early(options)
def list_children():
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode())
    return found
deadline = time.monotonic() + 10
children = list_children()
while "" in children and time.monotonic() < deadline:  # a child between fork and exec
    time.sleep(0.05)
    children = list_children()
heavy = sorted(m for m in ("pydicom", "numpy", "cc3d") if m in sys.modules)
print(json.dumps({"started": started, "children": children, "heavy": heavy}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(("n_exams", "n_procs", "expected"), [(3, 2, True), (1, 2, False), (3, 1, False)])
def test_start_early_starts_the_fork_server_only_when_workers_will_run(
    tmp_path: Path, n_exams: int, n_procs: int, expected: bool
) -> None:
    if not Path(f"/proc/self/task/{Path('/proc/self').resolve().name}/children").exists():
        pytest.skip("the kernel does not list child processes in /proc")
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(_input(tmp_path, n_exams)), str(tmp_path / "out"), "all", str(n_procs)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    probe = json.loads(result.stdout)
    assert probe["started"] is expected
    servers = [c for c in probe["children"] if "forkserver" in c]
    assert len(servers) == (1 if expected else 0), probe["children"]
    # the main process has not imported the numeric libraries to do it: the two overlap
    assert probe["heavy"] == []


def test_start_early_leaves_a_bad_input_to_the_run(tmp_path: Path) -> None:
    options = Options(tmp_path / "missing", tmp_path / "out", n_procs=2)
    assert workers.start_early(options) is False
