"""``stamp send --test-to``: one recipient's real message to a test address, ledger untouched.

Real ``stamp`` subprocesses against the recording SMTP server of
``smtp_server``: the server sees exactly one message, whose only envelope
recipient and ``To:`` are the test address and whose content is the chosen
recipient's personalised message (their unsubscribe token included); the
store's ledger, campaigns, runs and locks are the same before and after.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from reliability_helpers import (
    UNSUB_SECRET,
    json_lines,
    ledger_states,
    run_stamp,
    send_args,
    write_campaign,
)
from smtp_server import SMTPTestServer

from stampcli.compliance.tokens import verify_token

N = 5
TEST_TO = "me@example.org"
TABLES = ("campaigns", "ledger", "runs", "locks")


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="none") as srv:
        yield srv


def smtp_campaign(tmp_path: Path, *urls: str, n: int = N) -> Path:
    names = ["first", "second"][: len(urls)] if len(urls) > 1 else [None]
    return write_campaign(
        tmp_path,
        [
            {"url": u, **({"name": name} if name else {})}
            for u, name in zip(urls, names, strict=True)
        ],
        n=n,
        name="tryout",
        template="<p>Hello {{ first_name }}, you are {{ email }}</p>",
    )


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def unsubscribe_key(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    token = header.split("?t=", 1)[1].split(">", 1)[0]
    return verify_token(UNSUB_SECRET, token).email


def test_sends_the_first_recipients_message_to_the_test_address_only(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    campaign = smtp_campaign(tmp_path, server.url())
    db = tmp_path / "stamp.db"
    done = run_stamp(
        "send", campaign, "--test-to", TEST_TO, "--db", db, "--log-format", "json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    [received] = server.messages
    assert received.rcpt_tos == (TEST_TO,)
    message = parsed(received.data)
    assert message["To"] == TEST_TO
    assert message["Subject"] == "Hi U0"  # the real subject, no "[test]" prefix
    assert "Hello U0, you are user0@example.test" in text_of(message)
    assert unsubscribe_key(message) == "user0@example.test"  # the real recipient's link
    assert "user0@example.test" not in str(message["Message-ID"])
    [line] = json_lines(done.stdout)
    assert line["event"] == "test" and line["outcome"] == "accepted"
    assert line["recipient"] == "user0@example.test" and line["to"] == TEST_TO
    # no campaign row, no ledger row, no run: no store was even needed
    assert not db.exists()


@pytest.mark.parametrize(
    ("choice", "who"),
    [
        (["--row", "4"], "user2@example.test"),
        (["--email", "USER3@example.test"], "user3@example.test"),
    ],
)
def test_row_or_email_chooses_the_recipient_and_the_ledger_stays_as_it_was(
    tmp_path: Path, server: SMTPTestServer, choice: list[str], who: str
) -> None:
    campaign = smtp_campaign(tmp_path, server.url())
    db = tmp_path / "stamp.db"
    first = run_stamp(*send_args(campaign, db, "--limit", "2"), cwd=tmp_path)
    assert first.returncode == 3, first.stderr  # two sent, three pending
    before = dump(db)
    sent_before = len(server.messages)
    done = run_stamp("send", campaign, "--test-to", TEST_TO, *choice, "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert dump(db) == before
    [received] = server.messages[sent_before:]
    assert received.rcpt_tos == (TEST_TO,)
    message = parsed(received.data)
    assert message["To"] == TEST_TO
    assert f"you are {who}" in text_of(message)
    assert unsubscribe_key(message) == who
    # the real send goes on as if no test had happened
    rest = run_stamp(*send_args(campaign, db), cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert set(ledger_states(db).values()) == {"sent"}
    assert server.count(who) == 1


def test_a_suppressed_test_address_still_gets_the_test(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    campaign = smtp_campaign(tmp_path, server.url())
    db = tmp_path / "stamp.db"
    added = run_stamp("suppress", "add", TEST_TO, "--db", db, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    done = run_stamp("send", campaign, "--test-to", TEST_TO, "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [m.rcpt_tos for m in server.messages] == [(TEST_TO,)]
    assert all(not rows for rows in dump(db).values())


def test_a_suppressed_recipient_is_tested_with_a_note(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    campaign = smtp_campaign(tmp_path, server.url())
    db = tmp_path / "stamp.db"
    run_stamp("suppress", "add", "user1@example.test", "--db", db, cwd=tmp_path)
    done = run_stamp(
        "send", campaign, "--test-to", TEST_TO, "--row", "3", "--db", db, "--log-format", "rich",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "suppression list" in done.stdout
    assert [m.rcpt_tos for m in server.messages] == [(TEST_TO,)]


def test_fails_over_like_a_real_send_and_never_mails_the_recipient(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    with SMTPTestServer(tls="none") as down:
        down.on_mail("550 5.7.1 sending suspended for this account")  # refused: next one
        campaign = smtp_campaign(tmp_path, down.url(), server.url())
        done = run_stamp(
            "send", campaign, "--test-to", TEST_TO, "--log-format", "json", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert server.count(TEST_TO) == 1
        everyone = [*down.messages, *server.messages]
        assert len(everyone) == 1 and all(m.rcpt_tos == (TEST_TO,) for m in everyone)
    lines = json_lines(done.stdout)
    assert lines[-1]["provider"] == "second" and lines[-1]["attempts"] == 2
    # the failover is told as a real send tells it
    assert any(line.get("provider") == "first" for line in lines[:-1]), lines


def test_a_rejected_test_address_is_exit_1(tmp_path: Path, server: SMTPTestServer) -> None:
    server.on_rcpt(TEST_TO, "550 5.1.1 no such user")
    campaign = smtp_campaign(tmp_path, server.url())
    done = run_stamp("send", campaign, "--test-to", TEST_TO, "--log-format", "rich", cwd=tmp_path)
    assert done.returncode == 1
    assert "not sent" in done.stdout and "550" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--test-to", "not-an-address"], "--test-to"),
        (["--test-to", "Me <me@example.org>"], "--test-to"),
        (["--test-to", TEST_TO, "--row", "99"], "no recipient at row 99"),
        (["--test-to", TEST_TO, "--email", "stranger@example.org"], "stranger@example.org"),
        (["--test-to", TEST_TO, "--row", "2", "--email", "user0@example.test"], "not both"),
        (["--test-to", TEST_TO, "--dry-run"], "--dry-run"),
        (["--test-to", TEST_TO, "--limit", "1"], "--limit"),
        (["--row", "2", "--yes"], "--test-to"),
        (["--email", "user0@example.test", "--yes"], "--test-to"),
    ],
)
def test_bad_test_sends_are_refused_with_a_clear_message(
    tmp_path: Path, server: SMTPTestServer, args: list[str], says: str
) -> None:
    campaign = smtp_campaign(tmp_path, server.url())
    db = tmp_path / "stamp.db"
    done = run_stamp("send", campaign, *args, "--db", db, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr, done.stderr
    assert "bug in stamp" not in done.stderr and "Traceback" not in done.stderr
    assert server.messages == []
    assert all(not rows for rows in dump(db).values())


def test_the_outbox_keeps_each_test_apart_from_the_real_messages(tmp_path: Path) -> None:
    """The outbox names files by campaign and key: a test overwrites no real message."""
    outbox = tmp_path / "outbox"
    campaign = smtp_campaign(tmp_path, f"outbox://{outbox}")
    db = tmp_path / "stamp.db"
    assert run_stamp(*send_args(campaign, db), cwd=tmp_path).returncode == 0
    real = {p: p.read_bytes() for p in outbox.rglob("*.eml")}
    for _ in range(2):
        done = run_stamp("send", campaign, "--test-to", TEST_TO, "--db", db, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    files = {p: p.read_bytes() for p in outbox.rglob("*.eml")}
    assert {p: files[p] for p in real} == real
    tests = [p for p in files if p not in real]
    assert len(tests) == 2 and all(p.name == f"{TEST_TO}.eml" for p in tests)
    real_folders = {p.parent for p in real}
    assert len({p.parent for p in tests} - real_folders) == 2  # a folder of its own, each
