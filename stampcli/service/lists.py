"""Subscriber lists in the store: ``import_list``, ``list_summaries``, deleting lists and contacts.

The import streams the file through the same reader a campaign uses (so a
list imported here and the same file named in a campaign give the same
contacts), upserts in batches, and writes the rows it could not use, with
their row numbers and reasons, next to the input file (``rejects.py``).
Nothing here prints: progress reaches ``on_progress``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stampcli.audience.address import normalize_keys
from stampcli.audience.columns import find_email_column
from stampcli.audience.resolve import AudienceStats, Rejected, contact_rows_from_table
from stampcli.audience.sources import Table, open_table
from stampcli.audience.states import suppress_states
from stampcli.errors import InputError
from stampcli.records import ContactRow, ImportCounts
from stampcli.service.rejects import RejectsFile, rejects_path
from stampcli.service.store import OnOpen, StoreArg, opened
from stampcli.store.location import StoreChoice

PROGRESS_EVERY = 5_000  # rows between two progress calls

# (done, total, unit): bytes of a CSV file or rows of a workbook; total None if unknown
ProgressSink = Callable[[int, int | None, str], None]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did (the JSON of ``stamp import --json``)."""

    file: Path
    list_name: str
    db: str  # the store's location (a URL never with its password)
    email_column: str
    rows: int
    counts: ImportCounts
    duplicates: int
    rejected: int
    rejects_file: Path | None  # None: nothing was rejected (and no file is left)
    first_rejects: list[Rejected] = field(default_factory=list)  # the first few, to show
    suppressed: int = 0  # addresses the file's own state column says not to mail
    suppressed_note: str | None = None  # which column said so, in a sentence
    named_from_file: bool = False  # no list name was given: it is the file's stem
    removed: int = 0  # --replace: members of the list that the file no longer has
    replaced: bool = False  # it was an import with --replace

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "list": self.list_name,
            "list_from_file_name": self.named_from_file,
            "db": str(self.db),
            "email_column": self.email_column,
            "rows": self.rows,
            "new": self.counts.new,
            "updated": self.counts.updated,
            "unchanged": self.counts.unchanged,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "suppressed": self.suppressed,
            "rejects_file": None if self.rejects_file is None else str(self.rejects_file),
            "replace": self.replaced,
            "removed": self.removed,
        }


def _tracked(
    contacts: Iterator[ContactRow], table: Table, on_progress: ProgressSink
) -> Iterator[ContactRow]:
    unit = "bytes" if table.kind == "csv" else "rows"
    done, total = table.position()
    on_progress(done, total or None, unit)
    for i, contact in enumerate(contacts, start=1):
        if i % PROGRESS_EVERY == 0:
            done, total = table.position()
            on_progress(done, total or None, unit)
        yield contact
    done, total = table.position()
    on_progress(total, total or None, unit)


def default_list_name(file: Path) -> str:
    """The list a file imports into when no name is given: its stem (``customers.xlsx``)."""
    name = file.stem.strip()
    if not name:
        raise InputError(f"{file}: cannot take a list name from this file name; give --list NAME")
    return name


