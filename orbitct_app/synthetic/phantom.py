"""Synthetic head CT exams written as DICOM, with their ground truth.

The generator evaluates an analytic head phantom at the exact world position of every pixel, so
the geometry of each written series is correct by construction. It returns what it wrote
(:class:`ExamTruth`): the phantom with its dense markers and uniform inserts, per-series slice
positions and orientations, and the identifying values it planted in the headers so that the
de-identification tests can search the output for them.

All coordinates are DICOM patient coordinates, LPS, in millimetres: x grows towards the
patient's Left, y towards Posterior, z towards Superior. RAS is ``(-x, -y, z)``.

Gantry tilt convention: an axial series with tilt ``t`` degrees has the row direction
``(1, 0, 0)`` and the column direction ``(0, cos t, -sin t)``; the slice normal (row x column)
is ``(0, sin t, cos t)``. A positive tilt therefore makes the image plane run inferiorly as it
goes posteriorly (the usual orbitomeatal head tilt); both signs are supported. Slices are
stepped along the table axis z, not along the normal, so a tilted series is a sheared stack.

Enhanced CT: with ``write_exam(..., enhanced=True)`` (or ``SeriesSpec(enhanced=True)``) an axial
or coronal series is written as one Enhanced CT Image Storage file (PS3.3 A.38) whose frames are
exactly the images of the classic series written with the same seed and spec (same pixels, same
ImagePositionPatient, same rescale, frame ``f`` = InstanceNumber ``f``). Geometry and rescale
live in the functional groups: PlanePosition, FrameContent (and PixelValueTransformation with
``per_slice_rescale``) per frame; PixelMeasures, PlaneOrientation, PixelValueTransformation,
CTImageFrameType, FrameAnatomy, FrameVOILUT, IrradiationEventIdentification (and the CT
acquisition macros for an ORIGINAL series) shared. The dimension index is (StackID,
InStackPositionNumber), both in FrameContent; InStackPositionNumber is 1 at the lowest z (y for
a coronal series) whatever the frame order. Scouts and summary captures stay classic. An
enhanced series has its own Series and SOP Instance UIDs; study and frame of reference are the
classic twin's.

Legacy Converted Enhanced CT: ``SeriesSpec(enhanced=True, legacy_converted=True)`` writes the
same frames as a Legacy Converted Enhanced CT Image Storage object (PS3.3 A.70), as a converter
makes from classic files: ImageType as the classic files have it, no CT-specific macros; each
frame's ConversionSourceAttributesSequence names the classic twin's SOP Instance UID, and the
attributes without a functional group of their own go to the Unassigned Shared Converted
Attributes (kVp, kernel, tilt ...) and Unassigned Per-frame Converted Attributes (acquisition
and content time, slice location, InstanceNumber) sequences, where identifiers are planted too.

Examples
--------
>>> from pathlib import Path
>>> truth = write_exam(Path("/tmp/synth"), "exam_001", seed=1)  # doctest: +SKIP
>>> [m.center_lps for m in truth.phantom.markers][:1]  # doctest: +SKIP
[(-34.0, -30.0, 97.0)]
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    LegacyConvertedEnhancedCTImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from orbitct_app import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "BASIC_ATTRIBUTES",
    "BurnedText",
    "ORBITCT_ATTRIBUTES",
    "ExamTruth",
    "ExpectedSkip",
    "Phantom",
    "PlantedValue",
    "SeriesSpec",
    "SeriesTruth",
    "Sphere",
    "default_series",
    "lps_to_ras",
    "write_exam",
    "write_sample_dataset",
]

Vec3 = tuple[float, float, float]
SeriesKind = Literal["axial", "coronal", "scout", "summary"]

MANUFACTURER = "ORBITCT-SYNTH"
PRIVATE_CREATOR = "ORBITCT PHI TEST"
"""Private creator of the planted private blocks (groups 0x0009, 0x0011 and 0x0029)."""

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
_COMPRESSED = (RLELossless, JPEG2000Lossless)

ORBITCT_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "AccessionNumber",
)
"""The twelve attributes the orbitct profile masks (at any depth)."""

BASIC_ATTRIBUTES: tuple[str, ...] = (
    "StationName",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstitutionalDepartmentName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "NameOfPhysiciansReadingStudy",
    "PatientBirthTime",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "DeviceSerialNumber",
    "StudyDescription",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ImageComments",
    "PatientTelephoneNumbers",
    "MilitaryRank",
    "BranchOfService",
    "RegionOfResidence",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "PatientReligiousPreference",
    "IssuerOfPatientID",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PatientWeight",
    "PatientSize",
)
"""Other identifying attributes, planted for a later basic-profile de-identification."""

_ORBITCT_CODES = {
    "PatientName": "PN",
    "PatientID": "ID",
    "PatientAddress": "AD",
    "ReferringPhysicianName": "RP",
    "PerformingPhysicianName": "PP",
    "OperatorsName": "OP",
    "InstitutionName": "IN",
    "InstitutionAddress": "IA",
    "AccessionNumber": "AN",
}


# --------------------------------------------------------------------------------------------
# small helpers


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


def _vec3(values: Sequence[float | str] | np.ndarray) -> Vec3:
    return (float(values[0]), float(values[1]), float(values[2]))


def _vec_ras(v: Vec3) -> Vec3:
    return (-v[0], -v[1], v[2])


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(_digest(*parts)[:8], "little"))


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["orbitct-synth", *(str(p) for p in parts)])


def _fmt(value: float, places: int) -> str:
    """Format a number as a short DS string with at most ``places`` decimals."""
    text = f"{round(value, places):.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


# --------------------------------------------------------------------------------------------
# phantom


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
        return _vec_ras(self.center_lps)


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


# --------------------------------------------------------------------------------------------
# series specification


TextPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right", "centre"]


@dataclass(frozen=True)
class BurnedText:
    """Text rendered into the pixels of a series, as scanners and workstations burn it in.

    Rendered with Pillow's scalable default font (anti-aliased). In a CT image the text takes the
    highest value (``polarity="white"``: white on black) or is drawn in the lowest value on a
    box of the highest (``"black"``: black on white); in a summary capture it is white on the
    screen's dark background, or black on a white one.

    Attributes
    ----------
    lines : tuple of str
        The lines of text, top to bottom.
    position : {"top-left", "top-right", "bottom-left", "bottom-right", "centre"}
        Where the block of lines goes (4 pixels from the edges).
    size : int
        Font size in pixels.
    polarity : {"white", "black"}
        Light text on a dark ground, or dark text on a light box.
    instances : tuple of int, optional
        The images (InstanceNumbers, frame numbers of an enhanced series) that carry it; all when
        None.
    overlay : bool
        Draw the text in an overlay plane (6000,3000) of each image instead of into its pixels
        (classic files only; the pixels stay clean and BurnedInAnnotation says NO for CT).
    """

    lines: tuple[str, ...]
    position: TextPosition = "top-left"
    size: int = 12
    polarity: Literal["white", "black"] = "white"
    instances: tuple[int, ...] | None = None
    overlay: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("burned-in text needs at least one line")
        if self.position not in ("top-left", "top-right", "bottom-left", "bottom-right", "centre"):
            raise ValueError(f"unknown text position {self.position!r}")
        if self.polarity not in ("white", "black"):
            raise ValueError(f"polarity must be 'white' or 'black', got {self.polarity!r}")
        if self.size < 4:
            raise ValueError(f"font size must be >= 4, got {self.size}")

    def on(self, instance: int) -> bool:
        """Whether image ``instance`` carries the text."""
        return self.instances is None or instance in self.instances

    def mask(self, rows: int, cols: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The text's coverage (float32, 0 to 1, shape ``(rows, cols)``) and the box behind it
        ``(left, top, right, bottom)``, 3 pixels around the text."""
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.load_default(size=self.size)
        canvas = Image.new("L", (cols, rows), 0)
        draw = ImageDraw.Draw(canvas)
        text = "\n".join(self.lines)
        left, top, right, bottom = (int(v) for v in draw.multiline_textbbox((0, 0), text, font=font))
        width, height = right - left, bottom - top
        margin = 4
        x = {"left": margin, "right": cols - margin - width, "centre": (cols - width) // 2}[
            "centre" if self.position == "centre" else self.position.split("-")[1]]
        y = {"top": margin, "bottom": rows - margin - height, "centre": (rows - height) // 2}[
            "centre" if self.position == "centre" else self.position.split("-")[0]]
        draw.multiline_text((x - left, y - top), text, fill=255, font=font)
        box = (max(0, x - 3), max(0, y - 3), min(cols, x + width + 3), min(rows, y + height + 3))
        return np.asarray(canvas, dtype=np.float32) / np.float32(255.0), box


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
        Gantry tilt (axial only); see the module docstring for the sign convention.
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
        ImageType stays that of the classic files (see the module docstring).
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


