"""Measure orbitct-app side by side with a straightforward implementation, dcm2niix and anonymizers.

Run through ``benchmarks/run.sh`` (it builds the tool environment). Everything is generated under
``benchmarks/work/`` (not committed); results go to ``benchmarks/RESULTS.md``. Each tool runs
``--reps`` times in alternation (so background load hits all of them alike) and the median wall
time is reported. The peak resident memory of the whole process tree comes from one more run of
each tool: sampling /proc every 20 ms costs about a tenth of a core, which would slow the runs
that use both cores more than the others, so timed runs are not sampled. The machine's 1-minute
load average is read before every repetition and reported with the results.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
BIN = Path(sys.executable).parent
PAGE = os.sysconf("SC_PAGE_SIZE")
WIDE_BODY_MM = (440.0, 260.0)
"""Width and depth of the wide-body phantom."""
GROUPS = ("extract", "anonymize", "scaling", "wide", "plan", "pixeltext")
CHECK_LOG = re.compile(r"pixel text check in ([0-9.]+) s: .*frames checked (\d+)/")
"""The DEBUG line the anonymize stage logs per series checked for text: seconds, frames."""


@dataclass
class Tool:
    """One command to time; ``prepare`` empties its output before every repetition."""

    name: str
    command: list[str]
    output: Path
    note: str = ""
    make_output_dir: bool = False
    walls: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    checks: list[list[tuple[float, int]]] = field(default_factory=list)
    """Per timed run: (seconds, frames) of each series' pixel text check, from the run's log."""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak_mb(self) -> float:
        return max(self.peaks)


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of a process and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def measure(tool: Tool, *, memory: bool = False) -> None:
    """Run the tool once from a clean output; record its wall time, or with ``memory`` only the
    tree's peak RSS (sampled, which takes CPU time from the tool)."""
    if tool.output.is_dir():
        shutil.rmtree(tool.output)
    elif tool.output.exists():
        tool.output.unlink()
    tool.output.parent.mkdir(parents=True, exist_ok=True)
    if tool.make_output_dir:
        tool.output.mkdir()
    peak = 0.0
    start = time.perf_counter()
    proc = subprocess.Popen(tool.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            done.wait(0.02)

    poller = threading.Thread(target=poll) if memory else None
    if poller is not None:
        poller.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    if poller is not None:
        poller.join()
    if proc.returncode != 0:
        raise SystemExit(f"{tool.name} failed ({proc.returncode}): {err.decode()[-2000:]}")
    if memory:
        tool.peaks.append(peak)
        print(f"  {tool.name:<22} {peak:7.0f} MB peak", flush=True)
    else:
        tool.walls.append(wall)
        log = tool.output / "logs" / "orbitct-app.log"
        if log.is_file():
            found = CHECK_LOG.findall(log.read_text(encoding="utf-8", errors="replace"))
            tool.checks.append([(float(seconds), int(frames)) for seconds, frames in found])
        print(f"  {tool.name:<22} {wall:7.2f} s", flush=True)


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    return (
        f"{model}; {len(os.sched_getaffinity(0))} usable cores; {mem_kb / 2**20:.1f} GiB RAM; "
        f"{platform.platform()}; Python {platform.python_version()}"
    )


def versions(app: Path) -> str:
    """Versions of the app and its runtime dependencies (as its own provenance lists them, in the
    app's venv), then of the other tools."""
    app_script = (
        "from orbitct_app import __version__\n"
        "from orbitct_app.provenance import dependency_versions\n"
        "print(f'orbitct-app {__version__}')\n"
        "for name, version in dependency_versions().items():\n"
        "    print(f'{name} {version}')\n"
    )
    tools_script = (
        "import importlib.metadata as md, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        print(f'{name} {md.version(name)}')\n"
        "    except md.PackageNotFoundError:\n"
        "        print(f'{name} (not installed)')\n"
    )
    found = []
    for command in ([str(app.parent / "python"), "-c", app_script],
                    [sys.executable, "-c", tools_script, "scipy", "dcm2niix", "dicognito", "dicom-anonymizer"]):
        found.extend(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines())
    return ", ".join(found)


def generate(quick: bool, groups: Sequence[str]) -> tuple[Path, Path, list[Path], Path]:
    """The thin-section head series (one exam), two exam sets for throughput (a small one,
    where start-up and the last exam weigh, and a larger one, closer to a real dataset) and a
    body wider than the default 256 mm grid (one exam), for ``--size fit``; only what the
    ``groups`` run is written."""
    from orbitct_app.synthetic import Phantom, SeriesSpec, write_exam

    n_slices = 120 if quick else 240
    single = WORK / f"single-{n_slices}"
    if not single.exists() and {"extract", "anonymize", "pixeltext"} & set(groups):
        spec = SeriesSpec(kind="axial", series_number=2, rows=512, cols=512, pixel_spacing=(0.45, 0.45),
                          n_slices=n_slices, slice_step=0.625)
        write_exam(single, "exam_full", [SeriesSpec(kind="scout", series_number=1), spec], seed=11)
    per_exam = 40 if quick else 100
    exam_sets = []
    for n_exams in (4, 8) if quick else (6, 24):
        exam_set = WORK / f"set-{n_exams}x{per_exam}"
        # every other exam gantry-tilted (15 degrees)
        if not exam_set.exists() and {"scaling", "plan", "pixeltext"} & set(groups):
            for i in range(n_exams):
                spec = SeriesSpec(kind="axial", series_number=2, rows=512, cols=512, pixel_spacing=(0.45, 0.45),
                                  n_slices=per_exam, slice_step=1.25, tilt_deg=(0.0, 15.0)[i % 2])
                write_exam(exam_set, f"exam_{i:03d}", [SeriesSpec(kind="scout", series_number=1), spec],
                           seed=100 + i)
        exam_sets.append(exam_set)
    series_dir = single / "exam_full" / "S002"
    n_wide = 60 if quick else 120
    wide = WORK / f"wide-{n_wide}"
    if not wide.exists() and "wide" in groups:  # 440 x 260 mm, in a 461 mm field of view, 1.25 mm apart
        spec = SeriesSpec(kind="axial", series_number=2, rows=512, cols=512, pixel_spacing=(0.9, 0.9),
                          n_slices=n_wide, slice_step=1.25, series_description="Body 1.25")
        write_exam(wide, "exam_wide", [spec], seed=12, phantom=Phantom.wide(WIDE_BODY_MM[0], WIDE_BODY_MM[1]))
    return single, series_dir, exam_sets, wide


def ratio(a: Tool, b: Tool) -> float:
    return b.wall / a.wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller data, for trying the harness")
    parser.add_argument("--only", action="append", choices=GROUPS,
                        help="run only this group (repeatable); the results are printed, RESULTS.md is left alone")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    print("generating data ...", flush=True)
    single, series_dir, exam_sets, wide = generate(args.quick, args.only or GROUPS)
    out = WORK / "out"
    app = os.environ.get("ORBITCT_APP") or str(BIN / "orbitct-app")  # run.sh: the app's own venv
    py = sys.executable
    n_files = sum(1 for p in series_dir.iterdir() if p.is_file()) if series_dir.is_dir() else 0
    pigz = shutil.which("pigz")
    extract = [
        Tool(
            "orbitct-app extract",
            [app, str(single), str(out / "ours"), "extract", "-q", "--participant-label", "exam_full"],
            out / "ours",
        ),
        Tool(
            "baseline (pydicom+scipy)",
            [py, str(HERE / "baseline.py"), str(series_dir), str(out / "baseline.nii.gz")],
            out / "baseline.nii.gz",
        ),
        Tool(
            "dcm2niix -z y",
            [str(BIN / "dcm2niix"), "-z", "y", "-o", str(out / "d2n"), str(series_dir)],
            out / "d2n",
            note="pigz" if pigz else "internal zlib (no pigz on PATH)",
            make_output_dir=True,
        ),
    ]
    anonymize = [
        Tool(
            "orbitct-app anonymize",
            [app, str(single), str(out / "anon"), "anonymize", "-q", "--n-procs", "1",
             "--participant-label", "exam_full"],
            out / "anon",
        ),
        Tool("cp -r", ["cp", "-r", str(series_dir), str(out / "cp")], out / "cp"),
        Tool(
            "dicognito",
            [py, "-m", "dicognito", "--quiet", "-o", str(out / "dicognito"), str(series_dir)],
            out / "dicognito",
        ),
        Tool(
            "dicom-anonymizer",
            [str(BIN / "dicom-anonymizer"), str(series_dir), str(out / "dicom-anonymizer")],
            out / "dicom-anonymizer",
            make_output_dir=True,
        ),
    ]
    scaling = [
        Tool(
            f"all, {n_exams} exams, --n-procs {n}",
            [app, str(exam_set), str(out / f"np{n}"), "all", "-q", "--n-procs", str(n)],
            out / f"np{n}",
        )
        for exam_set in exam_sets
        for n_exams in [sum(1 for p in exam_set.iterdir() if p.is_dir()) if exam_set.is_dir() else 0]
        for n in (1, 2)
    ]
    wide_body = [
        Tool(
            f"extract wide body, --size {size}",
            [app, str(wide), str(out / f"wide-{size}"), "extract", "-q", "--size", size],
            out / f"wide-{size}",
        )
        for size in ("512", "fit")
    ]
    largest = exam_sets[-1]
    n_largest = sum(1 for p in largest.iterdir() if p.is_dir()) if largest.is_dir() else 0
    plan = [  # extract --dry-run: headers only, the rate of planning a dataset
        Tool(f"extract --dry-run, {n_largest} exams, --n-procs {n}",
             [app, str(largest), str(out / f"plan{n}"), "extract", "--dry-run", "-q", "--n-procs", str(n)],
             out / f"plan{n}")
        for n in (1, 2)
    ]
    # the default (--pixel-text flag) next to --pixel-text off, one process, the 240 files and the exam sets
    pixel_text = [
        Tool(f"anonymize {what}{', --pixel-text off' if off else ''}",
             [app, str(data), str(out / f"pt-{key}-{'off' if off else 'flag'}"), "anonymize", "-q", "--n-procs", "1",
              *(["--pixel-text", "off"] if off else [])],
             out / f"pt-{key}-{'off' if off else 'flag'}")
        for key, what, data in [("single", f"{n_files} files", single),
                                *((s.name, f"{n} exams", s) for s in exam_sets
                                  for n in [sum(1 for p in s.iterdir() if p.is_dir()) if s.is_dir() else 0])]
        for off in (False, True)
    ]
    groups: list[tuple[str, list[Tool]]] = [
        ("extract", extract), ("anonymize", anonymize), ("scaling", scaling), ("wide", wide_body), ("plan", plan),
        ("pixeltext", pixel_text),
    ]
    if args.only:
        groups = [(name, tools) for name, tools in groups if name in args.only]
    loads: list[float] = []
    for rep in range(args.reps):
        loads.append(load_average())
        print(f"repetition {rep + 1}/{args.reps} (load average {loads[-1]:.2f})", flush=True)
        for _, tools in groups:
            for tool in tools:
                measure(tool)
    print("memory (one sampled run each)", flush=True)
    for _, tools in groups:
        for tool in tools:
            measure(tool, memory=True)
    print(f"1-minute load average before the repetitions: {load_text(loads)}")
    if args.only:
        for name, tools in groups:
            print(f"\n{name}:\n" + "\n".join(result_rows(tools, tools[0])))
        if "wide" in args.only:
            print("\n" + "\n".join(wide_body_lines(wide_body, wide)))
        if "plan" in args.only:
            print("\n" + "\n".join(plan_lines(plan, largest)))
        if "pixeltext" in args.only:
            print("\n" + "\n".join(pixel_text_lines(pixel_text)))
        return
    write_results(groups, n_files, single, exam_sets, args, Path(app), wide, loads)


def load_average() -> float:
    """The machine's 1-minute load average (other sessions share it)."""
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def load_text(loads: list[float]) -> str:
    return f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f})" if loads else "not read"


