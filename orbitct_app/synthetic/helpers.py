"""Small helpers of the synthetic exam generator.

LPS and RAS vectors, the seeded digests behind every UID, file name and noise field (the same
seed gives the same bytes), short DS strings and sequence items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

Vec3 = tuple[float, float, float]


def lps_to_ras(points: ArrayLike) -> np.ndarray:
    """Convert LPS coordinates to RAS: ``(x, y, z) -> (-x, -y, z)``.

    Parameters
    ----------
    points : array_like, shape (..., 3)
        Points in DICOM patient coordinates (LPS, mm).

    Returns
    -------
    numpy.ndarray
        The same points in RAS (float64, same shape).
    """
    ras: np.ndarray = np.asarray(points, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])
    return ras


def vec3(values: Sequence[float | str] | np.ndarray) -> Vec3:
    return (float(values[0]), float(values[1]), float(values[2]))


def vec_ras(v: Vec3) -> Vec3:
    return (-v[0], -v[1], v[2])


def seeded_digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def seeded_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(seeded_digest(*parts)[:8], "little"))


def seeded_uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["orbitct-synth", *(str(p) for p in parts)])


def fmt(value: float, places: int) -> str:
    """Format a number as a short DS string with at most ``places`` decimals."""
    text = f"{round(value, places):.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def sequence_item(**attributes: Any) -> Dataset:
    """A sequence item with ``attributes`` (keywords) set in the order given."""
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds
