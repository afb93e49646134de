"""Find exams and their DICOM series by reading headers only (pixel data is never decoded here).

Each first-level folder of the input root is one exam; its folder name is the ``dicom_id``. Files
are found at any depth and recognised as DICOM by their content, never by their name: PACS
exports often have no extension. Everything that is not a usable DICOM file is recorded as a
:class:`SkippedFile` with a one-line reason.

An ordinary file's header facts are read from its first bytes (:func:`fast_slice_info`, with
:mod:`orbitct_app.dicomio.header`); every other file, and every file with a problem, is read by pydicom
(:func:`read_header`), which gives the same facts and decides the reasons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import mmap
import os
import struct
import warnings
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, overload

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from orbitct_app.dicomio.header import FAST_HEAD_BYTES, FastHeader, keyword_tags
from orbitct_app.dicomio.parse import (
    SQ,
    Unsupported,
    parse_part10,
    uid_text,
)
from orbitct_app.dicomio.pixels import PIXEL_HEADER_BYTES, Incomplete, pixel_data_end, pixel_element
from orbitct_app.dicomio.structure import MAX_HEADER_BYTES, Damaged, Layout, Structure, explicit_prefix, file_structure
from orbitct_app.errors import NotDicomError, SkipKind
from orbitct_app.paths import Unusable, iter_exam_files, open_regular

logger = logging.getLogger(__name__)

CONTRAST_ATTRIBUTES = (
    "ContrastBolusAgent",
    "ContrastBolusRoute",
    "ContrastBolusVolume",
    "ContrastBolusStartTime",
    "ContrastBolusAgentSequence",
)
"""The attributes whose value is evidence of contrast media: discovery reads them from each
series' first file (:func:`contrast_facts`), extract decides on them (``extract/contrast.py``)."""

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""SOP class of DICOMDIR and other media index files (they carry patient names)."""

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)

_NO_PREAMBLE_GROUPS = (0x0002, 0x0008)


DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
"""File name endings that promise DICOM: such a file that is not DICOM is a problem."""


@dataclasses.dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file under an exam folder that is not processed, why, and what kind of skip it is."""

    path: Path
    reason: str
    kind: SkipKind = SkipKind.BROKEN

    @property
    def is_problem(self) -> bool:
        """True for files that should have been usable DICOM (counted as failures)."""
        return self.kind is SkipKind.BROKEN


