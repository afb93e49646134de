"""De-identify one DICOM file: read it once, apply a profile, write it (or replace it in place).

The anonymize stage (:mod:`orbitct_app.anonymize.stage`) decides which files are written and
where; everything done to one file is here. :func:`anonymize_file` takes the fast path where it
applies (the header de-identified on its bytes by :mod:`orbitct_app.deid.raw`, the pixel data
element copied raw) and pydicom's path otherwise (the data set read without its pixel data,
de-identified by :func:`deidentify_dataset`, encoded by
:func:`~orbitct_app.dicomio.write.encode_part10`); both give the same bytes where both apply.
The pixel data is never decoded: it is copied in bounded chunks (:mod:`orbitct_app.dicomio.chunks`).

:class:`Secrets` holds what an exam's de-identification must remember but never write into
OUTPUT_DIR (the key, the original UIDs and PatientIDs, the date offsets). No header value ever
reaches a log line or an exception message: :func:`safe_reason` gives the reason of a failure.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import io
import logging
import mmap
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, DeflatedExplicitVRLittleEndian

from orbitct_app import __version__, atomic
from orbitct_app.deid import audit, keys, raw
from orbitct_app.deid.apply import DeidStats, apply_profile, check_pseudonym, mark_deidentified
from orbitct_app.deid.profiles import Profile
from orbitct_app.dicomio.chunks import Piece, Span, read_exactly, write_pieces
from orbitct_app.dicomio.structure import Damaged, Layout, explicit_prefix, file_structure, inflate
from orbitct_app.dicomio.write import (
    IMPLEMENTATION_VERSION_NAME,
    encode_part10,
    file_meta_for,
    pixel_pieces,
    sop_uids_from_meta,
    source_pixels,
)
from orbitct_app.errors import DeidError, OrbitctError, one_line, resource_error
from orbitct_app.paths import open_regular

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Secrets:
    """What de-identifying one exam must remember but never write into OUTPUT_DIR.

    The key, the original UIDs and PatientIDs seen (for the mapping files and the audit) and
    the per-patient date offsets. Held in memory only while the exam is processed.
    """

    key: bytes | None = None
    uids: keys.UidMap | None = None
    patient_ids: set[str] = dataclasses.field(default_factory=set)
    _offsets: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: Profile, key: bytes | None) -> Secrets:
        """Secrets for ``profile``; a key is needed when the profile remaps UIDs or shifts dates.

        Raises
        ------
        DeidError
            If the profile needs a key and none is given.
        """
        if not profile.needs_key:
            return cls()
        if key is None:
            raise _no_key(profile)
        return cls(key=key, uids=keys.UidMap(key))

    def date_offset(self, patient_id: str, pseudonym: str) -> int | None:
        """The date offset of a patient (by original PatientID, else the exam's pseudonym);
        None without a key. The PatientID is remembered (the mapping files list it)."""
        if self.key is None:
            return None
        if patient_id:
            self.patient_ids.add(patient_id)
        patient = patient_id or f"exam:{pseudonym}"
        if patient not in self._offsets:
            self._offsets[patient] = keys.date_offset_days(self.key, patient)
        return self._offsets[patient]


Written = Callable[[tuple[bytes | audit.FileRegion, ...]], None]
"""Called with a file's parts once it is complete (bytes built in memory, and regions of the
file itself that were copied from the source): the anonymize stage audits them."""


def anonymize_file(
    src: Path,
    dst: Path,
    profile: Profile,
    pseudonym: str,
    secrets: Secrets | None = None,
    written: Written | None = None,
    *,
    layout: Layout | None = None,
) -> DeidStats:
    """De-identify ``src`` with ``profile`` and write the result to ``dst``.

    Only the data set is written: the bytes after it (trailing padding, garbage after the last
    element, anything after a complete pixel data element) never reach ``dst``. The header
    (everything but the pixel data) is read into memory; the pixel data element is copied from
    ``src`` in bounded chunks (:mod:`orbitct_app.dicomio.chunks`), never decoded, so memory stays flat
    whatever the size of the file. The transfer syntax is kept; the file meta is rebuilt
    consistent with the data set (see :func:`~orbitct_app.dicomio.write.file_meta_for`). ``dst``
    is written directly (and removed again if writing fails); the caller makes its appearance
    atomic.

    The common case is de-identified on the header's bytes (:mod:`orbitct_app.deid.raw`); any
    other file (deflated or big-endian data, elements after the pixel data, sequences stored
    as UN, earlier de-identification codes ...) is read with pydicom and encoded by
    :func:`~orbitct_app.dicomio.write.encode_part10`. Both give the same bytes where both apply.

    Parameters
    ----------
    src, dst
        The DICOM file to read and the file to write (may not be the same).
    profile
        The de-identification table.
    pseudonym
        PatientName / PatientID value.
    secrets
        The key, UID map and patient memory of the exam; needed by a profile that remaps UIDs
        or shifts dates (see :attr:`Profile.needs_key`).
    written
        Called with the parts of ``dst`` once it is complete (the stage audits them).
    layout
        Where the data set ends and the pixel data lies, as discovery found it
        (:attr:`SliceInfo.layout`); found here when not given.

    Returns
    -------
    DeidStats
        What the profile changed.

    Raises
    ------
    DeidError
        With a reason that holds no header value (the type of the underlying error).
    ResourceError
        When ``dst`` cannot be written for lack of room (full disk, quota, file size limit).
    """
    stage = "reading"
    try:
        with _quiet_pydicom(), open_regular(src) as source:
            fd = source.fileno()
            layout = layout if layout is not None else _layout_of(fd)
            stage = "de-identifying"
            pieces, stats = _deidentified(fd, layout, profile, pseudonym,
                                          secrets if secrets is not None else Secrets())
            stage = "writing"
            _write_file(dst, pieces, fd)
    except OrbitctError:
        raise
    except Exception as err:  # noqa: BLE001 - the message may quote a header value: drop it
        if (resource := resource_error(err)) is not None:
            raise resource from None
        raise DeidError(f"{safe_reason(err)} while {stage}") from None
    if written is not None:
        written(_audit_parts(pieces, dst))
    return stats


def _write_file(dst: Path, pieces: list[Piece], source: int) -> None:
    """Write ``dst`` from its pieces; never leave half a file."""
    try:
        with open(dst, "wb") as fh:
            write_output(fh, pieces, source)
    except BaseException:
        with contextlib.suppress(OSError):
            dst.unlink()
        raise


def write_output(fh: BinaryIO, parts: Sequence[Piece], source: int | None = None) -> None:
    """Write a de-identified file to ``fh``: the concatenation of ``parts`` (bytes built in
    memory, and spans of the ``source`` file descriptor copied in bounded chunks). The one
    place every path writes."""
    write_pieces(fh, parts, source)


def _audit_parts(pieces: Sequence[Piece], dst: Path) -> tuple[bytes | audit.FileRegion, ...]:
    """The parts of a written file for its audit: spans become regions of the file itself."""
    parts: list[bytes | audit.FileRegion] = []
    offset = 0
    for piece in pieces:
        if isinstance(piece, Span):
            parts.append(audit.FileRegion(dst, offset, piece.length))
            offset += piece.length
        else:
            parts.append(piece)
            offset += len(piece)
    return tuple(parts)


def _layout_of(fd: int) -> Layout:
    """The layout of an open file, walked here (callers that did not discover the file)."""
    if os.fstat(fd).st_size == 0:
        raise DeidError("empty file (0 bytes)")
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            structure = file_structure(view)
        except Damaged as err:
            raise DeidError(str(err)) from None
        finally:
            view.release()
    if not structure.byte_order_matches:
        raise DeidError(structure.mismatch)
    return structure.layout


def _deidentified(fd: int, layout: Layout, profile: Profile, pseudonym: str,
                  secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The pieces of the de-identified file: the fast path where it applies, else pydicom's."""
    if not layout.deflated:
        try:
            return fast_pieces(fd, layout, profile, pseudonym, secrets)
        except OrbitctError:
            raise
        except Exception as err:  # noqa: BLE001 - Unsupported, or a file the fast path misreads
            if not isinstance(err, raw.Unsupported):
                logger.debug("fast path failed (%s); using pydicom", type(err).__name__)
    return pydicom_pieces(fd, layout, profile, pseudonym, secrets)


