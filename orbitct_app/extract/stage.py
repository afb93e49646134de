"""The extract stage: axial CT series of one exam to body-masked, isotropic int16 NIfTI.

Per exam: plan from the headers (per series: select -> plan stacks -> stack rules, then the
choice of ``--one-per-exam``), then per candidate: load HU -> body mask -> output grid ->
resample -> write. Every series seen gets a row in ``extract_report.csv`` with its decision and
reason; every written NIfTI gets a row in ``series_index.csv``. The exam's NIfTI folder appears
atomically. ``--dry-run`` stops after the plan: the same rows, no pixel read, nothing written.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from orbitct_app import atomic, memory, pictures, provenance
from orbitct_app.discover import Exam, SeriesInfo, SliceInfo, scan_exam
from orbitct_app.errors import ExamError, NotConvertible, SeriesError, one_line, resource_error
from orbitct_app.extract import qc, selection
from orbitct_app.extract.nifti import NIFTI_SUFFIX, SIDECAR_KEYWORDS, output_stem, write_nifti, write_sidecar
from orbitct_app.extract.resample import apply_body_mask, cropped_fraction, output_grid, resample
from orbitct_app.extract.selection import orientation_label
from orbitct_app.extract.volume import AIR_HU, Stack, load_hu, plan_stacks
from orbitct_app.options import DEFAULT_CONTRAST, DEFAULT_KERNEL, SIZE_FIT, Options, Stage
from orbitct_app.report.records import ExamRecord
from orbitct_app.report.tables import EXTRACT_REPORT, SERIES_INDEX, ExtractRow, IndexRow, Row
from orbitct_app.threads import thread_map

logger = logging.getLogger(__name__)

NAME = "extract"


def fingerprint(options: Options) -> dict[str, Any]:
    """The options whose change makes a completed exam out of date.

    The selection options and a dry run are included only when they differ from the default,
    so the fingerprint of a run without them is unchanged.
    """
    result: dict[str, Any] = {
        "source": str(options.extract_source),
        "thickness": list(options.thickness) if options.thickness else None,
        "spacing": options.spacing,
        "size": options.size,
        "max_gap": options.max_gap,
        "body_threshold": options.body_threshold,
        "qc": qc.QC_VERSION,
    }
    if options.contrast != DEFAULT_CONTRAST:
        result["contrast"] = options.contrast
    if options.kernel != DEFAULT_KERNEL:
        result["kernel"] = options.kernel
    if options.one_per_exam:
        result["one_per_exam"] = True
    if options.dry_run:
        result["dry_run"] = True
    return result


def failure_rows(dicom_id: str, reason: str) -> dict[str, list[Row]]:
    return {EXTRACT_REPORT.name: [ExtractRow(dicom_id=dicom_id, decision="failed", reason=reason)]}


def summarize(record: ExamRecord) -> str:
    c = record.counts
    text = f"{c.get('converted', 0)} converted, {c.get('excluded', 0)} excluded, {c.get('failed', 0)} failed"
    return f"dry run: {text}, nothing written" if record.fingerprint.get("dry_run") else text


@dataclasses.dataclass(frozen=True)
class Converted:
    """Facts about one written NIfTI."""

    path: Path
    shape_ijk: tuple[int, int, int]
    body_voxels: int
    body_cropped_fraction: float
    """The fraction of the body mask outside the written grid (0.0 when nothing is cut)."""
    qc_path: Path | None
    """The QC picture (None when it could not be drawn)."""
    qc_thumbnail: str
    """A small JPEG of the QC picture as a data URI (embedded in the HTML report)."""


def source(options: Options) -> Path:
    """Extract reads the de-identified tree in an ``all`` run, else INPUT_DIR."""
    return options.extract_source


def prepare(options: Options) -> None:
    """Before the first exam: keep freed volumes in the process (the volumes of one series are
    reused by the next), and say when ``--contrast`` has little left to go on."""
    memory.keep_freed_memory()
    if options.stage is Stage.ALL and options.profile == "basic" and options.contrast != "any":
        logger.warning(
            "--contrast %s with all --profile basic: extract reads the de-identified copy, where "
            "ContrastBolusAgent is emptied and ContrastBolusStartTime and SeriesDescription are removed; "
            "only ContrastBolusRoute, ContrastBolusVolume and ContrastBolusAgentSequence remain as evidence",
            options.contrast,
        )


def finish(options: Options) -> None:
    """Nothing to do once the exams are done."""


def log_filters(options: Options) -> list[logging.Filter]:
    """Extract adds no log filter."""
    return []


def output_folder(dicom_id: str, options: Options) -> Path | None:
    """The exam's NIfTI folder in OUTPUT_DIR (a dry run writes none)."""
    return options.nifti_dir / dicom_id


