"""A campaign's audience as a stream of contacts: read, validate, dedupe, exclude, segment.

The source is a file (:func:`read_contacts`) or one or more imported lists
(their union, in the order named). Each address is normalised once; the first
row with a given key wins and later ones are counted as duplicates. Contacts
in any of ``audience.exclude_lists`` are dropped, then the segment filters
what is left. Nothing is held in memory but the keys seen (a set that moves
to a temporary SQLite file past 100k keys, see :mod:`keyset`) and the keys of
the excluded lists. :class:`AudienceStats` is filled in as the
stream is consumed; rejected rows keep their row number, reason and values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stampcli.audience.activity import ACTIVITY_NAMES, Activity
from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.audience.columns import field_id, find_email_column
from stampcli.audience.keyset import KeySet
from stampcli.audience.segment import Segment, SegmentEvalError, compile_segment
from stampcli.audience.shapes import SAMPLE_ROWS, Shaper
from stampcli.audience.sources import Table, open_table
from stampcli.audience.states import detect_states
from stampcli.clock import SYSTEM_CLOCK
from stampcli.errors import ConfigError
from stampcli.records import Contact, Suppression
from stampcli.store.protocols import Store

if TYPE_CHECKING:  # pydantic is a third of start-up; `stamp import` needs none of it
    from stampcli.config import Campaign


@dataclass
class Rejected:
    """A row that could not become a contact, or (``duplicate_of`` set) a later copy of one."""

    row: int
    reason: str
    values: dict[str, Any]
    duplicate_of: int | None = None  # the row whose address this one repeats


@dataclass
class AudienceStats:
    rows: int = 0  # data rows (or stored contacts) read
    contacts: int = 0  # contacts yielded
    duplicates: int = 0  # rows whose address an earlier row already had
    segment_excluded: int = 0  # contacts the segment left out
    segment_errors: int = 0  # contacts the segment could not evaluate (left out too)
    list_excluded: int = 0  # contacts in an excluded list
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0  # every rejected row, also those handed to on_reject
    # Set to stream rejected rows elsewhere (the import writes them to a file) instead
    # of keeping them in ``rejected``: a million bad rows must not fill memory. It also
    # gets every duplicate row (``duplicate_of`` set, counted in ``duplicates`` only), so
    # the rejects file holds every row that was dropped.
    on_reject: Callable[[Rejected], None] | None = field(default=None, repr=False)
    first_segment_error: str | None = None  # the first evaluation error, for the summary
    # Rows an export marks as not to be mailed (listmonk blocklisted, Mailchimp
    # unsubscribed or cleaned; see stampcli.audience.states): a campaign reading the
    # file leaves them out (counted here); an import keeps them and collects their
    # suppressions in ``suppressions``, from the file's ``states_source``.
    state_excluded: int = 0
    suppressions: list[Suppression] = field(default_factory=list, repr=False)
    states_source: str | None = None


def read_contacts(
    path: Path,
    *,
    email_column: str | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    stats: AudienceStats,
) -> Iterator[Contact]:
    """Contacts from a CSV or workbook, normalised and deduped, streamed.

    Opening the file (and reading its header) happens at once, so an unusable
    file raises :class:`InputError` here rather than at the first ``next()``.
    """
    table = open_table(path, sheet=sheet, encoding=encoding, delimiter=delimiter)
    try:
        column = table.columns[find_email_column(table.columns, email_column, _source(table))]
    except BaseException:
        table.close()
        raise
    return contacts_from_table(table, column, stats)


def contacts_from_table(
    table: Table,
    email_column: str,
    stats: AudienceStats,
    *,
    excluded: set[str] | None = None,
    segment: Segment | None = None,
) -> Iterator[Contact]:
    """Contacts from an open table's rows, deduped, excluded and segmented; closes the table.

    This is the hot path of a file audience.
    """
    matches = segment.matches if segment is not None else None
    for key, email, fields, row in _unique_rows(table, email_column, stats, mail_only=True):
        if excluded and key in excluded:
            stats.list_excluded += 1
            continue
        contact = Contact(key, email, fields, row)
        if matches is not None and not _in_segment(matches, contact, stats):
            continue
        stats.contacts += 1
        yield contact


def contact_rows_from_table(
    table: Table, email_column: str, stats: AudienceStats
) -> Iterator[tuple[str, str, dict[str, Any], int]]:
    """What :func:`contacts_from_table` gives (without exclusions or segment) as tuples.

    ``(key, email, fields, row)``: an import stores them without needing the
    :class:`Contact` objects, whose construction is a tenth of its time.
    """
    for item in _unique_rows(table, email_column, stats):
        stats.contacts += 1
        yield item


def _unique_rows(
    table: Table, email_column: str, stats: AudienceStats, *, mail_only: bool = False
) -> Iterator[tuple[str, str, dict[str, Any], int]]:
    """Read, validate and dedupe the table's rows into (key, email, fields, row); closes it.

    ``mail_only``: leave out the rows the file's states suppress, rather than
    collecting their suppressions.
    """
    seen = KeySet()  # bounded memory however long the list
    keep = stats.on_reject or stats.rejected.append
    dropped = stats.on_reject
    states = detect_states(table.columns)
    if states is not None:
        stats.states_source = states.source

    def rejected(rej: Rejected) -> None:
        stats.rejected_count += 1
        keep(rej)

    with table, seen:
        rows = table.rows()
        sample = list(islice(rows, SAMPLE_ROWS))
        shaper = Shaper.decide(table.columns, (f for _, f, p in sample if p is None))
        shape = shaper.apply if shaper is not None else None
        for row, fields, problem in chain(sample, rows) if sample else rows:
            stats.rows += 1
            if problem is not None:
                rejected(Rejected(row, problem, fields))
                continue
            try:
                key, email = normalize_address(fields[email_column])
            except InvalidAddress as exc:
                reason = exc.reason
                if reason == "empty address":
                    reason = f"no address in column {email_column!r}"
                else:
                    reason = f"not an email address: {reason}"
                rejected(Rejected(row, reason, fields))
                continue
            first = seen.first_row(key, row)
            if first is not None:
                stats.duplicates += 1
                if dropped is not None:
                    dropped(Rejected(row, f"duplicate of row {first}", fields, first))
                continue
            # After the dedupe, so a rejects file only ever holds the cells as read.
            if shape is not None and (problem := shape(fields)) is not None:
                rejected(Rejected(row, problem, fields))
                continue
            if states is not None and (state := states.of(fields)) is not None:
                if mail_only:
                    stats.state_excluded += 1
                    continue
                stats.suppressions.append(Suppression(key, state[0], "import", "", state[1]))
            yield key, email, fields, row


def _in_segment(matches: Callable[[Contact], bool], contact: Contact, stats: AudienceStats) -> bool:
    try:
        if matches(contact):
            return True
        stats.segment_excluded += 1
    except SegmentEvalError as exc:
        stats.segment_errors += 1
        if stats.first_segment_error is None:
            stats.first_segment_error = str(exc)
    return False


def iter_audience(
    campaign: Campaign, store: Store | None, stats: AudienceStats
) -> Iterator[Contact]:
    """The campaign's audience, streamed; see the module docstring for the order of steps.

    :class:`ConfigError` for a bad segment or a list without a store, raised
    before the first contact; :class:`InputError` for an unusable file.
    """
    aud = campaign.audience
    segment = compile_segment(aud.segment) if aud.segment is not None else None
    if segment is not None and segment.reads_activity:
        if store is None:
            used = sorted(n for n in segment.names if n in ACTIVITY_NAMES)
            raise ConfigError(
                f"{campaign.path}: audience.segment uses {', '.join(used)}, which reads "
                "delivery events from the store (--db or STAMP_DB); none is open"
            )
        segment.bind_activity(Activity(store.activity, SYSTEM_CLOCK.time()))
    excluded: set[str] = set()
    if aud.exclude_lists or aud.list_:
        if store is None:
            raise ConfigError(
                f"{campaign.path}: audience.list and audience.exclude_lists need the store "
                "(--db or STAMP_DB), where lists are imported"
            )
        for name in aud.exclude_lists:
            excluded |= store.contacts.list_keys(name)
    if aud.file is not None:
        table = open_table(
            aud.file, sheet=aud.sheet, encoding=aud.encoding, delimiter=aud.delimiter
        )
        try:
            index = find_email_column(table.columns, aud.email_column, _source(table))
            if segment is not None:
                segment.check_columns(table.columns, str(aud.file))
        except BaseException:
            table.close()
            raise
        column = table.columns[index]
        return contacts_from_table(table, column, stats, excluded=excluded, segment=segment)
    assert store is not None and aud.list_ is not None
    return _filter(_union_lists(store, aud.list_, stats, segment), excluded, segment, stats)


def _union_lists(
    store: Store, names: list[str], stats: AudienceStats, segment: Segment | None
) -> Iterator[Contact]:
    streams = [store.contacts.iter_list(name) for name in names]  # every name checked up front
    if segment is not None:
        present: set[str] = set()
        for name in names:
            present |= store.contacts.fields_present(name, segment.names, field_id)
        if segment.unknown_names(present):
            # Only now read every field name, for a message that lists them all.
            columns = [c for name in names for c in store.contacts.list_fields(name)]
            segment.check_columns(columns, "list " + ", ".join(repr(n) for n in names))
    return _dedupe_union(streams, stats)


def _dedupe_union(streams: list[Iterator[Contact]], stats: AudienceStats) -> Iterator[Contact]:
    with KeySet() as seen:
        for stream in streams:
            for contact in stream:
                stats.rows += 1
                if not seen.add(contact.key):
                    stats.duplicates += 1
                    continue
                yield contact


def _filter(
    source: Iterator[Contact],
    excluded: set[str],
    segment: Segment | None,
    stats: AudienceStats,
) -> Iterator[Contact]:
    matches = segment.matches if segment is not None else None
    for contact in source:
        if excluded and contact.key in excluded:
            stats.list_excluded += 1
            continue
        if matches is not None and not _in_segment(matches, contact, stats):
            continue
        stats.contacts += 1
        yield contact


def _source(table: Table) -> str:
    return f"{table.path} (sheet {table.sheet!r})" if table.sheet else str(table.path)