@dataclasses.dataclass(frozen=True, slots=True)
class SliceInfo:
    """Header facts of one DICOM file (one image, or one multi-frame object)."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    series_number: int | None
    series_description: str
    modality: str
    image_type: tuple[str, ...]
    instance_number: int | None
    acquisition_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    n_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    transfer_syntax: str
    rescale_slope: float
    rescale_intercept: float
    padding_value: int | None
    padding_range_limit: int | None
    burned_in_annotation: str
    has_pixel_data: bool
    patient_identity_removed: str = ""
    """PatientIdentityRemoved (YES once a de-identifier has been over the file)."""
    deidentification_method: tuple[str, ...] = ()
    """DeidentificationMethod values: who de-identified the file before, and how."""
    pixel_offset: int | None = None
    """File offset of uncompressed pixel data (None when encapsulated, deflated or absent)."""
    frames: tuple[FrameGeometry, ...] = ()
    """Per-frame geometry of a multi-frame (Enhanced) object, from its functional groups."""
    frame_index: int | None = None
    """For one frame of a multi-frame object (see ``volume.expand_frames``): its 0-based index."""
    overlay_groups: tuple[int, ...] = ()
    """Groups (0x6000-0x601E) of the overlay planes whose data (60xx,3000) the file holds."""
    layout: Layout | None = None
    """Where the file's data set ends and its pixel data element lies (bytes after the data set
    are trailing data: never copied)."""
    convolution_kernel: str = ""
    """ConvolutionKernel, its values joined by a backslash (for an Enhanced object, from its CT
    Reconstruction functional group): two reconstructions under one SeriesInstanceUID, split
    into parts, may differ in it."""

    def at_frame(self, frame: FrameGeometry, **changes: Any) -> SliceInfo:
        """This object with one frame's geometry and rescale (and any other ``changes``)."""
        return dataclasses.replace(
            self,
            position=frame.position,
            orientation=frame.orientation,
            pixel_spacing=frame.pixel_spacing,
            rescale_slope=frame.rescale_slope,
            rescale_intercept=frame.rescale_intercept,
            **changes,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class FrameGeometry:
    """Where one frame of a multi-frame object lies and how its values map to HU."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    rescale_slope: float
    rescale_intercept: float


@dataclasses.dataclass(frozen=True)
class SeriesInfo:
    """The files of one series in an exam, with the facts every later step decides on."""

    dicom_id: str
    key: str
    """Grouping key: the SeriesInstanceUID, or a stable fallback when the UID is empty."""
    series_uid: str
    """SeriesInstanceUID as found in the files ('' when absent)."""
    slices: tuple[SliceInfo, ...]
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Technical attributes of the first file, for sidecars (those :func:`scan_exam` is asked for)."""
    contrast_facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The Contrast/Bolus attributes of the first file (see :func:`contrast_facts`): only for
    deciding whether the series is contrast-enhanced, never written anywhere."""

    @property
    def first(self) -> SliceInfo:
        return self.slices[0]

    @property
    def series_number(self) -> int | None:
        return self.first.series_number

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def sop_class_uid(self) -> str:
        return self.first.sop_class_uid

    @property
    def n_files(self) -> int:
        return len(self.slices)

    @property
    def n_instances(self) -> int:
        """Images in the series: frames of multi-frame objects count one each."""
        return sum(s.n_frames for s in self.slices)

    @property
    def burned_in_annotation(self) -> bool:
        return any(s.burned_in_annotation == "YES" for s in self.slices)

    @property
    def is_secondary_capture(self) -> bool:
        return self.sop_class_uid in SECONDARY_CAPTURE_CLASSES

    @property
    def has_pixel_data(self) -> bool:
        return all(s.has_pixel_data for s in self.slices)


@dataclasses.dataclass(frozen=True)
class Exam:
    """One exam folder: its series and the files that were skipped."""

    dicom_id: str
    path: Path
    series: tuple[SeriesInfo, ...]
    skipped: tuple[SkippedFile, ...]

    @property
    def n_files(self) -> int:
        return sum(s.n_files for s in self.series)


# --- exams -------------------------------------------------------------------------------------


def scan_exam(exam_dir: Path, attribute_keywords: Sequence[str] = ()) -> Exam:
    """Read the header of every file of one exam and group the DICOM files into series.

    Non-DICOM and unreadable files become :class:`SkippedFile` records; nothing raises for
    bad files. ``attribute_keywords``: the attributes of each series' first file to keep in
    :attr:`SeriesInfo.attributes` (see :func:`sidecar_attributes`).
    """
    dicom_id = exam_dir.name
    slices: list[SliceInfo] = []
    skipped: list[SkippedFile] = []
    attributes: dict[str, dict[str, Any]] = {}
    contrast: dict[str, dict[str, Any]] = {}
    for path in iter_exam_files(exam_dir):
        if isinstance(path, Unusable):
            rel = path.path.relative_to(exam_dir)
            kind = SkipKind.BROKEN if path.problem else SkipKind.NOT_DICOM
            skipped.append(SkippedFile(rel, path.reason, kind))
            logger.info("%s: skipped %s: %s", dicom_id, rel, path.reason)
            continue
        try:
            info, ds = _read_file(path)
            key = series_key(info)
            if ds is None and key not in attributes:  # the sidecar needs the first file's Dataset
                ds = read_header(path)[0]
        except NotDicomError as err:
            rel = path.relative_to(exam_dir)
            skipped.append(SkippedFile(rel, str(err), err.kind))
            logger.info("%s: skipped %s: %s", dicom_id, rel, err)
            continue
        slices.append(info)
        if key not in attributes:
            assert ds is not None  # read above for the first file of each series
            attributes[key] = sidecar_attributes(ds, attribute_keywords)
            contrast[key] = contrast_facts(ds)
    series = []
    for group in group_series(dicom_id, slices, attributes, contrast):
        images = tuple(s for s in group.slices if s.has_pixel_data)
        if not images or len(images) == group.n_files:
            series.append(group)
            continue
        series.append(dataclasses.replace(group, slices=images))
        for info in group.slices:
            if not info.has_pixel_data:
                rel = info.path.relative_to(exam_dir)
                number = group.series_number if group.series_number is not None else "?"
                reason = (f"no pixel data: a non-image object ({_sop_class_name(info.sop_class_uid)}) "
                          f"under the SeriesInstanceUID of image series {number}; dropped on its own")
                skipped.append(SkippedFile(rel, reason, SkipKind.NON_IMAGE))
                logger.info("%s: %s: %s", dicom_id, rel, reason)
    if not series and not skipped:
        logger.warning("%s: exam folder holds no files", dicom_id)
    elif not series:
        logger.warning("%s: exam folder holds no DICOM image files", dicom_id)
    return Exam(dicom_id, exam_dir, tuple(series), tuple(skipped))


def _sop_class_name(uid: str) -> str:
    """The name of a SOP class as the standard gives it (the UID itself when unknown)."""
    name = UID(uid).name if uid else ""
    return name if name and name != uid else (uid or "no SOP class")


def group_series(
    dicom_id: str,
    slices: Iterable[SliceInfo],
    attributes: dict[str, dict[str, Any]] | None = None,
    contrast: dict[str, dict[str, Any]] | None = None,
) -> list[SeriesInfo]:
    """Group files by SeriesInstanceUID; files without one by a stable fallback key.

    ``attributes`` and ``contrast`` hold each series' sidecar attributes and contrast facts by key.

    The fallback is SeriesNumber, modality, matrix and rounded orientation, so two series that
    lack UIDs are never merged silently; every fallback grouping is logged.
    """
    groups: dict[str, list[SliceInfo]] = defaultdict(list)
    for info in slices:
        groups[series_key(info)].append(info)
    result = []
    for key, members in groups.items():
        members.sort(key=lambda s: (s.instance_number is None, s.instance_number or 0, str(s.path)))
        if not members[0].series_uid:
            logger.warning(
                "%s: %d file(s) have no SeriesInstanceUID; grouped as %s "
                "(SeriesNumber, modality, matrix and orientation)",
                dicom_id,
                len(members),
                key,
            )
        _warn_if_mixed(dicom_id, key, members)
        result.append(
            SeriesInfo(
                dicom_id=dicom_id,
                key=key,
                series_uid=members[0].series_uid,
                slices=tuple(members),
                attributes=(attributes or {}).get(key, {}),
                contrast_facts=(contrast or {}).get(key, {}),
            )
        )
    result.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.key))
    return result


def _warn_if_mixed(dicom_id: str, key: str, members: Sequence[SliceInfo]) -> None:
    """Log when files under one SeriesInstanceUID disagree on what should be series-wide."""
    numbers = sorted({m.series_number for m in members if m.series_number is not None})
    modalities = sorted({m.modality for m in members})
    if len(numbers) > 1 or len(modalities) > 1:
        # the key may be an original SeriesInstanceUID: never logged (it can identify the exam)
        logger.warning(
            "%s: %d file(s) share one SeriesInstanceUID but differ in SeriesNumber %s / "
            "Modality %s; the extract stage splits it by geometry",
            dicom_id,
            len(members),
            numbers,
            modalities,
        )


def series_key(info: SliceInfo) -> str:
    """The grouping key of a file: its SeriesInstanceUID, or a fallback built from its header."""
    if info.series_uid:
        return info.series_uid
    orientation = (
        ",".join(f"{v:.2f}" for v in info.orientation) if info.orientation is not None else "none"
    )
    facts = f"{info.series_number}|{info.modality}|{info.rows}x{info.columns}|{orientation}"
    digest = hashlib.sha1(facts.encode()).hexdigest()[:10]
    return f"no-uid-S{info.series_number if info.series_number is not None else 'x'}-{digest}"


# --- one file ----------------------------------------------------------------------------------


def read_header(path: Path) -> tuple[Dataset, bool, int | None, Layout]:
    """Read a file's DICOM header without its pixel data.

    The whole file's structure is checked first (:func:`file_structure`: every
    length within the file, every sequence closed, nesting bounded, a deflated data set
    inflated within its cap), so a damaged file is reported as damaged instead of being read as
    far as its lengths happen to lead, and nothing bigger than :data:`MAX_HEADER_BYTES` is read.
    Returns the data set, whether a pixel data element is there, the file offset of its value
    when it is uncompressed (None otherwise) and the file's :class:`~orbitct_app.dicomio.structure.Layout`.

    Raises
    ------
    NotDicomError
        With a one-line reason when the file is not DICOM, is a DICOMDIR, is damaged or
        truncated, is a link or special file, has no SOP UIDs, is an image without pixel data,
        or is encoded in another byte order than its transfer syntax says.
    """
    with open_regular(path) as fp:
        try:
            size = os.fstat(fp.fileno()).st_size
            if size == 0:
                raise NotDicomError("empty file (0 bytes)")
            head = fp.read(132)
            has_preamble = len(head) == 132 and head[128:132] == b"DICM"
            if not has_preamble and not _looks_like_raw_dataset(head):
                if path.suffix.lower() in DICOM_SUFFIXES:
                    raise NotDicomError(f"named like DICOM ({path.suffix}) but not DICOM")
                raise NotDicomError(
                    "not DICOM (no DICM preamble and no DICOM data set at start)",
                    kind=SkipKind.NOT_DICOM,
                )
            structure = _structure(fp, path)
            _check_structure(structure)
            fp.seek(0)
            try:
                source: BinaryIO = fp
                if structure.inflated is not None:  # its header, inflated once (within the cap)
                    extent = structure.extent
                    prefix = explicit_prefix(fp.read(structure.meta_end))
                    end = extent.pixel_start if extent.pixel_start is not None else extent.end
                    source = io.BytesIO(prefix + structure.inflated[:end])
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ds = pydicom.dcmread(source, stop_before_pixels=True, force=not has_preamble)
                if structure.inflated is not None:
                    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
                if caught:  # their text can quote header values: count them, never log them
                    logger.debug("%s: pydicom warned %d time(s) reading the header", path.name, len(caught))
            except (InvalidDicomError, EOFError, ValueError, struct.error, OverflowError, RecursionError) as err:
                raise NotDicomError(f"unreadable DICOM header ({type(err).__name__})") from err
            except (zlib.error, Unsupported) as err:
                raise NotDicomError("corrupt deflated data set") from err
        except OSError as err:
            raise NotDicomError(f"cannot read file ({err.strerror or type(err).__name__})") from err
    if _is_media_index(path, ds):
        raise NotDicomError(
            "DICOMDIR / media index file (not an image; may name the patient)",
            kind=SkipKind.MEDIA_INDEX,
        )
    if "SOPInstanceUID" not in ds and "SOPClassUID" not in ds:
        raise NotDicomError("no SOP Class UID and no SOP Instance UID: not a DICOM object (a data set "
                            "without the identity of an instance)")
    has_pixels = structure.extent.pixel_data
    if not has_pixels and _is_image_object(ds):
        # a file cut at an element boundary looks complete: an image without pixels is not
        raise NotDicomError(f"no pixel data: an image object ({_sop_class_name(_sop_class(ds))}) whose data "
                            "set ends without its pixel data (truncated at an element boundary, or written without it)")
    deflated = structure.syntax == DeflatedExplicitVRLittleEndian
    return ds, has_pixels, None if deflated else structure.extent.pixel_value, structure.layout


def _check_structure(structure: Structure) -> None:
    """Refuse what the walk found readable but the app cannot honestly handle.

    Raises
    ------
    NotDicomError
        A data set in the other byte order than its transfer syntax's (pydicom reads it as
        garbage and cannot write it in the other order), a data set that is not explicit VR
        little endian under a transfer syntax pydicom does not know, or a data set holding more
        than :data:`MAX_HEADER_BYTES` besides its pixel data.
    """
    if not structure.byte_order_matches or (not structure.known_syntax and not structure.encoding_matches):
        raise NotDicomError(structure.mismatch)
    extent = structure.extent
    header = extent.end - structure.data_start
    if extent.pixel_start is not None and extent.pixel_end is not None:
        header -= extent.pixel_end - extent.pixel_start
    if header > MAX_HEADER_BYTES:
        raise NotDicomError(f"the data set holds {header >> 20} MiB besides its pixel data (at most "
                            f"{MAX_HEADER_BYTES >> 20} MiB are read into memory)")


def _sop_class(ds: Dataset) -> str:
    """The SOP class of a header: the data set's, else the file meta's."""
    meta_class = ds.file_meta.get("MediaStorageSOPClassUID", "") if ds.file_meta else ""
    return str(ds.get("SOPClassUID", "") or meta_class or "").strip("\0 ")


def _structure(fp: BinaryIO, path: Path) -> Structure:
    """The checked structure of an open file (read through a read-only memory map)."""
    with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            return file_structure(view)
        except Damaged as err:
            if path.name.upper() == "DICOMDIR" or MEDIA_STORAGE_DIRECTORY.encode() in bytes(view[:512]):
                raise NotDicomError(
                    "DICOMDIR / media index file (not an image; may name the patient)",
                    kind=SkipKind.MEDIA_INDEX,
                ) from None
            raise NotDicomError(str(err)) from None
        finally:
            view.release()


def _is_image_object(ds: Dataset) -> bool:
    """Whether a header is that of an image: it has a matrix, or an image storage SOP class."""
    if "Rows" in ds or "Columns" in ds:
        return True
    meta_class = ds.file_meta.get("MediaStorageSOPClassUID", "") if ds.file_meta else ""
    for uid in (str(ds.get("SOPClassUID", "") or ""), str(meta_class or "")):
        if uid and "Image Storage" in UID(uid).name:
            return True
    return False


def _is_media_index(path: Path, ds: Dataset) -> bool:
    sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "")) if ds.file_meta else ""
    return path.name.upper() == "DICOMDIR" or MEDIA_STORAGE_DIRECTORY in (sop_class, str(ds.get("SOPClassUID", "")))


def read_slice_info(path: Path) -> SliceInfo:
    """Read the header facts of one file (see :func:`read_header` for the errors)."""
    return _read_file(path)[0]


def _read_file(path: Path) -> tuple[SliceInfo, Dataset | None]:
    """The header facts of one file, and its Dataset when they were read with pydicom."""
    info = fast_slice_info(path)
    if info is not None:
        return info, None
    ds, has_pixels, pixel_offset, layout = read_header(path)
    return slice_info(path, ds, has_pixels, pixel_offset, layout), ds


# --- the fast path: the header's bytes, no Dataset ------------------------------------------------

_SLICE_KEYWORDS = (
    "SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
    "Modality", "ImageType", "InstanceNumber", "AcquisitionNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept", "PixelPaddingValue",
    "PixelPaddingRangeLimit", "BurnedInAnnotation", "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence", "PatientIdentityRemoved", "DeidentificationMethod",
    "ConvolutionKernel",
)
_KEYWORD_TAGS = keyword_tags(_SLICE_KEYWORDS)


def fast_slice_info(path: Path) -> SliceInfo | None:
    """The header facts of an ordinary file from its first bytes, without pydicom's reader.

    The result equals ``slice_info(path, *read_header(path))``. Returns None for every file this
    path does not handle (see :mod:`orbitct_app.dicomio.header`; also media index files, files
    without SOP UIDs, multi-frame objects with functional groups, headers longer than
    :data:`FAST_HEAD_BYTES`) and for every file with a problem: :func:`read_header` then reads
    it, and decides or reports it.
    """
    if path.name.upper() == "DICOMDIR":
        return None
    try:
        with open_regular(path) as fp:
            data = fp.read(FAST_HEAD_BYTES)
            parsed = parse_part10(data)
            if parsed.pixel_pos >= len(data):
                raise Unsupported("no pixel data in the first bytes")
            header = FastHeader(data, parsed, _KEYWORD_TAGS)
            if "SOPClassUID" not in header and "SOPInstanceUID" not in header:
                raise Unsupported("no SOP Class or SOP Instance UID")
            media = uid_text(parsed.meta.get(0x00020002))
            if MEDIA_STORAGE_DIRECTORY in (media, str(header.get("SOPClassUID", ""))):
                raise Unsupported("media index file")
            size = os.fstat(fp.fileno()).st_size
            head = data[parsed.pixel_pos : parsed.pixel_pos + PIXEL_HEADER_BYTES]
            if len(head) < PIXEL_HEADER_BYTES:  # the header runs past the first bytes
                head = os.pread(fp.fileno(), PIXEL_HEADER_BYTES, parsed.pixel_pos)
            element = pixel_element(head, parsed.pixel_pos, implicit=parsed.implicit, little=True)
            if element is None or not (parsed.implicit or element.vr in EXPLICIT_VR_LENGTH_32):
                raise Unsupported("a pixel data element of another form")  # the full check reads it
            pixel_end = pixel_data_end(fp.fileno(), element, size, little=True)
            if pixel_end != size:
                raise Unsupported("bytes after the pixel data")  # the full check decides about them
        pixel_offset = None if element.undefined else element.value
        length = pixel_end - (parsed.pixel_pos if pixel_offset is None else pixel_offset)
        layout = Layout(size, parsed.pixel_pos, pixel_end, pixel_length=length,
                        encapsulated=pixel_offset is None, data_start=parsed.data_start,
                        implicit=parsed.implicit)
        return slice_info(path, header, True, pixel_offset, layout)  # type: ignore[arg-type]
    except (Unsupported, Incomplete, NotDicomError, OSError, struct.error, ValueError, IndexError,
            RecursionError) as err:
        logger.debug("%s: header read by pydicom (%s)", path.name, type(err).__name__)
        return None


# --- header facts ---------------------------------------------------------------------------------


def slice_info(
    path: Path, ds: Dataset, has_pixels: bool, pixel_offset: int | None = None,
    layout: Layout | None = None,
) -> SliceInfo:
    """The :class:`SliceInfo` of a header already read.

    Raises
    ------
    NotDicomError
        For malformed values, and for pixel data its bytes cannot back (see
        :func:`pixel_data_problem`).
    """
    try:
        info = SliceInfo(
            path=path,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
            sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
            series_number=_int_or_none(ds.get("SeriesNumber")),
            series_description=str(ds.get("SeriesDescription", "") or ""),
            modality=str(ds.get("Modality", "") or ""),
            image_type=tuple(str(v).upper() for v in _as_list(ds.get("ImageType"))),
            instance_number=_int_or_none(ds.get("InstanceNumber")),
            acquisition_number=_int_or_none(ds.get("AcquisitionNumber")),
            position=_floats_or_none(ds.get("ImagePositionPatient"), 3),
            orientation=_floats_or_none(ds.get("ImageOrientationPatient"), 6),
            pixel_spacing=_floats_or_none(ds.get("PixelSpacing"), 2),
            rows=int(ds.get("Rows", 0) or 0),
            columns=int(ds.get("Columns", 0) or 0),
            n_frames=max(1, _int_or_none(ds.get("NumberOfFrames")) or 1),
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
            bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
            bits_stored=int(ds.get("BitsStored", 0) or 0),
            pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
            photometric=str(ds.get("PhotometricInterpretation", "") or ""),
            transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "") if ds.file_meta else ""),
            rescale_slope=_float_or(ds.get("RescaleSlope"), 1.0),
            rescale_intercept=_float_or(ds.get("RescaleIntercept"), 0.0),
            padding_value=_padding(ds, "PixelPaddingValue"),
            padding_range_limit=_padding(ds, "PixelPaddingRangeLimit"),
            burned_in_annotation=str(ds.get("BurnedInAnnotation", "") or "").upper(),
            has_pixel_data=has_pixels,
            patient_identity_removed=str(ds.get("PatientIdentityRemoved", "") or "").strip().upper(),
            deidentification_method=tuple(str(v).strip() for v in _as_list(ds.get("DeidentificationMethod"))),
            pixel_offset=pixel_offset,
            frames=frame_geometry(ds),
            overlay_groups=overlay_groups(ds.keys()),
            layout=layout,
            convolution_kernel=convolution_kernel(ds),
        )
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise NotDicomError(f"malformed header value ({type(err).__name__})") from err
    problem = pixel_data_problem(info)
    if problem:
        raise NotDicomError(problem)
    if info.frames:  # a multi-frame object stands at its first frame for series-level checks
        info = info.at_frame(info.frames[0])
    return info


def overlay_groups(tags: Iterable[int]) -> tuple[int, ...]:
    """The repeating groups 60xx (0x6000-0x601E, even) among ``tags`` that hold Overlay Data."""
    return tuple(sorted(
        tag >> 16 for tag in tags if tag & 0xFFFF == 0x3000 and 0x6000 <= tag >> 16 <= 0x601E and not tag >> 16 & 1
    ))


MAX_FRAME_BYTES = 256 << 20
"""A frame may declare at most this many bytes (256 MiB: a 11585 x 11585 16-bit image; CT frames
take 0.5-8 MB, the largest radiographs about 50 MB). Larger ones are refused before anything
allocates them."""
ENCAPSULATED_RATIO = 1000
"""Compressed pixel data must hold at least 1/1000 of what its header declares (plus 1 MiB of
slack): lossless codecs make CT 2-4 times smaller, lossy ones 10-50 times; only blank frames
get near 1000."""
_SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})


def pixel_data_problem(info: SliceInfo) -> str:
    """Why the pixel data of a file cannot back what its header declares ('' when it can).

    The declared size is Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames
    (two samples per pixel for uncompressed 4:2:2 colour). Native pixel data must hold at least
    that, and not more than twice that plus 1 MiB; encapsulated pixel data at least
    1/:data:`ENCAPSULATED_RATIO` of it; no frame may exceed :data:`MAX_FRAME_BYTES`; native
    and encapsulated pixel data must be what the transfer syntax says. So nothing ever
    allocates memory for an image its file cannot hold.
    """
    layout = info.layout
    if not info.has_pixel_data or layout is None or layout.pixel_length is None:
        return ""
    syntax = UID(info.transfer_syntax)
    if syntax.is_transfer_syntax:
        if layout.encapsulated and not syntax.is_compressed:
            return f"encapsulated (compressed) pixel data under the uncompressed transfer syntax {syntax.name}"
        if not layout.encapsulated and syntax.is_compressed:
            return f"uncompressed pixel data under the compressed transfer syntax {syntax.name}"
    rows, columns, bits = info.rows, info.columns, info.bits_allocated
    if rows <= 0 or columns <= 0 or bits <= 0:
        return ""
    samples = max(1, info.samples_per_pixel)
    matrix = f"{info.n_frames} frame(s) of {rows} x {columns}, {samples} sample(s) of {bits} bits"
    frame = (rows * columns * samples * bits + 7) // 8
    if frame > MAX_FRAME_BYTES:
        return (f"a frame of {frame >> 20} MiB declared ({matrix}): more than the {MAX_FRAME_BYTES >> 20} MiB "
                "a frame may have")
    per_pixel = 2 if samples == 3 and info.photometric in _SUBSAMPLED and not layout.encapsulated else samples
    declared = (rows * columns * info.n_frames * per_pixel * bits + 7) // 8
    length = layout.pixel_length
    if layout.encapsulated:
        if declared > ENCAPSULATED_RATIO * length + (1 << 20):
            return (f"compressed pixel data of {length} bytes cannot hold the {declared} bytes its header "
                    f"declares ({matrix}): more than {ENCAPSULATED_RATIO} times its size")
    elif length < declared:
        return f"pixel data shorter than its header declares: {length} bytes for {declared} ({matrix})"
    elif length > 2 * declared + (1 << 20):
        return f"pixel data of {length} bytes, more than twice the {declared} its header declares ({matrix})"
    return ""


def convolution_kernel(ds: Dataset) -> str:
    """ConvolutionKernel as text (values joined by a backslash), '' when absent (see
    :func:`_kernel_value` for where an Enhanced or Legacy Converted object keeps it)."""
    return "\\".join(str(v) for v in _as_list(_kernel_value(ds)))


def _kernel_value(ds: Dataset) -> Any:
    """ConvolutionKernel as read (None when absent).

    An Enhanced CT object keeps it in the CT Reconstruction functional group, a Legacy Converted
    one among its unassigned converted attributes (shared, else the first frame's): it is taken
    from there when the top level has none.
    """
    value = ds.get("ConvolutionKernel")
    if value is None or value == "":
        value = _functional_group_value(ds, _KERNEL_MACROS, "ConvolutionKernel")
    return value


def frame_geometry(ds: Dataset) -> tuple[FrameGeometry, ...]:
    """Per-frame geometry from the Shared and Per-frame Functional Groups (Enhanced objects).

    Each macro (Plane Position, Plane Orientation, Pixel Measures, Pixel Value Transformation)
    is taken from the frame's own item when present, else from the shared item, else from the
    top level. Returns () for objects without functional groups.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return ()
    shared_items = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_items[0] if shared_items else Dataset()

    def macro(item: Dataset, sequence: str, keyword: str) -> object:
        for source in (item, shared):
            items = source.get(sequence)
            if items and keyword in items[0]:
                return items[0].get(keyword)
        return ds.get(keyword)

    frames = []
    for item in per_frame:
        frames.append(
            FrameGeometry(
                position=_floats_or_none(macro(item, "PlanePositionSequence", "ImagePositionPatient"), 3),
                orientation=_floats_or_none(macro(item, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                pixel_spacing=_floats_or_none(macro(item, "PixelMeasuresSequence", "PixelSpacing"), 2),
                rescale_slope=_float_or(macro(item, "PixelValueTransformationSequence", "RescaleSlope"), 1.0),
                rescale_intercept=_float_or(macro(item, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
            )
        )
    return tuple(frames)


def _looks_like_raw_dataset(head: bytes) -> bool:
    """True when a file without preamble starts like a DICOM data set (little or big endian)."""
    if len(head) < 8:
        return False
    for order in ("<HH", ">HH"):
        group, element = struct.unpack(order, head[:4])
        if group in _NO_PREAMBLE_GROUPS and element < 0x0100:
            return True
    return False


def sidecar_attributes(ds: Dataset, keywords: Sequence[str]) -> dict[str, Any]:
    """The attributes ``keywords`` of a header (technical ones, for the NIfTI sidecar), as
    JSON-ready values; those absent or empty are left out. ConvolutionKernel is taken where
    :func:`convolution_kernel` takes it (also from an Enhanced object's functional groups).
    """
    result: dict[str, Any] = {}
    for keyword in keywords:
        value = _kernel_value(ds) if keyword == "ConvolutionKernel" else ds.get(keyword)
        if value is not None and value != "":
            result[keyword] = _json_value(value)
    return result


_KERNEL_MACROS = ("CTReconstructionSequence", "UnassignedSharedConvertedAttributesSequence")


def _functional_group_value(ds: Dataset, sequences: Sequence[str], keyword: str) -> Any:
    """``keyword`` from the first of ``sequences`` (functional group macros) that has it, in the
    shared functional groups, else in the first frame's."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(groups)
        for sequence in sequences if items else ():
            macro = items[0].get(sequence)
            if macro and keyword in macro[0]:
                return macro[0].get(keyword)
    return None


def contrast_facts(ds: Dataset) -> dict[str, Any]:
    """The Contrast/Bolus attributes present in a header (:data:`CONTRAST_ATTRIBUTES`):
    text values as read (a list when multi-valued), the number of items for a sequence."""
    facts: dict[str, Any] = {}
    for keyword in CONTRAST_ATTRIBUTES:
        value = ds.get(keyword)
        if value is None:
            continue
        if dictionary_VR(keyword) == SQ:
            facts[keyword] = len(value)
        else:
            facts[keyword] = _json_value(value)
    return facts


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, MultiValue)):
        return [_json_value(v) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


@overload
def _floats_or_none(value: Any, n: Literal[2]) -> tuple[float, float] | None: ...
@overload
def _floats_or_none(value: Any, n: Literal[3]) -> tuple[float, float, float] | None: ...
@overload
def _floats_or_none(value: Any, n: Literal[6]) -> tuple[float, float, float, float, float, float] | None: ...
def _floats_or_none(value: Any, n: int) -> tuple[float, ...] | None:
    values = _as_list(value)
    if len(values) != n:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


def _padding(ds: Dataset, keyword: str) -> int | None:
    """Pixel padding value as the stored (raw) integer, honouring the pixel representation."""
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return None
    value = int(elem)  # US or SS; pydicom may read it as US when the VR is ambiguous
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and value > 0x7FFF:
        value -= 0x10000
    return value