def modifies_source(options: Options) -> bool:
    """Extract never changes what it reads."""
    return False


def stale_reason(record: ExamRecord, exam_dir: Path, options: Options) -> str:
    """Extract has no reason of its own beyond its input and output folders ('')."""
    return ""


@dataclasses.dataclass
class Planned:
    """One row of an exam's plan: a series or part and its decision from the headers.

    A *candidate* (``stack`` set) passed every rule; a real run converts it (or, with
    ``--one-per-exam``, only the best one that converts), a dry run reports it as converted.
    """

    row: ExtractRow
    stack: Stack | None = None
    name: str = ""
    """The output file name of a candidate (``<stem>[_part-<n>].nii.gz``)."""
    index_row: IndexRow | None = None
    """Its ``series_index.csv`` row once converted."""

    @property
    def candidate(self) -> Stack:
        """The stack of a candidate (only called on candidates)."""
        assert self.stack is not None
        return self.stack


def run_exam(exam_dir: Path, options: Options) -> ExamRecord:
    """Convert every selected stack of one exam; never raises for one series' problem.

    Every decision is made from the headers first (:func:`plan_exam`); then a real run converts
    the candidates, and a dry run (``options.dry_run``) reports them without reading a pixel.

    Raises
    ------
    ResourceError
        If an output cannot be written for lack of room (full disk, quota): the exam fails as a
        whole and its staged folder is discarded.
    """
    exam = scan_exam(exam_dir, SIDECAR_KEYWORDS)
    if not exam.series and not options.stage.anonymizes:  # (after anonymize, empty is legitimate)
        rows = [
            ExtractRow(dicom_id=exam.dicom_id, path=str(s.path), decision="failed" if s.is_problem else "excluded",
                       reason=s.reason) for s in exam.skipped
        ]  # each file with its own reason
        raise ExamError(f"no DICOM image files in the exam folder ({len(exam.skipped)} other file(s))",
                        rows={EXTRACT_REPORT.name: rows})
    final_dir = options.nifti_dir / exam.dicom_id
    planned = plan_exam(exam, options)
    candidates = [p for p in planned if p.stack is not None]
    if options.dry_run:
        _choose_planned(candidates, options)
    else:
        atomic.remove_stale(options.nifti_dir, exam.dicom_id)
        with atomic.staged_directory(final_dir) as staging:
            _convert_candidates(candidates, options, staging, final_dir)
        if not any(p.index_row is not None for p in candidates):
            final_dir.rmdir()  # nothing converted: no empty folder
    report: list[Row] = []
    counts: collections.Counter[str] = collections.Counter()
    for item in planned:
        report.append(item.row)
        counts[item.row.decision] += 1
        _log_row(item.row, options.dry_run)
    for skipped in exam.skipped:
        if skipped.is_problem:
            report.append(ExtractRow(dicom_id=exam.dicom_id, path=str(skipped.path), decision="failed",
                                     reason=skipped.reason))
            counts["failed"] += 1
            logger.error("%s: %s: %s", exam.dicom_id, skipped.path, skipped.reason)
    counts["produced"] = counts["converted"]
    index: list[Row] = [p.index_row for p in planned if p.index_row is not None]
    return ExamRecord(
        dicom_id=exam.dicom_id,
        stage=NAME,
        status="complete",
        fingerprint={},
        rows={EXTRACT_REPORT.name: report, SERIES_INDEX.name: index},
        counts=dict(counts),
    )


def plan_exam(exam: Exam, options: Options) -> list[Planned]:
    """Every series (or part) of an exam with its decision from the headers, in report order.

    Candidates (every rule passed) carry their stack and are marked ``converted``; what follows
    (conversion, the choice of ``--one-per-exam``) may change that.
    """
    stems = _series_stems(exam)
    planned: list[Planned] = []
    for series in exam.series:
        planned.extend(_plan_series(series, options, stems[series.key]))
    return planned


