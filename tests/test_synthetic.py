"""Tests of the synthetic exam generator: geometry, HU, layout, determinism, planted values."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)
from pydicom.valuerep import validate_value
from scipy import ndimage

from orbitct_app.synthetic import (
    BASIC_ATTRIBUTES,
    ORBITCT_ATTRIBUTES,
    PRIVATE_CREATOR,
    ExamTruth,
    Phantom,
    SeriesSpec,
    SeriesTruth,
    lps_to_ras,
    write_exam,
    write_sample_dataset,
)
from orbitct_app.synthetic_cli import main as synth_main

# --------------------------------------------------------------------------------------------
# helpers: read a written series back the way a converter would, using only the files


@dataclass
class _Stack:
    """Geometry of images sorted along the slice normal, as read from the headers."""

    ipp: np.ndarray  # (n, 3) ImagePositionPatient of each image
    iop: np.ndarray  # (6,) ImageOrientationPatient
    spacing: tuple[float, float]  # PixelSpacing: (row spacing, column spacing)


def _read_series(files: list[Path]) -> tuple[_Stack, np.ndarray]:
    """Classic files: geometry sorted along the slice normal and the HU stack (k, j, i)."""
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    hu = np.stack(
        [d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
         for d in dss]
    )
    ipp = np.array([d.ImagePositionPatient for d in dss], dtype=float)
    return _Stack(ipp, iop, (float(dss[0].PixelSpacing[0]), float(dss[0].PixelSpacing[1]))), hu


def _frame_group(ds: pydicom.Dataset, frame: int, keyword: str) -> pydicom.Dataset:
    """The item of functional group ``keyword`` for ``frame`` (0-based): per-frame, else shared."""
    item = ds.PerFrameFunctionalGroupsSequence[frame]
    group: pydicom.Dataset = (item if keyword in item else ds.SharedFunctionalGroupsSequence[0])[keyword][0]
    return group


def _read_enhanced(path: Path) -> tuple[_Stack, np.ndarray]:
    """An Enhanced CT file: geometry and HU from the functional groups only, sorted along the
    normal. Position per frame; orientation, spacing and rescale shared or per frame."""
    ds = pydicom.dcmread(path)
    n = int(ds.NumberOfFrames)
    iops = {tuple(float(v) for v in _frame_group(ds, f, "PlaneOrientationSequence")
                  .ImageOrientationPatient) for f in range(n)}
    spacings = {tuple(float(v) for v in _frame_group(ds, f, "PixelMeasuresSequence").PixelSpacing)
                for f in range(n)}
    assert len(iops) == 1 and len(spacings) == 1
    iop = np.array(iops.pop())
    ipp = np.array([_frame_group(ds, f, "PlanePositionSequence").ImagePositionPatient
                    for f in range(n)], dtype=float)
    rescale = [_frame_group(ds, f, "PixelValueTransformationSequence") for f in range(n)]
    raw = ds.pixel_array.reshape(n, int(ds.Rows), int(ds.Columns))
    hu = np.stack([raw[f].astype(np.float64) * float(rescale[f].RescaleSlope)
                   + float(rescale[f].RescaleIntercept) for f in range(n)])
    order = np.argsort(ipp @ np.cross(iop[:3], iop[3:]), kind="stable")
    dr, dc = spacings.pop()
    return _Stack(ipp[order], iop, (dr, dc)), hu[order]


def _world(stack: _Stack, k: np.ndarray, j: np.ndarray, i: np.ndarray) -> np.ndarray:
    """World LPS of voxels (slice k, row j, column i) from IPP, IOP and PixelSpacing only."""
    row, col = stack.iop[:3], stack.iop[3:]
    dr, dc = stack.spacing
    world: np.ndarray = stack.ipp[k] + i[:, None] * dc * row + j[:, None] * dr * col
    return world


def _marker_centroids(stack: _Stack, hu: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """World centroid and number of slices of each connected blob above 2000 HU."""
    labels, n = ndimage.label(hu > 2000)
    out = []
    for lab in range(1, n + 1):
        k, j, i = np.nonzero(labels == lab)
        out.append((_world(stack, k, j, i).mean(axis=0), len(np.unique(k))))
    return out


def _voxel_world(stack: _Stack, shape: tuple[int, ...]) -> np.ndarray:
    k, j, i = (a.ravel() for a in np.indices(shape))
    return _world(stack, k, j, i)


# --------------------------------------------------------------------------------------------
# phantom


def test_markers_are_asymmetric_dense_and_inside_the_brain() -> None:
    ph = Phantom()
    c = np.array(ph.center_lps)
    offsets = np.array([np.array(m.center_lps) - c for m in ph.markers])
    assert len(offsets) >= 6
    # any flip or swap of axes (about the head centre) moves some marker away from all markers
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            if perm == (0, 1, 2) and signs == (1, 1, 1):
                continue
            moved = offsets[:, perm] * np.array(signs)
            dist = np.linalg.norm(moved[:, None, :] - offsets[None, :, :], axis=2).min(axis=1)
            assert dist.max() > 10.0, (perm, signs)
    # spread along every axis
    assert np.all(offsets.max(axis=0) - offsets.min(axis=0) > 40.0)
    # dense: the centre is marker HU, a shell just outside is brain, clearly below bone
    for m in ph.markers:
        centre = np.array(m.center_lps)
        shell = centre + np.eye(3) * (m.radius_mm + 0.5)
        assert ph.hu_at(centre) == pytest.approx(2500.0)
        assert np.all(ph.hu_at(np.vstack([shell, 2 * centre - shell])) == ph.hu_brain)
        assert m.hu > ph.hu_bone + 1000
    for s in ph.inserts:
        assert s.radius_mm >= 8
        assert ph.hu_at(np.array(s.center_lps)) == pytest.approx(s.hu)


def test_phantom_regions_at_known_points() -> None:
    ph = Phantom()
    c = np.array(ph.center_lps)
    a, b, _ = ph.head_semi_axes_mm
    pts = {
        "air_far": c + [0, 0, 200],
        "air_front": c + [0, -b - 3, 0],
        "scalp": c + [a - 2, 0, 0],
        "skull": c + [a - 8, 0, 0],
        "brain": c + [0, 0, 30],
        "orbital_fat": np.array(ph.eyes[0].center_lps) + [0, 0, ph.eye_radius_mm + 2],
        "vitreous": np.array(ph.eyes[1].center_lps),
        "headrest": c + [0, ph.headrest_inner_radius_mm + 5, 0],
        "gap": c + [0, b + ph.headrest_gap_mm / 2, 0],
    }
    hu = {k: float(ph.hu_at(v)) for k, v in pts.items()}
    assert hu == {
        "air_far": -1000, "air_front": -1000, "scalp": 40, "skull": 1000, "brain": 35,
        "orbital_fat": -90, "vitreous": 10, "headrest": 100, "gap": -1000,
    }
    # the eyes are anterior (-y) and the left eye is at +x (LPS)
    assert ph.eyes[0].center_lps[1] < c[1] - 50 and ph.eyes[0].center_lps[0] > c[0]
    # vectorised over any leading shape, float32 out
    grid = np.zeros((4, 5, 3)) + c
    assert ph.hu_at(grid).shape == (4, 5) and ph.hu_at(grid).dtype == np.float32


def test_render_plane_matches_hu_at_on_a_tilted_plane() -> None:
    ph = Phantom()
    t = math.radians(-17.0)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, math.cos(t), -math.sin(t)])
    origin = np.array(ph.center_lps) - 70 * row - 80 * col + [0, 0, -3.3]
    img = ph.render_plane(origin, row, col, 160, 140, (1.1, 1.0))
    j, i = np.indices(img.shape)[0], np.indices(img.shape)[1]
    pts = origin + i[..., None] * 1.0 * row + j[..., None] * 1.1 * col
    ref = ph.hu_at(pts)
    assert img.shape == (160, 140)
    assert np.mean(img != ref) < 1e-3  # only float rounding exactly on boundaries may differ
    assert len(np.unique(ref)) >= 5


def test_ras_conversions() -> None:
    ph = Phantom()
    m = ph.markers[0]
    x, y, z = m.center_lps
    assert m.center_ras == (-x, -y, z)
    assert np.allclose(lps_to_ras([[1.0, 2.0, 3.0]]), [[-1.0, -2.0, 3.0]])


# --------------------------------------------------------------------------------------------
# geometry and HU of written series

# non-square pixels (row spacing 1.0 mm along the column direction, column spacing 0.9 mm along
# the row direction) so that a swap of the two PixelSpacing values is detected
_GRID: dict[str, Any] = {"rows": 128, "cols": 128, "pixel_spacing": (1.0, 0.9), "n_slices": 66, "slice_step": 1.5}
_VARIANTS: dict[str, dict[str, object]] = {
    "ascending": {},
    "descending": {"order": "descending"},
    "tilt_plus15": {"tilt_deg": 15.0},
    "tilt_minus15": {"tilt_deg": -15.0},
    "unsigned": {"unsigned": True},
    "per_slice_rescale": {"per_slice_rescale": True},
    "padded": {"padding": True},
    "rle": {"transfer_syntax": RLELossless},
    "jpeg2000": {"transfer_syntax": JPEG2000Lossless, "tilt_deg": 15.0},
    "unsigned_rescale_padded": {"unsigned": True, "per_slice_rescale": True, "padding": True},
    "coronal": {"kind": "coronal", "n_slices": 66, "slice_step": 1.5},
}


@pytest.fixture(scope="module")
def variant_exam(tmp_path_factory: pytest.TempPathFactory) -> ExamTruth:
    specs = [SeriesSpec(series_number=n, **{**_GRID, **v})
             for n, v in enumerate(_VARIANTS.values(), start=1)]
    return write_exam(tmp_path_factory.mktemp("variants"), "variants", specs, seed=11,
                      plant_phi=False)


def _variant(exam: ExamTruth, name: str) -> SeriesTruth:
    return exam.series_by_number(list(_VARIANTS).index(name) + 1)


def _assert_markers_at_world_positions(phantom: Phantom, stack: _Stack, hu: np.ndarray) -> None:
    found = _marker_centroids(stack, hu)
    assert len(found) == len(phantom.markers)
    for m in phantom.markers:
        dist = [np.linalg.norm(c - np.array(m.center_lps)) for c, _ in found]
        best = int(np.argmin(dist))
        assert dist[best] < 1.0, (m.name, dist[best])
        assert found[best][1] >= 2  # hit by at least two slices


def _assert_inserts_within_5_hu(phantom: Phantom, stack: _Stack, hu: np.ndarray) -> None:
    world = _voxel_world(stack, hu.shape)
    for s in phantom.inserts:
        inside = np.linalg.norm(world - np.array(s.center_lps), axis=1) < s.radius_mm - 1.5
        assert inside.sum() > 100
        assert abs(hu.ravel()[inside].mean() - s.hu) < 5.0, s.name


@pytest.mark.parametrize("name", list(_VARIANTS))
def test_markers_found_at_their_world_positions(variant_exam: ExamTruth, name: str) -> None:
    stack, hu = _read_series(_variant(variant_exam, name).files)
    _assert_markers_at_world_positions(variant_exam.phantom, stack, hu)


@pytest.mark.parametrize("name", list(_VARIANTS))
def test_inserts_read_back_within_5_hu(variant_exam: ExamTruth, name: str) -> None:
    stack, hu = _read_series(_variant(variant_exam, name).files)
    _assert_inserts_within_5_hu(variant_exam.phantom, stack, hu)


def test_variant_headers(variant_exam: ExamTruth) -> None:
    def first(name: str) -> pydicom.Dataset:
        return pydicom.dcmread(_variant(variant_exam, name).files[0])

    # tilt: IOP column = (0, cos t, -sin t); the stack is sheared (IPP steps along z only)
    for name, tilt in (("tilt_plus15", 15.0), ("tilt_minus15", -15.0)):
        s = _variant(variant_exam, name)
        ds = first(name)
        t = math.radians(tilt)
        assert float(ds.GantryDetectorTilt) == tilt
        assert np.allclose([float(v) for v in ds.ImageOrientationPatient],
                           [1, 0, 0, 0, math.cos(t), -math.sin(t)], atol=1e-7)
        steps = np.diff(np.array(s.positions_lps), axis=0)
        assert np.allclose(steps, [0, 0, 1.5], atol=1e-3)
        assert s.slice_normal is not None and np.sign(s.slice_normal[1]) == np.sign(tilt)
    # order: InstanceNumber 1 is the lowest z (ascending) or the highest (descending)
    z_asc = [p[2] for p in _variant(variant_exam, "ascending").positions_lps]
    z_desc = [p[2] for p in _variant(variant_exam, "descending").positions_lps]
    assert z_asc == sorted(z_asc) and z_desc == sorted(z_desc, reverse=True)
    for name in ("ascending", "descending"):
        s = _variant(variant_exam, name)
        numbers = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber)
                   for f in s.files]
        assert numbers == list(range(1, s.n_instances + 1))
    # pixel representation and rescale
    assert first("unsigned").PixelRepresentation == 0
    assert float(first("unsigned").RescaleIntercept) == -1024
    assert first("ascending").PixelRepresentation == 1
    for name in ("per_slice_rescale", "unsigned_rescale_padded"):
        s = _variant(variant_exam, name)
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in s.files]
        assert {float(h.RescaleSlope) for h in headers} == {1.0, 0.5}
        assert len({float(h.RescaleIntercept) for h in headers}) >= 3
        assert [(float(h.RescaleSlope), float(h.RescaleIntercept)) for h in headers] == s.rescale
    assert first("rle").file_meta.TransferSyntaxUID == RLELossless
    assert first("jpeg2000").file_meta.TransferSyntaxUID == JPEG2000Lossless
    cor = first("coronal")
    assert [float(v) for v in cor.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    assert "DERIVED" in cor.ImageType


@pytest.mark.parametrize("name", ["padded", "unsigned_rescale_padded"])
def test_padding_fills_outside_the_reconstruction_circle(variant_exam: ExamTruth,
                                                         name: str) -> None:
    series = _variant(variant_exam, name)
    j, i = np.indices((128, 128))
    radius = min(128 * 1.0, 128 * 0.9) / 2  # circle inscribed in the matrix, in mm
    outside = ((j - 63.5) * 1.0) ** 2 + ((i - 63.5) * 0.9) ** 2 > radius**2
    assert 0.2 < outside.mean() < 0.35
    for f in series.files[::10]:
        ds = pydicom.dcmread(f)
        assert ds.PixelPaddingValue == series.pixel_padding_value
        raw = ds.pixel_array
        assert np.all(raw[outside] == ds.PixelPaddingValue)
        assert not np.any(raw[~outside] == ds.PixelPaddingValue)
    unpadded = pydicom.dcmread(_variant(variant_exam, "ascending").files[0])
    assert "PixelPaddingValue" not in unpadded


def test_inserts_are_exact_without_noise(tmp_path: Path) -> None:
    ph = Phantom(noise_sigma_hu=0.0)
    spec = SeriesSpec(rows=96, cols=96, pixel_spacing=(1.2, 1.2), n_slices=30, slice_step=2.0,
                      per_slice_rescale=True, center_offset_mm=(0.0, 0.0, 2.0))
    truth = write_exam(tmp_path, "exact", [spec], phantom=ph, plant_phi=False)
    stack, hu = _read_series(truth.series[0].files)
    world = _voxel_world(stack, hu.shape)
    assert np.array_equal(hu.ravel(), ph.hu_at(world))  # every voxel is the phantom's value
    for s in ph.inserts:
        inside = np.linalg.norm(world - np.array(s.center_lps), axis=1) < s.radius_mm - 0.5
        assert inside.sum() > 100 and np.all(hu.ravel()[inside] == s.hu)


# --------------------------------------------------------------------------------------------
# Enhanced CT: the same variants written as one multi-frame file per series

_ENHANCED = ["ascending", "descending", "tilt_plus15", "tilt_minus15", "per_slice_rescale",
             "rle", "jpeg2000", "unsigned_rescale_padded", "coronal"]


@pytest.fixture(scope="module")
def enhanced_exam(tmp_path_factory: pytest.TempPathFactory) -> ExamTruth:
    """The variants of ``variant_exam`` (same seed, dicom_id and series numbers, so the same
    pixels) as Enhanced CT, with identifiers planted, a classic scout and summary capture."""
    specs = [SeriesSpec(kind="scout", series_number=90)]
    specs += [SeriesSpec(series_number=list(_VARIANTS).index(n) + 1,
                         **{**_GRID, **_VARIANTS[n]}) for n in _ENHANCED]
    specs.append(SeriesSpec(kind="summary", series_number=999, n_slices=1))
    return write_exam(tmp_path_factory.mktemp("enhanced"), "variants", specs, seed=11,
                      enhanced=True)


def test_enhanced_files_are_valid_multiframe_part10(enhanced_exam: ExamTruth) -> None:
    kinds = {s.series_number: s.spec.kind for s in enhanced_exam.series}
    assert kinds[90] == "scout" and kinds[999] == "summary"
    for s in enhanced_exam.series:
        if s.spec.kind in ("scout", "summary"):  # these stay classic single-frame files
            assert not s.is_enhanced and not s.spec.enhanced and s.n_frames is None
            ds = _assert_part10(s.files[0], s)
            assert ds.SOPClassUID in (CTImageStorage, SecondaryCaptureImageStorage)
            assert "NumberOfFrames" not in ds and "SharedFunctionalGroupsSequence" not in ds
            continue
        n = 66
        assert s.is_enhanced and s.spec.enhanced
        assert s.n_files == 1 and s.n_frames == n and s.n_instances == n
        assert len(s.positions_lps) == len(s.rescale) == n
        ds = _assert_part10(s.files[0], s)
        assert s.sop_instance_uids == [ds.SOPInstanceUID]
        assert ds.SOPClassUID == EnhancedCTImageStorage == "1.2.840.10008.5.1.4.1.1.2.1"
        assert int(ds.NumberOfFrames) == n and ds.InstanceNumber == 1
        assert ds.pixel_array.shape == (n, 128, 128)
        # the Image Pixel and Enhanced CT Image attributes a reader needs, at top level
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated) == (128, 128, 1, 16)
        assert ds.BitsStored in (12, 16) and ds.HighBit == ds.BitsStored - 1
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.PixelRepresentation == (0 if s.spec.unsigned else 1)
        assert ds.ContentQualification == "PRODUCT" and ds.AcquisitionContextSequence == []
        assert ds.PresentationLUTShape == "IDENTITY" and ds.BurnedInAnnotation == "NO"
        assert ds.FrameOfReferenceUID == enhanced_exam.frame_of_reference_uid
        image_type = list(ds.ImageType)
        original = s.spec.kind == "axial"
        assert image_type == (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if original
                              else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"])
        assert ("PixelPaddingValue" in ds) == s.spec.padding
        if s.spec.padding:
            assert ds.PixelPaddingValue == s.pixel_padding_value
        # geometry and rescale live in the functional groups only
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                   "SliceThickness", "RescaleSlope", "RescaleIntercept", "SliceLocation"):
            assert kw not in ds, kw
        shared = ds.SharedFunctionalGroupsSequence
        assert len(shared) == 1
        sh = shared[0]
        pm = sh.PixelMeasuresSequence[0]
        assert [float(v) for v in pm.PixelSpacing] == [1.0, 0.9]
        assert float(pm.SliceThickness) == 1.5
        assert s.orientation is not None
        assert [float(v) for v in sh.PlaneOrientationSequence[0].ImageOrientationPatient] == \
            pytest.approx([*s.orientation[0], *s.orientation[1]])
        assert list(sh.CTImageFrameTypeSequence[0].FrameType) == image_type
        assert ("CTAcquisitionDetailsSequence" in sh) == original
        if original:
            tilt = float(sh.CTAcquisitionDetailsSequence[0].GantryDetectorTilt)
            assert tilt == s.spec.tilt_deg
        frames = ds.PerFrameFunctionalGroupsSequence
        assert len(frames) == n
        per_frame = s.spec.per_slice_rescale
        assert ("PixelValueTransformationSequence" in sh) == (not per_frame)
        assert all(("PixelValueTransformationSequence" in f) == per_frame for f in frames)
        rescale = [_frame_group(ds, f, "PixelValueTransformationSequence") for f in range(n)]
        assert [(float(r.RescaleSlope), float(r.RescaleIntercept)) for r in rescale] == s.rescale
        assert {r.RescaleType for r in rescale} == {"HU"}
        # frame order = the spec's order; the positions are the truth's, frame by frame
        positions = [tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                     for f in frames]
        assert positions == s.positions_lps
        # dimension index values point at the declared attributes of the declared groups
        index = ds.DimensionIndexSequence
        organisation = ds.DimensionOrganizationSequence[0].DimensionOrganizationUID
        assert all(d.DimensionOrganizationUID == organisation for d in index)
        in_stack = []
        for f in frames:
            content = f.FrameContentSequence[0]
            assert content.FrameAcquisitionNumber == 1
            values = list(content.DimensionIndexValues)
            assert len(values) == len(index)
            for d, v in zip(index, values, strict=True):
                group = f[d.FunctionalGroupPointer][0]
                assert int(group[d.DimensionIndexPointer].value) == v
            in_stack.append(int(content.InStackPositionNumber))
        normal = np.array(s.slice_normal)
        along = np.array(positions) @ normal
        assert sorted(in_stack) == list(range(1, n + 1))
        assert np.all(np.diff(along[np.argsort(in_stack)]) > 0)  # 1 at one end, in order


def test_enhanced_frame_order_follows_the_spec(enhanced_exam: ExamTruth) -> None:
    z_asc = [p[2] for p in _variant(enhanced_exam, "ascending").positions_lps]
    z_desc = [p[2] for p in _variant(enhanced_exam, "descending").positions_lps]
    assert z_asc == sorted(z_asc) and z_desc == sorted(z_desc, reverse=True)
    for name, tilt in (("tilt_plus15", 15.0), ("tilt_minus15", -15.0)):
        s = _variant(enhanced_exam, name)
        steps = np.diff(np.array(s.positions_lps), axis=0)
        assert np.allclose(steps, [0, 0, 1.5], atol=1e-3)  # a sheared stack, as classic
        assert s.slice_normal is not None and np.sign(s.slice_normal[1]) == np.sign(tilt)
    assert _variant(enhanced_exam, "rle").transfer_syntax_uid == RLELossless
    assert _variant(enhanced_exam, "jpeg2000").transfer_syntax_uid == JPEG2000Lossless
    assert _variant(enhanced_exam, "ascending").transfer_syntax_uid == ExplicitVRLittleEndian


@pytest.mark.parametrize("name", _ENHANCED)
def test_enhanced_markers_and_inserts_at_their_world_positions(enhanced_exam: ExamTruth,
                                                               name: str) -> None:
    stack, hu = _read_enhanced(_variant(enhanced_exam, name).files[0])
    _assert_markers_at_world_positions(enhanced_exam.phantom, stack, hu)
    _assert_inserts_within_5_hu(enhanced_exam.phantom, stack, hu)


@pytest.mark.parametrize("name", _ENHANCED)
def test_enhanced_frames_equal_the_classic_twin(variant_exam: ExamTruth,
                                                enhanced_exam: ExamTruth, name: str) -> None:
    classic, enhanced = _variant(variant_exam, name), _variant(enhanced_exam, name)
    assert enhanced.positions_lps == classic.positions_lps
    assert enhanced.rescale == classic.rescale
    assert enhanced.orientation == classic.orientation
    assert enhanced.pixel_padding_value == classic.pixel_padding_value
    assert enhanced.series_instance_uid != classic.series_instance_uid
    ds = pydicom.dcmread(enhanced.files[0])
    frames = ds.pixel_array
    slices = [pydicom.dcmread(f) for f in classic.files]  # InstanceNumber order
    for f, (item, sl) in enumerate(zip(ds.PerFrameFunctionalGroupsSequence, slices, strict=True)):
        # frame f + 1 is InstanceNumber f + 1: same position (to the character), same pixels
        assert list(item.PlanePositionSequence[0].ImagePositionPatient) == \
            list(sl.ImagePositionPatient)
        assert np.array_equal(frames[f], sl.pixel_array), f
    assert ds.BitsStored == slices[0].BitsStored
    assert ds.PixelRepresentation == slices[0].PixelRepresentation
    # and so in position order: the converted volumes must be identical
    stack_e, hu_e = _read_enhanced(enhanced.files[0])
    stack_c, hu_c = _read_series(classic.files)
    assert np.array_equal(hu_e, hu_c) and np.array_equal(stack_e.ipp, stack_c.ipp)


def _resolve(ds: pydicom.Dataset, location: str) -> pydicom.Dataset:
    """The item a PlantedValue location names: ``"A[0].B[2]"``, private ``"(0009,1010)[0]"``."""
    item = ds
    if location == "top":
        return item
    for part in location.split("."):
        m = re.fullmatch(r"(\w+|\([0-9A-F]{4},[0-9A-F]{4}\))\[(\d+)\]", part)
        assert m, part
        name, index = m.groups()
        key = int(name[1:5] + name[6:10], 16) if name.startswith("(") else name
        item = item[key].value[int(index)]
    return item


def test_enhanced_planted_values_inside_the_functional_groups(enhanced_exam: ExamTruth) -> None:
    fg = [p for p in enhanced_exam.planted if p.in_functional_groups]
    shared = [p for p in fg if p.location.startswith("SharedFunctionalGroupsSequence[0]")]
    per_frame = [p for p in fg if p.location.startswith("PerFrameFunctionalGroupsSequence[")]
    assert shared and per_frame and len(shared) + len(per_frame) == len(fg)
    # orbitct-scope standard attributes in the shared item, in frame items, and nested
    # inside a functional group macro item of both
    orbitct = {p.keyword for p in fg if p.scope == "orbitct" and not p.private}
    assert {"PatientName", "PatientID", "OperatorsName", "InstitutionName",
            "ReferringPhysicianName"} <= orbitct <= set(ORBITCT_ATTRIBUTES)
    locations = {p.location for p in fg}
    assert {"SharedFunctionalGroupsSequence[0]",
            "SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0]",
            "SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0].AnatomicRegionSequence[0]",
            "PerFrameFunctionalGroupsSequence[0]",
            "PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]",
            "PerFrameFunctionalGroupsSequence[65]",
            "PerFrameFunctionalGroupsSequence[65].FrameContentSequence[0]"} == locations
    assert max(p.depth for p in fg if p.scope == "orbitct") == 3
    # private elements (with their creator) in the shared item, frame items, nested items
    private = {p.location for p in fg if p.private}
    assert {"SharedFunctionalGroupsSequence[0]", "PerFrameFunctionalGroupsSequence[0]",
            "PerFrameFunctionalGroupsSequence[65].FrameContentSequence[0]"} <= private
    assert all(p.scope == "orbitct" for p in fg if p.private)
    assert any(p.scope == "basic" for p in fg)
    scout = enhanced_exam.series_by_number(90).files[0]
    scout_bytes = scout.read_bytes()
    assert not any(p.value_bytes in scout_bytes for p in fg if p.searchable)  # enhanced only
    assert enhanced_exam.planted_in(scout) == [p for p in enhanced_exam.planted
                                               if not p.in_functional_groups]
    for s in enhanced_exam.series:
        if not s.is_enhanced:
            assert s.planted == []
            continue
        assert {(p.keyword, p.location) for p in s.planted} == {(p.keyword, p.location)
                                                                for p in fg}
        raw = s.files[0].read_bytes()
        expected = enhanced_exam.planted_in(s.files[0])
        missing = [p.value for p in expected if p.searchable and p.value_bytes not in raw]
        assert not missing, (s.series_number, missing[:3])
        # each value sits exactly where its location says
        ds = pydicom.dcmread(s.files[0])
        for p in s.planted:
            item = _resolve(ds, p.location)
            if p.private:
                group, elem = int(p.keyword[1:5], 16), int(p.keyword[6:10], 16)
                creator = item[group, elem >> 8].value  # (gggg,xxee) -> creator (gggg,00xx)
                assert creator == PRIVATE_CREATOR, p
                value = item[group, elem].value
                value = value if isinstance(value, bytes) else str(value).encode()
                assert p.value_bytes in value, p
            else:
                assert str(item[p.keyword].value) == p.value, p
        assert not any(p.value_bytes in ds.PixelData for p in expected if p.searchable)


def test_enhanced_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    specs = [SeriesSpec(kind="scout"),
             SeriesSpec(n_slices=8, tilt_deg=-7.0, padding=True, per_slice_rescale=True,
                        transfer_syntax=RLELossless),
             SeriesSpec(kind="coronal", n_slices=6, transfer_syntax=JPEG2000Lossless,
                        order="descending")]
    a = write_exam(tmp_path / "a", "exam", specs, seed=5, shuffle_names=True, enhanced=True)
    b = write_exam(tmp_path / "b", "exam", specs, seed=5, shuffle_names=True, enhanced=True)
    c = write_exam(tmp_path / "c", "exam", specs, seed=6, shuffle_names=True, enhanced=True)
    n = write_exam(tmp_path / "n", "exam", specs, seed=5, shuffle_names=True, enhanced=True,
                   plant_phi=False)
    tree_a, tree_b = _tree_bytes(a.path), _tree_bytes(b.path)
    assert len(tree_a) == 3 and tree_a == tree_b
    assert a.planted == b.planted and [s.planted for s in a.series] == [s.planted for s in b.series]
    assert set(_tree_bytes(c.path).values()).isdisjoint(tree_a.values())
    # the phantom content does not depend on planting; nothing is planted without it
    assert n.planted == [] and all(s.planted == [] for s in n.series)
    assert b"PHI" not in b"".join(_tree_bytes(n.path).values())
    for s, t in zip(a.series, n.series, strict=True):
        assert np.array_equal(pydicom.dcmread(s.files[0]).pixel_array,
                              pydicom.dcmread(t.files[0]).pixel_array)


@pytest.fixture(scope="module")
def default_exam(tmp_path_factory: pytest.TempPathFactory) -> ExamTruth:
    return write_exam(tmp_path_factory.mktemp("default"), "exam_default", seed=7)


def test_headrest_is_separated_from_the_head(default_exam: ExamTruth) -> None:
    axial = next(s for s in default_exam.series if s.spec.kind == "axial")
    stack, hu = _read_series(axial.files)
    labels, n = ndimage.label(hu > -200)
    assert n >= 2
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    ph = default_exam.phantom
    world = _voxel_world(stack, hu.shape)
    rel = world - np.array(ph.center_lps)
    q_skin = np.sum((rel / np.array(ph.head_semi_axes_mm)) ** 2, axis=1)
    in_largest = labels.ravel() == largest
    assert np.all(q_skin[in_largest] < 1.05)  # the largest component is the head
    radial = np.hypot(rel[:, 0], rel[:, 1])
    rest = (labels.ravel() > 0) & ~in_largest
    assert rest.sum() > 100 and np.all(radial[rest] > ph.headrest_inner_radius_mm - 1.5)
    assert np.all(rel[rest, 1] > 0)  # posterior of the head (supine)


def test_default_exam_layout_and_kinds(default_exam: ExamTruth) -> None:
    kinds = [s.spec.kind for s in default_exam.series]
    assert sorted(kinds) == ["axial", "scout", "summary"]
    by_kind = {s.spec.kind: s for s in default_exam.series}
    assert by_kind["summary"].n_instances == 2 and by_kind["scout"].n_instances == 1
    assert by_kind["axial"].spec.rows == 128 and by_kind["axial"].n_instances == 40
    for s in default_exam.series:
        for f in s.files:
            assert re.fullmatch(r"S\d{3}/IM\d{5}\.dcm", f.relative_to(default_exam.path).as_posix())
    scout = pydicom.dcmread(by_kind["scout"].files[0])
    assert list(scout.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert scout.SOPClassUID == CTImageStorage and scout.Modality == "CT"
    assert scout.pixel_array.max() > 1000  # a projection, not an empty image
    summary = pydicom.dcmread(by_kind["summary"].files[0])
    assert summary.SOPClassUID == SecondaryCaptureImageStorage
    assert summary.PhotometricInterpretation == "RGB" and summary.BitsAllocated == 8
    assert summary.BurnedInAnnotation == "YES"
    assert list(summary.ImageType) == ["DERIVED", "SECONDARY", "RESULTS"]
    assert summary.pixel_array.shape[-1] == 3
    axial = pydicom.dcmread(by_kind["axial"].files[0])
    assert list(axial.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert axial.Manufacturer == "ORBITCT-SYNTH" and axial.ConvolutionKernel
    assert axial.FrameOfReferenceUID == scout.FrameOfReferenceUID == \
        default_exam.frame_of_reference_uid
    assert axial.StudyInstanceUID == summary.StudyInstanceUID == default_exam.study_uid
    assert len({s.series_instance_uid for s in default_exam.series}) == 3
    skipped = {e.series_number: e.stage for e in default_exam.skipped_expectations}
    assert skipped == {by_kind["scout"].series_number: "anonymize",
                       by_kind["summary"].series_number: "anonymize"}


def _assert_part10(f: Path, series: SeriesTruth) -> pydicom.Dataset:
    with open(f, "rb") as fh:
        head = fh.read(132)
    assert head[128:132] == b"DICM"
    ds = pydicom.dcmread(f)  # no force
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.TransferSyntaxUID == series.transfer_syntax_uid
    assert ds.SeriesInstanceUID == series.series_instance_uid
    return ds


def test_sample_dataset_files_are_valid_part10(tmp_path: Path) -> None:
    truths = write_sample_dataset(tmp_path, 5, seed=2)
    assert [t.dicom_id for t in truths] == [f"exam_00{n}" for n in range(1, 6)]
    on_disk = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == {f for t in truths for f in t.files}
    tilts, syntaxes, orders = set(), set(), set()
    for t in truths:
        for s in t.series:
            tilts.add(s.spec.tilt_deg)
            syntaxes.add(s.transfer_syntax_uid)
            orders.add(s.spec.order)
            sop_uids = []
            for f in s.files:
                ds = _assert_part10(f, s)
                sop_uids.append(ds.SOPInstanceUID)
                assert ds.StudyInstanceUID == t.study_uid
            assert sop_uids == s.sop_instance_uids
    assert {15.0, -12.0} <= tilts and {RLELossless, JPEG2000Lossless} <= syntaxes
    assert orders == {"ascending", "descending"}
    # exam 2 has shuffled extensionless hex names, exam 3 nested folders
    names = [f.name for f in truths[1].files]
    assert all(re.fullmatch(r"[0-9A-F]{16}", n) for n in names)
    axial = truths[1].series_by_number(2)
    assert [f.name for f in axial.files] != sorted(f.name for f in axial.files)
    assert all(len(f.relative_to(truths[2].path).parts) == 4 for f in truths[2].files)
    # exam 5 is Enhanced CT: its axial and coronal series are one multi-frame file each
    assert not any(s.is_enhanced for t in truths[:4] for s in t.series)
    enhanced = {s.spec.kind: s for s in truths[4].series if s.is_enhanced}
    assert sorted(enhanced) == ["axial", "coronal"]
    for s in enhanced.values():
        ds = pydicom.dcmread(s.files[0], stop_before_pixels=True)
        assert ds.SOPClassUID == EnhancedCTImageStorage
        assert s.n_files == 1 and int(ds.NumberOfFrames) == s.n_frames == s.spec.n_slices
    assert enhanced["axial"].spec.per_slice_rescale and enhanced["axial"].spec.tilt_deg
    # frames count as instances (as in discovery): only the coronal one is skipped, by extract
    skipped = {e.series_number: e.stage for e in truths[4].skipped_expectations}
    assert skipped == {1: "anonymize", 3: "extract", 999: "anonymize"}


def test_full_size_sample_is_realistic_without_writing_it(tmp_path: Path) -> None:
    from orbitct_app.synthetic.exam import _sample_exam

    thin = [_sample_exam(i, "full")[0][1].resolved() for i in range(4)]
    assert all(s.kind == "axial" and (s.rows, s.cols) == (512, 512) for s in thin)
    assert all(s.pixel_spacing == (0.45, 0.45) and s.slice_step == 0.625 for s in thin)
    assert all(s.n_slices == 240 for s in thin)
    with pytest.raises(ValueError, match="size"):
        write_sample_dataset(tmp_path, 1, size="huge")  # type: ignore[arg-type]


def test_shuffled_nested_names(tmp_path: Path) -> None:
    truth = write_exam(tmp_path, "shuf", [SeriesSpec(n_slices=12)], seed=4, shuffle_names=True,
                       nested=True, plant_phi=False)
    files = truth.series[0].files
    assert all("." not in f.name and len(f.relative_to(truth.path).parts) == 3 for f in files)
    assert [f.name for f in files] != sorted(f.name for f in files)
    for n, f in enumerate(files, start=1):
        assert _assert_part10(f, truth.series[0]).InstanceNumber == n


# --------------------------------------------------------------------------------------------
# determinism


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    specs = [SeriesSpec(kind="scout"), SeriesSpec(n_slices=8, tilt_deg=-7.0, padding=True,
                                                  transfer_syntax=RLELossless),
             SeriesSpec(kind="summary", n_slices=1)]
    a = write_exam(tmp_path / "a", "exam", specs, seed=5, shuffle_names=True)
    b = write_exam(tmp_path / "b", "exam", specs, seed=5, shuffle_names=True)
    c = write_exam(tmp_path / "c", "exam", specs, seed=6, shuffle_names=True)
    tree_a, tree_b = _tree_bytes(a.path), _tree_bytes(b.path)
    assert len(tree_a) == 10 and tree_a == tree_b
    assert a.study_uid == b.study_uid and a.planted == b.planted
    assert c.study_uid != a.study_uid
    assert not {s.series_instance_uid for s in a.series} & {s.series_instance_uid for s in c.series}
    assert not set(a.series[1].sop_instance_uids) & set(c.series[1].sop_instance_uids)
    assert set(_tree_bytes(c.path).values()).isdisjoint(tree_a.values())


def test_pixels_do_not_depend_on_planting(tmp_path: Path) -> None:
    spec = [SeriesSpec(n_slices=5)]
    with_phi = write_exam(tmp_path / "p", "exam", spec, seed=3, plant_phi=True)
    without = write_exam(tmp_path / "n", "exam", spec, seed=3, plant_phi=False)
    assert without.planted == [] and with_phi.planted
    for f, g in zip(with_phi.files, without.files, strict=True):
        assert np.array_equal(pydicom.dcmread(f).pixel_array, pydicom.dcmread(g).pixel_array)
    assert b"PHI" not in b"".join(g.read_bytes() for g in without.files)


# --------------------------------------------------------------------------------------------
# planted identifiers


def _walk(ds: pydicom.Dataset, depth: int = 0, in_private: bool = False) -> Iterator[tuple[DataElement, int, bool]]:
    """Yield (element, depth, inside_private_sequence) for every element at every depth."""
    for elem in ds:
        yield elem, depth, in_private
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item, depth + 1, in_private or elem.tag.is_private)


def test_planted_values_are_in_every_file(default_exam: ExamTruth) -> None:
    planted = default_exam.planted
    orbitct = [p for p in planted if p.scope == "orbitct"]
    basic = [p for p in planted if p.scope == "basic"]
    # the twelve attributes, at top level and at depth >= 2 in standard sequences
    for kw in ORBITCT_ATTRIBUTES:
        assert {p.location for p in orbitct if p.keyword == kw and not p.private} >= {"top"}
        assert any(p.depth >= 2 for p in orbitct if p.keyword == kw and not p.private), kw
    assert any(p.location.startswith("OtherPatientIDsSequence") for p in orbitct)
    assert any(p.location.startswith("ReferencedPatientSequence") for p in orbitct)
    assert all(p.scope == "orbitct" for p in planted if p.private)
    top_basic = {p.keyword for p in basic if p.location == "top"}
    assert len(top_basic) >= 30 and top_basic <= set(BASIC_ATTRIBUTES)
    assert any(p.depth >= 1 for p in basic)
    # unique per attribute and location; only the one-letter sex code is not searchable
    assert len({(p.keyword, p.location) for p in planted}) == len(planted)
    searchable = [p.value for p in planted if p.searchable]
    assert len(set(searchable)) == len(searchable)
    assert {p.keyword for p in orbitct if not p.searchable} == {"PatientSex"}
    for p in planted:  # VR-valid
        if not p.private:
            validate_value(p.vr, p.value, config.RAISE)
    forbidden = default_exam.orbitct_forbidden_bytes
    assert len(forbidden) == len([p for p in orbitct if p.searchable]) > 60
    for f in default_exam.files:
        raw = f.read_bytes()
        missing = [v for v in forbidden + default_exam.basic_forbidden_bytes if v not in raw]
        assert not missing, (f, missing[:3])
        pixel = pydicom.dcmread(f)["PixelData"].value
        assert not any(v in pixel for v in forbidden)


def test_private_elements_everywhere(default_exam: ExamTruth) -> None:
    ds = pydicom.dcmread(default_exam.series[1].files[0])
    elems = list(_walk(ds))
    private = [(e, d, p) for e, d, p in elems if e.tag.is_private and not e.tag.is_private_creator]
    assert any(d == 0 for e, d, _ in private)  # top level
    assert any(d == 0 and e.VR == "SQ" for e, d, _ in private)  # a private sequence ...
    assert any(p and not e.tag.is_private for e, d, p in elems)  # ... holding standard elements
    assert any(d >= 1 and p for e, d, p in private)  # ... and private ones
    # private elements inside an item of a standard sequence
    ras = ds.RequestAttributesSequence[0]
    block = ras.private_block(0x0009, PRIVATE_CREATOR)
    assert block[0x01].value.startswith("PHI")
    creators = {e.value for e, _, _ in elems if e.tag.is_private_creator}
    assert PRIVATE_CREATOR in creators
    assert {e.VR for e, _, _ in private} >= {"LO", "SH", "UN", "OB", "SQ"}
    planted_private = [p for p in default_exam.planted if p.private]
    assert {p.location for p in planted_private} >= {"top", "RequestAttributesSequence[0]"}


# --------------------------------------------------------------------------------------------
# validation and command line


def test_invalid_specs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tilt"):
        SeriesSpec(kind="coronal", tilt_deg=10.0)
    with pytest.raises(ValueError, match="order"):
        SeriesSpec(order="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="collides"):
        write_exam(tmp_path, "bad", [SeriesSpec(padding=True, padding_value=-1000)])
    with pytest.raises(ValueError, match="duplicate"):
        write_exam(tmp_path, "dup", [SeriesSpec(series_number=2), SeriesSpec(series_number=2)])
    write_exam(tmp_path, "once", [SeriesSpec(n_slices=2)], plant_phi=False)
    with pytest.raises(FileExistsError):
        write_exam(tmp_path, "once", [SeriesSpec(n_slices=2)])
    with pytest.raises(ValueError, match="enhanced"):
        SeriesSpec(kind="scout", enhanced=True)
    with pytest.raises(ValueError, match="enhanced"):
        SeriesSpec(kind="summary", enhanced=True)
    with pytest.raises(ValueError, match="extra gap"):
        SeriesSpec(n_slices=10, extra_gaps=((10, 5.0),))
    with pytest.raises(ValueError, match="extra gaps"):
        SeriesSpec(kind="scout", extra_gaps=((1, 5.0),))
    with pytest.raises(ValueError, match="Contrast/Bolus"):
        SeriesSpec(contrast_bolus=(("PatientName", "X"),))


def test_manufacturer_and_contrast_bolus_are_written_in_every_file(tmp_path: Path) -> None:
    bolus = (
        ("ContrastBolusAgent", "IOHEXOL"),
        ("ContrastBolusVolume", "80"),
        ("ContrastBolusAgentSequence", "Iohexol"),
    )
    truth = write_exam(tmp_path, "cb", [SeriesSpec(n_slices=3, rows=16, cols=16, manufacturer="GE MEDICAL SYSTEMS",
                                                   convolution_kernel="BONE", contrast_bolus=bolus),
                                        SeriesSpec(series_number=3, n_slices=3, rows=16, cols=16)], plant_phi=False)
    for f in truth.series[0].files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert (ds.Manufacturer, ds.ConvolutionKernel, ds.ContrastBolusAgent) == (
            "GE MEDICAL SYSTEMS",
            "BONE",
            "IOHEXOL",
        )
        assert float(ds.ContrastBolusVolume) == 80.0
        assert ds.ContrastBolusAgentSequence[0].CodeMeaning == "Iohexol"
    plain = pydicom.dcmread(truth.series[1].files[0], stop_before_pixels=True)
    assert plain.Manufacturer == "ORBITCT-SYNTH" and "ContrastBolusAgent" not in plain


def test_wide_phantom_has_markers_near_either_side() -> None:
    phantom = Phantom.wide(440.0, depth_mm=260.0, noise_sigma_hu=0.0)
    cx, cy, cz = phantom.center_lps
    assert phantom.head_semi_axes_mm == (220.0, 130.0, Phantom().head_semi_axes_mm[2])
    assert [m.name for m in phantom.markers][: len(Phantom().markers)] == [m.name for m in Phantom().markers]
    by_name = {m.name: m for m in phantom.markers}
    left, right = by_name["lateral_left"], by_name["lateral_right"]
    assert left.center_lps == (cx + 195.0, cy, cz) and right.center_lps == (cx - 195.0, cy, cz)  # +x is left
    points = np.array(
        [left.center_lps, right.center_lps, (cx + 219.0, cy, cz), (cx + 221.0, cy, cz), (cx, cy + 129.0, cz)]
    )
    assert phantom.hu_at(points).tolist() == [phantom.marker_hu] * 2 + [phantom.hu_scalp, -1000.0, phantom.hu_scalp]


@pytest.mark.parametrize("enhanced", [False, True])
def test_extra_gaps_leave_blocks_apart_centred_on_the_axis(tmp_path: Path, enhanced: bool) -> None:
    spec = SeriesSpec(
        kind="axial", rows=16, cols=16, n_slices=8, slice_step=2.0, extra_gaps=((3, 1.0), (5, 20.0)), enhanced=enhanced
    )
    truth = write_exam(tmp_path, "gaps", [spec], plant_phi=False)
    z = sorted(p[2] for p in truth.series[0].positions_lps)
    assert np.diff(z).tolist() == pytest.approx([2.0, 2.0, 3.0, 2.0, 22.0, 2.0, 2.0])
    assert (z[0] + z[-1]) / 2 == pytest.approx(truth.phantom.center_lps[2])
    files = truth.series[0].files
    frames = pydicom.dcmread(files[0]).PerFrameFunctionalGroupsSequence if enhanced else None
    written = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in frames] if frames else [
        float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files
    ]
    assert sorted(written) == pytest.approx(z)


def test_cli_writes_exams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert synth_main([str(out), "--n-exams", "2", "--seed", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["exam_001", "exam_002"]
    assert all(any(p.rglob("*")) for p in out.iterdir())
    assert "wrote 2 exams" in capsys.readouterr().out
    assert synth_main([str(out), "--n-exams", "1"]) == 1  # exam_001 exists already
    assert synth_main([str(tmp_path / "enh"), "--n-exams", "1", "--enhanced"]) == 0
    assert "enhanced" in capsys.readouterr().out
    axial = pydicom.dcmread(tmp_path / "enh" / "exam_001" / "S002" / "IM00001.dcm",
                            stop_before_pixels=True)
    assert axial.SOPClassUID == EnhancedCTImageStorage and int(axial.NumberOfFrames) > 10
    assert synth_main([str(out), "--size", "huge"]) == 2
