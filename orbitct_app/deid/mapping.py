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
import fcntl
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from orbitct_app import atomic

UID_MAP = "uid_map.csv"
PATIENT_MAP = "patient_id_map.csv"
_PARTS = ".parts"


def _csv(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_exam_maps(map_dir: Path, dicom_id: str, uids: Mapping[str, str], patient_ids: Iterable[str]) -> None:
    """Store one exam's mappings as fragments (replacing the exam's earlier ones)."""
    parts = map_dir / _PARTS
    parts.mkdir(parents=True, exist_ok=True)
    atomic.write_text(parts / f"{dicom_id}.uids.csv", _csv(("id_old", "id_new"), sorted(uids.items())))
    atomic.write_text(
        parts / f"{dicom_id}.patients.csv",
        _csv(("id_old", "id_new", "dicom_id"), sorted((p, dicom_id, dicom_id) for p in patient_ids)),
    )


def merge_maps(map_dir: Path) -> dict[str, Path]:
    """Rebuild ``uid_map.csv`` and ``patient_id_map.csv`` from every exam's fragments."""
    parts = map_dir / _PARTS
    if not parts.is_dir():
        return {}
    with open(parts / "merge.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            written = {}
            for suffix, name, header in (
                (".uids.csv", UID_MAP, ("id_old", "id_new")),
                (".patients.csv", PATIENT_MAP, ("id_old", "id_new", "dicom_id")),
            ):
                rows: dict[tuple[str, ...], None] = {}
                for fragment in sorted(parts.glob(f"*{suffix}")):
                    with fragment.open(newline="", encoding="utf-8") as fh:
                        reader = csv.reader(fh)
                        next(reader, None)
                        rows.update(dict.fromkeys(tuple(r) for r in reader))
                path = map_dir / name
                atomic.write_text(path, _csv(header, sorted(rows)))
                written[name] = path
            return written
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
