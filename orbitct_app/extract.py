"""The extract stage: axial CT series of one exam to body-masked, isotropic int16 NIfTI.

Per series: select -> plan stacks -> load HU -> body mask -> output grid -> resample -> write.
Every series seen gets a row in ``extract_report.csv`` with its decision and reason; every
written NIfTI gets a row in ``series_index.csv``. The exam's NIfTI folder appears atomically.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from orbitct_app import atomic, provenance, qc
from orbitct_app.discover import Exam, SeriesInfo, SliceInfo, scan_exam
from orbitct_app.errors import ExamError, NotConvertible, SeriesError, one_line
from orbitct_app.nifti import NIFTI_SUFFIX, output_stem, write_nifti, write_sidecar
from orbitct_app.options import SIZE_FIT, Options
from orbitct_app.reports import EXTRACT_REPORT, SERIES_INDEX, ExamRecord, Row
from orbitct_app.resample import apply_body_mask, cropped_fraction, output_grid, resample
from orbitct_app.threads import thread_map
from orbitct_app.selection import orientation_label, select_series, select_stack
from orbitct_app.volume import AIR_HU, Stack, load_hu, plan_stacks

logger = logging.getLogger(__name__)

NAME = "extract"


def fingerprint(options: Options) -> dict[str, Any]:
    """The options whose change makes a completed exam out of date."""
    return {
        "source": str(options.extract_source),
        "thickness": list(options.thickness) if options.thickness else None,
        "spacing": options.spacing,
        "size": options.size,
        "max_gap": options.max_gap,
        "body_threshold": options.body_threshold,
        "qc": qc.QC_VERSION,
    }


def failure_rows(dicom_id: str, reason: str) -> dict[str, list[Row]]:
    return {EXTRACT_REPORT.name: [{"dicom_id": dicom_id, "decision": "failed", "reason": reason}]}


def summarize(record: ExamRecord) -> str:
    c = record.counts
    return f"{c.get('converted', 0)} converted, {c.get('excluded', 0)} excluded, {c.get('failed', 0)} failed"


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


def output_folder(dicom_id: str, options: Options) -> Path | None:
    """The exam's NIfTI folder in OUTPUT_DIR."""
    return options.nifti_dir / dicom_id


def modifies_source(options: Options) -> bool:
    """Extract never changes what it reads."""
    return False


def stale_reason(record: ExamRecord, exam_dir: Path, options: Options) -> str:
    """Extract has no reason of its own beyond its input and output folders ('')."""
    return ""


def run_exam(exam_dir: Path, options: Options) -> ExamRecord:
    """Convert every selected stack of one exam; never raises for one series' problem."""
    exam = scan_exam(exam_dir)
    if not exam.series and not options.stage.anonymizes:  # (after anonymize, empty is legitimate)
        raise ExamError(f"no DICOM image files in the exam folder ({len(exam.skipped)} other file(s))")
    final_dir = options.nifti_dir / exam.dicom_id
    atomic.remove_stale(options.nifti_dir, exam.dicom_id)
    report: list[Row] = []
    index: list[Row] = []
    counts: collections.Counter[str] = collections.Counter()
    stems = _series_stems(exam)
    with atomic.staged_directory(final_dir) as staging:
        for series in exam.series:
            for row, index_row in _extract_series(series, options, staging, final_dir, stems[series.key]):
                report.append(row)
                counts[row["decision"]] += 1
                if index_row is not None:
                    index.append(index_row)
                _log_row(row)
    for skipped in exam.skipped:
        if skipped.is_problem:
            row = {"dicom_id": exam.dicom_id, "path": str(skipped.path), "decision": "failed", "reason": skipped.reason}
            report.append(row)
            counts["failed"] += 1
            logger.error("%s: %s: %s", exam.dicom_id, skipped.path, skipped.reason)
    if not index:
        final_dir.rmdir()  # nothing converted: no empty folder
    counts["produced"] = counts["converted"]
    return ExamRecord(
        dicom_id=exam.dicom_id,
        stage=NAME,
        status="complete",
        fingerprint={},
        rows={EXTRACT_REPORT.name: report, SERIES_INDEX.name: index},
        counts=dict(counts),
    )


