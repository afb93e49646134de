"""Frames read for the pixel-text check (:mod:`orbitct_app.anonymize.pixel_text`): a frame's grey
values, whole or only its top and bottom bands, and a file's overlay planes.

Uncompressed single-sample data is read at the offset discovery found (only the rows needed);
everything else is decoded by pydicom (compressed data included). Pixel data is read for the
check only: the files written are never changed by it. A frame that cannot be read raises
:class:`PixelError`, whose reason names no header value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from orbitct_app.dicomio.pixels import NATIVE_LITTLE_ENDIAN
from orbitct_app.discover import SliceInfo
from orbitct_app.errors import OrbitctError

_OVERLAY_INK = 255
"""An overlay plane is checked as an 8-bit image: its set bits this bright on black."""

Values = NDArray[np.int16] | NDArray[np.float32]
"""A frame's values as the check holds them: int16 (at most 15 significant bits, so that
differences fit), or float32 (RGB as luminance, wider data)."""


class PixelError(OrbitctError):
    """A frame's pixel data cannot be read for the check (the reason names no header value)."""


def read_overlays(info: SliceInfo) -> list[tuple[int, int, NDArray[np.uint8]]]:
    """The overlay planes (60xx,3000) of a file: (group, 0-based frame of the file it starts at,
    the plane as 0 or :data:`_OVERLAY_INK`), one entry per frame of a multi-frame overlay.

    Raises
    ------
    PixelError
        When the file or an overlay cannot be read (the reason names no value).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(info.path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001 - the reader raises many types; their text may quote values
        raise PixelError(f"cannot read the overlay planes ({type(err).__name__})") from None
    planes = []
    for group in info.overlay_groups:
        try:
            bits = np.asarray(ds.overlay_array(group))
            origin = int(ds.get((group, 0x0051)).value) if (group, 0x0051) in ds else 1
        except Exception as err:  # noqa: BLE001
            raise PixelError(f"cannot decode overlay plane {group:04X} ({type(err).__name__})") from None
        stack = bits.reshape(-1, *bits.shape[-2:])
        for k, plane in enumerate(stack):
            planes.append((group, max(0, origin - 1) + k, np.where(plane > 0, np.uint8(_OVERLAY_INK), np.uint8(0))))
    return planes


def read_frame(info: SliceInfo, frame: int | None, band_fraction: int | None = None) -> NDArray[np.float32]:
    """One frame as float32 grey values (see :func:`read_values`)."""
    return read_values(info, frame, band_fraction).astype(np.float32)


def read_values(info: SliceInfo, frame: int | None, band_fraction: int | None = None) -> Values:
    """One frame's grey values (RGB as luminance); with ``band_fraction`` only its top and bottom
    ``rows // band_fraction`` rows (stacked; the rows between are not read).

    Uncompressed single-sample data is read at its offset (only the rows needed); everything else
    is decoded by pydicom (compressed data included). Integer values come as int16 with at most
    15 significant bits: 16-bit data is halved (the check only compares values with each other
    and with thresholds taken from the same values, so the scale does not matter).

    Raises
    ------
    PixelError
        When the pixel data cannot be read or decoded (the reason names the transfer syntax).
    """
    if (
        info.pixel_offset is not None
        and info.transfer_syntax in NATIVE_LITTLE_ENDIAN
        and info.samples_per_pixel == 1
        and info.bits_allocated in (8, 16)
        and 0 < info.bits_stored <= info.bits_allocated
        and info.rows > 0
        and info.columns > 0
    ):
        return _read_native(info, frame or 0, band_fraction)
    image = _decode(info, frame)
    if band_fraction is None:
        return image
    return _bands(image, band_fraction)


def band_rows(rows: int, band_fraction: int) -> int:
    return max(1, rows // band_fraction)


def _bands(image: Values, band_fraction: int) -> Values:
    b = band_rows(image.shape[0], band_fraction)
    if 2 * b >= image.shape[0]:
        return image
    return np.concatenate([image[:b], image[-b:]])


def _read_native(info: SliceInfo, frame: int, band_fraction: int | None) -> Values:
    size = info.bits_allocated // 8
    row_bytes = info.columns * size
    start = (info.pixel_offset or 0) + frame * info.rows * row_bytes
    spans = [(0, info.rows)]
    if band_fraction is not None:
        b = band_rows(info.rows, band_fraction)
        if 2 * b < info.rows:
            spans = [(0, b), (info.rows - b, info.rows)]
    n_rows = sum(last - first for first, last in spans)
    buffer = bytearray(n_rows * row_bytes)
    view = memoryview(buffer)
    try:
        with open(info.path, "rb", buffering=0) as fh:
            at = 0
            for first, last in spans:
                fh.seek(start + first * row_bytes)
                want = (last - first) * row_bytes
                if fh.readinto(view[at : at + want]) != want:
                    raise PixelError("pixel data shorter than its rows and columns")
                at += want
    except OSError as err:
        raise PixelError(f"cannot read the pixel data ({err.strerror or type(err).__name__})") from None
    kind = ("<i" if info.pixel_representation == 1 else "<u") + str(size)
    values = np.frombuffer(buffer, dtype=kind).reshape(n_rows, info.columns)
    return _narrow(values, info.bits_stored)


def _narrow(values: NDArray[np.integer], bits_stored: int) -> NDArray[np.int16]:
    """Integer values as int16 with at most 15 significant bits: only the stored bits (the others
    may hold overlay bits), sign-extended; 16-bit data halved."""
    bits = values.dtype.itemsize * 8
    unused = bits - bits_stored if 0 < bits_stored < bits else 0
    if unused:
        if values.dtype.kind == "i":
            values = np.right_shift(np.left_shift(values, unused), unused)
        else:
            values = np.bitwise_and(values, (1 << bits_stored) - 1, dtype=values.dtype)
    if bits - unused > 15:
        values = np.right_shift(values, 1)
    return values.astype(np.int16, copy=False)


def _decode(info: SliceInfo, frame: int | None) -> Values:
    import pydicom
    from pydicom.pixels.utils import pixel_array

    try:
        if frame is None:  # (the whole data set: deflated files too)
            array = pydicom.dcmread(info.path).pixel_array
        else:  # decodes only that frame
            array = pixel_array(info.path, index=frame)
    except Exception as err:  # noqa: BLE001 - decoders raise many types; their text may quote values
        syntax = pydicom.uid.UID(info.transfer_syntax)
        name = syntax.name if syntax.is_transfer_syntax else "an unknown transfer syntax"
        raise PixelError(f"cannot decode pixel data ({name}: {type(err).__name__})") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float32)
        luminance: NDArray[np.float32] = (
            rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)
        )
        return luminance
    if array.ndim != 2:
        raise PixelError(f"pixel array with {array.ndim} dimensions where one frame was expected")
    if array.dtype.kind in "iu" and array.dtype.itemsize <= 2:
        return _narrow(array, info.bits_stored)  # (pydicom keeps only the stored bits already: no change)
    return array.astype(np.float32)
