"""Reading providers' suppression exports, and writing our own list as CSV or XLSX.

Formats are recognised by their header row, as each provider documents it:

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
                                                              custom (rejects.csv)
plain      one column of addresses, with or without a header  --reason, else manual
=========  ================================================  ==========================

Addresses that cannot be normalised are skipped and reported with their row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.compliance.times import parse_time
from stampcli.errors import InputError
from stampcli.store.suppressions import REASONS, Suppression, check_reason

EXPORT_COLUMNS = ("email", "reason", "source", "scope", "detail", "created_at")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
_EMAIL_HEADERS = ("email", "e_mail", "email_address", "emailaddress", "address", "mail")
# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MAX_SKIPPED_KEPT = 1000


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


@dataclass(frozen=True)
class _Row:
    number: int
    cells: dict[str, str]  # normalised header -> value
    raw: list[str]


def _norm(header: str) -> str:
    return header.strip().strip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def _unformula(text: str) -> str:
    """Undo the quote our CSV export puts before formula-like cells."""
    if text.startswith("'") and text[1:2] in _FORMULA_START:
        return text[1:]
    return text


# --------------------------------------------------------------------------- reading files


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_rows(path: Path) -> list[list[str]]:
    """Every row of ``path`` (CSV in any common encoding and delimiter, or a spreadsheet)."""
    try:
        if path.suffix.lower() in SPREADSHEET_SUFFIXES:
            from python_calamine import CalamineWorkbook

            book = CalamineWorkbook.from_path(str(path))
            sheet = book.get_sheet_by_index(0)
            return [[_cell_text(v) for v in row] for row in sheet.to_python(skip_empty_area=True)]
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a suppression file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    except Exception as exc:  # calamine raises its own types for damaged workbooks
        raise InputError(f"{path}: not a readable spreadsheet ({exc})") from None
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: a binary file, not CSV")
    text = _decode(data)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text)))
    except csv.Error as exc:
        raise InputError(f"{path}: not readable as CSV ({exc})") from None


def _delimiter(text: str) -> str:
    """The delimiter of the first non-empty line: the most frequent of , ; tab |.

    csv.Sniffer is not used: it takes a leading ' (our formula guard) for a quote.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # Excel's "CSV" on Windows


def _looks_like_address(text: str) -> bool:
    try:
        normalize_address(_unformula(text))
    except InvalidAddress:
        return False
    return True


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Format:
    name: str
    email_column: str  # normalised header, or "#0" for a headerless column index


def detect(header: Sequence[str]) -> _Format | None:
    """The export format a header row belongs to, or None if it is no header we know."""
    cols = {_norm(h) for h in header}
    if {"email", "reason", "source", "scope"} <= cols:
        return _Format("stamp", "email")
    if "email_address" in cols and cols & {"unsub_time", "clean_time", "member_rating", "leid"}:
        return _Format("mailchimp", "email_address")
    if {"email", "reason", "detail", "created_at"} <= cols and cols & {
        "expires_at",
        "last_event_at",
    }:
        return _Format("mandrill", "email")
    if "emailaddress" in cols and cols & {"suppressionreason", "origin"}:
        return _Format("postmark", "emailaddress")
    if "email_address" in cols and "suppression_reason" in cols:
        return _Format("postmark", "email_address")
    if "emailaddress" in cols and "reason" in cols:
        return _Format("ses", "emailaddress")
    if "address" in cols and cols <= {"address", "code", "error", "created_at", "tags"}:
        return _Format("mailgun", "address") if len(cols) > 1 else _Format("plain", "address")
    if {"email", "created"} <= cols:
        return _Format("sendgrid", "email")
    for name in _EMAIL_HEADERS:
        if name in cols:
            return _Format("plain", name)
    return None


def _detect_headerless(first: Sequence[str]) -> _Format | None:
    cells = [c.strip() for c in first]
    ses_reasons = ("BOUNCE", "COMPLAINT")
    if len(cells) >= 2 and cells[1].upper() in ses_reasons and _looks_like_address(cells[0]):
        return _Format("ses", "#0")
    for i, cell in enumerate(cells):
        if _looks_like_address(cell):
            return _Format("plain", f"#{i}")
    return None


# --------------------------------------------------------------------------- reasons


