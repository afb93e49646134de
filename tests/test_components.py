"""The slab-by-slab largest component against scipy's whole-volume labelling, and the cases
where slabs matter: components joined only through a later slab, and edge-only contacts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from orbitct_app import components, threads
from orbitct_app.components import LargestComponent, largest_component


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = threads.get_threads()
    yield
    threads.set_threads(before)


def _mask(component: LargestComponent, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    out = np.ones(shape, dtype=bool)  # every plane must be written, False included
    for k in range(shape[0]):
        component.plane(k, out[k])
    return out


def _reference(binary: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], int]:
    """scipy's face-connected labelling of the whole volume; ties go to the first label in
    C order, as argmax does."""
    labels, n = ndimage.label(binary)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    best = int(np.argmax(sizes))
    return labels == best, int(sizes[best])


@pytest.mark.parametrize("seed", range(40))
def test_random_volumes_match_whole_volume_labelling(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 2:  # the other way of counting labels and of finding the pairs at boundaries
        monkeypatch.setattr(components, "_FEW", 0 if seed % 4 == 1 else 10**6)
        monkeypatch.setattr(components, "_DENSE_KEYS", 0)
    rng = np.random.default_rng(seed)
    shape = tuple(int(x) for x in rng.integers(1, 18, 3))
    vol = np.where(rng.random(shape) < rng.uniform(0.2, 0.7), 100, -1000).astype(np.int16)
    slab = int(rng.integers(1, 7))
    component = largest_component(vol, 50, slab_slices=slab)
    if not (vol > 50).any():
        assert component is None
        return
    expected, size = _reference(vol > 50)
    assert component is not None
    assert component.n_voxels == size
    np.testing.assert_array_equal(_mask(component, shape), expected)


def test_pieces_joined_only_through_a_later_slab_are_one_component() -> None:
    vol = np.zeros((6, 10, 10), dtype=np.int16)
    vol[0:4, 2, 2] = 1  # pillar A: slabs 0 and 1 (two slices a slab)
    vol[0:4, 2, 7] = 1  # pillar B: only joined to A by the bridge in slab 2
    vol[4, 2, 2:8] = 1  # the bridge, in slab 2
    vol[0:2, 6:8, 3:6] = 1  # a blob of 12 voxels: bigger than any piece, smaller than all joined
    component = largest_component(vol, 0, slab_slices=2)
    assert component is not None
    expected = np.zeros(vol.shape, dtype=bool)
    expected[0:4, 2, 2] = expected[0:4, 2, 7] = expected[4, 2, 2:8] = True
    assert component.n_voxels == int(expected.sum()) == 14
    np.testing.assert_array_equal(_mask(component, vol.shape), _reference(vol > 0)[0])
    np.testing.assert_array_equal(_mask(component, vol.shape), expected)


def test_a_contact_across_a_slab_boundary_by_an_edge_only_does_not_join() -> None:
    vol = np.zeros((4, 8, 8), dtype=np.int16)
    vol[0:2, 3, 3] = 1  # 2 voxels in slab 0
    vol[2:4, 4, 3] = 1  # 2 voxels in slab 1, touching the first only along an edge
    vol[2:4, 6, 6] = 1
    vol[2:4, 6, 7] = 1  # 4 voxels: the largest unless the edge contact were counted
    component = largest_component(vol, 0, slab_slices=2)
    assert component is not None
    assert component.n_voxels == 4
    np.testing.assert_array_equal(_mask(component, vol.shape), _reference(vol > 0)[0])


def test_equal_components_go_to_the_first_in_slice_order() -> None:
    vol = np.zeros((6, 6, 6), dtype=np.int16)
    vol[4:6, 0, 0] = 1
    vol[1:3, 5, 5] = 1  # same size, earlier slices
    component = largest_component(vol, 0, slab_slices=2)
    assert component is not None
    assert _mask(component, vol.shape)[1:3, 5, 5].all()
    assert not _mask(component, vol.shape)[4:6, 0, 0].any()


def test_slab_labels_are_kept_in_the_smallest_type() -> None:
    vol = np.zeros((4, 40, 40), dtype=np.int16)
    vol[:2, ::2, ::2] = 1  # 400 separate two-voxel columns in slab 0
    vol[2:, 5:9, 5:9] = 1  # one block of 32 in slab 1, on top of four of the columns
    component = largest_component(vol, 0, slab_slices=2)
    assert component is not None
    assert [s.labels.dtype for s in component.slabs] == [np.dtype(np.uint16), np.dtype(np.uint8)]
    assert component.n_voxels == 32 + 4 * 2
    np.testing.assert_array_equal(_mask(component, vol.shape), _reference(vol > 0)[0])


def test_nothing_above_the_threshold_is_none() -> None:
    assert largest_component(np.full((3, 4, 4), -1000, dtype=np.int16), -200) is None


@pytest.mark.parametrize("n_threads", [2, 3])
def test_any_number_of_threads_gives_the_same_component(n_threads: int) -> None:
    rng = np.random.default_rng(7)
    vol = np.where(rng.random((37, 30, 30)) < 0.45, 100, -1000).astype(np.int16)
    threads.set_threads(1)
    one = largest_component(vol, 0, slab_slices=4)
    threads.set_threads(n_threads)
    many = largest_component(vol, 0, slab_slices=4)
    assert one is not None and many is not None
    assert many.n_voxels == one.n_voxels
    np.testing.assert_array_equal(_mask(many, vol.shape), _mask(one, vol.shape))
