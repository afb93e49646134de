"""QC pictures: one PNG per NIfTI for checking a conversion by eye.

The picture shows axial, coronal and sagittal slices through the body centroid, each in a
soft-tissue and a bone window, with the body-mask outline, orientation letters and the series
name. Slices are drawn in the **radiological convention**: the patient's right on the image
left, anterior (axial) or superior (coronal, sagittal) at the top, and, on the sagittal view,
anterior on the left. The display is derived from the NIfTI affine (RAS): the voxel axes are
permuted and flipped to reach that convention, and each edge's letter is the world direction
that edge faces according to the affine, so a wrong affine shows as mirrored anatomy.

The body outline is derived from the written volume (the output is body-masked: outside is
-1000 HU): voxels above the body threshold in the displayed slice, holes filled. Only the six
displayed slices are touched, so a 512 x 512 x 300 volume costs a small fraction of a second.

Drawing uses Pillow; nothing here writes a PNG by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from orbitct_app import __version__, atomic
from orbitct_app.extract.mask import fill_holes_2d

View = Literal["axial", "coronal", "sagittal"]
VIEWS: tuple[View, ...] = ("axial", "coronal", "sagittal")
CONVENTION = "radiological"
QC_SUFFIX = "_qc.png"
"""Appended to a NIfTI's stem to name its QC picture (beside it, in the exam folder)."""
QC_VERSION = 2
"""Changes when the picture changes in a way that should redo completed exams."""


@dataclasses.dataclass(frozen=True)
class Window:
    """A display window in HU."""

    name: str
    level: float
    width: float

    @property
    def label(self) -> str:
        return f"{self.name} W{self.width:g} L{self.level:g}"


SOFT_TISSUE = Window("soft tissue", 40, 400)
BONE = Window("bone", 400, 1800)
WINDOWS = (SOFT_TISSUE, BONE)

PANEL_PX = 256
"""Each view is fitted (aspect kept, isotropic millimetres) into a square of this many pixels."""
_GAP = 8
_MARGIN = 16
"""Room around each slice image for its orientation letters."""
_CELL = PANEL_PX + 2 * _MARGIN
_TITLE_H = 44
_LABEL_H = 16
_FOOTER_H = 20
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_DIM_TEXT = (170, 170, 170)
_OUTLINE = (255, 205, 0)
_LETTER = (90, 220, 255)

# Per view: the world (RAS) axis along the slice normal, then the world axis shown horizontally
# and vertically with the sign of the world direction that screen-right / screen-down point to.
# Radiological: screen-right goes to the patient's left (-x), screen-down to posterior (-y) on
# the axial view and to inferior (-z) on the others; on the sagittal view screen-right goes
# posterior (-y).
_DISPLAY: dict[View, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (0, -1), (1, -1)),
    "coronal": (1, (0, -1), (2, -1)),
    "sagittal": (0, (1, -1), (2, -1)),
}
_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))
"""Per RAS world axis: the letter of the negative and of the positive direction."""


@dataclasses.dataclass(frozen=True)
class ViewMapping:
    """How one view is cut from the volume and laid on the screen.

    Axes are voxel axes (0 = i, 1 = j, 2 = k of the NIfTI); a flip means the voxel index
    decreases towards screen-right (horizontal) or screen-down (vertical).
    """

    view: View
    normal_axis: int
    horizontal_axis: int
    horizontal_flip: bool
    vertical_axis: int
    vertical_flip: bool


@dataclasses.dataclass(frozen=True)
class Panel:
    """One drawn slice: where it is on the picture and what it shows."""

    view: View
    window: Window
    box: tuple[int, int, int, int]
    """(left, top, right, bottom) pixel bounds of the slice image on the picture."""
    letters: dict[str, str]
    """Orientation letter at each edge: keys ``left``, ``right``, ``top``, ``bottom``."""
    slice_index: int
    """Index of the slice along the view's normal voxel axis."""


@dataclasses.dataclass(frozen=True)
class QcPicture:
    """A rendered QC picture and its layout (for tests and the report)."""

    image: Image.Image
    panels: tuple[Panel, ...]
    centre_ijk: tuple[int, int, int]
    title: str

    def panel(self, view: View, window: Window) -> Panel:
        return next(p for p in self.panels if p.view == view and p.window == window)


def view_mapping(affine_ras: NDArray[np.float64], view: View) -> ViewMapping:
    """The voxel axes and flips that show ``view`` of a volume in the radiological convention.

    Each voxel axis is matched to the world axis it is closest to (oblique grids get the
    nearest display, never a resampling).
    """
    axis_of_world, sign_of_world = _world_axes(affine_ras)
    normal, (h_world, h_dir), (v_world, v_dir) = _DISPLAY[view]
    return ViewMapping(
        view=view,
        normal_axis=axis_of_world[normal],
        horizontal_axis=axis_of_world[h_world],
        horizontal_flip=sign_of_world[h_world] != h_dir,
        vertical_axis=axis_of_world[v_world],
        vertical_flip=sign_of_world[v_world] != v_dir,
    )