def _rescale_plan(spec: SeriesSpec) -> tuple[list[tuple[float, float]], int]:
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


# --------------------------------------------------------------------------------------------
# truth records


@dataclass(frozen=True)
class PlantedValue:
    """One identifying value planted in every file of an exam, or in its Enhanced CT files.

    A value whose ``location`` starts with ``SharedFunctionalGroupsSequence`` or
    ``PerFrameFunctionalGroupsSequence`` (:attr:`in_functional_groups`) is planted only in the
    enhanced series that have that item (:attr:`SeriesTruth.planted` lists them per series;
    :meth:`ExamTruth.planted_in` gives the values of one file). Every other value is in every
    file of the exam.

    Attributes
    ----------
    keyword : str
        DICOM keyword, or ``"(gggg,eeee)"`` for a private element.
    value : str
        The planted value (ASCII).
    location : str
        ``"top"``, or a path such as ``"RequestAttributesSequence[0].ReferencedStudySequence[0]"``
        or ``"PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]"`` (0-based items);
        private sequences appear as ``"(0009,1010)[0]"``.
    scope : {"orbitct", "basic"}
        ``"orbitct"`` for the twelve masked attributes at any depth and for everything private;
        ``"basic"`` for the other identifying attributes.
    searchable : bool
        Whether the value is distinctive enough to search the raw bytes of files for.
    vr : str
        Value representation used.
    private : bool
        The element is private or lies inside a private sequence.
    """

    keyword: str
    value: str
    location: str
    scope: Literal["orbitct", "basic"]
    searchable: bool = True
    vr: str = ""
    private: bool = False

    @property
    def value_bytes(self) -> bytes:
        """The value as it is encoded in the files."""
        return self.value.encode("ascii")

    @property
    def depth(self) -> int:
        """Sequence nesting depth (0 at top level)."""
        return 0 if self.location == "top" else self.location.count("[")

    @property
    def in_functional_groups(self) -> bool:
        """Planted inside the Shared or Per-frame Functional Groups (Enhanced CT files only)."""
        return self.location.startswith(_FUNCTIONAL_GROUPS)


_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


@dataclass(frozen=True)
class ExpectedSkip:
    """A series the pipeline is expected to leave out, and why (advisory)."""

    series_number: int
    series_instance_uid: str
    stage: Literal["anonymize", "extract"]
    reason: str


@dataclass
class SeriesTruth:
    """What was written for one series.

    Classic series: ``files``, ``sop_instance_uids``, ``positions_lps`` and ``rescale`` are in
    InstanceNumber order, one entry per file. ``positions_lps`` and ``orientation`` are
    empty/None for the summary capture.

    Enhanced series (``n_frames`` is not None): ``files`` and ``sop_instance_uids`` hold the one
    multi-frame file and its SOP Instance UID; ``positions_lps`` and ``rescale`` hold one entry
    per frame in frame order (frame ``f``, 1-based, is image ``f`` of the classic twin, so the
    frames follow the spec's ``order``); ``planted`` lists the identifiers planted inside this
    file's functional groups (also in :attr:`ExamTruth.planted`).
    """

    spec: SeriesSpec
    series_number: int
    series_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    files: list[Path] = field(default_factory=list)
    sop_instance_uids: list[str] = field(default_factory=list)
    positions_lps: list[Vec3] = field(default_factory=list)
    orientation: tuple[Vec3, Vec3] | None = None
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    rescale: list[tuple[float, float]] = field(default_factory=list)
    pixel_padding_value: int | None = None
    n_frames: int | None = None
    """NumberOfFrames of the multi-frame file of an enhanced series; None for a classic one."""
    planted: list[PlantedValue] = field(default_factory=list)
    """Identifiers planted only in this series' file (inside its functional groups)."""

    @property
    def is_enhanced(self) -> bool:
        """Written as one Enhanced CT (multi-frame) file."""
        return self.n_frames is not None

    @property
    def n_files(self) -> int:
        """Number of files written."""
        return len(self.files)

    @property
    def n_instances(self) -> int:
        """Number of images: files of a classic series, frames of an enhanced one.

        Frames count one each, as in discovery (``SeriesInfo.n_instances``).
        """
        return self.n_frames if self.n_frames is not None else len(self.files)

    @property
    def positions_ras(self) -> list[Vec3]:
        """ImagePositionPatient of each image (file or frame), in RAS."""
        return [_vec_ras(p) for p in self.positions_lps]

    @property
    def slice_normal(self) -> Vec3 | None:
        """Row x column direction (LPS), or None without geometry."""
        if self.orientation is None:
            return None
        n = np.cross(self.orientation[0], self.orientation[1])
        return (float(n[0]), float(n[1]), float(n[2]))


@dataclass
class ExamTruth:
    """What was written for one exam folder ``path`` (= ``root / dicom_id``)."""

    dicom_id: str
    path: Path
    seed: int
    study_uid: str
    frame_of_reference_uid: str
    phantom: Phantom
    series: list[SeriesTruth] = field(default_factory=list)
    planted: list[PlantedValue] = field(default_factory=list)
    skipped_expectations: list[ExpectedSkip] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every file of the exam, series by series."""
        return [f for s in self.series for f in s.files]

    def series_by_number(self, number: int) -> SeriesTruth:
        """The series with SeriesNumber ``number``."""
        for s in self.series:
            if s.series_number == number:
                return s
        raise KeyError(number)

    def planted_in(self, path: Path) -> list[PlantedValue]:
        """The planted values that file ``path`` of this exam holds.

        Every value outside the functional groups, plus the functional-group values of the
        enhanced series the file belongs to.
        """
        path = Path(path)
        for s in self.series:
            if path in s.files:
                return [p for p in self.planted if not p.in_functional_groups] + list(s.planted)
        raise KeyError(path)

    @property
    def orbitct_forbidden_bytes(self) -> list[bytes]:
        """Byte strings that must not occur in any output file after orbitct de-identification."""
        return sorted({p.value_bytes for p in self.planted if p.scope == "orbitct" and p.searchable})

    @property
    def basic_forbidden_bytes(self) -> list[bytes]:
        """Searchable basic-scope values (for a later basic-profile de-identification)."""
        return sorted({p.value_bytes for p in self.planted if p.scope == "basic" and p.searchable})


# --------------------------------------------------------------------------------------------
# planted identifiers


class _PhiPlan:
    """Builds the planted identifiers; every :meth:`apply` writes identical values.

    The first :meth:`apply` records the :class:`PlantedValue` list. Values are unique per exam,
    per attribute and per location (except the one-letter PatientSex).
    """

    def __init__(self, exam_hash: str, seed: int, dicom_id: str) -> None:
        self.h = exam_hash
        self.hint = int(exam_hash, 16)
        self.seed = seed
        self.dicom_id = dicom_id
        self.planted: list[PlantedValue] = []
        self._values: dict[tuple[str, str], str] = {}
        self._records: dict[tuple[str, str], PlantedValue] = {}
        self._recording: list[tuple[str, str]] | None = None
        self._locs: dict[str, int] = {}
        self._n_dates = 0
        self._n_times = 0
        self._n_private = 0

    def _loc_index(self, location: str) -> int:
        return self._locs.setdefault(location, len(self._locs))

    def _new_value(self, keyword: str, vr: str, location: str) -> str:
        loc = self._loc_index(location)
        if vr == "DA":
            k = self._n_dates
            self._n_dates += 1
            if keyword == "PatientBirthDate":
                base = _dt.date(1935, 1, 1) + _dt.timedelta(days=self.hint % 12000)
            else:
                base = _dt.date(2021, 1, 1) + _dt.timedelta(days=self.hint % 900)
            return (base + _dt.timedelta(days=k)).strftime("%Y%m%d")
        if vr == "TM":
            k = self._n_times
            self._n_times += 1
            return f"{10 + (k // 60) % 10:02d}{k % 60:02d}{self.hint % 60:02d}.{self.hint % 900000 + 100000:06d}"
        if vr == "DT":
            date = self._new_value(keyword, "DA", location)
            return date + self._new_value(keyword, "TM", location)
        if vr == "AS":
            return f"{20 + self.hint % 50 + loc:03d}Y"
        if vr == "DS":
            if keyword == "PatientSize":
                return f"1.{50 + loc:02d}"
            return f"{55 + loc}.{self.hint % 10}"
        if keyword == "PatientSex":
            return "O"
        if keyword in _ORBITCT_CODES:
            code = _ORBITCT_CODES[keyword]
        else:
            code = f"B{BASIC_ATTRIBUTES.index(keyword):02d}"
        return f"PHI{self.h}{code}{loc:02d}"

    def _add(self, key: tuple[str, str], record: PlantedValue) -> None:
        self._values[key] = record.value
        self._records[key] = record
        self.planted.append(record)

    def _used(self, key: tuple[str, str]) -> str:
        if self._recording is not None and key not in self._recording:
            self._recording.append(key)
        return self._values[key]

    def value(self, location: str, keyword: str, *, in_private: bool = False) -> str:
        key = (location, keyword)
        if key not in self._values:
            vr = dictionary_VR(keyword)
            val = self._new_value(keyword, vr, location)
            orbitct = keyword in ORBITCT_ATTRIBUTES or in_private
            searchable = len(val) >= 4 and vr not in ("DS", "IS", "US", "SS", "FL", "FD")
            self._add(key, PlantedValue(keyword, val, location, "orbitct" if orbitct else "basic",
                                        searchable, vr, in_private))
        return self._used(key)

    def private_value(self, location: str, tag: str, vr: str) -> str:
        key = (location, tag)
        if key not in self._values:
            val = f"PHI{self.h}PV{self._n_private:03d}"
            self._n_private += 1
            self._add(key, PlantedValue(tag, val, location, "orbitct", True, vr, True))
        return self._used(key)

    # -- building ---------------------------------------------------------------------------

    def _fill(self, ds: Dataset, location: str, keywords: Sequence[str], *,
              in_private: bool = False) -> None:
        for kw in keywords:
            setattr(ds, kw, self.value(location, kw, in_private=in_private))

    def _private(self, ds: Dataset, location: str, group: int, offset: int, vr: str,
                 creator: str = PRIVATE_CREATOR) -> None:
        block = ds.private_block(group, creator, create=True)
        tag = block.get_tag(offset)
        label = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        val = self.private_value(location, label, vr)
        value: str | bytes = val
        if vr == "OB":
            value = b"\x01\x02" + val.encode("ascii") + b"\x03\x04"
        elif vr == "UN":
            value = val.encode("ascii")
        block.add_new(offset, vr, value)

    def apply(self, ds: Dataset) -> None:
        """Plant every identifier into ``ds`` (top level, sequences, private blocks)."""
        self._fill(ds, "top", ORBITCT_ATTRIBUTES)
        self._fill(ds, "top", BASIC_ATTRIBUTES)

        # depth 1, 2 and 3 inside a standard sequence
        loc1 = "RequestAttributesSequence[0]"
        ra = Dataset()
        self._fill(ra, loc1, ORBITCT_ATTRIBUTES)
        self._fill(ra, loc1, ("RequestedProcedureDescription", "RequestedProcedureID",
                              "ScheduledProcedureStepID", "StudyDate", "PatientComments"))
        loc2 = f"{loc1}.ReferencedStudySequence[0]"
        rs = Dataset()
        rs.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        rs.ReferencedSOPInstanceUID = _uid(self.seed, self.dicom_id, "referenced-study")
        self._fill(rs, loc2, ORBITCT_ATTRIBUTES)
        self._fill(rs, loc2, ("StudyID", "StudyDescription"))
        loc3 = f"{loc2}.OtherPatientIDsSequence[0]"
        op3 = Dataset()
        self._fill(op3, loc3, ("PatientID", "PatientName", "IssuerOfPatientID"))
        op3.TypeOfPatientID = "TEXT"
        rs.OtherPatientIDsSequence = [op3]
        ra.ReferencedStudySequence = [rs]
        # private elements inside an item of a standard sequence
        self._private(ra, loc1, 0x0009, 0x01, "LO")
        self._private(ra, loc1, 0x0009, 0x03, "UN")
        ds.RequestAttributesSequence = [ra]

        items = []
        for k in range(2):
            loc = f"OtherPatientIDsSequence[{k}]"
            item = Dataset()
            self._fill(item, loc, ("PatientID", "IssuerOfPatientID"))
            item.TypeOfPatientID = "TEXT"
            items.append(item)
        ds.OtherPatientIDsSequence = items

        loc = "ReferencedPatientSequence[0]"
        rp = Dataset()
        rp.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.1.1"
        rp.ReferencedSOPInstanceUID = _uid(self.seed, self.dicom_id, "referenced-patient")
        self._fill(rp, loc, ORBITCT_ATTRIBUTES)
        self._private(rp, loc, 0x0011, 0x01, "SH")
        ds.ReferencedPatientSequence = [rp]

        # top-level private block with a private sequence
        for offset, vr in ((0x01, "LO"), (0x02, "SH"), (0x03, "UN"), (0x04, "OB"), (0x05, "PN"),
                           (0x06, "LT")):
            self._private(ds, "top", 0x0009, offset, vr)
        block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
        block.add_new(0x07, "UL", 42)
        seq_tag = block.get_tag(0x10)
        seq_label = f"({seq_tag >> 16:04X},{seq_tag & 0xFFFF:04X})"
        p_items = []
        loc = f"{seq_label}[0]"
        item = Dataset()
        self._fill(item, loc, ("PatientName", "PatientID", "InstitutionName"), in_private=True)
        self._private(item, loc, 0x0009, 0x01, "LO")
        nested = Dataset()
        self._fill(nested, f"{loc}.OtherPatientIDsSequence[0]", ("PatientID",), in_private=True)
        item.OtherPatientIDsSequence = [nested]
        p_items.append(item)
        loc = f"{seq_label}[1]"
        item = Dataset()
        self._fill(item, loc, ("AccessionNumber", "ReferringPhysicianName"), in_private=True)
        self._private(item, loc, 0x0009, 0x02, "SH")
        p_items.append(item)
        block.add_new(0x10, "SQ", p_items)

        # a second group: a harmless creator in block 0x10, the planted one in block 0x11
        other = ds.private_block(0x0029, "ORBITCT OTHER", create=True)
        other.add_new(0x01, "US", 7)
        self._private(ds, "top", 0x0029, 0x01, "LO")
        self._private(ds, "top", 0x0029, 0x02, "OB")

    def apply_functional_groups(self, shared: Dataset,
                                frames: Sequence[Dataset]) -> list[PlantedValue]:
        """Plant identifiers inside the functional groups of an Enhanced CT object.

        ``shared`` is the item of the SharedFunctionalGroupsSequence (with a
        FrameAnatomySequence), ``frames`` the items of the PerFrameFunctionalGroupsSequence
        (each with a FrameContentSequence). The first and the last frame items are planted,
        directly and inside their FrameContentSequence item; the shared item directly, inside
        its FrameAnatomySequence item and that item's AnatomicRegionSequence item. Each of these
        items also gets a private block of :data:`PRIVATE_CREATOR`. In a legacy converted object,
        the items of the Unassigned Shared and (first and last frame) Per-frame Converted
        Attributes Sequences are planted too, with a private block each: where a converter puts
        the classic files' attributes that have no functional group.

        Returns
        -------
        list of PlantedValue
            The values written by this call (in this object only).
        """
        self._recording = []
        try:
            loc = "SharedFunctionalGroupsSequence[0]"
            self._fill(shared, loc, ("PatientName", "PatientID", "InstitutionName",
                                     "PerformingPhysicianName", "PhysiciansOfRecord"))
            self._private(shared, loc, 0x0009, 0x01, "LO")
            self._private(shared, loc, 0x0009, 0x04, "OB")
            anatomy = shared.FrameAnatomySequence[0]
            loc_a = f"{loc}.FrameAnatomySequence[0]"
            self._fill(anatomy, loc_a, ("OperatorsName", "AccessionNumber", "InstitutionAddress"))
            self._private(anatomy, loc_a, 0x0011, 0x01, "SH")
            self._fill(anatomy.AnatomicRegionSequence[0], f"{loc_a}.AnatomicRegionSequence[0]",
                       ("PatientName", "ReferringPhysicianName"))
            for index in sorted({0, len(frames) - 1}):
                item = frames[index]
                loc = f"PerFrameFunctionalGroupsSequence[{index}]"
                self._fill(item, loc, ("PatientName", "OperatorsName", "StationName"))
                self._private(item, loc, 0x0009, 0x01, "LO")
                self._private(item, loc, 0x0009, 0x03, "UN")
                loc_c = f"{loc}.FrameContentSequence[0]"
                self._fill(item.FrameContentSequence[0], loc_c,
                           ("InstitutionName", "ReferringPhysicianName", "PatientID"))
                self._private(item.FrameContentSequence[0], loc_c, 0x0009, 0x02, "SH")
                if "UnassignedPerFrameConvertedAttributesSequence" in item:
                    loc_u = f"{loc}.UnassignedPerFrameConvertedAttributesSequence[0]"
                    unassigned = item.UnassignedPerFrameConvertedAttributesSequence[0]
                    self._fill(unassigned, loc_u, ("OperatorsName", "PatientID", "InstitutionAddress"))
                    self._private(unassigned, loc_u, 0x0009, 0x01, "LO")
            if "UnassignedSharedConvertedAttributesSequence" in shared:
                loc_u = "SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0]"
                unassigned = shared.UnassignedSharedConvertedAttributesSequence[0]
                self._fill(unassigned, loc_u, ("PatientName", "InstitutionName", "StationName",
                                               "PerformingPhysicianName"))
                self._private(unassigned, loc_u, 0x0009, 0x02, "SH")
            return [self._records[key] for key in self._recording]
        finally:
            self._recording = None


# --------------------------------------------------------------------------------------------
# writing


@dataclass
class _Exam:
    seed: int
    dicom_id: str
    exam_hash: str
    study_uid: str
    for_uid: str
    plan: _PhiPlan | None
    study_date: str
    scout_ref: tuple[str, str] | None = None
    scout_series_uid: str | None = None


@dataclass
class _Slice:
    """Geometry of one image of a stacked series (position order index ``k``)."""

    k: int
    instance: int
    ipp: tuple[str, str, str]
    slice_location: float


def _orientation(spec: SeriesSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if spec.kind == "axial":
        t = math.radians(spec.tilt_deg)
        col = (0.0, math.cos(t), -math.sin(t))
        return ("1", "0", "0"), tuple(_fmt(v, 8) for v in col)
    if spec.kind == "coronal":
        return ("1", "0", "0"), ("0", "0", "-1")
    if spec.kind == "scout":
        return ("0", "1", "0"), ("0", "0", "-1")
    raise ValueError("summary captures have no orientation")


def _stack(spec: SeriesSpec, phantom: Phantom) -> tuple[np.ndarray, np.ndarray, list[_Slice]]:
    """Row/column direction (as written) and every slice's geometry, in position order."""
    row_s, col_s = _orientation(spec)
    row = np.array([float(v) for v in row_s])
    col = np.array([float(v) for v in col_s])
    rows, cols = int(spec.rows or 0), int(spec.cols or 0)
    dr, dc = spec.pixel_spacing or (1.0, 1.0)
    n = int(spec.n_slices or 1)
    step = float(spec.slice_step or 0.0)
    axis = np.asarray(phantom.center_lps) + np.asarray(spec.center_offset_mm)
    direction = {"axial": np.array([0.0, 0.0, 1.0]), "coronal": np.array([0.0, 1.0, 0.0]),
                 "scout": np.zeros(3)}[spec.kind]
    along = (np.arange(n) - (n - 1) / 2) * step
    for first, extra in spec.extra_gaps:
        along[:first] -= extra / 2
        along[first:] += extra / 2
    slices = []
    for k in range(n):
        centre = axis + along[k] * direction
        ipp = centre - (cols - 1) / 2 * dc * row - (rows - 1) / 2 * dr * col
        instance = k + 1 if spec.order == "ascending" else n - k
        loc = float(centre @ direction) if spec.kind != "scout" else 0.0
        slices.append(_Slice(k, instance, (_fmt(ipp[0], 4), _fmt(ipp[1], 4), _fmt(ipp[2], 4)), loc))
    return row, col, slices


def _circle_outside(rows: int, cols: int, spacing: tuple[float, float]) -> np.ndarray:
    dr, dc = spacing
    radius = min(rows * dr, cols * dc) / 2
    j = (np.arange(rows) - (rows - 1) / 2) * dr
    i = (np.arange(cols) - (cols - 1) / 2) * dc
    return (j[:, None] ** 2 + i[None, :] ** 2) > radius**2


def _base_dataset(ex: _Exam, spec: SeriesSpec, series_uid: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type or ())
    ds.SOPClassUID = sop_class
    date, tm = ex.study_date, "101500.000000"
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"):
        setattr(ds, kw, date)
    for kw in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "InstanceCreationTime"):
        setattr(ds, kw, tm)
    ds.AccessionNumber = ""
    ds.Modality = spec.modality
    ds.Manufacturer = spec.manufacturer or MANUFACTURER
    ds.InstitutionName = "ORBITCT SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "HEAD ROUTINE"
    ds.SeriesDescription = spec.series_description
    ds.ManufacturerModelName = "SYNTH-CT 64"
    ds.PatientName = "SYNTH^PHANTOM"
    ds.PatientID = f"SYNTH{ex.exam_hash}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.SoftwareVersions = f"orbitct-app {__version__}"
    ds.StudyInstanceUID = ex.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.BodyPartExamined = "HEAD"
    ds.ProtocolName = "HEAD ROUTINE"
    for keyword, value in spec.contrast_bolus:
        if keyword == "ContrastBolusAgentSequence":  # one agent, coded (CID 12)
            ds.ContrastBolusAgentSequence = [_item(
                CodeValue="C-B0322", CodingSchemeDesignator="SRT", CodeMeaning=value, ContrastBolusAgentNumber=1)]
        else:
            setattr(ds, keyword, value)
    if ex.plan is not None:
        ex.plan.apply(ds)
    return ds


def _ct_attributes(ds: Dataset, spec: SeriesSpec, ex: _Exam) -> None:
    ds.KVP = "120"
    ds.SliceThickness = _fmt(float(spec.slice_thickness or 0.0), 4)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = _fmt(float((spec.cols or 0) * (spec.pixel_spacing or (1, 1))[1]), 3)
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = _fmt(spec.tilt_deg, 4)
    ds.TableHeight = "145"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "1000"
    ds.XRayTubeCurrent = "300"
    ds.Exposure = "300"
    ds.FilterType = "0"
    ds.GeneratorPower = "36"
    ds.FocalSpots = "0.7"
    if spec.convolution_kernel:
        ds.ConvolutionKernel = spec.convolution_kernel
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = ex.for_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.PixelSpacing = [_fmt(v, 6) for v in (spec.pixel_spacing or (1.0, 1.0))]
    ds.BitsAllocated = 16
    if ex.scout_ref is not None and spec.kind != "scout":
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ex.scout_ref
        ds.ReferencedImageSequence = [ref]


def _burn(image: np.ndarray, text: BurnedText, high: float, low: float) -> None:
    """Render ``text`` into a 2D ``image`` in place: light text takes ``high`` (anti-aliased
    over what is there); dark text takes ``low`` on a box of ``high``."""
    coverage, (left, top, right, bottom) = text.mask(*image.shape)
    if text.polarity == "white":
        ink, ground = high, None
    else:
        ink, ground = low, high
        image[top:bottom, left:right] = ground
    blended = image.astype(np.float32) * (1 - coverage) + np.float32(ink) * coverage
    image[...] = np.rint(blended).astype(image.dtype)


