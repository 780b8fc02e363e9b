"""Read a subscriber file lazily as (row number, fields): CSV in any common dialect, or a workbook.

One module for every list format so that the hardening (line and cell caps,
the zip-bomb guard, the encoding fallback) is written once and shared.

What a file is comes from its first bytes, checked against its extension: a
workbook named ``.csv``, a CSV named ``.xlsx``, an encrypted workbook, a PDF
or any other binary file is refused with an :class:`InputError` saying what
it really is. Files without a known extension, and an ``.xls`` that is really
xlsx (or the reverse), are read as what they contain.

CSV: the encoding is UTF-8 (with or without BOM), UTF-16/32 with a BOM,
UTF-16 without one (recognised by its zero bytes), else cp1252, else
latin-1; the whole file is checked for UTF-8 before choosing, in 1 MiB steps.
The delimiter (``,`` ``;`` tab ``|``) is the one that splits the first rows
into the most consistent number of columns. Quoted newlines and mixed line
endings (``\\r\\n``, ``\\n``, ``\\r``) are read as written. Rows are streamed;
no line may exceed 4 MiB and no cell 128 KiB, so a file without line
breaks cannot exhaust memory. Row numbers are the record's number as a
spreadsheet shows it: the header is row 1, the first record row 2, and a
quoted cell spanning several lines is still one row (errors reading the file
name its physical line instead).

Workbooks (xlsx, xlsm, xls, xlsb, ods) are read with python-calamine, the
first worksheet unless a sheet is named. A zip whose members unpack to more
than 512 MiB, or at a ratio above 100:1 past 50 MiB, is refused before it is
opened: calamine holds a whole sheet in memory (about twice its unpacked XML),
so that limit is what bounds memory; lists larger than that should come as CSV,
which streams. Formula cells give their last computed value; a merged cell's value
fills its whole area. Row numbers are the sheet's row numbers.

Every value is text: cells are trimmed; Excel dates become ISO dates
(``2024-03-01``, or ``2024-03-01T14:30:00`` with a time), whole numbers stay
whole (``42``, not ``42.0``), text stays text (``00123`` keeps its zeros),
booleans are ``TRUE``/``FALSE`` and empty cells are ``""``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from stampcli.audience.columns import check_header
from stampcli.errors import InputError

SPREADSHEET_KINDS = {
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".xls": "xls",
    ".xlsb": "xlsb",
    ".ods": "ods",
}
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".tab"}
DELIMITERS = (",", ";", "\t", "|")

SAMPLE_BYTES = 64 * 1024
SCAN_CHUNK = 1024 * 1024
MAX_LINE = 4 * 1024 * 1024  # bytes without a line break
MAX_UNZIPPED = 512 * 1024**2  # bytes a workbook may unpack to (~1M rows of 7 columns)
MAX_RATIO = 100  # compression ratio past BOMB_FLOOR bytes
BOMB_FLOOR = 50 * 1024**2
MAX_ZIP_MEMBERS = 10_000

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")
_BINARY_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
)

_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")

Row = tuple[int, dict[str, str], str | None]
"""(row number, fields by column name, problem with the row or None)."""


class Table:
    """An open subscriber file: its columns, then its rows, read once. Close it when done."""

    def __init__(
        self,
        path: Path,
        kind: str,
        columns: list[str],
        rows: Iterator[Row],
        position: Callable[[], tuple[int, int]],
        close: Callable[[], None],
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | None = None,
    ) -> None:
        self.path = path
        self.kind = kind  # "csv", "xlsx", "xls", "xlsb" or "ods"
        self.columns = columns
        self.encoding = encoding
        self.delimiter = delimiter
        self.sheet = sheet
        self._rows = rows
        self._position = position
        self._close = close
        self._closed = False

    @property
    def is_spreadsheet(self) -> bool:
        return self.kind != "csv"

    def rows(self) -> Iterator[Row]:
        """The data rows, lazily, in file order; blank rows are skipped."""
        return self._rows

    def position(self) -> tuple[int, int]:
        """(done, total) for a progress bar: bytes for CSV, rows for workbooks."""
        return self._position()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Table:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_table(
    path: str | Path,
    *,
    sheet: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Table:
    """Open ``path``, read its header row and return the :class:`Table`; rows come lazily."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(SAMPLE_BYTES)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a subscriber file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not head.strip():
        raise InputError(
            f"{path}: the file is empty; it needs a header row and one row per subscriber"
        )
    kind = _detect_kind(path, head)
    if kind == "csv":
        return _open_csv(path, head, encoding, delimiter)
    return _open_workbook(path, kind, sheet)


