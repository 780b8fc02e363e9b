"""6. Peak memory (RSS) of ``stamp send`` for 1M recipients and ``stamp import`` of 1M rows.

Peak RSS is summed over the whole process tree (stamp renders in spawned
worker processes for big sends), sampled every 0.1 s; the main process's own
``ru_maxrss`` (``os.wait4``) is in the note.
Reference: the same command at 100k (memory should not grow with the list).
The 1M send also gives the 1M point of the scaling table. With --quick the
sizes are 10k and 100k and the targets are not judged.
"""

from __future__ import annotations

import time

from benchmarks.bench_send_smtp import stamp_smtp_big
from benchmarks.common import Ctx, NotMeasured, Row, check, fmt_n, log, not_measured
from benchmarks.gen_lists import contacts_csv
from benchmarks.stampside import contacts_count, fresh_db, require_ok, stamp

M = "6. memory"
SEND_MB = 150
IMPORT_MB = 300


def _import_rss(n: int) -> tuple[float, str]:
    db = fresh_db(f"import-mem-{fmt_n(n)}")
    log(f"stamp import {fmt_n(n)} (peak RSS)")
    proc = stamp(
        "import",
        contacts_csv(n),
        "--list",
        "mem",
        "--json",
        label=f"import-mem-{fmt_n(n)}",
        db=db,
        timeout=1800,
    )
    require_ok(proc, "stamp import")
    if contacts_count(db) < n * 0.9:
        raise NotMeasured(f"only {contacts_count(db)} contacts after the import")
    return proc.tree_rss_mb, (
        f"{proc.tree_max_procs} process(es), main process alone {proc.max_rss_mb:.0f} MB"
    )


def run(ctx: Ctx) -> list[Row]:
    big = ctx.big or ctx.n
    small = ctx.n if ctx.big else 1_000
    judged = ctx.big is not None
    rows = []
    # --- send
    figure = f"peak RSS, stamp send {fmt_n(big)} to smtp-sink"
    target = f"<= {SEND_MB} MB (at 1M)"
    try:
        t0 = time.perf_counter()
        if ctx.big is None and big in ctx.shared.get("rss", {}):  # --quick: reuse the 4. run
            big_rss = ctx.shared["rss"][big]
            note = "; ".join(x for x in (ctx.shared.get("rss_detail", {}).get(big, ""),) if x)
        else:
            big_rss, note = stamp_smtp_big(ctx, big)
        small_rss = ctx.shared.get("rss", {}).get(small)
        if small_rss is None:
            from benchmarks.bench_send_smtp import stamp_smtp_run

            _, small_rss, _ = stamp_smtp_run(ctx, small, "rss")
        rows.append(
            Row(
                M,
                figure,
                "MB",
                big_rss,
                [big_rss],
                reference=f"the same send at {fmt_n(small)}",
                ref_value=small_rss,
                ref_runs=[small_rss],
                ratio=big_rss / small_rss,
                ratio_label=f"x the {fmt_n(small)} run",
                target=target,
                passed=check(big_rss, "<=", SEND_MB) if judged else None,
                note=note or f"one run ({time.perf_counter() - t0:.0f} s)",
            )
        )
    except NotMeasured as exc:
        rows.append(not_measured(M, figure, "MB", str(exc), target))
    # --- import
    figure = f"peak RSS, stamp import {fmt_n(big)}-row CSV"
    target = f"<= {IMPORT_MB} MB (at 1M)"
    try:
        big_rss, detail = _import_rss(big)
        small_rss, _ = _import_rss(small)
        rows.append(
            Row(
                M,
                figure,
                "MB",
                big_rss,
                [big_rss],
                reference=f"the same import at {fmt_n(small)}",
                ref_value=small_rss,
                ref_runs=[small_rss],
                ratio=big_rss / small_rss,
                ratio_label=f"x the {fmt_n(small)} run",
                target=target,
                passed=check(big_rss, "<=", IMPORT_MB) if judged else None,
                note=f"one run; {detail}",
            )
        )
    except NotMeasured as exc:
        rows.append(not_measured(M, figure, "MB", str(exc), target))
    return rows
