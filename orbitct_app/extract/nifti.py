"""Write int16 volumes as gzipped NIfTI-1 with identical qform and sform, plus JSON sidecars."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from isal import igzip, igzip_threaded
from numpy.typing import NDArray

from orbitct_app import __version__, atomic
from orbitct_app.errors import SeriesError
from orbitct_app.threads import get_threads

NIFTI_SUFFIX = ".nii.gz"
SIDECAR_KEYWORDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "ConvolutionKernel",
    "KVP",
    "XRayTubeCurrent",
    "SliceThickness",
    "GantryDetectorTilt",
    "ReconstructionDiameter",
    "SpiralPitchFactor",
    "BodyPartExamined",
    "PatientPosition",
    "ContrastBolusAgent",
)
"""Series attributes copied to NIfTI sidecars (read by discovery, see
:func:`orbitct_app.discover.scan_exam`): technical, never identifying."""

_VOX_OFFSET = 352
_COMPRESSLEVEL = 1
"""isal (igzip) level 1: standard gzip, several times faster than zlib level 1 at equal size
(``docs/performance.md``)."""


def nifti_header(shape_ijk: tuple[int, int, int], affine_ras: NDArray[np.float64]) -> nib.Nifti1Header:
    """A NIfTI-1 header for an int16 volume on a scanner-aligned (code 1) RAS affine."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape_ijk)
    header.set_data_dtype(np.int16)
    header.set_qform(affine_ras, code=1)
    header.set_sform(affine_ras, code=1)
    header.set_xyzt_units(xyz="mm")
    header.set_slope_inter(1.0, 0.0)
    header.set_data_offset(_VOX_OFFSET)
    header["descrip"] = f"orbitct-app {__version__}".encode()[:80]
    return header


def write_nifti(path: Path, volume_kji: NDArray[np.int16], affine_ras: NDArray[np.float64]) -> None:
    """Write ``volume_kji`` (stored [k, j, i]) as ``path`` (.nii.gz), atomically.

    The array's C order is NIfTI's on-disk order (i fastest), so the voxels are written as they
    are, without a reordered copy.
    """
    if volume_kji.dtype != np.int16 or volume_kji.ndim != 3:
        raise SeriesError("internal: expected a 3D int16 volume to write")
    data = np.ascontiguousarray(volume_kji)
    header = nifti_header(data.shape[::-1], affine_ras)
    with atomic.atomic_file(path) as tmp, _gzip_writer(tmp) as out:
        block = header.binaryblock
        out.write(block)
        out.write(b"\0" * (_VOX_OFFSET - len(block)))  # empty extension flag and padding
        out.write(data.data.cast("B"))  # the array's own buffer, no copy


def _gzip_writer(path: Path) -> Any:
    """A gzip writer on this process's threads: with more than one, blocks are compressed in
    parallel (one gzip stream, the same bytes on every run; the gain is in ``docs/performance.md``).
    One thread compresses in the caller, which is faster than handing it over."""
    threads = get_threads()
    if threads > 1:
        return igzip_threaded.open(path, "wb", compresslevel=_COMPRESSLEVEL, threads=threads)
    return igzip.open(path, "wb", compresslevel=_COMPRESSLEVEL)


def write_sidecar(path: Path, content: dict[str, Any]) -> None:
    """Write a JSON sidecar atomically (sorted keys, UTF-8)."""
    atomic.write_text(path, json.dumps(content, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def safe_name(text: str, max_length: int = 48, keep: str = "") -> str:
    """Text made safe for every filesystem: ASCII letters, digits, '-' and the ``keep`` characters.

    Runs of anything else (spaces, slashes, '_', non-ASCII) become one '-'.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", "-", ascii_text).strip("-")
    return cleaned[:max_length].rstrip("-")


def output_stem(dicom_id: str, series_number: int | None, description: str, uid_tag: str = "") -> str:
    """The readable, stable file stem of one converted series.

    ``<dicom_id>_S<series number>[_<description>][_uid-<tag>]``; ``uid_tag`` is given only when
    two series of an exam would otherwise get the same name. The extract stage appends
    ``_part-<n>`` when a series is split.
    """
    pieces = [safe_name(dicom_id, 64, keep="_.") or "exam", f"S{series_number}" if series_number is not None else "Sx"]
    desc = safe_name(description)
    if desc:
        pieces.append(desc)
    if uid_tag:
        pieces.append(f"uid-{uid_tag}")
    return "_".join(pieces)
