"""Discovery's fast path (header facts from the file's bytes) gives exactly what the pydicom path
gives: the same SliceInfo field by field, the same errors, the same exams; it is taken on
ordinary files and left for everything unusual."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from orbitct_app import discover
from orbitct_app.errors import NotDicomError
from orbitct_app.extract.nifti import SIDECAR_KEYWORDS
from orbitct_app.synthetic import BurnedText, ExamTruth, SeriesKind, SeriesSpec, write_exam

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CLASSIC_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless)

Outcome = discover.SliceInfo | tuple[str, ...]


def pydicom_outcome(path: Path) -> Outcome:
    """The pydicom path as it was before the fast path: dcmread, then slice_info."""
    try:
        return discover.slice_info(path, *discover.read_header(path))
    except NotDicomError as err:
        return ("skipped", str(err), str(err.kind))
    except Exception as err:  # noqa: BLE001 - a crash must be the same crash
        return ("crash", type(err).__name__)


def outcome(path: Path) -> Outcome:
    """What discovery does now: the fast path, or the pydicom path where it declines."""
    try:
        return discover.read_slice_info(path)
    except NotDicomError as err:
        return ("skipped", str(err), str(err.kind))
    except Exception as err:  # noqa: BLE001
        return ("crash", type(err).__name__)


def assert_same(path: Path) -> bool:
    """Assert both paths agree on ``path``; return whether the fast path took it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom_outcome(path)
        got = outcome(path)
        taken = discover.fast_slice_info(path) is not None
    if isinstance(expected, discover.SliceInfo) and isinstance(got, discover.SliceInfo):
        differ = {
            f.name: (getattr(expected, f.name), getattr(got, f.name))
            for f in dataclasses.fields(expected)
            if getattr(expected, f.name) != getattr(got, f.name)
        }
        assert not differ, (path.name, differ)
    assert got == expected, path.name
    if taken:
        assert isinstance(expected, discover.SliceInfo), path.name  # problems go to pydicom
    return taken


def _small(kind: SeriesKind = "axial", **kw: Any) -> SeriesSpec:
    size: dict[str, Any] = {} if kind == "summary" else {"rows": 32, "cols": 32, "pixel_spacing": (5.0, 5.0)}
    if kind in ("axial", "coronal"):
        size["n_slices"] = 4
    return SeriesSpec(kind=kind, **{**size, **kw})


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExamTruth]:
    """One exam per kind of input the generator makes."""
    root = tmp_path_factory.mktemp("fastscan")
    syntaxes = [
        _small(series_number=n, transfer_syntax=syntax)
        for n, syntax in enumerate((*CLASSIC_SYNTAXES, DeflatedExplicitVRLittleEndian), start=2)
    ]
    exams: dict[str, tuple[list[SeriesSpec], dict[str, Any]]] = {
        "kinds": ([_small("scout", series_number=1), _small(series_number=2), _small("coronal", series_number=3),
                   _small("summary", series_number=4)], {"shuffle_names": True}),
        "syntaxes": (syntaxes, {"nested": True}),
        "geometry": ([_small(series_number=2, tilt_deg=15.0, order="descending"),
                      _small(series_number=3, per_slice_rescale=True, center_offset_mm=(3.0, -2.0, 1.0))], {}),
        "padding": ([_small(series_number=n, padding=True, unsigned=unsigned, transfer_syntax=syntax)
                     for n, (unsigned, syntax) in enumerate(
                         [(False, ExplicitVRLittleEndian), (True, ExplicitVRLittleEndian),
                          (False, ImplicitVRLittleEndian), (True, ImplicitVRLittleEndian)], start=2)], {}),
        "enhanced": ([_small("scout", series_number=1), _small(series_number=2, padding=True),
                      _small("coronal", series_number=3, transfer_syntax=RLELossless)], {"enhanced": True}),
        "no_phi": ([_small(series_number=2)], {"plant_phi": False}),
        "overlays": ([_small(series_number=n, transfer_syntax=syntax, burned_text=BurnedText(("AB 12",), size=8,
                                                                                            overlay=True))
                      for n, syntax in enumerate((ExplicitVRLittleEndian, ImplicitVRLittleEndian), start=2)], {}),
        "contrast": ([_small(series_number=2, manufacturer="GE MEDICAL SYSTEMS", convolution_kernel="BONE",
                             contrast_bolus=(("ContrastBolusAgent", "IOHEXOL"), ("ContrastBolusVolume", "80"),
                                             ("ContrastBolusAgentSequence", "Iohexol"))),
                      _small(series_number=3, transfer_syntax=ImplicitVRLittleEndian,
                             contrast_bolus=(("ContrastBolusAgent", ""), ("ContrastBolusStartTime", "101500")))], {}),
    }
    return {name: write_exam(root, name, specs, seed=7, **layout) for name, (specs, layout) in exams.items()}


