"""Bounces of SMTP sends end to end: a real send over SMTP (aiosmtpd) with VERP, then a
Maildir/mbox of the bounce corpus (tests/fixtures/bounces) made to answer that send,
read by ``stamp bounces read``; and the store lookups the matching uses, on every backend.

The corpus files are shaped as each MTA and mailbox provider sends them; they name
``jane.doe@example.net``, the VERP address ``bounces+1-2-aaaaaaaaaaaaaaaa@bounce.acme.example``
and the Message-ID ``<0123...@acme.example>``. :func:`answer` replaces the three with
what the send really used for one recipient.
"""

from __future__ import annotations

import json
import mailbox
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtp_server import SMTPTestServer
from test_store_contract import BACKENDS
from typer.testing import CliRunner

from stampcli.bounces.parse import parse_mail
from stampcli.cli.app import app
from stampcli.compliance.tokens import make_token as unsubscribe_token
from stampcli.compliance.verp import Verp, make_token, verify_token
from stampcli.records import Claim, NewRow, Outcome
from stampcli.store import open_store, protocols
from stampcli.store.testing import set_ledger

runner = CliRunner()
CORPUS = Path(__file__).parent / "fixtures" / "bounces"
SECRET = "verp-secret-for-tests-0123456789"
UNSUB_SECRET = "unsub-secret-for-tests-0123456789"
PEOPLE = [f"u{i}@example.com" for i in range(10)]
FIXTURE_VERP = "bounces+1-2-aaaaaaaaaaaaaaaa@bounce.acme.example"
FIXTURE_MID = "<0123456789abcdef0123456789abcdef01234567@acme.example>"
FIXTURE_RCPT = "jane.doe@example.net"


@dataclass
class Sent:
    campaign: Path
    db: Path
    verp: dict[str, str]  # recipient -> the MAIL FROM its message went out with
    mids: dict[str, str]  # recipient -> Message-ID

    def open(self) -> protocols.Store:
        return open_store(self.db)


def answer(name: str, sent: Sent, who: str, *, verp: str | None = None) -> bytes:
    """Corpus mail ``name`` about the message stamp sent to ``who``."""
    text = (CORPUS / name).read_text()
    text = text.replace(FIXTURE_VERP, verp if verp is not None else sent.verp[who])
    text = text.replace(FIXTURE_MID, sent.mids[who]).replace(FIXTURE_RCPT, who)
    return text.encode()


def write_campaign(tmp: Path, url: str, extra: str = "") -> Path:
    (tmp / "t.html").write_text("<p>Hi {{ first_name }}</p>")
    (tmp / "list.csv").write_text("email,first_name\n" + "".join(f"{a},U\n" for a in PEOPLE))
    path = tmp / "campaign.yml"
    path.write_text(
        "name: news\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi"\n'
        "template: t.html\n"
        "audience:\n  file: list.csv\n"
        "unsubscribe:\n"
        '  url: "https://acme.example/u?t={{ unsubscribe_token }}"\n'
        '  mailto: "unsubscribe@acme.example"\n'
        "bounces:\n  return_path: bounces@bounce.acme.example\n"
        "auto_stop: {min_answers: 5, complaint_rate: 0.15}\n"
        f'providers:\n  - url: "{url}"\n' + extra
    )
    return path


@pytest.fixture(name="secrets")
def secrets_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_VERP_SECRET", SECRET)
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUB_SECRET)


@pytest.fixture(name="sent")
def sent_fixture(tmp_path: Path, secrets: None) -> Iterator[Sent]:
    with SMTPTestServer() as server:
        campaign = write_campaign(tmp_path, server.url("smtp") + "?tls=none")
        db = tmp_path / "stamp.db"
        result = runner.invoke(app, ["send", str(campaign), "--yes", "--db", str(db)])
        assert result.exit_code == 0, result.output
        verp = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
        mids = {}
        for m in server.messages:
            head = m.data.split(b"\r\n\r\n", 1)[0].decode()
            mids[m.rcpt_tos[0]] = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("message-id:")
            )
        yield Sent(campaign, db, verp, mids)


def maildir(tmp: Path, mails: dict[str, bytes]) -> Path:
    root = tmp / "Maildir"
    box = mailbox.Maildir(root, create=True)
    for name, raw in mails.items():
        message = mailbox.MaildirMessage(raw)
        key = box.add(message)
        (tmp / f"key-{name}").write_text(key)
    box.close()
    return root