def _plan_series(series: SeriesInfo, options: Options, stem: str) -> list[Planned]:
    """The rows of one series: one per part (or one for the whole series when it is excluded)."""
    kernel = selection.series_kernel(series)
    contrast = selection.series_contrast(series)
    base = ExtractRow(
        dicom_id=series.dicom_id,
        series_instance_uid=series.series_uid,
        series_number=series.series_number,
        series_description=series.description,
        n_slices=series.n_instances,
        orientation=orientation_label(series.first.orientation),
        kernel=kernel.kernel,
        kernel_class=kernel.kind,
        contrast="yes" if contrast else "no",
        contrast_evidence="; ".join(contrast),
        decision="",
    )
    decision = selection.select_series(series)
    if not decision.convert:
        return [Planned(dataclasses.replace(base, decision="excluded", reason=decision.reason))]
    try:
        plan = plan_stacks(series, options.max_gap)
    except SeriesError as err:
        return [Planned(dataclasses.replace(base, decision="failed", reason=str(err)))]
    planned: list[Planned] = []
    for rejected in plan.rejected:
        planned.append(Planned(dataclasses.replace(
            base, part=rejected.part or None, n_slices=rejected.n_slices,
            decision="failed" if rejected.failed else "excluded", reason=rejected.reason,
        )))
    for stack in plan.stacks:
        row = _stack_facts(stack, base)
        decision = selection.select_stack(stack, options)
        if not decision.convert:
            planned.append(Planned(dataclasses.replace(row, decision="excluded", reason=decision.reason)))
            continue
        name = f"{stem}_part-{stack.part}" if stack.part else stem
        output_path = str(
            (options.nifti_dir / series.dicom_id / f"{name}{NIFTI_SUFFIX}").relative_to(options.output_dir)
        )
        reason = "; ".join(r for r in (stack.split_reason, _spacing_note(stack)) if r)
        row = dataclasses.replace(row, decision="converted", reason=reason, output_path=output_path)
        planned.append(Planned(row, stack, f"{name}{NIFTI_SUFFIX}"))
    planned.sort(key=lambda item: item.row.part or 0)  # parts in order, rejected ones too
    return planned


def _choose_planned(candidates: list[Planned], options: Options) -> None:
    """A dry run's choice under ``--one-per-exam``: the first of the ranking; nothing converts."""
    if not options.one_per_exam or not candidates:
        return
    ranked = _ranked(candidates)
    _mark_chosen(ranked[0], len(candidates))
    for other in ranked[1:]:
        _exclude(other, selection.one_per_exam_exclusion(ranked[0].candidate))


def _convert_candidates(candidates: list[Planned], options: Options, staging: Path, final_dir: Path) -> None:
    """Convert the candidates into ``staging``; with ``--one-per-exam`` in ranking order until one
    converts (a candidate that fails is reported so, and the next one is tried)."""
    chosen: Planned | None = None
    for item in _ranked(candidates) if options.one_per_exam else candidates:
        if chosen is not None:
            _exclude(item, selection.one_per_exam_exclusion(chosen.candidate))
            continue
        _convert_one(item, options, staging, final_dir, len(candidates) if options.one_per_exam else None)
        if options.one_per_exam and item.index_row is not None:
            _mark_chosen(item, len(candidates))
            chosen = item


def _ranked(candidates: list[Planned]) -> list[Planned]:
    return sorted(candidates, key=lambda p: selection.rank_key(p.candidate))


def _mark_chosen(item: Planned, n_candidates: int) -> None:
    note = selection.one_per_exam_note(n_candidates)
    item.row = dataclasses.replace(item.row, reason="; ".join(r for r in (item.row.reason, note) if r))


def _exclude(item: Planned, decision: selection.Decision) -> None:
    item.row = dataclasses.replace(item.row, decision="excluded", reason=decision.reason, output_path="")


