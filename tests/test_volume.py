"""HU conversion and stack planning, on single slices and hand-made headers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from orbitct_app.discover import SeriesInfo, SliceInfo
from orbitct_app.errors import SeriesError
from orbitct_app.volume import AIR_HU, plan_stacks, to_hu


def _info(**changes: Any) -> SliceInfo:
    base = SliceInfo(
        path=Path("x"), sop_instance_uid="1.2.3", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", series_uid="1.2",
        series_number=2, series_description="", modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        instance_number=1, acquisition_number=None, position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 1, 0),
        pixel_spacing=(1.0, 1.0), rows=4, columns=4, n_frames=1, samples_per_pixel=1, bits_allocated=16,
        bits_stored=12, pixel_representation=0, photometric="MONOCHROME2", transfer_syntax="1.2.840.10008.1.2.1",
        rescale_slope=1.0, rescale_intercept=-1024.0, padding_value=None, padding_range_limit=None,
        burned_in_annotation="", has_pixel_data=True,
    )
    return dataclasses.replace(base, **changes)


def test_rescale_rounds_and_clips_to_air() -> None:
    raw = np.array([[0, 24, 1024, 1064], [3000, 100, 4095, 1025]], dtype=np.uint16)
    out: NDArray[np.int16] = np.empty(raw.shape, dtype=np.int16)
    to_hu(raw, _info(), out=out)
    assert out.tolist() == [[-1000, -1000, 0, 40], [1976, -924, 3071, 1]]
    to_hu(raw, _info(rescale_slope=0.5, rescale_intercept=-1000.5), out=out)
    assert out.tolist() == [[-1000, -988, -488, -468], [500, -950, 1047, -488]]  # half to even


def test_padding_becomes_air_even_when_its_value_looks_like_tissue() -> None:
    raw = np.array([[3000, 1064], [2990, 2000]], dtype=np.uint16)
    out: NDArray[np.int16] = np.empty(raw.shape, dtype=np.int16)
    to_hu(raw, _info(padding_value=3000), out=out)
    assert out.tolist() == [[AIR_HU, 40], [1966, 976]]
    to_hu(raw, _info(padding_value=3000, padding_range_limit=2990), out=out)
    assert out.tolist() == [[AIR_HU, 40], [AIR_HU, 976]]


def _series(slices: list[SliceInfo]) -> SeriesInfo:
    return SeriesInfo(dicom_id="e", key="1.2", series_uid="1.2", slices=tuple(slices))


def test_slices_sort_by_position_along_the_normal_not_instance_number() -> None:
    zs = [3.0, -1.0, 7.0, 1.0, 5.0]
    slices = [_info(position=(0.0, 0.0, z), instance_number=i, sop_instance_uid=f"1.{i}") for i, z in enumerate(zs)]
    (stack,) = plan_stacks(_series(slices)).stacks
    assert stack.geometry.offsets.tolist() == [-1.0, 1.0, 3.0, 5.0, 7.0]
    assert [s.instance_number for s in stack.slices] == [1, 3, 0, 4, 2]


def test_stray_orientation_is_split_off_and_reported() -> None:
    slices = [_info(position=(0.0, 0.0, float(z)), sop_instance_uid=f"1.{z}") for z in range(6)]
    slices.append(_info(orientation=(1, 0, 0, 0, 0, -1), position=(0.0, 3.0, 0.0), sop_instance_uid="9.9"))
    plan = plan_stacks(_series(slices))
    assert [s.n_slices for s in plan.stacks] == [6]
    assert plan.stacks[0].part == 1 and "orientations" in plan.stacks[0].split_reason
    (stray,) = plan.rejected
    assert (stray.part, stray.n_slices, stray.failed) == (2, 1, True)
    assert stray.reason == "1 stray slice(s) whose orientations differ from the rest of the series"


def test_missing_geometry_is_a_series_error() -> None:
    slices = [_info(position=(0.0, 0.0, float(z)), sop_instance_uid=f"1.{z}") for z in range(4)]
    slices[2] = dataclasses.replace(slices[2], position=None)
    with pytest.raises(SeriesError, match="1 of 4 file"):
        plan_stacks(_series(slices))


@pytest.mark.parametrize(
    ("unsigned", "bits_stored", "syntax"),
    [(True, 12, None), (False, 16, None), (True, 16, None), (False, 12, None), (True, 12, "1.2.840.10008.1.2")],
)
def test_direct_pixel_read_equals_pydicom(tmp_path: Path, unsigned: bool, bits_stored: int, syntax: str | None) -> None:
    """The fast path reads exactly what pydicom's pixel_array gives, high bits included."""
    import pydicom
    from pydicom.uid import UID

    from orbitct_app.discover import read_slice_info
    from orbitct_app.synthetic import SeriesSpec, write_exam
    from orbitct_app.volume import read_pixels

    truth = write_exam(
        tmp_path, "e", [SeriesSpec(kind="axial", rows=16, cols=24, n_slices=3, unsigned=unsigned)], plant_phi=False
    )
    path = truth.series[0].files[1]
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(np.int32)
    if unsigned:
        raw[0, :4] |= 0xF000 if bits_stored == 12 else 0  # garbage in the unused high bits
    else:
        raw[0, :4] = [-1, -2048, 2047, 5]
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelData = raw.astype("<u2" if unsigned else "<i2").tobytes()
    if syntax:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.save_as(path, implicit_vr=True, little_endian=True)
    else:
        ds.save_as(path)
    info = read_slice_info(path)
    assert info.pixel_offset is not None
    fast = read_pixels(info)
    expected = pydicom.dcmread(path).pixel_array
    assert fast.dtype == expected.dtype and np.array_equal(fast, expected)


