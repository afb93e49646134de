"""Body mask and resampling on small in-memory stacks: an independent reference, and the same
result whatever the number of threads (masking, resampling, NIfTI compression)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from orbitct_app import threads
from orbitct_app.nifti import write_nifti
from orbitct_app.resample import OutputGrid, apply_body_mask, cropped_fraction, output_grid, resample
from orbitct_app.volume import AIR_HU, StackGeometry


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = threads.get_threads()
    yield
    threads.set_threads(before)


def _geometry(n_k: int, n: int, *, tilt_mm: float = 0.0) -> StackGeometry:
    """An axial stack 0.7 mm apart with 0.9 mm pixels; ``tilt_mm`` shifts each slice along y."""
    positions = np.array([[-50.0, -60.0 + k * tilt_mm, 20.0 + 0.7 * k] for k in range(n_k)])
    return StackGeometry(
        row_dir=np.array([1.0, 0.0, 0.0]), col_dir=np.array([0.0, 1.0, 0.0]), row_spacing=0.9,
        column_spacing=0.9, rows=n, columns=n, positions=positions,
    )


def _phantom(n_k: int = 23, n: int = 64) -> NDArray[np.int16]:
    """A body (with an air pocket enclosed in its slices and one open to the outside), a
    smaller head-rest touching it only along an edge, and isolated bright specks."""
    k, j, i = np.mgrid[:n_k, :n, :n]
    vol = np.full((n_k, n, n), AIR_HU, dtype=np.int16)
    body = ((j - 28) ** 2 + (i - 32) ** 2 < 20**2) & (k > 1) & (k < n_k - 2)
    vol[body] = 40
    vol[body & ((j - 26) ** 2 + (i - 30) ** 2 < 4**2)] = -900  # sinus: enclosed in each slice
    vol[body & (j < 14) & (abs(i - 32) < 2)] = -950  # a channel to the outside: not enclosed
    rest = (j >= 49) & (j < 53) & (abs(i - 32) < 25) & (k > 3) & (k < n_k - 4)
    vol[rest] = 200
    vol[:, 48, :] = np.where(vol[:, 48, :] > -200, -1000, vol[:, 48, :])  # rest meets body at an edge only
    vol[5, 3, 3] = vol[17, 60, 60] = 700  # specks
    return vol


def _reference_mask(vol: NDArray[np.int16], threshold: float) -> NDArray[np.bool_]:
    labels, n = ndimage.label(vol > threshold)  # face connectivity, as documented
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_body_mask_matches_an_independent_reference(n_threads: int) -> None:
    threads.set_threads(n_threads)
    vol = _phantom()
    geometry = _geometry(*vol.shape[:2])
    expected_mask = _reference_mask(vol, -200)
    expected = np.where(expected_mask, vol, np.int16(AIR_HU))
    body = apply_body_mask(vol, geometry, -200)
    np.testing.assert_array_equal(vol, expected)
    assert vol[5, 3, 3] == vol[17, 60, 60] == AIR_HU  # specks and head-rest gone
    assert (vol[:, 49:53] == AIR_HU).all()
    assert vol[10, 26, 30] == -900  # the enclosed air pocket is kept
    ks, js, is_ = np.nonzero(expected_mask)
    assert body.n_voxels == ks.size
    assert body.bbox_kji == ((ks.min(), ks.max()), (js.min(), js.max()), (is_.min(), is_.max()))
    world = geometry.world(ks.astype(float), js.astype(float), is_.astype(float))
    np.testing.assert_allclose(body.centroid_lps, world.mean(axis=0), atol=1e-9)


@pytest.mark.parametrize("tilt_mm", [0.0, 0.3])
def test_resampling_is_the_same_on_any_number_of_threads(tilt_mm: float) -> None:
    vol = _phantom()
    geometry = _geometry(*vol.shape[:2], tilt_mm=tilt_mm)
    body = apply_body_mask(vol, geometry, -200)
    grid = output_grid(geometry, body, 0.5, 96)
    results = []
    for n in (1, 2, 3):
        threads.set_threads(n)
        results.append(resample(vol, geometry, grid))
    assert results[0].shape == grid.shape_kji
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize(("n_threads", "n"), [(1, 5), (2, 5), (3, 2), (2, 0), (4, 9)])
def test_split_range_covers_each_index_once(n_threads: int, n: int) -> None:
    threads.set_threads(n_threads)
    parts = threads.split_range(n)
    assert [k for part in parts for k in part] == list(range(n))
    assert all(len(part) for part in parts) or n == 0
    assert len(parts) <= n_threads
    assert max(map(len, parts), default=0) - min(map(len, parts), default=0) <= 1


def _reference_sample(vol: NDArray[np.int16], geometry: StackGeometry, x: NDArray[np.float64]) -> float:
    """The documented sampling, voxel by voxel in world coordinates: bilinear on the two slice
    planes around ``x`` at its orthogonal projection onto each, then linear along the normal."""
    n = geometry.normal
    offsets = geometry.offsets
    t = float(x @ n)
    if not offsets[0] - 1e-6 <= t <= offsets[-1] + 1e-6:
        return float(AIR_HU)
    u = float(np.interp(t, offsets, np.arange(len(offsets))))
    lower = min(int(np.floor(u)), len(offsets) - 2)
    values = []
    for q in (lower, lower + 1):
        d = x - geometry.positions[q]
        d -= (d @ n) * n  # onto plane q
        col = d @ geometry.row_dir / geometry.column_spacing
        row = d @ geometry.col_dir / geometry.row_spacing
        last_row, last_col = vol.shape[1] - 1, vol.shape[2] - 1
        if not (-1e-6 <= row <= last_row + 1e-6 and -1e-6 <= col <= last_col + 1e-6):
            values.append(float(AIR_HU))
            continue
        r0, c0 = min(int(np.floor(row)), last_row - 1), min(int(np.floor(col)), last_col - 1)
        fr, fc = row - r0, col - c0
        patch = vol[q, r0 : r0 + 2, c0 : c0 + 2].astype(np.float64)
        top = patch[0, 0] + (patch[0, 1] - patch[0, 0]) * fc
        bottom = patch[1, 0] + (patch[1, 1] - patch[1, 0]) * fc
        values.append(top + (bottom - top) * fr)
    return values[0] + (values[1] - values[0]) * (u - lower)


@pytest.mark.parametrize(("tilt_mm", "n_threads"), [(0.0, 1), (0.3, 1), (0.3, 2), (-0.45, 2)])
def test_resampled_voxels_equal_the_documented_world_sampling(tilt_mm: float, n_threads: int) -> None:
    threads.set_threads(n_threads)
    rng = np.random.default_rng(7)
    vol = _phantom()
    vol += rng.integers(-30, 30, size=vol.shape, dtype=np.int16)  # texture: every tap counts
    geometry = _geometry(*vol.shape[:2], tilt_mm=tilt_mm)
    body = apply_body_mask(vol, geometry, -200)
    grid = output_grid(geometry, body, 0.5, 96)
    out = resample(vol, geometry, grid)
    affine = grid.affine_lps()
    n_k, n_j, n_i = grid.shape_kji
    picks = np.stack([rng.integers(0, n, 400) for n in (n_k, n_j, n_i)], axis=1)
    for k, j, i in picks:
        x = (affine @ np.array([i, j, k, 1.0]))[:3]
        assert abs(out[k, j, i] - _reference_sample(vol, geometry, x)) <= 0.5 + 1e-3, (k, j, i)


def test_nifti_is_the_same_volume_whatever_the_number_of_compression_threads(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vol = rng.integers(-1000, 3000, size=(7, 300, 260), dtype=np.int16)  # over one 1 MiB block
    affine = np.array([[-0.5, 0, 0, 10], [0, -0.5, 0, -20], [0, 0, 0.5, 30], [0, 0, 0, 1.0]])
    raw = {}
    for n in (1, 2, 2, 3):
        threads.set_threads(n)
        path = tmp_path / f"t{n}.nii.gz"
        write_nifti(path, vol, affine)
        image = nib.Nifti1Image.from_filename(path)
        np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), vol)
        np.testing.assert_allclose(image.affine, affine)
        with gzip.open(path) as fh:
            raw[n] = fh.read()
    assert raw[1] == raw[2] == raw[3]  # the same file content, only compressed differently


def _grid_coordinates(mask: NDArray[np.bool_], geometry: StackGeometry, grid: OutputGrid) -> NDArray[np.float64]:
    """Every masked voxel's centre in the grid's (i, j, k) voxel coordinates, through its affine."""
    ks, js, is_ = np.nonzero(mask)
    world = geometry.world(ks.astype(float), js.astype(float), is_.astype(float))
    ijk: NDArray[np.float64] = nib.affines.apply_affine(np.linalg.inv(grid.affine_lps()), world)
    return ijk


@pytest.mark.parametrize("tilt_mm", [0.0, 0.3, -0.45])
@pytest.mark.parametrize("size", [24, 37, 60, 96, "fit"])
def test_cropped_fraction_counts_the_masked_voxels_outside_the_grid(tilt_mm: float, size: int | Literal["fit"]) -> None:
    """Against a count over every voxel of an independent mask: outside means past the outer
    voxel faces in-plane, or a whole voxel past the end planes along the table axis."""
    vol = _phantom()
    geometry = _geometry(*vol.shape[:2], tilt_mm=tilt_mm)
    mask = _reference_mask(vol, -200)
    body = apply_body_mask(vol, geometry, -200)
    grid = output_grid(geometry, body, 0.5, size)
    n_k, n_j, n_i = grid.shape_kji
    ijk = _grid_coordinates(mask, geometry, grid)
    outside = (
        (ijk[:, 0] < -0.5) | (ijk[:, 0] > n_i - 0.5) | (ijk[:, 1] < -0.5) | (ijk[:, 1] > n_j - 0.5)
        | (ijk[:, 2] < -1.0) | (ijk[:, 2] > n_k)
    )
    fraction = cropped_fraction(body, geometry, grid)
    assert fraction == outside.sum() / mask.sum()
    if size in (24, 37):
        assert 0.2 < fraction < 0.9  # the body is about 39 x 39 voxels of 0.9 mm: these grids cut it
    if size in (96, "fit"):
        assert fraction == 0.0


def test_rounding_the_stack_ends_to_whole_voxels_is_not_a_cut() -> None:
    vol = _phantom(n_k=18)
    vol[:, 20:36, 24:40] = 40  # a body in every slice: 17 gaps of 0.7 mm, 23.8 voxels of 0.5 mm
    geometry = _geometry(*vol.shape[:2])
    mask = _reference_mask(vol, -200)
    body = apply_body_mask(vol, geometry, -200)
    grid = output_grid(geometry, body, 0.5, 128)
    n_k = grid.shape_kji[0]
    beyond = _grid_coordinates(mask, geometry, grid)[:, 2] - (n_k - 1)
    assert n_k == 24 and beyond.max() == pytest.approx(0.8)  # the last slice: 0.8 voxel past the last plane
    assert cropped_fraction(body, geometry, grid) == 0.0


@pytest.mark.parametrize("tilt_mm", [0.0, 0.3])
def test_fit_is_the_smallest_multiple_of_32_that_holds_the_body(tilt_mm: float) -> None:
    vol = _phantom(n=110)
    vol[6:12, 20:90, 4:106] = 40  # a wide slab: about 92 mm from side to side
    geometry = _geometry(*vol.shape[:2], tilt_mm=tilt_mm)
    mask = _reference_mask(vol, -200)
    body = apply_body_mask(vol, geometry, -200)
    grid = output_grid(geometry, body, 0.5, "fit")
    _, n_j, n_i = grid.shape_kji
    assert n_i == n_j and n_i % 32 == 0
    ijk = _grid_coordinates(mask, geometry, grid)
    widest = float(np.max(ijk[:, :2].max(axis=0) - ijk[:, :2].min(axis=0)))
    assert n_i - 32 < widest + 1 <= n_i  # 32 fewer could not hold it
    assert ijk[:, :2].min() >= -1e-6 and ijk[:, :2].max() <= n_i - 1 + 1e-6  # every centre on the grid
    assert cropped_fraction(body, geometry, grid) == 0.0
