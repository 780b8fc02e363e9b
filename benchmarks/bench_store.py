"""The store's batch writes, SQLite against PostgreSQL: rows per second on this machine.

What the send loop asks of a store, shaped as it asks it: plan N rows
(``ledger.insert``, 1,000 a commit), then claim them 500 at a time
(``read_pending`` + ``claim``), then record 500 outcomes at a time
(``record``, all sent). Each figure is rows per second of wall time and
milliseconds per 500-row batch, the median of ``--repeat`` fresh runs.

SQLite is a file in a temporary directory (WAL, synchronous=NORMAL, as stamp
opens it). PostgreSQL is the server at ``--pg URL`` if given, else a
throwaway cluster started for the run (``tests/pg_cluster.py``), with
PostgreSQL's default durability (fsync on, synchronous_commit on) unless
``--fast-pg``; it is reached over TCP on 127.0.0.1, so each batch pays a
loopback round trip.

    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_store.py --rows 50000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stampcli.records import Claim, NewRow, Outcome
from stampcli.store import open_store, protocols

BATCH = 500  # rows per claim and per record, as the engine's lots


def _phases(store: protocols.Store, rows: int) -> dict[str, float]:
    """Seconds for each phase over ``rows`` rows of a fresh campaign."""
    cid = store.campaigns.ensure(f"bench-{time.time_ns()}").id
    fields = json.dumps({"email": "x", "first_name": "Ada", "plan": "pro", "country": "DE"})
    planned = [NewRow(f"u{i}@x.test", f"u{i}@x.test", fields) for i in range(rows)]
    out: dict[str, float] = {}

    t = time.perf_counter()
    assert store.ledger.insert(cid, planned) == rows
    out["insert"] = time.perf_counter() - t

    claimed: list[list[int]] = []
    t = time.perf_counter()
    after = 0
    while page := store.ledger.read_pending(cid, after_id=after, limit=BATCH):
        assert store.ledger.claim([Claim(r.id, f"<{r.id}@bench>") for r in page]) == len(page)
        claimed.append([r.id for r in page])
        after = page[-1].id
    out["claim"] = time.perf_counter() - t

    t = time.perf_counter()
    for ids in claimed:
        store.ledger.record(
            [Outcome(i, "sent", provider="smtp", provider_message_id=f"q{i}") for i in ids]
        )
    out["record"] = time.perf_counter() - t
    assert store.ledger.counts(cid)["sent"] == rows
    return out


def measure(opener: Callable[[], protocols.Store], rows: int, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        with opener() as store:
            runs.append(_phases(store, rows))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


@contextmanager
def _postgres(url: str | None, *, fast: bool) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pg_cluster  # the tests' throwaway cluster

    why = pg_cluster.unavailable()
    if why:
        raise SystemExit(f"no PostgreSQL to measure: {why}")
    cluster = pg_cluster.start_cluster(durable=not fast)
    try:
        yield cluster.url(cluster.new_database())
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", help="a postgresql:// URL to measure instead of a throwaway cluster")
    ap.add_argument("--fast-pg", action="store_true", help="throwaway cluster with fsync off")
    args = ap.parse_args(argv)

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        results["sqlite"] = measure(lambda: open_store(db), args.rows, args.repeat)
    with _postgres(args.pg, fast=args.fast_pg) as url:
        results["postgres"] = measure(lambda: open_store(url), args.rows, args.repeat)

    print(f"{args.rows} rows, batches of {BATCH} (insert: 1000 a commit), median of {args.repeat}")
    print(f"{'phase':8} {'backend':9} {'rows/s':>10} {'ms/500':>8}")
    for phase in ("insert", "claim", "record"):
        for backend, phases in results.items():
            secs = phases[phase]
            print(
                f"{phase:8} {backend:9} {args.rows / secs:10,.0f} "
                f"{secs / (args.rows / BATCH) * 1000:8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