def _add_overlay(ds: Dataset, text: BurnedText, rows: int, cols: int) -> None:
    """Draw ``text`` in overlay plane 6000 of ``ds`` (graphics, the image's size, at its origin)."""
    from pydicom.pixels.utils import pack_bits

    coverage, _ = text.mask(rows, cols)
    ds.add_new(0x60000010, "US", rows)  # OverlayRows
    ds.add_new(0x60000011, "US", cols)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType: graphics
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    ds.add_new(0x60003000, "OW", pack_bits((coverage >= 0.5).astype(np.uint8)))  # OverlayData


def _save(ds: Dataset, path: Path, pixels: np.ndarray, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    pixels = np.ascontiguousarray(pixels)
    if transfer_syntax in _COMPRESSED:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.add_new(0x7FE00010, "OB" if pixels.itemsize == 1 else "OW", pixels.tobytes())
        meta.TransferSyntaxUID = UID(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------------------------
# Enhanced CT (PS3.3 A.38): functional group items


def _item(**attributes: Any) -> Dataset:
    """A sequence item with ``attributes`` (keywords) set in the order given."""
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _enhanced_image_type(spec: SeriesSpec) -> tuple[str, str, str, str]:
    """ImageType/FrameType of an enhanced series: the four Enhanced CT values (C.8.15.2.1.1)."""
    first = (spec.image_type or ("ORIGINAL",))[0]
    original = first != "DERIVED"
    return ("ORIGINAL" if original else "DERIVED", "PRIMARY", "VOLUME",
            "NONE" if original else "RESAMPLED")


def _pixel_value_transformation(slope: float, intercept: float) -> Dataset:
    return _item(RescaleIntercept=_fmt(intercept, 4), RescaleSlope=_fmt(slope, 4),
                 RescaleType="HU")


def _ct_acquisition_groups(spec: SeriesSpec) -> dict[str, list[Dataset]]:
    """The CT acquisition functional groups required for ORIGINAL frames (A.38.1.4), shared."""
    dr, dc = spec.pixel_spacing or (1.0, 1.0)
    return {
        "CTAcquisitionTypeSequence": [_item(AcquisitionType="SPIRAL", ConstantVolumeFlag="NO",
                                            FluoroscopyFlag="NO")],
        "CTAcquisitionDetailsSequence": [_item(
            RotationDirection="CW", RevolutionTime=1.0, SingleCollimationWidth=0.6,
            TotalCollimationWidth=38.4, TableHeight="145",
            GantryDetectorTilt=_fmt(spec.tilt_deg, 4), DataCollectionDiameter="500")],
        "CTTableDynamicsSequence": [_item(TableSpeed=46.08, TableFeedPerRotation=46.08,
                                          SpiralPitchFactor=1.2)],
        "CTGeometrySequence": [_item(DistanceSourceToDetector="1085.6",
                                     DistanceSourceToDataCollectionCenter=595.0)],
        "CTReconstructionSequence": [_item(
            ReconstructionAlgorithm="FILTER_BACK_PROJ",
            ConvolutionKernel=spec.convolution_kernel or "H30s", ConvolutionKernelGroup="BRAIN",
            ReconstructionDiameter=_fmt(float((spec.cols or 0) * dc), 3),
            ReconstructionPixelSpacing=[float(dr), float(dc)], ReconstructionAngle=360.0,
            ImageFilter="NONE")],
        "CTExposureSequence": [_item(
            ExposureTimeInms=1000.0, XRayTubeCurrentInmA=300.0, ExposureInmAs=300.0,
            ExposureModulationType="NONE", CTDIvol=55.0,
            CTDIPhantomTypeCodeSequence=[_code("113691", "DCM", "IEC Head Dosimetry Phantom")])],
        "CTXRayDetailsSequence": [_item(KVP="120", FocalSpots="0.7", FilterType="WEDGE",
                                        FilterMaterial="ALUMINUM")],
    }


class _SeriesWriter:
    """Renders and writes the images of one series on demand (any order)."""

    def __init__(self, ex: _Exam, spec: SeriesSpec, phantom: Phantom) -> None:
        self.ex = ex
        self.spec = spec
        self.phantom = phantom
        self.enhanced = spec.enhanced
        n = int(spec.n_slices or 1)
        self.instances = list(range(1, n + 1))
        """Image numbers: InstanceNumber of the classic files, frame number of the enhanced."""
        self.classic_sop_uids = {i: _uid(ex.seed, ex.dicom_id, "sop", spec.series_number, i)
                                 for i in self.instances}
        """The SOP Instance UIDs of the classic files (a legacy converted object's sources)."""
        if self.enhanced:
            # an enhanced series is another object than its classic twin: its own UIDs
            variant = "legacy" if spec.legacy_converted else "enhanced"
            self.series_uid = _uid(ex.seed, ex.dicom_id, "series", spec.series_number, variant)
            self.sop_class = LegacyConvertedEnhancedCTImageStorage if spec.legacy_converted else EnhancedCTImageStorage
            self.file_numbers = [1]
            self.sop_uids = {1: _uid(ex.seed, ex.dicom_id, "sop", spec.series_number, variant)}
        else:
            self.series_uid = _uid(ex.seed, ex.dicom_id, "series", spec.series_number)
            self.sop_class = (SecondaryCaptureImageStorage if spec.kind == "summary"
                              else CTImageStorage)
            self.file_numbers = self.instances
            self.sop_uids = self.classic_sop_uids
        self.planted: list[PlantedValue] = []
        self.row: np.ndarray | None = None
        self.col: np.ndarray | None = None
        self.slices: dict[int, _Slice] = {}
        self.rescale: dict[int, tuple[float, float]] = {}
        self.bits_stored = 8
        if spec.kind != "summary":
            self.row, self.col, slices = _stack(spec, phantom)
            self.slices = {s.instance: s for s in slices}
        if spec.kind in ("axial", "coronal"):
            plan, self.bits_stored = _rescale_plan(spec)
            self.rescale = {s.instance: plan[s.k] for s in slices}
        elif spec.kind == "scout":
            self.bits_stored = 12
            self.rescale = {1: (1.0, 0.0)}
        self.outside: np.ndarray | None = None
        if spec.padding and spec.kind in ("axial", "coronal"):
            self.outside = _circle_outside(int(spec.rows or 0), int(spec.cols or 0),
                                           spec.pixel_spacing or (1.0, 1.0))

    def truth(self, files: dict[int, Path]) -> SeriesTruth:
        spec = self.spec
        orientation = None
        if self.row is not None and self.col is not None:
            orientation = (_vec3(self.row), _vec3(self.col))
        return SeriesTruth(
            spec=spec,
            series_number=int(spec.series_number or 0),
            series_instance_uid=self.series_uid,
            sop_class_uid=self.sop_class,
            transfer_syntax_uid=spec.transfer_syntax,
            files=[files[i] for i in self.file_numbers],
            sop_instance_uids=[self.sop_uids[i] for i in self.file_numbers],
            positions_lps=[_vec3(self.slices[i].ipp) for i in self.instances if i in self.slices],
            orientation=orientation,
            pixel_spacing=spec.pixel_spacing or (1.0, 1.0),
            rescale=[self.rescale[i] for i in self.instances if i in self.rescale],
            pixel_padding_value=spec.padding_value if self.outside is not None else None,
            n_frames=len(self.instances) if self.enhanced else None,
            planted=list(self.planted),
        )

    # -- pixels -------------------------------------------------------------------------------

    def _directions(self) -> tuple[np.ndarray, np.ndarray]:
        if self.row is None or self.col is None:
            raise RuntimeError("a summary capture has no image plane")
        return self.row, self.col

    def _hu_image(self, sl: _Slice) -> np.ndarray:
        spec = self.spec
        origin = np.array([float(v) for v in sl.ipp])
        row, col = self._directions()
        hu = self.phantom.render_plane(origin, row, col, int(spec.rows or 0),
                                       int(spec.cols or 0), spec.pixel_spacing or (1.0, 1.0))
        sigma = self.phantom.noise_sigma_hu
        if sigma > 0:
            rng = _rng(self.ex.seed, self.ex.dicom_id, "noise", spec.series_number, sl.k)
            hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(sigma)
        np.rint(hu, out=hu)
        np.clip(hu, HU_MIN, HU_MAX, out=hu)
        return hu

    def _ct_pixels(self, instance: int) -> np.ndarray:
        sl = self.slices[instance]
        slope, intercept = self.rescale[instance]
        hu = self._hu_image(sl)
        raw = np.rint((hu - np.float32(intercept)) / np.float32(slope))
        out: np.ndarray = raw.astype(np.uint16 if self.spec.unsigned else np.int16)
        if self.outside is not None:
            out[self.outside] = self.spec.padding_value
        text = self.spec.burned_text
        if text is not None and not text.overlay and text.on(instance):
            high, low = (round((hu_value - intercept) / slope) for hu_value in (HU_MAX, HU_MIN))
            _burn(out, text, high, low)
        return out

    def _scout_pixels(self) -> np.ndarray:
        spec = self.spec
        sl = self.slices[1]
        origin = np.array([float(v) for v in sl.ipp])
        row, col = self._directions()
        half = max(self.phantom.head_semi_axes_mm) + 30.0
        dx = 2.0
        total = np.zeros((int(spec.rows or 0), int(spec.cols or 0)), dtype=np.float32)
        for x in np.arange(-half, half + dx / 2, dx):
            hu = self.phantom.render_plane(origin + np.array([x, 0.0, 0.0]), row, col,
                                           int(spec.rows or 0), int(spec.cols or 0),
                                           spec.pixel_spacing or (1.0, 1.0))
            total += np.clip((hu + 1000.0) / 1000.0, 0.0, None) * np.float32(dx)
        scout: np.ndarray = np.clip(np.rint(total * 10.0), 0, 4095).astype(np.uint16)
        return scout

    def _summary_pixels(self, instance: int) -> np.ndarray:
        spec = self.spec
        rows, cols = int(spec.rows or 0), int(spec.cols or 0)
        img = np.zeros((rows, cols, 3), dtype=np.uint8)
        # colours use bytes 0 or >= 0x80 only, and the thumbnail is grey (R = G = B), so no
        # planted ASCII token can ever appear in the uncompressed pixel data
        img[: max(rows // 12, 1), :, :] = (0, 0, 160)
        size = min(rows, cols) // 2
        c = np.asarray(self.phantom.center_lps)
        spacing = 2 * max(self.phantom.head_semi_axes_mm[:2]) / size
        origin = c - np.array([1.0, 1.0, 0.0]) * (size - 1) / 2 * spacing
        thumb = self.phantom.render_plane(origin, (1, 0, 0), (0, 1, 0), size, size,
                                          (spacing, spacing))
        grey = np.clip((thumb + 160.0) / 320.0 * 255.0, 0, 255).astype(np.uint8)
        top = rows // 8
        img[top : top + size, 8 : 8 + size, :] = grey[:, :, None]
        line_h = max(rows // 32, 2)
        for n in range(5 + instance):
            y = top + n * 2 * line_h
            if y + line_h > rows:
                break
            x0 = min(cols - 1, 16 + size)
            width = max(1, (cols - x0 - 8) * (3 + (n * 7 + instance) % 5) // 8)
            img[y : y + line_h, x0 : x0 + width, :] = (200, 200, 200) if n % 2 else (255, 255, 128)
        text = spec.burned_text
        if text is not None and not text.overlay and text.on(instance):
            for channel in range(3):
                _burn(img[:, :, channel], text, 255, 0)
        return img

    # -- datasets -----------------------------------------------------------------------------

    def _header(self) -> Dataset:
        """Every attribute shared by the images of the series (no per-instance values)."""
        spec, ex = self.spec, self.ex
        ds = _base_dataset(ex, spec, self.series_uid, self.sop_class)
        if spec.kind == "summary":
            ds.ConversionType = "WSD"
            ds.BurnedInAnnotation = "YES"
            ds.PatientOrientation = ""
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.Rows, ds.Columns = spec.rows, spec.cols
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            ds.PixelRepresentation = 0
            return ds
        _ct_attributes(ds, spec, ex)
        if spec.burned_text is not None and not spec.burned_text.overlay:
            ds.BurnedInAnnotation = "YES"
        row_s, col_s = _orientation(spec)
        ds.ImageOrientationPatient = [*row_s, *col_s]
        ds.BitsStored = self.bits_stored
        ds.HighBit = self.bits_stored - 1
        if spec.kind == "scout":
            ds.PixelRepresentation = 0
            ds.WindowCenter, ds.WindowWidth = "1500", "3000"
            ds.RescaleType = "US"
        else:
            ds.PixelRepresentation = 0 if spec.unsigned else 1
            ds.WindowCenter, ds.WindowWidth = "40", "80"
            ds.RescaleType = "HU"
            if self.outside is not None:
                ds.PixelPaddingValue = spec.padding_value
        return ds

    @cached_property
    def _header_bytes(self) -> bytes:
        # Encoding the planted sequences for every image is slow in pydicom, so the shared
        # header is encoded once; each image re-reads it (elements stay raw) and adds its own.
        ds = self._header()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.sop_class
        meta.MediaStorageSOPInstanceUID = UID(self.series_uid)
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian
                                  if self.spec.transfer_syntax == ImplicitVRLittleEndian
                                  else ExplicitVRLittleEndian)
        ds.file_meta = meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    def write(self, instance: int, path: Path) -> None:
        """Render image ``instance`` (file number ``1`` of an enhanced series) to ``path``."""
        if self.enhanced:
            self._write_enhanced(path)
            return
        spec = self.spec
        ds = dcmread(io.BytesIO(self._header_bytes))
        ds.SOPInstanceUID = self.sop_uids[instance]
        ds.InstanceNumber = instance
        if spec.kind == "summary":
            pixels = self._summary_pixels(instance)
        else:
            sl = self.slices[instance]
            ds.ImagePositionPatient = list(sl.ipp)
            slope, intercept = self.rescale[instance]
            ds.RescaleIntercept = _fmt(intercept, 4)
            ds.RescaleSlope = _fmt(slope, 4)
            if spec.kind == "scout":
                pixels = self._scout_pixels()
            else:
                ds.SliceLocation = _fmt(sl.slice_location, 4)
                pixels = self._ct_pixels(instance)
        text = spec.burned_text
        if text is not None and text.overlay and text.on(instance):
            _add_overlay(ds, text, int(spec.rows or 0), int(spec.cols or 0))
        _save(ds, path, pixels, spec.transfer_syntax)

    # -- Enhanced CT --------------------------------------------------------------------------

    def _enhanced_dataset(self) -> tuple[Dataset, Dataset, list[Dataset]]:
        """The Enhanced (or Legacy Converted Enhanced) CT header, without pixels, with its shared
        and per-frame group items."""
        spec, ex = self.spec, self.ex
        sn = spec.series_number
        legacy = spec.legacy_converted
        image_type = tuple(spec.image_type or ()) if legacy else _enhanced_image_type(spec)
        original = image_type[0] == "ORIGINAL"
        row_s, col_s = _orientation(spec)
        row, col = self._directions()
        rows, cols = int(spec.rows or 0), int(spec.cols or 0)
        dr, dc = spec.pixel_spacing or (1.0, 1.0)

        ds = _base_dataset(ex, spec, self.series_uid, self.sop_class)  # identifiers planted here
        if ex.plan is None:  # not in the Enhanced CT IOD (AcquisitionDateTime is); planted stay
            del ds.AcquisitionDate, ds.AcquisitionTime
        ds.ImageType = list(image_type)
        ds.SOPInstanceUID = self.sop_uids[1]
        ds.InstanceNumber = 1
        # General Series, Frame of Reference, Enhanced General Equipment
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = ex.for_uid
        ds.PositionReferenceIndicator = ""
        if "DeviceSerialNumber" not in ds:  # a planted value stays
            ds.DeviceSerialNumber = "SYNTH0001"
        # Image Pixel
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated = 16
        ds.BitsStored = self.bits_stored
        ds.HighBit = self.bits_stored - 1
        ds.PixelRepresentation = 0 if spec.unsigned else 1
        if self.outside is not None:
            ds.PixelPaddingValue = spec.padding_value
        # Multi-frame Functional Groups (common part)
        ds.NumberOfFrames = len(self.instances)
        # Enhanced CT Image (its CT-specific attributes are not in a legacy converted object)
        if not legacy:
            ds.PixelPresentation = "MONOCHROME"
            ds.VolumetricProperties = "VOLUME"
            ds.VolumeBasedCalculationTechnique = "NONE" if original else "MPR"
        ds.AcquisitionNumber = 1
        start = _dt.datetime.strptime(ex.study_date + "101500", "%Y%m%d%H%M%S")
        if original:
            if "AcquisitionDateTime" not in ds:
                ds.AcquisitionDateTime = start.strftime("%Y%m%d%H%M%S.%f")
            ds.AcquisitionDuration = round(0.1 * len(self.instances), 3)
        ds.ContentQualification = "PRODUCT"
        ds.BurnedInAnnotation = "NO" if spec.burned_text is None else "YES"
        ds.LossyImageCompression = "00"
        ds.PresentationLUTShape = "IDENTITY"
        # Acquisition Context: type 2, empty
        ds.AcquisitionContextSequence = []
        # Multi-frame Dimension: stack and in-stack position, both in the Frame Content group
        dim_uid = _uid(ex.seed, ex.dicom_id, "dimension-organization", sn)
        ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dim_uid)]
        ds.DimensionOrganizationType = "3D"
        ds.DimensionIndexSequence = [
            _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
                  FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
            _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
                  FunctionalGroupPointer=0x00209111,
                  DimensionDescriptionLabel="In-Stack Position Number"),
        ]

        shared = Dataset()
        shared.PixelMeasuresSequence = [_item(
            PixelSpacing=[_fmt(v, 6) for v in (dr, dc)],
            SliceThickness=_fmt(float(spec.slice_thickness or 0.0), 4))]
        shared.PlaneOrientationSequence = [_item(ImageOrientationPatient=[*row_s, *col_s])]
        if not spec.per_slice_rescale:
            slope, intercept = self.rescale[self.instances[0]]
            shared.PixelValueTransformationSequence = [
                _pixel_value_transformation(slope, intercept)]
        if legacy:  # what has no functional group of its own, as a converter moves it
            shared.UnassignedSharedConvertedAttributesSequence = [_item(
                KVP="120", DataCollectionDiameter="500",
                ReconstructionDiameter=_fmt(float(cols * dc), 3), GantryDetectorTilt=_fmt(spec.tilt_deg, 4),
                TableHeight="145", ConvolutionKernel=spec.convolution_kernel or "H30s")]
        else:
            shared.CTImageFrameTypeSequence = [_item(
                FrameType=list(image_type), PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique=ds.VolumeBasedCalculationTechnique)]
        shared.FrameAnatomySequence = [_item(
            AnatomicRegionSequence=[_code("69536005", "SCT", "Head")], FrameLaterality="U")]
        shared.FrameVOILUTSequence = [_item(WindowCenter="40", WindowWidth="80")]
        shared.IrradiationEventIdentificationSequence = [_item(
            IrradiationEventUID=_uid(ex.seed, ex.dicom_id, "irradiation-event"))]
        if ex.scout_ref is not None and ex.scout_series_uid is not None:
            ref_class, ref_uid = ex.scout_ref
            shared.ReferencedImageSequence = [_item(
                ReferencedSOPClassUID=ref_class, ReferencedSOPInstanceUID=ref_uid,
                PurposeOfReferenceCodeSequence=[_code("121311", "DCM", "Localizer")])]
            ds.ReferencedImageEvidenceSequence = [_item(
                StudyInstanceUID=ex.study_uid,
                ReferencedSeriesSequence=[_item(
                    SeriesInstanceUID=ex.scout_series_uid,
                    ReferencedSOPSequence=[_item(ReferencedSOPClassUID=ref_class,
                                                 ReferencedSOPInstanceUID=ref_uid)])])]
        if original and not legacy:
            for keyword, value in _ct_acquisition_groups(spec).items():
                setattr(shared, keyword, value)

        frames = []
        for instance in self.instances:  # frame order = InstanceNumber order of the classic twin
            sl = self.slices[instance]
            ipp = np.array([float(v) for v in sl.ipp])
            centre = ipp + (cols - 1) / 2 * dc * row + (rows - 1) / 2 * dr * col
            item = Dataset()
            item.PlanePositionSequence = [_item(ImagePositionPatient=list(sl.ipp))]
            content = Dataset()
            content.FrameAcquisitionNumber = 1
            if original:  # acquired from inferior to superior, 0.1 s apart
                when = (start + _dt.timedelta(seconds=0.1 * sl.k)).strftime("%Y%m%d%H%M%S.%f")
                content.FrameReferenceDateTime = when
                content.FrameAcquisitionDateTime = when
                content.FrameAcquisitionDuration = 100.0
            content.StackID = "1"
            content.InStackPositionNumber = sl.k + 1  # 1 at the lowest z (y for coronal)
            content.DimensionIndexValues = [1, sl.k + 1]
            item.FrameContentSequence = [content]
            if spec.per_slice_rescale:
                slope, intercept = self.rescale[instance]
                item.PixelValueTransformationSequence = [
                    _pixel_value_transformation(slope, intercept)]
            if legacy:
                item.ConversionSourceAttributesSequence = [_item(
                    ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=self.classic_sop_uids[instance])]
                taken = start + _dt.timedelta(seconds=0.1 * sl.k)
                item.UnassignedPerFrameConvertedAttributesSequence = [_item(
                    AcquisitionTime=taken.strftime("%H%M%S.%f"), ContentTime=taken.strftime("%H%M%S"),
                    InstanceNumber=instance, SliceLocation=_fmt(sl.slice_location, 4))]
            elif original:
                c = [round(float(v), 4) for v in centre]
                item.CTPositionSequence = [_item(TablePosition=c[2],
                                                 DataCollectionCenterPatient=c,
                                                 ReconstructionTargetCenterPatient=c)]
            frames.append(item)
        return ds, shared, frames

    def _write_enhanced(self, path: Path) -> None:
        """Render every frame and write the one Enhanced CT file of the series."""
        ds, shared, frames = self._enhanced_dataset()
        if self.ex.plan is not None:
            self.planted = self.ex.plan.apply_functional_groups(shared, frames)
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.PerFrameFunctionalGroupsSequence = frames
        pixels = np.stack([self._ct_pixels(instance) for instance in self.instances])
        _save(ds, path, pixels, self.spec.transfer_syntax)


def _relative_paths(ex: _Exam, writers: list[_SeriesWriter], shuffle_names: bool,
                    nested: bool) -> dict[tuple[int, int], Path]:
    paths: dict[tuple[int, int], Path] = {}
    used: set[str] = set()
    for w in writers:
        sn = int(w.spec.series_number or 0)
        for inst in w.file_numbers:
            if shuffle_names:
                name = _digest(ex.seed, ex.dicom_id, "name", sn, inst).hex()[:16].upper()
                while name in used:
                    name = _digest(name).hex()[:16].upper()
                used.add(name)
                folder = Path("DICOM", _digest(ex.seed, ex.dicom_id, "dir", sn).hex()[:8].upper()) \
                    if nested else Path()
                paths[(sn, inst)] = folder / name
            else:
                folder = Path("DICOM", "ST0001", f"S{sn:03d}") if nested else Path(f"S{sn:03d}")
                paths[(sn, inst)] = folder / f"IM{inst:05d}.dcm"
    return paths


def _expected_skips(series: list[SeriesTruth]) -> list[ExpectedSkip]:
    out = []
    for s in series:
        kind = s.spec.kind
        if s.n_instances <= 10:
            out.append(ExpectedSkip(s.series_number, s.series_instance_uid, "anonymize",
                                    f"{kind} series with {s.n_instances} instances (<= 10)"))
        elif kind == "coronal":
            out.append(ExpectedSkip(s.series_number, s.series_instance_uid, "extract",
                                    "coronal reformat is not axial"))
    return out


def write_exam(
    root: Path,
    dicom_id: str,
    series: Sequence[SeriesSpec] | None = None,
    *,
    seed: int = 0,
    phantom: Phantom | None = None,
    shuffle_names: bool = False,
    nested: bool = False,
    plant_phi: bool = True,
    enhanced: bool = False,
) -> ExamTruth:
    """Write one synthetic exam folder ``root / dicom_id`` of DICOM Part 10 files.

    Parameters
    ----------
    root : Path
        Input root; the exam folder is created inside it.
    dicom_id : str
        Exam folder name.
    series : sequence of SeriesSpec, optional
        Series to write (default :func:`default_series`). Missing series numbers are assigned
        from the position in the list (1-based).
    seed : int
        Makes UIDs, noise, names and planted values deterministic: the same seed and dicom_id
        give byte-identical files.
    phantom : Phantom, optional
        The object scanned (default ``Phantom()``).
    shuffle_names : bool
        Random extensionless hex file names, written in shuffled order.
    nested : bool
        Put series in deeper sub-folders (``DICOM/ST0001/S003/...``).
    plant_phi : bool
        Plant searchable identifying values (see :class:`PlantedValue`); otherwise headers
        carry neutral placeholders.
    enhanced : bool
        Write every axial and coronal series as one Enhanced CT Image Storage file (multi-frame,
        see :class:`SeriesSpec` ``enhanced``, which does the same for one series); scouts and
        summary captures stay classic. The frames equal the images the classic series would
        have (same seed, dicom_id and spec); the enhanced series gets its own Series and SOP
        Instance UIDs. With ``plant_phi`` identifiers are also planted inside the functional
        groups (see :class:`PlantedValue`).

    Returns
    -------
    ExamTruth

    Raises
    ------
    FileExistsError
        If the exam folder exists and is not empty.
    ValueError
        If the series specifications are inconsistent (duplicate series numbers, raw values
        that do not fit, a padding value that collides with image content).
    """
    t0 = time.perf_counter()
    phantom = phantom or Phantom()
    specs_in = list(series) if series is not None else default_series()
    specs: list[SeriesSpec] = []
    for n, spec in enumerate(specs_in, start=1):
        spec = spec.resolved()
        if spec.series_number is None:
            spec = replace(spec, series_number=n)
        if enhanced and spec.kind in ("axial", "coronal"):
            spec = replace(spec, enhanced=True)
        specs.append(spec)
    numbers = [s.series_number for s in specs]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"duplicate series numbers: {numbers}")

    exam_dir = Path(root) / dicom_id
    if exam_dir.exists() and any(exam_dir.iterdir()):
        raise FileExistsError(f"exam folder is not empty: {exam_dir}")

    exam_hash = _digest(seed, dicom_id, "exam").hex()[:6].upper()
    study_day = _dt.date(2022, 1, 1) + _dt.timedelta(days=int(exam_hash, 16) % 700)
    ex = _Exam(
        seed=seed, dicom_id=dicom_id, exam_hash=exam_hash,
        study_uid=_uid(seed, dicom_id, "study"), for_uid=_uid(seed, dicom_id, "frame-of-reference"),
        plan=_PhiPlan(exam_hash, seed, dicom_id) if plant_phi else None,
        study_date=study_day.strftime("%Y%m%d"),
    )
    writers = [_SeriesWriter(ex, spec, phantom) for spec in specs]
    scouts = [w for w in writers if w.spec.kind == "scout"]
    if scouts:
        ex.scout_ref = (scouts[0].sop_class, scouts[0].sop_uids[1])
        ex.scout_series_uid = scouts[0].series_uid

    rel = _relative_paths(ex, writers, shuffle_names, nested)
    jobs = [(w, inst) for w in writers for inst in w.file_numbers]
    if shuffle_names:
        order = _rng(seed, dicom_id, "write-order").permutation(len(jobs))
        jobs = [jobs[i] for i in order]
    exam_dir.mkdir(parents=True, exist_ok=True)
    files: dict[int, dict[int, Path]] = {int(w.spec.series_number or 0): {} for w in writers}
    for w, inst in jobs:
        sn = int(w.spec.series_number or 0)
        path = exam_dir / rel[(sn, inst)]
        w.write(inst, path)
        files[sn][inst] = path

    truths = [w.truth(files[int(w.spec.series_number or 0)]) for w in writers]
    truth = ExamTruth(
        dicom_id=dicom_id, path=exam_dir, seed=seed, study_uid=ex.study_uid,
        frame_of_reference_uid=ex.for_uid, phantom=phantom, series=truths,
        planted=list(ex.plan.planted) if ex.plan else [],
        skipped_expectations=_expected_skips(truths),
    )
    logger.info("wrote exam %s: %d series, %d files in %.2f s", dicom_id, len(truths),
                len(truth.files), time.perf_counter() - t0)
    return truth


# --------------------------------------------------------------------------------------------
# sample dataset


def _sample_exam(index: int, size: Literal["small", "full"]) -> tuple[list[SeriesSpec], dict[str, Any]]:
    """Series and layout options of sample exam ``index`` (0-based); the variants cycle."""
    full = size == "full"
    matrix: dict[str, Any] = {"rows": 512, "cols": 512, "pixel_spacing": (0.45, 0.45)} if full else {}
    thin: dict[str, Any] = dict(matrix, n_slices=240, slice_step=0.625) if full else {}
    thick: dict[str, Any] = dict(matrix, n_slices=30 if full else 24, slice_step=5.0)
    coronal: dict[str, Any] = dict(matrix, n_slices=60, slice_step=2.0) if full else {}
    scout_matrix: dict[str, Any] = {"rows": 512, "cols": 512, "pixel_spacing": (0.5, 0.5)} if full else {}
    scout = SeriesSpec(kind="scout", series_number=1, **scout_matrix)
    variant = index % 5
    if variant == 0:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, **thin),
            SeriesSpec(kind="coronal", series_number=3, **coronal),
            SeriesSpec(kind="summary", series_number=999),
        ], {}
    if variant == 1:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, order="descending", unsigned=True,
                       padding=True, **thin),
            SeriesSpec(kind="summary", series_number=999, n_slices=1),
        ], {"shuffle_names": True}
    if variant == 2:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, tilt_deg=15.0, padding=True, **thin),
            SeriesSpec(kind="axial", series_number=3, tilt_deg=-12.0, transfer_syntax=RLELossless,
                       convolution_kernel="H60s", **thick),
            SeriesSpec(kind="summary", series_number=999),
        ], {"nested": True}
    if variant == 3:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, per_slice_rescale=True, order="descending",
                       **thin),
            SeriesSpec(kind="axial", series_number=4, unsigned=True, per_slice_rescale=True,
                       transfer_syntax=JPEG2000Lossless, **thick),
            SeriesSpec(kind="summary", series_number=999, n_slices=1),
        ], {"nested": True, "shuffle_names": True}
    return [
        scout,
        SeriesSpec(kind="axial", series_number=2, tilt_deg=-10.0, order="descending",
                   per_slice_rescale=True, padding=True, enhanced=True, **thin),
        SeriesSpec(kind="coronal", series_number=3, transfer_syntax=RLELossless, enhanced=True,
                   **coronal),
        SeriesSpec(kind="summary", series_number=999, n_slices=1),
    ], {"nested": True}


