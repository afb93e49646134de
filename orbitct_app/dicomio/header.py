"""The top-level values of an ordinary file's header, read from its first bytes as pydicom
gives them, without building a Dataset: discovery's fast path (:func:`orbitct_app.discover.fast_slice_info`).

The elements are read by :mod:`orbitct_app.dicomio.parse`; each value goes through pydicom's own
converter, so a value read here equals the one ``Dataset.get`` gives. Whatever cannot be mirrored
plainly raises :class:`~orbitct_app.dicomio.parse.Unsupported`: the caller then reads the file
with pydicom. No value of the file ever goes into an exception message.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import STR_VR
from pydicom.values import convert_value

from orbitct_app.dicomio.parse import (
    DOUBLE_FLOAT_PIXEL_DATA,
    FLOAT_PIXEL_DATA,
    SQ,
    Element,
    Part10,
    Unsupported,
    ascii_identity,
)

FAST_HEAD_BYTES = 64 * 1024
"""How much of a file the fast path reads: a header that does not end within it takes the
pydicom path."""

_SPECIFIC_CHARACTER_SET = 0x00080005


def keyword_tags(keywords: Iterable[str]) -> dict[str, tuple[int, str]]:
    """The tag and dictionary VR of each keyword: the table a :class:`FastHeader` reads by."""
    return {
        keyword: (tag, str(dictionary_VR(tag)))
        for keyword in keywords
        if (tag := tag_for_keyword(keyword)) is not None
    }


class FastHeader:
    """The top-level values of the keywords in ``tags`` (see :func:`keyword_tags`; any other
    keyword raises :class:`Unsupported`), from a parsed header's bytes.

    ``get`` returns what ``Dataset.get`` returns for them: each value goes through pydicom's own
    converter (:func:`pydicom.values.convert_value`) with the VR pydicom would use. Whatever that
    cannot mirror plainly (another VR than the dictionary's, text that is not ASCII, a sequence,
    a value pydicom fails to convert) raises :class:`Unsupported`.
    """

    def __init__(self, data: bytes, parsed: Part10, tags: Mapping[str, tuple[int, str]]) -> None:
        self._data = data
        self._tags = tags
        self._implicit = parsed.implicit
        self._elements: dict[int, Element] = {e.tag: e for e in parsed.elements}
        self.file_meta = {"TransferSyntaxUID": UID(parsed.syntax)}
        charset = self._elements.get(_SPECIFIC_CHARACTER_SET)
        if charset is not None and not ascii_identity(data[charset.start : charset.end]):
            raise Unsupported("character set that does not keep ASCII")
        if any(tag in self._elements for tag in (FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA)):
            raise Unsupported("float pixel data")  # pydicom's header ends there

    def __contains__(self, keyword: str) -> bool:
        return self._tags[keyword][0] in self._elements

    def keys(self) -> Iterable[int]:
        """The tags of the top-level elements (as ``Dataset.keys``)."""
        return self._elements.keys()

    def get(self, keyword: str, default: Any = None) -> Any:
        """The value of ``keyword`` as pydicom gives it, ``default`` when absent."""
        try:
            tag, vr = self._tags[keyword]
        except KeyError:
            raise Unsupported("an attribute the fast path does not read") from None
        elem = self._elements.get(tag)
        if elem is None:
            return default
        if vr == SQ:
            raise Unsupported("a sequence: functional groups take the pydicom path")
        if " or " in vr:
            vr = self._ambiguous_vr(elem)
        elif elem.vr is not None and elem.vr != vr:
            raise Unsupported("encoded VR differs from the dictionary's")
        return converted_value(tag, vr, self._data[elem.start : elem.end], self._implicit)

    def _ambiguous_vr(self, elem: Element) -> str:
        """US or SS, as pydicom resolves it: the encoded VR, or in implicit VR, by the
        PixelRepresentation beside it."""
        if elem.vr is not None:
            if elem.vr not in ("US", "SS"):
                raise Unsupported("pixel padding with another VR")
            return elem.vr
        representation = self.get("PixelRepresentation")
        if representation not in (0, 1):
            raise Unsupported("pixel padding without a plain PixelRepresentation")
        return "US" if representation == 0 else "SS"


@functools.lru_cache(maxsize=4096)
def converted_value(tag: int, vr: str, value: bytes, implicit: bool) -> Any:
    """An element value converted by pydicom (shared between files: read, never change it).

    Raises
    ------
    Unsupported
        For text that is not plain ASCII, or a value pydicom does not convert plainly.
    """
    if vr in STR_VR and (not value.isascii() or b"\x1b" in value):
        raise Unsupported("text that is not plain ASCII")
    raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True)
    try:
        # ASCII decodes alike in every character set that ascii_identity accepts
        return convert_value(vr, raw, None)
    except Exception as err:  # the pydicom path reports such values its way
        raise Unsupported("a value pydicom does not convert plainly") from err
