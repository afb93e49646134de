"""What a series should look like: :class:`SeriesSpec`, its defaults and its rescale plan.

Also the value ranges every series is written within (:data:`HU_MIN`, :data:`HU_MAX`) and the
transfer syntaxes it can be written in (:data:`SUPPORTED_TRANSFER_SYNTAXES`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from orbitct_app.synthetic.burned_text import BurnedText
from orbitct_app.synthetic.helpers import Vec3

SeriesKind = Literal["axial", "coronal", "scout", "summary"]

MANUFACTURER = "ORBITCT-SYNTH"

HU_MIN = -1023
"""Lowest HU written for CT content (one above -1024 so unsigned padding 0 stays distinct)."""
HU_MAX = 3071
"""Highest HU written for CT content (12-bit range)."""

SUPPORTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
)
COMPRESSED = (RLELossless, JPEG2000Lossless)


@dataclass(frozen=True)
class SeriesSpec:
    """What one series should look like. ``None`` fields get per-kind defaults (:meth:`resolved`).

    Attributes
    ----------
    kind : {"axial", "coronal", "scout", "summary"}
        Axial acquisition, coronal reformat, lateral localizer, or RGB exam-summary capture.
    rows, cols : int
        Matrix size (default 128 x 128; 256 x 256 for a summary).
    pixel_spacing : tuple of float
        (row spacing, column spacing) in mm, as DICOM PixelSpacing.
    n_slices : int
        Number of images (default 40 axial/coronal, 1 scout, 2 summary).
    slice_step : float
        Table feed between axial images (along z), or step along y for coronal, in mm.
    slice_thickness : float
        SliceThickness; defaults to ``slice_step``.
    tilt_deg : float
        Gantry tilt (axial only); see the package docstring for the sign convention.
    order : {"ascending", "descending"}
        InstanceNumber 1 at the lowest (ascending) or highest (descending) z (y for coronal).
    transfer_syntax : str
        One of :data:`SUPPORTED_TRANSFER_SYNTAXES`.
    unsigned : bool
        PixelRepresentation 0 (default intercept -1024) instead of signed (default intercept 0).
    rescale_intercept : float
        RescaleIntercept when not varied per slice (an integer value).
    per_slice_rescale : bool
        Cycle RescaleSlope/RescaleIntercept through slope 1 / 0.5 and several intercepts.
    padding : bool
        Set PixelPaddingValue and fill pixels outside the inscribed reconstruction circle with it.
    padding_value : int
        Raw padding value (default -2000 signed, 0 unsigned).
    center_offset_mm : tuple of float
        Reconstruction centre (scanner axis for axial) relative to the phantom centre.
    extra_gaps : tuple of (int, float)
        ``(k, mm)`` pairs: the table moves ``mm`` further before slice ``k`` (0-based, in
        position order), leaving a gap in the stack: blocks of slices apart under one series,
        or one missing slice when ``mm`` equals ``slice_step``. The stack stays centred on the
        reconstruction centre.
    enhanced : bool
        Write the series as one Enhanced CT Image Storage file (multi-frame) instead of one
        CT Image Storage file per image; axial and coronal only. ``write_exam(enhanced=True)``
        sets it for every axial and coronal series. ImageType then has the four Enhanced CT
        values: Value 1 of ``image_type`` (ORIGINAL or DERIVED), PRIMARY, VOLUME, and NONE
        (ORIGINAL) or RESAMPLED (DERIVED).
    legacy_converted : bool
        With ``enhanced``: write Legacy Converted Enhanced CT (PS3.3 A.70) instead of Enhanced CT;
        ImageType stays that of the classic files (see the package docstring).
    manufacturer : str
        Manufacturer (default :data:`MANUFACTURER`): with ``convolution_kernel``, what decides the
        kernel class (``SIEMENS`` with ``H60s``, ``GE MEDICAL SYSTEMS`` with ``BONE`` ...).
    contrast_bolus : tuple of (keyword, value)
        Contrast/Bolus attributes written in every file, e.g.
        ``(("ContrastBolusAgent", "IOPAMIDOL"), ("ContrastBolusRoute", "IV"))``; the keyword
        ``ContrastBolusAgentSequence`` writes one coded item whose CodeMeaning is the value.
    burned_text : BurnedText, optional
        Text rendered into the pixels (a name and date in a corner, a summary or dose screen);
        such a series says BurnedInAnnotation YES. Or drawn in an overlay plane
        (``BurnedText(overlay=True)``). The scout cannot carry it.
    """

    kind: SeriesKind = "axial"
    rows: int | None = None
    cols: int | None = None
    pixel_spacing: tuple[float, float] | None = None
    n_slices: int | None = None
    slice_step: float | None = None
    slice_thickness: float | None = None
    tilt_deg: float = 0.0
    order: Literal["ascending", "descending"] = "ascending"
    transfer_syntax: str = ExplicitVRLittleEndian
    unsigned: bool = False
    rescale_intercept: float | None = None
    per_slice_rescale: bool = False
    padding: bool = False
    padding_value: int | None = None
    series_number: int | None = None
    series_description: str | None = None
    convolution_kernel: str | None = None
    image_type: tuple[str, ...] | None = None
    modality: str = "CT"
    center_offset_mm: Vec3 = (0.0, 0.0, 0.0)
    extra_gaps: tuple[tuple[int, float], ...] = ()
    enhanced: bool = False
    legacy_converted: bool = False
    manufacturer: str | None = None
    contrast_bolus: tuple[tuple[str, str], ...] = ()
    burned_text: BurnedText | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("axial", "coronal", "scout", "summary"):
            raise ValueError(f"unknown series kind {self.kind!r}")
        if self.enhanced and self.kind not in ("axial", "coronal"):
            raise ValueError(f"only axial and coronal series can be enhanced, not {self.kind}")
        if self.legacy_converted and not self.enhanced:
            raise ValueError("legacy_converted needs enhanced=True (it is a multi-frame object)")
        if self.burned_text is not None and self.kind == "scout":
            raise ValueError("a scout cannot carry burned-in text")
        if self.burned_text is not None and self.burned_text.overlay and self.enhanced:
            raise ValueError("text in an overlay plane is written for classic (single-frame) files only")
        if self.order not in ("ascending", "descending"):
            raise ValueError(f"order must be 'ascending' or 'descending', got {self.order!r}")
        if self.transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
            raise ValueError(f"unsupported transfer syntax {self.transfer_syntax!r}")
        if self.tilt_deg and self.kind != "axial":
            raise ValueError("gantry tilt applies to axial series only")
        if not -45.0 < self.tilt_deg < 45.0:
            raise ValueError(f"tilt must be within (-45, 45) degrees, got {self.tilt_deg}")
        for name in ("rows", "cols", "n_slices"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.extra_gaps and self.kind not in ("axial", "coronal"):
            raise ValueError("extra gaps apply to axial and coronal series only")
        for k, mm in self.extra_gaps:
            if k < 1 or (self.n_slices is not None and k >= self.n_slices) or mm < 0:
                raise ValueError(f"extra gap ({k}, {mm}): needs 1 <= k < n_slices and mm >= 0")
        for keyword, _ in self.contrast_bolus:
            if not keyword.startswith("ContrastBolus"):
                raise ValueError(f"contrast_bolus takes Contrast/Bolus attributes, not {keyword!r}")

    def resolved(self) -> SeriesSpec:
        """A copy with every per-kind default filled in."""
        k = self.kind
        rows = self.rows or (256 if k == "summary" else 128)
        cols = self.cols or (256 if k == "summary" else 128)
        spacing = self.pixel_spacing or ((2.0, 2.0) if k in ("scout", "summary") else (1.9, 1.9))
        n = self.n_slices or {"axial": 40, "coronal": 40, "scout": 1, "summary": 2}[k]
        if k == "scout":
            n = 1
        step = self.slice_step if self.slice_step is not None else 3.0
        thickness = self.slice_thickness if self.slice_thickness is not None else step
        kernel = self.convolution_kernel or {"axial": "H30s", "coronal": "H30s", "scout": "T20s",
                                             "summary": ""}[k]
        description = self.series_description or {
            "axial": f"Head {thickness:.1f} {kernel}",
            "coronal": f"Head Cor {thickness:.1f} MPR",
            "scout": "Topogram 0.6 T20s",
            "summary": "Patient Protocol",
        }[k]
        image_type = self.image_type or {
            "axial": ("ORIGINAL", "PRIMARY", "AXIAL"),
            "coronal": ("DERIVED", "SECONDARY", "REFORMATTED"),
            "scout": ("ORIGINAL", "PRIMARY", "LOCALIZER"),
            "summary": ("DERIVED", "SECONDARY", "RESULTS"),
        }[k]
        intercept = self.rescale_intercept
        if intercept is None:
            intercept = -1024.0 if self.unsigned else 0.0
        padding_value = self.padding_value
        if padding_value is None:
            padding_value = 0 if self.unsigned else -2000
        return replace(
            self, rows=rows, cols=cols, pixel_spacing=(float(spacing[0]), float(spacing[1])),
            n_slices=n, slice_step=float(step), slice_thickness=float(thickness),
            convolution_kernel=kernel, series_description=description, image_type=tuple(image_type),
            rescale_intercept=float(intercept), padding_value=int(padding_value),
        )


def default_series() -> list[SeriesSpec]:
    """The default exam: a scout, a two-image summary capture and a small, quick axial series."""
    return [
        SeriesSpec(kind="scout", series_number=1),
        SeriesSpec(kind="axial", series_number=2),
        SeriesSpec(kind="summary", series_number=999),
    ]


_SIGNED_RESCALE_CYCLE: tuple[tuple[float, float], ...] = (
    (1.0, 0.0), (0.5, -1024.0), (1.0, -512.0), (0.5, -768.0),
)
_UNSIGNED_RESCALE_CYCLE: tuple[tuple[float, float], ...] = (
    (1.0, -1024.0), (0.5, -1024.0), (1.0, -1124.0), (0.5, -2048.0),
)


def rescale_plan(spec: SeriesSpec) -> tuple[list[tuple[float, float]], int]:
    """Per-slice (slope, intercept) in position order and BitsStored; validates raw ranges."""
    n = int(spec.n_slices or 1)
    if spec.per_slice_rescale:
        cycle = _UNSIGNED_RESCALE_CYCLE if spec.unsigned else _SIGNED_RESCALE_CYCLE
        plan = [cycle[k % len(cycle)] for k in range(n)]
    else:
        b = float(spec.rescale_intercept or 0.0)
        if b != round(b):
            raise ValueError(f"rescale_intercept must be a whole number, got {b}")
        plan = [(1.0, b)] * n
    lo_all = min((HU_MIN - b) / m for m, b in plan)
    hi_all = max((HU_MAX - b) / m for m, b in plan)
    dtype_lo, dtype_hi = (0, 65535) if spec.unsigned else (-32768, 32767)
    if lo_all < dtype_lo or hi_all > dtype_hi:
        raise ValueError(
            f"raw values [{lo_all}, {hi_all}] do not fit the pixel representation; "
            "choose another rescale_intercept"
        )
    if spec.padding:
        pv = int(spec.padding_value or 0)
        if not dtype_lo <= pv <= dtype_hi:
            raise ValueError(f"padding value {pv} does not fit the pixel representation")
        for m, b in plan:
            if (HU_MIN - b) / m <= pv <= (HU_MAX - b) / m:
                raise ValueError(f"padding value {pv} collides with image content for slope {m}, "
                                 f"intercept {b}")
    bits_stored = 12 if spec.unsigned and hi_all <= 4095 else 16
    return plan, bits_stored