def test_every_generated_variant_gives_the_same_slice_info(variants: dict[str, ExamTruth]) -> None:
    taken: set[str] = set()
    declined: set[str] = set()
    for truth in variants.values():
        for series in truth.series:
            for path in series.files:
                (taken if assert_same(path) else declined).add(
                    "enhanced" if series.n_frames is not None else series.transfer_syntax_uid
                )
    assert taken == set(CLASSIC_SYNTAXES)  # the common cases take the fast path ...
    assert declined == {"enhanced", DeflatedExplicitVRLittleEndian}  # ... and only those are left
    overlays = [discover.read_slice_info(path).overlay_groups for s in variants["overlays"].series for path in s.files]
    assert overlays == [(0x6000,)] * 8
    assert discover.read_slice_info(variants["no_phi"].series[0].files[0]).overlay_groups == ()


def test_scan_exam_is_the_same_with_and_without_the_fast_path(
    variants: dict[str, ExamTruth], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Series, order, sidecar attributes and skipped files alike (the sidecar attributes are read
    by pydicom from one file a series)."""
    fast = {name: discover.scan_exam(truth.path, SIDECAR_KEYWORDS) for name, truth in variants.items()}
    monkeypatch.setattr(discover, "fast_slice_info", lambda path: None)
    slow = {name: discover.scan_exam(truth.path, SIDECAR_KEYWORDS) for name, truth in variants.items()}
    assert fast == slow
    assert all(s.attributes for exam in fast.values() for s in exam.series)
    contrast = {s.series_number: s.contrast_facts for s in fast["contrast"].series}
    assert contrast == {
        2: {"ContrastBolusAgent": "IOHEXOL", "ContrastBolusVolume": 80.0, "ContrastBolusAgentSequence": 1},
        3: {"ContrastBolusAgent": "", "ContrastBolusStartTime": "101500"},
    }


def test_fast_path_reads_ordinary_files_without_pydicom(
    variants: dict[str, ExamTruth], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [variants["syntaxes"].series_by_number(n).files[0] for n in (2, 3, 4, 5)]
    expected = [pydicom_outcome(p) for p in paths]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pydicom read an ordinary file's header")

    monkeypatch.setattr(pydicom, "dcmread", refuse)  # (the module discover reads with)
    assert [discover.read_slice_info(p) for p in paths] == expected
    assert all(discover.fast_slice_info(p) is not None for p in paths)


# --- odd values, broken files: the same answer, from whichever path -----------------------------------


def _set(tag: int, vr: str, value: object) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds[tag] = DataElement(tag, vr, value)

    return change


def _raw(tag: int, vr: str, value: bytes) -> Callable[[Dataset], None]:
    """Set value bytes as they are (values pydicom would not build, such as a DS of text)."""

    def change(ds: Dataset) -> None:
        ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)

    return change


def _delete(*keywords: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return change


def _all(*changes: Callable[[Dataset], None]) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for c in changes:
            c(ds)

    return change


def _meta_class(uid: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.file_meta.MediaStorageSOPClassUID = UID(uid)

    return change


ODD_VALUES: dict[str, Callable[[Dataset], None]] = {
    "instance-multi": _set(0x00200013, "IS", "1\\2"),
    "instance-float": _set(0x00200013, "IS", "3.0"),
    "instance-spaces": _set(0x00200013, "IS", " 7 "),
    "instance-empty": _set(0x00200013, "IS", ""),
    "instance-as-US": _set(0x00200013, "US", 5),
    "slope-not-a-number": _raw(0x00281053, "DS", b"abc "),
    "intercept-exponent": _set(0x00281052, "DS", "-1.024e3 "),
    "intercept-multi": _set(0x00281052, "DS", "0\\1"),
    "spacing-three": _set(0x00280030, "DS", "0.5\\0.5\\0.5"),
    "spacing-empty-value": _set(0x00280030, "DS", "0.5\\"),
    "position-empty": _set(0x00200032, "DS", ""),
    "position-text": _raw(0x00200032, "DS", b"1\\x\\3 "),
    "position-nulls": _raw(0x00200032, "DS", b"1\\2\\3\0\0"),
    "position-inner-null": _raw(0x00200032, "DS", b"1\\2\0\\3 "),
    "image-type-odd": _set(0x00080008, "CS", "original\\\\AXIAL "),
    "image-type-empty": _set(0x00080008, "CS", ""),
    "rows-empty": _set(0x00280010, "US", None),
    "rows-as-UN": _raw(0x00280010, "UN", b"\x10\x00"),
    "samples-zero": _set(0x00280002, "US", 0),
    "description-latin1": _all(_set(0x00080005, "CS", "ISO_IR 100"), _raw(0x0008103E, "LO", b"T\xeate")),
    "description-utf8": _all(_set(0x00080005, "CS", "ISO_IR 192"), _set(0x0008103E, "LO", "plain")),
    "description-jis": _all(_set(0x00080005, "CS", "\\ISO 2022 IR 87"), _set(0x0008103E, "LO", "plain")),
    "description-unknown-charset": _all(_set(0x00080005, "CS", "NOT A CHARSET"), _set(0x0008103E, "LO", "x")),
    "description-multi": _set(0x0008103E, "LO", "head\\neck"),
    "modality-multi": _set(0x00080060, "CS", "CT\\MR"),
    "burned-in-lower": _set(0x00280301, "CS", "yes"),
    "frames-zero": _set(0x00280008, "IS", "0"),
    "frames-three": _set(0x00280008, "IS", "3"),
    "series-uid-padded": _raw(0x0020000E, "UI", b" 1.2.3.4 \0\0"),
    "sop-uid-not-ascii": _raw(0x00080018, "UI", b"1.2.\xe9"),
    "odd-length-rows": _raw(0x00280010, "US", b"\x10\x00\x00"),
    "series-uid-multi": _set(0x0020000E, "UI", "1.2.3\\1.2.4"),
    "series-uid-empty": _set(0x0020000E, "UI", ""),
    "no-sop-class": _delete("SOPClassUID"),
    "no-sop-uids": _delete("SOPClassUID", "SOPInstanceUID"),
    "no-pixel-representation": _all(_delete("PixelRepresentation"), _set(0x00280120, "US", 5)),
    "padding-signed-as-US": _all(_set(0x00280103, "US", 1), _set(0x00280120, "US", 0xF830)),
    "padding-signed-as-SS": _all(_set(0x00280103, "US", 1), _set(0x00280120, "SS", -2000)),
    "padding-unsigned": _all(_set(0x00280103, "US", 0), _set(0x00280120, "US", 40000),
                             _set(0x00280121, "US", 40001)),
    "padding-two-values": _set(0x00280120, "US", [1, 2]),
    "pixel-representation-two": _all(_set(0x00280103, "US", 2), _set(0x00280120, "US", 3)),
    "long-header": _set(0x00291010, "OB", b"\0" * 70_000),  # longer than the fast path reads
    "dicomdir-class-in-meta": _meta_class("1.2.840.10008.1.3.10"),
    "dicomdir-class": _set(0x00080016, "UI", "1.2.840.10008.1.3.10"),
    "functional-groups": _set(0x52009230, "SQ", []),
}


@pytest.fixture(scope="module")
def odd_files(variants: dict[str, ExamTruth], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("odd")
    syntaxes = variants["syntaxes"]
    sources = {
        "explicit": syntaxes.series_by_number(2).files[0],
        "implicit": syntaxes.series_by_number(3).files[0],
        "rle": syntaxes.series_by_number(4).files[0],
    }
    files = []
    with pydicom_config.disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for encoding, source in sources.items():
            for name, change in ODD_VALUES.items():
                ds = pydicom.dcmread(source)
                change(ds)
                path = folder / f"{encoding}-{name}"
                ds.save_as(path)
                files.append(path)
            data = source.read_bytes()
            for name, content in {
                "cut-in-pixels": data[:-50],
                "cut-in-header": data[:600],
                "cut-after-header": data[: discover.read_header(source)[2] or 0],
                "no-preamble": data[128 + 4 :],
                "junk-after-dicm": data[:132] + b"\xff" * 300,
                "empty": b"",
            }.items():
                path = folder / f"{encoding}-{name}"
                path.write_bytes(content)
                files.append(path)
    shutil.copy(sources["explicit"], folder / "DICOMDIR")
    files.append(folder / "DICOMDIR")
    return files


def test_odd_values_and_broken_files_give_the_same_answer(odd_files: list[Path]) -> None:
    taken = {path.name for path in odd_files if assert_same(path)}
    # plain odd values are read by the fast path (pydicom's converters decide their values) ...
    assert {"explicit-instance-multi", "implicit-slope-not-a-number", "explicit-padding-signed-as-SS",
            "implicit-padding-signed-as-US", "rle-description-utf8"} <= taken
    # ... everything in doubt, and every problem, is left to the pydicom path
    doubtful = {f"explicit-{name}" for name in ("rows-as-UN", "instance-as-US")}
    for name in ("description-latin1", "sop-uid-not-ascii", "odd-length-rows", "padding-two-values",
                 "long-header", "dicomdir-class", "dicomdir-class-in-meta", "functional-groups",
                 "no-sop-uids", "cut-in-pixels", "cut-in-header", "cut-after-header", "no-preamble",
                 "junk-after-dicm", "empty"):
        doubtful |= {f"{encoding}-{name}" for encoding in ("explicit", "implicit", "rle")}
    assert not doubtful & taken, sorted(doubtful & taken)
    assert "DICOMDIR" not in taken


# --- real data ----------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_data_gives_the_same_slice_info(shared_data: Path) -> None:
    """Every file of the shared real data (read in place, never copied)."""
    paths = sorted(p for p in shared_data.rglob("*") if p.is_file())
    taken = sum(assert_same(p) for p in paths)
    assert taken > 200  # the real exams' images take the fast path


def test_pydicom_test_files_give_the_same_slice_info() -> None:
    """pydicom's collection of odd files: big endian, deflated, no preamble, broken values ..."""
    if not PYDICOM_FILES.is_dir():
        pytest.skip(f"{PYDICOM_FILES} is absent")
    paths = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file())
    taken = sum(assert_same(p) for p in paths)
    assert 0 < taken < len(paths)
