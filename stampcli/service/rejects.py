"""The rows an import could not use, written next to its input with their row and reason.

CSV for CSV input (UTF-8 with a BOM, the input's delimiter), xlsx for
workbooks (every cell text, so nothing becomes a formula).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from stampcli.audience.resolve import Rejected
from stampcli.audience.sources import Table
from stampcli.cellsafe import csv_safe
from stampcli.errors import InputError


def rejects_path(file: Path, table: Table) -> Path:
    suffix = ".xlsx" if table.is_spreadsheet else ".csv"
    return file.with_name(f"{file.stem}.rejected{suffix}")


class RejectsFile:
    """Rejected rows streamed to a file as they come: CSV for CSV input, xlsx for workbooks.

    Written under a temporary name and moved into place at the end, so an
    interrupted import never leaves half a file; a stale file from an earlier
    run is removed when this run rejects nothing.
    """

    SHOWN = 5  # rows echoed in the summary

    def __init__(self, path: Path, table: Table) -> None:
        self.path = path
        self.table = table
        self.first: list[Rejected] = []
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._csv: tuple[IO[str], Any] | None = None
        self._book: tuple[Any, Any, Callable[[Any], Any]] | None = None
        self._xlsx = path.suffix.lower() == ".xlsx"

    def add(self, rej: Rejected) -> None:
        if len(self.first) < self.SHOWN and rej.duplicate_of is None:
            self.first.append(rej)
        values = [rej.values.get(c, "") for c in self.table.columns]
        try:
            if self._xlsx:
                sheet, text = self._open_xlsx()
                sheet.append([rej.row, text(rej.reason), *map(text, values)])
            else:
                self._open_csv().writerow([rej.row, rej.reason, *map(csv_safe, values)])
        except OSError as exc:
            raise self._error(exc) from None

    def finish(self) -> bool:
        """Move the file into place; False (and no file) if nothing was rejected."""
        try:
            if self._csv is not None:
                self._csv[0].close()
            elif self._book is not None:
                self._book[0].save(self._tmp)
            else:
                if self.path.exists() and self.path.name.endswith(
                    (".rejected.csv", ".rejected.xlsx")
                ):
                    self.path.unlink(missing_ok=True)
                return False
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None
        return True

    def abort(self) -> None:
        if self._csv is not None:
            self._csv[0].close()
        self._tmp.unlink(missing_ok=True)

    def _header(self) -> list[str]:
        return ["row", "reason", *self.table.columns]

    def _open_csv(self) -> Any:
        if self._csv is None:
            # UTF-8 with a BOM, so Excel opens it right; the input's delimiter, so the
            # locale's Excel splits it into columns.
            f = self._tmp.open("w", encoding="utf-8-sig", newline="")
            writer = csv.writer(f, delimiter=self.table.delimiter or ",")
            writer.writerow([csv_safe(h) for h in self._header()])
            self._csv = (f, writer)
        return self._csv[1]

    def _open_xlsx(self) -> tuple[Any, Callable[[Any], Any]]:
        if self._book is None:
            from openpyxl import Workbook
            from openpyxl.cell import WriteOnlyCell
            from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

            book = Workbook(write_only=True)  # rows go to a temporary file, not memory
            sheet = book.create_sheet("rejected")

            def text(value: Any) -> Any:
                # Always text: a value like "=HYPERLINK(...)" must never become a formula.
                cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", str(value)))
                cell.data_type = "s"
                return cell

            sheet.append([text(h) for h in self._header()])
            self._book = (book, sheet, text)
        return self._book[1], self._book[2]

    def _error(self, exc: OSError) -> InputError:
        return InputError(f"{self.path}: cannot write the rejected rows ({exc.strerror or exc})")
