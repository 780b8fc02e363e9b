"""A report as an Excel workbook: one sheet per section, with native charts.

The charts are openpyxl's (``BarChart``, ``LineChart``): Excel and LibreOffice
draw them from the sheet's own cells, so they stay editable, unlike pictures.
Counts carry ``#,##0``, rates ``0.0%`` and times a date format; each sheet's
header row is frozen and filtered. Text from the store (addresses, domains,
link URLs, names) is written as text cells, never as formulas, whatever it starts
with (``=HYPERLINK(...)`` stays the text it is: see :mod:`stampcli.cellsafe`);
characters a workbook cannot hold are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from stampcli.reports.sections import INT, MS, PCT, TEXT, TIME, Chart, Section

_FORMATS = {INT: "#,##0", PCT: "0.0%", MS: "#,##0", TIME: "yyyy-mm-dd hh:mm"}
_HEAD_FILL = PatternFill("solid", fgColor="DDE4EE")
_TITLE_CHARS = 31  # Excel's longest sheet name


def _text(value: object) -> str:
    return str(ILLEGAL_CHARACTERS_RE.sub("", str(value)))


def _put(sheet: Worksheet, row: int, col: int, value: Any, kind: str) -> None:
    cell = sheet.cell(row=row, column=col)
    if value is None:
        return
    if kind == TIME:
        cell.value = datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
    elif kind in (INT, MS):
        cell.value = int(value)
    elif kind == PCT:
        cell.value = float(value)
    elif kind == TEXT and not isinstance(value, int | float):
        cell.value = _text(value)
        cell.data_type = "s"  # never a formula, whatever the text starts with
        return
    else:
        cell.value = value
    if kind in _FORMATS:
        cell.number_format = _FORMATS[kind]


def _chart(sheet: Worksheet, section: Section, chart: Chart, first_col: int) -> None:
    """A native chart of the chart's series, written beside the table (from ``first_col``)."""
    n = len(chart.series[0][1])
    if n == 0:
        return
    # the chart's own small table: labels, then one column per series
    sheet.cell(row=1, column=first_col, value="chart data").font = Font(italic=True)
    labels = chart.labels or [
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in chart.times
    ]
    for i, label in enumerate(labels, start=2):
        _put(sheet, i, first_col, label, TEXT)
    for j, (name, values) in enumerate(chart.series, start=1):
        _put(sheet, 1, first_col + j, name, TEXT)
        for i, v in enumerate(values, start=2):
            _put(sheet, i, first_col + j, v, PCT if chart.percent else INT)
    if chart.kind == "line":
        made: BarChart | LineChart = LineChart()
    else:
        made = BarChart()
        made.type = "bar" if chart.kind in ("hbar", "hstack") else "col"
        if chart.kind in ("stack", "hstack"):
            made.grouping = "stacked"
            made.overlap = 100
    made.title = chart.title
    made.height, made.width = 9, 18
    data = Reference(
        sheet,
        min_col=first_col + 1,
        max_col=first_col + len(chart.series),
        min_row=1,
        max_row=n + 1,
    )
    cats = Reference(sheet, min_col=first_col, min_row=2, max_row=n + 1)
    made.add_data(data, titles_from_data=True)
    made.set_categories(cats)
    if chart.percent:
        made.y_axis.number_format = "0%"
    anchor_col = get_column_letter(first_col + len(chart.series) + 2)
    sheet.add_chart(made, f"{anchor_col}2")


def _sheet(book: Workbook, section: Section, used: set[str]) -> None:
    title = _text(section.title)[:_TITLE_CHARS].replace("/", " ") or section.key
    while title in used:
        title = title[: _TITLE_CHARS - 1] + "_"
    used.add(title)
    sheet = book.create_sheet(title)
    for col, (name, _) in enumerate(section.columns, start=1):
        cell = sheet.cell(row=1, column=col)
        _put(sheet, 1, col, name, TEXT)
        cell.font = Font(bold=True)
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        width = 44 if col == 1 else max(10, min(24, len(name) + 2))
        sheet.column_dimensions[get_column_letter(col)].width = width
    for r, row in enumerate(section.rows, start=2):
        for col, (value, (_, kind)) in enumerate(zip(row, section.columns, strict=True), start=1):
            _put(sheet, r, col, value, kind)
    if section.columns:
        sheet.freeze_panes = "A2"
        last = get_column_letter(len(section.columns))
        sheet.auto_filter.ref = f"A1:{last}{max(1, len(section.rows)) + 1}"
    if section.note:
        note_row = len(section.rows) + 3
        _put(sheet, note_row, 1, section.note, TEXT)
        sheet.cell(row=note_row, column=1).font = Font(italic=True)
    if section.chart is not None and section.rows:
        _chart(sheet, section, section.chart, len(section.columns) + 2)


def write(path: Path, sections: Sequence[Section], about: Sequence[tuple[str, str]]) -> None:
    """The workbook at ``path``: an "About" sheet (``about``: label, value), then one sheet
    per section. OSError if it cannot be written."""
    book = Workbook()
    info = book.active
    assert info is not None  # a new workbook has its first sheet
    info.title = "About"
    for r, (label, value) in enumerate(about, start=1):
        _put(info, r, 1, label, TEXT)
        info.cell(row=r, column=1).font = Font(bold=True)
        _put(info, r, 2, value, TEXT)
    info.column_dimensions["A"].width = 22
    info.column_dimensions["B"].width = 90
    used = {"About"}
    for section in sections:
        _sheet(book, section, used)
    book.save(path)
