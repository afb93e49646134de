"""The analytic head phantom, evaluated at any world point or on any image plane.

:class:`Phantom` is built of quadric solids (:class:`_Quadric`: ellipsoids, spheres, cylinders),
each painted as a :class:`_Region` with one HU value; :class:`Sphere` describes the markers,
inserts and eyes whose positions and values the tests check. Coordinates are LPS mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from orbitct_app.synthetic.helpers import Vec3, vec_ras


@dataclass(frozen=True)
class Sphere:
    """A uniform sphere of the phantom (a marker or an insert), in world coordinates.

    Attributes
    ----------
    name : str
        Short identifier, e.g. ``"m1"`` or ``"soft_tissue"``.
    center_lps : tuple of float
        Centre in LPS mm.
    radius_mm : float
        Radius in mm.
    hu : float
        Uniform value in Hounsfield units.
    """

    name: str
    center_lps: Vec3
    radius_mm: float
    hu: float

    @property
    def center_ras(self) -> Vec3:
        """Centre in RAS mm."""
        return vec_ras(self.center_lps)


@dataclass(frozen=True, eq=False)
class _Quadric:
    """``q(p) = sum(((p - center) * inv_axes) ** 2)``; the solid is ``q < 1``.

    An inverse semi-axis of 0 makes the solid unbounded along that axis (a cylinder).
    """

    center: np.ndarray
    inv_axes: np.ndarray

    @property
    def bounded(self) -> bool:
        return bool(np.all(self.inv_axes > 0))

    def q_points(self, pts: np.ndarray) -> np.ndarray:
        c = self.center.astype(np.float32)
        w = self.inv_axes.astype(np.float32)
        q = np.zeros(pts.shape[0], dtype=np.float32)
        for k in range(3):
            if w[k] == 0:
                continue
            t = (pts[:, k] - c[k]) * w[k]
            q += t * t
        return q

    def plane_coefficients(
        self, origin: np.ndarray, a: np.ndarray, b: np.ndarray
    ) -> tuple[float, float, float, float, float, float]:
        """Coefficients of ``q(origin + i a + j b) = A i^2 + B j^2 + 2C ij + D i + E j + F``."""
        A = B = C = D = E = F = 0.0
        for k in range(3):  # plain floats: this runs for every region of every image
            w = float(self.inv_axes[k]) ** 2
            if w == 0.0:
                continue
            o = float(origin[k]) - float(self.center[k])
            ak, bk = float(a[k]), float(b[k])
            A += w * ak * ak
            B += w * bk * bk
            C += w * ak * bk
            D += 2 * w * o * ak
            E += 2 * w * o * bk
            F += w * o * o
        return A, B, C, D, E, F

    def q_grid(self, origin: np.ndarray, a: np.ndarray, b: np.ndarray, ni: int, nj: int) -> np.ndarray:
        """``q`` on the grid ``origin + i a + j b`` (``i < ni`` columns, ``j < nj`` rows), float32."""
        A, B, C, D, E, F = self.plane_coefficients(origin, a, b)
        i = np.arange(ni, dtype=np.float64)
        j = np.arange(nj, dtype=np.float64)
        fi = (A * i * i + D * i).astype(np.float32)
        gj = (B * j * j + E * j + F).astype(np.float32)
        q = gj[:, None] + fi[None, :]
        if C != 0.0:
            q += np.float32(2 * C) * np.outer(j.astype(np.float32), i.astype(np.float32))
        return q


def _sphere_quadric(center: np.ndarray, radius: float) -> _Quadric:
    return _Quadric(np.asarray(center, dtype=np.float64), np.full(3, 1.0 / radius))


@dataclass(frozen=True, eq=False)
class _Region:
    """One painted solid: inside ``shape`` and every ``inside``, outside every ``outside``,
    and on the negative side of every half-space ``n . p < d``."""

    name: str
    hu: float
    shape: _Quadric
    inside: tuple[_Quadric, ...] = ()
    outside: tuple[_Quadric, ...] = ()
    halfspaces: tuple[tuple[np.ndarray, float], ...] = ()

    def contains_points(self, pts: np.ndarray) -> np.ndarray:
        m = self.shape.q_points(pts) < 1
        for qd in self.inside:
            m &= qd.q_points(pts) < 1
        for qd in self.outside:
            m &= qd.q_points(pts) >= 1
        for n, d in self.halfspaces:
            m &= pts @ n.astype(np.float32) < np.float32(d)
        return m

    def paint_plane(
        self, out: np.ndarray, origin: np.ndarray, a: np.ndarray, b: np.ndarray
    ) -> None:
        """Paint this region on ``out[j, i]`` sampled at ``origin + i a + j b``."""
        nj, ni = out.shape
        i0, i1, j0, j1 = 0, ni, 0, nj
        A, B, C, D, E, F = self.shape.plane_coefficients(origin, a, b)
        det = A * B - C * C
        if self.shape.bounded and A > 0 and B > 0 and det > 1e-12 * A * B:
            x0 = (-(D * B - E * C) / (2 * det), -(E * A - D * C) / (2 * det))
            qmin = F + 0.5 * (D * x0[0] + E * x0[1])
            if qmin >= 1:
                return
            hw_i = math.sqrt((1 - qmin) * B / det)
            hw_j = math.sqrt((1 - qmin) * A / det)
            i0 = max(0, math.floor(x0[0] - hw_i) - 1)
            i1 = min(ni, math.ceil(x0[0] + hw_i) + 2)
            j0 = max(0, math.floor(x0[1] - hw_j) - 1)
            j1 = min(nj, math.ceil(x0[1] + hw_j) + 2)
            if i0 >= i1 or j0 >= j1:
                return
        sub_origin = origin + i0 * a + j0 * b
        ni_s, nj_s = i1 - i0, j1 - j0
        m = self.shape.q_grid(sub_origin, a, b, ni_s, nj_s) < 1
        if not m.any():
            return
        for qd in self.inside:
            m &= qd.q_grid(sub_origin, a, b, ni_s, nj_s) < 1
        for qd in self.outside:
            m &= qd.q_grid(sub_origin, a, b, ni_s, nj_s) >= 1
        for n, d in self.halfspaces:
            li = (float(n @ a) * np.arange(ni_s)).astype(np.float32)
            lj = (float(n @ sub_origin) + float(n @ b) * np.arange(nj_s)).astype(np.float32)
            m &= (lj[:, None] + li[None, :]) < np.float32(d)
        out[j0:j1, i0:i1][m] = np.float32(self.hu)


_DEFAULT_MARKERS: tuple[tuple[str, Vec3], ...] = (
    ("m1", (-38.0, -18.0, 12.0)),
    ("m2", (30.0, 14.0, -24.0)),
    ("m3", (8.0, 41.0, 28.0)),
    ("m4", (-14.0, -36.0, -31.0)),
    ("m5", (36.0, 26.0, 34.0)),
    ("m6", (-26.0, 30.0, -12.0)),
    ("m7", (17.0, -27.0, 3.0)),
)
_DEFAULT_INSERTS: tuple[tuple[str, Vec3, float, float], ...] = (
    ("soft_tissue", (-22.0, 12.0, 22.0), 10.0, 60.0),
    ("fat", (20.0, -8.0, -18.0), 10.0, -100.0),
)


@dataclass(frozen=True)
class Phantom:
    """Analytic head phantom, evaluated at world points (LPS mm).

    From outside in: air, a curved head-rest posterior of the head (the patient is supine),
    the scalp, the skull, the brain; two orbits anterior with orbital fat, a bony cup and the
    eye; two uniform inserts and small dense markers inside the brain. Offsets are relative to
    ``center_lps``. Later regions override earlier ones.

    Attributes
    ----------
    center_lps : tuple of float
        Head centre in LPS mm (deliberately not the origin).
    head_semi_axes_mm : tuple of float
        Outer (skin) ellipsoid semi-axes along x (L-R), y (A-P) and z (S-I).
    scalp_mm, skull_mm : float
        Thickness of the soft-tissue and bone shells.
    eye_offset_mm : tuple of float
        Left-eye centre offset; the right eye mirrors x. Anterior is -y.
    marker_offsets : tuple
        ``(name, offset)`` of each marker sphere.
    inserts_spec : tuple
        ``(name, offset, radius_mm, hu)`` of each uniform insert.
    headrest_gap_mm : float
        Minimum air gap between the skin and the head-rest.
    noise_sigma_hu : float
        Standard deviation of the Gaussian noise added when rendering series (0 disables).
        :meth:`hu_at` itself is noise-free.
    """

    center_lps: Vec3 = (4.0, -12.0, 85.0)
    head_semi_axes_mm: Vec3 = (72.0, 92.0, 88.0)
    scalp_mm: float = 5.0
    skull_mm: float = 6.0
    hu_air: float = -1000.0
    hu_scalp: float = 40.0
    hu_bone: float = 1000.0
    hu_brain: float = 35.0
    hu_orbital_fat: float = -90.0
    hu_vitreous: float = 10.0
    eye_offset_mm: Vec3 = (32.0, -68.0, -5.0)
    eye_radius_mm: float = 12.0
    orbit_radius_mm: float = 17.0
    orbit_wall_mm: float = 3.0
    marker_offsets: tuple[tuple[str, Vec3], ...] = _DEFAULT_MARKERS
    marker_radius_mm: float = 2.0
    marker_hu: float = 2500.0
    inserts_spec: tuple[tuple[str, Vec3, float, float], ...] = _DEFAULT_INSERTS
    headrest_gap_mm: float = 8.0
    headrest_thickness_mm: float = 12.0
    headrest_hu: float = 100.0
    noise_sigma_hu: float = 3.0

    @classmethod
    def wide(cls, width_mm: float, depth_mm: float = 220.0, marker_inset_mm: float = 25.0, **changes: Any) -> Phantom:
        """A phantom as wide as a body: the head ellipsoid stretched to ``width_mm`` from right
        to left and ``depth_mm`` from front to back, with two more markers, ``lateral_right`` and
        ``lateral_left``, ``marker_inset_mm`` inside the skin at either side (level with the
        centre), where a field of view narrower than the body cuts them off.

        Parameters
        ----------
        width_mm, depth_mm : float
            Skin-to-skin size along x (L-R) and y (A-P).
        marker_inset_mm : float
            Distance from the skin to each lateral marker's centre.
        **changes
            Any other :class:`Phantom` field (``head_semi_axes_mm`` keeps its S-I semi-axis).
        """
        semi_si = changes.pop("head_semi_axes_mm", cls.head_semi_axes_mm)[2]
        reach = width_mm / 2 - marker_inset_mm
        lateral = (("lateral_right", (-reach, 0.0, 0.0)), ("lateral_left", (reach, 0.0, 0.0)))
        return cls(
            head_semi_axes_mm=(width_mm / 2, depth_mm / 2, semi_si),
            marker_offsets=changes.pop("marker_offsets", _DEFAULT_MARKERS) + lateral,
            **changes,
        )

    def _at(self, offset: Sequence[float]) -> Vec3:
        c = self.center_lps
        return (c[0] + offset[0], c[1] + offset[1], c[2] + offset[2])

    @property
    def markers(self) -> tuple[Sphere, ...]:
        """Dense marker spheres (world coordinates)."""
        return tuple(
            Sphere(name, self._at(off), self.marker_radius_mm, self.marker_hu)
            for name, off in self.marker_offsets
        )

    @property
    def inserts(self) -> tuple[Sphere, ...]:
        """Uniform inserts used to check HU accuracy (world coordinates)."""
        return tuple(Sphere(n, self._at(off), r, hu) for n, off, r, hu in self.inserts_spec)

    @property
    def eyes(self) -> tuple[Sphere, ...]:
        """The two eyes, left (+x) then right."""
        ex, ey, ez = self.eye_offset_mm
        return (
            Sphere("eye_left", self._at((abs(ex), ey, ez)), self.eye_radius_mm, self.hu_vitreous),
            Sphere("eye_right", self._at((-abs(ex), ey, ez)), self.eye_radius_mm, self.hu_vitreous),
        )

    @property
    def headrest_inner_radius_mm(self) -> float:
        """Inner radius of the head-rest cylinder (axis along z through the head centre)."""
        return max(self.head_semi_axes_mm[0], self.head_semi_axes_mm[1]) + self.headrest_gap_mm

    @cached_property
    def _regions(self) -> tuple[_Region, ...]:
        c = np.asarray(self.center_lps, dtype=np.float64)
        axes = np.asarray(self.head_semi_axes_mm, dtype=np.float64)
        skin = _Quadric(c, 1.0 / axes)
        bone = _Quadric(c, 1.0 / (axes - self.scalp_mm))
        brain = _Quadric(c, 1.0 / (axes - self.scalp_mm - self.skull_mm))
        r_in = self.headrest_inner_radius_mm
        r_out = r_in + self.headrest_thickness_mm
        cyl_in = _Quadric(c, np.array([1 / r_in, 1 / r_in, 0.0]))
        cyl_out = _Quadric(c, np.array([1 / r_out, 1 / r_out, 0.0]))
        ez = np.array([0.0, 0.0, 1.0])
        ey = np.array([0.0, 1.0, 0.0])
        regions: list[_Region] = [
            _Region(
                "headrest",
                self.headrest_hu,
                cyl_out,
                outside=(cyl_in,),
                halfspaces=(
                    (-ey, -(c[1] + 0.4 * r_in)),  # only the posterior arc: y > cy + 0.4 r
                    (ez, c[2] + 0.7 * axes[2]),
                    (-ez, -(c[2] - 1.5 * axes[2])),
                ),
            ),
            _Region("scalp", self.hu_scalp, skin),
            _Region("skull", self.hu_bone, bone),
            _Region("brain", self.hu_brain, brain),
        ]
        for eye in self.eyes:
            ec = np.asarray(eye.center_lps)
            wall = _sphere_quadric(ec, self.orbit_radius_mm + self.orbit_wall_mm)
            # bony cup: the posterior part of the orbit wall only
            regions.append(
                _Region(f"{eye.name}_orbit_wall", self.hu_bone, wall, inside=(skin,),
                        halfspaces=((-ey, -(ec[1] - 2.0)),))
            )
            regions.append(
                _Region(f"{eye.name}_orbit_fat", self.hu_orbital_fat,
                        _sphere_quadric(ec, self.orbit_radius_mm), inside=(skin,))
            )
            regions.append(
                _Region(eye.name, eye.hu, _sphere_quadric(ec, eye.radius_mm), inside=(skin,))
            )
        for s in (*self.inserts, *self.markers):
            regions.append(_Region(s.name, s.hu, _sphere_quadric(np.asarray(s.center_lps), s.radius_mm)))
        return tuple(regions)

    def hu_at(self, points_lps: np.ndarray) -> np.ndarray:
        """Noise-free HU of the phantom at arbitrary world points.

        Parameters
        ----------
        points_lps : numpy.ndarray, shape (..., 3)
            World points in LPS mm.

        Returns
        -------
        numpy.ndarray
            float32 HU with shape ``points_lps.shape[:-1]``.
        """
        pts = np.asarray(points_lps, dtype=np.float32)
        if pts.shape[-1] != 3:
            raise ValueError(f"points must have a last axis of length 3, got shape {pts.shape}")
        flat = pts.reshape(-1, 3)
        out = np.full(flat.shape[0], self.hu_air, dtype=np.float32)
        chunk = 1 << 20
        for start in range(0, flat.shape[0], chunk):
            p = flat[start : start + chunk]
            o = out[start : start + chunk]
            for region in self._regions:
                o[region.contains_points(p)] = np.float32(region.hu)
        return out.reshape(pts.shape[:-1])

    def render_plane(
        self,
        origin_lps: ArrayLike,
        row_dir: ArrayLike,
        col_dir: ArrayLike,
        rows: int,
        cols: int,
        pixel_spacing: tuple[float, float],
    ) -> np.ndarray:
        """Noise-free HU image of a plane, the same values :meth:`hu_at` gives at its pixels.

        Pixel ``[j, i]`` is sampled at ``origin + i * pixel_spacing[1] * row_dir +
        j * pixel_spacing[0] * col_dir`` (DICOM: PixelSpacing is row spacing, column spacing).

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(rows, cols)``.
        """
        origin = np.asarray(origin_lps, dtype=np.float64)
        a = np.asarray(row_dir, dtype=np.float64) * float(pixel_spacing[1])
        b = np.asarray(col_dir, dtype=np.float64) * float(pixel_spacing[0])
        out = np.full((rows, cols), self.hu_air, dtype=np.float32)
        for region in self._regions:
            region.paint_plane(out, origin, a, b)
        return out
