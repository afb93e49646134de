"""Extract-stage rules: which series and stacks are converted, each decision with its reason.

Every rule here reads header facts only (the slices' geometry and the series' attributes), so
``extract --dry-run`` makes the same decisions as a real run without reading pixels. The order:
:func:`select_series` (what kind of image), then the stack rules of :func:`select_stack`
(axial geometry, ``--thickness``, ``--contrast``, ``--kernel``), then, with ``--one-per-exam``,
:func:`rank_key` among the stacks that passed every rule.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orbitct_app.contrast import contrast_evidence
from orbitct_app.discover import SeriesInfo
from orbitct_app.kernels import KERNEL_ORDER, KernelClass, classify_kernel
from orbitct_app.options import Options
from orbitct_app.volume import POSITION_TOLERANCE_MM, Stack

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


def series_contrast(series: SeriesInfo) -> list[str]:
    """The evidence that a series is contrast-enhanced ([] when none; see :mod:`orbitct_app.contrast`)."""
    return contrast_evidence(series.contrast_facts, series.description)


def series_kernel(series: SeriesInfo) -> KernelClass:
    """The class of a series' reconstruction kernel, by its first file (see :mod:`orbitct_app.kernels`)."""
    return _kernel(series, series.first.convolution_kernel)


def stack_kernel(stack: Stack) -> KernelClass:
    """The class of a stack's reconstruction kernel, by its first slice: the parts of a split
    series (a soft and a bone reconstruction under one SeriesInstanceUID) are classified apart."""
    return _kernel(stack.series, stack.slices[0].convolution_kernel)


def _kernel(series: SeriesInfo, kernel: str) -> KernelClass:
    return classify_kernel(kernel, str(series.attributes.get("Manufacturer", "") or ""))


def select_contrast(series: SeriesInfo, wanted: str) -> Decision:
    """``--contrast``: ``any`` keeps everything; ``without`` and ``with`` by the evidence."""
    if wanted == "any":
        return CONVERT
    evidence = series_contrast(series)
    if wanted == "without" and evidence:
        return Decision.exclude(f"contrast-enhanced ({'; '.join(evidence)}): excluded by --contrast without")
    if wanted == "with" and not evidence:
        return Decision.exclude(
            "no contrast evidence (no Contrast/Bolus attribute, no description keyword): "
            "excluded by --contrast with"
        )
    return CONVERT


def select_kernel(stack: Stack, wanted: str) -> Decision:
    """``--kernel``: ``any`` keeps everything; ``soft`` and ``sharp`` only that class (an unknown
    kernel is excluded, with a reason saying it is unknown)."""
    if wanted == "any":
        return CONVERT
    found = stack_kernel(stack)
    if found.kind != wanted:
        return Decision.exclude(f"{found.kind} kernel ({found.evidence}): excluded by --kernel {wanted}")
    return CONVERT


def select_stack(stack: Stack, options: Options) -> Decision:
    """Stack-level rules: axial geometry, then the optional slice-spacing range (``--thickness``),
    then ``--contrast`` (a series fact) and ``--kernel`` (the stack's).

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
    for decision in (select_contrast(stack.series, options.contrast), select_kernel(stack, options.kernel)):
        if not decision.convert:
            return decision
    return CONVERT


# --- --one-per-exam --------------------------------------------------------------------------------

ONE_PER_EXAM = "one-per-exam"


def rank_key(stack: Stack) -> tuple[int, int, int, bool, int, int, str]:
    """How ``--one-per-exam`` orders candidate stacks (the first is chosen).

    The smallest median slice spacing (to the duplicate tolerance, 0.01 mm), then a soft kernel
    over an unknown one over a sharp one, then the most slices, then the lowest SeriesNumber
    (none last); the part number and the SeriesInstanceUID make the order total.
    """
    spacing = float(np.median(stack.geometry.gaps))
    series = stack.series
    number = series.series_number
    return (
        round(spacing / POSITION_TOLERANCE_MM),
        KERNEL_ORDER[stack_kernel(stack).kind],
        -stack.n_slices,
        number is None,
        number or 0,
        stack.part,
        series.key,
    )


def stack_label(stack: Stack) -> str:
    """How reports name a stack in a reason: series number, part, and its SeriesInstanceUID (the
    grouping key when it has none), as the report rows name it."""
    series = stack.series
    number = series.series_number if series.series_number is not None else "?"
    part = f" part {stack.part}" if stack.part else ""
    return f"series {number}{part} ({series.series_uid or series.key})"


def one_per_exam_exclusion(chosen: Stack) -> Decision:
    """The decision for a candidate that another stack of the exam was chosen over."""
    return Decision.exclude(f"{ONE_PER_EXAM}: {stack_label(chosen)} chosen")


def one_per_exam_note(n_candidates: int) -> str:
    """The note on the chosen stack's row."""
    return f"{ONE_PER_EXAM}: chosen of {n_candidates} candidate(s)"
