"""Reading suppression files (providers' exports, plain lists), and writing ours as CSV or XLSX.

Files are read through :func:`stampcli.audience.sources.open_table`, the
hardened reader subscriber lists use (any common CSV dialect and encoding,
streamed, bounded lines and cells; workbooks behind a zip-bomb guard). The
format is recognised by the header row. A provider's export columns are
declared in its own module as ``EXPORT_FORMATS`` (found through the registry),
next to its suppression pull, so both map the provider's words to the same
:class:`~stampcli.events.model.Reason`:

=========  ================================================  ==========================
format     columns                                            reason
=========  ================================================  ==========================
stamp      email, reason, source, scope, detail, created_at   as written (our export)
sendgrid   email, created [, reason, status | ip]             bounces / blocks: hard
                                                              bounce; ``ip``: spam report;
                                                              ``reason`` only: invalid;
                                                              neither: global unsubscribe
mailgun    address, code, error, created_at                   hard bounce (bounces)
           address, tags, created_at                          unsubscribed
           address, created_at                                complaint (complaints)
postmark   EmailAddress, SuppressionReason, Origin, CreatedAt HardBounce, SpamComplaint,
                                                              ManualSuppression (Origin
                                                              Recipient = unsubscribed)
ses        EmailAddress, Reason, LastUpdateTime               BOUNCE, COMPLAINT
           no header: address,BOUNCE|COMPLAINT                (SES bulk-import file)
mailchimp  Email Address, ..., UNSUB_TIME, UNSUB_REASON       unsubscribed (audience export,
           Email Address, ..., CLEAN_TIME                     cleaned: hard bounce)
mandrill   email, reason, detail, created_at, expires_at      hard-bounce, spam, unsub,
                                                              invalid, custom (rejects.csv)
plain      one column of addresses, with or without a header  --reason, else manual
=========  ================================================  ==========================

Addresses that cannot be normalised are skipped and reported with their row.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.audience.sources import open_table
from stampcli.cellsafe import csv_safe, unformula
from stampcli.errors import InputError
from stampcli.events.model import REASONS, Reason
from stampcli.providers import SCHEMES, provider_module
from stampcli.store.suppressions import Suppression, check_reason
from stampcli.times import parse_time

EXPORT_COLUMNS = ("email", "reason", "source", "scope", "detail", "created_at")
_EMAIL_HEADERS = ("email", "e_mail", "email_address", "emailaddress", "address", "mail")
_MAX_SKIPPED_KEPT = 1000
_TIME_COLUMNS = ("created_at", "created", "createdat", "lastupdatetime", "unsub_time", "clean_time")

Cells = Mapping[str, str]
"""One row: normalised header (or ``#0``, ``#1``... without a header) -> trimmed value."""


@dataclass(frozen=True)
class ExportFormat:
    """One export layout: how to recognise its header and what each row means."""

    name: str  # what ``stamp suppress import`` reports ("sendgrid")
    email_column: str  # normalised header, or "#0" for a headerless column index
    # (normalised header names) -> whether a header row is this format's
    matches: Callable[[frozenset[str]], bool]
    # (cells, lower-case file name) -> (reason, detail); reason None: skip the row.
    # Providers answer a Reason; stamp's own export whatever its file says.
    reason: Callable[[Cells, str], tuple[str | None, str | None]]
    # (first row's cells) -> whether a file without a header is this format's; its
    # email_column must then be an address (checked here)
    headerless: Callable[[Sequence[str]], bool] | None = None


@dataclass
class ImportResult:
    """What a file held: the suppressions to add and the rows that were skipped."""

    format: str
    items: list[Suppression] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row, why); first 1000
    skipped_count: int = 0
    rows: int = 0

    def skip(self, row: int, why: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < _MAX_SKIPPED_KEPT:
            self.skipped.append((row, why))


def _norm(header: str) -> str:
    return header.strip().strip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def _looks_like_address(text: str) -> bool:
    try:
        normalize_address(unformula(text))
    except InvalidAddress:
        return False
    return True


# --------------------------------------------------------------------------- formats of no provider


def _stamp_reason(row: Cells, filename: str) -> tuple[str | None, str | None]:
    # as written; an unknown reason is reported by read_export, naming it
    return row.get("reason", ""), row.get("detail") or None


def _mailchimp_reason(row: Cells, filename: str) -> tuple[str | None, str | None]:
    get = row.get
    if get("clean_time"):
        title = get("clean_campaign_title")
        return Reason.HARD_BOUNCE, f"cleaned after {title}" if title else "cleaned"
    if "unsub_time" in row:
        why = " ".join(x for x in (get("unsub_reason", ""), get("unsub_reason_other", "")) if x)
        if "abuse" in why.lower():
            return Reason.COMPLAINT, why
        return Reason.UNSUBSCRIBED, why or None
    return None, None


def _manual(row: Cells, filename: str) -> tuple[str | None, str | None]:
    return Reason.MANUAL, None


_STAMP = ExportFormat(
    "stamp", "email", lambda cols: {"email", "reason", "source", "scope"} <= cols, _stamp_reason
)
# Mailchimp Marketing's audience export (not a sending provider here)
_MAILCHIMP = ExportFormat(
    "mailchimp",
    "email_address",
    lambda cols: (
        "email_address" in cols
        and bool(cols & {"unsub_time", "clean_time", "member_rating", "leid"})
    ),
    _mailchimp_reason,
)


def _provider_formats() -> list[ExportFormat]:
    """Every provider's ``EXPORT_FORMATS``, in registry order."""
    found: list[ExportFormat] = []
    modules: set[str] = set()
    for scheme, entry in SCHEMES.items():
        if entry.module not in modules:  # smtp and smtps share one
            modules.add(entry.module)
            found.extend(getattr(provider_module(scheme), "EXPORT_FORMATS", ()))
    return found


def formats() -> list[ExportFormat]:
    """The formats recognised, in the order they are tried (stamp's own first)."""
    return [_STAMP, _MAILCHIMP, *_provider_formats()]


def detect(header: Sequence[str]) -> ExportFormat | None:
    """The export format a header row belongs to, or None if it is no header we know."""
    cols = frozenset(_norm(h) for h in header)
    for fmt in formats():
        if fmt.matches(cols):
            return fmt
    for name in _EMAIL_HEADERS:
        if name in cols:
            return ExportFormat("plain", name, lambda cols: True, _manual)
    return None


def _detect_headerless(first: Sequence[str]) -> ExportFormat | None:
    cells = [c.strip() for c in first]
    for fmt in formats():
        if fmt.headerless is not None and fmt.headerless(cells):
            index = int(fmt.email_column.removeprefix("#"))
            if index < len(cells) and _looks_like_address(cells[index]):
                return fmt
    for i, cell in enumerate(cells):
        if _looks_like_address(cell):
            return ExportFormat("plain", f"#{i}", lambda cols: True, _manual)
    return None


def _time_for(row: Cells) -> float:
    for name in _TIME_COLUMNS:
        value = parse_time(row.get(name))
        if value is not None:
            return value
    return 0.0


# --------------------------------------------------------------------------- import


def read_export(
    path: str | Path,
    *,
    source: str | None = None,
    reason: str | None = None,
    scope: str = "",
) -> ImportResult:
    """Read a suppression export of any known format from ``path``.

    ``reason`` overrides what the file says; ``source`` defaults to
    ``import:<file name>``; ``scope`` is '' (everywhere) or a list name.
    """
    file = Path(path)
    if reason is not None:
        check_reason(reason)
    with open_table(file) as table:
        first = table.columns
        fmt = _detect_headerless(first)
        rows: Iterator[tuple[int, list[str]]] = (
            (number, list(fields.values())) for number, fields, _ in table.rows()
        )
        if fmt is not None:  # the "header" is the first row of data
            headers = [f"#{i}" for i in range(len(first))]
            rows = _chain_first(first, rows)
        else:
            fmt = detect(first)
            if fmt is None:
                shown = ", ".join(c for c in first[:8] if c)
                raise InputError(
                    f"{file}: no column of email addresses found (header: {shown}); "
                    "expected an export of SendGrid, Mailgun, Postmark, SES, Mailchimp or "
                    "Mandrill, or a list with an 'email' column"
                )
            headers = [_norm(h) for h in first]
        if fmt.name == "mailchimp" and not {"unsub_time", "clean_time"} & set(headers):
            raise InputError(
                f"{file}: a Mailchimp export of subscribed members, not of unsubscribed or "
                "cleaned ones; importing it would suppress your whole audience"
            )
        return _read_rows(fmt, headers, rows, file, source, reason, scope)


def _chain_first(
    first: list[str], rows: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield 1, first
    yield from rows


def _read_rows(
    fmt: ExportFormat,
    headers: list[str],
    rows: Iterator[tuple[int, list[str]]],
    file: Path,
    source: str | None,
    reason: str | None,
    scope: str,
) -> ImportResult:
    result = ImportResult(fmt.name)
    src = source or f"import:{file.name}"
    filename = file.name.lower()
    for number, raw in rows:
        if not any(c.strip() for c in raw):
            continue
        result.rows += 1
        cells = {h: unformula(raw[i].strip()) for i, h in enumerate(headers) if i < len(raw)}
        address = cells.get(fmt.email_column, "")
        if not address:
            result.skip(number, "no address")
            continue
        try:
            key, _ = normalize_address(address)
        except InvalidAddress as exc:
            result.skip(number, exc.reason)
            continue
        why, detail = fmt.reason(cells, filename)
        if reason is not None:
            why = reason
        if why is None:
            result.skip(number, "not a lasting suppression (expired or temporary)")
            continue
        if why not in REASONS:
            result.skip(number, f"unknown reason {why!r}")
            continue
        row_scope = cells.get("scope", scope) if fmt is _STAMP and not scope else scope
        row_source = (cells.get("source") or src) if fmt is _STAMP else src
        result.items.append(
            Suppression(key, str(why), row_source, row_scope, detail, _time_for(cells))
        )
    return result


# --------------------------------------------------------------------------- export


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _export_row(item: Suppression) -> list[str]:
    return [
        item.key,
        item.reason,
        item.source,
        item.scope,
        item.detail or "",
        _iso(item.created_at),
    ]


def write_csv(items: Iterable[Suppression], stream: IO[str]) -> int:
    """Write ``items`` as CSV with :data:`EXPORT_COLUMNS`; the number of rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for item in items:
        writer.writerow([csv_safe(v) for v in _export_row(item)])
        n += 1
    return n


def write_xlsx(items: Iterable[Suppression], path: str | Path) -> int:
    """Write ``items`` to an .xlsx workbook at ``path``; the number of rows."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("suppressions")
    sheet.append(list(EXPORT_COLUMNS))
    n = 0
    for item in items:
        cells = []
        for value in _export_row(item):
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"  # never a formula, whatever the text starts with
            cells.append(cell)
        sheet.append(cells)
        n += 1
    target = Path(path)
    try:
        book.save(target)
    except OSError as exc:
        raise InputError(f"{target}: cannot write it ({exc.strerror})") from None
    return n


def iter_export_rows(items: Iterable[Suppression]) -> Iterator[list[str]]:
    """The export's rows (header first), for callers that format them themselves."""
    yield list(EXPORT_COLUMNS)
    for item in items:
        yield _export_row(item)
