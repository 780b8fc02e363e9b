"""``stamp report`` over a big campaign: N ledger rows and 3N events, SQLite and PostgreSQL.

The store is filled directly (SQLite ``executemany``, PostgreSQL ``COPY``) with a
campaign of N recipients over 50 domains and two providers, and three events a
recipient but the 1% that failed at hand-off (delivered, then an open, a tenth of
them a machine's, then a click on one of five links or another open; or two
deferrals and a bounce), spread over two hours. Then the whole report
(:func:`stampcli.service.report.campaign_report` with ``--by`` a contact field:
funnel, timelines, providers with answer-time percentiles, domains, links,
segments) is timed against the reference measured in the same run on the same
store: a bare ``SELECT state, COUNT(*) ... GROUP BY state`` over the ledger plus
``SELECT type, COUNT(*) ... GROUP BY type`` over the events, the least any report
of these tables must read.

Standalone: ``python -m benchmarks.bench_report [--rows 1000000] [--repeat 3]``
(the default, 20,000 rows, takes seconds).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stampcli.records_report import ProviderTally
from stampcli.service.report import campaign_report
from stampcli.store import open_store, protocols

NAME = "big"
LINKS = [f"https://acme.example/article/{i}" for i in range(5)]
MACHINE = '{"event":"open","sg_machine_open":true}'


def _ledger_rows(cid: int, n: int, t0: float) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        key = f"user{i}@domain{i % 50}.example"
        state = "failed" if i % 100 == 1 else "sent"
        sent = t0 + i * 7200.0 / n
        fields = json.dumps({"plan": ("free", "pro", "team")[i % 3]})
        yield (i + 1, cid, key, key, fields, state, 1, "sg" if i % 4 else "mg", f"m{i}",
               t0, t0, sent, sent if state == "sent" else None)  # fmt: skip


def _event_rows(cid: int, n: int, t0: float) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        if i % 100 == 1:
            continue  # failed at hand-off: no events
        key = f"user{i}@domain{i % 50}.example"
        at = t0 + i * 7200.0 / n + 30
        lid = i + 1
        provider = "sg" if i % 4 else "mg"
        if i % 47 == 0:  # 2% bounce (spread over the domains), after two deferrals
            yield (provider, f"a{i}", "deferred", "soft", at, cid, lid, key, None, "{}")
            yield (provider, f"b{i}", "deferred", "soft", at + 600, cid, lid, key, None, "{}")
            yield (provider, f"c{i}", "bounced", "hard", at + 1800, cid, lid, key, None, "{}")
            continue
        yield (provider, f"a{i}", "delivered", None, at, cid, lid, key, None, "{}")
        raw = MACHINE if i % 10 == 0 else "{}"
        yield (provider, f"b{i}", "opened", None, at + 600, cid, lid, key, None, raw)
        if i % 3 == 0:
            yield (provider, f"c{i}", "clicked", None, at + 900, cid, lid, key, LINKS[i % 5], "{}")
        else:
            yield (provider, f"c{i}", "opened", None, at + 1800, cid, lid, key, None, "{}")


_LEDGER_COLS = (
    "id, campaign_id, key, email, fields, state, attempts, provider, provider_message_id, "
    "first_attempt_at, created_at, updated_at, sent_at"
)
_EVENT_COLS = (
    "provider, event_id, type, bounce_kind, occurred_at, campaign_id, ledger_id, recipient, "
    "url, raw"
)


def fill(store: protocols.Store, n: int) -> int:
    """The campaign, its N rows, 3N events and one run's tallies; its id."""
    cid = store.campaigns.ensure(NAME).id
    t0 = time.time() - 86400
    conn = getattr(store, "conn", None)
    if conn is not None:  # SQLite
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO ledger ({_LEDGER_COLS}) VALUES ({', '.join('?' * 13)})",
            _ledger_rows(cid, n, t0),
        )
        conn.executemany(
            f"INSERT INTO events ({_EVENT_COLS}, received_at, matched_by) "
            f"VALUES ({', '.join('?' * 10)}, {t0}, 'metadata')",
            _event_rows(cid, n, t0),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    else:  # PostgreSQL: COPY, then what autovacuum does after a bulk insert
        with store.connection() as pg:  # type: ignore[attr-defined]
            with pg.cursor() as cur:
                with cur.copy(f"COPY ledger ({_LEDGER_COLS}) FROM STDIN") as copy:
                    for row in _ledger_rows(cid, n, t0):
                        copy.write_row(row)
                with cur.copy(f"COPY events ({_EVENT_COLS}, received_at) FROM STDIN") as copy:
                    for row in _event_rows(cid, n, t0):
                        copy.write_row((*row, t0))
            # statistics for the planner, and the visibility map that lets a read stay in
            # an index (autovacuum sets both once a table has grown by a fifth)
            pg.execute("VACUUM (ANALYZE) ledger")
            pg.execute("VACUUM (ANALYZE) events")
    run = store.runs.start(cid)
    store.reports.save_tallies(run, cid, [
        ProviderTally("sg", {"accepted": n * 3 // 4}, {50: n // 2, 100: n // 4}, failovers_out=3),
        ProviderTally("mg", {"accepted": n // 4}, {20: n // 4}, failovers_in=3),
    ])  # fmt: skip
    return cid


def _reference(store: protocols.Store, cid: int) -> float:
    """The bare COUNT ... GROUP BY over both tables, through the store's own connection."""
    sqls = (
        "SELECT state, COUNT(*) FROM ledger WHERE campaign_id = ? GROUP BY state",
        "SELECT type, COUNT(*) FROM events WHERE campaign_id = ? GROUP BY type",
    )
    conn = getattr(store, "conn", None)
    t = time.perf_counter()
    if conn is not None:
        for sql in sqls:
            conn.execute(sql, (cid,)).fetchall()
    else:
        with store.connection() as pg:  # type: ignore[attr-defined]
            for sql in sqls:
                pg.execute(sql.replace("?", "%s"), (cid,)).fetchall()
    return time.perf_counter() - t


def measure(opener: Callable[[], protocols.Store], rows: int, repeat: int) -> dict[str, float]:
    with opener() as store:
        t = time.perf_counter()
        cid = fill(store, rows)
        filled = time.perf_counter() - t
        reports, refs = [], []
        for _ in range(repeat):  # alternating, so both see the same moment of the machine
            refs.append(_reference(store, cid))
            t = time.perf_counter()
            r = campaign_report(store, NAME, segment_by="plan")
            reports.append(time.perf_counter() - t)
        with_events = rows - len(range(1, rows, 100))
        assert r.counts["planned"] == rows and r.counts["events"] == 3 * with_events
        assert r.counts["delivered"] + r.counts["bounced"] == with_events
    report, ref = statistics.median(reports), statistics.median(refs)
    return {"fill": filled, "report": report, "reference": ref, "ratio": report / ref}


@contextmanager
def _postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pg_cluster  # the tests' throwaway cluster

    why = pg_cluster.unavailable()
    if why:
        print(f"PostgreSQL skipped: {why}")
        yield None
        return
    cluster = pg_cluster.start_cluster(durable=False)
    try:
        yield cluster.url(cluster.new_database())
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="ledger rows (events: 3x)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", help="a postgresql:// URL to measure instead of a throwaway cluster")
    ap.add_argument("--only", choices=("sqlite", "postgres"))
    args = ap.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            results["sqlite"] = measure(lambda: open_store(db), args.rows, args.repeat)
    if args.only != "sqlite":
        with _postgres(args.pg) as url:
            if url is not None:
                results["postgres"] = measure(lambda: open_store(url), args.rows, args.repeat)
    out = io.StringIO()
    out.write(
        f"{args.rows:,} ledger rows, {3 * args.rows:,} events, median of {args.repeat}\n"
        f"{'backend':9} {'fill s':>8} {'report s':>9} {'COUNT GROUP BY s':>17} {'ratio':>7}\n"
    )
    for backend, m in results.items():
        out.write(
            f"{backend:9} {m['fill']:8.1f} {m['report']:9.2f} {m['reference']:17.3f} "
            f"{m['ratio']:6.1f}x\n"
        )
    print(out.getvalue(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