def write_sample_dataset(
    out_dir: Path,
    n_exams: int = 3,
    *,
    seed: int = 0,
    size: Literal["small", "full"] = "small",
    enhanced: bool = False,
) -> list[ExamTruth]:
    """Write a varied demo input root of ``n_exams`` exams named ``exam_001``, ``exam_002``, ...

    The variants cycle: (1) plain ascending axial with a coronal reformat; (2) descending,
    unsigned, padded, shuffled extensionless names; (3) tilted +15 and -12 degrees, one series
    RLE, nested folders; (4) per-slice rescale, unsigned JPEG 2000, nested and shuffled;
    (5) Enhanced CT: a descending -10 degree tilted axial series with per-frame rescale and
    padding, and an RLE coronal reformat, each one multi-frame file, nested. Every exam
    also has a scout and a summary capture. ``size="full"`` uses 512 x 512 matrices at
    0.45 mm, 240 slices of 0.625 mm for the thin series and 30 of 5 mm for the thick ones.
    ``enhanced=True`` writes the axial and coronal series of every exam as Enhanced CT.

    Returns
    -------
    list of ExamTruth
    """
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', got {size!r}")
    out_dir = Path(out_dir)
    truths = []
    for index in range(n_exams):
        specs, layout = _sample_exam(index, size)
        truths.append(write_exam(out_dir, f"exam_{index + 1:03d}", specs, seed=seed,
                                 enhanced=enhanced, **layout))
    return truths
