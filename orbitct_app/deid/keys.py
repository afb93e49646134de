"""The secret key of the basic profile, and what is derived from it: new UIDs and date offsets.

Every replacement UID and every per-patient date offset is an HMAC-SHA256 of the original value
under one secret key, so the same input gives the same output in every file, exam, SLURM task
and run that uses the same key, and nobody without the key can recompute or reverse the mapping.

The key is a file (``--deid-key PATH``): its bytes, trailing whitespace stripped, are the HMAC
key (at least 16 bytes). When the file does not exist it is created with 32 random bytes (64
hexadecimal characters), readable by its owner only, atomically (a hard link of a complete
temporary file), so SLURM tasks starting together all end up with the one key. The key never
appears in logs, reports or outputs; only :func:`key_fingerprint` (an HMAC of a constant) does.

A key file others can read or write is refused (whoever reads it can re-identify the data set,
whoever writes it can change every UID), with the fix (``chmod 600 PATH``); so is a key whose
bytes carry too little entropy (:func:`key_problem`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import shlex
import stat
from pathlib import Path

from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]  # public, not marked as re-exported

from orbitct_app.errors import UsageError

MIN_KEY_BYTES = 16
MIN_DISTINCT_BYTES = 16
"""A key must hold at least this many distinct byte values (of its decoded bytes, when it is
hexadecimal text). 32 random bytes, as the app makes them, hold about 30; fewer than 16 happens
to them with a probability of about 3e-17."""
UID_ROOT = "2.25."
MAX_SHIFT_DAYS = 3652
"""Dates move back by 365 to 3652 days (one to ten years), the same for all of a patient's dates."""
MIN_SHIFT_DAYS = 365


def ensure_key(path: Path) -> tuple[bytes, bool]:
    """Read the key file at ``path``, creating it with a random key if it does not exist.

    Returns
    -------
    (bytes, bool)
        The key and whether this call created the file.

    Raises
    ------
    UsageError
        If the file cannot be read or created, or holds fewer than 16 bytes.
    """
    created = False
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, path)  # atomic, and fails if another task made the key first
                    created = True
                except FileExistsError:
                    pass
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        except OSError as err:
            raise UsageError(f"cannot create the de-identification key {path}: {err.strerror}") from err
    return load_key(path), created


def load_key(path: Path) -> bytes:
    """The key held by the file at ``path`` (its bytes, trailing whitespace stripped: the HMAC
    key, exactly as it always was; the checks below never change it).

    Raises
    ------
    UsageError
        If the file cannot be read, can be read or written by its group or others, holds fewer
        than 16 bytes, or carries too little entropy (:func:`key_problem`).
    """
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().rstrip()
    except OSError as err:
        raise UsageError(f"cannot read the de-identification key {path}: {err.strerror}") from err
    if mode & 0o066:
        raise UsageError(
            f"the de-identification key {path} can be read or written by others (mode {stat.S_IMODE(mode):04o}); "
            f"make it private with: chmod 600 {shlex.quote(str(path))}"
        )
    problem = key_problem(key)
    if problem:
        raise UsageError(
            f"the de-identification key {path} {problem}: make a new one from 32 random bytes (remove the "
            "file and orbitct-app creates one, or: openssl rand -hex 32); a new key gives new UIDs"
        )
    return key


def key_problem(key: bytes) -> str:
    """Why ``key`` is too weak to keep UIDs and dates secret ('' when it is not): fewer than
    :data:`MIN_KEY_BYTES` bytes, or fewer than :data:`MIN_DISTINCT_BYTES` distinct byte values
    in its material, its decoded bytes when it is hexadecimal text (all bytes equal included)."""
    if len(key) < MIN_KEY_BYTES:
        return f"holds fewer than {MIN_KEY_BYTES} bytes"
    material = key_material(key)
    distinct = len(set(material))
    if distinct < MIN_DISTINCT_BYTES:
        what = "hexadecimal key's bytes" if material is not key else "key's bytes"
        return (f"carries too little entropy: its {what} take {distinct} distinct value(s), "
                f"at least {MIN_DISTINCT_BYTES} are needed")
    return ""


_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def key_material(key: bytes) -> bytes:
    """The bytes a key's entropy is judged on: its decoded bytes when it is hexadecimal text
    (as the keys the app makes are), else the bytes themselves."""
    return bytes.fromhex(key.decode("ascii")) if _HEX.fullmatch(key) else key


def key_fingerprint(key: bytes) -> str:
    """A short public fingerprint of ``key`` (HMAC of a constant), to tell keys apart in records."""
    return hmac.new(key, b"orbitct-app key fingerprint", hashlib.sha256).hexdigest()[:16]


KEY_MARK = "orbitct-app key mark "
"""Start of the DeidentificationMethod value by which a file says which key de-identified it."""


def deid_mark(key: bytes, pseudonym: str) -> str:
    """The DeidentificationMethod value that marks a file de-identified with ``key`` for the exam
    ``pseudonym``: :data:`KEY_MARK` and 16 hex digits of an HMAC. A rerun recognises its own
    files by it (and never maps their UIDs or shifts their dates a second time); without the
    key nobody can tell which key it was, or make a file carry it."""
    digest = hmac.new(key, b"deid mark\0" + pseudonym.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return KEY_MARK + digest[:16]


def new_uid(key: bytes, uid: str) -> str:
    """The pseudonymous UID of ``uid``: ``2.25.`` and a 128-bit integer from an HMAC.

    The 128 bits are laid out as an RFC 9562 version 8 (custom) UUID, so the result is a valid
    UUID-derived UID (PS3.5 B.2) of at most 44 characters.

    Examples
    --------
    >>> new_uid(b"0" * 32, "1.2.3").startswith("2.25.")
    True
    """
    digest = hmac.new(key, b"uid\0" + uid.encode("ascii", "replace"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC variant
    return f"{UID_ROOT}{value}"


def date_offset_days(key: bytes, patient: str) -> int:
    """The number of days (negative: back in time) all dates of ``patient`` are shifted by."""
    digest = hmac.new(key, b"date-shift\0" + patient.encode("utf-8", "replace"), hashlib.sha256).digest()
    span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
    return -(MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)


class UidMap:
    """Maps original UIDs to new ones under one key, and remembers what it mapped.

    UIDs registered in the DICOM standard (SOP classes, transfer syntaxes, well-known frames of
    reference ...) are returned unchanged: they identify nobody.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.mapped: dict[str, str] = {}
        """Every original UID seen -> its new UID (for the mapping files and the audit)."""

    def __call__(self, uid: str) -> str:
        uid = uid.strip("\0 ")
        if not uid or uid in UID_dictionary:
            return uid
        new = self.mapped.get(uid)
        if new is None:
            new = self.mapped[uid] = new_uid(self._key, uid)
        return new


def shift_date(value: str, days: int) -> str | None:
    """``value`` (DA, or the date part of DT) moved by ``days``; None when it cannot be parsed."""
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if day.year < 1:
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}" + text[8:]


UID_LIKE = re.compile(r"(?<![0-9])[0-9]+(?:\.[0-9]+){3,}(?![0-9])")
"""A UID-like token (four or more numeric components) inside a name or a line of text."""


def remap_uid_tokens(text: str, uids: UidMap | None) -> str:
    """``text`` with every UID-like token replaced by its new UID (by ``<uid>`` without a map).

    Tokens that already are pseudonymous (``2.25.``) or registered DICOM UIDs are left alone.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith(UID_ROOT) or token in UID_dictionary:
            return token
        return uids(token) if uids is not None else "<uid>"

    return UID_LIKE.sub(replace, text)
