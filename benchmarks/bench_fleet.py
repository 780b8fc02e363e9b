"""Fleets on PostgreSQL: 1, 2 and 4 workers on ONE campaign and on a queue, to smtp-sink.

The same ``--n`` recipients, each shape in a fresh database of a throwaway
PostgreSQL cluster (``tests/pg_cluster.py``), sent by W processes started together:

* ``send, 1 campaign``: W ``stamp send campaign.yml --yes`` on one campaign: on
  PostgreSQL they share it (row leases, ``stampcli.delivery.shared``);
* ``worker, 1 campaign``: the campaign queued with ``stamp queue add`` and sent by
  W ``stamp worker --once``: the workers share it the same way;
* ``worker, split``: ``--campaigns`` campaigns of n/K recipients on the queue: the
  workers share each due campaign in turn.

Each figure is recipients per second of wall time, from starting the processes
to the last one's exit (start-up, planning, waiting for the others included),
and its ratio to one process of the same shape and to the reference: one
``stamp send`` of the one-campaign shape on a SQLite file, in the same run
(and, as a row of its own, one ``stamp send --alone`` on PostgreSQL: the
locked single run, without leases). ``--shapes send`` measures only the first.
smtp-sink is Postfix's (``/usr/sbin/smtp-sink``); its counter checks that every
message arrived exactly as many times as there are recipients.

Then the claim path's cost per row, in this process on the same cluster
(``--claim-rows`` rows, batches of ``--claim-batch``): a worker's path through the
store (lease a batch with ``take``, ``claim`` it, ``record`` the outcomes: what
``stamp send`` does per batch on PostgreSQL), a single locked run's path
(``read_pending``, ``claim``, ``record``), and a bare ``FOR UPDATE SKIP LOCKED``
loop (one statement claims, one records). Per row: microseconds, round trips
(statements sent, plus BEGIN and COMMIT of each transaction block) and commits
(the server's ``xact_commit``).

    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_fleet.py            # 4,000: ~1 min
    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_fleet.py --n 20000 --shapes send
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pg_cluster  # noqa: E402  (the tests' throwaway cluster)

from benchmarks.common import SMTP_SINK, SmtpSink  # noqa: E402

STAMP = [sys.executable, "-m", "stampcli"]
SECRET = "bench-unsubscribe-secret-0123456789abcdef"
ENV = {**os.environ, "STAMP_UNSUBSCRIBE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}


def write_campaign(folder: Path, name: str, port: int, n: int, start: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.html").write_text(
        '<p>Hello {{ first_name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        encoding="utf-8",
    )
    with (folder / "list.csv").open("w", encoding="utf-8") as fh:
        fh.write("email,first_name\n")
        for i in range(start, start + n):
            fh.write(f"user{i}@bench.test,U{i}\n")
    path = folder / "campaign.yml"
    path.write_text(
        f"name: {name}\n"
        'from: "Bench <bench@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n"
        'unsubscribe:\n  url: "https://acme.example/u?t={{ unsubscribe_token }}"\n'
        "audience:\n  file: list.csv\n"
        f'providers:\n  - url: "smtp://127.0.0.1:{port}?tls=none"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run([*STAMP, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode not in (0,):
        raise SystemExit(f"stamp {' '.join(args)} exited {done.returncode}:\n{done.stderr}")


def fleet(argv: list[str], workers: int, cwd: Path) -> float:
    """Seconds from starting ``workers`` processes of ``stamp ARGV`` to the last one's exit."""
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*STAMP, *argv],
            cwd=cwd,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"stamp {' '.join(argv)} exited {p.returncode}:\n{err}")
    return time.perf_counter() - t


class Counted:
    """Round trips of this process's psycopg connections (statements, BEGIN and COMMIT)."""

    def __init__(self) -> None:
        import psycopg

        self.trips = 0
        self._saved: list[tuple[type, str, object]] = []
        for cls, name, cost in (
            (psycopg.Cursor, "execute", 1),
            (psycopg.Cursor, "executemany", 1),  # psycopg 3 pipelines the rows: one trip
            (psycopg.Connection, "transaction", 2),
        ):
            self._wrap(cls, name, cost)

    def _wrap(self, cls: type, name: str, cost: int) -> None:
        original = getattr(cls, name)
        self._saved.append((cls, name, original))

        def counted(*args: object, **kwargs: object) -> object:
            self.trips += cost
            return original(*args, **kwargs)

        setattr(cls, name, counted)

    def close(self) -> None:
        for cls, name, original in self._saved:
            setattr(cls, name, original)


