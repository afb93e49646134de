"""--pixel-text: text burned into pixels is found in every kind of series, never on CT without
text, reported without its words, and the output pixels stay what they were."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from orbitct_app import pipeline
from orbitct_app.anonymize import ocr, pixel_text
from orbitct_app.cli import main
from orbitct_app.discover import scan_exam
from orbitct_app.errors import ExitCode
from orbitct_app.options import Options, Stage
from orbitct_app.report.tables import read_csv
from orbitct_app.synthetic import BurnedText, SeriesSpec, TextPosition, write_exam

WORDS = ("DOE", "JOHN", "ROE", "JANE", "MUSTERMANN", "ERIKA", "Smith", "Anna", "8812", "2231187", "1970")

# the cases: (series number, spec); every one but 2 and 8 carries text
CASES = [
    SeriesSpec(kind="axial", series_number=2, n_slices=40),
    # a name and date in a corner of axial CT slices: small font, white on black
    SeriesSpec(kind="axial", series_number=3, n_slices=40, burned_text=BurnedText(("DOE^JOHN", "1970-03-12"), size=9)),
    # black on white, compressed (RLE), bottom right
    SeriesSpec(kind="axial", series_number=4, n_slices=40, transfer_syntax=RLELossless,
               burned_text=BurnedText(("MUSTERMANN ERIKA", "ID 8812-44"), position="bottom-right", size=10,
                                      polarity="black")),
    # a large font, JPEG 2000
    SeriesSpec(kind="axial", series_number=5, n_slices=40, rows=256, cols=256, transfer_syntax=JPEG2000Lossless,
               burned_text=BurnedText(("Smith, Anna  F 61Y",), position="top-right", size=24)),
    # a reformat with the text on one image only
    SeriesSpec(kind="coronal", series_number=6, n_slices=40,
               burned_text=BurnedText(("Acc 2231187",), position="bottom-left", size=11, instances=(17,))),
    # a dose page in a 12-image secondary capture, black on white
    SeriesSpec(kind="summary", series_number=7, n_slices=12,
               burned_text=BurnedText(("Dose Report", "Patient: ROE^JANE", "Exam 2024-05-01", "CTDIvol 55.1 mGy",
                                       "DLP 845.2 mGy*cm"), position="centre", size=14, polarity="black")),
    # a 12-image summary capture without text (bars and a picture)
    SeriesSpec(kind="summary", series_number=8, n_slices=12),
    # clean pixels, a name and date in an overlay plane (60xx,3000) of every image
    SeriesSpec(kind="axial", series_number=9, n_slices=40,
               burned_text=BurnedText(("ROE^JANE", "1970-03-12"), position="bottom-left", size=11, overlay=True)),
]
WITH_TEXT = {3, 4, 5, 6, 7, 9}
OVERLAY = 9
"""The series whose text is in an overlay plane only."""

needs_engine = pytest.mark.skipif(ocr.engine_problem() is not None, reason=str(ocr.engine_problem()))


@pytest.fixture(scope="module")
def text_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pixel-text") / "in"
    write_exam(root, "exam_text", CASES, seed=3)
    write_exam(root, "exam_plain", [SeriesSpec(kind="axial", series_number=2, n_slices=40, padding=True),
                                    SeriesSpec(kind="coronal", series_number=3, n_slices=12, enhanced=True)], seed=4)
    return root


def run(inp: Path, out: Path, **kwargs: Any) -> pipeline.RunSummary:
    options = Options(inp, out, stage=Stage.ANONYMIZE, n_procs=1, min_slices=10, **kwargs)
    options.validate()
    return pipeline.run(options)


# --- the first pass alone -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 11, 16, 28])
@pytest.mark.parametrize("polarity", ["white", "black"])
@pytest.mark.parametrize("position", ["top-left", "bottom-right", "centre"])
def test_first_pass_finds_rendered_text_of_any_size_polarity_and_place(
    size: int, polarity: Literal["white", "black"], position: TextPosition
) -> None:
    spec = BurnedText(("PATIENT NAME 12.03.1970", "ID 4471823"), position=position, size=size,
                      polarity=polarity)
    rng = np.random.default_rng(size)
    image = rng.normal(40.0, 12.0, (256, 480)).astype(np.float32)  # soft tissue with noise
    coverage, box = spec.mask(*image.shape)
    if polarity == "black":
        image[box[1] : box[3], box[0] : box[2]] = 3000.0
        image = image * (1 - coverage) + -1000.0 * coverage
    else:
        image = image * (1 - coverage) + 3000.0 * coverage
    lines = pixel_text.find_text_lines(image.astype(np.float32))
    assert lines, (size, polarity, position)
    ink = np.argwhere(coverage > 0.5)
    covered = [any(b.left - 2 <= x < b.right + 2 and b.top - 2 <= y < b.bottom + 2 for b in lines) for y, x in ink]
    assert np.mean(covered) >= 0.6, (size, polarity, position, lines)  # the lines cover most of the text
    # the gate before it lets the frame through, as int16 values (how frames are read) too
    for values in (image.astype(np.float32), np.rint(image / 2).astype(np.int16)):
        assert pixel_text._passes_gate(values[None], pixel_text.contrast_thresholds(values[None])) == [True]


@pytest.mark.parametrize(("text", "size"), [("D'ARCY", 12), ("ID: 4471823", 36), ("MUELLER^HANS 1956", 20)])
def test_marks_in_a_line_do_not_hide_it(text: str, size: int) -> None:
    """An apostrophe, a colon's dot or a caret is a component too small to be a character: it is
    left out of the line, not a reason to drop the line."""
    coverage, box = BurnedText((text,), size=size).mask(128, 480)
    image = np.random.default_rng(size).normal(40.0, 12.0, coverage.shape).astype(np.float32)
    image = (image * (1 - coverage) + 3000.0 * coverage).astype(np.float32)
    (line,) = pixel_text.find_text_lines(image)
    assert line.width >= 0.8 * (box[2] - box[0]), (line, box)  # the line, not a piece of it


def test_the_gate_stops_no_frame_the_first_pass_finds_text_in(text_exam: Path) -> None:
    """The gate scans every third row; a text line makes at least three busy rows in a row, so
    whatever the first pass finds in a frame, the gate let that frame through."""
    series = {s.series_number: s for s in scan_exam(text_exam / "exam_text").series}
    found = 0
    for number in (3, 4, 5, 6, 7):
        plan = pixel_text._plan(series[number])
        frames = [pixel_text._read_item(item) for item in plan]
        for (_, _, whole), values, threshold in zip(plan, frames, pixel_text._gate(plan, frames), strict=True):
            assert not isinstance(values, pixel_text.PixelError)
            image = values.astype(np.float32)
            lines = pixel_text.find_text_lines(image) if whole else pixel_text._band_lines(image)
            if lines:
                found += 1
                assert threshold is not None, number
    assert found >= 40 + 40 + 40 + 1 + 12  # the text is in every frame but the coronal's


def test_first_pass_stays_quiet_on_generated_ct_without_text(text_exam: Path) -> None:
    exam = scan_exam(text_exam / "exam_plain")
    quiet = 0
    for series in exam.series:
        for info, frame, _ in pixel_text._plan(series):
            image = pixel_text.read_frame(info, frame)
            assert pixel_text.find_text_lines(image) == [], (series.series_number, info.path.name, frame)
            quiet += 1
    assert quiet == 40 + 12


def test_frames_are_read_at_their_offset_as_pydicom_decodes_them(tmp_path: Path) -> None:
    write_exam(tmp_path, "e", [SeriesSpec(kind="axial", series_number=2, n_slices=2, unsigned=True),  # 12 bits
                               SeriesSpec(kind="axial", series_number=3, n_slices=2),  # signed, 16 bits: halved
                               SeriesSpec(kind="axial", series_number=4, n_slices=2, transfer_syntax=RLELossless)],
               seed=1)
    # bits above BitsStored (old-style overlay bits) are not the image's
    noisy = next((tmp_path / "e").rglob("S002/*"))
    ds = pydicom.dcmread(noisy)
    assert ds.BitsStored == 12
    clean = ds.pixel_array.copy()
    ds.PixelData = (clean | np.uint16(0xA000)).tobytes()
    ds.save_as(noisy)
    for series in scan_exam(tmp_path / "e").series:
        assert (series.slices[0].pixel_offset is None) is (series.series_number == 4)  # RLE: decoded
        for info in series.slices:
            expected = clean if info.path == noisy else pydicom.dcmread(info.path).pixel_array
            expected = expected.astype(np.int32) >> (1 if info.bits_stored > 15 else 0)
            values = pixel_text.read_values(info, None)
            assert values.dtype == np.int16 and np.array_equal(values, expected), info.path
            b = info.rows // pixel_text.BAND_FRACTION
            bands = pixel_text.read_values(info, None, pixel_text.BAND_FRACTION)
            assert np.array_equal(bands, np.concatenate([expected[:b], expected[-b:]]))


def test_sampling_of_a_long_axial_series_and_of_the_others(text_exam: Path) -> None:
    exam = {s.series_number: s for s in scan_exam(text_exam / "exam_text").series}
    assert not pixel_text.checks_every_frame_whole(exam[2])  # 40 original axial slices
    assert pixel_text.checks_every_frame_whole(exam[6])  # a reformat (DERIVED, coronal)
    assert pixel_text.checks_every_frame_whole(exam[7])  # a secondary capture
    whole = [w for _, _, w in pixel_text._plan(exam[2])]
    assert sum(whole) == pixel_text.SAMPLE_FRAMES and whole[0] and whole[-1]
    plain = scan_exam(text_exam / "exam_plain").series
    assert all(pixel_text.checks_every_frame_whole(s) for s in plain if s.n_files == 1)  # multi-frame


# --- the whole check, with the engine -------------------------------------------------------------


@needs_engine
def test_every_case_with_text_is_caught_and_none_without(text_exam: Path) -> None:
    for name in ("exam_text", "exam_plain"):
        for series in scan_exam(text_exam / name).series:
            check = pixel_text.check_series(series)
            has_text = name == "exam_text" and series.series_number in WITH_TEXT
            assert (check.finding is not None) is has_text, (name, series.series_number, check.summary())
            assert check.complete
            if check.finding is None:  # read to the end
                assert check.checked == check.n_frames == series.n_instances
            else:
                assert check.finding.words >= 1 and check.finding.confidence >= ocr.MIN_CONFIDENCE
                assert check.finding.thumbnail.startswith("data:image/jpeg;base64,")
    by_number = {s.series_number: s for s in scan_exam(text_exam / "exam_text").series}
    finding = pixel_text.check_series(by_number[6]).finding
    assert finding is not None and finding.frame == 17
    # the overlay plane: read before the pixels, which are clean
    check = pixel_text.check_series(by_number[OVERLAY])
    assert check.finding is not None and check.finding.overlay == 0x6000 and check.overlays == 1
    assert check.finding.frame == 1 and check.frames_text() == "0/40, 1 overlay plane"
    assert pixel_text.check_series(by_number[OVERLAY], overlays=False).finding is None


@needs_engine
def test_flag_reports_without_the_words_and_keeps_the_pixels(text_exam: Path, tmp_path: Path) -> None:
    flagged = run(text_exam, tmp_path / "flag", participant_labels=("exam_text",))
    assert flagged.exit_code is ExitCode.OK
    rows = {int(r["series_number"]): r for r in read_csv(tmp_path / "flag" / "anonymize_report.csv")}
    for number, row in rows.items():
        assert row["decision"] == "kept", row
        assert ("pixel_text" in row["flags"].split(";")) is (number in WITH_TEXT), row
        assert re.fullmatch(r"\d+/\d+( \(.*\))?(, \d+ overlay planes?)?", row["frames_checked"]), row
        if number in WITH_TEXT:
            where = "overlay plane 6000 of frame 1" if number == OVERLAY else r"frame \d+"
            assert re.match(rf"text in {where} of \d+: \d+ word\(s\), box x \d+-\d+, y \d+-\d+, confidence \d+",
                            row["pixel_text"]), row
        else:
            assert row["pixel_text"] == "no text found"
            assert row["frames_checked"].startswith(f"{row['n_files']}/{row['n_files']}")
    # the words are nowhere: not in the tables, the log, the records, the page
    out = tmp_path / "flag"
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*")
             if p.is_file() and p.suffix in (".csv", ".log", ".json", ".html")]
    for word in WORDS:
        assert not any(word in text for text in texts), word
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('class="pixel-text"') == len(WITH_TEXT)
    # and the output pixels are the input's, byte for byte (compressed ones too)
    off = run(text_exam, tmp_path / "off", participant_labels=("exam_text",), pixel_text="off")
    assert off.exit_code is ExitCode.OK
    for path in sorted((out / "anonymized" / "exam_text").rglob("*.dcm")):
        source = text_exam / "exam_text" / path.relative_to(out / "anonymized" / "exam_text")
        assert pydicom.dcmread(path).PixelData == pydicom.dcmread(source).PixelData
        assert path.read_bytes() == (tmp_path / "off" / path.relative_to(out)).read_bytes()
    assert all(r["pixel_text"] == "" for r in read_csv(tmp_path / "off" / "anonymize_report.csv"))


@needs_engine
def test_overlay_planes_are_checked_where_the_profile_keeps_them(tmp_path: Path) -> None:
    text = BurnedText(("DOE^JOHN", "1970-03-12"), size=10, overlay=True)
    write_exam(tmp_path / "in", "exam_overlay", [SeriesSpec(kind="axial", series_number=2, n_slices=12,
                                                            burned_text=text)], seed=8)
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdefghijklmnopqrstuv")
    key.chmod(0o600)  # a key others can read is refused
    for profile, flagged in (("orbitct", True), ("basic", False)):  # basic removes the groups 60xx
        out = tmp_path / profile
        summary = run(tmp_path / "in", out, profile=profile, deid_key=key if profile == "basic" else None)
        assert summary.exit_code is ExitCode.OK
        (row,) = read_csv(out / "anonymize_report.csv")
        assert row["decision"] == "kept" and ("pixel_text" in row["flags"].split(";")) is flagged, row
        written = sorted((out / "anonymized").rglob("*.dcm"))
        assert len(written) == 12
        assert all((0x6000, 0x3000) in pydicom.dcmread(p) for p in written) is flagged
        if flagged:
            assert row["pixel_text"].startswith("text in overlay plane 6000 of frame 1 of 12:"), row
            assert row["frames_checked"] == "0/12, 1 overlay plane"  # every image has the same plane
        else:
            assert row["pixel_text"] == "no text found" and row["frames_checked"] == "12/12 (12 whole)", row


@needs_engine
def test_drop_drops_series_with_text_and_deletes_them_in_place(text_exam: Path, tmp_path: Path) -> None:
    import shutil

    inp = tmp_path / "in"
    shutil.copytree(text_exam / "exam_text", inp / "exam_text")
    summary = run(inp, tmp_path / "out", pixel_text="drop", in_place=True)
    assert summary.exit_code is ExitCode.OK
    rows = {int(r["series_number"]): r for r in read_csv(tmp_path / "out" / "anonymize_report.csv")}
    for number, row in rows.items():
        assert (row["decision"] == "dropped") is (number in WITH_TEXT), row
        folder = inp / "exam_text" / f"S{number:03d}"
        assert folder.is_dir() is (number not in WITH_TEXT) or not any(folder.iterdir())
        if number in WITH_TEXT:
            assert "dropped by --pixel-text drop" in row["reason"] and "files deleted" in row["reason"]


@needs_engine
def test_real_ct_is_never_flagged_and_the_patient_info_screen_is_caught(shared_data: Path) -> None:
    screens = 0
    for exam_dir in sorted((shared_data / "exams").iterdir()):
        for series in scan_exam(exam_dir).series:
            check = pixel_text.check_series(series, thumbnail=False)
            if series.is_secondary_capture:  # the exam-summary screens (dose, patient info)
                continue
            assert check.finding is None, (exam_dir.name, series.series_number, check.summary())
            assert check.complete and check.checked == series.n_instances
    head = {s.series_number: s for s in scan_exam(shared_data / "exams" / "philips_head_phantom").series}
    screen = next(s for s in head.values() if any(i.path.parent.name == "S4010" for i in s.slices))
    check = pixel_text.check_series(screen, thumbnail=False)
    assert check.finding is not None
    assert screen.slices[check.finding.frame - 1].path.name == "I40"
    screens += 1
    assert screens == 1


# --- the engine is required -------------------------------------------------------------------------


def test_flag_and_drop_refuse_to_start_without_the_engine(
    text_exam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    ocr.engine_version.cache_clear()
    try:
        for mode in ("flag", "drop"):
            code = main([str(text_exam), str(tmp_path / f"out-{mode}"), "anonymize", "--pixel-text", mode])
            assert code == ExitCode.USAGE
            message = capsys.readouterr().err
            assert f"--pixel-text {mode} needs an OCR engine" in message and "apt-get install tesseract-ocr" in message
            assert not (tmp_path / f"out-{mode}").exists()
        # in this process (--n-procs 1): a fork server started now would keep the empty PATH, and the
        # later tests' workers, forked from it, would find no Tesseract
        off = [str(text_exam), str(tmp_path / "out-off"), "anonymize", "-q", "--pixel-text", "off", "--n-procs", "1"]
        assert main(off) == ExitCode.OK
    finally:
        ocr.engine_version.cache_clear()


@pytest.mark.parametrize(
    ("script", "version"),
    [
        # Tesseract 5 answers both questions in one start
        (('echo "tesseract 5.3.0"; echo " leptonica-1.82.0"\n'
          'case "$*" in *--list-langs*) printf \'List of available languages in "/x/" (2):\\neng\\nosd\\n\';; esac'),
         "5.3.0"),
        # a version that lists the models only, whatever else it is asked: its version asked alone
        (('if [ "$*" = "--version" ]; then echo "tesseract 4.1.1"; exit 0; fi\n'
          'printf \'List of available languages in "/x/" (1):\\neng\\n\''), "4.1.1"),
        # no English model
        ('echo "tesseract 5.3.0"; printf \'List of available languages in "/x/" (1):\\nosd\\n\'', None),
        # a program that fails
        ("exit 1", None),
    ],
)
def test_the_engine_version_and_model_are_asked_of_the_program(
    script: str, version: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "bin" / ocr.PROGRAM
    program.parent.mkdir()
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(program.parent))
    ocr.engine_version.cache_clear()
    try:
        assert ocr.engine_version() == version
        problem = ocr.engine_problem()
        assert (problem is None) is (version is not None)
        if problem is not None:
            assert "does not run or lacks its English model" in problem
    finally:
        ocr.engine_version.cache_clear()