def _extract_series(
    series: SeriesInfo, options: Options, staging: Path, final_dir: Path, stem: str
) -> list[tuple[Row, Row | None]]:
    """Rows for one series: one per part (or one for the whole series when it is not converted)."""
    base = {
        "dicom_id": series.dicom_id,
        "series_instance_uid": series.series_uid,
        "series_number": series.series_number,
        "series_description": series.description,
        "n_slices": series.n_instances,
        "orientation": orientation_label(series.first.orientation),
    }
    decision = select_series(series)
    if not decision.convert:
        return [({**base, "decision": "excluded", "reason": decision.reason}, None)]
    try:
        plan = plan_stacks(series, options.max_gap)
    except SeriesError as err:
        return [({**base, "decision": "failed", "reason": str(err)}, None)]
    results: list[tuple[Row, Row | None]] = []
    for rejected in plan.rejected:
        decision_name = "failed" if rejected.failed else "excluded"
        cells = {"part": rejected.part or "", "n_slices": rejected.n_slices, "decision": decision_name}
        results.append(({**base, **cells, "reason": rejected.reason}, None))
    for stack in plan.stacks:
        row = {**base, **_stack_facts(stack)}
        decision = select_stack(stack, options)
        if not decision.convert:
            results.append(({**row, "decision": "excluded", "reason": decision.reason}, None))
            continue
        name = f"{stem}_part-{stack.part}" if stack.part else stem
        final_path = final_dir / f"{name}{NIFTI_SUFFIX}"
        try:
            converted = convert_stack(stack, options, staging / f"{name}{NIFTI_SUFFIX}")
        except NotConvertible as err:
            results.append(({**row, "decision": "excluded", "reason": str(err)}, None))
            continue
        except (SeriesError, ValueError, MemoryError, OSError) as err:  # OSError: disk full ...
            results.append(({**row, "decision": "failed", "reason": one_line(err)}, None))
            continue
        output_path = str(final_path.relative_to(options.output_dir))
        crop = converted.body_cropped_fraction
        notes = (stack.split_reason, _spacing_note(stack), describe_crop(crop, shape=converted.shape_ijk) if crop else "")
        reason = "; ".join(r for r in notes if r)
        qc_cells = {"qc_thumbnail": converted.qc_thumbnail, "qc_path": ""}
        if converted.qc_path is not None:
            qc_cells["qc_path"] = str((final_dir / converted.qc_path.name).relative_to(options.output_dir))
        done: Row = {"reason": reason, "output_path": output_path, "body_cropped_fraction": crop, **qc_cells}
        results.append(({**row, "decision": "converted", **done},
                        _index_row(stack, options, converted, output_path)))
    results.sort(key=lambda result: result[0].get("part") or 0)  # parts in order, rejected ones too
    return results