def read(sent: Sent, path: Path, *extra: str) -> Any:
    result = runner.invoke(
        app, ["bounces", "read", str(sent.campaign), str(path), "--json", "--db", str(sent.db),
              *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_smtp_message_goes_out_with_a_signed_verp_return_path(sent: Sent) -> None:
    verp = Verp.of("bounces@bounce.acme.example", SECRET)
    with sent.open() as store:
        cid = store.campaigns.get("news").id  # type: ignore[union-attr]
        for who, mail_from in sent.verp.items():
            assert mail_from.startswith("bounces+") and mail_from.endswith("@bounce.acme.example")
            assert len(mail_from.split("@")[0]) <= 64
            ref = verp.read(mail_from.upper())  # MTAs that upper- or lower-case local parts
            row = store.ledger.row(cid, who)
            assert row is not None and (ref.campaign_id, ref.ledger_id) == (cid, row.id)
    assert len(set(sent.verp.values())) == len(PEOPLE)


def done_when_mails(sent: Sent) -> dict[str, bytes]:
    """The mailbox of the issue's "done when", answering the send in ``sent``."""
    bare = "bounces@bounce.acme.example"
    forged = sent.verp["u6@example.com"][:-22] + "aaaaaaa@bounce.acme.example"
    return {
        "postfix": answer("postfix_user_unknown.eml", sent, "u0@example.com"),
        # no VERP left (an MTA that rewrote it): matched by the returned Message-ID
        "exchange": answer("exchange_online_5_1_10.eml", sent, "u1@example.com", verp=bare),
        "exim-soft": answer("exim_mailbox_full.eml", sent, "u2@example.com"),
        "yahoo-arf": answer("yahoo_arf.eml", sent, "u3@example.com"),
        "jmrp-arf": answer("microsoft_jmrp_arf.eml", sent, "u4@example.com", verp=bare),
        "ooo": answer("out_of_office.eml", sent, "u5@example.com"),
        "forged": answer("gmail_5_1_1.eml", sent, "u6@example.com", verp=forged),
        "qmail": answer("qmail_non_standard.eml", sent, "u7@example.com"),
        "delayed": answer("postfix_delayed.eml", sent, "u8@example.com"),
        # a DSN naming an address stamp never mailed, quoting a Message-ID it never made
        "stranger": answer("postfix_user_unknown.eml", sent, "u9@example.com", verp=bare)
        .replace(b"u9@example.com", b"victim@example.org"),
        "spam": (CORPUS / "spam.eml").read_bytes(),
        "malformed": (CORPUS / "malformed.eml").read_bytes(),
        "unsubscribe": (
            b"From: u9@example.com\r\nTo: unsubscribe@acme.example\r\n"
            b"Subject: unsubscribe " + unsubscribe_token(UNSUB_SECRET, "u9@example.com",
                                                         "news").encode()
            + b"\r\nMessage-ID: <unsub-1@example.com>\r\n\r\n"
        ),
    }  # fmt: skip


def test_a_mailbox_of_bounces_complaints_replies_and_junk_ends_as_it_should(
    sent: Sent, tmp_path: Path
) -> None:
    """The issue's "done when": exactly the bounced and complaining addresses suppressed,
    the campaign paused by its complaint share, the counts in status, the junk untouched."""
    mails = done_when_mails(sent)
    with sent.open() as store:  # a crash left u0's row unknown: its bounce settles it
        set_ledger(store, store.campaigns.get("news").id, key="u0@example.com", state="unknown")  # type: ignore[union-attr]
    root = maildir(tmp_path, mails)
    report = read(sent, root)
    assert report["read"] == len(mails)
    assert report["kinds"] == {
        "arf": 2, "auto_reply": 1, "dsn": 6, "flufl": 1, "junk": 1, "unparsable": 1,
        "unsubscribe": 1,
    }  # fmt: skip
    assert report["verdicts"] == {"processed": 9, "junk": 1, "unparsable": 1, "forged": 1,
                                  "unmatched": 1}  # fmt: skip
    assert report["moved"] == 9 and report["paused"] == ["news"]
    assert report["resolved_unknown"] == 1
    with sent.open() as store:
        suppressed = {s.key: s.reason for s in store.suppressions.iter_suppressions()}
        assert suppressed == {
            "u0@example.com": "hard_bounce",
            "u1@example.com": "hard_bounce",
            "u3@example.com": "complaint",
            "u4@example.com": "complaint",
            "u7@example.com": "hard_bounce",
            "u9@example.com": "unsubscribed",
        }
        campaign = store.campaigns.get("news")
        assert campaign is not None and campaign.paused_reason is not None
        assert store.ledger.row(campaign.id, "u0@example.com").state == "sent"  # type: ignore[union-attr]
        counts = store.events.counts(campaign.id)
        assert (counts["bounced_hard"], counts["bounced_soft"], counts["complained"]) == (3, 1, 2)
        assert (counts["auto_replied"], counts["deferred"], counts["unsubscribed"]) == (1, 1, 1)
        assert store.events.unmatched() == 0  # nothing unverified was stored
    # what was kept is what could not be used; the processed mail is in the folder
    inbox = mailbox.Maildir(root, create=False)
    kept = sorted(str(m.get("Message-ID")) for m in inbox)
    assert len(kept) == 4 and "<spam.1762913580@cheap-meds.example>" in kept
    assert len(list(inbox.get_folder("stamp-processed").keys())) == 9
    status = runner.invoke(app, ["status", str(sent.campaign), "--json", "--db", str(sent.db)])
    assert status.exit_code == 0, status.output
    events = json.loads(status.stdout)["events"]
    assert (events["complained"], events["bounced_hard"], events["auto_replied"]) == (2, 3, 1)


def test_reading_the_same_mail_twice_counts_it_once(sent: Sent, tmp_path: Path) -> None:
    raw = answer("postfix_user_unknown.eml", sent, "u0@example.com")
    mbox_path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(mbox_path)
    box.add(raw)
    box.add(b"Delivered-To: x@y.example\n" + raw)  # the same bounce, delivered twice
    box.close()
    first = read(sent, mbox_path)
    assert (first["stored"], first["duplicates"], first["moved"]) == (1, 1, 2)
    assert len(mailbox.mbox(mbox_path)) == 0
    moved = mailbox.mbox(tmp_path / "bounces.mbox.stamp-processed")
    assert len(moved) == 2
    shutil.copy(tmp_path / "bounces.mbox.stamp-processed", mbox_path)
    again = read(sent, mbox_path, "--delete")
    assert (again["stored"], again["duplicates"], again["moved"]) == (0, 2, 2)
    with sent.open() as store:
        assert store.events.counts(store.campaigns.get("news").id)["bounced_hard"] == 1  # type: ignore[union-attr]


def test_a_second_read_of_the_mailbox_waits_for_the_first(sent: Sent, tmp_path: Path) -> None:
    from stampcli.service.bounces import LOCK_PREFIX
    from stampcli.store import locks

    root = maildir(tmp_path, {"p": answer("postfix_user_unknown.eml", sent, "u0@example.com")})
    with sent.open() as store:
        row = store.campaigns.ensure(LOCK_PREFIX + str(root))
        store.locks.acquire(row.id, locks.new_owner(), campaign_name=row.name)
    result = runner.invoke(
        app, ["bounces", "read", str(sent.campaign), str(root), "--db", str(sent.db)]
    )
    assert result.exit_code == 5, result.output
    assert len(mailbox.Maildir(root, create=False)) == 1  # nothing read, nothing moved


def test_bad_paths_and_urls_are_clear_errors(sent: Sent, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for args, says in [
        (["read", str(sent.campaign), str(tmp_path / "none")], "no such Maildir or mbox"),
        (["read", str(sent.campaign), str(tmp_path / "notes.txt")], "not an mbox file"),
        (["read", str(sent.campaign), str(tmp_path)], "not a Maildir"),
        (["fetch", str(sent.campaign)], "no mailbox to fetch from"),
        (["fetch", str(sent.campaign), "--mailbox", "pop3://x@y/INBOX"], "imaps://"),
    ]:
        result = runner.invoke(app, ["bounces", *args, "--db", str(sent.db)])
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_a_send_with_a_return_path_and_no_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUB_SECRET)
    monkeypatch.delenv("STAMP_VERP_SECRET", raising=False)
    with SMTPTestServer() as server:
        campaign = write_campaign(tmp_path, server.url("smtp") + "?tls=none")
        result = runner.invoke(
            app, ["send", str(campaign), "--yes", "--db", str(tmp_path / "s.db")]
        )
        assert result.exit_code == 2, result.output
        assert "STAMP_VERP_SECRET" in result.output
        assert server.messages == []


# ------------------------------------------------------------------------------ tokens


def test_verp_tokens_are_short_signed_and_case_blind() -> None:
    token = make_token(SECRET, 7, 123_456_789)
    assert token == token.lower() and len(token) <= 40
    assert verify_token(SECRET, token.upper()).ledger_id == 123_456_789
    for bad in [
        token[:-1] + ("a" if token[-1] != "a" else "b"),  # altered signature
        token.replace("7-", "8-", 1),  # another campaign, same signature
        token[:-3],  # truncated
        "",
        "x" * 500,
    ]:
        with pytest.raises(ValueError):
            verify_token(SECRET, bad)
    with pytest.raises(ValueError):
        verify_token("another-secret-0123456789", token)


# ------------------------------------------------------------------------------ corpus


CORPUS_KINDS = {
    "postfix_user_unknown.eml": ("dsn", "bounced", "hard", "5.1.1"),
    "postfix_delayed.eml": ("dsn", "deferred", "soft", "4.4.1"),
    "exim_mailbox_full.eml": ("dsn", "bounced", "soft", "4.2.2"),
    "exchange_online_5_1_10.eml": ("dsn", "bounced", "hard", "5.1.10"),
    "gmail_5_1_1.eml": ("dsn", "bounced", "hard", "5.1.1"),
    "yahoo_arf.eml": ("arf", "complained", None, None),
    "microsoft_jmrp_arf.eml": ("arf", "complained", None, None),
    "aol_arf_message_id_only.eml": ("arf", "complained", None, None),
    "qmail_non_standard.eml": ("flufl", "bounced", "hard", None),
    "out_of_office.eml": ("auto_reply", "auto_replied", None, None),
    "vacation_rfc3834.eml": ("auto_reply", "auto_replied", None, None),
    "spam.eml": ("junk", None, None, None),
    "malformed.eml": ("unparsable", None, None, None),
}


@pytest.mark.parametrize("name", sorted(CORPUS_KINDS))
def test_the_corpus_parses_as_each_sender_means_it(name: str) -> None:
    kind, event, bounce_kind, status = CORPUS_KINDS[name]
    report = parse_mail((CORPUS / name).read_bytes())
    assert report.kind == kind
    if event is None:
        assert report.findings == ()
        return
    (finding,) = report.findings
    assert finding.type.value == event
    assert (finding.bounce_kind.value if finding.bounce_kind else None) == bounce_kind
    assert finding.status == status
    if name != "yahoo_arf.eml":  # Yahoo redacts the recipient
        assert finding.recipient == FIXTURE_RCPT
    assert FIXTURE_MID in report.message_ids or kind == "flufl"


def test_every_corpus_file_is_covered() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(CORPUS_KINDS)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage without headers",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno parts",
        b"From: a@b\r\nContent-Type: message/rfc822\r\n\r\n" + b"X" * 100_000,
    ],
)
def test_hostile_mail_never_raises(raw: bytes) -> None:
    report = parse_mail(raw)
    assert report.kind in ("junk", "unparsable", "arf")
    assert all(f.recipient is None or "@" in f.recipient for f in report.findings)


