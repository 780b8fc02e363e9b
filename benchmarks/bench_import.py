"""2. Import into the store: ``stamp import FILE --list NAME`` into a fresh SQLite store.

Rows per second over the file's data rows, wall clock of the whole command.
Reference: the SQLite ceiling, csv.DictReader plus one ``executemany`` of
(key, email, JSON fields) rows into an equivalent table, in one transaction.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time

from benchmarks.common import WORK, Ctx, NotMeasured, Row, check, fmt_n, median, not_measured
from benchmarks.gen_lists import contacts_csv
from benchmarks.stampside import contacts_count, fresh_db, require_ok, stamp

M = "2. import"
TARGET = 50_000


def sqlite_ceiling(path) -> float:  # type: ignore[no-untyped-def]
    db = WORK / "db" / "ceiling.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, list_id INTEGER, key TEXT, email TEXT, "
        "fields TEXT, added_at REAL, updated_at REAL, UNIQUE (list_id, key))"
    )
    now = time.time()
    with path.open(newline="", encoding="utf-8") as f, con:
        con.executemany(
            "INSERT OR IGNORE INTO contacts (list_id, key, email, fields, added_at, updated_at) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (
                (r["email"].strip().lower(), r["email"].strip(), json.dumps(r), now, now)
                for r in csv.DictReader(f)
            ),
        )
    con.close()
    return time.perf_counter() - t0


def run(ctx: Ctx) -> list[Row]:
    n = ctx.n
    path = contacts_csv(n)
    figure = f"stamp import, {fmt_n(n)}-row CSV"
    target = f">= {TARGET:,} rows/s"
    runs, refs = [], []
    try:
        for i in range(ctx.repeat):
            db = fresh_db("import")
            proc = stamp("import", path, "--list", "bench", "--json", label=f"import-{i}", db=db)
            require_ok(proc, "stamp import")
            if contacts_count(db) < n * 0.9:
                raise NotMeasured(f"only {contacts_count(db)} contacts in the store after import")
            runs.append(n / proc.seconds)
            refs.append(n / sqlite_ceiling(path))
    except NotMeasured as exc:
        return [not_measured(M, figure, "rows/s", str(exc), target)]
    value, ref = median(runs), median(refs)
    return [
        Row(
            M,
            figure,
            "rows/s",
            value,
            runs,
            reference="DictReader + sqlite3 executemany, one transaction",
            ref_value=ref,
            ref_runs=refs,
            ratio=value / ref,
            ratio_label="x the SQLite ceiling",
            target=target,
            passed=check(value, ">=", TARGET),
        )
    ]
