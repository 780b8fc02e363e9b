"""Text written to a CSV that a spreadsheet will open, kept from becoming a formula.

Excel, LibreOffice and Google Sheets run a cell starting with ``=``, ``+``,
``-`` or ``@`` (and a tab or carriage return before one) as a formula, so a
subscriber named ``=HYPERLINK(...)`` in a rejects file or an export would run
when opened (CSV injection). :func:`csv_safe` puts a ``'`` before such a cell,
which every spreadsheet shows as the text itself; :func:`unformula` undoes it
when stamp reads its own file back. Workbooks need no quote: their cells are
written with the text type.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """``text``, with a leading ``'`` when a spreadsheet would run it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def unformula(text: str) -> str:
    """Undo :func:`csv_safe`'s quote."""
    if text.startswith("'") and text[1:2] in FORMULA_START:
        return text[1:]
    return text
