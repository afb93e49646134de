"""QC pictures: views and letters from the affine, the body outline, cost, and the PNG file."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, PngImagePlugin

from orbitct_app import pictures
from orbitct_app.extract import qc

SHAPE_KJI = (60, 80, 70)  # k (S), j (P), i (L) on the standard affine
SPACING = 2.0


def standard_affine() -> NDArray[np.float64]:
    """The affine the pipeline writes for a head-first supine axial series: i -> L, j -> P, k -> S."""
    affine = np.diag([-SPACING, -SPACING, SPACING, 1.0])
    affine[:3, 3] = [70.0, 80.0, -60.0]
    return affine


def flip_axis(affine: NDArray[np.float64], axis: int, n: int) -> NDArray[np.float64]:
    """The affine of the same world grid with voxel ``axis`` reversed (n voxels along it)."""
    flipped = affine.copy()
    flipped[:3, 3] = affine[:3, 3] + affine[:3, axis] * (n - 1)
    flipped[:3, axis] = -affine[:3, axis]
    return flipped


def phantom(affine: NDArray[np.float64], shape_kji: tuple[int, int, int] = SHAPE_KJI) -> NDArray[np.int16]:
    """A body (ellipsoid, 40 HU) with three markers (2000 HU), built in world (RAS) coordinates.

    Around the body centre c: marker 1 at c + (R, A) in the axial plane through c, marker 2 at
    c + (R, S) in the coronal plane, marker 3 at c + (A, S) in the sagittal plane.
    """
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_kji), indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float64)
    xyz = ijk1 @ affine.T
    centre = affine @ np.array([(shape_kji[2] - 1) / 2, (shape_kji[1] - 1) / 2, (shape_kji[0] - 1) / 2, 1.0])
    d = xyz[..., :3] - centre[:3]
    volume = np.full(shape_kji, -1000, dtype=np.int16)
    volume[(d[..., 0] / 55) ** 2 + (d[..., 1] / 65) ** 2 + (d[..., 2] / 50) ** 2 < 1] = 40
    for offset in ((25, 30, 0), (25, 0, 25), (0, 30, 25)):  # RAS: +x right, +y anterior, +z superior
        volume[np.linalg.norm(d - np.array(offset, dtype=float), axis=-1) < 6] = 2000
    return volume


def marker_position(picture: qc.QcPicture, view: qc.View) -> tuple[float, float]:
    """Centre of the white (marker) pixels of a bone-window panel, as fractions of its width/height."""
    panel = picture.panel(view, qc.BONE)
    left, top, right, bottom = panel.box
    pixels = np.asarray(picture.image)[top:bottom, left:right].astype(int)
    white = (pixels >= 250).all(axis=2)
    assert white.any(), f"no marker on the {view} panel"
    rows, cols = np.nonzero(white)
    return cols.mean() / (right - left), rows.mean() / (bottom - top)


def render(volume: NDArray[np.int16], affine: NDArray[np.float64]) -> qc.QcPicture:
    shape_ijk = volume.shape[::-1]
    i, j, k = ((n - 1) / 2 for n in shape_ijk)
    return qc.render(volume, affine, title="exam_x · series 2 · Head", body_threshold=-200, centre_ijk=(i, j, k))


def test_letters_of_the_standard_affine_are_radiological() -> None:
    affine = standard_affine()
    expected = {
        "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
        "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
        "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
    }
    for view in qc.VIEWS:
        mapping = qc.view_mapping(affine, view)
        assert qc.panel_letters(affine, mapping) == expected[view]
    axial = qc.view_mapping(affine, "axial")
    assert (axial.normal_axis, axial.horizontal_axis, axial.vertical_axis) == (2, 0, 1)
    assert not axial.horizontal_flip and not axial.vertical_flip  # the pipeline's grid needs no flip


def test_a_flipped_affine_flips_the_letters() -> None:
    affine = standard_affine()
    flipped = flip_axis(affine, 0, SHAPE_KJI[2])  # i now runs towards the patient's right
    for view in ("axial", "coronal"):
        mapping = qc.view_mapping(affine, view)
        letters = qc.panel_letters(flipped, mapping)  # same layout, other affine
        assert (letters["left"], letters["right"]) == ("L", "R")
        assert (letters["top"], letters["bottom"]) == (
            qc.panel_letters(affine, mapping)["top"],
            qc.panel_letters(affine, mapping)["bottom"],
        )
    flipped_k = flip_axis(affine, 2, SHAPE_KJI[0])
    mapping = qc.view_mapping(affine, "sagittal")
    assert qc.panel_letters(flipped_k, mapping)["top"] == "I"
    # laid out for the flipped affine, the view is flipped back into the convention
    mapping = qc.view_mapping(flipped, "axial")
    assert mapping.horizontal_flip
    assert qc.panel_letters(flipped, mapping) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_letters_follow_permuted_and_oblique_affines() -> None:
    # a volume stored sagittal-first: i -> A, j -> S, k -> R
    permuted = np.zeros((4, 4))
    permuted[:3, 0] = [0, 1, 0]
    permuted[:3, 1] = [0, 0, 1]
    permuted[:3, 2] = [1, 0, 0]
    permuted[3, 3] = 1
    axial = qc.view_mapping(permuted, "axial")
    assert axial.normal_axis == 1  # the S axis is j
    assert qc.panel_letters(permuted, axial) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # rotated 20 degrees about S: letters name the dominant direction
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = standard_affine()
    oblique[:3, :3] = rotation @ oblique[:3, :3]
    for view in qc.VIEWS:
        assert qc.panel_letters(oblique, qc.view_mapping(oblique, view)) == qc.panel_letters(
            standard_affine(), qc.view_mapping(standard_affine(), view)
        )


def test_anatomy_is_drawn_where_the_affine_puts_it() -> None:
    affine = standard_affine()
    volume = phantom(affine)
    picture = render(volume, affine)
    x, y = marker_position(picture, "axial")  # right-anterior: screen left, top
    assert x < 0.4 and y < 0.4
    x, y = marker_position(picture, "coronal")  # right-superior: screen left, top
    assert x < 0.4 and y < 0.4
    x, y = marker_position(picture, "sagittal")  # anterior-superior: screen left, top
    assert x < 0.4 and y < 0.4
    for panel in picture.panels:
        assert set(panel.letters.values()) <= set("RLAPSI")


def test_the_same_anatomy_on_a_flipped_grid_gives_the_same_picture() -> None:
    affine = standard_affine()
    volume = phantom(affine)
    flipped_affine = flip_axis(flip_axis(affine, 0, SHAPE_KJI[2]), 2, SHAPE_KJI[0])
    flipped_volume = phantom(flipped_affine)
    assert np.array_equal(flipped_volume, volume[::-1, :, ::-1])  # the same world content
    a, b = render(volume, affine), render(flipped_volume, flipped_affine)
    for pa, pb in zip(a.panels, b.panels, strict=True):
        assert pa.box == pb.box and pa.letters == pb.letters
        crop_a = np.asarray(a.image.crop(pa.box))
        crop_b = np.asarray(b.image.crop(pb.box))
        assert np.array_equal(crop_a, crop_b), pa.view


def test_a_wrong_affine_shows_as_mirrored_anatomy() -> None:
    affine = standard_affine()
    volume = phantom(affine)
    wrong = flip_axis(affine, 0, SHAPE_KJI[2])  # the data say right, the affine says left
    x, _ = marker_position(render(volume, wrong), "axial")
    assert x > 0.6


def test_the_body_outline_is_drawn_around_the_body() -> None:
    affine = standard_affine()
    picture = render(phantom(affine), affine)
    for panel in picture.panels:
        pixels = np.asarray(picture.image.crop(panel.box)).astype(int)
        outline = (pixels == np.array(qc._OUTLINE)).all(axis=2)
        assert outline.sum() > 50, panel.view
        rows, cols = np.nonzero(outline)
        h, w = outline.shape
        # a closed curve around the centre, not touching it
        assert rows.min() < h / 2 < rows.max() and cols.min() < w / 2 < cols.max()
        assert not outline[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3].any()


def test_windows_differ() -> None:
    affine = standard_affine()
    picture = render(phantom(affine), affine)
    soft = np.asarray(picture.image.crop(picture.panel("axial", qc.SOFT_TISSUE).box))
    bone = np.asarray(picture.image.crop(picture.panel("axial", qc.BONE).box))
    h, w = soft.shape[:2]
    # 40 HU is mid-grey in the soft-tissue window and dark in the bone window
    assert 110 < soft[h // 2, w // 2, 0] < 145
    assert bone[h // 2, w // 2, 0] < 90


def test_png_is_deterministic_titled_and_written_atomically(tmp_path: Path) -> None:
    affine = standard_affine()
    picture = render(phantom(affine), affine)
    first, second = tmp_path / "a_qc.png", tmp_path / "b_qc.png"
    qc.write_png(first, picture)
    qc.write_png(second, picture)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_qc.png", "b_qc.png"]
    with Image.open(first) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile)
        assert image.text["Title"] == "exam_x · series 2 · Head"
        assert image.size == picture.image.size


def test_qc_path_is_beside_the_nifti() -> None:
    assert qc.qc_path(Path("/o/nifti/e/e_S2_Head.nii.gz")) == Path("/o/nifti/e/e_S2_Head_qc.png")


def test_thumbnail_stays_under_its_budget() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (688, 896, 3), dtype=np.uint8)  # worst case for JPEG
    uri = pictures.thumbnail_data_uri(Image.fromarray(noise))
    assert uri.startswith("data:image/jpeg;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert len(data) <= pictures.THUMBNAIL_MAX_BYTES
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.width <= 448


def test_a_full_size_volume_costs_well_under_a_second(tmp_path: Path) -> None:
    shape = (300, 512, 512)
    volume = np.full(shape, -1000, dtype=np.int16)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume[((i - 256) / 180.0) ** 2 + ((j - 256) / 210.0) ** 2 + ((k - 150) / 140.0) ** 2 < 1] = 40
    affine = np.diag([-0.5, -0.5, 0.5, 1.0])
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        picture = qc.render(volume, affine, title="t", body_threshold=-200, centre_ijk=(256, 256, 150))
        qc.write_png(tmp_path / "x_qc.png", picture)
        pictures.thumbnail_data_uri(picture.image)
        best = min(best, time.perf_counter() - started)
    assert best < 0.5, f"QC picture took {best:.2f} s"


def test_default_centre_is_the_body_centroid() -> None:
    affine = standard_affine()
    volume = np.full(SHAPE_KJI, -1000, dtype=np.int16)
    volume[10:30, 20:40, 5:25] = 40  # a box off-centre
    picture = qc.render(volume, affine, title="t", body_threshold=-200)
    i, j, k = picture.centre_ijk
    assert abs(i - 14.5) <= 2 and abs(j - 29.5) <= 2 and abs(k - 19.5) <= 2


def test_rejects_a_2d_array() -> None:
    with pytest.raises(ValueError, match="3D"):
        qc.render(np.zeros((4, 4), dtype=np.int16), np.eye(4), title="t", body_threshold=-200)
