"""Write customers.xlsx from customers.csv: the same rows, with real Excel dates.

Run from anywhere: ``python examples/lists/make_xlsx.py``. signup_date becomes a
date cell (so readers must turn Excel dates back into ISO dates); every other
column stays text.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent


def main() -> None:
    with (HERE / "customers.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Customers"
    header, data = rows[0], rows[1:]
    sheet.append(header)
    date_col = header.index("signup_date")
    for row in data:
        values: list[object] = list(row)
        values[date_col] = date.fromisoformat(row[date_col])
        sheet.append(values)
        sheet.cell(row=sheet.max_row, column=date_col + 1).number_format = "yyyy-mm-dd"
    book.save(HERE / "customers.xlsx")


if __name__ == "__main__":
    main()
