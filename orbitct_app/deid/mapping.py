"""Mapping files for the data owner: original -> new UIDs and PatientIDs (``--map-dir``).

They link the de-identified data back to the originals, so they are written only to a folder
the user names, never inside OUTPUT_DIR or INPUT_DIR (checked by :meth:`Options.validate`), and
only when asked: without ``--map-dir`` no mapping is kept anywhere.

Each exam writes its own fragment (``MAP_DIR/.parts/<dicom_id>.uids.csv`` and
``.patients.csv``) atomically; :func:`merge_maps` rebuilds ``uid_map.csv`` (columns
``id_old,id_new``, one row per original UID, as de-identification validators such as the MIDI-B
scoring scripts read them) and ``patient_id_map.csv`` (``id_old,id_new,dicom_id``: original
PatientID, pseudonym, exam) under a lock, so SLURM array tasks end with complete files.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from orbitct_app import atomic, locks
from orbitct_app.safe_text import csv_cell

UID_MAP = "uid_map.csv"
PATIENT_MAP = "patient_id_map.csv"
_PARTS = ".parts"


def _csv(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """CSV text, every cell a spreadsheet would run as a formula neutralised (a PatientID such
    as ``=1+1`` is written ``'=1+1``; see :func:`~orbitct_app.safe_text.csv_cell`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _journal_path(map_dir: Path, dicom_id: str) -> Path:
    return map_dir / _PARTS / f"{dicom_id}.journal"


def journal_exam_maps(
    map_dir: Path, dicom_id: str, uids: Mapping[str, str], patient_ids: Iterable[str], journaled: set[tuple[str, str]]
) -> None:
    """Append the exam's mapping entries not yet in its journal (``journaled``), durably.

    ``--in-place`` calls this before each file is replaced: once the original is gone, the
    journal is the only place its UIDs live on, so a run killed before the exam's fragment is
    written loses nothing (:func:`write_exam_maps` folds the journal in).
    """
    entries = [("u", old, new) for old, new in uids.items() if ("u", old) not in journaled]
    entries += [("p", pid, "") for pid in patient_ids if ("p", pid) not in journaled]
    if not entries:
        return
    path = _journal_path(map_dir, dicom_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(entries)
        fh.flush()
        os.fsync(fh.fileno())
    journaled.update((kind, old) for kind, old, _ in entries)


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.reader(fh))
    except FileNotFoundError:
        return []


def write_exam_maps(
    map_dir: Path, dicom_id: str, uids: Mapping[str, str], patient_ids: Iterable[str], *, keep_earlier: bool = False
) -> None:
    """Store one exam's mappings as fragments (replacing the exam's earlier ones).

    With ``keep_earlier`` (``--in-place``: the originals of files done by an earlier, interrupted
    run are gone) the earlier fragments and the journal are folded in; the journal is then
    removed.
    """
    parts = map_dir / _PARTS
    parts.mkdir(parents=True, exist_ok=True)
    uid_rows = dict(uids)
    patients = set(patient_ids)
    journal = _journal_path(map_dir, dicom_id)
    if keep_earlier:
        for row in _read_rows(parts / f"{dicom_id}.uids.csv")[1:]:
            uid_rows.setdefault(row[0], row[1])
        patients.update(row[0] for row in _read_rows(parts / f"{dicom_id}.patients.csv")[1:])
        for row in _read_rows(journal):
            if row[0] == "u":
                uid_rows.setdefault(row[1], row[2])
            elif row[0] == "p":
                patients.add(row[1])
    atomic.write_text(parts / f"{dicom_id}.uids.csv", _csv(("id_old", "id_new"), sorted(uid_rows.items())))
    atomic.write_text(
        parts / f"{dicom_id}.patients.csv",
        _csv(("id_old", "id_new", "dicom_id"), sorted((p, dicom_id, dicom_id) for p in patients)),
    )
    journal.unlink(missing_ok=True)


def merge_maps(map_dir: Path) -> dict[str, Path]:
    """Rebuild ``uid_map.csv`` and ``patient_id_map.csv`` from every exam's fragments (and the
    journals of exams whose ``--in-place`` run was interrupted)."""
    parts = map_dir / _PARTS
    if not parts.is_dir():
        return {}
    with locks.file_lock(parts / "merge.lock", "the mapping files", quiet=True):
        uid_rows: set[tuple[str, ...]] = set()
        patient_rows: set[tuple[str, ...]] = set()
        for fragment in sorted(parts.glob("*.uids.csv")):
            uid_rows.update(tuple(r) for r in _read_rows(fragment)[1:])
        for fragment in sorted(parts.glob("*.patients.csv")):
            patient_rows.update(tuple(r) for r in _read_rows(fragment)[1:])
        for journal in sorted(parts.glob("*.journal")):
            dicom_id = journal.name[: -len(".journal")]
            for row in _read_rows(journal):
                if row[0] == "u":
                    uid_rows.add((row[1], row[2]))
                elif row[0] == "p":
                    patient_rows.add((row[1], dicom_id, dicom_id))
        written = {}
        for name, header, rows in (
            (UID_MAP, ("id_old", "id_new"), uid_rows),
            (PATIENT_MAP, ("id_old", "id_new", "dicom_id"), patient_rows),
        ):
            path = map_dir / name
            atomic.write_text(path, _csv(header, sorted(rows)))
            written[name] = path
        return written
