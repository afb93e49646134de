#!/usr/bin/env python3
"""Check what a containerised orbitct-app run left in its mounted output folder.

Used by tests/container/smoke.sh (buildah, on this machine) and by the GitHub workflow (docker),
so both judge a run the same way. Standard library only: it runs on the host, outside the image.

    check_outputs.py OUTPUT_DIR --input INPUT_DIR --stage extract --uid 1000 --gid 1000

Checks, for the exams (first-level folders) of INPUT_DIR:
- extract/all: at least one ``nifti/<exam>/*.nii.gz`` per exam, each a gzipped NIfTI-1 volume
  (int16, 3-D, SIZE x SIZE in-plane, SPACING mm voxels, qform = sform = 1) with its JSON sidecar;
  ``series_index.csv`` with the documented leading columns and one row per NIfTI file;
  ``extract_report.csv``;
- anonymize/all: ``anonymized/<exam>/`` with files, and ``anonymize_report.csv``;
- always: ``logs/orbitct-app.log`` opening with the run header and the command;
- every file and folder under OUTPUT_DIR belongs to UID:GID (the caller, not root).

Exit status 0 when all hold, 1 otherwise (each problem printed on one line).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import struct
import sys
from pathlib import Path

INDEX_COLUMNS = [
    "dicom_id",
    "series_instance_uid",
    "series_description",
    "original_spacing_x",
    "original_spacing_y",
    "original_spacing_z",
    "target_spacing_x",
    "target_spacing_y",
    "target_spacing_z",
    "output_path",
]
NIFTI_INT16 = 4


def nifti_problems(path: Path, size: int, spacing: float) -> list[str]:
    """What is wrong with one .nii.gz file (an empty list when nothing is)."""
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(348)
    except OSError as err:
        return [f"{path}: not a readable gzip file ({err})"]
    if len(header) < 348:
        return [f"{path}: truncated NIfTI header"]
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return [f"{path}: not a NIfTI-1 header (sizeof_hdr != 348)"]
    dim = struct.unpack(endian + "8h", header[40:56])
    datatype = struct.unpack(endian + "h", header[70:72])[0]
    pixdim = struct.unpack(endian + "8f", header[76:108])
    qform, sform = struct.unpack(endian + "2h", header[252:256])
    magic = header[344:348]
    problems = []
    if magic != b"n+1\0":
        problems.append(f"magic {magic!r}")
    if dim[0] != 3 or min(dim[1:4]) < 1:
        problems.append(f"dim {dim[:4]} is not a 3-D volume")
    elif (dim[1], dim[2]) != (size, size):
        problems.append(f"in-plane size {dim[1]}x{dim[2]}, expected {size}x{size}")
    if datatype != NIFTI_INT16:
        problems.append(f"datatype {datatype}, expected int16 ({NIFTI_INT16})")
    if any(abs(p - spacing) > 1e-4 for p in pixdim[1:4]):
        problems.append(f"voxel size {pixdim[1:4]}, expected {spacing} mm")
    if (qform, sform) != (1, 1):
        problems.append(f"qform/sform codes {qform}/{sform}, expected 1/1")
    return [f"{path}: {p}" for p in problems]


def check(out: Path, exams: list[str], stage: str, uid: int, gid: int, size: int, spacing: float) -> list[str]:
    problems: list[str] = []
    if not exams:
        problems.append("the input has no exam folders")
    if stage in ("extract", "all"):
        niftis = sorted(out.glob("nifti/*/*.nii.gz"))
        for exam in exams:
            if not list((out / "nifti" / exam).glob("*.nii.gz")):
                problems.append(f"no NIfTI file for exam {exam} in {out / 'nifti' / exam}")
        for path in niftis:
            problems += nifti_problems(path, size, spacing)
            sidecar = path.with_name(path.name[: -len(".nii.gz")] + ".json")
            try:
                json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                problems.append(f"{sidecar}: missing or not JSON ({err})")
        index = out / "series_index.csv"
        if not index.is_file():
            problems.append(f"{index} is missing")
        else:
            with index.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                columns = reader.fieldnames or []
            if columns[: len(INDEX_COLUMNS)] != INDEX_COLUMNS:
                problems.append(f"{index}: columns start {columns[:len(INDEX_COLUMNS)]}")
            elif len(rows) != len(niftis):
                problems.append(f"{index}: {len(rows)} rows for {len(niftis)} NIfTI files")
            else:
                listed = sorted(out / row["output_path"] for row in rows)
                if listed != niftis:
                    problems.append(f"{index}: output_path column does not match the NIfTI files")
                unknown = {row["dicom_id"] for row in rows} - set(exams)
                if unknown:
                    problems.append(f"{index}: unknown dicom_id {sorted(unknown)}")
        if not (out / "extract_report.csv").is_file():
            problems.append(f"{out / 'extract_report.csv'} is missing")
    if stage in ("anonymize", "all"):
        for exam in exams:
            if not any(p.is_file() for p in (out / "anonymized" / exam).rglob("*")):
                problems.append(f"no de-identified files for exam {exam} in {out / 'anonymized' / exam}")
        if not (out / "anonymize_report.csv").is_file():
            problems.append(f"{out / 'anonymize_report.csv'} is missing")
    log = out / "logs" / "orbitct-app.log"
    if not log.is_file():
        problems.append(f"{log} is missing")
    else:
        text = log.read_text(encoding="utf-8", errors="replace")
        first = text.splitlines()[0] if text else ""
        if "orbitct-app " not in first or " run " not in first:
            problems.append(f"{log}: does not open with the run header")
        if not any("command: orbitct-app " in line and f" {stage}" in line for line in text.splitlines()):
            problems.append(f"{log}: the command line of the {stage} run is not logged")
    owners = {}
    for path in [out, *out.rglob("*")]:
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            owners[str(path)] = f"{st.st_uid}:{st.st_gid}"
    for name, owner in sorted(owners.items())[:10]:
        problems.append(f"{name} belongs to {owner}, expected {uid}:{gid}")
    if len(owners) > 10:
        problems.append(f"... and {len(owners) - 10} more paths with the wrong owner")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the run's OUTPUT_DIR on the host")
    parser.add_argument("--input", type=Path, required=True, help="the run's INPUT_DIR on the host")
    parser.add_argument("--stage", choices=["anonymize", "extract", "all"], default="extract")
    parser.add_argument("--uid", type=int, required=True, help="expected owner of every output")
    parser.add_argument("--gid", type=int, required=True, help="expected group of every output")
    parser.add_argument("--size", type=int, default=512, help="expected in-plane size (--size)")
    parser.add_argument("--spacing", type=float, default=0.5, help="expected voxel size (--spacing)")
    args = parser.parse_args(argv)
    exams = sorted(p.name for p in args.input.iterdir() if p.is_dir())
    problems = check(args.output, exams, args.stage, args.uid, args.gid, args.size, args.spacing)
    for problem in problems:
        print(f"check_outputs: {problem}", file=sys.stderr)
    if problems:
        return 1
    n = len(list(args.output.glob("nifti/*/*.nii.gz")))
    print(
        f"check_outputs: OK: {len(exams)} exam(s), {n} NIfTI file(s), reports and log in "
        f"{args.output}, all owned by {args.uid}:{args.gid}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
