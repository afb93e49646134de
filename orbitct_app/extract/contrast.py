"""Whether a series is contrast-enhanced, and the evidence, from its header alone.

Two kinds of evidence, both documented in ``docs/extraction.md``:

- **Attributes.** The Contrast/Bolus module (PS3.3 C.7.6.4) is written when contrast media was
  used; its agent is Type 2, so scanners often write the module with empty values for a plain
  scan. A series counts as enhanced when one of :data:`CONTRAST_ATTRIBUTES` is present with a
  value that says something: not empty, not a stated absence (:data:`ABSENT_VALUES`: ``NONE``,
  ``NO``, ``N/A`` ...) and, for the volume, not zero; a sequence needs an item.
- **SeriesDescription keywords** (:data:`DESCRIPTION_KEYWORDS`), matched case-insensitively as
  whole tokens: ``C+`` and ``+C``, ``CTA``, ``angio``, ``contrast``, ``KM`` (German
  Kontrastmittel), ``MDC`` (Italian mezzo di contrasto), ``CECT``, ``arterial``, ``venous``,
  ``portal``, ``perfusion``. A keyword preceded within two tokens by a negation
  (:data:`NEGATIONS`: ``non``, ``no``, ``without``, ``w/o``, ``pre``, ``ohne``, ``senza`` ...)
  does not count: "non contrast", "w/o contrast", "no IV contrast", "ohne KM" and
  "pre-contrast" are plain, and so are single tokens that are not keywords: ``NCCT``, ``C-``,
  ``noncontrast``, ``precontrast``, ``nativ``, ``plain``. "pre and post contrast" is enhanced.
  ``post`` alone is not a keyword (post-operative, post-processing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orbitct_app.discover import CONTRAST_ATTRIBUTES

ABSENT_VALUES = frozenset({"", "NONE", "NO", "N/A", "NA", "NIL", "NON", "NOT APPLIED", "WITHOUT", "-", "0"})
"""Values that state that no contrast was given (compared upper-case, stripped)."""

DESCRIPTION_KEYWORDS = (
    "C+", "+C", "CTA", "angio", "contrast", "KM", "MDC", "CECT", "arterial", "venous", "portal", "perfusion",
)
"""SeriesDescription tokens that mean contrast-enhanced (case-insensitive, whole tokens)."""

NEGATIONS = frozenset({"NON", "NO", "NOT", "WITHOUT", "WO", "PRE", "OHNE", "SANS", "SENZA", "SIN"})
"""Tokens that cancel a keyword within the two tokens after them."""

_KEYWORDS = {k.upper(): k for k in DESCRIPTION_KEYWORDS}
_TOKEN = re.compile(r"[A-Z0-9]+\+?|\+[A-Z0-9]+")
_NEGATION_WINDOW = 2


def attribute_evidence(facts: Mapping[str, Any]) -> list[str]:
    """The keywords of :data:`CONTRAST_ATTRIBUTES` whose value is evidence, in that order.

    ``facts`` maps a keyword to its value as discovery read it: text for the plain attributes
    (a list for multi-valued ones), the number of items for the sequence.
    """
    found = []
    for keyword in CONTRAST_ATTRIBUTES:
        if keyword in facts and _says_something(keyword, facts[keyword]):
            found.append(keyword)
    return found


def _says_something(keyword: str, value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):  # the sequence's item count
        return value > 0
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        text = str(item if item is not None else "").strip().upper()
        if text in ABSENT_VALUES:
            continue
        if keyword == "ContrastBolusVolume":
            try:
                if float(text) == 0.0:
                    continue
            except ValueError:
                pass
        return True
    return False


def description_keyword(description: str) -> str | None:
    """The first contrast keyword of a SeriesDescription that no negation cancels, or None."""
    text = (description or "").upper().replace("W/O", " WITHOUT ").replace("W/", " WITH ")
    tokens = _TOKEN.findall(text)
    for i, token in enumerate(tokens):
        keyword = _KEYWORDS.get(token)
        if keyword is None:
            continue
        if any(t in NEGATIONS for t in tokens[max(0, i - _NEGATION_WINDOW) : i]):
            continue
        return keyword
    return None


def contrast_evidence(facts: Mapping[str, Any], description: str) -> list[str]:
    """Every piece of evidence that a series is contrast-enhanced ([] when there is none):
    attribute keywords, then ``description keyword <keyword>``."""
    evidence = attribute_evidence(facts)
    keyword = description_keyword(description)
    if keyword is not None:
        evidence.append(f"description keyword {keyword}")
    return evidence
