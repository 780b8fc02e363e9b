"""``stamp worker`` fleets on PostgreSQL: 1, 2 and 4 workers sending queued campaigns to smtp-sink.

Two shapes of the same ``--n`` recipients, each queued with ``stamp queue add``
into a fresh database of a throwaway PostgreSQL cluster (``tests/pg_cluster.py``),
then sent by W ``stamp worker --once`` processes started together:

* ``one campaign``: all of them in one campaign. One run per campaign holds its
  lock, so a second worker finds nothing to do: this measures what row leases
  (several workers on one campaign) would have to improve;
* ``split``: ``--campaigns`` campaigns of n/K recipients: the workers take turns
  over the queue, one campaign each at a time.

Each figure is recipients per second of wall time, from starting the workers
to the last one's exit (start-up, unpacking and planning included), and its
ratio to one worker of the same shape. In the same run, one ``stamp send`` of
the one-campaign shape on a SQLite file is the reference. smtp-sink is
Postfix's (``/usr/sbin/smtp-sink``); its counter checks that every message arrived.

    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_fleet.py            # 4,000: ~40 s
    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_fleet.py --n 20000
"""

from __future__ import annotations

import argparse
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


def fleet(url: str, workers: int, cwd: Path) -> float:
    """Seconds from starting ``workers`` ``stamp worker --once`` to the last one's exit."""
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*STAMP, "worker", "--once", "--db", url],
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
            raise SystemExit(f"stamp worker exited {p.returncode}:\n{err}")
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4_000, help="recipients per measurement")
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--campaigns", type=int, default=4, help="campaigns of the split shape")
    ap.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
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
    try:
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
            for shape, k in (("one campaign", 1), ("split", args.campaigns)):
                for w in counts:
                    url = cluster.url(cluster.new_database())
                    folder = tmp / f"{shape.replace(' ', '-')}-{w}"
                    per = args.n // k
                    for i in range(k):
                        size = per if i < k - 1 else args.n - per * (k - 1)
                        c = write_campaign(folder / f"c{i}", f"c{i}", sink.port, size, i * per)
                        run("queue", "add", str(c), "--db", url, cwd=folder)
                    before = sink.messages()
                    secs = fleet(url, w, folder)
                    got = sink.messages() - before
                    if got != args.n:
                        raise SystemExit(f"{shape}, {w} workers: smtp-sink got {got}, not {args.n}")
                    results.append((shape, w, secs))
                    print(f"  {shape}, {w} worker(s): {secs:.2f} s", file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    durability = "durable" if args.durable else "fsync off"
    print(f"{args.n:,} recipients to smtp-sink, PostgreSQL {durability}, {os.cpu_count()} cores")
    print(f"reference: stamp send on SQLite, one campaign: {args.n / ref_secs:,.0f} msg/s "
          f"({ref_secs:.2f} s)")  # fmt: skip
    print(
        f"{'shape':14} {'workers':>7} {'seconds':>8} {'msg/s':>8} {'x 1 worker':>10} {'x ref':>6}"
    )
    base: dict[str, float] = {}
    for shape, w, secs in results:
        rate = args.n / secs
        base.setdefault(shape, rate)
        print(f"{shape:14} {w:7} {secs:8.2f} {rate:8,.0f} {rate / base[shape]:10.2f} "
              f"{rate / (args.n / ref_secs):6.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
