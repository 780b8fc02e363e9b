"""Importing each provider's documented suppression export, and our own export round trip."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stampcli.errors import InputError
from stampcli.providers import suppression_files as exports
from stampcli.store import suppressions as sup
from stampcli.store.db import Store

FIXTURES = Path(__file__).parent / "fixtures" / "suppressions"


def reasons(name: str, **kw: str) -> tuple[str, dict[str, str]]:
    result = exports.read_export(FIXTURES / name, **kw)  # type: ignore[arg-type]
    return result.format, {s.key: s.reason for s in result.items}


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        (
            "sendgrid_bounces.csv",
            "sendgrid",
            {"bounced.one@example.com": "hard_bounce", "bounced.two@example.org": "hard_bounce"},
        ),
        ("sendgrid_blocks.csv", "sendgrid", {"blocked@example.com": "hard_bounce"}),
        ("sendgrid_spam_reports.csv", "sendgrid", {"complainer@example.com": "complaint"}),
        ("sendgrid_invalid_emails.csv", "sendgrid", {"typo@example.comm": "invalid"}),
        (
            "sendgrid_unsubscribes.csv",
            "sendgrid",
            {"left@example.com": "unsubscribed", "also.left@example.com": "unsubscribed"},
        ),
        (
            "mailgun_bounces.csv",
            "mailgun",
            {"gone@example.com": "hard_bounce", "nocode@example.com": "hard_bounce"},
        ),
        (
            "mailgun_unsubscribes.csv",
            "mailgun",
            {"quit@example.com": "unsubscribed", "tagged@example.com": "unsubscribed"},
        ),
        ("mailgun_complaints.csv", "mailgun", {"angry@example.com": "complaint"}),
        (
            "postmark_suppressions.csv",
            "postmark",
            {
                "address@wildbit.example": "unsubscribed",
                "bounce.address@wildbit.example": "hard_bounce",
                "spam.complaint.address@wildbit.example": "complaint",
                "by.admin@wildbit.example": "manual",
            },
        ),
        (
            "ses_suppressed_destinations.csv",
            "ses",
            {"ses.bounce@example.com": "hard_bounce", "ses.complaint@example.com": "complaint"},
        ),
        (
            "ses_bulk_import.csv",
            "ses",
            {"recipient1@example.com": "hard_bounce", "recipient2@example.com": "complaint"},
        ),
        (
            "mailchimp_unsubscribed.csv",
            "mailchimp",
            {"mc.unsub@example.com": "unsubscribed", "mc.abuse@example.com": "complaint"},
        ),
        ("mailchimp_cleaned.csv", "mailchimp", {"mc.cleaned@example.com": "hard_bounce"}),
        (
            "mandrill_rejects.csv",
            "mandrill",
            {
                "md.hard@example.com": "hard_bounce",
                "md.spam@example.com": "complaint",
                "md.unsub@example.com": "unsubscribed",
                "md.custom@example.com": "manual",
            },
        ),
        (
            "plain_list.csv",
            "plain",
            {"first@example.com": "manual", "second@example.com": "manual"},
        ),
        (
            "plain_semicolon_cp1252.csv",
            "plain",
            {"juergen@example.de": "manual", "anna@xn--bcher-kva.example": "manual"},
        ),
    ],
)
def test_each_documented_format(name: str, fmt: str, expected: dict[str, str]) -> None:
    assert reasons(name) == (fmt, expected)


def test_times_and_details_are_kept() -> None:
    result = exports.read_export(FIXTURES / "mailgun_bounces.csv")
    gone = next(s for s in result.items if s.key == "gone@example.com")
    assert gone.created_at == 1319194975.0  # Fri, 21 Oct 2011 11:02:55 GMT
    assert gone.detail == "550 No such mailbox"
    assert gone.source == "import:mailgun_bounces.csv"
    sg = exports.read_export(FIXTURES / "sendgrid_blocks.csv").items[0]
    assert sg.created_at == 1443651154.0 and sg.detail is not None
    assert sg.detail.startswith("blocked: 4.0.0")
    pm = exports.read_export(FIXTURES / "postmark_suppressions.csv").items[0]
    assert pm.created_at == 1576591113.0  # 2019-12-17T08:58:33-05:00


def test_bad_rows_are_skipped_and_reported() -> None:
    result = exports.read_export(FIXTURES / "sendgrid_spam_reports.csv")
    assert [s.key for s in result.items] == ["complainer@example.com"]
    assert result.skipped == [(3, "no @ sign")]
    plain = exports.read_export(FIXTURES / "plain_list.csv")
    assert plain.skipped_count == 1 and plain.skipped[0][0] == 4
    mandrill = exports.read_export(FIXTURES / "mandrill_rejects.csv")
    assert {r for r, _ in mandrill.skipped} == {6, 7}  # soft bounce, expired


def test_reason_and_scope_override() -> None:
    result = exports.read_export(
        FIXTURES / "plain_list.csv", reason="unsubscribed", scope="news", source="cli"
    )
    assert {(s.reason, s.scope, s.source) for s in result.items} == {
        ("unsubscribed", "news", "cli")
    }
    with pytest.raises(InputError, match="unknown suppression reason"):
        exports.read_export(FIXTURES / "plain_list.csv", reason="gone")


def test_mailchimp_subscribed_export_is_refused() -> None:
    with pytest.raises(InputError, match="subscribed members"):
        exports.read_export(FIXTURES / "mailchimp_subscribed.csv")


def test_unknown_header_empty_and_missing_files(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("name,phone\nAnn,123\n")
    with pytest.raises(InputError, match="no column of email addresses"):
        exports.read_export(odd)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        exports.read_export(empty)
    with pytest.raises(InputError, match="no such file"):
        exports.read_export(tmp_path / "missing.csv")
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"PK\x03\x04\x00\x00garbage")
    with pytest.raises(InputError, match="not CSV"):  # a zip (workbook), named .csv
        exports.read_export(binary)
    nul = tmp_path / "y.csv"
    nul.write_bytes(b"email\n\x00\x01\x02\x03" * 200)
    with pytest.raises(InputError, match="binary"):
        exports.read_export(nul)


def test_files_are_read_by_the_hardened_reader(tmp_path: Path) -> None:
    """Subscriber lists' limits hold here too: no line may hold megabytes, any encoding."""
    endless = tmp_path / "endless.csv"
    endless.write_bytes(b"email," + b"x" * (5 * 1024 * 1024))
    with pytest.raises(InputError, match="without a line break"):
        exports.read_export(endless)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("email\nann@example.com\n".encode("utf-16"))
    assert [s.key for s in exports.read_export(utf16).items] == ["ann@example.com"]


