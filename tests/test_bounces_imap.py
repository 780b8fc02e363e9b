"""``stamp bounces fetch`` against a real IMAP server: Dovecot on 127.0.0.1.

The bounce mailbox is filled over IMAP with the corpus made to answer a real SMTP
send (tests/test_bounces.py), then fetched: processed mail moves to the folder the
server creates, what could not be used stays in INBOX, a second fetch counts
nothing twice, and a wrong password is a clear error that never shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

from dovecot_server import PASSWORD, USER, dovecot
from imap_tools import MailBoxUnencrypted
from test_bounces import CORPUS, Sent, answer, runner, secrets_fixture, sent_fixture  # noqa: F401

from stampcli.cli.app import app


def _fetch(sent: Sent, url: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["bounces", "fetch", str(sent.campaign), "--mailbox", url, "--json",
         "--db", str(sent.db), *extra],
    )  # fmt: skip
    return result.exit_code, result.output


def test_fetch_over_imap_moves_what_it_used_and_keeps_the_rest(
    sent: Sent,
    tmp_path: Path,
) -> None:
    with dovecot(tmp_path) as server:
        box = MailBoxUnencrypted("127.0.0.1", server.port).login(USER, PASSWORD)
        box.append(answer("postfix_user_unknown.eml", sent, "u0@example.com"), "INBOX")
        box.append(answer("microsoft_jmrp_arf.eml", sent, "u1@example.com"), "INBOX")
        box.append(answer("out_of_office.eml", sent, "u2@example.com"), "INBOX")
        box.append((CORPUS / "spam.eml").read_bytes(), "INBOX")
        box.append((CORPUS / "malformed.eml").read_bytes(), "INBOX")
        code, out = _fetch(sent, server.url())
        assert code == 0, out
        report = json.loads(out)
        assert report["verdicts"] == {"processed": 3, "junk": 1, "unparsable": 1}
        assert report["moved"] == 3 and report["suppressed"] == 2
        assert PASSWORD not in out
        box.folder.set("INBOX")
        kept = sorted(m.subject for m in box.fetch(mark_seen=False))
        assert kept == ["80% off, today only!!!", "Undelivered Mail Returned to Sender"]
        box.folder.set("stamp-processed")
        assert len(box.uids()) == 3
        # again: INBOX holds only what was kept, read and kept again, nothing new
        code, out = _fetch(sent, server.url())
        assert code == 0, out
        again = json.loads(out)
        assert (again["read"], again["stored"], again["moved"]) == (2, 0, 0)
        # the processed folder read again (as a second cron job might): all seen before
        code, out = _fetch(sent, server.url("stamp-processed"), "--delete")
        assert code == 0, out
        third = json.loads(out)
        assert (third["stored"], third["duplicates"], third["moved"]) == (0, 3, 3)
        box.folder.set("stamp-processed")
        assert box.uids() == []
        box.logout()


def test_a_wrong_password_is_a_clear_error_without_the_password(
    sent: Sent,
    tmp_path: Path,
) -> None:
    with dovecot(tmp_path) as server:
        url = server.url().replace(PASSWORD, "wrong-password-4711")
        code, out = _fetch(sent, url)
        assert code == 4, out
        assert "wrong-password-4711" not in out and "Traceback" not in out
        assert f"{USER}@127.0.0.1" in out


def test_an_unreachable_server_is_a_clear_error(sent: Sent) -> None:
    code, out = _fetch(sent, "imap://u:p-4711@127.0.0.1:1/INBOX?tls=none")
    assert code == 4, out
    assert "p-4711" not in out and "Traceback" not in out