def import_list(
    file: Path,
    list_name: str | None,
    store: StoreArg,
    *,
    email_column: str | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    rejects: Path | None = None,
    on_progress: ProgressSink | None = None,
    on_open: OnOpen | None = None,
    replace: bool = False,
) -> ImportResult:
    """Import the subscriber list ``file`` into list ``list_name`` of ``store``.

    ``store``: an open store, or a ``StoreChoice`` opened (and created) only once
    the file and its address column are known good, so a bad file creates no
    store. ``on_open`` is told just before that (the CLI says when it is new).
    ``rejects``: where the unusable rows go (default: next to ``file``).
    ``list_name`` None: the file's stem (``default_list_name``).
    ``replace``: the file is the whole list: members it does not have are removed
    (after the upsert; a file without one usable address is refused rather than
    emptying the list).
    """
    named_from_file = list_name is None
    if list_name is None:
        list_name = default_list_name(file)
    stats = AudienceStats()
    table = open_table(file, sheet=sheet, encoding=encoding, delimiter=delimiter)
    try:
        where = f"{file} (sheet {table.sheet!r})" if table.sheet else str(file)
        column = table.columns[find_email_column(table.columns, email_column, where)]
    except BaseException:
        table.close()
        raise
    target = rejects or rejects_path(file, table)
    sink = RejectsFile(target, table)
    stats.on_reject = sink.add
    contacts = contact_rows_from_table(table, column, stats)
    if on_progress is not None:
        contacts = _tracked(contacts, table, on_progress)
    seen: list[str] = []
    if replace:
        contacts = _keys_into(contacts, seen)
    removed = 0
    try:
        # Checkpoints run in a thread: one inside a commit stalls the import on disk.
        with opened(store, on_open=on_open) as into, into.checkpoints_in_background():
            counts = into.contacts.upsert_rows(list_name, contacts)
            note = suppress_states(into, stats.suppressions, stats.states_source)
            db_path = into.location
            if replace:
                if not seen:
                    raise InputError(
                        f"{file}: no usable address in the file; --replace would empty list "
                        f"{list_name.strip()!r}, so nothing was removed (to delete the list: "
                        f"stamp lists delete {list_name.strip()!r})"
                    )
                removed = into.contacts.keep_only(list_name, seen)
    except BaseException:
        sink.abort()
        table.close()  # the row generator may never have started, so close it here
        raise
    written = sink.finish()
    return ImportResult(
        file=file,
        list_name=list_name.strip(),
        db=db_path,
        email_column=column,
        rows=stats.rows,
        counts=counts,
        duplicates=stats.duplicates,
        rejected=stats.rejected_count,
        rejects_file=target if written else None,
        first_rejects=list(sink.first),
        suppressed=len(stats.suppressions),
        suppressed_note=note,
        named_from_file=named_from_file,
        removed=removed,
        replaced=replace,
    )


def _keys_into(contacts: Iterator[ContactRow], keys: list[str]) -> Iterator[ContactRow]:
    """The rows, each key also appended to ``keys`` (what ``--replace`` keeps)."""
    for contact in contacts:
        keys.append(contact[0])
        yield contact


@dataclass(frozen=True, slots=True)
class ListSummary:
    name: str
    contacts: int
    fields: list[str]
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "contacts": self.contacts,
            "fields": self.fields,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def list_summaries(store: StoreArg) -> list[ListSummary]:
    """The imported lists, with their contact counts and fields (none if no store yet)."""
    if isinstance(store, StoreChoice) and not store.exists:
        return []  # nothing is created by reading
    with opened(store, readonly=True) as s:
        return [
            ListSummary(x.name, x.contacts, list(x.fields), x.created_at, x.updated_at)
            for x in s.contacts.list_summaries()
        ]


def delete_list(store: StoreArg, list_name: str) -> int:
    """Delete ``list_name`` and its contacts; how many contacts it had.

    Ledgers of campaigns already sent to it and suppressions stay: they are what
    was sent and who must not be mailed, not the list.
    """
    with opened(store) as s:
        return s.contacts.delete_list(list_name)


@dataclass(frozen=True, slots=True)
class Removed:
    list_name: str
    asked: int  # addresses given
    removed: int  # of them, members of the list

    def as_dict(self) -> dict[str, Any]:
        return {"list": self.list_name, "asked": self.asked, "removed": self.removed}


def remove_contacts(store: StoreArg, list_name: str, addresses: Sequence[str]) -> Removed:
    """Remove ``addresses`` from ``list_name`` (InputError naming every bad address)."""
    keys = normalize_keys(addresses)
    with opened(store) as s:
        removed = s.contacts.remove_contacts(list_name, keys)
    return Removed(list_name.strip(), len(set(keys)), removed)
