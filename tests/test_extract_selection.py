"""Choosing series: --contrast, --kernel, --one-per-exam, and extract --dry-run (the plan).

Generated exams hold each kind of series a clinical head exam has: thin and thick, soft and
sharp kernels (Siemens and GE), contrast shown by the Contrast/Bolus attributes or only by the
description. A dry run must decide exactly as a real run does, from the headers alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import UID, RLELossless

from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

SMALL: dict[str, Any] = {"rows": 64, "cols": 64, "pixel_spacing": (3.8, 3.8)}
QUICK = ["--spacing", "2", "--size", "128", "-q"]  # 256 mm: the whole phantom head, nothing cropped


def thin(number: int, kernel: str = "H30s", manufacturer: str = "SIEMENS", **more: Any) -> SeriesSpec:
    """1 mm apart, 30 slices (unless ``n_slices`` says otherwise)."""
    values = {"n_slices": 30, **SMALL, **more}
    return SeriesSpec(kind="axial", series_number=number, slice_step=1.0, convolution_kernel=kernel,
                      manufacturer=manufacturer, **values)


def thick(number: int, kernel: str = "H30s", manufacturer: str = "SIEMENS", **more: Any) -> SeriesSpec:
    """3 mm apart, 10 slices (unless ``n_slices`` says otherwise)."""
    values = {"n_slices": 10, **SMALL, **more}
    return SeriesSpec(kind="axial", series_number=number, slice_step=3.0, convolution_kernel=kernel,
                      manufacturer=manufacturer, **values)


IOHEXOL = (("ContrastBolusAgent", "IOHEXOL"), ("ContrastBolusRoute", "IV"), ("ContrastBolusVolume", "80"))
HEAD_EXAM = [
    SeriesSpec(kind="scout", series_number=1),
    thin(2, "H30s"),                                             # thin, Siemens soft
    thin(3, "H60s"),                                             # thin, Siemens sharp
    thick(4, "STANDARD", "GE MEDICAL SYSTEMS"),                  # thick, GE soft
    thick(5, "BONE", "GE MEDICAL SYSTEMS"),                      # thick, GE sharp
    thin(6, "H30s", contrast_bolus=IOHEXOL, series_description="Head 1.0 H30s"),  # contrast by tags only
    thin(7, "H30s", series_description="HEAD CTA 1.0"),         # contrast by the description only
    thin(8, "H30s", contrast_bolus=(("ContrastBolusAgent", "NONE"),), series_description="HEAD NON CONTRAST"),
    thin(9, "XYZ"),                                              # a kernel nobody knows
    thin(10, "H30s", contrast_bolus=(("ContrastBolusAgentSequence", "Iohexol"),)),  # the coded agent
]


@pytest.fixture(scope="module")
def head_exam(tmp_path_factory: pytest.TempPathFactory) -> ExamTruth:
    root = tmp_path_factory.mktemp("select") / "in"
    return write_exam(root, "exam_head", HEAD_EXAM, seed=21, plant_phi=False)


def run(root: Path, out: Path, *options: str) -> dict[int, dict[str, str]]:
    code = main([str(root), str(out), "extract", *QUICK, *options])
    assert code in (ExitCode.OK, ExitCode.NOTHING), code
    return {int(r["series_number"]): r for r in read_csv(out / "extract_report.csv")}


def decisions(rows: dict[int, dict[str, str]]) -> dict[int, str]:
    return {number: row["decision"] for number, row in rows.items()}


def test_any_is_the_original_behaviour(head_exam: ExamTruth, tmp_path: Path) -> None:
    rows = run(head_exam.path.parent, tmp_path / "out", "--dry-run")
    assert decisions(rows) == {1: "excluded", **dict.fromkeys(range(2, 11), "converted")}
    kernel_class = {n: rows[n]["kernel_class"] for n in range(2, 11)}
    assert kernel_class == {2: "soft", 3: "sharp", 4: "soft", 5: "sharp", 6: "soft", 7: "soft", 8: "soft",
                            9: "unknown", 10: "soft"}
    contrast = {n: rows[n]["contrast_evidence"] for n in range(2, 11) if rows[n]["contrast"] == "yes"}
    assert contrast == {
        6: "ContrastBolusAgent; ContrastBolusRoute; ContrastBolusVolume",
        7: "description keyword CTA",
        10: "ContrastBolusAgentSequence",
    }


def test_contrast_without_excludes_tag_and_description_evidence(head_exam: ExamTruth, tmp_path: Path) -> None:
    rows = run(head_exam.path.parent, tmp_path / "out", "--contrast", "without", "--dry-run")
    excluded = {n: rows[n]["reason"] for n in rows if rows[n]["decision"] == "excluded" and n != 1}
    assert excluded == {
        6: (
            "contrast-enhanced (ContrastBolusAgent; ContrastBolusRoute; ContrastBolusVolume): "
            "excluded by --contrast without"
        ),
        7: "contrast-enhanced (description keyword CTA): excluded by --contrast without",
        10: "contrast-enhanced (ContrastBolusAgentSequence): excluded by --contrast without",
    }
    assert rows[8]["decision"] == "converted"  # agent NONE and "non contrast": plain


def test_contrast_with_keeps_only_enhanced_series(head_exam: ExamTruth, tmp_path: Path) -> None:
    rows = run(head_exam.path.parent, tmp_path / "out", "--contrast", "with", "--dry-run")
    assert {n for n in rows if rows[n]["decision"] == "converted"} == {6, 7, 10}
    assert rows[8]["reason"] == (
        "no contrast evidence (no Contrast/Bolus attribute, no description keyword): excluded by --contrast with"
    )


def test_kernel_soft_and_sharp(head_exam: ExamTruth, tmp_path: Path) -> None:
    soft = run(head_exam.path.parent, tmp_path / "soft", "--kernel", "soft", "--dry-run")
    assert {n for n in soft if soft[n]["decision"] == "converted"} == {2, 4, 6, 7, 8, 10}
    assert soft[3]["reason"] == "sharp kernel (ConvolutionKernel H60s, Siemens): excluded by --kernel soft"
    assert soft[5]["reason"] == "sharp kernel (ConvolutionKernel BONE, GE): excluded by --kernel soft"
    assert soft[9]["reason"] == (
        "unknown kernel (ConvolutionKernel XYZ is not in the kernel table): excluded by --kernel soft"
    )
    sharp = run(head_exam.path.parent, tmp_path / "sharp", "--kernel", "sharp", "--dry-run")
    assert {n for n in sharp if sharp[n]["decision"] == "converted"} == {3, 5}
    assert sharp[4]["reason"] == "soft kernel (ConvolutionKernel STANDARD, GE): excluded by --kernel sharp"
    assert "unknown kernel" in sharp[9]["reason"]


def test_one_per_exam_after_every_other_rule(head_exam: ExamTruth, tmp_path: Path) -> None:
    rows = run(head_exam.path.parent, tmp_path / "out", "--contrast", "without", "--kernel", "soft",
               "--thickness", "2", "4", "--one-per-exam", "--dry-run")
    # the rules leave one candidate, series 4 (thick GE STANDARD): chosen alone
    assert [n for n in rows if rows[n]["decision"] == "converted"] == [4]
    assert rows[4]["reason"] == "one-per-exam: chosen of 1 candidate(s)"
    assert "outside --thickness" in rows[7]["reason"]  # the first rule that excludes is the reason
    assert "excluded by --kernel soft" in rows[5]["reason"]
    assert not any("one-per-exam" in rows[n]["reason"] for n in rows if n != 4)


def _label(truth: ExamTruth, number: int) -> str:
    return f"series {number} ({truth.series_by_number(number).series_instance_uid})"


@pytest.mark.parametrize(
    ("series", "chosen", "why"),
    [
        # each rule wins although every later rule points the other way
        ([thick(2, "H30s", n_slices=40), thin(3, "H60s", n_slices=12)], 3, "the smallest slice spacing"),
        ([thin(2, "H60s"), thin(3, "H30s", n_slices=20)], 3, "a soft kernel over a sharp one"),
        ([thin(2, "H60s"), thin(3, "XYZ", n_slices=20)], 3, "an unknown kernel over a sharp one"),
        ([thin(2, "XYZ"), thin(3, "H30s", n_slices=20)], 3, "a soft kernel over an unknown one"),
        ([thin(2, "H30s", n_slices=20), thin(3, "H30s")], 3, "the most slices"),
        ([thin(3, "H30s"), thin(2, "H30s")], 2, "the lowest SeriesNumber"),
    ],
)
def test_one_per_exam_ranking(tmp_path: Path, series: list[SeriesSpec], chosen: int, why: str) -> None:
    truth = write_exam(tmp_path / "in", "exam_rank", series, seed=3, plant_phi=False)
    rows = run(tmp_path / "in", tmp_path / "out", "--one-per-exam", "--dry-run")
    assert decisions(rows)[chosen] == "converted", why
    (other,) = set(rows) - {chosen}
    assert rows[other] | {"decision": "excluded"} == rows[other]
    assert rows[other]["reason"] == f"one-per-exam: {_label(truth, chosen)} chosen"


def test_one_per_exam_falls_back_when_the_choice_does_not_convert(tmp_path: Path) -> None:
    series = [thin(2, "H30s", transfer_syntax=RLELossless), thin(3, "H30s", n_slices=20), thick(4, "H30s")]
    truth = write_exam(tmp_path / "in", "exam_fb", series, seed=4, plant_phi=False)
    for f in truth.series_by_number(2).files:  # the best candidate cannot be decoded (see test_formats)
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.81")
        ds.save_as(f)
    plan = run(tmp_path / "in", tmp_path / "plan", "--one-per-exam", "--dry-run")
    assert decisions(plan) == {2: "converted", 3: "excluded", 4: "excluded"}  # the headers cannot tell
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "extract", *QUICK, "--one-per-exam"]) == ExitCode.FAILED
    rows = {int(r["series_number"]): r for r in read_csv(tmp_path / "out" / "extract_report.csv")}
    assert rows[2]["decision"] == "failed" and "cannot decode pixel data" in rows[2]["reason"]
    assert rows[3]["decision"] == "converted" and rows[3]["reason"] == "one-per-exam: chosen of 3 candidate(s)"
    assert rows[4]["reason"] == f"one-per-exam: {_label(truth, 3)} chosen"
    (index,) = read_csv(tmp_path / "out" / "series_index.csv")
    assert index["series_number"] == "3"


def test_parts_of_a_split_series_are_classified_and_chosen_apart(tmp_path: Path) -> None:
    """A soft and a bone reconstruction under one SeriesInstanceUID are two parts: each has its
    own kernel class, and each is a candidate of --one-per-exam."""
    truth = write_exam(tmp_path / "in", "exam_parts", [thin(2, "H30s", n_slices=20), thin(3, "H60s")],
                       seed=5, plant_phi=False)
    first, second = truth.series
    for f in first.files:
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 1
        ds.save_as(f)
    for f in second.files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.AcquisitionNumber = first.series_instance_uid, 2, 2
        ds.save_as(f)
    real = _extract_both(tmp_path / "in", tmp_path / "one", "--one-per-exam")
    rows = read_csv(real / "extract_report.csv")
    assert [(r["part"], r["n_slices"], r["kernel"], r["kernel_class"], r["decision"]) for r in rows] == [
        ("1", "20", "H30s", "soft", "converted"), ("2", "30", "H60s", "sharp", "excluded")
    ]
    assert rows[0]["reason"].endswith("one-per-exam: chosen of 2 candidate(s)") and "split" in rows[0]["reason"]
    assert rows[1]["reason"] == f"one-per-exam: series 2 part 1 ({first.series_instance_uid}) chosen"
    (index,) = read_csv(real / "series_index.csv")
    assert (index["part"], index["convolution_kernel"], index["kernel_class"]) == ("1", "H30s", "soft")
    soft = read_csv(_extract_both(tmp_path / "in", tmp_path / "soft", "--kernel", "soft") / "extract_report.csv")
    assert [r["decision"] for r in soft] == ["converted", "excluded"]
    assert soft[1]["reason"] == "sharp kernel (ConvolutionKernel H60s, Siemens): excluded by --kernel soft"


# --- the dry run ------------------------------------------------------------------------------------


PIXEL_FACTS = ("body_cropped_fraction",)
"""Columns of extract_report.csv only the pixels can fill (the body mask): empty in a plan."""


def _extract_both(root: Path, tmp_path: Path, *options: str) -> Path:
    """Run a dry run and a real run with ``options``; assert they decide alike (every row and
    column but :data:`PIXEL_FACTS`, reasons and planned output paths included); return the real
    output."""
    dry, real = tmp_path / "dry", tmp_path / "real"
    dry_code = main([str(root), str(dry), "extract", *QUICK, *options, "--dry-run"])
    real_code = main([str(root), str(real), "extract", *QUICK, *options])
    planned, done = read_csv(dry / "extract_report.csv"), read_csv(real / "extract_report.csv")
    assert all(row[column] == "" for row in planned for column in PIXEL_FACTS)
    assert all(float(row["body_cropped_fraction"]) == 0 for row in done if row["decision"] == "converted")
    assert planned == [{**row, **dict.fromkeys(PIXEL_FACTS, "")} for row in done]
    assert dry_code == real_code
    assert not (dry / "nifti").exists() and read_csv(dry / "series_index.csv") == []
    return real


@pytest.fixture(scope="module")
def varied_exams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exams whose decisions come from the whole stack's geometry: split series, gaps, tilt,
    reformats, too few slices, duplicates, Enhanced CT; plus kernels and contrast."""
    root = tmp_path_factory.mktemp("varied") / "in"
    write_exam(root, "exam_head", HEAD_EXAM, seed=21, plant_phi=False)
    write_exam(root, "exam_geometry", [
        SeriesSpec(kind="scout", series_number=1),
        thin(2, "H30s", tilt_deg=15.0),
        thick(3, "BONE", "GE MEDICAL SYSTEMS", n_slices=16),
        SeriesSpec(kind="coronal", series_number=4, n_slices=12, **SMALL),
        thin(5, "H30s", n_slices=2),
        thin(6, "Hr60f", enhanced=True, n_slices=14),
        thin(7, "H60s", series_description="Orbit C+", n_slices=24),
        SeriesSpec(kind="summary", series_number=999),
    ], seed=22, plant_phi=False)
    passes = write_exam(root, "exam_passes", [thin(2, "H30s", n_slices=20), thin(3, "H60s", n_slices=20),
                                              thick(4, "H30s", n_slices=16), thin(5, "H30s", n_slices=24)],
                        seed=23, plant_phi=False)
    first, second, gappy, apart = passes.series
    for f in second.files:  # two passes under one UID: split by geometry
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.AcquisitionNumber = first.series_instance_uid, 2, 2
        ds.save_as(f)
    gappy.files[5].unlink()  # a missing slice: uneven spacing (a 6 mm gap, under 3 x 3 mm)
    for f in apart.files[10:14]:  # four missing: a 5 mm gap, over 3 x 1 mm: split into parts
        f.unlink()
    for f in first.files[:2]:  # exact duplicate files
        shutil.copy(f, f.with_name(f.name + "_copy"))
    return root


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--one-per-exam"],
        ["--contrast", "without", "--kernel", "soft", "--one-per-exam"],
        ["--contrast", "with", "--kernel", "sharp", "--thickness", "0.5", "2.5"],
    ],
    ids=["defaults", "one-per-exam", "without-soft-one", "with-sharp-thickness"],
)
def test_dry_run_decides_exactly_as_a_real_run(varied_exams: Path, tmp_path: Path, options: list[str]) -> None:
    real = _extract_both(varied_exams, tmp_path, *options)
    rows = read_csv(real / "extract_report.csv")
    assert {r["decision"] for r in rows} >= {"converted", "excluded"}
    reasons = " | ".join(r["reason"] for r in rows)
    for fact in ("split:", "split at a slice gap", "uneven spacing", "exact duplicate", "too few slices",
                 "coronal, not axial", "localizer"):
        assert fact in reasons or options  # the exams exercise what the plan must derive from headers
    assert any(r["part"] for r in rows) and max(float(r["tilt_deg"] or 0) for r in rows) > 14
    assert any(r["orientation"] == "axial" and float(r["spacing_max"] or 0) > 1.5 * float(r["spacing_median"] or 1)
               for r in rows)  # uneven spacing
    converted = [r for r in rows if r["decision"] == "converted"]
    index = read_csv(real / "series_index.csv")
    assert sorted(r["output_path"] for r in converted) == sorted(r["output_path"] for r in index)
    assert all((real / r["output_path"]).is_file() for r in index)
    if "--one-per-exam" in options:
        assert sorted(r["dicom_id"] for r in converted) == ["exam_geometry", "exam_head", "exam_passes"]