def _items() -> list[sup.Suppression]:
    return [
        sup.Suppression("=cmd@example.com", "manual", "cli", "", "=HYPERLINK(1)", 1_700_000_000.0),
        sup.Suppression("b@example.com", "complaint", "sendgrid", "news", None, 1_700_000_001.0),
    ]


def test_csv_export_round_trips_and_defuses_formulas(tmp_path: Path) -> None:
    buf = io.StringIO()
    assert exports.write_csv(_items(), buf) == 2
    text = buf.getvalue()
    assert "'=cmd@example.com" in text and "'=HYPERLINK(1)" in text
    assert text.splitlines()[0] == "email,reason,source,scope,detail,created_at"
    path = tmp_path / "out.csv"
    path.write_text(text)
    back = exports.read_export(path)
    assert back.format == "stamp"
    assert back.items == _items()


def test_xlsx_export_round_trips_and_stores_text_not_formulas(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = tmp_path / "out.xlsx"
    assert exports.write_xlsx(_items(), path) == 2
    sheet = load_workbook(path).active
    assert sheet is not None
    assert sheet["A2"].value == "=cmd@example.com" and sheet["A2"].data_type == "s"
    back = exports.read_export(path)
    assert back.format == "stamp" and back.items == _items()


def test_import_into_store_counts_new_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        items = exports.read_export(FIXTURES / "postmark_suppressions.csv").items
        assert sup.add_many(store, items) == 4
        assert sup.add_many(store, items) == 0


def test_postmark_export_with_a_reason_column_is_not_taken_for_ses(tmp_path: Path) -> None:
    """Formats are tried in registry order now (SES before Postmark): each must be exact."""
    path = tmp_path / "pm.csv"
    path.write_text("EmailAddress,Reason,Origin\nann@example.com,SpamComplaint,Recipient\n")
    result = exports.read_export(path)
    assert (result.format, [s.reason for s in result.items]) == ("postmark", ["complaint"])
