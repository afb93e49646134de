"""The hostile-input battery: damaged files, links, special files and paths that lead elsewhere.

Every case asserts exactly what exists afterwards (in INPUT_DIR, OUTPUT_DIR and outside them),
the report rows and the exit code. The cases and their outcomes are listed in the table of
``docs/hostile-input.md``. Interrupted runs, full disks and long names are in
``test_interruption.py`` and ``test_resources.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

from hostile import DAMAGE, damage, tree_state, write_sr

EXAM = "exam_h"
N_SLICES = 14


def _exam(root: Path, *, implicit: bool = False, seed: int = 3) -> ExamTruth:
    syntax = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    return write_exam(
        root,
        EXAM,
        [
            SeriesSpec(kind="scout", series_number=1),
            SeriesSpec(kind="axial", series_number=2, n_slices=N_SLICES, rows=24, cols=24, transfer_syntax=syntax),
        ],
        seed=seed,
    )


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ExamTruth]]:
    made = {}
    for name, implicit in (("explicit", False), ("implicit", True)):
        root = tmp_path_factory.mktemp(name) / "in"
        made[name] = (root, _exam(root, implicit=implicit))
    return made


def _copy(template: tuple[Path, ExamTruth], tmp_path: Path) -> tuple[Path, list[Path]]:
    """A fresh copy of a template input; returns the root and the axial series' files in it."""
    root, truth = template
    copy = tmp_path / "in"
    shutil.copytree(root, copy, symlinks=True)
    files = [copy / f.relative_to(root) for f in truth.series_by_number(2).files]
    return copy, files


def _rows(out: Path, table: str = "anonymize_report") -> list[dict[str, str]]:
    return read_csv(out / f"{table}.csv")


def _log(out: Path) -> str:
    return (out / "logs" / "orbitct-app.log").read_text(encoding="utf-8")


# --- a damaged file only ever fails itself -------------------------------------------------------


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("mode", ["staged", "in_place", "implicit_vr"])
def test_a_damaged_file_fails_alone_and_is_never_deleted(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path, how: str, mode: str
) -> None:
    root, files = _copy(templates["implicit" if mode == "implicit_vr" else "explicit"], tmp_path)
    victim = files[5]
    damaged = damage(victim, how)
    rel = str(victim.relative_to(root / EXAM))
    before = tree_state(root)
    out = tmp_path / "out"
    args = [str(root), str(out), "anonymize"] + (["--in-place"] if mode == "in_place" else [])
    assert main(args) == ExitCode.FAILED

    rows = _rows(out)
    failed = [r for r in rows if r["decision"] == "failed"]
    assert [r["path"] for r in failed] == [rel]
    assert "damaged" in failed[0]["reason"] or "truncated" in failed[0]["reason"]
    series = {r["series_number"]: r for r in rows if r["series_number"]}
    assert series["2"]["decision"] == "kept" and int(series["2"]["n_files"]) == N_SLICES - 1
    assert series["1"]["decision"] == "dropped"  # the scout: the one rule that drops here
    assert f"{rel}: {failed[0]['reason']}" in _log(out)

    healthy = [f for f in files if f != victim]
    if mode == "in_place":
        assert victim.read_bytes() == damaged  # never deleted, never changed
        assert "NOT de-identified" in failed[0]["reason"]
        for path in healthy:
            assert str(pydicom.dcmread(path).PatientName) == EXAM
        assert sorted(p for p in (root / EXAM).rglob("*") if p.is_file()) == sorted(files)  # scout gone
    else:
        assert tree_state(root) == before  # the input is never changed
        written = sorted(p.relative_to(out / "anonymized" / EXAM) for p in (out / "anonymized" / EXAM).rglob("*")
                         if p.is_file())
        assert written == sorted(p.relative_to(root / EXAM) for p in healthy)


