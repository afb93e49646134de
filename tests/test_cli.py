"""The command-line contract: help, version, options, usage errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbitct_app import __version__
from orbitct_app.cli import main
from orbitct_app.errors import ExitCode


def test_help_shows_usage_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "INPUT_DIR OUTPUT_DIR {anonymize|extract|all|report}" in out
    for option in (
        "--participant-label",
        "--min-slices",
        "--profile",
        "--in-place",
        "--thickness",
        "--spacing",
        "--size",
        "--body-threshold",
        "--n-procs",
        "--log",
        "--version",
    ):
        assert option in out
    assert "Examples:" in out and "orbitct-app /data/raw /data/out all" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def _usage_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and int(code) == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one clear line
    assert lines[0].startswith("orbitct-app: error: ")
    return lines[0]


def test_unknown_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, [str(tmp_path), str(tmp_path / "out"), "convert"])
    assert "'convert' is not one of 'anonymize', 'extract', 'all'" in line


def test_missing_input_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, [str(tmp_path / "nope"), str(tmp_path / "out"), "all"])
    assert "INPUT_DIR does not exist" in line
    assert not (tmp_path / "out").exists()  # nothing was created


def test_missing_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert "Missing argument" in _usage_error(capsys, [])


def test_input_dir_not_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file.dcm"
    f.write_bytes(b"x")
    assert "INPUT_DIR is not a folder" in _usage_error(capsys, [str(f), str(tmp_path / "o"), "all"])


@pytest.mark.parametrize("inside", ["out", "a/b/out", "."])
def test_output_inside_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: str) -> None:
    line = _usage_error(capsys, [str(tmp_path), str(tmp_path / inside), "anonymize"])
    assert "OUTPUT_DIR must not be" in line


def test_input_inside_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    assert "INPUT_DIR must not be inside OUTPUT_DIR" in _usage_error(
        capsys, [str(tmp_path / "in"), str(tmp_path), "extract"]
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--min-slices", "-1"], "--min-slices"),
        (["--profile", "strict"], "--profile"),
        (["--thickness", "1.5"], "--thickness"),
        (["--thickness", "2", "1"], "--thickness needs 0 <= MIN <= MAX"),
        (["--spacing", "0"], "--spacing"),
        (["--size", "0"], "--size"),
        (["--size", "wide"], "--size"),
        (["--max-gap", "0"], "--max-gap"),
        (["--max-gap", "inf"], "--max-gap must be a number of mm > 0"),
        (["--n-procs", "0"], "--n-procs"),
        (["--body-threshold", "soft"], "--body-threshold"),
        (["--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_option_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    (tmp_path / "in").mkdir()
    line = _usage_error(capsys, [str(tmp_path / "in"), str(tmp_path / "out"), "all", *args])
    assert fragment in line


def test_in_place_needs_an_anonymizing_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    line = _usage_error(capsys, [str(tmp_path / "in"), str(tmp_path / "out"), "extract", "--in-place"])
    assert "--in-place" in line


def test_unknown_participant_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in" / "exam_001").mkdir(parents=True)
    line = _usage_error(
        capsys,
        [str(tmp_path / "in"), str(tmp_path / "out"), "all", "--participant-label", "exam_009"],
    )
    assert "participant label(s) not found" in line and "exam_009" in line


def test_empty_input_produces_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    code = main([str(tmp_path / "in"), str(tmp_path / "out"), "all"])
    assert code == ExitCode.NOTHING
    log = (tmp_path / "out" / "logs" / "orbitct-app.log").read_text()
    assert "orbitct-app" in log and "command:" in log and "pydicom" in log and "options:" in log


def test_log_option_writes_there(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    log = tmp_path / "elsewhere" / "run.log"
    main([str(tmp_path / "in"), str(tmp_path / "out"), "anonymize", "--log", str(log)])
    assert log.is_file() and "command:" in log.read_text()


def test_unwritable_log_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    line = _usage_error(
        capsys, [str(tmp_path / "in"), str(tmp_path / "out"), "all", "--log", str(blocker / "x.log")]
    )
    assert "cannot write the log file" in line


def test_participant_labels_from_a_file(tmp_path: Path) -> None:
    from orbitct_app.cli import expand_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("exam_002\n\n# a comment\n  exam_003  \n")
    assert expand_labels(["exam_001", f"@{labels}"]) == ("exam_001", "exam_002", "exam_003")


def test_missing_label_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    line = _usage_error(
        capsys, [str(tmp_path / "in"), str(tmp_path / "out"), "all", "--participant-label", f"@{tmp_path}/nope.txt"]
    )
    assert "cannot read participant labels" in line


@pytest.mark.parametrize(
    ("text", "expected"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1), ("garbage", None)]
)
def test_cgroup_cpu_quota(tmp_path: Path, text: str, expected: int | None) -> None:
    from orbitct_app.threads import _cgroup_cpu_quota

    (tmp_path / "cpu.max").write_text(text)
    assert _cgroup_cpu_quota(tmp_path / "cpu.max") == expected
    assert _cgroup_cpu_quota(tmp_path / "absent") is None


def test_foreign_error_messages_are_withheld() -> None:
    """A library's message may quote a header value: only its type and our location are shown."""
    from orbitct_app.errors import SeriesError, one_line, safe_traceback

    secret = "".join(["DO", "E^JOHN"])  # (not in the source text, which tracebacks show)

    def fail() -> None:
        raise ValueError(f"invalid value {secret!r} for VR PN")

    try:
        fail()
    except ValueError as err:
        line, trace = one_line(err), safe_traceback(err)
    assert secret not in line and secret not in trace
    assert line.startswith("ValueError (message withheld")  # no orbitct_app frame to name here
    assert "fail()" in trace  # the frames are there for debugging
    assert one_line(SeriesError("3 slices lack a position")) == "3 slices lack a position"
    assert one_line(PermissionError(13, "Permission denied", "/x")) == "PermissionError: Permission denied"


def test_an_internal_error_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orbitct_app import pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline, "run", broken)
    (tmp_path / "in").mkdir()
    code = main([str(tmp_path / "in"), str(tmp_path / "out"), "all"])
    assert code == ExitCode.ERROR and int(code) == 1
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and "a bug" not in err
    assert "Traceback" in (tmp_path / "out" / "logs" / "orbitct-app.log").read_text()
