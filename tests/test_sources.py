"""Reading subscriber files: CSV dialects and encodings, workbooks, and every kind of bad input."""

from __future__ import annotations

import codecs
import re
import tempfile
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from stampcli.audience import sources
from stampcli.audience.sources import Row, open_table
from stampcli.errors import InputError

ROWS = [
    ["email", "first_name", "country", "note"],
    ["anna@example.com", "Anna", "DE", "plain"],
    ["juergen@example.de", "Jürgen", "DE", 'Grüße, "quoted"'],
    ["zoe@example.fr", "Zoé", "FR", "two\nlines"],
]


def write_csv(path: Path, rows: list[list[str]], delimiter: str, encoding: str, eol: str) -> Path:
    lines = []
    for row in rows:
        cells = []
        for v in row:
            if any(ch in v for ch in (delimiter, '"', "\n", "\r", ",")):
                v = '"' + v.replace('"', '""') + '"'
            cells.append(v)
        lines.append(delimiter.join(cells))
    path.write_bytes((eol.join(lines) + eol).encode(encoding))
    return path


def read_all(path: Path, **kw: str) -> tuple[list[str], list[Row]]:
    with open_table(path, **kw) as table:
        return table.columns, list(table.rows())


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"]
)
@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_csv_dialects_and_encodings(
    tmp_path: Path, delimiter: str, encoding: str, eol: str
) -> None:
    path = write_csv(tmp_path / "list.csv", ROWS, delimiter, encoding, eol)
    with open_table(path) as table:
        assert table.delimiter == delimiter
        columns, rows = table.columns, list(table.rows())
    assert columns == ROWS[0]
    assert [r[1] for r in rows] == [dict(zip(ROWS[0], r, strict=True)) for r in ROWS[1:]]
    # The record with a quoted newline starts on line 4; line numbers follow physical lines.
    assert [r[0] for r in rows] == [2, 3, 4]


def test_latin1_fallback_when_not_cp1252(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252, so only latin-1 can read this file.
    path = tmp_path / "l1.csv"
    path.write_bytes(b"email,name\nanna@example.com,Ren\xe9\x81\n")
    with open_table(path) as table:
        assert table.encoding == "latin-1"
        assert next(table.rows())[1]["name"] == "René\x81"


def test_utf8_checked_beyond_the_sample(tmp_path: Path) -> None:
    # ASCII for 200 KB, then one cp1252 byte: the encoding must still be cp1252.
    body = b"".join(b"user%d@example.com,x\n" % i for i in range(10_000))
    path = tmp_path / "late.csv"
    path.write_bytes(b"email,name\n" + body + b"last@example.com,Fran\xe7ois\n")
    with open_table(path) as table:
        assert table.encoding == "cp1252"
        assert list(table.rows())[-1][1]["name"] == "François"


def test_wrong_explicit_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"email,name\na@example.com,ok\nb@example.com,\xff\xfe\xfd\n")
    with (
        pytest.raises(InputError, match=r"x\.csv: line 3 is not valid utf-8"),
        open_table(path, encoding="utf-8") as table,
    ):
        list(table.rows())


def test_mixed_line_endings_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"email,name\r\na@example.com,A\nb@example.com,B\r\rc@example.com,C\r\n,,\n")
    _, rows = read_all(path)
    assert [r[1]["email"] for r in rows] == ["a@example.com", "b@example.com", "c@example.com"]
    assert [r[0] for r in rows] == [2, 3, 5]