def result_rows(tools: list[Tool], reference: Tool, per_file: int | None = None) -> list[str]:
    """Markdown table rows: median and minimum time, peak memory (rate), time relative to ``reference``."""
    lines = []
    for t in tools:
        rate = f" | {per_file / t.wall:.0f}" if per_file else ""
        note = f" ({t.note})" if t.note else ""
        lines.append(
            f"| {t.name}{note} | {t.wall:.2f} | {min(t.walls):.2f} | {t.peak_mb:.0f}{rate} "
            f"| {t.wall / reference.wall:.2f} |"
        )
    return lines


def wide_body_lines(tools: list[Tool], wide: Path) -> list[str]:
    """The wide-body section: what each grid size wrote (from the runs' tables) and cost."""
    import csv

    n_slices = sum(1 for p in (wide / "exam_wide" / "S002").iterdir() if p.is_file())
    written = []
    for tool in tools:
        with (tool.output / "series_index.csv").open(newline="") as fh:
            (row,) = csv.DictReader(fh)
        written.append(f"`{tool.name.split(', ')[1]}`: {row['shape_x']} x {row['shape_y']} x {row['shape_z']} voxels, "
                       f"body cropped {float(row['body_cropped_fraction']):.3f}")
    return [
        "## Wide body: `--size fit`",
        "",
        (f"One body series wider than the default 256 mm grid: {WIDE_BODY_MM[0]:g} x {WIDE_BODY_MM[1]:g} mm, "
         f"{n_slices} slices of 512 x 512 at 0.9 mm, 1.25 mm apart, extracted at 0.5 mm."),
        "",
        "| run | median s | min s | peak RSS MB | time / --size 512 |",
        "|---|---|---|---|---|",
        *result_rows(tools, tools[0]),
        "",
        "Written: " + "; ".join(written) + ".",
    ]


