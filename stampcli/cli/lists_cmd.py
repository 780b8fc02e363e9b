"""``stamp import`` and ``stamp lists``: bring subscriber files into the store and show its lists.

The import streams the file through the same reader a campaign uses (so a
list imported here and the same file named in a campaign give the same
contacts), upserts in batches, and writes the rows it could not use, with
their row numbers and reasons, next to the input file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from stampcli.audience.columns import find_email_column
from stampcli.audience.resolve import AudienceStats, Rejected, contact_rows_from_table
from stampcli.audience.sources import Table, open_table
from stampcli.cli.common import (
    DbOption,
    FileDbOption,
    command,
    console,
    echo_json,
    err_console,
    open_store,
    say_new_store,
)
from stampcli.errors import InputError
from stampcli.gcpace import collect_never
from stampcli.records import ContactRow, ImportCounts
from stampcli.store import protocols
from stampcli.store.location import for_file, standalone

PROGRESS_MIN_BYTES = 2 * 1024 * 1024  # smaller files import before a bar would be seen
PROGRESS_EVERY = 5_000


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        help=(
            "Import a subscriber list (CSV, xlsx, xls, xlsb or ods) into the store.\n\n"
            "Every column is kept as a field. Addresses are trimmed, checked and deduplicated "
            "(the first row wins); a contact already in the list is updated, and importing "
            "the same file again changes nothing. Rows that cannot be used are written with "
            "their row number and reason next to FILE: list.csv gives list.rejected.csv "
            "(a workbook gives .rejected.xlsx)."
        ),
    )(import_cmd)
    app.command(
        "lists",
        help="Show the imported lists with their number of contacts and their fields.",
    )(lists_cmd)


@command
def import_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            help="The list to import: CSV (any delimiter and common encoding), xlsx, xls, "
            "xlsb or ods.",
            show_default=False,
        ),
    ],
    list_name: Annotated[
        str,
        typer.Option(
            "--list",
            "-l",
            help="Name of the list to import into; created if it does not exist.",
            show_default=False,
        ),
    ],
    email_column: Annotated[
        str | None,
        typer.Option(
            "--email-column",
            help="Column holding the address (default: the column named email, e-mail, "
            "Email Address, mail, ...).",
            show_default=False,
        ),
    ] = None,
    sheet: Annotated[
        str | None,
        typer.Option("--sheet", help="Worksheet to read (default: the first).", show_default=False),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="Encoding of a CSV file, e.g. utf-8, cp1252, utf-16 (default: detected).",
            show_default=False,
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            help="CSV delimiter: , ; | or tab (default: detected).",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Where to write the rejected rows (default: next to FILE, named like it "
            "with .rejected.csv or .rejected.xlsx).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    db: FileDbOption = None,
) -> None:
    """Import a subscriber list into the store."""
    choice = for_file(file, db)
    stats = AudienceStats()
    table = open_table(file, sheet=sheet, encoding=encoding, delimiter=delimiter)
    try:
        where = f"{file} (sheet {table.sheet!r})" if table.sheet else str(file)
        column = table.columns[find_email_column(table.columns, email_column, where)]
    except BaseException:
        table.close()
        raise
    rejects_path = rejects or _rejects_path(file, table)
    sink = _RejectsFile(rejects_path, table)
    stats.on_reject = sink.add
    contacts = contact_rows_from_table(table, column, stats)
    say_new_store(choice, "this import")
    try:
        # The rows make no reference cycles, but their dicts and tuples (a batch held
        # at a time) keep setting off the cycle collector: ~10% of an import's time.
        # Checkpoints run in a thread: one inside a commit stalls the import on disk.
        with (
            collect_never(),
            open_store(choice) as store,
            store.checkpoints_in_background(),
        ):
            if _wants_progress(file, as_json):
                counts = _import_with_progress(store, list_name, contacts, table)
            else:
                counts = store.contacts.upsert_rows(list_name, contacts)
            db_path = store.path
    except BaseException:
        sink.abort()
        table.close()  # the row generator may never have started, so close it here
        raise
    written = sink.finish()
    if as_json:
        echo_json(
            {
                "file": str(file),
                "list": list_name.strip(),
                "db": str(db_path),
                "email_column": column,
                "rows": stats.rows,
                "new": counts.new,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "duplicates": stats.duplicates,
                "rejected": stats.rejected_count,
                "rejects_file": str(rejects_path) if written else None,
            }
        )
        return
    # soft_wrap: paths stay on one line, so they can be copied and grepped.
    console.print(
        f"Imported {escape(str(file))} into list [bold]{escape(list_name.strip())}[/] "
        f"({escape(str(db_path))}):",
        soft_wrap=True,
    )
    console.print(
        f"  {counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged, "
        f"{_plural(stats.duplicates, 'duplicate')}, {stats.rejected_count} rejected"
    )
    if written:
        console.print(f"  rejected rows with reasons: {rejects_path}", soft_wrap=True, markup=False)
        for rej in sink.first:
            console.print(f"    row {rej.row}: {rej.reason}", soft_wrap=True, markup=False)
        if stats.rejected_count > len(sink.first):
            console.print(f"    ... and {stats.rejected_count - len(sink.first)} more")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _wants_progress(file: Path, as_json: bool) -> bool:
    if as_json or not err_console.is_terminal:
        return False
    try:
        return file.stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        return False


def _import_with_progress(
    store: protocols.Store, list_name: str, contacts: Iterator[ContactRow], table: Table
) -> ImportCounts:
    unit = "bytes" if table.kind == "csv" else "rows"
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        done, total = table.position()
        task = progress.add_task(unit, total=total or None, completed=done)

        def tracked() -> Iterator[ContactRow]:
            for i, contact in enumerate(contacts, start=1):
                if i % PROGRESS_EVERY == 0:
                    progress.update(task, completed=table.position()[0])
                yield contact

        counts = store.contacts.upsert_rows(list_name, tracked())
        progress.update(task, completed=table.position()[1])
    return counts


def _rejects_path(file: Path, table: Table) -> Path:
    suffix = ".xlsx" if table.is_spreadsheet else ".csv"
    return file.with_name(f"{file.stem}.rejected{suffix}")


class _RejectsFile:
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
        if len(self.first) < self.SHOWN:
            self.first.append(rej)
        values = [rej.values.get(c, "") for c in self.table.columns]
        try:
            if self._xlsx:
                sheet, text = self._open_xlsx()
                sheet.append([rej.row, text(rej.reason), *map(text, values)])
            else:
                self._open_csv().writerow([rej.row, rej.reason, *values])
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
            writer.writerow(self._header())
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


@command
def lists_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the lists as a JSON array.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Show the imported lists."""
    choice = standalone(db)
    path = choice.path
    if not path.exists():
        summaries = []
    else:
        with open_store(choice, readonly=True) as store:
            summaries = store.contacts.list_summaries()
    if as_json:
        echo_json(
            [
                {
                    "name": s.name,
                    "contacts": s.contacts,
                    "fields": s.fields,
                    "created_at": _iso(s.created_at),
                    "updated_at": _iso(s.updated_at),
                }
                for s in summaries
            ]
        )
        return
    if not summaries:
        console.print(
            f"No lists in {path} yet. Import one with: stamp import FILE --list NAME",
            soft_wrap=True,
        )
        return
    out = RichTable(title=escape(f"Lists in {path}"), title_justify="left")
    out.add_column("list")
    out.add_column("contacts", justify="right")
    out.add_column("fields")
    out.add_column("updated")
    for s in summaries:
        out.add_row(
            escape(s.name), f"{s.contacts:,}", escape(", ".join(s.fields)), _local(s.updated_at)
        )
    console.print(out)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")
