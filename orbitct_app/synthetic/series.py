"""Writing one series: its images rendered from the phantom, as classic files or one multi-frame file.

:class:`SeriesWriter` holds a series' UIDs, geometry and rescale plan, renders the pixels of a CT
image, a scout or a summary capture on demand, and writes each classic file (one image each) or
the one Enhanced CT file (header from :mod:`orbitct_app.synthetic.enhanced`).
"""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    LegacyConvertedEnhancedCTImageStorage,
    SecondaryCaptureImageStorage,
)

from orbitct_app.synthetic.burned_text import add_overlay, burn_text
from orbitct_app.synthetic.enhanced import enhanced_dataset
from orbitct_app.synthetic.geometry import Slice, circle_outside, slice_orientation, slice_stack
from orbitct_app.synthetic.headers import ExamIdentity, base_dataset, ct_attributes, save_part10
from orbitct_app.synthetic.helpers import fmt, seeded_rng, seeded_uid, vec3
from orbitct_app.synthetic.phantom import Phantom
from orbitct_app.synthetic.specs import HU_MAX, HU_MIN, SeriesSpec, rescale_plan
from orbitct_app.synthetic.truth import PlantedValue, SeriesTruth


class SeriesWriter:
    """Renders and writes the images of one series on demand (any order)."""

    def __init__(self, ex: ExamIdentity, spec: SeriesSpec, phantom: Phantom) -> None:
        self.ex = ex
        self.spec = spec
        self.phantom = phantom
        self.enhanced = spec.enhanced
        n = int(spec.n_slices or 1)
        self.instances = list(range(1, n + 1))
        """Image numbers: InstanceNumber of the classic files, frame number of the enhanced."""
        self.classic_sop_uids = {i: seeded_uid(ex.seed, ex.dicom_id, "sop", spec.series_number, i)
                                 for i in self.instances}
        """The SOP Instance UIDs of the classic files (a legacy converted object's sources)."""
        if self.enhanced:
            # an enhanced series is another object than its classic twin: its own UIDs
            variant = "legacy" if spec.legacy_converted else "enhanced"
            self.series_uid = seeded_uid(ex.seed, ex.dicom_id, "series", spec.series_number, variant)
            self.sop_class = LegacyConvertedEnhancedCTImageStorage if spec.legacy_converted else EnhancedCTImageStorage
            self.file_numbers = [1]
            self.sop_uids = {1: seeded_uid(ex.seed, ex.dicom_id, "sop", spec.series_number, variant)}
        else:
            self.series_uid = seeded_uid(ex.seed, ex.dicom_id, "series", spec.series_number)
            self.sop_class = (SecondaryCaptureImageStorage if spec.kind == "summary"
                              else CTImageStorage)
            self.file_numbers = self.instances
            self.sop_uids = self.classic_sop_uids
        self.planted: list[PlantedValue] = []
        self.row: np.ndarray | None = None
        self.col: np.ndarray | None = None
        self.slices: dict[int, Slice] = {}
        self.rescale: dict[int, tuple[float, float]] = {}
        self.bits_stored = 8
        if spec.kind != "summary":
            self.row, self.col, slices = slice_stack(spec, phantom)
            self.slices = {s.instance: s for s in slices}
        if spec.kind in ("axial", "coronal"):
            plan, self.bits_stored = rescale_plan(spec)
            self.rescale = {s.instance: plan[s.k] for s in slices}
        elif spec.kind == "scout":
            self.bits_stored = 12
            self.rescale = {1: (1.0, 0.0)}
        self.outside: np.ndarray | None = None
        if spec.padding and spec.kind in ("axial", "coronal"):
            self.outside = circle_outside(int(spec.rows or 0), int(spec.cols or 0),
                                           spec.pixel_spacing or (1.0, 1.0))

    def truth(self, files: dict[int, Path]) -> SeriesTruth:
        spec = self.spec
        orientation = None
        if self.row is not None and self.col is not None:
            orientation = (vec3(self.row), vec3(self.col))
        return SeriesTruth(
            spec=spec,
            series_number=int(spec.series_number or 0),
            series_instance_uid=self.series_uid,
            sop_class_uid=self.sop_class,
            transfer_syntax_uid=spec.transfer_syntax,
            files=[files[i] for i in self.file_numbers],
            sop_instance_uids=[self.sop_uids[i] for i in self.file_numbers],
            positions_lps=[vec3(self.slices[i].ipp) for i in self.instances if i in self.slices],
            orientation=orientation,
            pixel_spacing=spec.pixel_spacing or (1.0, 1.0),
            rescale=[self.rescale[i] for i in self.instances if i in self.rescale],
            pixel_padding_value=spec.padding_value if self.outside is not None else None,
            n_frames=len(self.instances) if self.enhanced else None,
            planted=list(self.planted),
        )

    # -- pixels -------------------------------------------------------------------------------

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column direction (LPS) of the image plane."""
        if self.row is None or self.col is None:
            raise RuntimeError("a summary capture has no image plane")
        return self.row, self.col

    def _hu_image(self, sl: Slice) -> np.ndarray:
        spec = self.spec
        origin = np.array([float(v) for v in sl.ipp])
        row, col = self.directions()
        hu = self.phantom.render_plane(origin, row, col, int(spec.rows or 0),
                                       int(spec.cols or 0), spec.pixel_spacing or (1.0, 1.0))
        sigma = self.phantom.noise_sigma_hu
        if sigma > 0:
            rng = seeded_rng(self.ex.seed, self.ex.dicom_id, "noise", spec.series_number, sl.k)
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
            burn_text(out, text, high, low)
        return out

    def _scout_pixels(self) -> np.ndarray:
        spec = self.spec
        sl = self.slices[1]
        origin = np.array([float(v) for v in sl.ipp])
        row, col = self.directions()
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
                burn_text(img[:, :, channel], text, 255, 0)
        return img

    # -- datasets -----------------------------------------------------------------------------

    def _header(self) -> Dataset:
        """Every attribute shared by the images of the series (no per-instance values)."""
        spec, ex = self.spec, self.ex
        ds = base_dataset(ex, spec, self.series_uid, self.sop_class)
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
        ct_attributes(ds, spec, ex)
        if spec.burned_text is not None and not spec.burned_text.overlay:
            ds.BurnedInAnnotation = "YES"
        row_s, col_s = slice_orientation(spec)
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
            ds.RescaleIntercept = fmt(intercept, 4)
            ds.RescaleSlope = fmt(slope, 4)
            if spec.kind == "scout":
                pixels = self._scout_pixels()
            else:
                ds.SliceLocation = fmt(sl.slice_location, 4)
                pixels = self._ct_pixels(instance)
        text = spec.burned_text
        if text is not None and text.overlay and text.on(instance):
            add_overlay(ds, text, int(spec.rows or 0), int(spec.cols or 0))
        save_part10(ds, path, pixels, spec.transfer_syntax)

    def _write_enhanced(self, path: Path) -> None:
        """Render every frame and write the one Enhanced CT file of the series."""
        ds, shared, frames = enhanced_dataset(self)
        if self.ex.plan is not None:
            self.planted = self.ex.plan.apply_functional_groups(shared, frames)
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.PerFrameFunctionalGroupsSequence = frames
        pixels = np.stack([self._ct_pixels(instance) for instance in self.instances])
        save_part10(ds, path, pixels, self.spec.transfer_syntax)