def plan_lines(tools: list[Tool], exam_set: Path) -> list[str]:
    """The plan section: ``extract --dry-run`` (headers only) over the largest exam set."""
    n_files = sum(1 for p in exam_set.rglob("*") if p.is_file())
    n_exams = sum(1 for p in exam_set.iterdir() if p.is_dir())
    return [
        "## Plan a run (`extract --dry-run`: headers only, no NIfTI)",
        "",
        f"The {n_exams}-exam set ({n_files} files): every decision from the headers, no pixel read.",
        "",
        "| run | median s | min s | peak RSS MB | files/s | exams/s |",
        "|---|---|---|---|---|---|",
        *(f"| {t.name} | {t.wall:.2f} | {min(t.walls):.2f} | {t.peak_mb:.0f} | {n_files / t.wall:.0f} | "
          f"{n_exams / t.wall:.1f} |" for t in tools),
    ]


def pixel_text_pairs(tools: list[Tool]) -> list[tuple[Tool, Tool]]:
    """(default, --pixel-text off) per data set."""
    return [(tools[i], tools[i + 1]) for i in range(0, len(tools), 2)]


def pixel_text_lines(tools: list[Tool]) -> list[str]:
    """The pixel text section: the default next to --pixel-text off, and what the check of each
    series cost (the seconds the anonymize stage logs per series, over every timed run)."""
    costs = []
    for default, _ in pixel_text_pairs(tools):
        checks = [check for run in default.checks for check in run]
        if not checks:
            costs.append(f"- {default.name}: no check logged")
            continue
        seconds = [c for c, _ in checks]
        per_frame = statistics.median(c / max(1, frames) for c, frames in checks)
        costs.append(
            f"- {default.name.removeprefix('anonymize ')}: {len(checks) // max(1, len(default.checks))} series of "
            f"{statistics.median(f for _, f in checks):.0f} frames per run; median {statistics.median(seconds):.3f} s "
            f"per series (range {min(seconds):.3f}-{max(seconds):.3f} s over {len(default.checks)} runs), "
            f"{1000 * per_frame:.2f} ms per frame"
        )
    return [
        "## Pixel text check (`--pixel-text`)",
        "",
        ("`anonymize --n-procs 1` with the default (`--pixel-text flag`: every kept series checked for "
         "text in its pixels) next to `--pixel-text off`, in alternation."),
        "",
        "| run | median s | min s | peak RSS MB | time / --pixel-text off |",
        "|---|---|---|---|---|",
        *(line for default, off in pixel_text_pairs(tools) for line in result_rows([default, off], off)),
        "",
        "The check per series (the time the anonymize stage logs for it at DEBUG):",
        "",
        *costs,
    ]


