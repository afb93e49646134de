"""The SLURM example scripts (examples/slurm/) without SLURM: which labels a task takes, the
command it runs, its exit code, what submit.sh asks sbatch for, and what the merge reports.

The scripts run as they would in a job, with the SLURM_ARRAY_* variables set by hand and
ORBITCT_CMD (or a stand-in ``apptainer``/``sbatch`` on PATH) in place of the container.
tests/test_slurm.py runs them on a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "examples" / "slurm"
ARRAY = SCRIPTS / "orbitct-array.sbatch"
MERGE = SCRIPTS / "orbitct-merge.sbatch"
SUBMIT = SCRIPTS / "submit.sh"
QUICK = ["--spacing", "2", "--size", "128"]
SMALL = SeriesSpec(
    kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=24, slice_step=5.0
)

# Records its arguments (one JSON list per call) and exits with $FAKE_RC.
FAKE = """#!/usr/bin/env bash
{python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >>"$FAKE_CALLS"
exit "${{FAKE_RC:-0}}"
"""


def _base_env() -> dict[str, str]:
    """This environment without anything SLURM or orbitct-specific leaking in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "ORBITCT_"))}


def _fake(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _labels_of(call: list[str]) -> list[str]:
    return [call[i + 1] for i, a in enumerate(call) if a == "--participant-label"]


def _value(call: list[str], option: str) -> str:
    return call[call.index(option) + 1]


class Task:
    """Runs orbitct-array.sbatch as task ``task_id`` of ``count`` with a fake app command."""

    def __init__(self, tmp_path: Path, labels_text: str, names: list[str]) -> None:
        self.tmp = tmp_path
        self.inp = tmp_path / "in"
        for name in names:
            (self.inp / name).mkdir(parents=True, exist_ok=True)
        self.out = tmp_path / "out"
        self.labels = tmp_path / "labels.txt"
        self.labels.write_bytes(labels_text.encode())
        self.fake = _fake(tmp_path / "bin", "fake-app")
        self.calls = tmp_path / "calls.jsonl"

    def run(self, task_id: int, count: int, *args: str, env: dict[str, str] | None = None,
            stage: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        self.calls.unlink(missing_ok=True)
        full_env = {
            **_base_env(),
            "ORBITCT_CMD": str(self.fake),
            "FAKE_CALLS": str(self.calls),
            "SLURM_ARRAY_JOB_ID": "900",
            "SLURM_ARRAY_TASK_ID": str(task_id),
            "SLURM_ARRAY_TASK_COUNT": str(count),
            **(env or {}),
        }
        return subprocess.run(
            ["bash", str(ARRAY), str(self.inp), str(self.out), str(self.labels), *stage, *args],
            env=full_env, capture_output=True, text=True, cwd=self.tmp,
        )


NAMES = [f"exam_{i:02d}" for i in range(1, 12)]
# 11 labels with Windows line endings, blank lines, a comment, blanks around a label, a repeat
# and no final newline: the labels are what counts, not the raw line numbers.
LABELS_TEXT = (
    "# exams for the array\r\n"
    + "\r\n".join(NAMES[:4])
    + "\r\n\r\n   \r\n"
    + f"  {NAMES[4]}  \r\n"
    + f"{NAMES[1]}\r\n"
    + "\n".join(NAMES[5:])
)


@pytest.mark.parametrize("count", [1, 3, 4, 11])
def test_task_i_takes_labels_i_i_plus_n_and_so_on(tmp_path: Path, count: int) -> None:
    task = Task(tmp_path, LABELS_TEXT, NAMES)
    seen: list[str] = []
    for task_id in range(1, count + 1):
        result = task.run(task_id, count)
        assert result.returncode == 0, result.stderr
        (call,) = _calls(task.calls)
        expected = NAMES[task_id - 1 :: count]  # labels i, i+n, i+2n, ... (1-based)
        assert _labels_of(call) == expected
        assert call[:3] == [str(task.inp.resolve()), str(task.out.resolve()), "all"]
        assert _value(call, "--log") == str(task.out.resolve() / "logs" / f"task-900_{task_id}.log")
        seen += expected
    assert sorted(seen) == NAMES  # every label exactly once


def test_zero_based_and_stepped_arrays_map_to_the_same_labels(tmp_path: Path) -> None:
    task = Task(tmp_path, LABELS_TEXT, NAMES)
    for task_id, env in (
        (0, {"SLURM_ARRAY_TASK_MIN": "0"}),
        (4, {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}),
    ):
        assert task.run(task_id, 3, env=env).returncode == 0
        index = task_id // int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
        assert _labels_of(_calls(task.calls)[0]) == NAMES[index::3]


def test_task_without_labels_does_nothing_and_succeeds(tmp_path: Path) -> None:
    task = Task(tmp_path, "exam_01\r\n\r\nexam_02\r\n", ["exam_01", "exam_02"])
    result = task.run(5, 5)
    assert result.returncode == 0
    assert "no labels" in result.stdout and not task.calls.exists()


def test_stage_options_cpus_and_the_app_exit_code(tmp_path: Path) -> None:
    task = Task(tmp_path, "exam_01\n", ["exam_01"])
    result = task.run(1, 1, *QUICK, stage=("extract",), env={"SLURM_CPUS_PER_TASK": "6"})
    assert result.returncode == 0, result.stderr
    (call,) = _calls(task.calls)
    assert call[2] == "extract" and call[call.index("--spacing") : call.index("--spacing") + 4] == QUICK
    assert _value(call, "--n-procs") == "6"
    task.run(1, 1, "--n-procs", "2", env={"SLURM_CPUS_PER_TASK": "6"})
    assert _calls(task.calls)[0].count("--n-procs") == 1
    task.run(1, 1)
    assert _value(_calls(task.calls)[0], "--n-procs") == "1"  # no --cpus-per-task: one
    # exams that failed or produced nothing are recorded for the merge: the task succeeds
    for app_rc, task_rc in ((3, 0), (4, 0), (2, 2), (1, 1)):
        assert task.run(1, 1, env={"FAKE_RC": str(app_rc)}).returncode == task_rc


def test_usage_errors(tmp_path: Path) -> None:
    task = Task(tmp_path, "exam_01\n", ["exam_01"])
    env = {**_base_env(), "ORBITCT_CMD": str(task.fake), "FAKE_CALLS": str(task.calls)}
    not_array = subprocess.run(["bash", str(ARRAY), str(task.inp), str(task.out), str(task.labels)],
                               env=env, capture_output=True, text=True)
    assert not_array.returncode == 2 and "not an array task" in not_array.stderr
    assert task.run(4, 3).returncode == 2  # outside the array
    assert task.run(1, 1, "--participant-label", "x").returncode == 2
    assert task.run(1, 1, stage=("report",)).returncode == 2
    assert not task.calls.exists()


def test_default_command_is_apptainer_with_cleanenv_and_binds(tmp_path: Path) -> None:
    task = Task(tmp_path, "exam_01\n", ["exam_01"])
    fake_apptainer = _fake(tmp_path / "path", "apptainer")
    env = {
        "ORBITCT_CMD": "",
        "PATH": f"{fake_apptainer.parent}:{os.environ['PATH']}",
        "ORBITCT_IMAGE": "/images/orbitct-app.sif",
    }
    assert task.run(1, 1, env=env).returncode == 0
    inp, out = task.inp.resolve(), task.out.resolve()
    (call,) = _calls(task.calls)
    assert call[:7] == ["run", "--cleanenv", "-B", f"{inp}:{inp}:ro", "-B", f"{out}:{out}", "/images/orbitct-app.sif"]
    assert call[7:10] == [str(inp), str(out), "all"]
    task.run(1, 1, "--in-place", env=env)  # anonymizing INPUT_DIR itself needs it writable
    assert _calls(task.calls)[0][3] == f"{inp}:{inp}"


# --- submit.sh with a stand-in sbatch ------------------------------------------------------------

FAKE_SBATCH = """#!/usr/bin/env bash
{python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >>"$FAKE_CALLS"
n=$(wc -l <"$FAKE_CALLS")
echo "$((1000 + n));cluster"
"""


def test_submit_chains_the_array_and_the_merge(tmp_path: Path) -> None:
    task = Task(tmp_path, LABELS_TEXT, NAMES)
    sbatch = tmp_path / "path" / "sbatch"
    sbatch.parent.mkdir()
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable))
    sbatch.chmod(0o755)
    image = tmp_path / "orbitct-app.sif"
    image.write_bytes(b"")
    env = {
        **_base_env(),
        "PATH": f"{sbatch.parent}:{os.environ['PATH']}",
        "FAKE_CALLS": str(task.calls),
        "ORBITCT_ARRAY_SIZE": "4",
        "ORBITCT_ARRAY_THROTTLE": "2",
        "SBATCH_OPTS": "--partition=p1 --time=1:00:00",
        "MERGE_SBATCH_OPTS": "--time=0:10:00",
    }
    result = subprocess.run(
        [str(SUBMIT), "in", "out", "labels.txt", "extract", *QUICK],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "array job 1001: 11 exam(s) in 4 task(s)" in result.stdout and "merge job 1002" in result.stdout
    array, merge = _calls(task.calls)
    out = str(task.out.resolve())
    assert array[:5] == [
        "--parsable",
        "--array=1-4%2",
        "--cpus-per-task=4",
        "--job-name=orbitct",
        f"--output={out}/logs/task-%A_%a.out",
    ]
    assert array[5:7] == ["--partition=p1", "--time=1:00:00"]
    assert array[7:] == [str(ARRAY), str(task.inp.resolve()), out, str(task.labels.resolve()), "extract", *QUICK]
    assert merge[:3] == ["--parsable", "--dependency=afterok:1001", "--kill-on-invalid-dep=yes"]
    assert merge[-3:] == [str(MERGE), out, "1001"]
    assert "--time=0:10:00" in merge and "--partition=p1" in merge
    # defaults: one task per label up to 100, 20 at a time, and the image must exist
    task.calls.unlink()
    del env["ORBITCT_ARRAY_SIZE"], env["ORBITCT_ARRAY_THROTTLE"]
    result = subprocess.run(
        [str(SUBMIT), "in", "out", "labels.txt"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert _calls(task.calls)[0][1] == "--array=1-11%20"
    image.unlink()
    result = subprocess.run(
        [str(SUBMIT), "in", "out", "labels.txt"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2 and "image not found" in result.stderr


# --- the merge, with the real app --------------------------------------------------------------


def test_merge_lists_failed_and_unprocessed_exams_by_task(tmp_path: Path) -> None:
    names = ["exam_a", "exam_b", "broken", "exam_d"]
    inp = tmp_path / "in"
    for seed, name in enumerate(names):
        if name == "broken":
            (inp / name).mkdir(parents=True)
            (inp / name / "IM0001").write_bytes(b"\0" * 10)  # not DICOM: the exam fails
        else:
            write_exam(inp, name, [SeriesSpec(kind="scout", series_number=1), SMALL], seed=seed)
    labels = tmp_path / "labels.txt"
    labels.write_text("\r\n".join(names) + "\r\n")
    out = tmp_path / "out"
    env = {
        **_base_env(),
        "ORBITCT_CMD": f"{sys.executable} -m orbitct_app",
        "PYTHONPATH": str(REPO),
        "SLURM_ARRAY_JOB_ID": "51",
        "SLURM_ARRAY_TASK_COUNT": "3",
    }
    # task 1 takes exam_a and exam_d, task 2 exam_b, task 3 broken; task 2 never runs (killed)
    for task_id in (1, 3):
        result = subprocess.run(
            ["bash", str(ARRAY), str(inp), str(out), str(labels), "all", *QUICK],
            env={**env, "SLURM_ARRAY_TASK_ID": str(task_id)}, capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    (out / "series_index.csv").unlink()  # the merge rebuilds it
    merge = subprocess.run(["bash", str(MERGE), str(out)], env=_without_slurm(env), capture_output=True, text=True)
    assert merge.returncode == 3, merge.stdout + merge.stderr
    text = merge.stdout
    assert "2 exam(s) failed or have no record, in 2 task(s)" in text
    assert f"task 51_2 (log {out.resolve()}/logs/task-51_2.log):\n    exam_b: no anonymize record" in text
    assert "task 51_3" in text and "broken: anonymize failed: no DICOM image files" in text
    assert "task 51_1" not in text
    assert {r["dicom_id"] for r in read_csv(out / "series_index.csv")} == {"exam_a", "exam_d"}
    assert (out / "logs" / "task-51_1.log").exists() and list(out.glob("logs/merge-*.log"))

    # the missing task runs (as a rerun would), the broken exam is removed from the labels
    result = subprocess.run(
        ["bash", str(ARRAY), str(inp), str(out), str(labels), "all", *QUICK],
        env={**env, "SLURM_ARRAY_TASK_ID": "2"}, capture_output=True, text=True,
    )
    assert result.returncode == 0
    labels.write_text("exam_a\nexam_b\nexam_d\n")
    shutil.rmtree(inp / "broken")
    result = subprocess.run(
        ["bash", str(ARRAY), str(inp), str(out), str(labels), "all", *QUICK],
        env={**env, "SLURM_ARRAY_JOB_ID": "52", "SLURM_ARRAY_TASK_ID": "1"}, capture_output=True, text=True,
    )
    assert result.returncode == 0
    merge = subprocess.run(["bash", str(MERGE), str(out)], env=_without_slurm(env), capture_output=True, text=True)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert "array job 52" in merge.stdout and "all 3 exam(s) complete" in merge.stdout
    assert "already complete; skipped" in (out / "logs" / "task-52_1.log").read_text()
    assert {r["dicom_id"] for r in read_csv(out / "extract_report.csv")} >= {"exam_a", "exam_b", "exam_d"}

    # an exam anonymized whose extraction never ran (the task was killed in between) is
    # incomplete for stage all, although it has a record
    (out / ".orbitct" / "extract" / "exam_d.json").unlink()
    merge = subprocess.run(
        ["bash", str(MERGE), str(out), "52"], env=_without_slurm(env), capture_output=True, text=True
    )
    assert merge.returncode == 3, merge.stdout + merge.stderr
    assert "task 52_3" in merge.stdout and "exam_d: no extract record" in merge.stdout


def test_submit_and_the_array_read_labels_alike() -> None:
    def function(path: Path) -> str:
        text = path.read_text()
        return text[text.index("read_labels() {") : text.index("\n}\n", text.index("read_labels() {"))]

    assert function(SUBMIT) == function(ARRAY)


def _without_slurm(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("SLURM_")}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_scripts_pass_shellcheck() -> None:
    scripts = [str(p) for p in sorted(SCRIPTS.iterdir()) if p.suffix in (".sh", ".sbatch")]
    result = subprocess.run(["shellcheck", "--shell=bash", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