def test_headers_trimmed_and_trailing_unnamed_columns_dropped(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("\ufeff Email , First Name ,,\na@example.com, Anna ,,\n", encoding="utf-8")
    columns, rows = read_all(path)
    assert columns == ["Email", "First Name"]
    assert rows[0][1] == {"Email": "a@example.com", "First Name": "Anna"}
    assert rows[0][2] is None


def test_short_rows_padded_long_rows_flagged(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("email,a,b\nx@example.com\ny@example.com,1,2,3\nz@example.com,1,2,\n")
    _, rows = read_all(path)
    assert rows[0][1] == {"email": "x@example.com", "a": "", "b": ""}
    assert rows[1][2] is not None and "4 values but the header has 3" in rows[1][2]
    assert rows[2][2] is None  # a trailing empty value is not a problem


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("email,name,Email\n", r"'Email' appears twice, in column 1 \(A\) and column 3 \(C\)"),
        ("email, Name ,name\n", r"appears twice"),
        ("email,,name\n", r"column 2 \(B\) of the header row has no name"),
    ],
)
def test_bad_headers(tmp_path: Path, header: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(header + "a@example.com,b,c\n")
    with pytest.raises(InputError, match=message) as info:
        open_table(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf", b",,,\n,,\n"])
def test_empty_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty"):
        open_table(path)


def test_header_only_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("email,name\n")
    assert read_all(path) == (["email", "name"], [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "is a PNG image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "is a PDF document"),
        (bytes(range(256)) * 64, "binary file"),
        (b"email,name\n\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12" * 20, "binary"),
        (b"SQLite format 3\x00" + b"\x00" * 100, "SQLite database"),
    ],
)
def test_binary_named_csv(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        open_table(path)


def make_xlsx(path: Path, rows: list[list[object]], title: str = "Sheet1") -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_workbook_named_csv_and_csv_named_xlsx(tmp_path: Path) -> None:
    wb = make_xlsx(tmp_path / "really.csv", [["email"], ["a@example.com"]])
    with pytest.raises(InputError, match=r"named \.csv but is a zip \(xlsx or ods\) workbook"):
        open_table(wb)
    text = tmp_path / "really.xlsx"
    text.write_text("email\na@example.com\n")
    with pytest.raises(InputError, match=r"named \.xlsx but is not an Excel.*looks like text"):
        open_table(text)
    html = tmp_path / "export.xls"
    html.write_text("<html><table><tr><td>email</td></tr></table></html>")
    with pytest.raises(InputError, match=r"looks like an HTML page"):
        open_table(html)


def test_unknown_extension_read_by_content(tmp_path: Path) -> None:
    wb = make_xlsx(tmp_path / "download", [["email"], ["a@example.com"]])
    with open_table(wb) as table:
        assert table.kind == "xlsx"
    txt = tmp_path / "list.dat"
    txt.write_text("email;name\na@example.com;A\n")
    with open_table(txt) as table:
        assert (table.kind, table.delimiter) == ("csv", ";")


def test_xlsx_values_become_text(tmp_path: Path) -> None:
    rows: list[list[object]] = [
        [" Email ", "zip", "seats", "price", "since", "at", "vip", "empty"],
        [
            "a@example.com",
            "01234",
            42,
            9.5,
            date(2024, 3, 1),
            datetime(2024, 3, 1, 14, 30),
            True,
            None,
        ],
        ["b@example.com", "00007", 3.0, 0.1, datetime(2023, 12, 31), None, False, ""],
    ]
    path = make_xlsx(tmp_path / "v.xlsx", rows)
    columns, got = read_all(path)
    assert columns == ["Email", "zip", "seats", "price", "since", "at", "vip", "empty"]
    assert got[0] == (
        2,
        {
            "Email": "a@example.com",
            "zip": "01234",
            "seats": "42",
            "price": "9.5",
            "since": "2024-03-01",
            "at": "2024-03-01T14:30:00",
            "vip": "TRUE",
            "empty": "",
        },
        None,
    )
    assert got[1][1]["seats"] == "3" and got[1][1]["price"] == "0.1"
    assert got[1][1]["since"] == "2023-12-31" and got[1][1]["vip"] == "FALSE"


def test_sheet_by_name_and_missing_sheet(tmp_path: Path) -> None:
    book = Workbook()
    first = book.active
    assert first is not None
    first.title = "Notes"
    first.append(["nothing here"])
    people = book.create_sheet("People")
    people.append(["email"])
    people.append(["a@example.com"])
    path = tmp_path / "two.xlsx"
    book.save(path)
    with open_table(path, sheet="people") as table:
        assert table.sheet == "People"
        assert [r[1]["email"] for r in table.rows()] == ["a@example.com"]
    with pytest.raises(
        InputError, match=r"no sheet named 'Customers'; the sheets are 'Notes', 'People'"
    ):
        open_table(path, sheet="Customers")


def test_merged_cells_fill_their_area_and_merged_header_is_refused(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["email", "company", "plan"])
    sheet.append(["a@example.com", "ACME", "pro"])
    sheet.append(["b@example.com", None, "team"])
    sheet.merge_cells("B2:B3")
    path = tmp_path / "merged.xlsx"
    book.save(path)
    _, rows = read_all(path)
    assert [r[1]["company"] for r in rows] == ["ACME", "ACME"]
    sheet.merge_cells("B1:C1")
    book.save(path)
    with pytest.raises(InputError, match=r"header cells in row 1 are merged"):
        open_table(path)


def test_formula_without_cached_value_reads_empty(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "f.xlsx", [["email", "n", "double"], ["a@example.com", 2, "=B2*2"]])
    _, rows = read_all(path)
    assert rows[0][1]["double"] in ("", "4")  # the cached value, if a spreadsheet app saved one


def test_corrupt_and_truncated_xlsx(tmp_path: Path) -> None:
    good = make_xlsx(tmp_path / "good.xlsx", [["email"], ["a@example.com"]])
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(good.read_bytes()[:400])
    with pytest.raises(InputError, match=r"truncated\.xlsx: the xlsx workbook is damaged"):
        open_table(truncated)
    garbage = tmp_path / "garbage.xlsx"
    with zipfile.ZipFile(garbage, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(InputError, match=r"garbage\.xlsx: cannot read the xlsx workbook"):
        open_table(garbage)


def test_password_protected_xlsx(tmp_path: Path) -> None:
    ooxml = pytest.importorskip("msoffcrypto.format.ooxml")
    plain = make_xlsx(tmp_path / "plain.xlsx", [["email"], ["a@example.com"]])
    locked = tmp_path / "locked.xlsx"
    with plain.open("rb") as src, locked.open("wb") as dst:
        ooxml.OOXMLFile(src).encrypt("secret", dst)
    with pytest.raises(InputError, match=r"locked\.xlsx: the workbook is password-protected"):
        open_table(locked)


def test_xls_read_with_calamine(tmp_path: Path) -> None:
    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook()
    sheet = book.add_sheet("People")
    for c, v in enumerate(["Email", "zip", "since", "n"]):
        sheet.write(0, c, v)
    sheet.write(1, 0, "a@example.com")
    sheet.write(1, 1, "01234")
    sheet.write(1, 2, date(2024, 3, 1), xlwt.easyxf(num_format_str="YYYY-MM-DD"))
    sheet.write(1, 3, 42)
    path = tmp_path / "old.xls"
    book.save(str(path))
    with open_table(path) as table:
        assert table.kind == "xls"
        assert next(table.rows())[1] == {
            "Email": "a@example.com",
            "zip": "01234",
            "since": "2024-03-01",
            "n": "42",
        }


def test_zip_bomb_refused_before_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "BOMB_FLOOR", 1024 * 1024)
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\x00" * (4 * 1024 * 1024))
    with pytest.raises(InputError, match=r"bomb\.xlsx: the workbook would unpack to 4 MiB"):
        open_table(path)


def test_huge_cell_and_endless_line_refused(tmp_path: Path) -> None:
    cell = tmp_path / "cell.csv"
    cell.write_text('email,note\na@example.com,ok\nb@example.com,"' + "x" * 200_000 + '"\n')
    with pytest.raises(InputError, match=r"cell\.csv: line 3: a value is larger than 128 KiB"):
        read_all(cell)
    endless = tmp_path / "endless.csv"
    endless.write_bytes(b"email,note\n" + b"y" * (sources.MAX_LINE + 10))
    with pytest.raises(InputError, match=r"endless\.csv: more than 4 MiB without a line break"):
        open_table(endless)


def test_rows_are_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("email\n")
        for i in range(50_000):
            f.write(f"u{i}@example.com\n")
    with open_table(path) as table:
        rows = table.rows()
        assert next(rows)[0] == 2
        done, total = table.position()
        # One read-ahead buffer, not the whole file, has been consumed.
        assert 0 < done < total


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.text(alphabet=st.sampled_from(list('ab@.,;\t|"\r\n é\x00')), max_size=300).map(
            lambda s: s.encode("utf-8")
        ),
        st.text(max_size=200).map(lambda s: codecs.BOM_UTF8 + s.encode("utf-8")),
    )
)
def test_any_bytes_read_or_refused_cleanly(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(data)
        try:
            with open_table(path) as table:
                for number, fields, problem in table.rows():
                    assert number >= 2
                    assert list(fields) == table.columns
                    assert problem is None or isinstance(problem, str)
        except InputError as exc:
            assert str(path) in str(exc)


ODS_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content
 xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">
<office:body><office:spreadsheet><table:table table:name="Kunden">
<table:table-row>
 <table:table-cell office:value-type="string"><text:p>E-Mail</text:p></table:table-cell>
 <table:table-cell office:value-type="string"><text:p>seit</text:p></table:table-cell>
 <table:table-cell office:value-type="string"><text:p>plz</text:p></table:table-cell>
</table:table-row>
<table:table-row>
 <table:table-cell office:value-type="string"><text:p>anna@example.com</text:p></table:table-cell>
 <table:table-cell office:value-type="date" office:date-value="2024-03-01">
  <text:p>01.03.2024</text:p></table:table-cell>
 <table:table-cell office:value-type="string"><text:p>01067</text:p></table:table-cell>
</table:table-row>
</table:table></office:spreadsheet></office:body></office:document-content>"""


ODS_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">
 <manifest:file-entry manifest:full-path="/"
  manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""


def test_ods_read_with_calamine(tmp_path: Path) -> None:
    path = tmp_path / "kunden.ods"
    with zipfile.ZipFile(path, "w") as z:
        mimetype = "application/vnd.oasis.opendocument.spreadsheet"
        z.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        # Real ODS writers put no whitespace between elements, and calamine expects none.
        z.writestr("content.xml", re.sub(r">\s+<", "><", ODS_CONTENT))
        z.writestr("META-INF/manifest.xml", ODS_MANIFEST)
    with open_table(path) as table:
        assert (table.kind, table.sheet, table.columns) == (
            "ods",
            "Kunden",
            ["E-Mail", "seit", "plz"],
        )
        assert list(table.rows()) == [
            (2, {"E-Mail": "anna@example.com", "seit": "2024-03-01", "plz": "01067"}, None)
        ]


def test_misnamed_workbooks_are_read_by_content(tmp_path: Path) -> None:
    real = make_xlsx(tmp_path / "real.xlsx", [["email"], ["a@example.com"]])
    misnamed = tmp_path / "old-name.xls"
    misnamed.write_bytes(real.read_bytes())
    with open_table(misnamed) as table:
        assert table.kind == "xlsx"
        assert [r[1]["email"] for r in table.rows()] == ["a@example.com"]