def test_a_dry_run_writes_the_plan_and_never_makes_a_real_run_skip(head_exam: ExamTruth, tmp_path: Path) -> None:
    root, out = head_exam.path.parent, tmp_path / "out"
    args = [str(root), str(out), "extract", *QUICK, "--kernel", "soft", "--one-per-exam"]
    assert main([*args, "--dry-run"]) == ExitCode.OK
    plan = read_csv(out / "extract_report.csv")
    (planned,) = [r for r in plan if r["decision"] == "converted"]
    assert not (out / "nifti").exists() and not list(out.rglob("*.nii.gz"))
    page = (out / "report.html").read_text()
    assert "Extract dry run" in page and "converted (dry run)" in page and "(planned)" in page
    assert 'class="qc"' not in page
    log = (out / "logs" / "orbitct-app.log").read_text()
    assert "dry run, would be converted" in log and "nothing written" in log
    run_record = json.loads(next((out / "logs").glob("run-*.json")).read_text())
    assert "--dry-run" in run_record["equivalent_command"]

    assert main(args) == ExitCode.OK  # the real run is not skipped as "already complete"
    assert "already complete" not in (out / "logs" / "orbitct-app.log").read_text()
    (index,) = read_csv(out / "series_index.csv")
    assert index["output_path"] == planned["output_path"] and (out / index["output_path"]).is_file()
    assert [{**row, **dict.fromkeys(PIXEL_FACTS, "")} for row in read_csv(out / "extract_report.csv")] == plan
    sidecar = json.loads((out / index["output_path"]).with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Selection"] == {
        "KernelClass": "soft", "KernelClassifiedAs": "Siemens", "ContrastEnhanced": False, "ContrastEvidence": [],
        "OnePerExamCandidates": 6,
    }
    assert sidecar["Processing"]["KernelFilter"] == "soft" and sidecar["Processing"]["OnePerExam"] is True
    assert index["kernel_class"] == "soft" and index["contrast"] == "no"
    assert main(args) == ExitCode.OK  # and a rerun with the same options resumes
    assert "already complete" in (out / "logs" / "orbitct-app.log").read_text()


def test_enhanced_series_take_their_kernel_from_the_functional_groups(tmp_path: Path) -> None:
    series = [
        thin(2, "Hr60f", enhanced=True, n_slices=8),
        thin(3, "H30s", enhanced=True, legacy_converted=True, n_slices=8),
    ]
    truth = write_exam(tmp_path / "in", "exam_mf", series, seed=6, plant_phi=False)
    assert all("ConvolutionKernel" not in pydicom.dcmread(s.files[0], stop_before_pixels=True) for s in truth.series)
    rows = run(tmp_path / "in", tmp_path / "out", "--kernel", "soft", "--dry-run")
    assert (rows[2]["kernel"], rows[2]["kernel_class"], rows[2]["decision"]) == ("Hr60f", "sharp", "excluded")
    assert (rows[3]["kernel"], rows[3]["kernel_class"], rows[3]["decision"]) == ("H30s", "soft", "converted")
