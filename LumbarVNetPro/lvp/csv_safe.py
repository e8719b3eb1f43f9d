"""CSV cells a spreadsheet shows as text and never runs as a formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and some a leading tab or carriage return) as a formula, so a case key, centre or correction
reason typed as ``=HYPERLINK(...)`` would run on the statistician's machine (CSV injection, OWASP).
Such text cells are written with a leading apostrophe, which spreadsheets show as text; numbers
(a negative measurement) stay numbers.
"""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value