def _convert_one(item: Planned, options: Options, staging: Path, final_dir: Path, candidates: int | None) -> None:
    """Convert one candidate; its row becomes excluded or failed when that does not work."""
    stack = item.candidate
    try:
        converted = convert_stack(stack, options, staging / item.name, candidates=candidates)
    except NotConvertible as err:
        item.row = dataclasses.replace(item.row, decision="excluded", reason=str(err), output_path="")
        return
    except (SeriesError, ValueError, MemoryError, OSError) as err:  # OSError: unreadable slice ...
        if (resource := resource_error(err)) is not None:
            raise resource from None  # no room: the whole exam fails, its staged folder goes
        item.row = dataclasses.replace(item.row, decision="failed", reason=one_line(err), output_path="")
        return
    item.index_row = _index_row(stack, options, converted, item.row)
    crop = converted.body_cropped_fraction
    reason = item.row.reason
    if crop:  # known only once the body mask is made: a dry run cannot say it
        reason = "; ".join(r for r in (reason, describe_crop(crop, shape=converted.shape_ijk)) if r)
    picture = converted.qc_path
    item.row = dataclasses.replace(
        item.row,
        reason=reason,
        body_cropped_fraction=crop,
        crop_note=describe_crop(crop) if crop else "",
        qc_path=str((final_dir / picture.name).relative_to(options.output_dir)) if picture is not None else "",
        qc_thumbnail=converted.qc_thumbnail,
    )


def convert_stack(stack: Stack, options: Options, path: Path, *, candidates: int | None = None) -> Converted:
    """Build, mask, resample and write one stack as ``path``, its JSON sidecar and QC picture.

    The sidecar (``<stem>.json``) and the QC picture (``<stem>_qc.png``, drawn while the
    output volume is in memory) are written beside the NIfTI. ``candidates``: with
    ``--one-per-exam``, how many stacks of the exam it was chosen from (for the sidecar).
    """
    geometry = stack.geometry
    volume = load_hu(stack)
    body = apply_body_mask(volume, geometry, options.body_threshold)
    grid = output_grid(geometry, body, options.spacing, options.size)
    cropped = cropped_fraction(body, geometry, grid)
    out = resample(volume, geometry, grid)
    del volume
    affine = grid.affine_ras()
    shape_ijk: tuple[int, int, int] = tuple(reversed(out.shape))
    centre_ijk = (np.linalg.inv(grid.affine_lps()) @ np.append(body.centroid_lps, 1.0))[:3]
    # compressing the NIfTI and drawing the QC picture both run in C for the most part: overlap them
    qc_result: list[tuple[Path | None, str]] = []
    jobs: tuple[Callable[[], object], ...] = (
        lambda: write_nifti(path, out, affine),
        lambda: qc_result.append(_write_qc(stack, options, path, out, affine, centre_ijk, cropped)),
    )
    try:
        for _ in thread_map(lambda job: job(), jobs):
            pass
    except BaseException:
        for leftover in (path, qc.qc_path(path, NIFTI_SUFFIX)):  # no QC picture without its NIfTI
            leftover.unlink(missing_ok=True)
        raise
    picture_path, thumbnail = qc_result[0]
    sidecar = _sidecar(stack, options, shape_ijk, body.n_voxels, cropped, candidates)
    sidecar["QCImage"] = picture_path.name if picture_path is not None else None
    write_sidecar(path.with_name(path.name[: -len(NIFTI_SUFFIX)] + ".json"), sidecar)
    return Converted(path, shape_ijk, body.n_voxels, cropped, picture_path, thumbnail)


def _write_qc(
    stack: Stack,
    options: Options,
    path: Path,
    out: np.ndarray,
    affine: np.ndarray,
    centre_ijk: np.ndarray,
    cropped: float,
) -> tuple[Path | None, str]:
    """Draw and write the QC picture beside ``path``; (its path, a thumbnail data URI).

    A picture that cannot be drawn is logged and left out: it never fails a conversion.
    """
    picture_path = qc.qc_path(path, NIFTI_SUFFIX)
    shape = " x ".join(str(n) for n in reversed(out.shape))
    try:
        picture = qc.render(
            out,
            affine,
            title=_qc_title(stack, cropped),
            subtitle=f"{path.name} · {shape} voxels of {options.spacing:g} mm",
            body_threshold=options.body_threshold,
            centre_ijk=centre_ijk,
        )
        qc.write_png(picture_path, picture)
        return picture_path, pictures.thumbnail_data_uri(picture.image)
    except Exception as err:  # the NIfTI is good; only its picture is missing
        if resource_error(err) is not None:
            raise  # no room: the exam fails as a whole
        logger.error("%s: no QC picture for %s: %s", stack.series.dicom_id, path.name, one_line(err))
        return None, ""


