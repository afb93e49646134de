"""Text that cannot act: CSV cells a spreadsheet will not run, log lines nobody can forge.

Names in this app's outputs come from its input (exam folder names, file names, series
descriptions, PatientIDs in the mapping files), so they can be written to act:

- A CSV cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
  to Excel and LibreOffice (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). :func:`csv_cell`
  neutralises it as OWASP recommends (CSV Injection): a single quote is put before it, so the
  cell is shown as the text it is. Plain numbers (``-200``, ``+1.5e3``) are left as they are.
  Every CSV the app writes goes through it (``to_csv``, the mapping files).
- A newline or another control character in a name would make one log line look like two (a
  forged line), or move the cursor on a terminal. :class:`ControlCharFilter`, on every handler of
  the app's logging, escapes them in a record's arguments (``\\n``, ``\\x1b``): the format strings
  are the app's own. Text marked as :class:`MultilineText` (tracebacks logged on purpose) is left
  alone.
"""

from __future__ import annotations

import logging
import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is run as a formula by spreadsheets (OWASP)."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def csv_cell(value: Any) -> Any:
    """``value`` made safe for a CSV cell: text that a spreadsheet would take for a formula
    gets a leading single quote, unless it is a plain number; anything else is returned as it
    is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def escape_controls(text: str) -> str:
    """``text`` with every control character (newline, carriage return, escape, the Unicode
    line and paragraph separators ...) written as a Python escape: one line, nothing moves."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


class MultilineText(str):
    """Text logged on purpose over several lines (a traceback): :class:`ControlCharFilter` leaves
    it as it is."""


class ControlCharFilter(logging.Filter):
    """Escape control characters in the arguments of a log record (see :func:`escape_controls`),
    and in its message when it has no arguments (a message built elsewhere). Never drops a
    record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: _safe_arg(v) for k, v in record.args.items()}
            else:
                record.args = tuple(_safe_arg(arg) for arg in record.args)
        elif isinstance(record.msg, str) and not isinstance(record.msg, MultilineText):
            record.msg = escape_controls(record.msg)
        return True


def _safe_arg(value: Any) -> Any:
    if isinstance(value, (MultilineText, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    escaped = escape_controls(text)
    return value if escaped == text else escaped
