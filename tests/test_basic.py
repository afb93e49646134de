"""The basic profile (PS3.15 Annex E) end to end on generated exams: no planted value and no
original UID left anywhere in OUTPUT_DIR, references that resolve, series and study structure
kept, the same UIDs in two separate runs with one key, dates, options, burned-in series, the
mapping files, the dry run and the audit."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

import orbitct_app
from orbitct_app import pipeline
from orbitct_app.cli import main
from orbitct_app.deid import audit, basic_profile, keys
from orbitct_app.errors import ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

EXAM_A, EXAM_B, EXAM_C = "exam_001", "exam_002", "exam_003"
WORKTREE = Path(orbitct_app.__file__).resolve().parents[1]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def leaks(root: Path, forbidden: list[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, value) where a forbidden value occurs in a file's bytes or in its path."""
    found = []
    for path in files_under(root):
        data = path.read_bytes() + str(path.relative_to(root)).encode()
        found += [(str(path.relative_to(root)), v) for v in forbidden if v in data]
    return found


@dataclasses.dataclass
class Input:
    root: Path
    truths: dict[str, ExamTruth]
    uids: set[str]
    """Every original UID of the input headers (registered DICOM UIDs excepted)."""
    phi_list: Path

    @property
    def forbidden(self) -> list[bytes]:
        values = {b for t in self.truths.values() for b in t.orbitct_forbidden_bytes + t.basic_forbidden_bytes}
        return sorted(values)


@pytest.fixture(scope="module")
def phi_input(tmp_path_factory: pytest.TempPathFactory) -> Input:
    """Three exams with identifiers planted at top level, in sequences and private elements.

    exam_003's files are named by their SOPInstanceUID, as some PACS exports do.
    """
    base = tmp_path_factory.mktemp("basic")
    root = base / "in"

    def axial(number: int, n: int, syntax: str) -> SeriesSpec:
        return SeriesSpec(kind="axial", series_number=number, n_slices=n, transfer_syntax=syntax, rows=48, cols=48)

    truths = {
        EXAM_A: write_exam(root, EXAM_A, seed=11),  # scout, axial (40), summary capture (2)
        EXAM_B: write_exam(
            root,
            EXAM_B,
            [
                SeriesSpec(kind="scout", series_number=1),
                axial(2, 12, RLELossless),
                axial(3, 11, ImplicitVRLittleEndian),
                SeriesSpec(kind="summary", series_number=999, n_slices=1, rows=48, cols=48),
            ],
            seed=12,
            nested=True,
            shuffle_names=True,
        ),
        EXAM_C: write_exam(root, EXAM_C, [SeriesSpec(kind="axial", series_number=2, n_slices=12, rows=32, cols=32)],
                           seed=13),
    }
    for truth in truths.values():
        assert {p.location == "top" for p in truth.planted} == {True, False}
    for series in truths[EXAM_C].series:
        renamed = []
        for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
            target = path.with_name(f"{uid}.dcm")
            path.rename(target)
            renamed.append(target)
        series.files = renamed
    # a note named after a UID: skipped (not DICOM), but its name goes to the log and the report
    (root / EXAM_C / f"notes-{truths[EXAM_C].study_uid}.txt").write_text("exported from PACS\n")
    uids = set().union(*(audit.original_uids(root / name) for name in truths))
    planted = sorted({p.value for t in truths.values() for p in t.planted if p.searchable})
    phi_list = base / "phi.txt"
    phi_list.write_text("# planted identifiers\n" + "\n".join(planted) + "\n")
    return Input(root, truths, uids, phi_list)


