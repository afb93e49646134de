"""The run's pictures and page: QC PNGs beside the NIfTI, and OUTPUT_DIR/report.html.

One ``all`` run over varied synthetic exams (a kept summary capture flagged for burned-in
annotations, gantry tilt, a slice gap, duplicate files, a broken file) feeds every test; one
test renders the page in headless Chromium (Debian's ``chromium``) when it is installed.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from orbitct_app import pictures
from orbitct_app.cli import main
from orbitct_app.errors import ExitCode
from orbitct_app.extract import qc
from orbitct_app.report.html import write_report
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import ExamTruth, SeriesSpec, write_exam

CHROMIUM = Path("/usr/bin/chromium")
QUICK = ["--spacing", "2", "--size", "128", "--min-slices", "5", "--n-procs", "1", "-q"]
SMALL: dict[str, Any] = {"rows": 64, "cols": 64, "pixel_spacing": (3.8, 3.8), "n_slices": 24, "slice_step": 5.0}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ExamTruth], int]:
    root = tmp_path_factory.mktemp("report")
    inp = root / "in"
    truths = [
        write_exam(inp, "exam_a", [
            SeriesSpec(kind="scout", series_number=1),
            SeriesSpec(kind="axial", series_number=2, **SMALL),
            SeriesSpec(kind="coronal", series_number=3, rows=64, cols=64, n_slices=20),
            SeriesSpec(kind="summary", series_number=999, n_slices=6),  # kept: flagged
        ], seed=1),
        write_exam(inp, "exam_b", [
            SeriesSpec(kind="axial", series_number=2, tilt_deg=15.0, **SMALL),
            SeriesSpec(kind="axial", series_number=3, rows=64, cols=64, pixel_spacing=(3.8, 3.8), n_slices=30,
                       slice_step=2.0),
            SeriesSpec(kind="axial", series_number=4, **SMALL),
        ], seed=2),
        write_exam(inp, "exam_c", [SeriesSpec(kind="axial", series_number=5, **SMALL)], seed=3),
    ]
    gap = truths[1].series_by_number(3).files
    gap[10].unlink()  # one missing slice: a 4 mm gap, twice the spacing (uneven, not split)
    for f in truths[1].series_by_number(4).files[:2]:
        shutil.copy(f, f.with_name(f.name + "_copy"))  # exact duplicates
    (inp / "exam_c" / "broken.dcm").write_bytes(b"")  # a failed file
    (inp / "exam_d").mkdir()
    (inp / "exam_d" / "README.txt").write_text("no images here\n")  # a failed exam
    out = root / "out"
    code = main([str(inp), str(out), "all", *QUICK])
    return out, truths, code


class Page(html.parser.HTMLParser):
    """The parts of report.html the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.converted_rows: list[str] = []
        self.figures: list[str] = []
        self.images: list[str] = []
        self.totals: dict[str, int] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self._total: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for key in ("src", "href", "srcset", "action", "poster", "data"):
            if key in a:
                self.links.append((tag, key, a[key]))
        if tag == "tr" and "outcome-converted" in a.get("class", ""):
            self.converted_rows.append(a["data-output"])
        if tag == "figure":
            self.figures.append(a["data-output"])
        if tag == "img":
            self.images.append(a["src"])
        if "data-total" in a:
            self._total = a["data-total"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._total is not None and data.strip():
            self.totals[self._total] = int(data)
            self._total = None


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_run_finishes_with_the_broken_file_reported(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, code = run
    assert code == ExitCode.FAILED  # the empty .dcm is a failed file
    assert (out / "report.html").is_file()


def test_every_nifti_has_a_qc_picture_and_a_sidecar_naming_its_source(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    index = read_csv(out / "series_index.csv")
    assert len(index) == 5
    for row in index:
        nifti = out / row["output_path"]
        picture = qc.qc_path(nifti)
        assert picture.is_file() and picture.parent == nifti.parent
        with Image.open(picture) as image:
            assert isinstance(image, PngImagePlugin.PngImageFile)
            assert f"series {row['series_number']}" in image.text["Title"]
            assert row["series_description"] in image.text["Title"] and row["dicom_id"] in image.text["Title"]
        sidecar = json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["QCImage"] == picture.name
        assert sidecar["Source"]["SeriesInstanceUID"] == row["series_instance_uid"]
        assert sidecar["Source"]["SeriesNumber"] == int(row["series_number"])
        assert sidecar["Processing"]["TargetSpacingMM"] == 2.0 and sidecar["Processing"]["InPlaceSize"] == 128
        assert sidecar["Processing"]["BodyThresholdHU"] == -200.0
        assert sidecar["Processing"]["SourceTree"].startswith("anonymized copy")
        assert sidecar["GeneratedBy"]["Name"] == "orbitct-app" and sidecar["GeneratedBy"]["CodeURL"].startswith("https://")


def test_report_lists_every_converted_series_with_its_thumbnail(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    page = parse((out / "report.html").read_text(encoding="utf-8"))
    converted = sorted(r["output_path"] for r in read_csv(out / "series_index.csv"))
    assert sorted(page.converted_rows) == converted
    assert sorted(page.figures) == converted
    assert len(page.images) == len(converted)
    for src in page.images:
        assert src.startswith("data:image/jpeg;base64,")
        data = base64.b64decode(src.split(",", 1)[1])
        assert len(data) <= pictures.THUMBNAIL_MAX_BYTES
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
    # each thumbnail links to its full picture by a relative path that exists
    linked = [v for tag, key, v in page.links if tag == "a" and v.endswith("_qc.png")]
    assert sorted(linked) == sorted(str(qc.qc_path(Path(p))) for p in converted)
    assert all((out / p).is_file() for p in linked)


def test_report_totals_match_the_tables(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    page = parse((out / "report.html").read_text(encoding="utf-8"))
    anonymize = read_csv(out / "anonymize_report.csv")
    extract = read_csv(out / "extract_report.csv")
    assert page.totals["exams"] == 4 and page.totals["exams failed"] == 1
    assert page.totals["kept"] == sum(r["decision"] == "kept" for r in anonymize)
    assert page.totals["dropped"] == sum(r["decision"] == "dropped" for r in anonymize)
    assert page.totals["converted"] == sum(r["decision"] == "converted" for r in extract) == 5
    assert page.totals["excluded"] == sum(r["decision"] == "excluded" for r in extract)
    failed = sum(r["decision"] == "failed" for r in anonymize) + sum(r["decision"] == "failed" for r in extract)
    assert page.totals["failed"] == failed >= 1
    uids = {(r["dicom_id"], r["series_instance_uid"]) for r in anonymize + extract if r["series_instance_uid"]}
    assert page.totals["series seen"] == len(uids) == 8
    assert page.totals["not processed"] == 0


def test_report_warns_of_what_a_curator_must_look_at(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    text = " ".join(parse((out / "report.html").read_text(encoding="utf-8")).text)
    assert "burned-in annotation" in text and "series 999 kept but flagged BurnedInAnnotation" in text
    assert "secondary capture" in text
    assert "gantry tilt" in text and "series 2: 15 degrees" in text
    assert "uneven spacing" in text and "median 2 mm" in text
    assert "duplicate slices" in text and "series 4: 2 exact duplicate file(s) dropped" in text
    assert "file failed" in text and "broken.dcm" in text
    assert "exam failed" in text and "no DICOM image files in the exam folder" in text


def test_report_shows_options_versions_and_timings(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    text = " ".join(parse((out / "report.html").read_text(encoding="utf-8")).text)
    (record_path,) = (out / "logs").glob("run-*.json")
    record = json.loads(record_path.read_text())
    assert record["run_id"] in text
    for key in ("spacing", "size", "body_threshold", "min_slices", "profile"):
        assert key in text
    for package in ("pydicom", "numpy", "nibabel", "pillow"):
        assert package in text and record["versions"][package] in text
    assert "anonymize (sum over exams)" in text and "extract (sum over exams)" in text
    assert "anonymize " in text and " s, extract " in text  # per-exam timings


def test_report_makes_no_external_requests(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, _, _ = run
    source = (out / "report.html").read_text(encoding="utf-8")
    page = parse(source)
    assert page.links
    for tag, key, value in page.links:
        assert not value.startswith(("http:", "https:", "//", "ftp:", "file:")), (tag, key, value)
        assert value.startswith(("#", "data:image/")) or not value.startswith("/"), (tag, key, value)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "@import" not in source and "url(" not in source


def test_report_holds_no_identifying_values(run: tuple[Path, list[ExamTruth], int]) -> None:
    out, truths, _ = run
    data = (out / "report.html").read_bytes()
    forbidden = [value for truth in truths for value in truth.orbitct_forbidden_bytes]
    assert forbidden
    assert not [v for v in forbidden if v in data]


def test_report_stage_rebuilds_the_page_and_lists_exams_without_a_record(
    run: tuple[Path, list[ExamTruth], int], tmp_path: Path
) -> None:
    out, _, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    (copy / "dataset_description.json").unlink()
    inp = out.parent / "in"
    extra = inp / "exam_z"
    write_exam(inp, "exam_z", [SeriesSpec(kind="axial", series_number=2, **SMALL)], seed=9)
    try:
        assert main([str(inp), str(copy), "report", "-q"]) == ExitCode.FAILED
    finally:
        shutil.rmtree(extra)
    page = parse((copy / "report.html").read_text(encoding="utf-8"))
    assert page.totals["not processed"] == 1 and "exam_z" in " ".join(page.text)
    assert sorted(page.converted_rows) == sorted(r["output_path"] for r in read_csv(out / "series_index.csv"))
    assert json.loads((copy / "dataset_description.json").read_text())["DatasetType"] == "derivative"


def test_thumbnail_is_made_from_the_png_when_a_record_has_none(
    run: tuple[Path, list[ExamTruth], int], tmp_path: Path
) -> None:
    out, _, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for record in (copy / ".orbitct" / "extract").glob("*.json"):
        data = json.loads(record.read_text())
        for row in data["rows"]["extract_report"]:
            row.pop("qc_thumbnail", None)
        record.write_text(json.dumps(data))
    write_report(copy, copy / ".orbitct")
    page = parse((copy / "report.html").read_text(encoding="utf-8"))
    assert len(page.images) == 5 and all(src.startswith("data:image/jpeg;base64,") for src in page.images)


def test_a_picture_that_cannot_be_drawn_never_fails_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_exam(tmp_path / "in", "exam_q", [SeriesSpec(kind="axial", series_number=2, **SMALL)])

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("no drawing today")

    monkeypatch.setattr(qc, "render", broken)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "extract", *QUICK]) == ExitCode.OK
    (row,) = read_csv(out / "series_index.csv")
    nifti = out / row["output_path"]
    assert nifti.is_file() and not qc.qc_path(nifti).exists()
    assert json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())["QCImage"] is None
    assert "no QC picture" in caplog.text and "RuntimeError" in caplog.text
    assert "no drawing today" not in caplog.text  # a foreign message is withheld (see errors.one_line)
    page = (out / "report.html").read_text()
    assert "QC picture missing" in page and f'data-output="{row["output_path"]}"' in page


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HOME": str(profile)},
    )


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium); .ci/run installs it"
)
def test_report_renders_in_headless_chromium(run: tuple[Path, list[ExamTruth], int], tmp_path: Path) -> None:
    out, _, _ = run
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", url, profile=tmp_path / "profile-1")
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (pixels < 80).mean() > 0.01 and (pixels > 200).mean() > 0.3  # dark header/pictures and a light page
    dom = _chromium("--dump-dom", url, profile=tmp_path / "profile-2")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = parse(dom.stdout)
    assert sorted(page.converted_rows) == sorted(r["output_path"] for r in read_csv(out / "series_index.csv"))
    assert len(page.images) == len(page.converted_rows)