def panel_letters(affine_ras: NDArray[np.float64], mapping: ViewMapping) -> dict[str, str]:
    """The orientation letter at each edge of a view laid out by ``mapping``, from the affine.

    The letter at the right edge names the world direction (R/L, A/P, S/I) that screen-right
    points to: the affine column of the horizontal voxel axis (negated when flipped), by its
    largest component. The other edges likewise.
    """
    right = affine_ras[:3, mapping.horizontal_axis] * (-1.0 if mapping.horizontal_flip else 1.0)
    down = affine_ras[:3, mapping.vertical_axis] * (-1.0 if mapping.vertical_flip else 1.0)
    return {
        "left": _letter(-right),
        "right": _letter(right),
        "top": _letter(-down),
        "bottom": _letter(down),
    }


def render(
    volume_kji: NDArray[np.integer],
    affine_ras: NDArray[np.float64],
    *,
    title: str,
    body_threshold: float,
    centre_ijk: tuple[float, float, float] | NDArray[np.float64] | None = None,
    subtitle: str = "",
) -> QcPicture:
    """Draw the QC picture of a volume stored ``[k, j, i]`` with a RAS ``affine_ras``.

    Parameters
    ----------
    volume_kji
        HU volume, array axes (k, j, i) as written to the NIfTI.
    affine_ras
        4x4 voxel (i, j, k) to RAS millimetres.
    title
        The series name, drawn at the top (and stored as the PNG's Title).
    body_threshold
        HU above which a voxel belongs to the body (for the outline).
    centre_ijk
        Voxel (i, j, k) the slices pass through, normally the body centroid; by default the
        centroid of the voxels above ``body_threshold`` (estimated on a coarse subsample).
    subtitle
        A second line under the title.

    Returns
    -------
    QcPicture
    """
    if volume_kji.ndim != 3:
        raise ValueError("expected a 3D volume")
    affine = np.asarray(affine_ras, dtype=np.float64)
    shape_ijk = volume_kji.shape[::-1]
    if centre_ijk is None:
        centre_ijk = _body_centroid_ijk(volume_kji, body_threshold)
    ci, cj, ck = (int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(centre_ijk, shape_ijk, strict=True))
    centre = (ci, cj, ck)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)

    width = 3 * _CELL + 4 * _GAP
    height = _TITLE_H + 2 * (_LABEL_H + _CELL + _GAP) + _FOOTER_H
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((_GAP, 4), title, fill=_TEXT, font=_font(15))
    if subtitle:
        draw.text((_GAP, 25), subtitle, fill=_DIM_TEXT, font=_font(11))

    panels: list[Panel] = []
    for column, view in enumerate(VIEWS):
        mapping = view_mapping(affine, view)
        index = centre[mapping.normal_axis]
        hu = _slice_2d(volume_kji, mapping, index)
        size = _display_size(hu.shape, zooms[mapping.vertical_axis], zooms[mapping.horizontal_axis])
        hu_small = np.asarray(
            Image.fromarray(hu.astype(np.float32, copy=False)).resize(
                size, Image.Resampling.BOX if size[0] <= hu.shape[1] else Image.Resampling.BILINEAR
            )
        )
        outline = _outline(hu > body_threshold, size)
        letters = panel_letters(affine, mapping)
        for row, window in enumerate(WINDOWS):
            x0 = _GAP + column * (_CELL + _GAP)
            y0 = _TITLE_H + row * (_LABEL_H + _CELL + _GAP)
            draw.text((x0, y0 + 1), f"{view} · {window.label}", fill=_DIM_TEXT, font=_font(11))
            gray = _windowed(hu_small, window)
            rgb = np.repeat(gray[:, :, None], 3, axis=2)
            rgb[outline] = _OUTLINE
            left = x0 + (_CELL - size[0]) // 2
            top = y0 + _LABEL_H + (_CELL - size[1]) // 2
            canvas.paste(Image.fromarray(rgb), (left, top))
            box = (left, top, left + size[0], top + size[1])
            _draw_letters(draw, box, letters)
            panels.append(Panel(view, window, box, letters, index))
    footer = (
        f"{CONVENTION} convention: patient's right on the image left · yellow: body outline "
        f"(> {body_threshold:g} HU) · slices through voxel (i, j, k) = {centre}"
    )
    draw.text((_GAP, height - _FOOTER_H + 3), footer, fill=_DIM_TEXT, font=_font(11))
    return QcPicture(canvas, tuple(panels), centre, title)


def write_png(path: Path, picture: QcPicture) -> None:
    """Save a QC picture as ``path`` atomically (deterministic bytes: no timestamp)."""
    info = PngInfo()
    info.add_text("Title", picture.title)
    info.add_text("Software", f"orbitct-app {__version__}")
    info.add_text("Description", f"QC: axial, coronal, sagittal; {CONVENTION} convention")
    buffer = io.BytesIO()
    picture.image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    atomic.write_bytes(path, buffer.getvalue())


