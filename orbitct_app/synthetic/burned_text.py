"""Text burned into the pixels of a series, or drawn in an overlay plane.

:class:`BurnedText` says what text goes where (a :class:`SeriesSpec` field); :func:`burn_text`
renders it into an image's pixels and :func:`add_overlay` into overlay plane (6000,3000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

TextPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right", "centre"]


@dataclass(frozen=True)
class BurnedText:
    """Text rendered into the pixels of a series, as scanners and workstations burn it in.

    Rendered with Pillow's scalable default font (anti-aliased). In a CT image the text takes the
    highest value (``polarity="white"``: white on black) or is drawn in the lowest value on a
    box of the highest (``"black"``: black on white); in a summary capture it is white on the
    screen's dark background, or black on a white one.

    Attributes
    ----------
    lines : tuple of str
        The lines of text, top to bottom.
    position : {"top-left", "top-right", "bottom-left", "bottom-right", "centre"}
        Where the block of lines goes (4 pixels from the edges).
    size : int
        Font size in pixels.
    polarity : {"white", "black"}
        Light text on a dark ground, or dark text on a light box.
    instances : tuple of int, optional
        The images (InstanceNumbers, frame numbers of an enhanced series) that carry it; all when
        None.
    overlay : bool
        Draw the text in an overlay plane (6000,3000) of each image instead of into its pixels
        (classic files only; the pixels stay clean and BurnedInAnnotation says NO for CT).
    """

    lines: tuple[str, ...]
    position: TextPosition = "top-left"
    size: int = 12
    polarity: Literal["white", "black"] = "white"
    instances: tuple[int, ...] | None = None
    overlay: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("burned-in text needs at least one line")
        if self.position not in ("top-left", "top-right", "bottom-left", "bottom-right", "centre"):
            raise ValueError(f"unknown text position {self.position!r}")
        if self.polarity not in ("white", "black"):
            raise ValueError(f"polarity must be 'white' or 'black', got {self.polarity!r}")
        if self.size < 4:
            raise ValueError(f"font size must be >= 4, got {self.size}")

    def on(self, instance: int) -> bool:
        """Whether image ``instance`` carries the text."""
        return self.instances is None or instance in self.instances

    def mask(self, rows: int, cols: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The text's coverage (float32, 0 to 1, shape ``(rows, cols)``) and the box behind it
        ``(left, top, right, bottom)``, 3 pixels around the text."""
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.load_default(size=self.size)
        canvas = Image.new("L", (cols, rows), 0)
        draw = ImageDraw.Draw(canvas)
        text = "\n".join(self.lines)
        left, top, right, bottom = (int(v) for v in draw.multiline_textbbox((0, 0), text, font=font))
        width, height = right - left, bottom - top
        margin = 4
        x = {"left": margin, "right": cols - margin - width, "centre": (cols - width) // 2}[
            "centre" if self.position == "centre" else self.position.split("-")[1]]
        y = {"top": margin, "bottom": rows - margin - height, "centre": (rows - height) // 2}[
            "centre" if self.position == "centre" else self.position.split("-")[0]]
        draw.multiline_text((x - left, y - top), text, fill=255, font=font)
        box = (max(0, x - 3), max(0, y - 3), min(cols, x + width + 3), min(rows, y + height + 3))
        return np.asarray(canvas, dtype=np.float32) / np.float32(255.0), box


def burn_text(image: np.ndarray, text: BurnedText, high: float, low: float) -> None:
    """Render ``text`` into a 2D ``image`` in place: light text takes ``high`` (anti-aliased
    over what is there); dark text takes ``low`` on a box of ``high``."""
    coverage, (left, top, right, bottom) = text.mask(*image.shape)
    if text.polarity == "white":
        ink, ground = high, None
    else:
        ink, ground = low, high
        image[top:bottom, left:right] = ground
    blended = image.astype(np.float32) * (1 - coverage) + np.float32(ink) * coverage
    image[...] = np.rint(blended).astype(image.dtype)


def add_overlay(ds: Dataset, text: BurnedText, rows: int, cols: int) -> None:
    """Draw ``text`` in overlay plane 6000 of ``ds`` (graphics, the image's size, at its origin)."""
    from pydicom.pixels.utils import pack_bits

    coverage, _ = text.mask(rows, cols)
    ds.add_new(0x60000010, "US", rows)  # OverlayRows
    ds.add_new(0x60000011, "US", cols)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType: graphics
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    ds.add_new(0x60003000, "OW", pack_bits((coverage >= 0.5).astype(np.uint8)))  # OverlayData