def _qc_title(stack: Stack, cropped: float) -> str:
    series = stack.series
    number = series.series_number if series.series_number is not None else "?"
    part = f" part {stack.part}" if stack.part else ""
    description = f" · {series.description}" if series.description else ""
    crop = f" · {describe_crop(cropped, brief=True)}" if cropped else ""
    return f"{series.dicom_id} · series {number}{part}{description}{crop}"


def describe_crop(fraction: float, shape: tuple[int, ...] | None = None, *, brief: bool = False) -> str:
    """How much of the body the output grid cuts, in words (for reasons and warnings; ``brief``
    for the QC picture's title line)."""
    if brief:
        return f"body cropped {100 * fraction:.3g} % (fraction {fraction:.3g})"
    grid = f" {shape[0]} x {shape[1]}" if shape else ""
    return f"body cropped: {100 * fraction:.3g} % of the body mask (fraction {fraction:.3g}) outside the{grid} grid"


def _stack_facts(stack: Stack, base: ExtractRow) -> ExtractRow:
    """The series' row with the facts of one of its stacks."""
    g = stack.geometry
    gaps = g.gaps
    kernel = selection.stack_kernel(stack)
    smallest, median, largest = float(gaps.min()), float(np.median(gaps)), float(gaps.max())
    return dataclasses.replace(
        base,
        part=stack.part or None,
        n_slices=stack.n_slices,
        spacing_min=smallest,
        spacing_median=median,
        spacing_max=largest,
        max_gap_mm=largest,
        tilt_deg=round(g.tilt_deg, 3),
        orientation=orientation_label(stack.slices[0].orientation),
        duplicates=len(stack.dropped_duplicates),
        kernel=kernel.kernel,
        kernel_class=kernel.kind,
        uneven_spacing=uneven_spacing(smallest, median, largest),
    )


def uneven_spacing(smallest: float, median: float, largest: float) -> bool:
    """Whether slice gaps are uneven enough to report: the largest over 1.5x the median gap,
    or the smallest under half of it."""
    return largest > 1.5 * median or smallest < 0.5 * median


def _spacing_note(stack: Stack) -> str:
    gaps = stack.geometry.gaps
    median = float(np.median(gaps))
    if uneven_spacing(float(gaps.min()), median, float(gaps.max())):
        return (
            f"uneven spacing ({gaps.min():.3g}-{gaps.max():.3g} mm, largest gap {gaps.max():.3g} mm); "
            "interpolated between actual positions"
        )
    return ""


def _index_row(stack: Stack, options: Options, converted: Converted, row: ExtractRow) -> IndexRow:
    """The ``series_index.csv`` row of a converted stack; its output path, kernel class and
    contrast as its ``extract_report.csv`` row has them."""
    g = stack.geometry
    series = stack.series
    return IndexRow(
        dicom_id=series.dicom_id,
        series_instance_uid=series.series_uid,
        series_description=series.description,
        original_spacing_x=g.column_spacing,
        original_spacing_y=g.row_spacing,
        original_spacing_z=float(np.median(g.gaps)),
        target_spacing_x=options.spacing,
        target_spacing_y=options.spacing,
        target_spacing_z=options.spacing,
        output_path=row.output_path,
        series_number=series.series_number,
        part=stack.part or None,
        shape_x=converted.shape_ijk[0],
        shape_y=converted.shape_ijk[1],
        shape_z=converted.shape_ijk[2],
        n_slices=stack.n_slices,
        tilt_deg=round(g.tilt_deg, 3),
        max_gap_mm=float(g.gaps.max()),
        body_cropped_fraction=converted.body_cropped_fraction,
        convolution_kernel=stack.slices[0].convolution_kernel,
        kernel_class=row.kernel_class,
        contrast=row.contrast,
    )