# --------------------------------------------------------------------------- what the file is


def _detect_kind(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if head.startswith(_OLE) and _ENCRYPTED in _ole_directory_sample(path, head):
        raise InputError(
            f"{path}: the workbook is password-protected; remove the password in Excel "
            "(File > Info > Protect Workbook) or export the sheet as CSV"
        )
    content = "zip" if head.startswith(_ZIP) else "ole" if head.startswith(_OLE) else None
    if content is None:
        for magic, what in _BINARY_MAGIC:
            if head.startswith(magic):
                raise InputError(f"{path}: is {what}, not a subscriber list (CSV or Excel)")
    if suffix in SPREADSHEET_KINDS:
        want = SPREADSHEET_KINDS[suffix]
        need = "ole" if want == "xls" else "zip"
        if content == need:
            return want
        if content is not None:
            # .xls that is really xlsx or the other way round: calamine reads either.
            return "xls" if content == "ole" else "xlsx"
        lead = head.lstrip()[:15].lower()
        looks = (
            "an HTML page"
            if lead.startswith((b"<!doctype", b"<html", b"<table"))
            else "an XML file"
            if lead.startswith(b"<?xml")
            else "text (CSV?)"
        )
        raise InputError(
            f"{path}: is named {suffix} but is not an Excel or OpenDocument workbook; it "
            f"looks like {looks}. Rename it (for example to .csv) or export it again"
        )
    if content is not None:
        if suffix in TEXT_SUFFIXES:
            what = "an Excel .xls" if content == "ole" else "a zip (xlsx or ods)"
            raise InputError(
                f"{path}: is named {suffix} but is {what} workbook, not CSV text; "
                "give it the right extension (.xlsx, .xls, .ods)"
            )
        return "xls" if content == "ole" else _zip_kind(path)
    return "csv"


def _ole_directory_sample(path: Path, head: bytes) -> bytes:
    """Enough of an OLE file to find its stream names (directory sectors sit near the start)."""
    if len(head) < SAMPLE_BYTES:
        return head
    with path.open("rb") as f:
        return f.read(4 * SAMPLE_BYTES)


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return "xlsx"  # let the workbook reader say what is wrong
    if "content.xml" in names:
        return "ods"
    if "xl/workbook.bin" in names:
        return "xlsb"
    return "xlsx"


# --------------------------------------------------------------------------- CSV


def _open_csv(path: Path, head: bytes, encoding: str | None, delimiter: str | None) -> Table:
    scan = _Scan(path)
    if encoding is None:
        encoding = _sniff_encoding(path, head, scan)
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"{path}: unknown encoding {encoding!r}") from None
    sample = _decode_sample(path, head, encoding)
    _refuse_binary(path, sample)
    if delimiter is None:
        delimiter = _sniff_delimiter(sample)
    else:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1 or delimiter in '"\r\n':
            raise InputError(f"{path}: the delimiter must be one character, got {delimiter!r}")
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header_row, header = _first_row(reader, path, encoding)
        columns = check_header(header, str(path))
    except BaseException:
        text.close()
        raise
    size = path.stat().st_size

    def position() -> tuple[int, int]:
        try:
            return (min(raw.tell(), size), size)
        except (OSError, ValueError):
            return (size, size)

    rows = _csv_rows(reader, columns, header_row, path, encoding, delimiter, text)
    return Table(
        path,
        "csv",
        columns,
        rows,
        position,
        text.close,
        encoding=encoding,
        delimiter=delimiter,
    )