def _at(zs: list[float], **changes: object) -> list[SliceInfo]:
    """One slice at each z (an axial stack), SOP Instance UIDs in order."""
    return [
        _info(position=(0.0, 0.0, z), instance_number=i, sop_instance_uid=f"1.{i}", **changes) for i, z in enumerate(zs)
    ]


def test_a_gap_wider_than_three_median_spacings_splits_the_stack() -> None:
    zs = [0.0, 2.0, 4.0, 6.0, 48.0, 50.0, 52.0]  # a 42 mm gap after 2 mm steps
    plan = plan_stacks(_series(_at(zs[::-1])))
    assert not plan.rejected
    assert [(s.part, s.geometry.offsets.tolist()) for s in plan.stacks] == [(1, zs[:4]), (2, zs[4:])]
    reason = plan.stacks[0].split_reason
    assert reason == plan.stacks[1].split_reason
    assert "a slice gap of 42 mm" in reason and "3 x the median spacing 2 mm" in reason
    assert all(s.gap_limit_mm == pytest.approx(6.0) for s in plan.stacks)


@pytest.mark.parametrize("zs", [[0.0, 2.0, 6.0, 8.0, 10.0], [0.0, 2.0, 4.0, 10.0, 12.0, 14.0]])
def test_a_missing_slice_or_a_gap_of_three_spacings_keeps_one_volume(zs: list[float]) -> None:
    (stack,) = plan_stacks(_series(_at(zs))).stacks
    assert stack.part == 0 and stack.n_slices == len(zs) and stack.split_reason == ""


def test_max_gap_overrides_the_default_limit() -> None:
    zs = [0.0, 2.0, 4.0, 6.0, 48.0, 50.0, 52.0]
    (whole,) = plan_stacks(_series(_at(zs)), max_gap_mm=42.5).stacks  # wider than the gap: one volume
    assert whole.part == 0 and whole.n_slices == 7 and whole.gap_limit_mm == 42.5
    plan = plan_stacks(_series(_at([0.0, 2.0, 4.0, 8.0, 10.0, 12.0])), max_gap_mm=3.0)  # a missing slice
    assert [s.n_slices for s in plan.stacks] == [3, 3]
    assert "a slice gap of 4 mm (wider than --max-gap 3 mm)" in plan.stacks[0].split_reason


def test_a_block_too_short_to_convert_is_rejected_with_the_gap_named() -> None:
    zs = [0.0, 1.0, 40.0, 41.0, 42.0, 43.0, 44.0, 90.0]
    plan = plan_stacks(_series(_at(zs)))
    assert [(s.part, s.n_slices) for s in plan.stacks] == [(2, 5)]
    assert [(r.part, r.n_slices, r.failed) for r in plan.rejected] == [(1, 2, False), (3, 1, False)]
    for rejected in plan.rejected:
        assert rejected.reason.startswith("too few slices to make a volume")
        assert "2 slice gaps of 39, 46 mm" in rejected.reason


def test_gaps_split_each_pass_on_its_own() -> None:
    """Two passes over the same positions (repeats), each with the same gap: four parts."""
    zs = [0.0, 3.0, 6.0, 9.0, 60.0, 63.0, 66.0]
    first = _at(zs, acquisition_number=1)
    second = [dataclasses.replace(s, acquisition_number=2, sop_instance_uid=f"2.{i}") for i, s in enumerate(first)]
    plan = plan_stacks(_series(first + second))
    assert [(s.part, s.n_slices, {x.acquisition_number for x in s.slices}) for s in plan.stacks] == [
        (1, 4, {1}), (2, 3, {1}), (3, 4, {2}), (4, 3, {2})
    ]
    assert "passes told apart by AcquisitionNumber" in plan.stacks[0].split_reason
    assert "a slice gap of 51 mm" in plan.stacks[0].split_reason