def write_results(groups: list[tuple[str, list[Tool]]], n_files: int, single: Path, exam_sets: list[Path],
                  args: argparse.Namespace, app: Path, wide: Path, loads: list[float]) -> None:
    (extract, anonymize, scaling, wide_body, plan, pixel_text) = (g[1] for g in groups)
    text_on, text_off = pixel_text_pairs(pixel_text)[0]
    ours, baseline, d2n = extract
    anon, cp, dicognito, dicom_anonymizer = anonymize
    pairs = [(scaling[i], scaling[i + 1]) for i in range(0, len(scaling), 2)]  # (1 process, 2) per set
    throughput = pairs[-1]  # the largest set measures throughput; the small one shows the worst case
    mb = sum(p.stat().st_size for p in (single / "exam_full" / "S002").iterdir()) / 2**20
    set_files = " and ".join(str(sum(1 for p in s.rglob("*") if p.is_file())) for s in exam_sets)

    rows = result_rows
    check = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    text = [
        "# Benchmark results",
        "",
        (f"Measured {datetime.date.today().isoformat()} with "
         f"`benchmarks/run.sh --reps {args.reps}{' --quick' if args.quick else ''}`."),
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions(app)}",
        (
            f"- Data (generated): one thin-section head series, {n_files} slices of 512 x 512 at 0.45 mm, "
            f"0.625 mm apart ({mb:.0f} MB); two exam sets of {set_files} files for throughput (one axial "
            "series and a scout per exam, every other series tilted 15 degrees)."
        ),
        (
            f"- Each tool ran {args.reps} times in alternation; times are medians (and minimum) of wall-clock "
            "seconds (unsampled runs), memory the peak resident set of the whole process tree "
            "(one more run each, sampled every 20 ms)."
        ),
        f"- The machine is shared: its 1-minute load average before the repetitions was {load_text(loads)}.",
        "",
        "## Extract one series (DICOM -> NIfTI)",
        "",
        "| tool | median s | min s | peak RSS MB | time / orbitct-app |",
        "|---|---|---|---|---|",
        *rows(extract, ours),
        "",
        (
            "orbitct-app and the baseline do the same work (HU, body mask, 0.5 mm resampling, 512 x 512 crop, "
            "gzip); dcm2niix only converts and compresses."
        ),
        "",
        "## Anonymize the same files",
        "",
        "| tool | median s | min s | peak RSS MB | files/s | time / orbitct-app |",
        "|---|---|---|---|---|---|",
        *rows(anonymize, anon, per_file=n_files),
        "",
        "## Parallel exams (`all`: anonymize + extract)",
        "",
        "| run | median s | min s | peak RSS MB | time / 1 process |",
        "|---|---|---|---|---|",
        *(line for one, two in pairs for line in rows([one, two], one)),
        "",
        *wide_body_lines(wide_body, wide),
        "",
        *plan_lines(plan, exam_sets[-1]),
        "",
        *pixel_text_lines(pixel_text),
        "",
        "## Targets",
        "",
        (f"- extract at least 8x faster than the baseline: {ratio(ours, baseline):.1f}x — "
         f"{check(ratio(ours, baseline) >= 8)}"),
        f"- extract faster than `dcm2niix -z y`: {ratio(ours, d2n):.2f}x — {check(ratio(ours, d2n) > 1)}",
        f"- extract peak RSS under 1 GB: {ours.peak_mb:.0f} MB — {check(ours.peak_mb < 1024)}",
        (f"- anonymize at least 4x the throughput of dicognito: {ratio(anon, dicognito):.1f}x — "
         f"{check(ratio(anon, dicognito) >= 4)}"),
        f"- anonymize within 10x of `cp -r`: {anon.wall / cp.wall:.1f}x — {check(anon.wall / cp.wall <= 10)}",
        (
            f"- `--n-procs 2` at least 1.7x faster than `--n-procs 1` on a set of exams "
            f"({throughput[0].name.split(', ')[1]}): "
            f"{ratio(throughput[1], throughput[0]):.2f}x — {check(ratio(throughput[1], throughput[0]) >= 1.7)}"
        ),
        *(
            f"- (`--n-procs 2` on the small set for reference, {one.name.split(', ')[1]}: {ratio(two, one):.2f}x; "
            "start-up and the last exam weigh more there)"
            for one, two in pairs[:-1]
        ),
        (
            f"- anonymize with the pixel text check (the default) within 1.5x of `--pixel-text off` ({n_files} files): "
            f"{ratio(text_off, text_on):.2f}x — {check(ratio(text_off, text_on) <= 1.5)}"
        ),
        f"- (dicom-anonymizer for reference: orbitct-app is {ratio(anon, dicom_anonymizer):.1f}x faster)",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
