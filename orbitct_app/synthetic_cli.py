"""``orbitct-synth``: write a synthetic demo input root of phantom CT exams."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Literal

import click

from orbitct_app.synthetic import write_sample_dataset

logger = logging.getLogger(__name__)

_HELP = "Write OUT_DIR, a demo input root of synthetic head CT exams with known ground truth."


@click.command(name="orbitct-synth", help=_HELP)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-exams", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of exams to write.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for UIDs, noise, names and planted values.")
@click.option("--size", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="small: 128x128 series, quick; full: realistic 512x512 at 0.45 mm.")
@click.option("--enhanced", is_flag=True,
              help="Write every axial and coronal series as one Enhanced CT (multi-frame) file.")
def _command(out_dir: Path, n_exams: int, seed: int, size: Literal["small", "full"], enhanced: bool) -> int:
    t0 = time.perf_counter()
    try:
        truths = write_sample_dataset(
            out_dir, n_exams, seed=seed, size=size, enhanced=enhanced
        )
    except FileExistsError as exc:
        raise click.ClickException(f"{exc} (choose an empty OUT_DIR)") from exc
    n_series = sum(len(t.series) for t in truths)
    n_files = sum(len(t.files) for t in truths)
    click.echo(
        f"orbitct-synth: wrote {len(truths)} exams, {n_series} series, {n_files} files "
        f"to {out_dir} (size={size}, seed={seed}{', enhanced' if enhanced else ''}) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def main(args: list[str] | None = None) -> int:
    """Run ``orbitct-synth`` with ``args`` (default ``sys.argv[1:]``); return the exit code.

    Returns
    -------
    int
        0 on success, 1 when writing failed, 2 for a bad command line.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        rv = _command.main(args=args, prog_name="orbitct-synth", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return int(rv or 0)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
