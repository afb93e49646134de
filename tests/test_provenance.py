"""Provenance: dataset_description.json, the container, and per-run records that repeat a run."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path
from typing import Literal

import pytest

from orbitct_app import __version__, provenance
from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import SeriesSpec, write_exam

SMALL = SeriesSpec(
    kind="axial", series_number=2, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=24, slice_step=5.0
)
CONTAINER_VARIABLES = ("ORBITCT_CONTAINER", "ORBITCT_CONTAINER_IMAGE", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")


@pytest.fixture
def no_container(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No container variable, and a root folder without /.dockerenv."""
    for name in CONTAINER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "root"
    root.mkdir()
    return root


def test_container_detection(no_container: Path) -> None:
    root = no_container
    assert provenance.container({}, root) is None
    assert provenance.container({"ORBITCT_CONTAINER": "docker"}, root) == {"Type": "docker"}
    assert provenance.container(
        {"ORBITCT_CONTAINER": "docker", "ORBITCT_CONTAINER_IMAGE": "orbitct/orbitct-app:0.1.0"}, root
    ) == {"Type": "docker", "Tag": "orbitct/orbitct-app:0.1.0"}
    # the Apptainer runtime's own variable wins over the image's ENV (a Docker image run by Apptainer)
    assert provenance.container(
        {"ORBITCT_CONTAINER": "docker", "APPTAINER_CONTAINER": "/scratch/someone/orbitct-app_0.1.0.sif"}, root
    ) == {"Type": "apptainer", "Tag": "orbitct-app_0.1.0.sif"}
    assert provenance.container({"SINGULARITY_CONTAINER": "/x/app.sif"}, root) == {
        "Type": "singularity",
        "Tag": "app.sif",
    }
    (root / ".dockerenv").touch()
    assert provenance.container({}, root) == {"Type": "docker"}