# ------------------------------------------------------------------------------ every backend


@pytest.fixture(params=sorted(BACKENDS))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    with BACKENDS[request.param](request, tmp_path).open() as store:
        yield store


def test_rows_by_ledger_id_and_by_stamps_message_id(any_store: protocols.Store) -> None:
    store = any_store
    cid = store.campaigns.ensure("news").id
    other = store.campaigns.ensure("other").id
    store.ledger.insert(cid, [NewRow(k, k, "{}") for k in ("a@x.test", "b@x.test")])
    store.ledger.insert(other, [NewRow("a@x.test", "a@x.test", "{}")])
    rows = store.ledger.read_pending(cid, after_id=0, limit=10)
    rows += store.ledger.read_pending(other, after_id=0, limit=10)
    store.ledger.claim([Claim(r.id, f"<{r.id}-{r.key}@acme.example>") for r in rows])
    store.ledger.record([Outcome(r.id, "sent", "smtp", f"q{r.id}") for r in rows])
    by_id = store.events.by_ledger_id([r.id for r in rows] + [999_999])
    assert {i: (ref.campaign, ref.key) for i, ref in by_id.items()} == {
        r.id: ("news" if i < 2 else "other", r.key) for i, r in enumerate(rows)
    }
    a_news, _, a_other = rows
    want = {
        (f"<{a_other.id}-a@x.test@acme.example>", "a@x.test"),
        (f"<{a_news.id}-a@x.test@acme.example>", "b@x.test"),  # the id of another recipient
        ("<nobody@acme.example>", "a@x.test"),
    }
    found = store.events.by_rfc_message_id(want)
    assert {k: v.ledger_id for k, v in found.items()} == {
        (f"<{a_other.id}-a@x.test@acme.example>", "a@x.test"): a_other.id
    }
    assert store.events.by_ledger_id([]) == {} and store.events.by_rfc_message_id([]) == {}


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.booleans())
def test_any_row_round_trips_through_a_verp_address(
    campaign_id: int, row: int, upper: bool
) -> None:
    verp = Verp.of("bounces@bounce.acme.example", SECRET)
    address = verp.address(campaign_id, row)
    assert len(address.split("@")[0]) <= 64
    ref = verp.read(address.upper() if upper else address)
    assert (ref.campaign_id, ref.ledger_id) == (campaign_id, row)
