"""Body mask, output grid and the one resampling from a (possibly tilted, uneven) stack to it.

The output grid is orthonormal and untilted: its first axis is the stack's row direction, its
third the table feed (the stack direction made orthogonal to the first), its second completes a
right-handed frame. For an ordinary axial series this is exactly the DICOM row, column and normal
directions. Every output voxel is sampled at its true world position: on each of the two nearest
slice planes at the orthogonal projection of the voxel (bilinear), then linearly between the two
planes by distance along the normal. Gantry tilt (a sheared stack), uneven spacing and the target
spacing are all handled by this single pass; nothing is resampled twice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from orbitct_app.errors import NotConvertible
from orbitct_app.extract.mask import fill_holes_2d, largest_component
from orbitct_app.extract.volume import AIR_HU, StackGeometry
from orbitct_app.options import FIT_MULTIPLE, SIZE_FIT
from orbitct_app.threads import split_range, thread_map

_EPSILON = 1e-6
"""Tolerance (in voxels) of the grid's bounds when measuring what it cuts."""


@dataclasses.dataclass(frozen=True)
class OutputGrid:
    """An orthonormal voxel grid in patient (LPS) coordinates.

    Voxel (i, j, k) is at ``origin + spacing * (i * axes[0] + j * axes[1] + k * axes[2])``;
    arrays on this grid are stored as ``[k, j, i]``.
    """

    origin: NDArray[np.float64]
    axes: NDArray[np.float64]
    """Rows are the unit vectors of the i, j and k axes (LPS)."""
    spacing: float
    shape_kji: tuple[int, int, int]

    def affine_lps(self) -> NDArray[np.float64]:
        """4x4 matrix from (i, j, k, 1) to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, :3] = self.axes.T * self.spacing
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> NDArray[np.float64]:
        """4x4 matrix from (i, j, k, 1) to RAS millimetres (the NIfTI convention)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()


@dataclasses.dataclass(frozen=True)
class BodyMask:
    """The body mask of a stack, summarised for the steps after it."""

    centroid_lps: NDArray[np.float64]
    bbox_kji: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    """Inclusive (first, last) index of masked voxels along slices, rows and columns."""
    n_voxels: int
    per_slice: NDArray[np.int64]
    """Masked voxels in each slice."""
    slice_boxes: NDArray[np.int64]
    """Per slice, the inclusive (first row, last row, first column, last column) of its masked
    voxels; -1 for a slice without any."""
    packed: NDArray[np.uint8]
    """The mask itself, one bit a voxel (``numpy.packbits`` of each row): a sixteenth of the
    int16 volume, kept to measure what the output grid cuts."""

    def rows(self, k: int, first: int, last: int) -> NDArray[np.bool_]:
        """Rows ``first`` to ``last`` (inclusive) of slice ``k`` of the mask (with up to seven
        more columns on the right, all False: the packing's padding)."""
        return np.unpackbits(self.packed[k, first : last + 1], axis=-1).view(np.bool_)


