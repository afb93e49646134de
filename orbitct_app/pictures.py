"""Small pictures embedded in ``report.html``: a JPEG thumbnail as a ``data:`` URI.

Shared by the stages that make pictures (the QC picture of a NIfTI, the frame where the pixel
text check found text) and by the report page, which makes a thumbnail from a QC PNG when a
record holds none.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

THUMBNAIL_MAX_BYTES = 40_000
"""Upper bound of one embedded thumbnail (JPEG) in the HTML report."""


def thumbnail_data_uri(image: Image.Image, *, width: int = 448, max_bytes: int = THUMBNAIL_MAX_BYTES) -> str:
    """A small JPEG of ``image`` as a ``data:`` URI, at most ``max_bytes`` (before base64).

    The quality, then the width, are lowered until it fits.
    """
    scale = min(1.0, width / image.width)
    current = image
    while True:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        current = image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image
        for quality in (75, 60, 45, 30):
            buffer = io.BytesIO()
            current.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
            data = buffer.getvalue()
            if len(data) <= max_bytes:
                return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        scale *= 0.75
