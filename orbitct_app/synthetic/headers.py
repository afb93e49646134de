"""The attributes every file of an exam carries, and the writing of one file.

:class:`ExamIdentity` holds what the files of one exam share (seed, UIDs, date, planted identifiers);
:func:`base_dataset` and :func:`ct_attributes` make the header of a classic or enhanced file;
:func:`save_part10` adds the file meta and the pixels in the series' transfer syntax (native,
deflated, or compressed: RLE or JPEG 2000) and writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from orbitct_app import __version__
from orbitct_app.synthetic.helpers import fmt, sequence_item
from orbitct_app.synthetic.planted import PhiPlan
from orbitct_app.synthetic.specs import COMPRESSED, MANUFACTURER, SeriesSpec


@dataclass
class ExamIdentity:
    seed: int
    dicom_id: str
    exam_hash: str
    study_uid: str
    for_uid: str
    plan: PhiPlan | None
    study_date: str
    scout_ref: tuple[str, str] | None = None
    scout_series_uid: str | None = None


def base_dataset(ex: ExamIdentity, spec: SeriesSpec, series_uid: str, sop_class: str) -> Dataset:
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
            ds.ContrastBolusAgentSequence = [sequence_item(
                CodeValue="C-B0322", CodingSchemeDesignator="SRT", CodeMeaning=value, ContrastBolusAgentNumber=1)]
        else:
            setattr(ds, keyword, value)
    if ex.plan is not None:
        ex.plan.apply(ds)
    return ds


def ct_attributes(ds: Dataset, spec: SeriesSpec, ex: ExamIdentity) -> None:
    ds.KVP = "120"
    ds.SliceThickness = fmt(float(spec.slice_thickness or 0.0), 4)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = fmt(float((spec.cols or 0) * (spec.pixel_spacing or (1, 1))[1]), 3)
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = fmt(spec.tilt_deg, 4)
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
    ds.PixelSpacing = [fmt(v, 6) for v in (spec.pixel_spacing or (1.0, 1.0))]
    ds.BitsAllocated = 16
    if ex.scout_ref is not None and spec.kind != "scout":
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ex.scout_ref
        ds.ReferencedImageSequence = [ref]


def save_part10(ds: Dataset, path: Path, pixels: np.ndarray, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    pixels = np.ascontiguousarray(pixels)
    if transfer_syntax in COMPRESSED:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.add_new(0x7FE00010, "OB" if pixels.itemsize == 1 else "OW", pixels.tobytes())
        meta.TransferSyntaxUID = UID(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