def _commits(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def claim_cost(url: str, rows: int, batch: int, path: str) -> tuple[float, float, float]:
    """(us, round trips, commits) per row of claiming and recording ``rows`` rows."""
    from stampcli.records import Claim, NewRow, Outcome
    from stampcli.store import open_store

    with open_store(url) as store:
        cid = store.campaigns.ensure("claims").id
        store.ledger.insert(
            cid, (NewRow(f"u{i}@b.test", f"u{i}@b.test", json.dumps({"i": i})) for i in range(rows))
        )
    time.sleep(1.2)  # the planning's commits reach the statistics before the count starts
    before = _commits(url)
    counter = Counted()
    t = time.perf_counter()
    try:
        with open_store(url) as store:
            owner = "bench:1:claims"
            if path == "worker":
                store.leases.join(cid, owner, until=time.time() + 60)
            after = 0
            while True:
                if path == "bare":
                    with store.connection() as conn:  # type: ignore[attr-defined]
                        ids = [r[0] for r in conn.execute(BARE_CLAIM, (cid, batch)).fetchall()]
                        if not ids:
                            break
                        conn.execute(BARE_RECORD, (time.time(), ids))
                    continue
                if path == "worker":
                    got = store.leases.take(
                        cid, owner, after_id=after, limit=batch, until=time.time() + 60
                    )
                else:
                    got = store.ledger.read_pending(cid, after_id=after, limit=batch)
                if not got:
                    break
                after = got[-1].id
                claims = [Claim(r.id, f"<{r.id}@b.test>") for r in got]
                if path == "worker":
                    store.leases.claim(owner, claims)
                else:
                    store.ledger.claim(claims)
                store.ledger.record([Outcome(r.id, "sent", "smtp", f"q{r.id}") for r in got])
            if path == "worker":
                store.leases.leave(owner)
    finally:
        secs = time.perf_counter() - t
        counter.close()
    time.sleep(1.2)  # the closed connections' statistics are flushed as they exit
    commits = _commits(url) - before - 0  # the count's own reads are not commits of writes
    return secs / rows * 1e6, counter.trips / rows, commits / rows


BARE_CLAIM = (
    "UPDATE ledger SET state = 'sending', attempts = attempts + 1 WHERE id IN (SELECT id FROM "
    "ledger WHERE campaign_id = %s AND state = 'pending' ORDER BY id LIMIT %s "
    "FOR UPDATE SKIP LOCKED) RETURNING id"
)
BARE_RECORD = "UPDATE ledger SET state = 'sent', sent_at = %s WHERE id = ANY(%s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4_000, help="recipients per measurement")
    ap.add_argument("--workers", default="1,2,4", help="process counts, comma-separated")
    ap.add_argument("--campaigns", type=int, default=4, help="campaigns of the split shape")
    ap.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
    ap.add_argument("--claim-rows", type=int, default=20_000, help="rows of the claim figures")
    ap.add_argument("--claim-batch", type=int, default=100, help="rows per claim")
    ap.add_argument("--no-fleet", action="store_true", help="only the claim path's figures")
    ap.add_argument(
        "--shapes", default="send,worker,split", help="which fleet shapes, comma-separated"
    )
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    if not Path(SMTP_SINK).exists():
        raise SystemExit(f"no {SMTP_SINK} (apt-get install postfix)")
    why = pg_cluster.unavailable()
    if why:
        raise SystemExit(f"no PostgreSQL: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="stamp-bench-fleet-"))
    cluster = pg_cluster.start_cluster(durable=args.durable)
    results: list[tuple[str, int, float]] = []
    claims: list[tuple[str, tuple[float, float, float]]] = []
    ref_secs = 0.0
    try:
        if not args.no_fleet:
            ref_secs = _fleets(args, counts, cluster, tmp, results)
        for path in ("bare", "single", "worker"):
            url = cluster.url(cluster.new_database())
            claims.append((path, claim_cost(url, args.claim_rows, args.claim_batch, path)))
            print(f"  claim path {path}: done", file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    durability = "durable" if args.durable else "fsync off"
    print(f"PostgreSQL {durability}, {os.cpu_count()} cores")
    if results:
        print(f"{args.n:,} recipients to smtp-sink")
        print(f"reference: stamp send on SQLite, one campaign: {args.n / ref_secs:,.0f} msg/s "
              f"({ref_secs:.2f} s)")  # fmt: skip
        print(f"{'shape':18} {'procs':>5} {'seconds':>8} {'msg/s':>8} {'x 1 proc':>8} {'x ref':>6}")
        base: dict[str, float] = {}
        for shape, w, secs in results:
            rate = args.n / secs
            base.setdefault(shape, rate)
            print(f"{shape:18} {w:5} {secs:8.2f} {rate:8,.0f} {rate / base[shape]:8.2f} "
                  f"{rate / (args.n / ref_secs):6.2f}")  # fmt: skip
    print(f"claim path, {args.claim_rows:,} rows in batches of {args.claim_batch} (per row):")
    print(f"{'path':28} {'us':>7} {'trips':>6} {'commits':>8} {'x bare':>7}")
    bare_us = claims[0][1][0]
    names = {
        "bare": "bare SKIP LOCKED loop",
        "single": "single run (read/claim/record)",
        "worker": "worker (take/claim/record)",
    }
    for path, (us, trips, commits) in claims:
        print(f"{names[path]:28} {us:7.1f} {trips:6.3f} {commits:8.3f} {us / bare_us:7.2f}")
    return 0


def _fleets(
    args: argparse.Namespace,
    counts: list[int],
    cluster: pg_cluster.Cluster,
    tmp: Path,
    results: list[tuple[str, int, float]],
) -> float:
    """The fleet figures into ``results``; the reference's seconds."""
    with SmtpSink() as sink:
        # the reference: one stamp send on SQLite, the one-campaign shape
        ref = tmp / "ref"
        campaign = write_campaign(ref, "ref", sink.port, args.n, 0)
        before = sink.messages()
        t = time.perf_counter()
        run("send", str(campaign), "--yes", "--log-format", "json", "--db",
            str(ref / "stamp.db"), cwd=ref)  # fmt: skip
        ref_secs = time.perf_counter() - t
        assert sink.messages() - before == args.n, "smtp-sink missed messages"
        # and one `stamp send --alone` on PostgreSQL: the locked single run, no leases
        alone = tmp / "alone"
        campaign = write_campaign(alone, "alone", sink.port, args.n, 0)
        before = sink.messages()
        t = time.perf_counter()
        run("send", str(campaign), "--yes", "--alone", "--log-format", "json", "--db",
            cluster.url(cluster.new_database()), cwd=alone)  # fmt: skip
        results.append(("send --alone", 1, time.perf_counter() - t))
        assert sink.messages() - before == args.n, "smtp-sink missed messages"
        wanted = args.shapes.split(",")
        shapes = (("send, 1 campaign", 1), ("worker, 1 campaign", 1), ("worker, split", 0))
        for shape, k in shapes:
            key = "split" if shape.endswith("split") else shape.split(",")[0]
            if key not in wanted:
                continue
            k = k or args.campaigns
            for w in counts:
                url = cluster.url(cluster.new_database())
                folder = tmp / f"{shape.replace(' ', '-').replace(',', '')}-{w}"
                per = args.n // k
                made = []
                for i in range(k):
                    size = per if i < k - 1 else args.n - per * (k - 1)
                    made.append(write_campaign(folder / f"c{i}", f"c{i}", sink.port, size, i * per))
                before = sink.messages()
                if shape.startswith("send"):
                    argv = ["send", str(made[0]), "--yes", "--log-format", "json", "--db", url]
                    secs = fleet(argv, w, folder)
                else:
                    for c in made:
                        run("queue", "add", str(c), "--db", url, cwd=folder)
                    secs = fleet(["worker", "--once", "--db", url], w, folder)
                got = sink.messages() - before
                if got != args.n:
                    raise SystemExit(f"{shape}, {w} processes: smtp-sink got {got}, not {args.n}")
                results.append((shape, w, secs))
                print(f"  {shape}, {w} process(es): {secs:.2f} s", file=sys.stderr)
    return ref_secs


if __name__ == "__main__":
    sys.exit(main())
