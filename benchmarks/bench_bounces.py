"""Bounces of SMTP sends: parse throughput of the bounce corpus, and the inbound listener.

1. **parse**: :func:`stampcli.bounces.parse.parse_mail` over every mail of
   ``tests/fixtures/bounces`` (DSNs of Postfix, Exim, Exchange, Gmail; ARF of
   Yahoo, Microsoft, AOL; qmail; auto-replies; spam; malformed MIME), round
   after round, in messages/s. References in the same run: the stdlib MIME
   parse alone (``BytesParser(policy=compat32)``, the floor any parser pays) and
   ``flufl.bounce.all_failures`` after it (what a flufl-only reader pays).
2. **record**: the whole use case (parse, VERP check, ledger match, record_events,
   one commit a mail) on a SQLite store holding a sent campaign, in mails/s.
3. **listener**: aiosmtplib sends VERP DSNs over several connections at once to
   ``stamp serve --smtp``'s listener (:class:`InboundListener`, real store),
   against a bare aiosmtpd that accepts and drops every mail (same client,
   same run): mails/s, the ratio, and the acceptance rate (250s / mails sent).

Standalone: ``python -m benchmarks.bench_bounces [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402
from flufl.bounce import all_failures  # noqa: E402

from stampcli.bounces.parse import parse_mail  # noqa: E402
from stampcli.compliance.verp import Verp  # noqa: E402
from stampcli.records import Claim, NewRow, Outcome  # noqa: E402
from stampcli.server.inbound_smtp import InboundListener  # noqa: E402
from stampcli.service.bounces import BounceReport, BounceSettings, process_mail  # noqa: E402
from stampcli.store import open_store  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "bounces"
SECRET = "bench-verp-secret-0123456789"
FIXTURE_VERP = "bounces+1-2-aaaaaaaaaaaaaaaa@bounce.acme.example"
FIXTURE_RCPT = "jane.doe@example.net"
FIXTURE_MID = "<0123456789abcdef0123456789abcdef01234567@acme.example>"


def _rate(n: int, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def bench_parse(rounds: int) -> dict[str, float]:
    mails = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    n = rounds * len(mails)
    parser = email.parser.BytesParser(policy=email.policy.compat32)

    def stamp() -> None:
        for _ in range(rounds):
            for raw in mails:
                parse_mail(raw)

    def stdlib() -> None:
        for _ in range(rounds):
            for raw in mails:
                parser.parsebytes(raw)

    def flufl() -> None:
        for _ in range(rounds):
            for raw in mails:
                all_failures(parser.parsebytes(raw))

    # alternate, best of three each: the machine is shared
    best: dict[str, float] = {"stamp": 0.0, "stdlib_mime": 0.0, "flufl_all_failures": 0.0}
    for _ in range(3):
        best["stamp"] = max(best["stamp"], _rate(n, stamp))
        best["stdlib_mime"] = max(best["stdlib_mime"], _rate(n, stdlib))
        best["flufl_all_failures"] = max(best["flufl_all_failures"], _rate(n, flufl))
    return best


def _store_with_campaign(tmp: Path, people: int) -> tuple[Path, Verp, list[tuple[str, str, str]]]:
    """A store with campaign 'news' of ``people`` sent rows; (address, VERP, Message-ID)."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "bench.db"
    verp = Verp.of("bounces@bounce.acme.example", SECRET)
    out: list[tuple[str, str, str]] = []
    with open_store(db) as store:
        cid = store.campaigns.ensure("news").id
        keys = [f"p{i}@example.com" for i in range(people)]
        store.ledger.insert(cid, [NewRow(k, k, "{}") for k in keys])
        rows = store.ledger.read_pending(cid, after_id=0, limit=people)
        store.ledger.claim([Claim(r.id, f"<m{r.id}@acme.example>") for r in rows])
        store.ledger.record([Outcome(r.id, "sent", "smtp", f"q{r.id}") for r in rows])
        out = [(r.key, verp.address(cid, r.id), f"<m{r.id}@acme.example>") for r in rows]
    return db, verp, out


