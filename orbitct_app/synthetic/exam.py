"""Writing whole exams (:func:`write_exam`) and a varied demo input root (:func:`write_sample_dataset`)."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydicom.uid import JPEG2000Lossless, RLELossless

from orbitct_app.synthetic.headers import ExamIdentity
from orbitct_app.synthetic.helpers import seeded_digest, seeded_rng, seeded_uid
from orbitct_app.synthetic.phantom import Phantom
from orbitct_app.synthetic.planted import PhiPlan
from orbitct_app.synthetic.series import SeriesWriter
from orbitct_app.synthetic.specs import SeriesSpec, default_series
from orbitct_app.synthetic.truth import ExamTruth, ExpectedSkip, SeriesTruth

logger = logging.getLogger(__name__)


def _relative_paths(ex: ExamIdentity, writers: list[SeriesWriter], shuffle_names: bool,
                    nested: bool) -> dict[tuple[int, int], Path]:
    paths: dict[tuple[int, int], Path] = {}
    used: set[str] = set()
    for w in writers:
        sn = int(w.spec.series_number or 0)
        for inst in w.file_numbers:
            if shuffle_names:
                name = seeded_digest(ex.seed, ex.dicom_id, "name", sn, inst).hex()[:16].upper()
                while name in used:
                    name = seeded_digest(name).hex()[:16].upper()
                used.add(name)
                folder = Path("DICOM", seeded_digest(ex.seed, ex.dicom_id, "dir", sn).hex()[:8].upper()) \
                    if nested else Path()
                paths[(sn, inst)] = folder / name
            else:
                folder = Path("DICOM", "ST0001", f"S{sn:03d}") if nested else Path(f"S{sn:03d}")
                paths[(sn, inst)] = folder / f"IM{inst:05d}.dcm"
    return paths


def _expected_skips(series: list[SeriesTruth]) -> list[ExpectedSkip]:
    out = []
    for s in series:
        kind = s.spec.kind
        if s.n_instances <= 10:
            out.append(ExpectedSkip(s.series_number, s.series_instance_uid, "anonymize",
                                    f"{kind} series with {s.n_instances} instances (<= 10)"))
        elif kind == "coronal":
            out.append(ExpectedSkip(s.series_number, s.series_instance_uid, "extract",
                                    "coronal reformat is not axial"))
    return out


def write_exam(
    root: Path,
    dicom_id: str,
    series: Sequence[SeriesSpec] | None = None,
    *,
    seed: int = 0,
    phantom: Phantom | None = None,
    shuffle_names: bool = False,
    nested: bool = False,
    plant_phi: bool = True,
    enhanced: bool = False,
) -> ExamTruth:
    """Write one synthetic exam folder ``root / dicom_id`` of DICOM Part 10 files.

    Parameters
    ----------
    root : Path
        Input root; the exam folder is created inside it.
    dicom_id : str
        Exam folder name.
    series : sequence of SeriesSpec, optional
        Series to write (default :func:`default_series`). Missing series numbers are assigned
        from the position in the list (1-based).
    seed : int
        Makes UIDs, noise, names and planted values deterministic: the same seed and dicom_id
        give byte-identical files.
    phantom : Phantom, optional
        The object scanned (default ``Phantom()``).
    shuffle_names : bool
        Random extensionless hex file names, written in shuffled order.
    nested : bool
        Put series in deeper sub-folders (``DICOM/ST0001/S003/...``).
    plant_phi : bool
        Plant searchable identifying values (see :class:`PlantedValue`); otherwise headers
        carry neutral placeholders.
    enhanced : bool
        Write every axial and coronal series as one Enhanced CT Image Storage file (multi-frame,
        see :class:`SeriesSpec` ``enhanced``, which does the same for one series); scouts and
        summary captures stay classic. The frames equal the images the classic series would
        have (same seed, dicom_id and spec); the enhanced series gets its own Series and SOP
        Instance UIDs. With ``plant_phi`` identifiers are also planted inside the functional
        groups (see :class:`PlantedValue`).

    Returns
    -------
    ExamTruth

    Raises
    ------
    FileExistsError
        If the exam folder exists and is not empty.
    ValueError
        If the series specifications are inconsistent (duplicate series numbers, raw values
        that do not fit, a padding value that collides with image content).
    """
    t0 = time.perf_counter()
    phantom = phantom or Phantom()
    specs_in = list(series) if series is not None else default_series()
    specs: list[SeriesSpec] = []
    for n, spec in enumerate(specs_in, start=1):
        spec = spec.resolved()
        if spec.series_number is None:
            spec = replace(spec, series_number=n)
        if enhanced and spec.kind in ("axial", "coronal"):
            spec = replace(spec, enhanced=True)
        specs.append(spec)
    numbers = [s.series_number for s in specs]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"duplicate series numbers: {numbers}")

    exam_dir = Path(root) / dicom_id
    if exam_dir.exists() and any(exam_dir.iterdir()):
        raise FileExistsError(f"exam folder is not empty: {exam_dir}")

    exam_hash = seeded_digest(seed, dicom_id, "exam").hex()[:6].upper()
    study_day = _dt.date(2022, 1, 1) + _dt.timedelta(days=int(exam_hash, 16) % 700)
    ex = ExamIdentity(
        seed=seed, dicom_id=dicom_id, exam_hash=exam_hash,
        study_uid=seeded_uid(seed, dicom_id, "study"), for_uid=seeded_uid(seed, dicom_id, "frame-of-reference"),
        plan=PhiPlan(exam_hash, seed, dicom_id) if plant_phi else None,
        study_date=study_day.strftime("%Y%m%d"),
    )
    writers = [SeriesWriter(ex, spec, phantom) for spec in specs]
    scouts = [w for w in writers if w.spec.kind == "scout"]
    if scouts:
        ex.scout_ref = (scouts[0].sop_class, scouts[0].sop_uids[1])
        ex.scout_series_uid = scouts[0].series_uid

    rel = _relative_paths(ex, writers, shuffle_names, nested)
    jobs = [(w, inst) for w in writers for inst in w.file_numbers]
    if shuffle_names:
        order = seeded_rng(seed, dicom_id, "write-order").permutation(len(jobs))
        jobs = [jobs[i] for i in order]
    exam_dir.mkdir(parents=True, exist_ok=True)
    files: dict[int, dict[int, Path]] = {int(w.spec.series_number or 0): {} for w in writers}
    for w, inst in jobs:
        sn = int(w.spec.series_number or 0)
        path = exam_dir / rel[(sn, inst)]
        w.write(inst, path)
        files[sn][inst] = path

    truths = [w.truth(files[int(w.spec.series_number or 0)]) for w in writers]
    truth = ExamTruth(
        dicom_id=dicom_id, path=exam_dir, seed=seed, study_uid=ex.study_uid,
        frame_of_reference_uid=ex.for_uid, phantom=phantom, series=truths,
        planted=list(ex.plan.planted) if ex.plan else [],
        skipped_expectations=_expected_skips(truths),
    )
    logger.info("wrote exam %s: %d series, %d files in %.2f s", dicom_id, len(truths),
                len(truth.files), time.perf_counter() - t0)
    return truth


def _sample_exam(index: int, size: Literal["small", "full"]) -> tuple[list[SeriesSpec], dict[str, Any]]:
    """Series and layout options of sample exam ``index`` (0-based); the variants cycle."""
    full = size == "full"
    matrix: dict[str, Any] = {"rows": 512, "cols": 512, "pixel_spacing": (0.45, 0.45)} if full else {}
    thin: dict[str, Any] = dict(matrix, n_slices=240, slice_step=0.625) if full else {}
    thick: dict[str, Any] = dict(matrix, n_slices=30 if full else 24, slice_step=5.0)
    coronal: dict[str, Any] = dict(matrix, n_slices=60, slice_step=2.0) if full else {}
    scout_matrix: dict[str, Any] = {"rows": 512, "cols": 512, "pixel_spacing": (0.5, 0.5)} if full else {}
    scout = SeriesSpec(kind="scout", series_number=1, **scout_matrix)
    variant = index % 5
    if variant == 0:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, **thin),
            SeriesSpec(kind="coronal", series_number=3, **coronal),
            SeriesSpec(kind="summary", series_number=999),
        ], {}
    if variant == 1:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, order="descending", unsigned=True,
                       padding=True, **thin),
            SeriesSpec(kind="summary", series_number=999, n_slices=1),
        ], {"shuffle_names": True}
    if variant == 2:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, tilt_deg=15.0, padding=True, **thin),
            SeriesSpec(kind="axial", series_number=3, tilt_deg=-12.0, transfer_syntax=RLELossless,
                       convolution_kernel="H60s", **thick),
            SeriesSpec(kind="summary", series_number=999),
        ], {"nested": True}
    if variant == 3:
        return [
            scout,
            SeriesSpec(kind="axial", series_number=2, per_slice_rescale=True, order="descending",
                       **thin),
            SeriesSpec(kind="axial", series_number=4, unsigned=True, per_slice_rescale=True,
                       transfer_syntax=JPEG2000Lossless, **thick),
            SeriesSpec(kind="summary", series_number=999, n_slices=1),
        ], {"nested": True, "shuffle_names": True}
    return [
        scout,
        SeriesSpec(kind="axial", series_number=2, tilt_deg=-10.0, order="descending",
                   per_slice_rescale=True, padding=True, enhanced=True, **thin),
        SeriesSpec(kind="coronal", series_number=3, transfer_syntax=RLELossless, enhanced=True,
                   **coronal),
        SeriesSpec(kind="summary", series_number=999, n_slices=1),
    ], {"nested": True}


def write_sample_dataset(
    out_dir: Path,
    n_exams: int = 3,
    *,
    seed: int = 0,
    size: Literal["small", "full"] = "small",
    enhanced: bool = False,
) -> list[ExamTruth]:
    """Write a varied demo input root of ``n_exams`` exams named ``exam_001``, ``exam_002``, ...

    The variants cycle: (1) plain ascending axial with a coronal reformat; (2) descending,
    unsigned, padded, shuffled extensionless names; (3) tilted +15 and -12 degrees, one series
    RLE, nested folders; (4) per-slice rescale, unsigned JPEG 2000, nested and shuffled;
    (5) Enhanced CT: a descending -10 degree tilted axial series with per-frame rescale and
    padding, and an RLE coronal reformat, each one multi-frame file, nested. Every exam
    also has a scout and a summary capture. ``size="full"`` uses 512 x 512 matrices at
    0.45 mm, 240 slices of 0.625 mm for the thin series and 30 of 5 mm for the thick ones.
    ``enhanced=True`` writes the axial and coronal series of every exam as Enhanced CT.

    Returns
    -------
    list of ExamTruth
    """
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', got {size!r}")
    out_dir = Path(out_dir)
    truths = []
    for index in range(n_exams):
        specs, layout = _sample_exam(index, size)
        truths.append(write_exam(out_dir, f"exam_{index + 1:03d}", specs, seed=seed,
                                 enhanced=enhanced, **layout))
    return truths
