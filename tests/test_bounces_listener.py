"""The inbound bounce listener (``stamp serve --smtp``) over real SMTP from aiosmtplib.

A real SMTP send with VERP (tests/test_bounces.py) is answered through the listener
instead of a mailbox: the same parsers and events, mail for any other domain or with
a forged token refused at RCPT, size limited, nothing relayed; and ``stamp serve
--smtp`` itself, started as a process, takes a bounce and records it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib
from test_bounces import (  # noqa: F401
    SECRET,
    Sent,
    answer,
    done_when_mails,
    secrets_fixture,
    sent_fixture,
)

from stampcli.bounces.parse import parse_mail
from stampcli.compliance.verp import Verp
from stampcli.server.inbound_smtp import InboundListener
from stampcli.service.bounces import BounceSettings
from stampcli.store import open_store

BARE = "bounces@bounce.acme.example"


def _listener(sent: Sent, **options: object) -> InboundListener:
    settings = BounceSettings(verp=Verp.of(BARE, SECRET))
    listener = InboundListener(settings, lambda: open_store(sent.db), **options)  # type: ignore[arg-type]
    listener.start()
    return listener


async def _send(port: int, rcpt: str, raw: bytes) -> tuple[int, str]:
    """(code, text) of the first refusal, or of the final 250."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await client.connect()
    try:
        await client.mail("")
        code, text = await client.rcpt(rcpt)
        if code != 250:
            return code, text
        code, text = await client.data(raw)
        return code, text
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        client.close()


def test_the_listener_takes_bounces_for_its_domain_only(sent: Sent) -> None:
    listener = _listener(sent, max_size=200_000)
    port = listener.port
    u0, u1 = sent.verp["u0@example.com"], sent.verp["u1@example.com"]
    forged = u1[:-21] + ("b" if u1[-21] != "b" else "c") + u1[-20:]

    async def run() -> list[tuple[int, str]]:
        return [
            await _send(port, u0, answer("postfix_user_unknown.eml", sent, "u0@example.com")),
            await _send(port, BARE, answer("microsoft_jmrp_arf.eml", sent, "u1@example.com")),
            await _send(port, "someone@elsewhere.example", b"Subject: relay me\r\n\r\nx\r\n"),
            await _send(port, forged, answer("gmail_5_1_1.eml", sent, "u1@example.com")),
            await _send(port, u0, b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 5000),
            await _send(port, u0, Path(__file__).with_name("fixtures").joinpath(
                "bounces", "malformed.eml").read_bytes()),
            # the same DSN again (the MTA retried after a lost 250): counted once
            await _send(port, u0, answer("postfix_user_unknown.eml", sent, "u0@example.com")),
        ]  # fmt: skip

    try:
        replies = asyncio.run(run())
    finally:
        listener.stop()
    codes = [code for code, _ in replies]
    assert codes == [250, 250, 550, 550, 552, 554, 250], replies
    assert "relaying denied" in replies[2][1] and "token" in replies[3][1]
    with open_store(sent.db) as store:
        suppressed = {s.key: s.reason for s in store.suppressions.iter_suppressions()}
        assert suppressed == {"u0@example.com": "hard_bounce", "u1@example.com": "complaint"}
        counts = store.events.counts(store.campaigns.get("news").id)  # type: ignore[union-attr]
        assert (counts["bounced_hard"], counts["complained"]) == (1, 1)
    assert listener.stats.refused_rcpt == 2 and listener.stats.accepted == 3


def test_the_done_when_mailbox_through_the_listener_ends_the_same(sent: Sent) -> None:
    """The same mails as the mailbox test, each to the address it was delivered to: the
    same suppressions and pause (the unsubscribe mail is for another domain: refused)."""
    mails = done_when_mails(sent)
    listener = _listener(sent)

    async def run() -> dict[str, int]:
        codes = {}
        for name, raw in mails.items():
            report = parse_mail(raw)
            rcpt = report.recipients[0] if report.recipients else BARE
            codes[name] = (await _send(listener.port, rcpt, raw))[0]
        return codes

    try:
        codes = asyncio.run(run())
    finally:
        listener.stop()
    refused = {name for name, code in codes.items() if code != 250}
    assert refused == {"forged", "unsubscribe", "malformed"}, codes
    with open_store(sent.db) as store:
        suppressed = {s.key: s.reason for s in store.suppressions.iter_suppressions()}
        assert suppressed == {
            "u0@example.com": "hard_bounce",
            "u1@example.com": "hard_bounce",
            "u3@example.com": "complaint",
            "u4@example.com": "complaint",
            "u7@example.com": "hard_bounce",
        }
        campaign = store.campaigns.get("news")
        assert campaign is not None and campaign.paused_reason is not None
        counts = store.events.counts(campaign.id)
        assert (counts["bounced_hard"], counts["complained"], counts["auto_replied"]) == (3, 2, 1)
        assert store.events.unmatched() == 0


def test_stamp_serve_smtp_takes_a_bounce(sent: Sent, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "STAMP_VERP_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stampcli", "serve", "--port", "0", "--smtp", "0",
         "--return-path", BARE, "--db", str(sent.db)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 30
        seen = []
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"smtp://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
        assert port is not None, "".join(seen)
        raw = answer("exchange_online_5_1_10.eml", sent, "u3@example.com")
        code, _ = asyncio.run(_send(port, sent.verp["u3@example.com"], raw))
        assert code == 250
    finally:
        proc.terminate()
        proc.wait(15)
    with open_store(sent.db) as store:
        got = store.suppressions.get("u3@example.com")
        assert got is not None and got.reason == "hard_bounce" and got.source == "bounces"


def test_serve_smtp_without_a_return_path_or_secret_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stampcli.cli.app import app

    runner = CliRunner()
    db = str(tmp_path / "s.db")
    result = runner.invoke(app, ["serve", "--port", "0", "--smtp", "0", "--db", db])
    assert result.exit_code == 2 and "--return-path" in result.output
    result = runner.invoke(
        app, ["serve", "--port", "0", "--smtp", "0", "--return-path", BARE, "--db", db],
        env={"STAMP_VERP_SECRET": ""},
    )  # fmt: skip
    assert result.exit_code == 2 and "STAMP_VERP_SECRET" in result.output
