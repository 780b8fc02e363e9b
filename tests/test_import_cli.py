"""``stamp import`` and ``stamp lists`` through the real typer app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.errors import ExitCode

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "lists"
runner = CliRunner()


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "lists"
    folder.mkdir()
    for name in ("customers.csv", "customers.xlsx", "messy.csv"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def stamp(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_then_reimport_changes_nothing(lists_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    code, out, err = stamp(
        "import", str(lists_dir / "customers.csv"), "--list", "customers", "--db", str(db)
    )
    assert code == 0, err
    assert "25 new, 0 updated, 0 unchanged, 0 duplicates, 0 rejected" in out
    assert not (lists_dir / "customers.rejected.csv").exists()
    code, out, _ = stamp(
        "import", str(lists_dir / "customers.xlsx"), "--list", "customers", "--db", str(db)
    )
    assert code == 0
    assert "0 new, 0 updated, 25 unchanged" in out


def test_import_messy_writes_rejects_next_to_input(lists_dir: Path) -> None:
    code, out, err = stamp("import", str(lists_dir / "messy.csv"), "-l", "messy")
    assert code == 0, err
    assert "1 duplicate," in out
    rejects = lists_dir / "messy.rejected.csv"
    assert str(rejects) in out
    text = rejects.read_text(encoding="utf-8-sig")
    header, *rows = text.splitlines()
    assert header.startswith("row;reason;E-Mail;Vorname")
    assert any(r.startswith("5;not an email address: no @ sign;not-an-address") for r in rows)
    # Uses the STAMP_DB of the test environment.
    code, out, _ = stamp("lists", "--json")
    data = json.loads(out)
    assert [(d["name"], d["contacts"]) for d in data] == [("messy", 4)]
    assert data[0]["fields"] == ["E-Mail", "Vorname", "Nachname", "Land", "Tarif"]


def test_rejects_from_a_workbook_are_xlsx_and_never_formulas(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["email", "note"])
    sheet.append(["good@example.com", "fine"])
    sheet.append(['=HYPERLINK("http://evil.example")', "=1+1"])
    for cell in sheet[3]:
        cell.data_type = "s"  # text that looks like a formula, as a CSV export leaves it
    src = tmp_path / "book.xlsx"
    book.save(src)
    code, out, err = stamp("import", str(src), "--list", "b", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["new"], summary["rejected"]) == (1, 1)
    rejects = load_workbook(summary["rejects_file"])
    ws = rejects.active
    assert ws is not None
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert values[0] == ["row", "reason", "email", "note"]
    assert values[1][3] == "=1+1"
    assert all(c.data_type == "s" for c in list(ws.iter_rows())[1][1:])


def test_stale_rejects_file_is_removed(lists_dir: Path) -> None:
    stale = lists_dir / "customers.rejected.csv"
    stale.write_text("row,reason\n2,old\n")
    code, _, _ = stamp("import", str(lists_dir / "customers.csv"), "--list", "c")
    assert code == 0
    assert not stale.exists()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.csv", "the file is empty"),
        (b"name,country\nAnna,DE\n", "noemail.csv", "no email column found"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.csv", "is a PNG image"),
        (b"email,name,Email\na@example.com,A,b\n", "dup.csv", "appears twice"),
        (b"PK\x03\x04garbage", "broken.xlsx", "damaged"),
    ],
)
def test_bad_files_exit_2_with_one_message(
    tmp_path: Path, content: bytes, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = stamp("import", str(path), "--list", "x")
    assert code == ExitCode.BAD_INPUT
    assert message in err and name in err
    assert "Traceback" not in err + out


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = stamp("import", str(tmp_path / "nope.csv"), "--list", "x")
    assert code == ExitCode.BAD_INPUT and "no such file" in err
    code, _, err = stamp("import", str(tmp_path / "nope.csv"))
    assert code == ExitCode.BAD_INPUT and "no such file" in err


def test_options_email_column_delimiter_encoding(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_bytes("Kontakt|Name\nanna@example.com|Jürgen\n".encode("cp1252"))
    code, _, err = stamp("import", str(path), "--list", "x", "--email-column", "kontakt")
    assert code == 0, err
    code, out, err = stamp(
        "import", str(path), "--list", "y", "--email-column", "Kontakt", "--delimiter", "|",
        "--encoding", "cp1252", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["new"] == 1
    code, _, err = stamp("import", str(path), "--list", "z", "--encoding", "klingon")
    assert code == 2 and "unknown encoding 'klingon'" in err


def test_lists_without_a_store_and_table_output(tmp_path: Path) -> None:
    code, out, _ = stamp("lists", "--db", str(tmp_path / "none.db"))
    assert code == 0 and "No lists" in out
    assert not (tmp_path / "none.db").exists()
    code, out, _ = stamp("lists", "--json", "--db", str(tmp_path / "none.db"))
    assert json.loads(out) == []
    db = tmp_path / "s.db"
    stamp("import", str(EXAMPLES / "customers.csv"), "--list", "customers", "--db", str(db))
    code, out, _ = stamp("lists", "--db", str(db))
    assert code == 0
    assert "customers" in out and "25" in out and "first_name" in out


def test_help_texts() -> None:
    code, out, _ = stamp("import", "--help")
    assert code == 0
    for option in ("--list", "--email-column", "--sheet", "--encoding", "--delimiter", "--db"):
        assert option in out
    assert "rejected" in out
    code, out, _ = stamp("lists", "--help")
    assert code == 0 and "--json" in out


def test_progress_bar_path_imports_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stampcli.cli import lists_cmd
    from stampcli.service import lists

    monkeypatch.setattr(lists_cmd, "_wants_progress", lambda file, as_json: True)
    monkeypatch.setattr(lists, "PROGRESS_EVERY", 10)
    path = tmp_path / "many.csv"
    path.write_text("email\n" + "".join(f"u{i}@example.com\n" for i in range(1_000)))
    code, out, err = stamp("import", str(path), "--list", "many")
    assert code == 0, err
    assert "1000 new" in out


def test_unusable_store_exits_7(tmp_path: Path) -> None:
    db = tmp_path / "no-such-folder" / "stamp.db"
    code, _, err = stamp("import", str(EXAMPLES / "customers.csv"), "--list", "c", "--db", str(db))
    assert code == ExitCode.STORE
    assert "no-such-folder" in err and "Traceback" not in err


def test_rejects_file_holds_every_dropped_row_by_spreadsheet_row(tmp_path: Path) -> None:
    # Row 2's note spans three lines: a spreadsheet still shows it as one row, so the
    # rows after it keep their numbers (3, 4, 5), not the physical lines (5, 6, 7).
    src = tmp_path / "list.csv"
    src.write_text(
        "email,note\n"
        'anna@example.com,"line one\nline two\nline three"\n'
        "bob@example.com,ok\n"
        'not-an-address,=HYPERLINK("http://evil.example")\n'
        "ANNA@example.com,+again\n",
        encoding="utf-8",
    )
    code, out, err = stamp("import", str(src), "--list", "l", "--db", str(tmp_path / "s.db"))
    assert code == 0, err
    assert "2 new, 0 updated, 0 unchanged, 1 duplicate, 1 rejected" in out
    assert "row 4: not an email address: no @ sign" in out
    import csv

    with (tmp_path / "list.rejected.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["row", "reason", "email", "note"],
        [
            "4",
            "not an email address: no @ sign",
            "not-an-address",
            '\'=HYPERLINK("http://evil.example")',
        ],
        ["5", "duplicate of row 2", "ANNA@example.com", "'+again"],
    ]


def test_rejects_from_a_sheet_name_its_rows_and_duplicates(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["email", "note"])
    sheet.append(["a@example.com", "x"])
    sheet.append([None, None])  # a blank sheet row still counts
    sheet.append(["A@example.com", "-1"])
    src = tmp_path / "book.xlsx"
    book.save(src)
    code, out, err = stamp("import", str(src), "--list", "b", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["new"], summary["duplicates"], summary["rejected"]) == (1, 1, 0)
    ws = load_workbook(summary["rejects_file"]).active
    assert ws is not None
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert values[1] == [4, "duplicate of row 2", "A@example.com", "-1"]


def test_import_without_list_takes_the_file_name_and_says_so(
    lists_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    code, out, err = stamp("import", str(lists_dir / "customers.xlsx"), "--db", str(db))
    assert code == 0, err
    assert "importing into list customers (the file's name)" in out
    assert "--list NAME" in out
    code, out, _ = stamp("lists", "--json", "--db", str(db))
    assert [entry["name"] for entry in json.loads(out)] == ["customers"]
    code, out, err = stamp("import", str(lists_dir / "customers.csv"), "--db", str(db), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["list"] == "customers" and result["list_from_file_name"] is True
    assert result["unchanged"] == 25


def test_import_with_list_does_not_mention_the_file_name(lists_dir: Path, tmp_path: Path) -> None:
    code, out, err = stamp(
        "import", str(lists_dir / "customers.csv"), "-l", "vip", "--db", str(tmp_path / "s.db")
    )
    assert code == 0, err
    assert "No --list given" not in out