def fast_pieces(fd: int, layout: Layout, profile: Profile, pseudonym: str,
                secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The fast path: the header de-identified on its bytes (:func:`raw.deidentify`), the pixel
    data element copied.

    Raises
    ------
    raw.Unsupported
        When the file needs the pydicom path (elements after the pixel data, among others).
    """
    if layout.deflated:
        raise raw.Unsupported("a deflated data set")
    header, tail = _header_and_tail(fd, layout)
    if tail:
        raise raw.Unsupported("elements after the pixel data")
    result = raw.deidentify(
        header, _plan(profile, pseudonym, secrets),
        version_name=IMPLEMENTATION_VERSION_NAME, implementation_uid=PYDICOM_IMPLEMENTATION_UID,
    )
    pieces: list[Piece] = [result.head]
    if layout.pixel_start is not None:
        pieces += pixel_pieces(fd, layout, implicit=result.implicit, little=True)
    return pieces, result.stats


def pydicom_pieces(fd: int, layout: Layout, profile: Profile, pseudonym: str,
                   secrets: Secrets) -> tuple[list[Piece], DeidStats]:
    """The pydicom path: the data set read without its pixel data (:func:`_read_dataset`),
    de-identified (:func:`deidentify_dataset`) and encoded with the pixel data element copied
    (:func:`~orbitct_app.dicomio.write.encode_part10`)."""
    ds = _read_dataset(fd, layout)
    stats = deidentify_dataset(ds, profile, pseudonym, secrets)
    return encode_part10(ds, source_pixels(fd, layout, ds)), stats


def _header_and_tail(fd: int, layout: Layout) -> tuple[bytes, bytes]:
    """The file's bytes before its pixel data element (all of its data set when it has none),
    and its data set's bytes after it (elements after the pixel data)."""
    if layout.pixel_start is None or layout.pixel_end is None:
        return read_exactly(fd, 0, layout.end), b""
    tail = read_exactly(fd, layout.pixel_end, layout.end - layout.pixel_end)
    return read_exactly(fd, 0, layout.pixel_start), tail


def _parse(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _read_dataset(fd: int, layout: Layout) -> Dataset:
    """The file's data set as pydicom reads it, without its pixel data (unless deflated) and
    without anything after its end.

    A deflated data set is inflated here (within its cap) and cut at its end; pydicom reads it
    as the explicit VR little endian data set it is, under a file meta that says so, and the
    file meta's transfer syntax is then set back to deflated.
    """
    ds = _read_deflated(fd, layout) if layout.deflated else _parse(b"".join(_header_and_tail(fd, layout)))
    if ds.original_encoding != (layout.implicit, layout.little):
        # pydicom reads a data set encoded otherwise than its transfer syntax says as it is
        # encoded, but records the transfer syntax's encoding: record the one it read
        ds.set_original_encoding(layout.implicit, layout.little, ds.original_character_set)
    return ds


def _read_deflated(fd: int, layout: Layout) -> Dataset:
    """See :func:`_read_dataset`."""
    head = explicit_prefix(read_exactly(fd, 0, layout.data_start))
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        deflated = view[layout.data_start :]
        try:
            stream = inflate(deflated)
        finally:
            deflated.release()
            view.release()
    del stream[layout.end :]  # trailing data: never read
    stream[0:0] = head  # in place: the data set is the biggest thing held here
    with _BufferReader(stream) as reader:
        ds = pydicom.dcmread(reader, force=True)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


class _BufferReader(io.RawIOBase):
    """A binary file over a buffer, without copying it (``io.BytesIO`` copies a bytearray)."""

    def __init__(self, buffer: bytearray) -> None:
        super().__init__()
        self._view = memoryview(buffer)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, copied once (``RawIOBase.read`` would copy twice)."""
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        data = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return data

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._view.release()
        super().close()


def _plan(profile: Profile, pseudonym: str, secrets: Secrets) -> raw.Plan:
    """What :func:`raw.deidentify` needs beyond the table (see :func:`deidentify_dataset`)."""
    if profile.needs_key and secrets.key is None:
        raise _no_key(profile)
    check_pseudonym(pseudonym)
    marks: list[tuple[int, str, Any]] = [
        (0x00120062, "CS", "YES"),
        (0x00120063, "LO", method_values(profile, secrets, pseudonym)),
    ]
    if profile.codes:
        marks.append((0x00120064, "SQ", tuple(profile.codes)))
    if profile.temporal:
        marks.append((0x00280303, "CS", profile.temporal))
    return raw.Plan(profile, pseudonym, secrets.uids, functools.partial(secrets.date_offset, pseudonym=pseudonym),
                    tuple(marks))


def _no_key(profile: Profile) -> DeidError:
    return DeidError(f"the {profile.name} profile needs a de-identification key (--deid-key)")


def method_values(profile: Profile, secrets: Secrets, pseudonym: str) -> list[str]:
    """DeidentificationMethod of a file this run writes: the profile's values and, when a key
    is used, the key mark (:func:`keys.deid_mark`) by which a rerun recognises the file."""
    values = profile.method_values(__version__)
    values = [values] if isinstance(values, str) else list(values)
    if secrets.key is not None:
        values.append(keys.deid_mark(secrets.key, pseudonym))
    return values


def deidentify_dataset(
    ds: Dataset, profile: Profile, pseudonym: str, secrets: Secrets | None, *, count_rules: bool = False
) -> DeidStats:
    """Apply ``profile`` to a data set read from a file, mark it and give it a new file meta.

    Empty SOP Class / SOP Instance UIDs of the data set are first taken from the old file meta,
    so that a profile remapping UIDs replaces them too (the file meta follows the data set).
    """
    secrets = secrets if secrets is not None else Secrets()
    if profile.needs_key and secrets.key is None:
        raise _no_key(profile)
    sop_uids_from_meta(ds)
    offset = None
    if secrets.key is not None:
        offset = secrets.date_offset(str(ds.get("PatientID", "") or "").strip(), pseudonym)
    stats = apply_profile(
        ds, profile, pseudonym=pseudonym, uids=secrets.uids, date_offset=offset, count_rules=count_rules
    )
    mark_deidentified(ds, method_values(profile, secrets, pseudonym), codes=profile.codes, temporal=profile.temporal)
    ds.file_meta = file_meta_for(ds)
    return stats


def dry_file(path: Path, rules: collections.Counter[tuple[int, str]], profile: Profile,
              pseudonym: str, secrets: Secrets, written: object = None, *,
              layout: Layout | None = None) -> None:
    """De-identify ``path`` in memory only and add the rules applied to ``rules``."""
    try:
        with _quiet_pydicom(), open_regular(path) as source:
            fd = source.fileno()
            ds = _read_dataset(fd, layout if layout is not None else _layout_of(fd))
            stats = deidentify_dataset(ds, profile, pseudonym, secrets, count_rules=True)
    except OrbitctError:
        raise
    except Exception as err:  # noqa: BLE001 - the message may quote a header value: drop it
        raise DeidError(f"{safe_reason(err)} while de-identifying") from None
    rules.update(stats.rules or {})


def replace_in_place(path: Path, profile: Profile, pseudonym: str, secrets: Secrets | None = None,
                      written: Written | None = None, *, before_replace: Callable[[], None] | None = None,
                      layout: Layout | None = None) -> None:
    """Replace ``path`` by its de-identified version: either the old or the new file, never half.

    ``before_replace`` runs once the new file is complete, before it takes the old one's place.
    """
    mode = path.lstat().st_mode
    with atomic.atomic_file(path, fsync=True) as tmp:
        anonymize_file(path, tmp, profile, pseudonym, secrets, written, layout=layout)
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode & 0o7777)
        if before_replace is not None:
            before_replace()


def copy_unchanged(src: Path, dst: Path, profile: Profile, pseudonym: str, secrets: Secrets | None = None,
                   written: Written | None = None, *, layout: Layout | None = None) -> None:
    """Copy a file this key already de-identified for this exam as it is (its UIDs and dates
    are the new ones: mapping them again would make them others), in bounded chunks: its data
    set only, without what may have been appended to it (a deflated file is copied whole; the
    audit checks that nothing follows its data set)."""
    with open_regular(src) as source:
        fd = source.fileno()
        layout = layout if layout is not None else _layout_of(fd)
        end = os.fstat(fd).st_size if layout.deflated else layout.end
        pieces: list[Piece] = [Span(0, end)]
        _write_file(dst, pieces, fd)
    if written is not None:
        written(_audit_parts(pieces, dst))


def safe_reason(err: BaseException) -> str:
    """A one-line reason for ``err`` that can never quote a header value.

    Our own errors and OS errors as :func:`~orbitct_app.errors.one_line` gives them (a safe
    message, the system's text); for anything else only the exception type.
    """
    if isinstance(err, (OrbitctError, OSError)):
        return one_line(err)
    return type(err).__name__


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation and warnings, whose messages quote header values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pydicom_config.disable_value_validation():
            yield


__all__ = [
    "Secrets",
    "Written",
    "anonymize_file",
    "copy_unchanged",
    "deidentify_dataset",
    "dry_file",
    "fast_pieces",
    "method_values",
    "pydicom_pieces",
    "replace_in_place",
    "safe_reason",
    "write_output",
]