def test_non_image_objects_in_an_image_series_are_dropped_on_their_own(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    sr = files[0].parent / "SR_note.dcm"
    write_sr(sr, series_uid, "Smith^Hostile")
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.OK
    rows = _rows(out)
    series = next(r for r in rows if r["series_number"] == "2")
    assert series["decision"] == "kept" and int(series["n_files"]) == N_SLICES
    sr_row = next(r for r in rows if r["path"] == str(sr.relative_to(root / EXAM)))
    assert sr_row["decision"] == "deleted" and "non-image object (Basic Text SR Storage)" in sr_row["reason"]
    assert not sr.exists()
    assert all(str(pydicom.dcmread(f).PatientName) == EXAM for f in files)


# --- links, special files, folders that cannot be read --------------------------------------------


def test_a_linked_exam_folder_is_refused_and_what_it_points_to_is_untouched(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, _ = _copy(templates["explicit"], tmp_path)
    outside = tmp_path / "elsewhere"
    shutil.copytree(root / EXAM, outside / "exam_x")
    (root / "exam_link").symlink_to(outside / "exam_x", target_is_directory=True)
    (root / "exam_inner_link").symlink_to(root / EXAM, target_is_directory=True)
    outside_before, input_before = tree_state(outside), tree_state(root)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.FAILED
    assert tree_state(outside) == outside_before
    assert os.readlink(root / "exam_link") == str(outside / "exam_x")
    rows = {r["dicom_id"]: r for r in _rows(out) if r["decision"] == "failed"}
    assert set(rows) == {"exam_link", "exam_inner_link"}
    assert all("symbolic link" in r["reason"] for r in rows.values())
    changed = {k for k, v in tree_state(root).items() if input_before.get(k) != v}
    assert changed and all(k.startswith(EXAM + "/") for k in changed)  # only the real exam


def test_links_and_special_files_inside_an_exam_are_reported_and_never_opened(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    foreign = outside / "foreign.dcm"
    shutil.copy(files[0], foreign)
    exam = root / EXAM
    (exam / "file_link.dcm").symlink_to(foreign)
    (exam / "folder_link").symlink_to(outside, target_is_directory=True)
    os.mkfifo(exam / "a_fifo")
    outside_before = tree_state(outside)
    out = tmp_path / "out"
    # a FIFO that was opened would block the run: give it a deadline
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from orbitct_app.cli import main; sys.exit(main(sys.argv[1:]))",
         str(root), str(out), "anonymize", "--in-place", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert tree_state(outside) == outside_before
    assert os.readlink(exam / "file_link.dcm") == str(foreign) and (exam / "a_fifo").is_fifo()
    rows = {r["path"]: r for r in _rows(out) if r["path"]}
    assert rows["file_link.dcm"]["decision"] == "failed" and "symbolic link" in rows["file_link.dcm"]["reason"]
    assert rows["folder_link"]["decision"] == "failed" and "symbolic link" in rows["folder_link"]["reason"]
    assert rows["a_fifo"]["decision"] == "skipped" and "FIFO" in rows["a_fifo"]["reason"]


def test_an_unreadable_folder_is_a_failure_and_its_files_are_left_alone(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    locked = root / EXAM / "locked"
    locked.mkdir()
    hidden = locked / "IM_hidden.dcm"
    shutil.copy(files[0], hidden)
    before = hidden.read_bytes()
    real_scandir = os.scandir

    def deny(path: str | os.PathLike[str] = ".") -> Iterator[os.DirEntry[str]]:
        if Path(str(path)) == locked:  # permissions do not stop root: refuse here
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.FAILED
    assert hidden.read_bytes() == before
    row = next(r for r in _rows(out) if r["path"] == "locked")
    assert row["decision"] == "failed" and "cannot read folder (Permission denied)" in row["reason"]


def test_top_level_entries_that_are_not_exams_get_a_row(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, _ = _copy(templates["explicit"], tmp_path)
    (root / ".hidden_exam").mkdir()
    (root / "notes.txt").write_text("not an exam\n")
    os.mkfifo(root / "top_fifo")
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize"]) == ExitCode.OK
    rows = {r["path"]: r for r in _rows(out) if not r["dicom_id"]}
    assert {k: v["decision"] for k, v in rows.items()} == {
        ".hidden_exam": "skipped", "notes.txt": "skipped", "top_fifo": "skipped"
    }
    assert "hidden folder" in rows[".hidden_exam"]["reason"]
    assert "FIFO" in rows["top_fifo"]["reason"]
    assert "not exams" in (out / "report.html").read_text(encoding="utf-8")


# --- nothing is written inside INPUT_DIR, whatever links lead there --------------------------------


@pytest.mark.parametrize(
    "case",
    ["anonymized_link_to_input", "exam_output_link_to_input", "logs_link_outside", "log_in_input",
     "log_is_input_file", "log_link", "key_link_into_input", "map_dir_link_into_input"],
)
def test_write_paths_that_lead_into_input_are_refused(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    extra: list[str] = []
    if case == "anonymized_link_to_input":
        (out / "anonymized").symlink_to(root, target_is_directory=True)
    elif case == "exam_output_link_to_input":
        (out / "anonymized").mkdir()
        (out / "anonymized" / EXAM).symlink_to(root / EXAM, target_is_directory=True)
    elif case == "logs_link_outside":
        (out / "logs").symlink_to(elsewhere, target_is_directory=True)
    elif case == "log_in_input":
        extra = ["--log", str(root / "run.log")]
    elif case == "log_is_input_file":
        extra = ["--log", str(files[0])]
    elif case == "log_link":
        (elsewhere / "target.log").write_text("")
        (out / "my.log").symlink_to(elsewhere / "target.log")
        extra = ["--log", str(out / "my.log")]
    elif case == "key_link_into_input":
        (elsewhere / "keys").symlink_to(root, target_is_directory=True)
        extra = ["--profile", "basic", "--deid-key", str(elsewhere / "keys" / "study.key")]
    elif case == "map_dir_link_into_input":
        (elsewhere / "maps").symlink_to(root / EXAM, target_is_directory=True)
        key = tmp_path / "keys" / "k.key"
        extra = ["--profile", "basic", "--deid-key", str(key), "--map-dir", str(elsewhere / "maps")]
    input_before, elsewhere_before = tree_state(root), tree_state(elsewhere)
    out_before = tree_state(out)
    assert main([str(root), str(out), "anonymize", *extra]) == ExitCode.USAGE
    assert tree_state(root) == input_before
    assert tree_state(elsewhere) == elsewhere_before
    assert tree_state(out) == out_before
    err = capsys.readouterr().err
    assert "INPUT_DIR" in err or "symbolic link" in err


# --- interrupted and concurrent runs: --in-place under the basic profile is idempotent ----------


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "study.key"
    key.parent.mkdir(exist_ok=True)
    key.write_text(bytes(range(7, 39)).hex() + "\n")
    key.chmod(0o600)
    return key


def _basic(root: Path, out: Path, key: Path, *extra: str) -> list[str]:
    return [str(root), str(out), "anonymize", "--profile", "basic", "--deid-key", str(key), "--in-place", *extra]


@pytest.fixture(scope="module")
def basic_reference(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, bytes], Path]:
    """The exam as one uninterrupted ``--in-place`` basic run leaves it (with a fixed key)."""
    tmp = tmp_path_factory.mktemp("reference")
    root, _ = _copy(templates["explicit"], tmp)
    assert main(_basic(root, tmp / "out", _key(tmp))) == ExitCode.OK
    return {k: (root / EXAM / k).read_bytes() for k in _files(root / EXAM)}, root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("done", [1, 2, 7, 13, 14])
def test_a_rerun_after_an_interrupted_in_place_run_never_maps_twice(
    templates: dict[str, tuple[Path, ExamTruth]], basic_reference: tuple[dict[str, bytes], Path],
    tmp_path: Path, done: int,
) -> None:
    """The state a kill leaves (``done`` slices replaced, the rest original, the scout still
    there) is finished by a plain rerun into exactly what one uninterrupted run makes."""
    reference, _ = basic_reference
    root, files = _copy(templates["explicit"], tmp_path)
    for path in files[:done]:
        path.write_bytes(reference[str(path.relative_to(root / EXAM))])
    out = tmp_path / "out"
    assert main(_basic(root, out, _key(tmp_path))) == ExitCode.OK
    assert {k: (root / EXAM / k).read_bytes() for k in _files(root / EXAM)} == reference
    series = [r for r in _rows(out) if r["series_number"] == "2"]
    assert len(series) == 1 and series[0]["decision"] == "kept" and series[0]["n_files"] == str(N_SLICES)


def test_two_in_place_runs_at_once_leave_what_one_run_leaves(
    templates: dict[str, tuple[Path, ExamTruth]], basic_reference: tuple[dict[str, bytes], Path], tmp_path: Path
) -> None:
    reference, _ = basic_reference
    root, _ = _copy(templates["explicit"], tmp_path)
    key = _key(tmp_path)
    command = [sys.executable, "-c", "import sys; from orbitct_app.cli import main; sys.exit(main(sys.argv[1:]))"]
    runs = [subprocess.Popen([*command, *_basic(root, tmp_path / f"out{n}", key, "-q")], stderr=subprocess.PIPE,
                             text=True) for n in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in runs]
    assert [code for code, _ in results] == [ExitCode.OK, ExitCode.OK], results
    assert {k: (root / EXAM / k).read_bytes() for k in _files(root / EXAM)} == reference


def test_two_staged_runs_of_one_exam_into_one_output_both_end_complete(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-c", "import sys; from orbitct_app.cli import main; sys.exit(main(sys.argv[1:]))",
               str(root), str(out), "anonymize", "-q"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in runs]
    assert [code for code, _ in results] == [ExitCode.OK, ExitCode.OK], results
    written = _files(out / "anonymized" / EXAM)
    assert written == sorted(str(f.relative_to(root / EXAM)) for f in files)
    assert "already complete" in _log(out)  # the second run waited, then found it done


# --- a completion record holds only for the input it was made from ---------------------------------


def test_originals_restored_over_an_in_place_run_are_done_again(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    backup = tmp_path / "backup"
    shutil.copytree(root, backup)  # as a hospital's backup, with the originals' times
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.OK
    shutil.rmtree(root)
    shutil.copytree(backup, root)  # restored: identified again
    forbidden = templates["explicit"][1].orbitct_forbidden_bytes
    assert any(b in f.read_bytes() for f in files for b in forbidden)
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.OK
    assert "the exam's files changed since it was completed" in _log(out)
    assert not any(b in f.read_bytes() for f in files for b in forbidden)


def test_an_in_place_record_does_not_hold_for_a_file_that_is_identified_again(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    """Names, sizes and times can all match a restored file: the content decides."""
    from orbitct_app import pipeline
    from orbitct_app.anonymize import stage as anonymize
    from orbitct_app.options import Options, Stage
    from orbitct_app.paths import tree_state as folder_state
    from orbitct_app.report.records import read_record

    root, files = _copy(templates["explicit"], tmp_path)
    original = files[3].read_bytes()
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize", "--in-place"]) == ExitCode.OK
    options = Options(root, out, Stage.ANONYMIZE, in_place=True)
    record = read_record(options.state_dir, "anonymize", EXAM)
    assert record is not None
    assert pipeline.stale_reason(record, anonymize, root / EXAM, None, options) == ""
    files[3].write_bytes(original)
    record.input_state = dict(folder_state(root / EXAM).__dict__)  # as if nothing else told
    reason = pipeline.stale_reason(record, anonymize, root / EXAM, None, options)
    assert reason == f"{files[3].relative_to(root / EXAM)} is not de-identified (restored from a backup?)"


@pytest.mark.parametrize("change", ["file_added", "file_removed", "file_replaced", "output_removed"])
def test_a_staged_rerun_redoes_an_exam_whose_files_or_outputs_changed(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path, change: str
) -> None:
    root, files = _copy(templates["explicit"], tmp_path)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize"]) == ExitCode.OK
    exam_out = out / "anonymized" / EXAM
    if change == "file_added":
        extra = files[0].parent / "IM_late.dcm"
        shutil.copy(files[0], extra)
        ds = pydicom.dcmread(extra)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(extra)
    elif change == "file_removed":
        files[0].unlink()
    elif change == "file_replaced":
        data = files[1].read_bytes()
        files[1].write_bytes(data[:-2] + b"\x01\x00")  # one pixel differs
    else:
        shutil.rmtree(exam_out)
    assert main([str(root), str(out), "anonymize"]) == ExitCode.OK
    log = _log(out)
    assert "anonymize done again" in log and "already complete" not in log
    expected = sorted(str(p.relative_to(root / EXAM)) for p in files[1].parent.iterdir())
    assert _files(exam_out) == expected
    if change == "file_replaced":
        assert (exam_out / files[1].relative_to(root / EXAM)).read_bytes()[-2:] == b"\x01\x00"


def test_a_killed_in_place_run_loses_no_mapping(tmp_path: Path) -> None:
    """SIGKILL mid-exam under ``--in-place --map-dir``: the originals of the files already
    replaced are gone, but their mappings are in the journal, and the rerun's mapping files
    equal those of one uninterrupted run."""
    import signal
    import time

    specs = [SeriesSpec(kind="axial", series_number=2, n_slices=120, rows=24, cols=24, slice_step=0.5)]
    roots = {name: tmp_path / name / "in" for name in ("killed", "clean")}
    truth = {name: write_exam(root, EXAM, specs, seed=5) for name, root in roots.items()}
    key = _key(tmp_path)
    maps = {name: tmp_path / name / "maps" for name in roots}
    args = {name: [*_basic(roots[name], tmp_path / name / "out", key, "--map-dir", str(maps[name]), "--n-procs", "1")]
            for name in roots}
    assert main(args["clean"]) == ExitCode.OK

    files = truth["killed"].files
    originals = {p: p.read_bytes() for p in files[::8]}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from orbitct_app.cli import main; sys.exit(main(sys.argv[1:]))",
         *args["killed"], "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(p.read_bytes() != data for p, data in originals.items()) >= 3:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    replaced = sum(p.read_bytes() != data for p, data in originals.items())
    assert 0 < replaced < len(originals), "the run was not killed mid-exam"
    assert list((maps["killed"] / ".parts").glob("*.journal")), "no journal of the replaced files"
    assert main(args["killed"]) == ExitCode.OK
    for name in ("uid_map.csv", "patient_id_map.csv"):
        assert (maps["killed"] / name).read_text() == (maps["clean"] / name).read_text()
    assert not list((maps["killed"] / ".parts").glob("*.journal"))
    assert {p.name: p.read_bytes() for p in files} == {p.name: p.read_bytes() for p in truth["clean"].files}


def test_files_marked_by_another_key_are_never_changed_again(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path
) -> None:
    root, _ = _copy(templates["explicit"], tmp_path)
    assert main(_basic(root, tmp_path / "out", _key(tmp_path))) == ExitCode.OK
    before = tree_state(root)
    other = tmp_path / "other.key"
    other.write_text(bytes(range(100, 132)).hex() + "\n")
    other.chmod(0o600)
    out = tmp_path / "out2"
    assert main(_basic(root, out, other)) == ExitCode.FAILED
    assert tree_state(root) == before
    failed = [r for r in _rows(out) if r["decision"] == "failed"]
    assert len(failed) == N_SLICES and all("another key" in r["reason"] for r in failed)


def test_an_exam_whose_files_change_while_it_is_read_fails(
    templates: dict[str, tuple[Path, ExamTruth]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orbitct_app.anonymize import stage as anonymize
    from orbitct_app.discover import Exam
    from orbitct_app.discover import scan_exam as real_scan

    root, files = _copy(templates["explicit"], tmp_path)

    def scan_then_change(exam_dir: Path) -> Exam:
        exam = real_scan(exam_dir)
        shutil.copy(files[0], files[0].parent / "IM_arriving.dcm")  # a transfer still writing
        return exam

    monkeypatch.setattr(anonymize, "scan_exam", scan_then_change)
    out = tmp_path / "out"
    assert main([str(root), str(out), "anonymize"]) == ExitCode.FAILED
    row = next(r for r in _rows(out) if r["decision"] == "failed")
    assert "changed while it was processed" in row["reason"]
    monkeypatch.setattr(anonymize, "scan_exam", real_scan)
    assert main([str(root), str(out), "anonymize"]) == ExitCode.OK
    assert (out / "anonymized" / EXAM / (files[0].parent / "IM_arriving.dcm").relative_to(root / EXAM)).exists()
