"""Enhanced CT (PS3.3 A.38) and Legacy Converted Enhanced CT (A.70): the multi-frame header.

The frames are the images of the classic twin (same pixels, positions and rescale); the
functional group items (PS3.3 C.7.6.16) are built here, and :func:`enhanced_dataset` assembles
the header with its shared and per-frame items; see the package docstring for what goes where.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from orbitct_app.synthetic.geometry import slice_orientation
from orbitct_app.synthetic.headers import base_dataset
from orbitct_app.synthetic.helpers import fmt, seeded_uid, sequence_item
from orbitct_app.synthetic.specs import SeriesSpec

if TYPE_CHECKING:
    from orbitct_app.synthetic.series import SeriesWriter


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return sequence_item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _enhanced_image_type(spec: SeriesSpec) -> tuple[str, str, str, str]:
    """ImageType/FrameType of an enhanced series: the four Enhanced CT values (C.8.15.2.1.1)."""
    first = (spec.image_type or ("ORIGINAL",))[0]
    original = first != "DERIVED"
    return ("ORIGINAL" if original else "DERIVED", "PRIMARY", "VOLUME",
            "NONE" if original else "RESAMPLED")


def _pixel_value_transformation(slope: float, intercept: float) -> Dataset:
    return sequence_item(RescaleIntercept=fmt(intercept, 4), RescaleSlope=fmt(slope, 4),
                 RescaleType="HU")


def _ct_acquisition_groups(spec: SeriesSpec) -> dict[str, list[Dataset]]:
    """The CT acquisition functional groups required for ORIGINAL frames (A.38.1.4), shared."""
    dr, dc = spec.pixel_spacing or (1.0, 1.0)
    return {
        "CTAcquisitionTypeSequence": [sequence_item(AcquisitionType="SPIRAL", ConstantVolumeFlag="NO",
                                            FluoroscopyFlag="NO")],
        "CTAcquisitionDetailsSequence": [sequence_item(
            RotationDirection="CW", RevolutionTime=1.0, SingleCollimationWidth=0.6,
            TotalCollimationWidth=38.4, TableHeight="145",
            GantryDetectorTilt=fmt(spec.tilt_deg, 4), DataCollectionDiameter="500")],
        "CTTableDynamicsSequence": [sequence_item(TableSpeed=46.08, TableFeedPerRotation=46.08,
                                          SpiralPitchFactor=1.2)],
        "CTGeometrySequence": [sequence_item(DistanceSourceToDetector="1085.6",
                                     DistanceSourceToDataCollectionCenter=595.0)],
        "CTReconstructionSequence": [sequence_item(
            ReconstructionAlgorithm="FILTER_BACK_PROJ",
            ConvolutionKernel=spec.convolution_kernel or "H30s", ConvolutionKernelGroup="BRAIN",
            ReconstructionDiameter=fmt(float((spec.cols or 0) * dc), 3),
            ReconstructionPixelSpacing=[float(dr), float(dc)], ReconstructionAngle=360.0,
            ImageFilter="NONE")],
        "CTExposureSequence": [sequence_item(
            ExposureTimeInms=1000.0, XRayTubeCurrentInmA=300.0, ExposureInmAs=300.0,
            ExposureModulationType="NONE", CTDIvol=55.0,
            CTDIPhantomTypeCodeSequence=[_code("113691", "DCM", "IEC Head Dosimetry Phantom")])],
        "CTXRayDetailsSequence": [sequence_item(KVP="120", FocalSpots="0.7", FilterType="WEDGE",
                                        FilterMaterial="ALUMINUM")],
    }


def enhanced_dataset(w: SeriesWriter) -> tuple[Dataset, Dataset, list[Dataset]]:
    """The Enhanced (or Legacy Converted Enhanced) CT header of the series ``w`` writes,
    without pixels, with its shared and per-frame group items."""
    spec, ex = w.spec, w.ex
    sn = spec.series_number
    legacy = spec.legacy_converted
    image_type = tuple(spec.image_type or ()) if legacy else _enhanced_image_type(spec)
    original = image_type[0] == "ORIGINAL"
    row_s, col_s = slice_orientation(spec)
    row, col = w.directions()
    rows, cols = int(spec.rows or 0), int(spec.cols or 0)
    dr, dc = spec.pixel_spacing or (1.0, 1.0)

    ds = base_dataset(ex, spec, w.series_uid, w.sop_class)  # identifiers planted here
    if ex.plan is None:  # not in the Enhanced CT IOD (AcquisitionDateTime is); planted stay
        del ds.AcquisitionDate, ds.AcquisitionTime
    ds.ImageType = list(image_type)
    ds.SOPInstanceUID = w.sop_uids[1]
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
    ds.BitsStored = w.bits_stored
    ds.HighBit = w.bits_stored - 1
    ds.PixelRepresentation = 0 if spec.unsigned else 1
    if w.outside is not None:
        ds.PixelPaddingValue = spec.padding_value
    # Multi-frame Functional Groups (common part)
    ds.NumberOfFrames = len(w.instances)
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
        ds.AcquisitionDuration = round(0.1 * len(w.instances), 3)
    ds.ContentQualification = "PRODUCT"
    ds.BurnedInAnnotation = "NO" if spec.burned_text is None else "YES"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # Acquisition Context: type 2, empty
    ds.AcquisitionContextSequence = []
    # Multi-frame Dimension: stack and in-stack position, both in the Frame Content group
    dim_uid = seeded_uid(ex.seed, ex.dicom_id, "dimension-organization", sn)
    ds.DimensionOrganizationSequence = [sequence_item(DimensionOrganizationUID=dim_uid)]
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = [
        sequence_item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        sequence_item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111,
              DimensionDescriptionLabel="In-Stack Position Number"),
    ]

    shared = Dataset()
    shared.PixelMeasuresSequence = [sequence_item(
        PixelSpacing=[fmt(v, 6) for v in (dr, dc)],
        SliceThickness=fmt(float(spec.slice_thickness or 0.0), 4))]
    shared.PlaneOrientationSequence = [sequence_item(ImageOrientationPatient=[*row_s, *col_s])]
    if not spec.per_slice_rescale:
        slope, intercept = w.rescale[w.instances[0]]
        shared.PixelValueTransformationSequence = [
            _pixel_value_transformation(slope, intercept)]
    if legacy:  # what has no functional group of its own, as a converter moves it
        shared.UnassignedSharedConvertedAttributesSequence = [sequence_item(
            KVP="120", DataCollectionDiameter="500",
            ReconstructionDiameter=fmt(float(cols * dc), 3), GantryDetectorTilt=fmt(spec.tilt_deg, 4),
            TableHeight="145", ConvolutionKernel=spec.convolution_kernel or "H30s")]
    else:
        shared.CTImageFrameTypeSequence = [sequence_item(
            FrameType=list(image_type), PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME",
            VolumeBasedCalculationTechnique=ds.VolumeBasedCalculationTechnique)]
    shared.FrameAnatomySequence = [sequence_item(
        AnatomicRegionSequence=[_code("69536005", "SCT", "Head")], FrameLaterality="U")]
    shared.FrameVOILUTSequence = [sequence_item(WindowCenter="40", WindowWidth="80")]
    shared.IrradiationEventIdentificationSequence = [sequence_item(
        IrradiationEventUID=seeded_uid(ex.seed, ex.dicom_id, "irradiation-event"))]
    if ex.scout_ref is not None and ex.scout_series_uid is not None:
        ref_class, ref_uid = ex.scout_ref
        shared.ReferencedImageSequence = [sequence_item(
            ReferencedSOPClassUID=ref_class, ReferencedSOPInstanceUID=ref_uid,
            PurposeOfReferenceCodeSequence=[_code("121311", "DCM", "Localizer")])]
        ds.ReferencedImageEvidenceSequence = [sequence_item(
            StudyInstanceUID=ex.study_uid,
            ReferencedSeriesSequence=[sequence_item(
                SeriesInstanceUID=ex.scout_series_uid,
                ReferencedSOPSequence=[sequence_item(ReferencedSOPClassUID=ref_class,
                                             ReferencedSOPInstanceUID=ref_uid)])])]
    if original and not legacy:
        for keyword, value in _ct_acquisition_groups(spec).items():
            setattr(shared, keyword, value)

    frames = []
    for instance in w.instances:  # frame order = InstanceNumber order of the classic twin
        sl = w.slices[instance]
        ipp = np.array([float(v) for v in sl.ipp])
        centre = ipp + (cols - 1) / 2 * dc * row + (rows - 1) / 2 * dr * col
        item = Dataset()
        item.PlanePositionSequence = [sequence_item(ImagePositionPatient=list(sl.ipp))]
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
            slope, intercept = w.rescale[instance]
            item.PixelValueTransformationSequence = [
                _pixel_value_transformation(slope, intercept)]
        if legacy:
            item.ConversionSourceAttributesSequence = [sequence_item(
                ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=w.classic_sop_uids[instance])]
            taken = start + _dt.timedelta(seconds=0.1 * sl.k)
            item.UnassignedPerFrameConvertedAttributesSequence = [sequence_item(
                AcquisitionTime=taken.strftime("%H%M%S.%f"), ContentTime=taken.strftime("%H%M%S"),
                InstanceNumber=instance, SliceLocation=fmt(sl.slice_location, 4))]
        elif original:
            c = [round(float(v), 4) for v in centre]
            item.CTPositionSequence = [sequence_item(TablePosition=c[2],
                                             DataCollectionCenterPatient=c,
                                             ReconstructionTargetCenterPatient=c)]
        frames.append(item)
    return ds, shared, frames