def _sidecar(
    stack: Stack,
    options: Options,
    shape_ijk: tuple[int, ...],
    body_voxels: int,
    cropped: float,
    candidates: int | None = None,
) -> dict[str, Any]:
    g = stack.geometry
    series = stack.series
    offsets = g.offsets
    kernel = selection.stack_kernel(stack)
    contrast = selection.series_contrast(series)
    return {
        "GeneratedBy": provenance.generated_by(),
        "Source": {
            "dicom_id": series.dicom_id,
            "SeriesInstanceUID": series.series_uid,
            "SeriesNumber": series.series_number,
            "SeriesDescription": series.description,
            "Part": stack.part,
            "SplitReason": stack.split_reason,
            **series.attributes,
        },
        "Geometry": {
            "NumberOfSlices": stack.n_slices,
            "PixelSpacing": [g.row_spacing, g.column_spacing],
            "SliceSpacingMedian": float(np.median(g.gaps)),
            "SliceSpacingMin": float(g.gaps.min()),
            "SliceSpacingMax": float(g.gaps.max()),
            "LargestGapMM": float(g.gaps.max()),
            "MeasuredTiltDeg": g.tilt_deg,
            "ImageOrientationPatient": [*g.row_dir.tolist(), *g.col_dir.tolist()],
            "DroppedDuplicateSlices": [s.sop_instance_uid for s in stack.dropped_duplicates],
        },
        "Selection": {
            "KernelClass": kernel.kind,
            "KernelClassifiedAs": kernel.vendor or None,
            "ContrastEnhanced": bool(contrast),
            "ContrastEvidence": contrast,
            "OnePerExamCandidates": candidates,
        },
        "Processing": {
            "Stage": options.stage.value,
            "SourceTree": (
                f"anonymized copy (profile {options.profile})" if options.stage.anonymizes else "INPUT_DIR as given"
            ),
            "Steps": [
                "sort slices by position along the normal",
                "HU from per-slice rescale; padding and values below -1000 HU to -1000",
                "body mask: largest 6-connected component above the threshold, 2D holes filled",
                "split into parts at slice gaps wider than MaxSliceGapMM (nothing interpolated across)",
                "one linear resampling onto an untilted isotropic grid centred on the body centroid"
                + (" (fit: on the middle of the body's in-plane extent)" if options.size == SIZE_FIT else ""),
            ],
            "ThicknessFilterMM": list(options.thickness) if options.thickness else None,
            "ContrastFilter": options.contrast,
            "KernelFilter": options.kernel,
            "OnePerExam": options.one_per_exam,
            "TargetSpacingMM": options.spacing,
            "InPlaceSize": shape_ijk[0],
            "InPlaceSizeOption": options.size,
            "MaxSliceGapMM": stack.gap_limit_mm,
            "MaxGapOptionMM": options.max_gap,
            "ShapeIJK": list(shape_ijk),
            "BodyThresholdHU": options.body_threshold,
            "BodyMaskVoxels": body_voxels,
            "BodyCroppedFraction": cropped,
            "OutsideBodyHU": AIR_HU,
            "Interpolation": "linear (bilinear in-plane at the orthogonal projection, linear along the normal)",
            "Datatype": "int16 HU",
        },
        "Slices": [_slice_entry(o, s) for o, s in zip(offsets, stack.slices, strict=True)],
    }


def _slice_entry(offset: float, info: SliceInfo) -> dict[str, Any]:
    """Where one source image sits in the output and where it came from (file, frame)."""
    entry: dict[str, Any] = {"OffsetAlongNormalMM": float(offset), "SOPInstanceUID": info.sop_instance_uid}
    if info.frame_index is not None:
        entry["FrameNumber"] = info.frame_index + 1  # DICOM frame numbers start at 1
    return entry


def _series_stems(exam: Exam) -> dict[str, str]:
    """A readable file stem per series, unique in the exam (a UID tag only where names collide)."""
    plain = {s.key: output_stem(exam.dicom_id, s.series_number, s.description) for s in exam.series}
    clashes = collections.Counter(plain.values())
    stems = {}
    for s in exam.series:
        tag = "" if clashes[plain[s.key]] == 1 else hashlib.sha1(s.key.encode()).hexdigest()[:8]
        stems[s.key] = output_stem(exam.dicom_id, s.series_number, s.description, tag)
    return stems


def _log_row(row: ExtractRow, dry_run: bool = False) -> None:
    part = f" part {row.part}" if row.part else ""
    logger.log(
        logging.ERROR if row.decision == "failed" else logging.INFO,
        "%s: series %s%s (%s): %s%s%s",
        row.dicom_id,
        row.series_number,
        part,
        row.series_description,
        "dry run, would be " if dry_run else "",
        row.decision,
        f": {row.reason}" if row.reason else "",
    )
