"""``stamp import``, ``stamp lists`` (and ``lists delete``/``remove``): draw ``service.lists``.

The import itself (``service.lists.import_list``) streams the file through the
campaign's reader, upserts in batches, and writes the rows it could not use
next to the input file; here: the options, a progress bar, the summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from stampcli.cli.common import (
    DbOption,
    FileDbOption,
    command,
    console,
    echo_json,
    err_console,
    fail,
    is_interactive,
    say_new_store,
)
from stampcli.errors import ExitCode
from stampcli.gcpace import collect_never
from stampcli.service.lists import (
    ProgressSink,
    delete_list,
    import_list,
    list_summaries,
    remove_contacts,
)
from stampcli.store.location import for_file, standalone

PROGRESS_MIN_BYTES = 2 * 1024 * 1024  # smaller files import before a bar would be seen


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
    app.add_typer(lists_app)


lists_app = typer.Typer(
    name="lists",
    help=(
        "Show the imported lists with their number of contacts and their fields; "
        "delete a list or remove contacts from it."
    ),
    invoke_without_command=True,
)


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
        str | None,
        typer.Option(
            "--list",
            "-l",
            metavar="NAME",
            help="Name of the list to import into; created if it does not exist "
            "(default: FILE's name without its extension: list.xlsx imports into list).",
            show_default=False,
        ),
    ] = None,
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
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="FILE is the whole list: remove the list's contacts that FILE does not "
            "have (their ledgers and suppressions stay).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    db: FileDbOption = None,
) -> None:
    """Import a subscriber list into the store."""
    choice = for_file(file, db)
    with _progress(file, as_json) as on_progress:
        result = import_list(
            file,
            list_name,
            choice,
            email_column=email_column,
            sheet=sheet,
            encoding=encoding,
            delimiter=delimiter,
            rejects=rejects,
            on_progress=on_progress,
            on_open=lambda c: say_new_store(c, "this import"),
            replace=replace,
        )
    if as_json:
        echo_json(result.as_dict())
        return
    counts = result.counts
    if result.named_from_file:
        console.print(
            f"No --list given: importing into list [bold]{escape(result.list_name)}[/] "
            "(the file's name); choose another with --list NAME",
            soft_wrap=True,
        )
    # soft_wrap: paths stay on one line, so they can be copied and grepped.
    console.print(
        f"Imported {escape(str(file))} into list [bold]{escape(result.list_name)}[/] "
        f"({escape(str(result.db))}):",
        soft_wrap=True,
    )
    console.print(
        f"  {counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged, "
        f"{_plural(result.duplicates, 'duplicate')}, {result.rejected} rejected"
    )
    if result.replaced:
        console.print(
            f"  --replace: {_plural(result.removed, 'contact')} no longer in the file "
            "removed from the list"
        )
    if result.suppressed_note:
        console.print(f"  {result.suppressed_note}", soft_wrap=True, markup=False)
    if result.rejects_file is not None:
        console.print(
            f"  rejected rows with reasons: {result.rejects_file}", soft_wrap=True, markup=False
        )
        for rej in result.first_rejects:
            console.print(f"    row {rej.row}: {rej.reason}", soft_wrap=True, markup=False)
        if result.rejected > len(result.first_rejects):
            console.print(f"    ... and {result.rejected - len(result.first_rejects)} more")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _wants_progress(file: Path, as_json: bool) -> bool:
    if as_json or not err_console.is_terminal:
        return False
    try:
        return file.stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def _progress(file: Path, as_json: bool) -> Iterator[ProgressSink | None]:
    """A transient bar on stderr for a big file on a terminal; else no progress calls."""
    # The rows make no reference cycles, but their dicts and tuples (a batch held
    # at a time) keep setting off the cycle collector: ~10% of an import's time.
    with collect_never():
        if not _wants_progress(file, as_json):
            yield None
            return
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            tasks: list[TaskID] = []

            def update(done: int, total: int | None, unit: str) -> None:
                if not tasks:
                    tasks.append(progress.add_task(unit, total=total, completed=done))
                progress.update(tasks[0], completed=done)

            yield update


@lists_app.callback(invoke_without_command=True)
@command
def lists_cmd(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the lists as a JSON array.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Show the imported lists."""
    if ctx.invoked_subcommand is not None:
        return
    choice = standalone(db)
    path = choice.location
    summaries = list_summaries(choice)
    if as_json:
        echo_json([s.as_dict() for s in summaries])
        return
    if not summaries:
        console.print(
            f"No lists in {path} yet. Import one with: stamp import FILE [--list NAME]",
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


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do it without asking (needed without a terminal).")
]


def _confirmed(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, --yes is needed."""
    if yes:
        return
    if not is_interactive():
        raise fail(f"not on a terminal, so stamp cannot ask: {question} Add --yes.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(int(ExitCode.OK))


@lists_app.command("delete")
@command
def delete_cmd(
    name: Annotated[str, typer.Argument(help="The list to delete.")],
    yes: YesOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Delete a list and its contacts (ledgers of past sends and suppressions stay)."""
    choice = standalone(db)
    _confirmed(f"Delete list {name!r} and all its contacts?", yes)
    removed = delete_list(choice, name)
    if as_json:
        echo_json({"list": name.strip(), "deleted": True, "contacts": removed})
        return
    console.print(
        f"Deleted list {escape(name.strip())!r} ({_plural(removed, 'contact')}).",
        soft_wrap=True,
        markup=False,
    )


@lists_app.command("remove")
@command
def remove_cmd(
    name: Annotated[str, typer.Argument(help="The list.")],
    addresses: Annotated[list[str], typer.Argument(help="Addresses to remove from it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Remove contacts from a list (to stop mailing them for good, suppress them instead)."""
    result = remove_contacts(standalone(db), name, addresses)
    if as_json:
        echo_json(result.as_dict())
        return
    console.print(
        f"Removed {_plural(result.removed, 'contact')} from list {result.list_name!r}"
        + (
            f" ({result.asked - result.removed} of the addresses were not in it)"
            if result.asked > result.removed
            else ""
        )
        + ".",
        soft_wrap=True,
        markup=False,
    )