def test_the_record_counts_the_cores_the_run_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usable cores recorded are those --n-procs defaults to and the workers share (the
    affinity capped by a cgroup CPU quota), not the affinity alone."""
    from orbitct_app import threads

    monkeypatch.setattr(threads, "_cgroup_cpu_quota", lambda: 1)
    assert provenance.host_facts()["usable_cores"] == threads.usable_cores() == 1
    header = provenance.log_header(Options(Path("/in"), Path("/out")), [], "r")
    assert any("usable cores: 1," in line for line in header)


def test_dataset_description_is_a_bids_derivative(
    no_container: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(provenance, "container", lambda: None)
    path = provenance.write_dataset_description(tmp_path)
    description = json.loads(path.read_text())
    assert description["Name"] and description["BIDSVersion"] == provenance.BIDS_VERSION
    assert description["DatasetType"] == "derivative"
    (generated,) = description["GeneratedBy"]
    assert generated == {"Name": "orbitct-app", "Version": __version__, "CodeURL": provenance.CODE_URL}
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["urls"]["Source"] == provenance.CODE_URL


def test_dataset_description_names_the_container_and_keeps_added_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORBITCT_CONTAINER", "docker")
    monkeypatch.setenv("ORBITCT_CONTAINER_IMAGE", "orbitct/orbitct-app:test")
    (tmp_path / "dataset_description.json").write_text(json.dumps({
        "Name": "OrbitCT-1K", "License": "CC-BY-4.0",
        "GeneratedBy": [{"Name": "orbitct-app", "Version": "0.0.1"}, {"Name": "manual review"}],
    }))
    description = json.loads(provenance.write_dataset_description(tmp_path).read_text())
    assert description["Name"] == "OrbitCT-1K" and description["License"] == "CC-BY-4.0"
    assert description["GeneratedBy"][0]["Version"] == __version__
    assert description["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "orbitct/orbitct-app:test"}
    assert description["GeneratedBy"][1] == {"Name": "manual review"}


@pytest.mark.parametrize(("size", "max_gap"), [(256, None), ("fit", 12.5)])
def test_options_round_trip_through_the_record(
    tmp_path: Path, size: int | Literal["fit"], max_gap: float | None
) -> None:
    options = Options(
        input_dir=tmp_path / "in", output_dir=tmp_path / "out", stage=Stage.EXTRACT,
        participant_labels=("exam_1", "exam_2"), thickness=(0.5, 1.5), spacing=0.75, size=size,
        max_gap=max_gap, body_threshold=-300, n_procs=3, force=True, contrast="without", kernel="soft",
        one_per_exam=True,
    )
    record = json.loads(json.dumps(options.as_record()))
    assert provenance.options_from_record(record) == options
    with pytest.raises(ValueError, match="unknown option"):
        provenance.options_from_record({**record, "colour": "blue"})


@pytest.mark.parametrize(("size", "max_gap"), [(256, None), ("fit", 12.5)])
def test_equivalent_command_parses_back_to_the_same_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int | Literal["fit"], max_gap: float | None
) -> None:
    (tmp_path / "in" / "exam_1").mkdir(parents=True)
    options = Options(
        input_dir=tmp_path / "in", output_dir=tmp_path / "out", stage=Stage.ALL, participant_labels=("exam_1",),
        thickness=(0.5, 1.5), spacing=0.75, size=size, max_gap=max_gap, body_threshold=-300, n_procs=3,
        force=True, min_slices=4, profile="orbitct", contrast="with", kernel="sharp", one_per_exam=True,
    )
    seen: list[Options] = []

    def fake_run(parsed: Options, **_: object) -> object:
        seen.append(parsed)
        raise OSError("stop here")

    monkeypatch.setattr("orbitct_app.pipeline.run", fake_run)
    command = provenance.command_line(options)
    assert command[0] == "orbitct-app"
    main(command[1:])
    assert seen == [options]


def test_each_run_writes_a_record_that_repeats_it(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    for seed, name in enumerate(["exam_a", "exam_b"]):
        write_exam(inp, name, [SMALL], seed=seed)
    out = tmp_path / "out"
    args = [str(inp), str(out), "extract", "--spacing", "2", "--size", "96", "--body-threshold", "-250", "-q"]
    assert main(args) == ExitCode.OK
    (path,) = (out / "logs").glob("run-*.json")
    record = json.loads(path.read_text())
    assert path.name.startswith("run-") and record["run_id"] in path.name
    assert record["command"] == ["orbitct-app", *args]
    assert record["options"]["spacing"] == 2.0 and record["options"]["body_threshold"] == -250.0
    assert record["versions"]["orbitct-app"] == __version__ and "pydicom" in record["versions"]
    assert record["host"]["hostname"] and record["host"]["python"]
    assert record["started"] <= record["finished"] and record["seconds"] >= 0
    assert set(record["timings"]["phases"]) == {"exams", "tables", "report"}
    assert record["timings"]["stages"]["extract"]["exams_processed"] == 2
    assert record["exams"] == {"total": 2, "processed": 2, "resumed": 0, "failed": 0, "missing": 0}
    assert record["counts"]["converted"] == 2 and record["exit_code"] == 0

    # repeat it from the record alone, into another folder
    options = provenance.options_from_record(record["options"])
    again = tmp_path / "again"
    command = provenance.command_line(options)
    command[2] = str(again)
    command[command.index("--log") + 1] = str(again / "logs" / "orbitct-app.log")
    assert main(command[1:]) == ExitCode.OK
    first, second = read_csv(out / "series_index.csv"), read_csv(again / "series_index.csv")
    assert first == second
    for row in first:
        with gzip.open(out / row["output_path"]) as a, gzip.open(again / row["output_path"]) as b:
            assert a.read() == b.read()
    (repeat,) = (again / "logs").glob("run-*.json")
    assert json.loads(repeat.read_text())["options"] == {
        **record["options"],
        "output_dir": str(again),
        "log_path": str(again / "logs" / "orbitct-app.log"),
    }


def test_a_second_run_adds_a_record_and_counts_resumed_exams(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_exam(inp, "exam_a", [SMALL], seed=0)
    out = tmp_path / "out"
    args = [str(inp), str(out), "extract", "--spacing", "2", "--size", "96", "-q"]
    assert main(args) == ExitCode.OK
    assert main(args) == ExitCode.OK
    records = [json.loads(p.read_text()) for p in sorted((out / "logs").glob("run-*.json"))]
    assert len(records) == 2 and records[0]["run_id"] != records[1]["run_id"]
    first, second = sorted(records, key=lambda r: r["started"])
    assert first["exams"]["processed"] == 1 and first["exams"]["resumed"] == 0
    assert second["exams"]["resumed"] == 1 and second["timings"]["stages"]["extract"]["exams_resumed"] == 1
    assert all(r["run_id"] in (out / "report.html").read_text() for r in records)