def test_identifiers_planted_in_forty_attributes_at_every_level(phi_input: Input) -> None:
    planted = [p for t in phi_input.truths.values() for p in t.planted]
    keywords = {p.keyword for p in planted}
    assert len({k for k in keywords if not k.startswith("(")}) >= 40
    assert {p.depth for p in planted} >= {0, 1, 2, 3}
    assert any(p.private for p in planted) and any(p.scope == "basic" and p.depth > 0 for p in planted)
    data = b"".join(f.read_bytes() for f in phi_input.truths[EXAM_A].files[:2])
    assert all(v in data for v in phi_input.truths[EXAM_A].basic_forbidden_bytes)
    assert len(phi_input.uids) >= 100


@dataclasses.dataclass
class Run:
    out: Path
    code: int
    key: Path
    maps: Path


def _basic_args(phi_input: Input, out: Path, key: Path, *extra: str) -> list[str]:
    return [str(phi_input.root), str(out), "anonymize", "--profile", "basic", "--deid-key", str(key),
            "--min-slices", "0", "--phi-list", str(phi_input.phi_list), *extra]


@pytest.fixture(scope="module")
def basic_run(phi_input: Input, tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("basic-run")
    key, maps, out = base / "secret" / "study.key", base / "maps", base / "out"
    code = main(_basic_args(phi_input, out, key, "--map-dir", str(maps), "--n-procs", "1"))
    return Run(out, code, key, maps)


def _headers(root: Path) -> dict[str, pydicom.Dataset]:
    return {str(p.relative_to(root)): pydicom.dcmread(p, stop_before_pixels=True) for p in files_under(root)}


# --- nothing identifying left -------------------------------------------------------------------


def test_no_planted_value_anywhere_in_the_output(phi_input: Input, basic_run: Run) -> None:
    assert basic_run.code == ExitCode.OK
    assert len(phi_input.forbidden) > 150
    # every file under OUTPUT_DIR: DICOM, reports, records, the log
    assert leaks(basic_run.out, phi_input.forbidden) == []


def test_no_original_uid_anywhere_in_the_output(phi_input: Input, basic_run: Run) -> None:
    forbidden = sorted(u.encode() for u in phi_input.uids)
    assert leaks(basic_run.out, forbidden) == []
    names = [p.name for p in files_under(basic_run.out / "anonymized" / EXAM_C)]
    assert len(names) == 12 and all(n.startswith("2.25.") and n.endswith(".dcm") for n in names)
    log = (basic_run.out / "logs" / "orbitct-app.log").read_text()
    assert "notes-2.25." in log  # the skipped file, named as its UID would be
    assert any(r["path"].startswith("notes-2.25.") for r in read_csv(basic_run.out / "anonymize_report.csv"))


def test_every_attribute_of_the_table_handled_at_every_depth(basic_run: Run) -> None:
    profile = basic_profile()
    for path in files_under(basic_run.out / "anonymized"):
        ds = pydicom.dcmread(path)
        assert [e.tag for e in ds.iterall() if e.tag.is_private] == []
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod[1] == "dates removed"
        assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert ds.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        for elem in ds.iterall():
            action = profile.actions.get(elem.tag)
            if elem.VR in ("DA", "DT", "TM"):
                assert elem.value in ("", None), elem.keyword  # dates removed or emptied
            if action is not None and action.value in ("X", "Z"):
                assert (action.value == "Z" and elem.value in ("", None)) or (elem.VR == "SQ" and not elem.value), elem
            if elem.VR == "UI" and elem.keyword not in ("SOPClassUID", "ReferencedSOPClassUID", "CodingSchemeUID"):
                assert str(elem.value).startswith("2.25."), elem.keyword
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert "RequestAttributesSequence" not in ds and "OtherPatientIDsSequence" not in ds
        assert ds.PatientName == ds.PatientID == path.relative_to(basic_run.out / "anonymized").parts[0]


# --- structure and consistency ------------------------------------------------------------------


def test_series_and_study_structure_and_references(phi_input: Input, basic_run: Run) -> None:
    key = keys.load_key(basic_run.key)
    for name, truth in phi_input.truths.items():
        out_root = basic_run.out / "anonymized" / name
        headers = _headers(out_root)
        sops = {ds.SOPInstanceUID for ds in headers.values()}
        assert len(sops) == len(headers)
        assert {ds.StudyInstanceUID for ds in headers.values()} == {keys.new_uid(key, truth.study_uid)}
        kept = [s for s in truth.series if s.spec.kind != "summary"]  # burned-in capture dropped
        assert len(headers) == sum(s.n_instances for s in kept)
        for series in kept:
            new_series = keys.new_uid(key, series.series_instance_uid)
            members = {rel: ds for rel, ds in headers.items() if ds.SeriesInstanceUID == new_series}
            assert {ds.SOPInstanceUID for ds in members.values()} == {
                keys.new_uid(key, u) for u in series.sop_instance_uids
            }
            assert {ds.FrameOfReferenceUID for ds in members.values()} == {
                keys.new_uid(key, truth.frame_of_reference_uid)
            }
        references = [
            item.ReferencedSOPInstanceUID
            for ds in headers.values()
            for item in ds.get("ReferencedImageSequence", [])
        ]
        assert set(references) <= sops  # the scout each image refers to is there
        assert bool(references) == any(s.spec.kind == "scout" for s in truth.series)


def test_two_separate_runs_with_one_key_give_identical_uids(
    phi_input: Input, basic_run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
    args = _basic_args(phi_input, out, basic_run.key, "--n-procs", "2")
    done = subprocess.run([sys.executable, "-m", "orbitct_app", *args], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    first, second = _headers(basic_run.out / "anonymized"), _headers(out / "anonymized")
    assert first.keys() == second.keys()
    for rel, ds in first.items():
        other = second[rel]
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds.get(keyword) == other.get(keyword), (rel, keyword)
    # another key, other UIDs
    other_key = tmp_path / "other.key"
    assert main(_basic_args(phi_input, tmp_path / "out2", other_key, "--participant-label", EXAM_C)) == 0
    third = _headers(tmp_path / "out2" / "anonymized")
    assert not {ds.SOPInstanceUID for ds in third.values()} & {ds.SOPInstanceUID for ds in first.values()}


def test_key_file_created_once_private_and_never_written_out(basic_run: Run) -> None:
    text = basic_run.key.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    assert basic_run.key.stat().st_mode & 0o077 == 0
    key = keys.load_key(basic_run.key)
    assert leaks(basic_run.out, [key, key.upper()]) == []
    log = (basic_run.out / "logs" / "orbitct-app.log").read_text()
    assert "created a new de-identification key" in log and keys.key_fingerprint(key) in log


def test_mapping_files_for_the_data_owner(phi_input: Input, basic_run: Run) -> None:
    key = keys.load_key(basic_run.key)
    uid_rows = list(csv.DictReader((basic_run.maps / "uid_map.csv").open()))
    mapped = {r["id_old"]: r["id_new"] for r in uid_rows}
    truth = phi_input.truths[EXAM_A]
    for uid in [truth.study_uid, truth.frame_of_reference_uid, *truth.series[1].sop_instance_uids]:
        assert mapped[uid] == keys.new_uid(key, uid)
    patients = list(csv.DictReader((basic_run.maps / "patient_id_map.csv").open()))
    top_ids = {t.dicom_id: next(p.value for p in t.planted if p.keyword == "PatientID" and p.location == "top")
               for t in phi_input.truths.values()}
    assert {(r["id_old"], r["id_new"]) for r in patients} == {(v, k) for k, v in top_ids.items()}
    assert not list(basic_run.out.rglob("*map*.csv"))


def test_audit_of_a_clean_run_has_no_finding(basic_run: Run) -> None:
    assert (basic_run.out / "deid_audit.csv").is_file()
    assert read_csv(basic_run.out / "deid_audit.csv") == []


# --- series with text in their pixels -----------------------------------------------------------


def test_burned_in_series_dropped_unless_kept(phi_input: Input, basic_run: Run, tmp_path: Path) -> None:
    rows = [r for r in read_csv(basic_run.out / "anonymize_report.csv") if r["series_number"] == "999"]
    assert len(rows) == 2 and {r["decision"] for r in rows} == {"dropped"}
    assert all("dropped under the basic profile" in r["reason"] and "burned_in_annotation" in r["flags"]
               for r in rows)
    out = tmp_path / "out"
    args = _basic_args(phi_input, out, basic_run.key, "--participant-label", EXAM_A, "--keep-burned-in")
    assert main(args) == ExitCode.OK
    row = next(r for r in read_csv(out / "anonymize_report.csv") if r["series_number"] == "999")
    assert row["decision"] == "kept" and "secondary_capture" in row["flags"]
    assert leaks(out, phi_input.forbidden) == []


# --- dates and retain options -------------------------------------------------------------------


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


def test_dates_shifted_per_patient_keep_intervals(phi_input: Input, basic_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _basic_args(phi_input, out, basic_run.key, "--participant-label", EXAM_A, "--dates", "shift")
    args.remove("--phi-list")  # the planted times of day are in the list, and shifting keeps them
    args.remove(str(phi_input.phi_list))
    assert main(args) == ExitCode.OK
    truth = phi_input.truths[EXAM_A]
    source = pydicom.dcmread(truth.series[1].files[0])
    result = pydicom.dcmread(out / "anonymized" / EXAM_A / truth.series[1].files[0].relative_to(truth.path))
    offset = keys.date_offset_days(keys.load_key(basic_run.key), str(source.PatientID))
    assert -3652 <= offset <= -365
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"):
        assert _date(result.get(keyword)) - _date(source.get(keyword)) == dt.timedelta(days=offset), keyword
    assert result.StudyTime == source.StudyTime  # whole-day offsets keep the time of day
    assert result.AcquisitionDateTime[:8] != source.AcquisitionDateTime[:8]
    assert result.PatientBirthDate == ""  # Z in the table, whatever the option
    assert [i.CodeValue for i in result.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert result.LongitudinalTemporalInformationModified == "MODIFIED"
    dates = {p.value.encode() for p in truth.planted if p.vr == "DA"}
    assert leaks(out / "anonymized", sorted(dates)) == []


def test_retain_options_keep_their_attributes_and_are_recorded(
    phi_input: Input, basic_run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = _basic_args(phi_input, out, basic_run.key, "--participant-label", EXAM_A,
                       "--retain", "patient-characteristics", "--retain", "device-identity")
    args.remove("--phi-list")
    args.remove(str(phi_input.phi_list))
    assert main(args) == ExitCode.OK
    truth = phi_input.truths[EXAM_A]
    source = pydicom.dcmread(truth.series[1].files[0])
    result = pydicom.dcmread(out / "anonymized" / EXAM_A / truth.series[1].files[0].relative_to(truth.path))
    for keyword in ("PatientSex", "PatientAge", "PatientWeight", "PatientSize", "EthnicGroup",
                    "StationName", "DeviceSerialNumber"):
        assert result.get(keyword) == source.get(keyword), keyword
    assert "PatientComments" not in result and "InstitutionName" not in result
    assert [i.CodeValue for i in result.DeidentificationMethodCodeSequence] == ["113100", "113109", "113108"]
    assert "retain patient-characteristics" in result.DeidentificationMethod


# --- dry run and audit --------------------------------------------------------------------------


def test_dry_run_lists_rules_and_writes_no_dicom(phi_input: Input, basic_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _basic_args(phi_input, out, basic_run.key, "--participant-label", EXAM_B, "--dry-run")
    assert main(args) == ExitCode.OK
    assert not (out / "anonymized").exists()
    rows = read_csv(out / "anonymize_dry_run.csv")
    by_rule = {(r["series_number"], r["keyword"] or r["tag"], r["action"]): int(r["count"]) for r in rows}
    assert by_rule[("2", "StudyDate", "Z")] == 12
    assert by_rule[("3", "SOPInstanceUID", "U")] == 11
    assert by_rule[("2", "RequestAttributesSequence", "X")] == 12
    assert by_rule[("2", "private", "X")] > 12
    assert by_rule[("2", "PatientName", "P")] == 12
    assert leaks(out, phi_input.forbidden + sorted(u.encode() for u in phi_input.uids)) == []
    # a real run afterwards redoes the exam (the dry run's record is not a completed anonymization)
    args.remove("--dry-run")
    assert main(args) == ExitCode.OK
    assert files_under(out / "anonymized" / EXAM_B) and not (out / "anonymize_dry_run.csv").exists()


def test_audit_reports_every_kind_of_leak_without_quoting_it(
    phi_input: Input, basic_run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(basic_run.out, out)
    truth = phi_input.truths[EXAM_A]
    leaky = out / "anonymized" / EXAM_A / "leaky.dcm"
    shutil.copy(truth.series[1].files[0], leaky)  # an original file: identifiers, private tags, UIDs
    code = main([str(phi_input.root), str(out), "anonymize", "--profile", "basic", "--audit-only",
                 "--participant-label", EXAM_A, "--phi-list", str(phi_input.phi_list)])
    assert code == ExitCode.FAILED
    rows = read_csv(out / "deid_audit.csv")
    assert {r["path"] for r in rows} == {"leaky.dcm"}
    checks = {r["check"] for r in rows}
    assert checks == {"attribute", "private", "original_uid", "phi_string"}
    keywords = {r["keyword"] for r in rows if r["check"] == "attribute"}
    assert {"StudyDate", "InstitutionName", "OtherPatientIDsSequence", "PatientComments", "PatientName"} <= keywords
    assert {"SOPInstanceUID", "StudyInstanceUID"} <= {r["keyword"] for r in rows if r["check"] == "original_uid"}
    assert ("ReferencedSOPInstanceUID", "ReferencedImageSequence[0]") in {
        (r["keyword"], r["location"]) for r in rows if r["check"] == "original_uid"
    }
    text = (out / "deid_audit.csv").read_text()
    assert [v for v in phi_input.forbidden if v.decode() in text] == []
    assert [u for u in phi_input.uids if u in text] == []
    # other exams keep their clean audit
    assert {r["dicom_id"] for r in rows} == {EXAM_A}


def test_audit_under_orbitct_checks_only_what_orbitct_promises(phi_input: Input, tmp_path: Path) -> None:
    out = tmp_path / "out"
    orbitct_values = tmp_path / "orbitct_phi.txt"
    orbitct_values.write_text("\n".join(v.decode() for v in phi_input.truths[EXAM_A].orbitct_forbidden_bytes))
    args = [str(phi_input.root), str(out), "anonymize", "--participant-label", EXAM_A, "--phi-list",
            str(orbitct_values), "--n-procs", "1"]
    assert main(args) == ExitCode.OK  # basic-only attributes (dates, StudyID ...) are not findings
    assert read_csv(out / "deid_audit.csv") == []
    # a listed value that orbitct keeps is a finding
    kept = next(p.value for p in phi_input.truths[EXAM_A].planted if p.keyword == "StudyID")
    with orbitct_values.open("a") as fh:
        fh.write(f"\n{kept}\n")
    assert main([*args, "--audit-only"]) == ExitCode.FAILED
    rows = read_csv(out / "deid_audit.csv")
    assert rows and {r["check"] for r in rows} == {"phi_string"}


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "--profile basic needs --deid-key PATH"),
        (["--deid-key", "{out}/k"], "--deid-key must not be inside OUTPUT_DIR"),
        (["--deid-key", "{inp}/k"], "--deid-key must not be inside INPUT_DIR"),
        (["--deid-key", "{tmp}/k", "--map-dir", "{out}/maps"], "--map-dir must not be inside OUTPUT_DIR"),
        (["--deid-key", "{tmp}/k", "--map-dir", "{inp}/maps"], "--map-dir must not be inside INPUT_DIR"),
        (["--deid-key", "{tmp}/k", "--retain", "everything"], "--retain"),
        (["--deid-key", "{tmp}/k", "--dry-run", "--audit-only"], "exclude each other"),
        (["--deid-key", "{tmp}/k", "--phi-list", "{tmp}/none.txt"], "--phi-list is not a readable file"),
    ],
)
def test_basic_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                            fragment: str) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "exam_001").mkdir(parents=True)
    args = [a.format(inp=inp, out=out, tmp=tmp_path) for a in extra]
    assert main([str(inp), str(out), "anonymize", "--profile", "basic", *args]) == ExitCode.USAGE
    assert fragment in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--retain", "device-identity"], "--retain only applies to --profile basic"),
        (["--dates", "shift"], "--dates shift only applies to --profile basic"),
        (["--deid-key", "{tmp}/k"], "--deid-key only applies to --profile basic"),
        (["--map-dir", "{tmp}/m"], "--map-dir only applies to --profile basic"),
    ],
)
def test_basic_options_refused_with_orbitct(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], fragment: str) -> None:
    inp = tmp_path / "in"
    (inp / "exam_001").mkdir(parents=True)
    args = [a.format(tmp=tmp_path) for a in extra]
    assert main([str(inp), str(tmp_path / "out"), "anonymize", *args]) == ExitCode.USAGE
    assert fragment in capsys.readouterr().err