def _bounces(targets: list[tuple[str, str, str]]) -> list[tuple[str, bytes]]:
    """One corpus DSN per target, made to answer its message (VERP, recipient, Message-ID)."""
    names = ["postfix_user_unknown.eml", "exchange_online_5_1_10.eml", "gmail_5_1_1.eml",
             "exim_mailbox_full.eml", "postfix_delayed.eml"]  # fmt: skip
    templates = [(CORPUS / n).read_text() for n in names]
    out = []
    for i, (who, verp, mid) in enumerate(targets):
        text = templates[i % len(templates)]
        text = text.replace(FIXTURE_VERP, verp).replace(FIXTURE_RCPT, who)
        out.append((verp, text.replace(FIXTURE_MID, mid).encode()))
    return out


def bench_record(tmp: Path, mails: int) -> float:
    db, verp, targets = _store_with_campaign(tmp / "record", mails)
    bounces = _bounces(targets)
    settings = BounceSettings(verp=verp)
    report = BounceReport()
    with open_store(db) as store:
        rate = _rate(mails, lambda: [process_mail(store, settings, "b", raw, report)
                                     for _, raw in bounces])  # fmt: skip
    assert report.stored == mails, report.as_dict()
    return rate


async def _flood(port: int, mails: list[tuple[str, bytes]], connections: int) -> int:
    """Send every mail (null sender, its VERP recipient) over ``connections`` sessions;
    how many were answered 250."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in mails:
        queue.put_nowait(item)
    ok = 0

    async def worker() -> None:
        nonlocal ok
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            while not queue.empty():
                rcpt, raw = queue.get_nowait()
                try:
                    await client.sendmail("", [rcpt], raw)
                    ok += 1
                except aiosmtplib.SMTPResponseException:
                    pass
        finally:
            client.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return ok


class _Drop:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _bare_server() -> tuple[asyncio.AbstractEventLoop, Any, int, Any]:
    import threading

    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}

    def run() -> None:
        server = loop.run_until_complete(
            loop.create_server(lambda: SMTP(_Drop(), decode_data=False), "127.0.0.1", 0)
        )
        ready["server"] = server
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while "server" not in ready:
        time.sleep(0.01)
    return loop, ready["server"], ready["server"].sockets[0].getsockname()[1], thread


def bench_listener(tmp: Path, mails: int, connections: int) -> dict[str, float]:
    db, verp, targets = _store_with_campaign(tmp / "listen", mails)
    bounces = _bounces(targets)
    listener = InboundListener(BounceSettings(verp=verp), lambda: open_store(db))
    listener.start()
    try:
        start = time.perf_counter()
        ok = asyncio.run(_flood(listener.port, bounces, connections))
        stamp_rate = mails / (time.perf_counter() - start)
    finally:
        listener.stop()
    loop, _, port, thread = _bare_server()
    try:
        start = time.perf_counter()
        bare_ok = asyncio.run(_flood(port, bounces, connections))
        bare_rate = mails / (time.perf_counter() - start)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    with open_store(db) as store:
        counts = store.events.counts(store.campaigns.get("news").id)  # type: ignore[union-attr]
    recorded = counts["bounced_hard"] + counts["bounced_soft"] + counts["deferred"]
    return {
        "stamp_mails_per_s": stamp_rate,
        "bare_aiosmtpd_mails_per_s": bare_rate,
        "ratio": stamp_rate / bare_rate,
        "acceptance_rate": ok / mails,
        "bare_acceptance_rate": bare_ok / mails,
        "events_recorded": float(recorded),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and mails")
    args = ap.parse_args()
    rounds, mails, conns = (20, 500, 4) if args.quick else (100, 3000, 8)
    with tempfile.TemporaryDirectory() as tmp:
        parse = bench_parse(rounds)
        n = len(list(CORPUS.glob("*.eml")))
        print(f"parse ({rounds} rounds of the {n}-mail corpus):")
        for name, rate in parse.items():
            print(f"  {name:>20}: {rate:10,.0f} messages/s")
        print(f"  stamp / stdlib MIME parse: {parse['stamp'] / parse['stdlib_mime']:.2f}")
        print(f"  stamp / flufl.bounce alone: {parse['stamp'] / parse['flufl_all_failures']:.2f}")
        record = bench_record(Path(tmp), mails)
        print(f"record ({mails} VERP DSNs into SQLite, one commit each): {record:,.0f} mails/s")
        listen = bench_listener(Path(tmp), mails, conns)
        print(f"listener ({mails} DSNs over {conns} SMTP connections, aiosmtplib):")
        for name, value in listen.items():
            print(f"  {name:>26}: {value:,.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
