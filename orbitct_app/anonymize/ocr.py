"""The OCR engine behind ``--pixel-text``: Tesseract, run offline through pytesseract.

Tesseract (the ``tesseract`` program with its English model, Debian's ``tesseract-ocr`` and
``tesseract-ocr-eng``) reads the candidate regions that :mod:`orbitct_app.anonymize.pixel_text` finds; it
never touches the network and downloads nothing (its model is a file of the package). pytesseract
runs the program on a temporary PNG and parses its word table.

The words read stay in this module's memory: :func:`read_words` returns their boxes and
confidences only, never their text (they may be a patient's name).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

PROGRAM = "tesseract"
LANGUAGE = "eng"
INSTALL_HINT = (
    "install Tesseract (Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-eng; the "
    "orbitct-app container image has it) or pass --pixel-text off"
)
MIN_CONFIDENCE = 60.0
"""A word counts when Tesseract's confidence (0-100) is at least this ..."""
MIN_CHARACTERS = 2
"""... and it has at least this many letters or digits."""
_CONFIG = "--oem 1 --psm 6"
"""LSTM engine; the image is one block of text lines (a stack of candidate regions)."""
_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class Word:
    """A word the engine read: where (pixels of the image given) and how sure, never what."""

    left: int
    top: int
    width: int
    height: int
    confidence: float


@functools.lru_cache(maxsize=1)
def engine_version() -> str | None:
    """Tesseract's version, or None when the program or its English model is missing.

    Every run with the check pays this before its first exam, so both questions go to one start
    of the program (``--version --list-langs``: Tesseract 5 answers both); a version that prints
    only one of the answers is asked the other on its own."""
    program = shutil.which(PROGRAM)
    if program is None:
        return None
    output = _ask(program, "--version", "--list-langs")
    version = _VERSION.search(output or "")
    if output is not None and "List of available languages" not in output:
        output = _ask(program, "--list-langs")
    if output is None or LANGUAGE not in _languages(output):
        return None
    if version is None:
        version = _VERSION.search(_ask(program, "--version") or "")
    return version.group(1) if version else "unknown"


_VERSION = re.compile(r"tesseract\s+v?(\d\S*)")


def _ask(program: str, *options: str) -> str | None:
    """What the program prints (stdout and stderr) for ``options``; None when it fails."""
    try:
        done = subprocess.run([program, *options], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr if done.returncode == 0 else None


def _languages(output: str) -> list[str]:
    """The models listed after ``List of available languages ...:``."""
    _, found, rest = output.partition("List of available languages")
    return [line.strip() for line in rest.splitlines()[1:]] if found else []


def engine_problem() -> str | None:
    """Why the OCR engine cannot run here (one line), or None when it can."""
    if importlib.util.find_spec("pytesseract") is None:  # a pinned dependency: absent only in a broken install
        return f"the Python package pytesseract is not installed; {INSTALL_HINT}"
    program = shutil.which(PROGRAM)
    if program is None:
        return f"the OCR engine Tesseract ({PROGRAM}) is not on PATH; {INSTALL_HINT}"
    if engine_version() is None:
        return f"Tesseract ({program}) does not run or lacks its English model ({LANGUAGE}); {INSTALL_HINT}"
    return None


def read_words(image: Image.Image) -> list[Word]:
    """The words Tesseract reads in ``image`` with enough confidence (see :data:`MIN_CONFIDENCE`).

    Raises
    ------
    RuntimeError
        When the engine fails (its message is not passed on).
    """
    import pytesseract

    try:
        table = pytesseract.image_to_data(
            image, lang=LANGUAGE, config=_CONFIG, output_type=pytesseract.Output.DICT, timeout=_TIMEOUT_S
        )
    except Exception as err:  # noqa: BLE001 - its message may quote what it read
        raise RuntimeError(f"the OCR engine failed ({type(err).__name__})") from None
    return _words(table)


def _words(table: Mapping[str, Sequence[object]]) -> list[Word]:
    """The words of pytesseract's table (numbers, or their text) with enough confidence."""
    words = []
    columns = [table[key] for key in ("text", "conf", "left", "top", "width", "height")]
    for text, conf, *box in zip(*columns, strict=True):
        confidence = float(str(conf))
        if confidence < MIN_CONFIDENCE or sum(c.isalnum() for c in str(text)) < MIN_CHARACTERS:
            continue
        left, top, width, height = (int(float(str(v))) for v in box)
        words.append(Word(left, top, width, height, confidence))
    return words
