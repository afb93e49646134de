"""Peak memory of ``orbitct-app anonymize`` on hostile input (issue 19): flat whatever the input.

Generates, in a temporary folder, one exam per case (a small ordinary CT series plus the hostile
file) and runs the installed ``orbitct-app ... anonymize --pixel-text off`` on each in a process
of its own, reporting its peak resident memory (``ru_maxrss``), its time and the hostile file's
fate. Run it with the test venv (it uses the test suite's generators)::

    .venv/bin/python benchmarks/hostile_memory.py [--app PATH] [--gib 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pydicom

from orbitct_app.synthetic import SeriesSpec, write_exam

import hostile

EXAM = "exam_m"


def _measure(app: str, root: Path, out: Path) -> tuple[float, float, int]:
    """Peak RSS (MiB) and seconds of one anonymize run in a process of its own, and its exit."""
    probe = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        "code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - t, code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, app, str(root), str(out), "anonymize", "--pixel-text", "off", "-q",
         "--n-procs", "1"],
        capture_output=True, text=True, check=True,
    )
    rss, seconds, code = done.stdout.split()
    return int(rss) / 1024, float(seconds), int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", default=str(Path(sys.executable).parent / "orbitct-app"))
    parser.add_argument("--gib", type=float, default=2.0, help="size of the big sparse file (GiB)")
    args = parser.parse_args()
    frames = int(args.gib * (1 << 30)) // (512 * 512 * 2)

    def big(files: list[Path]) -> None:
        hostile.sparse_multiframe(files[0], frames)

    def deflated_pixels(files: list[Path]) -> None:
        """A deflated multi-frame file of 200 MiB of pixel data (3 MiB of noise keep it under
        its cap of 100 times its compressed size)."""
        ds = pydicom.dcmread(files[0])
        ds.Rows = ds.Columns = 256
        ds.NumberOfFrames = 1600
        ds.PixelData = os.urandom(3 << 20) + bytes(256 * 256 * 2 * 1600 - (3 << 20))
        ds.save_as(files[0], enforce_file_format=True)

    cases: dict[str, tuple[str, Callable[[list[Path]], None]]] = {
        "ordinary exam (baseline)": ("1.2.840.10008.1.2.1", lambda files: None),
        f"a {args.gib:g} GiB multi-frame file (sparse pixel data)": ("1.2.840.10008.1.2.1", big),
        "sequences nested 5000 deep": ("1.2.840.10008.1.2.1", lambda files: hostile.plant_deep(files[0], 5000)),
        "deflate bomb: 0.5 MB inflating to 512 MiB": (
            "1.2.840.10008.1.2.1.99", lambda files: hostile.deflate_bomb(files[0], 512 << 20)),
        "deflate bomb: 2.7 MB inflating to 1 GiB": (
            "1.2.840.10008.1.2.1.99", lambda files: hostile.deflate_bomb(files[0], 1 << 30, noise=2 << 20)),
        "deflated file inflating to 42 MiB (under its caps)": (
            "1.2.840.10008.1.2.1.99", lambda files: hostile.deflate_bomb(files[0], 40 << 20, noise=2 << 20)),
        "deflated file of 200 MiB of pixel data (3.3 MB; under its caps)": (
            "1.2.840.10008.1.2.1.99", deflated_pixels),
        "65535 x 65535 pixels declared over 10 bytes": (
            "1.2.840.10008.1.2.1", lambda files: hostile.declare_matrix(files[0], 65535, 65535, pixel_bytes=10)),
        "bytes after the data set (item tag and text)": (
            "1.2.840.10008.1.2.1", lambda files: hostile.plant_trailing(files[0], "item_tag_then_text")),
    }
    print("| input | peak RSS | time | the hostile file |\n|---|---|---|---|")
    for name, (syntax, damage) in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "in"
            truth = write_exam(root, EXAM, [SeriesSpec(kind="axial", series_number=2, n_slices=24, rows=256,
                                                       cols=256, transfer_syntax=syntax)], seed=3)
            files = sorted(truth.series_by_number(2).files)
            damage(files)
            rss, seconds, _ = _measure(args.app, root, Path(tmp) / "out")
            rows = list(csv.DictReader((Path(tmp) / "out" / "anonymize_report.csv").open()))
            fate = next((r["reason"] for r in rows if r["path"] == str(files[0].relative_to(root / EXAM))),
                        "written")
            print(f"| {name} | {rss:.0f} MiB | {seconds:.1f} s | {fate} |")


if __name__ == "__main__":
    main()