def _sniff_encoding(path: Path, head: bytes, scan: _Scan) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        half = max(len(head) // 2, 1)
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > 0.3 * half and even < 0.02 * half:
            return "utf-16-le"
        if even > 0.3 * half and odd < 0.02 * half:
            return "utf-16-be"
        raise InputError(f"{path}: is a binary file, not CSV text")
    if scan.utf8:
        return "utf-8"
    if scan.cp1252:
        return "cp1252"
    return "latin-1"


class _Scan:
    """One pass over the bytes: is it UTF-8, could it be cp1252, is any line too long."""

    def __init__(self, path: Path) -> None:
        self.utf8 = True
        self.cp1252 = True
        decoder = codecs.getincrementaldecoder("utf-8")()
        run = 0  # bytes since the last line break
        offset = 0
        with path.open("rb") as f:
            while chunk := f.read(SCAN_CHUNK):
                if self.utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        self.utf8 = False
                if self.cp1252 and _CP1252_UNDEFINED.search(chunk):
                    self.cp1252 = False
                last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                if last < 0:
                    run += len(chunk)
                else:
                    first = min(i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0)
                    run = max(run + first, 0)
                    if run <= MAX_LINE:
                        run = len(chunk) - last - 1
                if run > MAX_LINE:
                    raise InputError(
                        f"{path}: more than {MAX_LINE // 1024**2} MiB without a line break "
                        f"(near byte {offset + len(chunk):,}); this is not a subscriber list"
                    )
                offset += len(chunk)
        if self.utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.utf8 = False


def _decode_sample(path: Path, head: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        return str(decoder.decode(head, final=len(head) < SAMPLE_BYTES))
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise _decode_error(path, encoding, line) from None


def _refuse_binary(path: Path, sample: str) -> None:
    controls = len(_CONTROLS.findall(sample))
    if "\x00" in sample or controls > max(2, len(sample) // 100):
        raise InputError(f"{path}: is a binary file, not CSV text")


def _sniff_delimiter(sample: str) -> str:
    # Cut at the last line break so the sample ends on a whole line.
    cut = max(sample.rfind("\n"), sample.rfind("\r"))
    text = sample[: cut + 1] if cut > 0 else sample
    best, best_score = ",", 0
    for d in DELIMITERS:
        rows: list[list[str]] = []
        try:
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=d):
                if row:
                    rows.append(row)
                if len(rows) >= 50:
                    break
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = sum(len(r) == width for r in rows) * 1000 + width
        if score > best_score:
            best, best_score = d, score
    return best


def _first_row(reader: Any, path: Path, encoding: str) -> tuple[int, list[str]]:
    """(record number, cells) of the first non-blank record: the header."""
    try:
        for record, row in enumerate(reader, start=1):
            if any(v.strip() for v in row):
                return record, row
    except csv.Error as exc:
        raise _csv_error(exc, path, reader.line_num + 1) from None
    except UnicodeDecodeError:
        raise _decode_error(path, encoding, reader.line_num + 1) from None
    raise InputError(f"{path}: the file is empty; it needs a header row and one row per subscriber")


def _csv_rows(
    reader: Any,
    columns: list[str],
    header_row: int,
    path: Path,
    encoding: str,
    delimiter: str,
    text: IO[str],
) -> Iterator[Row]:
    width = len(columns)
    last = reader.line_num  # physical line of the last record read, for errors
    strip = str.strip
    try:
        # A record, not a line, is a row: a spreadsheet shows a multi-line cell as one.
        for start, values in enumerate(reader, start=header_row + 1):
            last = reader.line_num
            n = len(values)
            if n == width:
                yield start, dict(zip(columns, map(strip, values))), None  # noqa: B905 - width checked
                continue
            if not any(values):
                continue  # a blank line, or only delimiters
            problem = None
            if n > width:
                if any(v.strip() for v in values[width:]):
                    shown = "tab" if delimiter == "\t" else repr(delimiter)
                    problem = (
                        f"the row has {n} values but the header has {width} columns "
                        f"(an unquoted {shown} in a value?)"
                    )
                values = values[:width]
            else:
                values = values + [""] * (width - n)
            yield start, dict(zip(columns, map(strip, values), strict=True)), problem
    except csv.Error as exc:
        raise _csv_error(exc, path, last + 1) from None
    except UnicodeDecodeError:
        raise _decode_error(path, encoding, last + 1) from None
    finally:
        text.close()


def _csv_error(exc: csv.Error, path: Path, line: int) -> InputError:
    msg = str(exc)
    if "field larger than field limit" in msg:
        limit = csv.field_size_limit() // 1024
        return InputError(
            f"{path}: line {line}: a value is larger than {limit} KiB (an unclosed quote?)"
        )
    return InputError(f"{path}: line {line}: cannot read the CSV row ({msg})")


def _decode_error(path: Path, encoding: str, line: int) -> InputError:
    return InputError(
        f"{path}: line {line} is not valid {encoding} text; give the file's encoding "
        "with audience.encoding or --encoding (for example cp1252 or utf-16)"
    )


# --------------------------------------------------------------------------- workbooks


def _open_workbook(path: Path, kind: str, sheet: str | None) -> Table:
    import python_calamine as pc  # imported here: CSV-only runs need not load it

    if kind != "xls":
        _refuse_zip_bomb(path, kind)
    # Misnamed (an .xls that is really xlsx, no extension): calamine picks the format
    # by extension from a path, but by content from an open file.
    by_name = SPREADSHEET_KINDS.get(path.suffix.lower()) == kind
    handle: IO[bytes] | None = None if by_name else path.open("rb")
    try:
        book = (
            pc.CalamineWorkbook.from_path(str(path))
            if handle is None
            else pc.CalamineWorkbook.from_filelike(handle)
        )
    except BaseException as exc:  # pyo3 turns a Rust panic into a BaseException
        if handle is not None:
            handle.close()
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        if isinstance(exc, pc.PasswordError):
            raise InputError(
                f"{path}: the workbook is password-protected; remove the password in Excel "
                "or export the sheet as CSV"
            ) from None
        raise _workbook_error(path, kind, exc) from None
    closed = [False]

    def close() -> None:
        if not closed[0]:
            closed[0] = True
            book.close()
            if handle is not None:
                handle.close()

    try:
        name = _choose_sheet(book, sheet, path)
        try:
            data = book.get_sheet_by_name(name)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise _workbook_error(path, kind, exc) from None
        start = data.start
        if start is None or data.height == 0:
            raise InputError(
                f"{path}: sheet {name!r} is empty; it needs a header row and one row per subscriber"
            )
        first_row, first_col = start
        merged = _merged_areas(data, first_row, first_col)
        cells = iter(data.iter_rows())
        header = [_cell(v) for v in next(cells)]
        for (r0, c0), (_, c1) in merged:
            if r0 == 0 and c1 > c0:
                raise InputError(
                    f"{path}: sheet {name!r}: header cells in row {first_row + 1} are merged "
                    "across columns; unmerge them so every column has its own name"
                )
        columns = check_header(header, f"{path} (sheet {name!r})")
    except BaseException:
        close()
        raise
    height = data.height
    done = [0]

    def position() -> tuple[int, int]:
        return (done[0], height)

    rows = _sheet_rows(cells, columns, first_row, merged, done, close)
    return Table(path, kind, columns, rows, position, close, sheet=name)


def _refuse_zip_bomb(path: Path, kind: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InputError(
            f"{path}: the {kind} workbook is damaged (not a readable zip archive); "
            "open and save it again in Excel or LibreOffice, or export it as CSV"
        ) from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise InputError(f"{path}: the workbook holds {len(infos)} parts; refusing to open it")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if total > MAX_UNZIPPED or (total > BOMB_FLOOR and total / packed > MAX_RATIO):
        raise InputError(
            f"{path}: the workbook would unpack to {total / 1024**2:,.0f} MiB from "
            f"{packed / 1024**2:,.1f} MiB; refusing it (a zip bomb, or too large: export CSV)"
        )


def _workbook_error(path: Path, kind: str, exc: BaseException) -> InputError:
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"{path}: cannot read the {kind} workbook, it is damaged or not really {kind} "
        f"({detail}); open and save it again, or export it as CSV"
    )


def _choose_sheet(book: Any, sheet: str | None, path: Path) -> str:
    names: list[str] = list(book.sheet_names)
    if not names:
        raise InputError(f"{path}: the workbook has no sheets")
    if sheet is None:
        for meta in book.sheets_metadata:
            if str(meta.typ).endswith("WorkSheet") and str(meta.visible).endswith("Visible"):
                return str(meta.name)
        return names[0]
    if sheet in names:
        return sheet
    folded = {n.strip().lower(): n for n in names}
    if sheet.strip().lower() in folded:
        return folded[sheet.strip().lower()]
    shown = ", ".join(repr(n) for n in names)
    raise InputError(f"{path}: there is no sheet named {sheet!r}; the sheets are {shown}")


MergedArea = tuple[tuple[int, int], tuple[int, int]]


def _merged_areas(data: Any, first_row: int, first_col: int) -> list[MergedArea]:
    """Merged areas relative to the data's top-left cell, largest first row first."""
    try:
        ranges = data.merged_cell_ranges or []
    except Exception:
        return []
    out = []
    for (r0, c0), (r1, c1) in ranges:
        if r1 > r0 or c1 > c0:
            out.append(((r0 - first_row, c0 - first_col), (r1 - first_row, c1 - first_col)))
    out.sort()
    return out


def _sheet_rows(
    cells: Iterator[list[Any]],
    columns: list[str],
    first_row: int,
    merged: list[MergedArea],
    done: list[int],
    close: Callable[[], None],
) -> Iterator[Row]:
    width = len(columns)
    fills: dict[int, list[tuple[int, int, str]]] = {}  # relative row -> (c0, c1, value)
    pending = list(merged)
    try:
        for index, raw in enumerate(cells, start=1):
            done[0] = index
            # Text first without a call: it is most cells, and this loop is the hot path.
            values = [v.strip() if type(v) is str else _cell(v) for v in raw[:width]]
            if len(values) < width:
                values += [""] * (width - len(values))
            if pending or fills:
                _apply_merges(index, values, pending, fills)
            extra = any(_cell(v) for v in raw[width:]) if len(raw) > width else False
            if not extra and not any(values):
                continue
            problem = None
            if extra:
                problem = f"the row has values right of the last named column ({columns[-1]!r})"
            yield first_row + index + 1, dict(zip(columns, values)), problem  # noqa: B905
    finally:
        close()


def _apply_merges(
    index: int,
    values: list[str],
    pending: list[MergedArea],
    fills: dict[int, list[tuple[int, int, str]]],
) -> None:
    while pending and pending[0][0][0] <= index:
        (r0, c0), (r1, c1) = pending.pop(0)
        if r0 < index:
            continue  # starts in the header: nothing to copy down
        value = values[c0] if 0 <= c0 < len(values) else ""
        for r in range(r0, r1 + 1):
            fills.setdefault(r, []).append((c0, c1, value))
    for c0, c1, value in fills.pop(index, ()):
        for c in range(max(c0, 0), min(c1 + 1, len(values))):
            values[c] = value


def _cell(v: Any) -> str:
    """One workbook cell as the text a person sees in it."""
    if type(v) is str:
        return v.strip()
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    if isinstance(v, dt.datetime):
        if v.time() == dt.time(0):
            return v.date().isoformat()
        return v.isoformat(timespec="seconds")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return str(v)
    return str(v).strip()
