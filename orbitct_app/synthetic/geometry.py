"""Where the images of a series lie: orientation, every slice's position, the reconstruction circle.

See the package docstring for the gantry tilt convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orbitct_app.synthetic.helpers import fmt
from orbitct_app.synthetic.phantom import Phantom
from orbitct_app.synthetic.specs import SeriesSpec


@dataclass
class Slice:
    """Geometry of one image of a stacked series (position order index ``k``)."""

    k: int
    instance: int
    ipp: tuple[str, str, str]
    slice_location: float


def slice_orientation(spec: SeriesSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if spec.kind == "axial":
        t = math.radians(spec.tilt_deg)
        col = (0.0, math.cos(t), -math.sin(t))
        return ("1", "0", "0"), tuple(fmt(v, 8) for v in col)
    if spec.kind == "coronal":
        return ("1", "0", "0"), ("0", "0", "-1")
    if spec.kind == "scout":
        return ("0", "1", "0"), ("0", "0", "-1")
    raise ValueError("summary captures have no orientation")


def slice_stack(spec: SeriesSpec, phantom: Phantom) -> tuple[np.ndarray, np.ndarray, list[Slice]]:
    """Row/column direction (as written) and every slice's geometry, in position order."""
    row_s, col_s = slice_orientation(spec)
    row = np.array([float(v) for v in row_s])
    col = np.array([float(v) for v in col_s])
    rows, cols = int(spec.rows or 0), int(spec.cols or 0)
    dr, dc = spec.pixel_spacing or (1.0, 1.0)
    n = int(spec.n_slices or 1)
    step = float(spec.slice_step or 0.0)
    axis = np.asarray(phantom.center_lps) + np.asarray(spec.center_offset_mm)
    direction = {"axial": np.array([0.0, 0.0, 1.0]), "coronal": np.array([0.0, 1.0, 0.0]),
                 "scout": np.zeros(3)}[spec.kind]
    along = (np.arange(n) - (n - 1) / 2) * step
    for first, extra in spec.extra_gaps:
        along[:first] -= extra / 2
        along[first:] += extra / 2
    slices = []
    for k in range(n):
        centre = axis + along[k] * direction
        ipp = centre - (cols - 1) / 2 * dc * row - (rows - 1) / 2 * dr * col
        instance = k + 1 if spec.order == "ascending" else n - k
        loc = float(centre @ direction) if spec.kind != "scout" else 0.0
        slices.append(Slice(k, instance, (fmt(ipp[0], 4), fmt(ipp[1], 4), fmt(ipp[2], 4)), loc))
    return row, col, slices


def circle_outside(rows: int, cols: int, spacing: tuple[float, float]) -> np.ndarray:
    dr, dc = spacing
    radius = min(rows * dr, cols * dc) / 2
    j = (np.arange(rows) - (rows - 1) / 2) * dr
    i = (np.arange(cols) - (cols - 1) / 2) * dc
    return (j[:, None] ** 2 + i[None, :] ** 2) > radius**2