def convert_stack(stack: Stack, options: Options, path: Path) -> Converted:
    """Build, mask, resample and write one stack as ``path``, its JSON sidecar and QC picture.

    The sidecar (``<stem>.json``) and the QC picture (``<stem>_qc.png``, drawn while the
    output volume is in memory) are written beside the NIfTI.
    """
    geometry = stack.geometry
    volume = load_hu(stack)
    body = apply_body_mask(volume, geometry, options.body_threshold)
    grid = output_grid(geometry, body, options.spacing, options.size)
    cropped = cropped_fraction(body, geometry, grid)
    out = resample(volume, geometry, grid)
    del volume
    affine = grid.affine_ras()
    shape_ijk: tuple[int, int, int] = tuple(reversed(out.shape))  # type: ignore[assignment]
    centre_ijk = (np.linalg.inv(grid.affine_lps()) @ np.append(body.centroid_lps, 1.0))[:3]
    # compressing the NIfTI and drawing the QC picture both run in C for the most part: overlap them
    qc_result: list[tuple[Path | None, str]] = []
    jobs = (
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
    sidecar = _sidecar(stack, options, shape_ijk, body.n_voxels, cropped)
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
        return picture_path, qc.thumbnail_data_uri(picture.image)
    except Exception as err:  # noqa: BLE001 - the NIfTI is good; only its picture is missing
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


def _stack_facts(stack: Stack) -> Row:
    g = stack.geometry
    gaps = g.gaps
    return {
        "part": stack.part or "",
        "n_slices": stack.n_slices,
        "spacing_min": float(gaps.min()),
        "spacing_median": float(np.median(gaps)),
        "spacing_max": float(gaps.max()),
        "max_gap_mm": float(gaps.max()),
        "tilt_deg": round(g.tilt_deg, 3),
        "orientation": orientation_label(stack.slices[0].orientation),
        "duplicates": len(stack.dropped_duplicates),
    }


def uneven_spacing(smallest: float, median: float, largest: float) -> bool:
    """Whether slice gaps are uneven enough to report: the largest over 1.5x the median gap,
    or the smallest under half of it."""
    return largest > 1.5 * median or smallest < 0.5 * median


def _spacing_note(stack: Stack) -> str:
    gaps = stack.geometry.gaps
    median = float(np.median(gaps))
    if uneven_spacing(float(gaps.min()), median, float(gaps.max())):
        return f"uneven spacing ({gaps.min():.3g}-{gaps.max():.3g} mm, largest gap {gaps.max():.3g} mm); interpolated between actual positions"
    return ""


def _index_row(stack: Stack, options: Options, converted: Converted, output_path: str) -> Row:
    g = stack.geometry
    series = stack.series
    kernel = series.attributes.get("ConvolutionKernel", "")
    return {
        "dicom_id": series.dicom_id,
        "series_instance_uid": series.series_uid,
        "series_description": series.description,
        "original_spacing_x": g.column_spacing,
        "original_spacing_y": g.row_spacing,
        "original_spacing_z": float(np.median(g.gaps)),
        "target_spacing_x": options.spacing,
        "target_spacing_y": options.spacing,
        "target_spacing_z": options.spacing,
        "output_path": output_path,
        "series_number": series.series_number,
        "part": stack.part or "",
        "shape_x": converted.shape_ijk[0],
        "shape_y": converted.shape_ijk[1],
        "shape_z": converted.shape_ijk[2],
        "n_slices": stack.n_slices,
        "tilt_deg": round(g.tilt_deg, 3),
        "max_gap_mm": float(g.gaps.max()),
        "body_cropped_fraction": converted.body_cropped_fraction,
        "convolution_kernel": "\\".join(kernel) if isinstance(kernel, list) else kernel,
    }


def _sidecar(
    stack: Stack, options: Options, shape_ijk: tuple[int, ...], body_voxels: int, cropped: float
) -> dict[str, Any]:
    g = stack.geometry
    series = stack.series
    offsets = g.offsets
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
        "Processing": {
            "Stage": options.stage.value,
            "SourceTree": "anonymized copy (profile " + options.profile + ")" if options.stage.anonymizes else "INPUT_DIR as given",
            "Steps": [
                "sort slices by position along the normal",
                "HU from per-slice rescale; padding and values below -1000 HU to -1000",
                "body mask: largest 6-connected component above the threshold, 2D holes filled",
                "split into parts at slice gaps wider than MaxSliceGapMM (nothing interpolated across)",
                "one linear resampling onto an untilted isotropic grid centred on the body centroid"
                + (" (fit: on the middle of the body's in-plane extent)" if options.size == SIZE_FIT else ""),
            ],
            "ThicknessFilterMM": list(options.thickness) if options.thickness else None,
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


def _log_row(row: Row) -> None:
    part = f" part {row['part']}" if row.get("part") else ""
    logger.log(
        logging.ERROR if row["decision"] == "failed" else logging.INFO,
        "%s: series %s%s (%s): %s%s",
        row["dicom_id"],
        row.get("series_number"),
        part,
        row.get("series_description", ""),
        row["decision"],
        f": {row['reason']}" if row.get("reason") else "",
    )