def test_dry_run_not_for_the_all_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    (inp / "exam_001").mkdir(parents=True)
    assert main([str(inp), str(tmp_path / "out"), "all", "--dry-run"]) == ExitCode.USAGE
    assert "the anonymized copy, which a dry run does not write" in capsys.readouterr().err
    assert main([str(inp), str(tmp_path / "out"), "extract", "--audit-only"]) == ExitCode.USAGE
    assert "--audit-only only applies to the anonymize stage" in capsys.readouterr().err


# --- anonymize then extract -----------------------------------------------------------------------


def test_all_with_the_basic_profile_converts(phi_input: Input, basic_run: Run, tmp_path: Path) -> None:
    options = Options(phi_input.root, tmp_path / "out", stage=Stage.ALL, profile="basic", deid_key=basic_run.key,
                      participant_labels=(EXAM_A, EXAM_B), n_procs=1)
    options.validate()
    summary = pipeline.run(options)
    assert summary.exit_code == ExitCode.OK
    index = read_csv(tmp_path / "out" / "series_index.csv")
    assert {(r["dicom_id"], r["series_number"]) for r in index} == {(EXAM_A, "2"), (EXAM_B, "2"), (EXAM_B, "3")}
    assert all(r["series_instance_uid"].startswith("2.25.") for r in index)
    assert leaks(tmp_path / "out", phi_input.forbidden + sorted(u.encode() for u in phi_input.uids)) == []


def test_in_place_with_the_basic_profile(phi_input: Input, basic_run: Run, tmp_path: Path) -> None:
    root = tmp_path / "in"
    shutil.copytree(phi_input.root / EXAM_B, root / EXAM_B)
    out = tmp_path / "out"
    code = main([str(root), str(out), "anonymize", "--profile", "basic", "--deid-key", str(basic_run.key),
                 "--in-place", "--phi-list", str(phi_input.phi_list)])
    assert code == ExitCode.OK
    assert read_csv(out / "deid_audit.csv") == []
    # the same UIDs as the staged run with the same key
    staged = {ds.SOPInstanceUID for ds in _headers(basic_run.out / "anonymized" / EXAM_B).values()}
    assert {ds.SOPInstanceUID for ds in _headers(root / EXAM_B).values()} <= staged
    assert leaks(root, phi_input.forbidden + sorted(u.encode() for u in phi_input.uids)) == []
