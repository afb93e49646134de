"""examples/slurm/ on a real single-node SLURM cluster (tests/slurm_cluster.py).

submit.sh submits the array and the merge job exactly as a user would; the installed app (this
checkout, through ORBITCT_CMD) stands in for the Apptainer image. Three submissions into one
OUTPUT_DIR: every exam processed and merged; a rerun with one broken exam added (the completed
exams are skipped, the tasks succeed, the merge fails and names the exam and its task); and an
unknown label, which fails its task, so the chained merge is cancelled instead of waiting forever.

Skips where the cluster cannot start (not root, packages missing); with ORBITCT_REQUIRE_SLURM=1
(set by .ci/run after installing the packages) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import pytest

from orbitct_app.synthetic import SeriesSpec, write_exam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orbitct_app.report.tables import read_csv

from slurm_cluster import SlurmCluster, missing_requirements

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "examples" / "slurm" / "submit.sh"
QUICK = ["--spacing", "2", "--size", "128"]
SMALL = SeriesSpec(
    kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=24, slice_step=5.0
)
NAMES = [f"exam_{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    reason = missing_requirements()
    if reason:
        if os.environ.get("ORBITCT_REQUIRE_SLURM") == "1":
            pytest.fail(f"ORBITCT_REQUIRE_SLURM=1 but no SLURM cluster can start: {reason}")
        pytest.skip(f"no SLURM cluster: {reason}")
    root = Path(tempfile.mkdtemp(prefix="orbitct-slurm-"))  # short: munge's socket is in it
    try:
        with SlurmCluster(root) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _submit(cluster: SlurmCluster, work: Path, labels: Path, *extra: str, size: int) -> tuple[str, str]:
    env = {
        **{k: v for k, v in cluster.env.items() if not k.startswith(("SBATCH_", "ORBITCT_"))},
        "ORBITCT_CMD": f"{sys.executable} -m orbitct_app",
        "PYTHONPATH": str(REPO),
        "ORBITCT_ARRAY_SIZE": str(size),
        "ORBITCT_ARRAY_THROTTLE": "2",
        "ORBITCT_CPUS_PER_TASK": "1",
    }
    result = subprocess.run(
        [str(SUBMIT), "in", "out", str(labels), "all", *QUICK, *extra],
        cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    array = re.search(r"^array job (\d+):", result.stdout, re.M)
    merge = re.search(r"^merge job (\d+):", result.stdout, re.M)
    assert array and merge, result.stdout
    return array.group(1), merge.group(1)


def _wait(cluster: SlurmCluster, array: str, merge: str) -> tuple[dict[str, str], dict[str, str]]:
    """The final state of each array task (by task id) and the merge job's fields."""
    jobs = cluster.wait_jobs([array, merge], timeout=120)
    tasks = {v["ArrayTaskId"]: v["JobState"] for v in jobs.values() if v.get("ArrayJobId") == array}
    return tasks, jobs[merge]


def test_submit_runs_the_array_and_the_merge_on_slurm(cluster: SlurmCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    inp = tmp_path / "in"
    for seed, name in enumerate(NAMES):
        write_exam(inp, name, [SeriesSpec(kind="scout", series_number=1), SMALL], seed=seed)
    labels = tmp_path / "labels.txt"
    labels.write_bytes(("\r\n".join(NAMES[:3]) + "\r\n\r\n" + "\r\n".join(NAMES[3:]) + "\r\n").encode())
    out = tmp_path / "out"

    # 1. six exams, three tasks (two at a time), then the merge
    array, merge = _submit(cluster, tmp_path, labels, size=3)
    tasks, merge_job = _wait(cluster, array, merge)
    merge_out = (out / "logs" / f"merge-{merge}.out").read_text()
    assert tasks == {"1": "COMPLETED", "2": "COMPLETED", "3": "COMPLETED"}, cluster.logs()
    assert merge_job["JobState"] == "COMPLETED", merge_out
    assert "all 6 exam(s) complete" in merge_out
    assert "every array task ended COMPLETED (scontrol)" in merge_out
    for table in ("series_index", "extract_report", "anonymize_report"):
        assert sorted({r["dicom_id"] for r in read_csv(out / f"{table}.csv")}) == NAMES, table
    index = read_csv(out / "series_index.csv")
    assert len(index) == len(NAMES)
    for row in index:
        image = nib.Nifti1Image.from_filename(out / row["output_path"])
        assert image.shape[:2] == (128, 128) and image.header.get_zooms() == (2.0, 2.0, 2.0)
    for task in (1, 2, 3):  # task i took labels i and i+3, with one CPU each
        task_out = (out / "logs" / f"task-{array}_{task}.out").read_text()
        assert f"2 exam(s): {NAMES[task - 1]} {NAMES[task + 2]}" in task_out
        assert "--n-procs 1" in task_out
        assert (out / "logs" / f"task-{array}_{task}.log").exists()

    # 2. a rerun with a broken exam added: the others are skipped, the merge names the failure
    (inp / "broken").mkdir()
    (inp / "broken" / "IM0001").write_bytes(b"\0" * 10)  # not DICOM
    labels.write_text("\n".join([*NAMES, "broken"]) + "\n")
    array, merge = _submit(cluster, tmp_path, labels, size=3)
    tasks, merge_job = _wait(cluster, array, merge)
    merge_out = (out / "logs" / f"merge-{merge}.out").read_text()
    assert set(tasks.values()) == {"COMPLETED"}, tasks  # failed exams are the merge's to report
    assert merge_job["JobState"] == "FAILED" and merge_job["ExitCode"] == "3:0", merge_out
    assert f"task {array}_1 (log {out.resolve()}/logs/task-{array}_1.log):\n    broken: anonymize failed" in merge_out
    skipped = sum(
        (out / "logs" / f"task-{array}_{t}.log").read_text().count("already complete; skipped") for t in (1, 2, 3)
    )
    assert skipped == 2 * len(NAMES)  # both stages of every earlier exam
    assert sorted({r["dicom_id"] for r in read_csv(out / "series_index.csv")}) == NAMES
    assert "broken" in {r["dicom_id"] for r in read_csv(out / "anonymize_report.csv")}

    # 3. a task that fails (unknown label: usage error) cancels the chained merge
    bad = tmp_path / "bad.txt"
    bad.write_text("no_such_exam\n")
    array, merge = _submit(cluster, tmp_path, bad, size=1)
    tasks, merge_job = _wait(cluster, array, merge)
    assert tasks == {"1": "FAILED"}
    assert merge_job["JobState"] == "CANCELLED" and "DependencyNeverSatisfied" in merge_job.get("Reason", "")
    assert "participant label(s) not found" in (out / "logs" / f"task-{array}_1.out").read_text()
    print(f"SLURM test: three submissions in {time.monotonic() - started:.1f} s")