def _reason_for(fmt: str, row: dict[str, str], filename: str) -> tuple[str | None, str | None]:
    """(reason, detail) for one row of format ``fmt``; reason None means skip the row."""
    get = row.get
    detail: str | None
    if fmt == "stamp":
        return get("reason", ""), get("detail") or None
    if fmt == "sendgrid":
        if "ip" in row:
            return "complaint", "spam report" + (f" from {get('ip')}" if get("ip") else "")
        if "status" in row:
            prefix = "blocked" if "block" in filename else "bounced"
            detail = " ".join(x for x in (get("status", ""), get("reason", "")) if x)
            return "hard_bounce", f"{prefix}: {detail}" if detail else prefix
        if "reason" in row:
            return "invalid", get("reason") or None
        return "unsubscribed", "global unsubscribe"
    if fmt == "mailgun":
        if "code" in row or "error" in row:
            detail = " ".join(x for x in (get("code", ""), get("error", "")) if x)
            return "hard_bounce", detail or None
        if "tags" in row:
            tags = get("tags", "")
            return "unsubscribed", f"tags: {tags}" if tags and tags != "*" else None
        return "complaint", None
    if fmt == "postmark":
        why = get("suppressionreason") or get("suppression_reason") or get("reason") or ""
        origin = get("origin", "")
        detail = f"{why} ({origin})" if origin else why or None
        if why == "HardBounce":
            return "hard_bounce", detail
        if why == "SpamComplaint":
            return "complaint", detail
        return ("unsubscribed" if origin.lower() == "recipient" else "manual"), detail
    if fmt == "ses":
        why = (get("reason") or get("#1") or "").strip().upper()
        if why == "COMPLAINT":
            return "complaint", "SES account suppression list"
        return "hard_bounce", "SES account suppression list"
    if fmt == "mailchimp":
        if get("clean_time"):
            title = get("clean_campaign_title")
            return "hard_bounce", f"cleaned after {title}" if title else "cleaned"
        if "unsub_time" in row:
            why = " ".join(x for x in (get("unsub_reason", ""), get("unsub_reason_other", "")) if x)
            if "abuse" in why.lower():
                return "complaint", why
            return "unsubscribed", why or None
        return None, None
    if fmt == "mandrill":
        if (get("expired") or "").lower() in ("true", "1", "yes"):
            return None, None
        why = get("reason", "")
        detail = get("detail") or why or None
        mapped = {"hard-bounce": "hard_bounce", "spam": "complaint", "unsub": "unsubscribed"}
        if why == "soft-bounce":
            return None, None  # Mandrill lets these expire: not lasting
        return mapped.get(why, "manual"), detail
    return "manual", None


def _time_for(fmt: str, row: dict[str, str]) -> float:
    for name in (
        "created_at",
        "created",
        "createdat",
        "lastupdatetime",
        "unsub_time",
        "clean_time",
    ):
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
    rows = _read_rows(file)
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)
    if not rows:
        raise InputError(f"{file}: the file is empty")
    filename = file.name.lower()
    fmt = _detect_headerless(rows[0])
    start = 0
    headers: list[str]
    if fmt is None:
        fmt = detect(rows[0])
        if fmt is None:
            shown = ", ".join(c for c in rows[0][:8] if c)
            raise InputError(
                f"{file}: no column of email addresses found (header: {shown}); "
                "expected an export of SendGrid, Mailgun, Postmark, SES, Mailchimp or Mandrill, "
                "or a list with an 'email' column"
            )
        headers = [_norm(h) for h in rows[0]]
        start = 1
    else:
        headers = [f"#{i}" for i in range(max(len(r) for r in rows[:100]))]
    if fmt.name == "mailchimp" and not {"unsub_time", "clean_time"} & set(headers):
        raise InputError(
            f"{file}: a Mailchimp export of subscribed members, not of unsubscribed or "
            "cleaned ones; importing it would suppress your whole audience"
        )
    result = ImportResult(fmt.name)
    src = source or f"import:{file.name}"
    for number, raw in enumerate(rows[start:], start=start + 1):
        if not any(c.strip() for c in raw):
            continue
        result.rows += 1
        cells = {h: _unformula(raw[i].strip()) for i, h in enumerate(headers) if i < len(raw)}
        address = cells.get(fmt.email_column, "")
        if not address:
            result.skip(number, "no address")
            continue
        try:
            key, _ = normalize_address(address)
        except InvalidAddress as exc:
            result.skip(number, exc.reason)
            continue
        why, detail = _reason_for(fmt.name, cells, filename)
        if reason is not None:
            why = reason
        if why is None:
            result.skip(number, "not a lasting suppression (expired or temporary)")
            continue
        if why not in REASONS:
            result.skip(number, f"unknown reason {why!r}")
            continue
        row_scope = cells.get("scope", scope) if fmt.name == "stamp" and not scope else scope
        row_source = (cells.get("source") or src) if fmt.name == "stamp" else src
        result.items.append(
            Suppression(key, why, row_source, row_scope, detail, _time_for(fmt.name, cells))
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


def _csv_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(items: Iterable[Suppression], stream: IO[str]) -> int:
    """Write ``items`` as CSV with :data:`EXPORT_COLUMNS`; the number of rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for item in items:
        writer.writerow([_csv_safe(v) for v in _export_row(item)])
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