def apply_body_mask(volume: NDArray[np.int16], geometry: StackGeometry, threshold: float) -> BodyMask:
    """Keep the body: voxels above ``threshold`` in the largest 3D connected component.

    Connectivity is by faces (6-connected), so a head-rest touching the head only at an edge or
    corner stays separate. Air enclosed by the body in a slice (sinuses, airways) is kept;
    everything else, the head-rest and table included, is set to -1000 HU in place.

    Raises
    ------
    NotConvertible
        When no voxel exceeds the threshold (no body in the series).
    """
    component = largest_component(volume, threshold)
    if component is None:
        raise NotConvertible(f"no body: no voxel above the body threshold ({threshold:g} HU)")
    n_k, n_j, n_i = volume.shape
    per_slice = np.zeros(n_k, dtype=np.int64)
    slice_boxes = np.full((n_k, 4), -1, dtype=np.int64)
    packed = np.empty((n_k, n_j, (n_i + 7) // 8), dtype=np.uint8)

    def mask_slices(ks: range) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Mask slices ``ks`` in place; their body voxel counts per row and per column."""
        row_counts = np.zeros(n_j, dtype=np.int64)
        col_counts = np.zeros(n_i, dtype=np.int64)
        plane = np.empty((n_j, n_i), dtype=bool)  # slice by slice: no volume-sized temporaries
        for k in ks:
            component.plane(k, out=plane)  # noqa: F821 - deleted (freed) only after the threads are done
            fill_holes_2d(plane)
            packed[k] = np.packbits(plane, axis=-1)
            rows = plane.sum(axis=1, dtype=np.int64)
            cols = plane.sum(axis=0, dtype=np.int64)
            per_slice[k] = rows.sum()
            if per_slice[k]:
                js, is_ = np.flatnonzero(rows), np.flatnonzero(cols)
                slice_boxes[k] = (js[0], js[-1], is_[0], is_[-1])
            row_counts += rows
            col_counts += cols
            np.logical_not(plane, out=plane)
            np.putmask(volume[k], plane, np.int16(AIR_HU))
        return row_counts, col_counts

    row_counts = np.zeros(n_j, dtype=np.int64)
    col_counts = np.zeros(n_i, dtype=np.int64)
    for rows, cols in thread_map(mask_slices, split_range(n_k)):
        row_counts += rows
        col_counts += cols
    del component
    total = int(per_slice.sum())
    ks, js, is_ = (np.flatnonzero(c) for c in (per_slice, row_counts, col_counts))
    mean_j = float(row_counts @ np.arange(n_j)) / total
    mean_i = float(col_counts @ np.arange(n_i)) / total
    centroid = (
        (per_slice @ geometry.positions) / total
        + mean_i * geometry.column_spacing * geometry.row_dir
        + mean_j * geometry.row_spacing * geometry.col_dir
    )
    return BodyMask(
        centroid_lps=centroid,
        bbox_kji=((int(ks[0]), int(ks[-1])), (int(js[0]), int(js[-1])), (int(is_[0]), int(is_[-1]))),
        n_voxels=total,
        per_slice=per_slice,
        slice_boxes=slice_boxes,
        packed=packed,
    )


def output_axes(geometry: StackGeometry) -> NDArray[np.float64]:
    """Unit vectors (rows) of the untilted output grid for a stack."""
    e1 = geometry.row_dir
    d = geometry.stack_direction
    e3 = d - (d @ e1) * e1
    e3 /= np.linalg.norm(e3)
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3])


def output_grid(
    geometry: StackGeometry, body: BodyMask, spacing: float, size: int | Literal["fit"]
) -> OutputGrid:
    """The grid: ``size`` x ``size`` in-plane, centred on the body centroid, covering the body in z.

    With ``size="fit"`` the in-plane size is the smallest multiple of :data:`FIT_MULTIPLE` voxels
    that holds the whole body mask in both in-plane directions (:func:`fit_size`), and the grid
    is centred on the middle of the body's in-plane extent instead of its centroid.
    """
    axes = output_axes(geometry)
    (k0, k1), (j0, j1), (i0, i1) = body.bbox_kji
    corners = geometry.world(
        np.array([k0, k0, k0, k0, k1, k1, k1, k1], dtype=np.float64),
        np.array([j0, j0, j1, j1, j0, j0, j1, j1], dtype=np.float64),
        np.array([i0, i1, i0, i1, i0, i1, i0, i1], dtype=np.float64),
    )
    z = corners @ axes[2]
    z_min, z_max = float(z.min()), float(z.max())
    n_z = int(np.floor((z_max - z_min) / spacing + 1e-6)) + 1
    c = body.centroid_lps
    if size == SIZE_FIT:
        extent = body_extent(geometry, body, axes[:2])
        n = fit_size(extent, spacing)
        middle = extent.mean(axis=1)
        c = c + (middle[0] - c @ axes[0]) * axes[0] + (middle[1] - c @ axes[1]) * axes[1]
        half = (n - 1) / 2
    else:
        n = int(size)
        half = n // 2
    origin = (
        c
        - half * spacing * axes[0]
        - half * spacing * axes[1]
        + (z_min - c @ axes[2]) * axes[2]
    )
    return OutputGrid(origin=origin, axes=axes, spacing=spacing, shape_kji=(n_z, n, n))


def body_extent(geometry: StackGeometry, body: BodyMask, directions: NDArray[np.float64]) -> NDArray[np.float64]:
    """(first, last) position in mm of the body mask's voxel centres along each unit vector of
    ``directions`` (rows), from each slice's box of masked voxels; shape (len(directions), 2)."""
    ks = np.flatnonzero(body.per_slice)
    j0, j1, i0, i1 = (body.slice_boxes[ks, a].astype(np.float64) for a in range(4))
    extent = np.empty((len(directions), 2))
    for a, e in enumerate(directions):
        along_i = geometry.column_spacing * float(geometry.row_dir @ e)
        along_j = geometry.row_spacing * float(geometry.col_dir @ e)
        base = geometry.positions[ks] @ e
        ends = np.stack([base + i * along_i + j * along_j for i in (i0, i1) for j in (j0, j1)])
        extent[a] = float(ends.min()), float(ends.max())
    return extent


def fit_size(extent: NDArray[np.float64], spacing: float) -> int:
    """The smallest multiple of :data:`FIT_MULTIPLE` voxels of ``spacing`` mm whose first and last
    voxel centres span every (first, last) extent in mm (``--size fit``)."""
    widest = float(np.max(extent[:, 1] - extent[:, 0])) / spacing
    return FIT_MULTIPLE * max(1, math.ceil((widest + 1 - 1e-6) / FIT_MULTIPLE))


def cropped_fraction(body: BodyMask, geometry: StackGeometry, grid: OutputGrid) -> float:
    """The fraction of the body mask's voxels that the output grid leaves out (0.0 exactly when
    it leaves out none).

    A masked voxel is left out when its centre lies beyond the grid's outer voxel faces in-plane
    (more than half a voxel past its first or last row or column), or a whole voxel or more
    beyond its first or last plane along the table axis: the grid spans the body's extent along
    that axis in whole voxels, so less than one voxel at either end is rounding, not a cut.
    Counted slice by slice: a slice whose box of masked voxels lies inside the grid costs
    nothing; others count their masked voxels inside it.
    """
    n_k, n_j, n_i = grid.shape_kji
    h = grid.spacing
    ks = np.flatnonzero(body.per_slice)
    relative = (geometry.positions[ks] - grid.origin) @ grid.axes.T / h  # (slices, 3)
    # voxel (k, j, i) of the stack sits at grid coordinate a: relative[k, a] + i s[a] + j t[a];
    # the grid's first axis is the row direction, so only a = 0 depends on i, and only a = 1, 2 on j
    s = geometry.column_spacing * (grid.axes @ geometry.row_dir) / h
    t = geometry.row_spacing * (grid.axes @ geometry.col_dir) / h
    bounds = ((-0.5, n_i - 0.5), (-0.5, n_j - 0.5), (-1.0, float(n_k)))
    i_lo, i_hi = _index_range(relative[:, 0], s[0], *bounds[0], n=geometry.columns)
    j_lo, j_hi = _index_range(relative[:, 1], t[1], *bounds[1], n=geometry.rows)
    z_lo, z_hi = _index_range(relative[:, 2], t[2], *bounds[2], n=geometry.rows)
    j_lo, j_hi = np.maximum(j_lo, z_lo), np.minimum(j_hi, z_hi)
    boxes = body.slice_boxes[ks]
    outside = 0
    for m, k in enumerate(ks):
        first_j, last_j, first_i, last_i = boxes[m]
        if j_lo[m] <= first_j and last_j <= j_hi[m] and i_lo[m] <= first_i and last_i <= i_hi[m]:
            continue  # the whole slice's body is inside
        inside = 0
        if j_lo[m] <= j_hi[m] and i_lo[m] <= i_hi[m]:
            inside = int(np.count_nonzero(body.rows(int(k), int(j_lo[m]), int(j_hi[m]))[:, i_lo[m] : i_hi[m] + 1]))
        outside += int(body.per_slice[k]) - inside
    return outside / body.n_voxels


def _index_range(
    start: NDArray[np.float64], step: float, low: float, high: float, *, n: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per slice, the first and last index x in [0, n) with ``low <= start + x step <= high``
    (first > last when there is none)."""
    if abs(step) < 1e-12:
        inside = (start >= low - _EPSILON) & (start <= high + _EPSILON)
        return np.where(inside, 0, n), np.where(inside, n - 1, -1)
    a, b = (low - start) / step, (high - start) / step
    first = np.ceil(np.minimum(a, b) - _EPSILON).astype(np.int64)
    last = np.floor(np.maximum(a, b) + _EPSILON).astype(np.int64)
    return np.maximum(first, 0), np.minimum(last, n - 1)


def resample(volume: NDArray[np.int16], geometry: StackGeometry, grid: OutputGrid) -> NDArray[np.int16]:
    """Sample ``volume`` (sorted stack, HU) at every voxel of ``grid``; -1000 outside the data.

    Linear interpolation: bilinear on the two slice planes around each voxel, at the voxel's
    orthogonal projection onto each, then linear along the normal by distance.
    """
    n_k, n_j, n_i = grid.shape_kji
    e1, e2, e3 = grid.axes
    h = grid.spacing
    r, c, normal = geometry.row_dir, geometry.col_dir, geometry.normal
    offsets = geometry.offsets
    # For voxel (i, j, k) at x = origin + h (i e1 + j e2 + k e3), with e1 = r so that
    # e2.r = e3.r = 0 and e1.n = e1.c = 0:
    #   column on slice plane m = (x - P_m).r / column_spacing = col_base[m] + i col_step
    #   row on slice plane m    = (x - P_m).c / row_spacing    = row_base[m] + j row_j + k row_k
    #   offset along the normal = x.n                           = s_base + j s_j + k s_k
    col_base = (grid.origin @ r - geometry.positions @ r) / geometry.column_spacing
    col_step = h * (e1 @ r) / geometry.column_spacing
    row_base = (grid.origin @ c - geometry.positions @ c) / geometry.row_spacing
    row_j = h * (e2 @ c) / geometry.row_spacing
    row_k = h * (e3 @ c) / geometry.row_spacing
    s_j, s_k = h * (e2 @ normal), h * (e3 @ normal)
    j_out = np.arange(n_j, dtype=np.float64)
    col_offsets = col_step * np.arange(n_i, dtype=np.float64)
    slice_index = np.arange(geometry.n_slices, dtype=np.float64)
    out = np.empty(grid.shape_kji, dtype=np.int16)

    untilted = abs(row_k) < 1e-9 and abs(s_j) < 1e-9

    def fill(ks: range) -> None:
        """Output slices ``ks`` (in order: each thread keeps its own cache of input planes)."""
        if untilted:  # every output slice lies in one input plane gap: blend two whole planes
            planes = _ColumnResampledPlanes(volume, col_base, col_offsets)
            for k in ks:
                out[k] = _blend_planes(
                    planes, k, float(grid.origin @ normal + k * s_k), offsets, row_base, row_j * j_out
                )
            return
        window = _PlaneWindow(volume, col_base, col_offsets)
        for k in ks:
            s = grid.origin @ normal + j_out * s_j + k * s_k
            inside = np.nonzero((s >= offsets[0] - 1e-6) & (s <= offsets[-1] + 1e-6))[0]
            plane = np.full((n_j, n_i), float(AIR_HU), dtype=np.float32)
            if inside.size:
                u = np.interp(s[inside], offsets, slice_index)
                lower = np.clip(np.floor(u).astype(np.int64), 0, geometry.n_slices - 2)
                w = (u - lower).astype(np.float32)[:, None]
                value = np.zeros((inside.size, n_i), dtype=np.float32)
                for m, weight in ((lower, 1.0 - w), (lower + 1, w)):
                    rows = row_base[m] + row_j * inside + row_k * k
                    value += weight * window.rows_at(m, rows)
                plane[inside] = value
            np.rint(plane, out=plane)
            out[k] = plane

    for _ in thread_map(fill, split_range(n_k)):
        pass
    return out


def _blend_planes(
    planes: _ColumnResampledPlanes,
    k: int,
    offset: float,
    offsets: NDArray[np.float64],
    row_base: NDArray[np.float64],
    row_offsets: NDArray[np.float64],
) -> NDArray[np.int16]:
    """One output slice of an untilted stack: the two input planes around it, blended by distance."""
    n_j, n_i = row_offsets.size, planes.col_offsets.size
    if not offsets[0] - 1e-6 <= offset <= offsets[-1] + 1e-6:
        return np.full((n_j, n_i), AIR_HU, dtype=np.int16)
    u = float(np.interp(offset, offsets, np.arange(offsets.size, dtype=np.float64)))
    lower = min(int(np.floor(u)), offsets.size - 2)
    w = np.float32(u - lower)
    planes.forget_below(lower)
    a = planes.full_plane(lower, row_base[lower] + row_offsets)
    b = planes.full_plane(lower + 1, row_base[lower + 1] + row_offsets)
    value = b - a
    value *= w
    value += a
    np.rint(value, out=value)
    return value.astype(np.int16)


class _ColumnResampledPlanes:
    """Input slices resampled along their rows onto the output columns, computed once each.

    Slices are needed in increasing order as the output advances, so older ones are dropped.
    """

    def __init__(
        self, volume: NDArray[np.int16], col_base: NDArray[np.float64], col_offsets: NDArray[np.float64]
    ) -> None:
        self.volume = volume
        self.col_base = col_base
        self.col_offsets = col_offsets
        self.cache: dict[int, NDArray[np.float32]] = {}

    def plane(self, m: int) -> NDArray[np.float32]:
        """Slice m on the output columns: shape (rows, n_i), -1000 outside the slice."""
        cached = self.cache.get(m)
        if cached is None:
            cached = _column_resampled(self.volume, m, self.col_base, self.col_offsets)
            self.cache[m] = cached
        return cached

    def full_plane(self, m: int, rows: NDArray[np.float64]) -> NDArray[np.float32]:
        """Slice m on the output rows and columns (for untilted stacks, where rows do not vary)."""
        key = -1 - m  # own cache entries, apart from the column-only planes
        cached = self.cache.get(key)
        if cached is None:
            cached = _lerp(self.plane(m), rows, axis=0)
            self.cache[key] = cached
            del self.cache[m]
        return cached

    def forget_below(self, m: int) -> None:
        for old in [key for key in self.cache if (key if key >= 0 else -1 - key) < m]:
            del self.cache[old]


def _column_resampled(
    volume: NDArray[np.int16], m: int, col_base: NDArray[np.float64], col_offsets: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Slice m on the output columns: shape (rows, n_i), -1000 outside the slice."""
    return _lerp(volume[m].astype(np.float32), col_base[m] + col_offsets, axis=1)


class _PlaneWindow:
    """Input slices resampled onto the output columns, for tilted stacks, where one output slice
    draws its rows from many input slices: a window of consecutive slices in one array, so the
    rows of all of them are gathered at once.

    Slice m lives in slot ``m % size``; the window grows when one request spans more slices.
    """

    def __init__(
        self, volume: NDArray[np.int16], col_base: NDArray[np.float64], col_offsets: NDArray[np.float64]
    ) -> None:
        self.volume = volume
        self.col_base = col_base
        self.col_offsets = col_offsets
        self.planes = np.empty((0, volume.shape[1], col_offsets.size), dtype=np.float32)
        self.owner = np.empty(0, dtype=np.int64)  # slice held by each slot (-1: none)

    def _slots(self, slices: NDArray[np.int64]) -> NDArray[np.int64]:
        """The slot of each entry of ``slices``, with every slice it names resident."""
        first, last = int(slices.min()), int(slices.max())
        size = len(self.owner)
        if last - first + 1 > size:  # grow (rarely: the span of a tilted slice is nearly constant)
            size = min(max(last - first + 1, 2 * size), self.volume.shape[0])
            self.planes = np.empty((size, *self.planes.shape[1:]), dtype=np.float32)
            self.owner = np.full(size, -1, dtype=np.int64)
        for m in range(first, last + 1):
            slot = m % size
            if self.owner[slot] != m:
                self.planes[slot] = _column_resampled(self.volume, m, self.col_base, self.col_offsets)
                self.owner[slot] = m
        return slices % size

    def rows_at(self, slices: NDArray[np.int64], rows: NDArray[np.float64]) -> NDArray[np.float32]:
        """For each entry, slice ``slices[e]`` interpolated at fractional row ``rows[e]``
        (as :func:`_lerp` along the rows: -1000 outside the slice)."""
        n_rows = self.volume.shape[1]
        slots = self._slots(slices)
        lo = np.clip(np.floor(rows).astype(np.int64), 0, max(n_rows - 2, 0))
        hi = np.minimum(lo + 1, n_rows - 1)
        frac = (rows - lo).astype(np.float32)[:, None]
        a = self.planes[slots, lo]
        b = self.planes[slots, hi]
        result: NDArray[np.float32] = a + (b - a) * frac
        outside = (rows < -1e-6) | (rows > n_rows - 1 + 1e-6)
        if outside.any():
            result[outside] = AIR_HU
        return result


def _lerp(image: NDArray[np.float32], coords: NDArray[np.float64], axis: int) -> NDArray[np.float32]:
    """Linear interpolation of a 2D array along ``axis`` at fractional ``coords``.

    Returns the array with that axis replaced by ``coords``; positions outside [0, n-1] are -1000.
    """
    n: int = image.shape[axis]
    lo = np.clip(np.floor(coords).astype(np.int64), 0, max(n - 2, 0))
    hi = np.minimum(lo + 1, n - 1)
    frac = (coords - lo).astype(np.float32)
    a = np.take(image, lo, axis=axis)
    b = np.take(image, hi, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    result = a + (b - a) * frac.reshape(shape)
    outside = (coords < -1e-6) | (coords > n - 1 + 1e-6)
    if outside.any():
        index: list[slice | NDArray[np.bool_]] = [slice(None), slice(None)]
        index[axis] = outside
        result[tuple(index)] = AIR_HU
    return result
