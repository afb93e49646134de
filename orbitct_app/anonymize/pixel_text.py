"""Text burned into pixels (``--pixel-text``): find it in every kept series, cheaply and honestly.

Identifiers burned into the pixels (a name and date in the corner of reformats, exam-summary
screens, dose reports, scanned forms) survive every header rule, and so do those drawn in an
overlay plane (60xx,3000) of a kept file. The anonymize stage asks :func:`check_series` about
every series it keeps; ``flag`` keeps and reports a series with text, ``drop`` drops it.

How a frame is checked
    1. **A gate over many frames at once** (numpy, one pass per few dozen frames): every third
       row of each frame is scanned for runs of strong steps, and a frame goes on only when one
       of those rows crosses :data:`_GATE_EDGES` edges within :data:`_GATE_WINDOW` columns.
       Edges, not pixels: a blurred anatomical edge counts once, and a text line of three
       characters crosses ten or more. Any text line the next step can find (three rows or more
       of such edges) meets one of the rows scanned, so the gate loses nothing; on CT without
       text it stops nearly every frame.
    2. **The first pass** (numpy and cc3d) on the rows that passed: thin strokes that stand out
       from their surroundings (a grey-level top-hat, bright and dark text alike), cut into
       connected components of character size that sit side by side on a line with many strokes
       across it. Anatomy gives large components, or small ones that do not line up; noise stays
       under the contrast threshold (a multiple of the frame's own noise and of its range).
    3. **Only the lines found go to the OCR engine** (:mod:`orbitct_app.anonymize.ocr`, Tesseract, offline),
       each cut out, scaled to a common text height and stacked into one image: one engine run
       per frame with candidates. The frame has text when the engine reads a word of at least
       two letters or digits with confidence >= 60 in them.

Which frames are checked (the sampling)
    * **Every frame, whole**: secondary captures, derived series (ImageType DERIVED), series that
      are not axial (or have no orientation), multi-frame objects, and series of at most
      :data:`WHOLE_SERIES_FRAMES` frames.
    * **Long axial series** (original, single-frame files): the top and bottom sixth of every
      frame (the corners and edges where scanners and workstations burn in names, dates and
      parameters); the whole frame of :data:`SAMPLE_FRAMES` frames evenly spread over the series
      (first and last included). Text in the middle of a single slice of a long axial series can
      be missed: this is the documented gap.
    * **Overlay planes** (when the profile keeps them): every distinct plane, rendered from its
      bits, checked whole before the pixels.

A series stops being checked at the first frame where the engine confirms text (the decision is
taken); ``frames_checked`` says how many frames were checked, and how. Pixel data is decoded for
the check only (:mod:`orbitct_app.anonymize.pixel_frames`; compressed data through pydicom's
decoders); the files written are never changed by it. The words read are never kept: a finding
is a count of words, a box and a confidence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import NDArray

from orbitct_app.anonymize import ocr
from orbitct_app.anonymize.pixel_frames import PixelError as PixelError
from orbitct_app.anonymize.pixel_frames import Values, band_rows, read_overlays
from orbitct_app.anonymize.pixel_frames import read_frame as read_frame
from orbitct_app.anonymize.pixel_frames import read_values as read_values
from orbitct_app.discover import SECONDARY_CAPTURE_CLASSES, SeriesInfo, SliceInfo
from orbitct_app.threads import split_range, thread_map

if TYPE_CHECKING:
    from PIL import Image

WHOLE_SERIES_FRAMES = 30
"""Series of at most this many frames have every frame checked whole."""
SAMPLE_FRAMES = 10
"""Frames checked whole in a long axial series (evenly spread, first and last included)."""
BAND_FRACTION = 6
"""Long axial series: the top and bottom 1/BAND_FRACTION of every frame are checked."""
THUMBNAIL_WIDTH = 192
"""Width of the report's thumbnail of a frame with text (pixels, at most)."""

