"""Extract-stage rules: which series and stacks are converted, each decision with its reason."""

from __future__ import annotations

import dataclasses

import numpy as np

from orbitct_app.discover import SeriesInfo
from orbitct_app.options import Options
from orbitct_app.volume import Stack

AXIAL_MIN_COSINE = float(np.cos(np.radians(45.0)))
"""A slice normal within 45 degrees of the superior-inferior axis counts as axial."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether something is converted, and why not when it is not."""

    convert: bool
    reason: str = ""

    @classmethod
    def exclude(cls, reason: str) -> Decision:
        return cls(False, reason)


CONVERT = Decision(True)


def orientation_label(orientation: tuple[float, ...] | None) -> str:
    """'axial', 'coronal' or 'sagittal' by the slice normal's dominant axis; 'unknown' if absent."""
    if orientation is None:
        return "unknown"
    normal = np.cross(orientation[:3], orientation[3:])
    norm = float(np.linalg.norm(normal))
    if norm == 0:
        return "unknown"
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal) / norm))]


def is_axial(orientation: tuple[float, ...]) -> bool:
    """True when the slice normal lies dominantly along the superior-inferior axis."""
    normal = np.cross(orientation[:3], orientation[3:])
    return abs(float(normal[2])) / float(np.linalg.norm(normal)) >= AXIAL_MIN_COSINE


def select_series(series: SeriesInfo) -> Decision:
    """Series-level rules: modality and kind of image (before any geometry is looked at)."""
    first = series.first
    if series.modality != "CT":
        return Decision.exclude(f"modality {series.modality or 'missing'}, not CT")
    if series.is_secondary_capture:
        return Decision.exclude("secondary capture (screenshot or dose/summary screen)")
    if not series.has_pixel_data:
        return Decision.exclude("no pixel data")
    if any("LOCALIZER" in s.image_type for s in series.slices):
        return Decision.exclude("localizer (scout)")
    if first.samples_per_pixel != 1:
        return Decision.exclude(f"{first.samples_per_pixel} samples per pixel (colour image)")
    if any(s.n_frames > 1 and not s.frames for s in series.slices):
        return Decision.exclude("multi-frame object without per-frame functional groups (not Enhanced CT)")
    return CONVERT


def select_stack(stack: Stack, options: Options) -> Decision:
    """Stack-level rules: axial geometry, then the optional slice-spacing range (``--thickness``).

    ImageType 'AXIAL' is a label; ImageOrientationPatient is the geometry, and it decides: a
    reformat labelled AXIAL is not converted as axial.
    """
    first = stack.slices[0]
    assert first.orientation is not None
    if not is_axial(first.orientation):
        label = orientation_label(first.orientation)
        if "AXIAL" in first.image_type:
            return Decision.exclude(f"ImageType says AXIAL but the slices are {label}")
        return Decision.exclude(f"{label}, not axial")
    if options.thickness is not None:
        lo, hi = options.thickness
        spacing = float(np.median(stack.geometry.gaps))
        if not lo <= spacing <= hi:
            return Decision.exclude(
                f"slice spacing {spacing:.3g} mm outside --thickness {lo:g}-{hi:g} mm"
            )
    return CONVERT