def qc_path(nifti_path: Path, nifti_suffix: str = ".nii.gz") -> Path:
    """Where the QC picture of a NIfTI goes: beside it, ``<stem>_qc.png``."""
    name = nifti_path.name
    stem = name[: -len(nifti_suffix)] if name.endswith(nifti_suffix) else nifti_path.stem
    return nifti_path.with_name(stem + QC_SUFFIX)


# --- helpers ------------------------------------------------------------------------------------


def _world_axes(affine: NDArray[np.float64]) -> tuple[list[int], list[int]]:
    """For each RAS world axis: the voxel axis closest to it and the sign of that match."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    remaining_voxel = [0, 1, 2]
    remaining_world = [0, 1, 2]
    axis_of_world = [0, 0, 0]
    sign_of_world = [1, 1, 1]
    for _ in range(3):  # greedy: the best-aligned pair first
        world, voxel = max(
            ((w, v) for w in remaining_world for v in remaining_voxel),
            key=lambda wv: abs(directions[wv[0], wv[1]]),
        )
        axis_of_world[world] = voxel
        sign_of_world[world] = 1 if directions[world, voxel] >= 0 else -1
        remaining_world.remove(world)
        remaining_voxel.remove(voxel)
    return axis_of_world, sign_of_world


def _letter(direction: NDArray[np.float64]) -> str:
    axis = int(np.argmax(np.abs(direction)))
    return _LETTERS[axis][1 if direction[axis] >= 0 else 0]


def _slice_2d(volume_kji: NDArray[np.integer], mapping: ViewMapping, index: int) -> NDArray[np.integer]:
    """The slice at ``index`` along the normal axis, as (screen rows, screen columns)."""
    array_axis = {0: 2, 1: 1, 2: 0}  # voxel axis -> array axis of a [k, j, i] volume
    plane: NDArray[np.integer] = np.take(volume_kji, index, axis=array_axis[mapping.normal_axis])
    # The two remaining array axes keep their order; array axis order is k, j, i.
    remaining = [v for v in (2, 1, 0) if v != mapping.normal_axis]
    if remaining[0] != mapping.vertical_axis:
        plane = plane.T
    if mapping.vertical_flip:
        plane = plane[::-1, :]
    if mapping.horizontal_flip:
        plane = plane[:, ::-1]
    return plane


def _display_size(shape: tuple[int, ...], row_mm: float, col_mm: float) -> tuple[int, int]:
    """(width, height) in pixels fitting the slice's millimetre extent into the panel square."""
    height_mm, width_mm = shape[0] * row_mm, shape[1] * col_mm
    scale = PANEL_PX / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def _windowed(hu: NDArray[np.float32], window: Window) -> NDArray[np.uint8]:
    low = window.level - window.width / 2
    scaled = (hu - low) * (255.0 / window.width)
    windowed: NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    return windowed


def _outline(mask: NDArray[np.bool_], size: tuple[int, int]) -> NDArray[np.bool_]:
    """The one-pixel border of the filled mask, at display ``size`` (width, height)."""
    if not mask.any():
        return np.zeros((size[1], size[0]), dtype=bool)
    filled = mask.copy()
    fill_holes_2d(filled)
    small = np.asarray(Image.fromarray(filled.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) >= 128
    inner = small.copy()
    inner[1:, :] &= small[:-1, :]
    inner[:-1, :] &= small[1:, :]
    inner[:, 1:] &= small[:, :-1]
    inner[:, :-1] &= small[:, 1:]
    border = small & ~inner
    return border


def _draw_letters(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], letters: dict[str, str]) -> None:
    left, top, right, bottom = box
    font = _font(14)
    mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
    gap = _MARGIN // 2
    spots = {
        "left": (left - gap, mid_y),
        "right": (right + gap, mid_y),
        "top": (mid_x, top - gap),
        "bottom": (mid_x, bottom + gap),
    }
    for edge, (x, y) in spots.items():
        draw.text((x, y), letters[edge], fill=_LETTER, font=font, anchor="mm")


def _body_centroid_ijk(volume_kji: NDArray[np.integer], threshold: float) -> tuple[float, float, float]:
    """Centroid (i, j, k) of the voxels above ``threshold``, on a subsample of <= 64 per axis."""
    steps = [max(1, n // 64) for n in volume_kji.shape]
    coarse = volume_kji[:: steps[0], :: steps[1], :: steps[2]] > threshold
    total = int(coarse.sum())
    if total == 0:
        return tuple((n - 1) / 2 for n in volume_kji.shape[::-1])
    centre = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        profile = coarse.sum(axis=others, dtype=np.int64)
        centre.append(float((profile * np.arange(profile.size)).sum()) / total * steps[axis])
    k, j, i = centre
    return i, j, k


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` (a bitmap font when Pillow lacks FreeType)."""
    return ImageFont.load_default(size=size)