MIN_CHAR_HEIGHT = 4
"""Smallest character height (pixels) the first pass looks for ..."""
MAX_CHAR_HEIGHT = 64
"""... and the largest."""
_MAX_CHAR_ASPECT = 2.5
"""A character (or two touching ones) is at most this many times as wide as high."""
_MIN_CHARS = 3
"""A line has at least this many characters (components)."""
_TOP_HAT = 11
"""Window of the top-hat (pixels): strokes thinner than about half of it stand out."""
_NOISE_FACTOR = 6.0
_RANGE_FRACTION = 0.15
_STRONG_INK = 128
"""The first pass also looks for ink at this top-hat level (of 255: half the rows' range)."""
_THRESHOLD_SAMPLE = 2000
"""Pixels per frame (about) from which the contrast threshold is estimated."""
_MIN_STROKES = 5
"""A text line crosses at least this many strokes along one of its rows."""
_MIN_LINE_ROWS = 3
"""A text line makes at least this many consecutive busy rows."""
_GATE_EDGES = 8
"""A busy row crosses at least this many edges (steps above the threshold; a run of steps of one
sign is one edge) within one window of :data:`_GATE_WINDOW` columns. Five strokes make ten."""
_GATE_BLOCK = 64
_GATE_WINDOW = 3 * _GATE_BLOCK
"""Edges are counted in blocks of 64 columns, three blocks to a window (windows every 64 columns,
so every run of 128 columns lies wholly in one)."""
_GATE_ROW_STEP = _MIN_LINE_ROWS
"""The gate scans every third row: any run of three busy rows contains one of them."""
_CHUNK_PIXELS = 2_000_000
"""Frames are read and gated in chunks of about this many pixels (4 MB as int16: the same memory
serves every chunk)."""
_OCR_TEXT_HEIGHT = 36
_OCR_MAX_SCALE = 6.0
_REPEAT_IOU = 0.6
_WORD_HEIGHT = (0.4, 1.4)
"""A word read counts when its height is within these fractions of its line's height."""


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle of a frame in pixels: columns ``left <= x < right``, rows ``top <= y < bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def union(self, other: Box) -> Box:
        return Box(min(self.left, other.left), min(self.top, other.top), max(self.right, other.right),
                   max(self.bottom, other.bottom))

    def overlap(self, other: Box) -> int:
        """Pixels the two boxes share."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        return w * h if w > 0 and h > 0 else 0

    def iou(self, other: Box) -> float:
        inter = self.overlap(other)
        return inter / (self.width * self.height + other.width * other.height - inter) if inter else 0.0

    def text(self) -> str:
        return f"x {self.left}-{self.right}, y {self.top}-{self.bottom}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """Text the engine confirmed in one frame: how many words, where, how sure (never the words)."""

    frame: int
    """1-based position of the frame in the series (files in InstanceNumber order, frames in order)."""
    n_frames: int
    words: int
    box: Box
    confidence: float
    """Mean confidence of the words (0-100)."""
    thumbnail: str = ""
    """A small JPEG of the frame as a ``data:`` URI, text regions blanked and the box drawn."""
    overlay: int | None = None
    """The overlay group (0x6000-0x601E) that holds the text; None for text in the pixels."""


@dataclasses.dataclass(frozen=True)
class SeriesCheck:
    """What the check of one series found, and how much of it was checked."""

    n_frames: int
    whole: int
    """Frames checked whole."""
    bands: int
    """Frames of which only the top and bottom bands were checked."""
    ocr_frames: int
    """Frames (and overlay planes) the OCR engine read (the first pass found candidate lines)."""
    finding: Finding | None = None
    unreadable: int = 0
    """Frames (or overlay planes) that could not be decoded."""
    problem: str = ""
    """Why frames could not be read (one line, no header value)."""
    overlays: int = 0
    """Distinct overlay planes checked."""

    @property
    def checked(self) -> int:
        return self.whole + self.bands

    @property
    def complete(self) -> bool:
        """Every frame that should have been read was read."""
        return not self.unreadable

    def frames_text(self) -> str:
        """How much was checked, for the report: e.g. ``240/240 (10 whole, 230 top and bottom
        bands)``, with ``, 1 overlay plane`` after it when overlays were checked."""
        parts = []
        if self.whole:
            parts.append(f"{self.whole} whole")
        if self.bands:
            parts.append(f"{self.bands} top and bottom bands")
        if self.unreadable:
            parts.append(f"{self.unreadable} not decodable")
        detail = f" ({', '.join(parts)})" if parts else ""
        planes = f", {self.overlays} overlay plane{'s' if self.overlays != 1 else ''}" if self.overlays else ""
        return f"{self.checked}/{self.n_frames}{detail}{planes}"

    def result(self) -> str:
        """What was found, in one line (the report's ``pixel_text`` cell): never the words read."""
        if self.finding is not None:
            f = self.finding
            where = f"frame {f.frame}" if f.overlay is None else f"overlay plane {f.overlay:04X} of frame {f.frame}"
            return (f"text in {where} of {f.n_frames}: {f.words} word(s), box {f.box.text()}, "
                    f"confidence {f.confidence:.0f} (frames after it not checked)")
        if self.unreadable:
            return f"{self.unreadable} frame(s) not checked: {self.problem}"
        return "no text found"

    def summary(self) -> str:
        """:meth:`result`, how much was checked and how much of it the OCR engine read, for the log."""
        return f"{self.result()}; frames checked {self.frames_text()}; read by the OCR engine {self.ocr_frames}"


# --- the series -----------------------------------------------------------------------------------

PlanItem = tuple[SliceInfo, int | None, bool]
"""One frame of a series: its file, its frame index (None: a single-frame file), checked whole?"""


@dataclasses.dataclass
class _Tally:
    """What the check of a series has done so far."""

    n_frames: int
    whole: int = 0
    bands: int = 0
    ocr_frames: int = 0
    unreadable: int = 0
    problem: str = ""
    overlays: int = 0
    rejected: list[tuple[Box, NDArray[np.float32]]] = dataclasses.field(default_factory=list)
    """Regions the engine read nothing in (see :func:`_seen`)."""

    def failed(self, err: PixelError) -> None:
        self.unreadable += 1
        self.problem = self.problem or str(err)

    def result(self, finding: Finding | None = None) -> SeriesCheck:
        return SeriesCheck(self.n_frames, self.whole, self.bands, self.ocr_frames, finding, self.unreadable,
                           self.problem, self.overlays)


def check_series(series: SeriesInfo, *, overlays: bool = True, thumbnail: bool = True) -> SeriesCheck:
    """Check a series' pixels, and with ``overlays`` its overlay planes, for text (see the module
    docstring for the sampling).

    Never raises for a frame that cannot be decoded: it is counted in
    :attr:`SeriesCheck.unreadable` with the reason.
    """
    plan = _plan(series)
    tally = _Tally(len(plan))
    if overlays:
        finding = _check_overlays(plan, tally, thumbnail)
        if finding is not None:
            return tally.result(finding)
    for chunk in _chunks(plan):
        items = [plan[i] for i in chunk]
        frames = list(thread_map(_read_item, items))
        thresholds = _gate(items, frames)
        for index, (_, _, whole), values, threshold in zip(chunk, items, frames, thresholds, strict=True):
            if isinstance(values, PixelError):
                tally.failed(values)
                continue
            if whole:
                tally.whole += 1
            else:
                tally.bands += 1
            if threshold is None:
                continue  # stopped by the gate
            image = values.astype(np.float32)
            lines = find_text_lines(image, threshold) if whole else _band_lines(image, threshold)
            finding = _confirm_frame(image, lines, index + 1, tally, thumbnail)
            if finding is not None:
                return tally.result(finding)
    return tally.result()


def _plan(series: SeriesInfo) -> list[PlanItem]:
    """Every frame of the series in order: (file, frame index or None, checked whole?)."""
    frames: list[tuple[SliceInfo, int | None]] = []
    for info in series.slices:
        if info.n_frames > 1:
            frames.extend((info, k) for k in range(info.n_frames))
        else:
            frames.append((info, None))
    if checks_every_frame_whole(series):
        return [(info, k, True) for info, k in frames]
    sample = sample_indices(len(frames))
    return [(info, k, i in sample) for i, (info, k) in enumerate(frames)]


def checks_every_frame_whole(series: SeriesInfo) -> bool:
    """True for the series whose every frame is checked whole (see the module docstring)."""
    if series.n_instances <= WHOLE_SERIES_FRAMES:
        return True
    for info in series.slices:
        if info.n_frames > 1 or info.sop_class_uid in SECONDARY_CAPTURE_CLASSES:
            return True
        if info.image_type[:1] == ("DERIVED",) or not _axial(info.orientation):
            return True
    return False


def sample_indices(n: int, k: int = SAMPLE_FRAMES) -> set[int]:
    """``k`` indices evenly spread over ``range(n)``, first and last included."""
    if n <= k:
        return set(range(n))
    return {round(i * (n - 1) / (k - 1)) for i in range(k)}


def _axial(orientation: Sequence[float] | None) -> bool:
    """Whether the slice normal is within 45 degrees of the patient's head-foot axis."""
    if orientation is None:
        return False
    r, c = orientation[:3], orientation[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    length = math.sqrt(sum(v * v for v in normal))
    return length > 0 and abs(normal[2]) / length >= math.cos(math.radians(45))


def _chunks(plan: Sequence[PlanItem]) -> Iterator[range]:
    """Consecutive runs of the plan's indices of about :data:`_CHUNK_PIXELS` pixels each."""
    start = pixels = 0
    for i, (info, _, whole) in enumerate(plan):
        pixels += info.rows * info.columns if whole else 2 * band_rows(info.rows, BAND_FRACTION) * info.columns
        if pixels >= _CHUNK_PIXELS:
            yield range(start, i + 1)
            start, pixels = i + 1, 0
    if start < len(plan):
        yield range(start, len(plan))


def _read_item(item: PlanItem) -> Values | PixelError:
    info, frame, whole = item
    try:
        return read_values(info, frame, None if whole else BAND_FRACTION)
    except PixelError as err:
        return err


def _gate(items: Sequence[PlanItem], frames: Sequence[Values | PixelError]) -> list[float | None]:
    """Each frame's contrast threshold when it passed the gate (see the module docstring), else
    None; frames of one shape and kind are stacked and gated together."""
    groups: dict[tuple[bool, tuple[int, ...], str], list[tuple[int, Values]]] = {}
    for i, (item, values) in enumerate(zip(items, frames, strict=True)):
        if not isinstance(values, PixelError):
            groups.setdefault((item[2], values.shape, values.dtype.str), []).append((i, values))
    passed: list[float | None] = [None] * len(items)
    for group in groups.values():
        members = [i for i, _ in group]
        stack = cast(Values, np.stack([values for _, values in group]))
        thresholds = contrast_thresholds(stack)
        for i, threshold, ok in zip(members, thresholds.tolist(), _passes_gate(stack, thresholds), strict=True):
            passed[i] = threshold if ok else None
    return passed


def _passes_gate(stack: Values, thresholds: NDArray[np.float64]) -> list[bool]:
    """Whether each frame of a stack has a busy row among those the gate scans (the frames split
    between this process's threads)."""

    def part(frames: range) -> NDArray[np.bool_]:
        rows = busy_mask(stack[frames.start : frames.stop], thresholds[frames.start : frames.stop], _GATE_ROW_STEP)
        return np.asarray(rows.any(axis=1), dtype=bool)

    return [bool(ok) for ok in np.concatenate(list(thread_map(part, split_range(len(stack)))))]


def _confirm_frame(
    image: NDArray[np.float32], lines: list[Box], frame: int, tally: _Tally, thumbnail: bool, overlay: int | None = None
) -> Finding | None:
    """Ask the engine about the candidate lines of one frame (those it already read nothing in,
    at the same place with the same pixels, are not asked again); the finding, if it reads text."""
    lines = [box for box in lines if not _seen(box, image, tally.rejected)]
    if not lines:
        return None
    tally.ocr_frames += 1
    words = confirm(image, lines)
    if not words:
        tally.rejected.extend((box, image[box.top : box.bottom, box.left : box.right].copy()) for box in lines)
        return None
    box = words[0][0]
    for other, _ in words[1:]:
        box = box.union(other)
    confidence = sum(c for _, c in words) / len(words)
    picture = make_thumbnail(image, box, lines) if thumbnail else ""
    return Finding(frame, tally.n_frames, len(words), box, confidence, picture, overlay)


def _seen(box: Box, image: NDArray[np.float32], rejected: list[tuple[Box, NDArray[np.float32]]]) -> bool:
    """Whether the engine already rejected this very region (same place, same pixels) in an
    earlier frame: a fixed pattern of the series read once, not once per frame."""
    crop = image[box.top : box.bottom, box.left : box.right]
    for old, pixels in rejected:
        same_place = old.iou(box) >= _REPEAT_IOU and old.width == box.width and old.height == box.height
        if same_place and np.array_equal(pixels, crop):
            return True
    return False


# --- overlay planes -------------------------------------------------------------------------------


def _check_overlays(plan: Sequence[PlanItem], tally: _Tally, thumbnail: bool) -> Finding | None:
    """Check every distinct overlay plane of the series' files whole (identical planes once)."""
    first_frame: dict[str, int] = {}  # each file's first frame in the plan
    for i, (info, _, _) in enumerate(plan):
        first_frame.setdefault(str(info.path), i)
    seen: set[bytes] = set()
    for index in first_frame.values():
        info = plan[index][0]
        if not info.overlay_groups:
            continue
        try:
            planes = read_overlays(info)
        except PixelError as err:
            tally.failed(err)
            continue
        for group, frame, bits in planes:
            digest = hashlib.blake2b(bits.tobytes(), digest_size=16).digest() + str(bits.shape).encode()
            if digest in seen:
                continue
            seen.add(digest)
            tally.overlays += 1
            image = bits.astype(np.float32)
            frame = index + min(frame, info.n_frames - 1) + 1
            finding = _confirm_frame(image, find_text_lines(image), frame, tally, thumbnail, group)
            if finding is not None:
                return finding
    return None


# --- the gate and the first pass ------------------------------------------------------------------


def contrast_thresholds(stack: Values) -> NDArray[np.float64]:
    """Per frame of a stack ``(frames, rows, columns)``: how far a stroke must stand out from its
    surroundings. Six times the frame's noise (from the differences of horizontally neighbouring
    pixels) and at least 15 % of its range (between its 0.5th and 99.5th percentiles); both from a
    sample of about :data:`_THRESHOLD_SAMPLE` pixels; never below 1."""
    n_frames, rows, cols = stack.shape
    step = max(1, int(math.sqrt(rows * cols / _THRESHOLD_SAMPLE)))
    left = stack[:, ::step, : cols - 1 : step].astype(np.float32)
    if left.shape[1] * left.shape[2] < 2:
        return np.ones(n_frames)
    right = stack[:, ::step, 1::step][:, :, : left.shape[2]].astype(np.float32)
    sample = left.reshape(n_frames, -1)
    n = sample.shape[1]
    lo, hi = n // 200, n - 1 - n // 200
    ordered = np.partition(sample, (lo, hi), axis=1)
    spread = ordered[:, hi].astype(np.float64) - ordered[:, lo]
    # the 75th percentile of |difference| is 1.15 sigma*sqrt(2) for Gaussian noise; taken above
    # the median so that flat regions (air, a screen's background) do not hide the noise of the
    # rest, below the few percent of pixels on edges
    diffs = np.abs(right - left).reshape(n_frames, -1)
    q = (3 * n) // 4
    noise = np.partition(diffs, q, axis=1)[:, q].astype(np.float64) / (1.15 * math.sqrt(2))
    return np.maximum(np.maximum(_NOISE_FACTOR * noise, _RANGE_FRACTION * spread), 1.0)


def contrast_threshold(image: Values) -> float:
    """:func:`contrast_thresholds` of one frame."""
    return float(contrast_thresholds(image[None])[0])


def busy_mask(stack: Values, thresholds: NDArray[np.float64], row_step: int = 1) -> NDArray[np.bool_]:
    """Which rows (every ``row_step``-th) of each frame of a stack ``(frames, rows, columns)`` may
    cross a text line: at least :data:`_GATE_EDGES` edges within one window of
    :data:`_GATE_WINDOW` columns. A step is a difference between neighbouring pixels beyond the
    frame's threshold; a run of steps of one sign (a blurred edge) is one edge, so a stroke
    makes two. Shape ``(frames, ceil(rows / row_step))``."""
    rows = stack[:, ::row_step]
    if rows.dtype == np.int16:  # at most 15 significant bits: differences fit
        diff: Values = np.subtract(rows[..., 1:], rows[..., :-1])
        level: Values = np.floor(thresholds).clip(0, 32767).astype(np.int16)[:, None, None]
    else:
        diff = np.subtract(rows[..., 1:], rows[..., :-1], dtype=np.float32)
        level = thresholds.astype(np.float32)[:, None, None]
    sign = (diff > level).view(np.int8) - (diff < -level).view(np.int8)
    edges = (sign[..., 1:] != sign[..., :-1]) & (sign[..., 1:] != 0)
    n = edges.shape[-1]
    if n == 0:
        return np.zeros(rows.shape[:2], dtype=bool)
    full, rest = divmod(n, _GATE_BLOCK)
    blocks = []  # edges per block of columns (at most 64: uint8)
    if full:
        grouped = edges[..., : full * _GATE_BLOCK].reshape(*edges.shape[:-1], full, _GATE_BLOCK)
        blocks.append(np.add.reduce(grouped.view(np.uint8), axis=-1, dtype=np.uint8))
    if rest:
        blocks.append(np.count_nonzero(edges[..., full * _GATE_BLOCK :], axis=-1).astype(np.uint8)[..., None])
    counts = np.concatenate(blocks, axis=-1) if len(blocks) > 1 else blocks[0]
    k = min(_GATE_WINDOW // _GATE_BLOCK, counts.shape[-1])
    m = counts.shape[-1] - k + 1
    window = counts[..., :m].copy()
    for j in range(1, k):
        window += counts[..., j : j + m]
    busy: NDArray[np.bool_] = window.max(axis=-1) >= _GATE_EDGES
    return busy


def _band_lines(bands: NDArray[np.float32], threshold: float | None = None) -> list[Box]:
    """The first pass on the stacked top and bottom bands of a frame (each on its own)."""
    if threshold is None:
        threshold = contrast_threshold(bands)
    half = bands.shape[0] // 2
    found = []
    for offset, part in ((0, bands[:half]), (half, bands[half:])):
        for box in find_text_lines(part, threshold):
            found.append(Box(box.left, box.top + offset, box.right, box.bottom + offset))
    return found


def busy_rows(image: NDArray[np.float32], threshold: float) -> list[tuple[int, int]]:
    """Row ranges ``[first, last)`` that may hold a text line: runs of at least
    :data:`_MIN_LINE_ROWS` rows that :func:`busy_mask` finds busy (a line of three or more
    characters makes them; anatomy rarely does), widened by half their length and the top-hat's
    window."""
    busy = busy_mask(image[None], np.array([threshold]))[0]
    if np.count_nonzero(busy) < _MIN_LINE_ROWS:
        return []
    padded = np.concatenate(([False], busy, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    ranges: list[tuple[int, int]] = []
    for first, last in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if last - first < _MIN_LINE_ROWS:
            continue
        margin = (last - first) // 2 + _TOP_HAT  # context for the top-hat
        first, last = max(0, first - margin), min(image.shape[0], last + margin)
        if ranges and first <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))
    return ranges


def find_text_lines(image: NDArray[np.float32], threshold: float | None = None) -> list[Box]:
    """Boxes of the text-like lines in ``image`` (bright and dark text), the first pass.

    Rows that cross many strong steps (:func:`busy_rows`) are looked at closely: a pixel there is
    ink when it stands out from the grey-level opening (bright text) or closing (dark text) of
    those rows by more than ``threshold`` (default: :func:`contrast_threshold`). Ink is cut into
    8-connected components; those of character size that line up side by side (similar heights,
    small gaps) form a line, and a line with many strokes across it is a candidate.
    """
    if image.shape[0] < MIN_CHAR_HEIGHT or image.shape[1] < MIN_CHAR_HEIGHT:
        return []
    if threshold is None:
        threshold = contrast_threshold(image)
    boxes: list[Box] = []
    for first, last in busy_rows(image, threshold):
        # on 8 bits (min to max of the rows; the threshold is at least 15 % of the range, about
        # 38 levels): four times less memory to move than float32
        slab = image[first:last]
        lo, hi = float(slab.min()), float(slab.max())
        scale = 255.0 / max(hi - lo, 1e-6)
        grey = ((slab - np.float32(lo)) * np.float32(scale)).astype(np.uint8)
        # at the threshold, and at half the rows' range too: where the threshold is far below
        # the text's contrast, the glow of anti-aliased strokes can join the characters
        levels = sorted({threshold * scale, max(threshold * scale, _STRONG_INK)})
        opened = _window(_window(grey, _TOP_HAT, np.minimum), _TOP_HAT, np.maximum)
        closed = _window(_window(grey, _TOP_HAT, np.maximum), _TOP_HAT, np.minimum)
        for hat in (grey - opened, closed - grey):
            for level in levels:
                boxes.extend(Box(b.left, b.top + first, b.right, b.bottom + first) for b in _lines(hat > level))
    return _merge(boxes)


def _window(image: NDArray[np.uint8], k: int, op: Callable[..., NDArray[np.uint8]]) -> NDArray[np.uint8]:
    """Running minimum or maximum over a k x k window (edges repeated), separably, in log steps."""
    out = image
    for axis in (0, 1):
        r = k // 2
        pad = [(r, r) if a == axis else (0, 0) for a in range(2)]
        m = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        w = 1
        while 2 * w <= k:
            length = m.shape[axis] - w
            m = op(_take(m, 0, length, axis), _take(m, w, w + length, axis))
            w *= 2
        out = op(_take(m, 0, n, axis), _take(m, k - w, k - w + n, axis))
    return out


def _take(a: NDArray[np.uint8], start: int, stop: int, axis: int) -> NDArray[np.uint8]:
    return a[start:stop] if axis == 0 else a[:, start:stop]


def _lines(ink: NDArray[np.bool_]) -> list[Box]:
    """Text lines in a binary ink image (see :func:`find_text_lines`)."""
    if not ink.any():
        return []
    import cc3d  # (here: a frame the gate stops never needs it)

    labels = cc3d.connected_components(ink.view(np.uint8), connectivity=8)
    stats = cc3d.statistics(labels, no_slice_conversion=True)
    bb = np.asarray(stats["bounding_boxes"], dtype=np.int64)[1:]
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)[1:]
    if not len(bb):
        return []
    top, bottom, left, right = bb[:, 0], bb[:, 1] + 1, bb[:, 2], bb[:, 3] + 1
    height, width = bottom - top, right - left
    fill = counts / (height * width)
    char = (
        (height >= MIN_CHAR_HEIGHT) & (height <= MAX_CHAR_HEIGHT) & (width <= _MAX_CHAR_ASPECT * height)
        & (fill >= 0.12) & (fill <= 0.9)
    )
    if np.count_nonzero(char) < _MIN_CHARS:
        return []
    # join the characters of a line: each box widened by 0.6 of its height, cut to its middle rows
    joined = np.zeros(ink.shape, dtype=np.uint8)
    chars = np.flatnonzero(char)
    for i in chars:
        char_height = int(height[i])
        pad = max(2, int(0.6 * char_height))
        trim = char_height // 4
        joined[top[i] + trim : bottom[i] - trim, max(0, left[i] - pad) : right[i] + pad] = 1
    groups = cc3d.connected_components(joined, connectivity=4)
    centre = groups[(top[chars] + bottom[chars]) // 2, (left[chars] + right[chars]) // 2]
    found = []
    for group in np.flatnonzero(np.bincount(centre.ravel())[1:]) + 1:  # (np.unique would import numpy.ma: 40 ms)
        ids = chars[centre == group]
        if len(ids) < _MIN_CHARS:
            continue
        median_h = float(np.median(height[ids]))
        if np.any(height[ids] > 2 * median_h):
            continue  # characters of one line have comparable heights ...
        ids = ids[height[ids] >= median_h / 2.5]  # ... and marks (^ ' ") are not characters
        if len(ids) < _MIN_CHARS:
            continue
        box = Box(int(left[ids].min()), int(top[ids].min()), int(right[ids].max()), int(bottom[ids].max()))
        if box.height > 1.6 * median_h or box.width < 2 * box.height:
            continue
        if _strokes(ink, box) < _MIN_STROKES:
            continue
        found.append(box)
    return found


def _strokes(ink: NDArray[np.bool_], box: Box) -> int:
    """The most ink runs met along one of the rows at a quarter, half and three quarters of the box."""
    most = 0
    for fraction in (0.3, 0.5, 0.7):
        row = ink[box.top + int(fraction * (box.height - 1)), box.left : box.right]
        most = max(most, int(np.count_nonzero(row[1:] & ~row[:-1])) + int(row[0]))
    return most


def _merge(boxes: list[Box]) -> list[Box]:
    """Each line once: a box that lies mostly inside a larger one (a word of a line, the dark ink
    of a bright line) is left out."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -(b.width * b.height)):
        if not any(box.overlap(k) >= 0.7 * box.width * box.height for k in kept):
            kept.append(box)
    return kept


# --- the OCR engine -----------------------------------------------------------------------------


def confirm(image: NDArray[np.float32], lines: Sequence[Box]) -> list[tuple[Box, float]]:
    """Ask the OCR engine about the candidate lines of one frame; return the words it reads with
    confidence (their boxes in frame pixels and confidences; never their text).

    The lines are cut out with a margin, scaled to a common text height, made dark-on-light and
    stacked into one image, so that the engine runs once per frame.
    """
    from PIL import Image
    pieces: list[tuple[Box, Image.Image, float, Box]] = []
    for box in lines:
        margin = max(2, box.height // 2)
        crop_box = Box(max(0, box.left - margin), max(0, box.top - margin),
                       min(image.shape[1], box.right + margin), min(image.shape[0], box.bottom + margin))
        crop = image[crop_box.top : crop_box.bottom, crop_box.left : crop_box.right]
        scale = min(_OCR_MAX_SCALE, max(1.0, _OCR_TEXT_HEIGHT / max(1, box.height)))
        pieces.append((crop_box, _for_ocr(crop, scale), scale, box))
    gap = 24
    width = max(p.width for _, p, _, _ in pieces) + 2 * gap
    height = sum(p.height + gap for _, p, _, _ in pieces) + gap
    sheet = Image.new("L", (width, height), 255)
    where: list[tuple[int, int, Box, float, Box]] = []
    y = gap
    for crop_box, picture, scale, line in pieces:
        sheet.paste(picture, (gap, y))
        where.append((y, y + picture.height, crop_box, scale, line))
        y += picture.height + gap
    found = []
    for word in ocr.read_words(sheet):
        middle = word.top + word.height / 2
        for first, last, crop_box, scale, line in where:
            if not first <= middle < last:
                continue
            if not _WORD_HEIGHT[0] * line.height <= word.height / scale <= _WORD_HEIGHT[1] * line.height:
                break  # not a word of the line found (the engine reads shapes into anything)
            x0 = crop_box.left + int((word.left - gap) / scale)
            y0 = crop_box.top + int((word.top - first) / scale)
            box = Box(max(0, x0), max(0, y0), min(image.shape[1], x0 + math.ceil(word.width / scale)),
                      min(image.shape[0], y0 + math.ceil(word.height / scale)))
            found.append((box, word.confidence))
            break
    return found


def _for_ocr(crop: NDArray[np.float32], scale: float) -> Image.Image:
    """A crop as 8-bit dark text on a light background, scaled by ``scale``."""
    from PIL import Image
    lo, hi = np.percentile(crop, (1, 99))
    if hi <= lo:
        lo, hi = float(crop.min()), float(crop.max()) + 1.0
    grey = np.clip((crop - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    if np.median(grey) < 128:  # mostly dark: light text on a dark background
        grey = 255 - grey
    picture = Image.fromarray(grey)
    if scale != 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC)
    return picture


# --- the report's picture -----------------------------------------------------------------------


def make_thumbnail(image: NDArray[np.float32], box: Box, blanked: Sequence[Box]) -> str:
    """A small JPEG ``data:`` URI of a frame: every region where text was found or suspected
    blanked (so that its words cannot be read from the picture), the text's box drawn in red."""
    from PIL import Image, ImageDraw

    from orbitct_app import pictures

    lo, hi = np.percentile(image, (1, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    grey = np.clip((image - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    for region in (*blanked, box):
        grey[region.top : region.bottom, region.left : region.right] = 128
    picture = Image.fromarray(grey).convert("RGB")
    scale = min(1.0, THUMBNAIL_WIDTH / picture.width)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    draw.rectangle(
        (int(box.left * scale) - 1, int(box.top * scale) - 1,
         math.ceil(box.right * scale), math.ceil(box.bottom * scale)),
        outline=(230, 30, 30), width=2,
    )
    return pictures.thumbnail_data_uri(picture, width=THUMBNAIL_WIDTH, max_bytes=12_000)

