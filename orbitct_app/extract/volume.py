"""From a series' files to geometrically sorted stacks and their int16 HU volumes.

A *stack* is a set of parallel slices with one orientation, pixel spacing and matrix, no
repeated position and no wide gap between neighbours. A series usually is one stack; when it is
not (two reconstructions or passes under one SeriesInstanceUID, mixed orientations, blocks of
slices far apart), :func:`plan_stacks` splits it and says why.

Slices are sorted by their ImagePositionPatient projected on the slice normal, never by
InstanceNumber or file name. HU come from each slice's own RescaleSlope/RescaleIntercept; pixel
padding and values below air become -1000 HU before anything else looks at them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.pixels.utils import pixel_array

from orbitct_app.dicomio.pixels import NATIVE_LITTLE_ENDIAN
from orbitct_app.discover import SeriesInfo, SliceInfo
from orbitct_app.errors import SeriesError
from orbitct_app.options import MAX_GAP_SPACINGS
from orbitct_app.threads import thread_map

AIR_HU = -1000
"""HU written for air, padding, out-of-reconstruction pixels and everything outside the body."""
MIN_VOLUME_SLICES = 3
"""Fewer distinct slice positions than this cannot make a volume."""
POSITION_TOLERANCE_MM = 0.01
"""Slices closer than this along the normal share one position (duplicates)."""
_INT16_MAX = np.iinfo(np.int16).max
_GAPS_NAMED = 5
"""A split reason names the widths of at most this many gaps."""


@dataclasses.dataclass(frozen=True)
class StackGeometry:
    """Where every pixel of a sorted stack lies in patient (LPS) coordinates, in mm.

    Pixel (row j, column i) of slice k is at ``positions[k] + i * column_spacing * row_dir
    + j * row_spacing * col_dir``. Slices are sorted so ``offsets`` (positions along ``normal``)
    increase.
    """

    row_dir: NDArray[np.float64]
    """Unit vector along a row (increasing column index), the first ImageOrientationPatient triplet."""
    col_dir: NDArray[np.float64]
    """Unit vector down a column (increasing row index), the second triplet."""
    row_spacing: float
    """Distance between rows in mm (PixelSpacing[0])."""
    column_spacing: float
    """Distance between columns in mm (PixelSpacing[1])."""
    rows: int
    columns: int
    positions: NDArray[np.float64]
    """ImagePositionPatient of each sorted slice, shape (n, 3)."""

    @property
    def normal(self) -> NDArray[np.float64]:
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    @property
    def offsets(self) -> NDArray[np.float64]:
        """Position of each slice along the normal (increasing)."""
        return self.positions @ self.normal

    @property
    def n_slices(self) -> int:
        return len(self.positions)

    @property
    def gaps(self) -> NDArray[np.float64]:
        """Distances between neighbouring slices along the normal (mm)."""
        return np.diff(self.offsets)

    @property
    def stack_direction(self) -> NDArray[np.float64]:
        """Unit vector from the first to the last slice position (the table feed when tilted)."""
        d = self.positions[-1] - self.positions[0]
        unit: NDArray[np.float64] = d / np.linalg.norm(d)
        return unit

    @property
    def tilt_deg(self) -> float:
        """Angle between the slice normal and the stack direction: the gantry tilt (unsigned)."""
        cos = float(np.clip(self.stack_direction @ self.normal, -1.0, 1.0))
        return float(np.degrees(np.arccos(cos)))

    def world(self, k: NDArray[np.float64], j: NDArray[np.float64], i: NDArray[np.float64]) -> NDArray[np.float64]:
        """World (LPS) coordinates of (fractional) slice, row and column indices; shape (..., 3)."""
        k = np.asarray(k, dtype=np.float64)
        base = np.stack(
            [np.interp(k, np.arange(self.n_slices), self.positions[:, a]) for a in range(3)], axis=-1
        )
        return (
            base
            + np.asarray(i, dtype=np.float64)[..., None] * self.column_spacing * self.row_dir
            + np.asarray(j, dtype=np.float64)[..., None] * self.row_spacing * self.col_dir
        )


@dataclasses.dataclass(frozen=True)
class Stack:
    """One convertible part of a series: sorted slices and their geometry."""

    series: SeriesInfo
    slices: tuple[SliceInfo, ...]
    geometry: StackGeometry
    part: int = 0
    """0 when the series was not split, else 1, 2, ... in the order of :func:`plan_stacks`."""
    split_reason: str = ""
    dropped_duplicates: tuple[SliceInfo, ...] = ()
    """Exact copies (same SOPInstanceUID at the same position) left out of the stack."""
    gap_limit_mm: float = math.inf
    """The widest slice gap the stack was allowed to keep (wider ones split the series)."""

    @property
    def n_slices(self) -> int:
        return len(self.slices)


@dataclasses.dataclass(frozen=True)
class RejectedPart:
    """A part of a series that cannot make a volume."""

    part: int
    n_slices: int
    reason: str
    failed: bool = False
    """True for stray slices that disagree with the rest of their series (a data problem)."""


@dataclasses.dataclass(frozen=True)
class StackPlan:
    """The stacks of a series, and the parts that cannot be converted with their reasons."""

    stacks: list[Stack]
    rejected: list[RejectedPart]


def plan_stacks(series: SeriesInfo, max_gap_mm: float | None = None) -> StackPlan:
    """Sort a series' slices geometrically and split it into stacks where the geometry says so.

    Splits happen on different orientation, pixel spacing or matrix, on repeated slice
    positions (several passes or reconstructions under one SeriesInstanceUID), and at gaps
    between neighbouring slices wider than ``max_gap_mm`` (by default
    :data:`~orbitct_app.options.MAX_GAP_SPACINGS` times the stack's median slice spacing):
    blocks of slices apart are not one volume, and nothing is interpolated across such a gap.
    AcquisitionNumber alone never splits: it is only used to tell passes apart when positions
    repeat.

    Raises
    ------
    SeriesError
        When slices lack the geometry needed to place them.
    """
    images = expand_frames(series.slices)
    missing = [s for s in images if s.position is None or s.orientation is None or s.pixel_spacing is None]
    if missing:
        what = "frame(s)" if any(s.frame_index is not None for s in images) else "file(s)"
        raise SeriesError(
            f"{len(missing)} of {len(images)} {what} lack ImagePositionPatient, "
            "ImageOrientationPatient or PixelSpacing"
        )
    skewed = [s for s in images if s.orientation is not None and not _is_orientation(s.orientation)]
    if skewed:
        raise SeriesError(
            f"{len(skewed)} of {len(images)} slice(s) have an ImageOrientationPatient that is not two "
            "perpendicular unit vectors"
        )
    groups: dict[tuple[object, ...], list[SliceInfo]] = defaultdict(list)
    for s in images:
        groups[_frame_key(s)].append(s)
    differences = _frame_differences(list(groups))
    reasons = [f"split: {len(groups)} different {differences}"] if len(groups) > 1 else []
    candidates: list[_Candidate] = []
    for members in groups.values():
        keys = _position_keys(members)
        distinct = len(set(keys))
        if distinct < MIN_VOLUME_SLICES:
            if len(groups) > 1:
                why = f"{len(members)} stray slice(s) whose {differences} differ from the rest of the series"
                candidates.append(_Candidate(members, why_not=why, failed=True))
            else:
                candidates.append(_Candidate(members, why_not=_too_short(len(members), distinct)))
            continue
        passes, dropped, why = _split_passes(members, keys)
        if why:
            reasons.append(why)
        for i, members_of_pass in enumerate(passes):
            n = len(members_of_pass)
            if n < MIN_VOLUME_SLICES:
                candidates.append(_Candidate(members_of_pass, dropped if i == 0 else (), _too_short(n, n)))
                continue
            blocks, limit, gap_note = _split_at_gaps(members_of_pass, max_gap_mm)
            if gap_note:
                reasons.append(gap_note)
            for b, block in enumerate(blocks):
                short = "" if len(block) >= MIN_VOLUME_SLICES else f"{_too_short(len(block), len(block))}; {gap_note}"
                candidates.append(_Candidate(block, dropped if i == 0 and b == 0 else (), short, gap_limit_mm=limit))
    split = len(candidates) > 1
    reason = "; ".join(reasons)
    stacks: list[Stack] = []
    rejected: list[RejectedPart] = []
    for index, candidate in enumerate(candidates, start=1):
        part = index if split else 0
        members = candidate.members
        if candidate.why_not:
            rejected.append(RejectedPart(part, len(members), candidate.why_not, candidate.failed))
            continue
        geometry = _geometry(members)
        order = np.argsort(geometry.offsets, kind="stable")
        members = [members[i] for i in order]
        geometry = dataclasses.replace(geometry, positions=geometry.positions[order])
        stacks.append(Stack(series, tuple(members), geometry, part, reason, candidate.dropped, candidate.gap_limit_mm))
    return StackPlan(stacks, rejected)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A would-be part of a series, in plan order."""

    members: list[SliceInfo]
    dropped: tuple[SliceInfo, ...] = ()
    """Exact duplicates dropped from it."""
    why_not: str = ""
    """Why it cannot make a volume ('' when it can)."""
    failed: bool = False
    """It cannot because of a data problem (stray slices of another frame)."""
    gap_limit_mm: float = math.inf


def gap_limit(gaps: NDArray[np.float64], max_gap_mm: float | None) -> float:
    """The widest slice gap (mm) a stack keeps: ``max_gap_mm`` when given, else
    :data:`~orbitct_app.options.MAX_GAP_SPACINGS` times the median of ``gaps``."""
    return float(max_gap_mm) if max_gap_mm is not None else MAX_GAP_SPACINGS * float(np.median(gaps))


def _split_at_gaps(
    members: list[SliceInfo], max_gap_mm: float | None
) -> tuple[list[list[SliceInfo]], float, str]:
    """Cut slices without repeated positions into blocks at every gap wider than the limit.

    Returns the blocks in position order, the limit (mm) and a note naming the gaps ('' when
    there is no such gap: one block, the slices as given).
    """
    offsets = _geometry(members).offsets
    order = np.argsort(offsets, kind="stable")
    gaps = np.diff(offsets[order])
    limit = gap_limit(gaps, max_gap_mm)
    cuts = np.flatnonzero(gaps > limit + POSITION_TOLERANCE_MM) + 1
    if cuts.size == 0:
        return [members], limit, ""
    bounds = [0, *cuts.tolist(), len(members)]
    blocks = [[members[i] for i in order[a:b]] for a, b in itertools.pairwise(bounds)]
    widths = ", ".join(f"{g:.3g}" for g in gaps[cuts[:_GAPS_NAMED] - 1]) + (", ..." if cuts.size > _GAPS_NAMED else "")
    rule = f"--max-gap {limit:g} mm" if max_gap_mm is not None else (
        f"{MAX_GAP_SPACINGS:g} x the median spacing {float(np.median(gaps)):.3g} mm"
    )
    gaps_named = "a slice gap" if cuts.size == 1 else f"{cuts.size} slice gaps"
    note = (
        f"split at {gaps_named} of {widths} mm (wider than {rule}) into {len(blocks)} parts; "
        "nothing interpolated across"
    )
    return blocks, limit, note


def expand_frames(slices: Sequence[SliceInfo]) -> list[SliceInfo]:
    """One record per image: multi-frame objects become one record per frame, each with the
    frame's own position, orientation, spacing and rescale (from its functional groups)."""
    images: list[SliceInfo] = []
    for info in slices:
        if not info.frames:
            images.append(info)
            continue
        for index, frame in enumerate(info.frames):
            images.append(info.at_frame(frame, frames=(), frame_index=index))
    return images


ORIENTATION_TOLERANCE = 0.01
"""How far ImageOrientationPatient's direction cosines may be from unit length and from
perpendicular (length 1 +- this, dot product within +- this: about 0.6 degrees) before a slice
cannot be placed; scanners write them rounded to a few decimals."""


def _is_orientation(orientation: Sequence[float]) -> bool:
    """Whether ``orientation`` (row then column direction cosines) is two perpendicular unit vectors."""
    r, c = orientation[:3], orientation[3:]
    dot = sum(a * b for a, b in zip(r, c, strict=True))
    return all(abs(math.sqrt(sum(v * v for v in u)) - 1) <= ORIENTATION_TOLERANCE for u in (r, c)) and (
        abs(dot) <= ORIENTATION_TOLERANCE
    )


def _too_short(n: int, distinct: int) -> str:
    if n > distinct:
        return f"not a volume: {n} slices at only {distinct} distinct position(s)"
    return f"too few slices to make a volume ({n} < {MIN_VOLUME_SLICES})"


def _position_keys(members: Sequence[SliceInfo]) -> list[int]:
    """Slice positions along the normal, quantised to the duplicate tolerance."""
    offsets = _geometry(members).offsets
    return [int(k) for k in np.round(offsets / POSITION_TOLERANCE_MM)]


def _frame_key(s: SliceInfo) -> tuple[object, ...]:
    assert s.orientation is not None and s.pixel_spacing is not None
    return (
        tuple(round(v, 3) for v in s.orientation),
        tuple(round(v, 4) for v in s.pixel_spacing),
        s.rows,
        s.columns,
    )


def _frame_differences(keys: Sequence[tuple[object, ...]]) -> str:
    """What differs between frame keys: 'orientations', 'pixel spacings', 'matrix sizes'."""
    what = []
    if len({k[0] for k in keys}) > 1:
        what.append("orientations")
    if len({k[1] for k in keys}) > 1:
        what.append("pixel spacings")
    if len({(k[2], k[3]) for k in keys}) > 1:
        what.append("matrix sizes")
    return " / ".join(what)


def _split_passes(
    members: list[SliceInfo], keys: Sequence[int]
) -> tuple[list[list[SliceInfo]], tuple[SliceInfo, ...], str]:
    """Split slices of one frame of reference into passes without repeated positions (``keys``:
    their :func:`_position_keys`).

    Returns the passes, the exact duplicates dropped (same SOPInstanceUID and position) and a
    reason ('' when nothing was split or dropped).
    """
    # Exact copies of one image (same SOPInstanceUID at the same position): keep the first.
    seen: dict[tuple[int, str, int | None], SliceInfo] = {}
    kept: list[SliceInfo] = []
    kept_keys: list[int] = []
    dropped: list[SliceInfo] = []
    for s, key in zip(members, keys, strict=True):
        ident = (key, s.sop_instance_uid, s.frame_index)
        if s.sop_instance_uid and ident in seen:
            dropped.append(s)
            continue
        seen[ident] = s
        kept.append(s)
        kept_keys.append(key)
    notes = []
    if dropped:
        notes.append(f"dropped {len(dropped)} exact duplicate slice(s) (same SOPInstanceUID)")
    counts: dict[int, int] = defaultdict(int)
    for key in kept_keys:
        counts[key] += 1
    if max(counts.values()) == 1:
        return [kept], tuple(dropped), "; ".join(notes)
    # Positions repeat: tell passes apart by AcquisitionNumber when that separates them, else by
    # the order of acquisition (InstanceNumber): the n-th image at a position goes to pass n.
    passes = _passes_by_acquisition(kept, kept_keys)
    how = "AcquisitionNumber"
    if passes is None:
        how = "order of InstanceNumber"
        ranked: dict[int, int] = defaultdict(int)
        by_rank: dict[int, list[SliceInfo]] = defaultdict(list)
        order = sorted(
            range(len(kept)),
            key=lambda i: (kept[i].instance_number or 0, str(kept[i].path), kept[i].frame_index or 0),
        )
        for i in order:
            rank = ranked[kept_keys[i]]
            ranked[kept_keys[i]] += 1
            by_rank[rank].append(kept[i])
        passes = [by_rank[r] for r in sorted(by_rank)]
    repeated = sum(1 for c in counts.values() if c > 1)
    notes.append(f"split: {repeated} slice position(s) repeat; {len(passes)} passes told apart by {how}")
    return passes, tuple(dropped), "; ".join(notes)


def _passes_by_acquisition(members: list[SliceInfo], keys: list[int]) -> list[list[SliceInfo]] | None:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(members):
        if s.acquisition_number is None:
            return None
        groups[s.acquisition_number].append(i)
    if len(groups) < 2:
        return None
    for indices in groups.values():
        if len({keys[i] for i in indices}) != len(indices):
            return None
    return [[members[i] for i in groups[a]] for a in sorted(groups)]


def _geometry(members: Sequence[SliceInfo]) -> StackGeometry:
    first = members[0]
    assert first.orientation is not None and first.pixel_spacing is not None
    iop = np.asarray(first.orientation, dtype=np.float64)
    row_dir = iop[:3] / np.linalg.norm(iop[:3])
    col_dir = iop[3:] - (iop[3:] @ row_dir) * row_dir  # tolerate slightly non-orthogonal IOP
    col_dir /= np.linalg.norm(col_dir)
    return StackGeometry(
        row_dir=row_dir,
        col_dir=col_dir,
        row_spacing=float(first.pixel_spacing[0]),
        column_spacing=float(first.pixel_spacing[1]),
        rows=first.rows,
        columns=first.columns,
        positions=np.asarray([s.position for s in members], dtype=np.float64),
    )


# --- pixels ------------------------------------------------------------------------------------


def load_hu(stack: Stack) -> NDArray[np.int16]:
    """Read a stack's pixels into a preallocated int16 HU volume of shape (slices, rows, columns).

    Each slice uses its own rescale; pixel padding and anything below -1000 HU become -1000.

    Raises
    ------
    SeriesError
        When a slice cannot be decoded or does not match the stack's matrix.
    """
    g = stack.geometry
    volume = np.empty((stack.n_slices, g.rows, g.columns), dtype=np.int16)

    def load(k: int) -> None:
        info = stack.slices[k]
        raw = read_pixels(info)
        if raw.shape != (g.rows, g.columns):
            raise SeriesError(f"slice {info.path.name} has shape {raw.shape}, expected {(g.rows, g.columns)}")
        to_hu(raw, info, out=volume[k])

    for _ in thread_map(load, range(stack.n_slices)):
        pass
    return volume


def read_pixels(info: SliceInfo) -> NDArray[np.integer]:
    """Decode one single-frame grayscale image's stored values (no rescale).

    Uncompressed 16-bit little-endian images are read straight from the file at the offset
    discovery found (unused high bits masked, signed values sign-extended, as pydicom does);
    everything else goes through pydicom and its decoders.

    Raises
    ------
    SeriesError
        With the transfer syntax named when the pixel data cannot be decoded.
    """
    if info.samples_per_pixel != 1:
        raise SeriesError(f"{info.path.name}: {info.samples_per_pixel} samples per pixel (not grayscale)")
    if (
        info.pixel_offset is not None
        and info.transfer_syntax in NATIVE_LITTLE_ENDIAN
        and info.bits_allocated == 16
        and 0 < info.bits_stored <= 16
    ):
        return _read_native16(info)
    try:
        if info.frame_index is None:
            array = pydicom.dcmread(info.path).pixel_array
        else:  # decodes only that frame
            array = pixel_array(info.path, index=info.frame_index)
    except Exception as err:  # decoders raise many types; report one line
        syntax = pydicom.uid.UID(info.transfer_syntax)
        name = syntax.name if syntax.is_transfer_syntax else info.transfer_syntax
        raise SeriesError(
            f"cannot decode pixel data of {info.path.name} (transfer syntax {name}): "
            f"{type(err).__name__}"
        ) from err
    if array.ndim != 2:
        raise SeriesError(f"{info.path.name}: pixel array has {array.ndim} dimensions, expected 2")
    return array


def _read_native16(info: SliceInfo) -> NDArray[np.integer]:
    """Stored values of an uncompressed 16-bit little-endian image, read at its offset."""
    signed = info.pixel_representation == 1
    count = info.rows * info.columns
    offset = (info.pixel_offset or 0) + 2 * count * (info.frame_index or 0)
    try:
        array = np.fromfile(info.path, dtype="<i2" if signed else "<u2", count=count, offset=offset)
    except OSError as err:
        raise SeriesError(f"cannot read {info.path.name}: {err.strerror or type(err).__name__}") from err
    if array.size != count:
        raise SeriesError(f"{info.path.name}: pixel data shorter than {info.rows}x{info.columns}")
    array = array.reshape(info.rows, info.columns)
    unused = 16 - info.bits_stored
    if unused:
        if signed:  # sign-extend from the highest stored bit
            array <<= unused
            array >>= unused
        else:
            array &= (1 << info.bits_stored) - 1
    return array


def to_hu(raw: NDArray[np.integer], info: SliceInfo, *, out: NDArray[np.int16]) -> NDArray[np.int16]:
    """Convert stored values to HU (rounded int16) in ``out``; padding and sub-air become -1000."""
    slope, intercept = info.rescale_slope, info.rescale_intercept
    hu: NDArray[np.int32] | NDArray[np.float32]
    if slope == 1.0 and float(intercept).is_integer():  # exact integer arithmetic
        hu = raw.astype(np.int32)
        hu += int(intercept)
    else:
        scaled = raw.astype(np.float32)
        scaled *= np.float32(slope)
        scaled += np.float32(intercept)
        hu = np.rint(scaled, out=scaled)
    np.clip(hu, AIR_HU, _INT16_MAX, out=hu)
    out[...] = hu
    padding = padding_mask(raw, info)
    if padding is not None:
        out[padding] = AIR_HU
    return out


def padding_mask(raw: NDArray[np.integer], info: SliceInfo) -> NDArray[np.bool_] | None:
    """Pixels holding PixelPaddingValue (or within PixelPaddingRangeLimit), or None if no padding."""
    if info.padding_value is None:
        return None
    if info.padding_range_limit is None:
        padding: NDArray[np.bool_] = raw == info.padding_value
        return padding
    lo, hi = sorted((info.padding_value, info.padding_range_limit))
    return (raw >= lo) & (raw <= hi)
