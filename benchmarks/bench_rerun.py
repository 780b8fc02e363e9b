"""7. Rerun of a finished campaign: ``stamp send`` again must send nothing, fast.

Uses the store the 100k SMTP send left behind (or sends it first). smtp-sink's
counter must not move and the ledger must still say every recipient sent once.
Reference: the floor of any stamp command, ``stamp --version`` (interpreter
start and imports).
"""

from __future__ import annotations

from benchmarks.bench_send_smtp import stamp_smtp_run
from benchmarks.common import (
    STAMP,
    Ctx,
    NotMeasured,
    Row,
    check,
    fmt_n,
    log,
    median,
    not_measured,
    run_timed,
)
from benchmarks.stampside import SECRET_ENV, ledger_states, require_sent, send

M = "7. rerun"
TARGET = 2.0


def run(ctx: Ctx) -> list[Row]:
    n = ctx.n
    figure = f"rerun of a finished {fmt_n(n)} campaign"
    target = f"<= {TARGET:g} s, nothing sent"
    try:
        finished = ctx.shared.get("finished", {}).get(n)
        if finished is None:
            _, _, finished = stamp_smtp_run(ctx, n, "for-rerun")
        camp, db = finished  # type: ignore[misc]
        sink = ctx.smtp()
        runs, refs = [], []
        for i in range(max(ctx.repeat, 3)):
            before = sink.messages()
            log(f"stamp send (rerun {i}) of the finished {fmt_n(n)} campaign")
            proc = send(camp, db, label=f"rerun-{fmt_n(n)}-{i}")
            if proc.returncode != 0:
                raise NotMeasured(f"the rerun exited {proc.returncode}: {proc.tail(200)}")
            sent = sink.messages() - before
            if sent:
                raise NotMeasured(f"the rerun sent {sent} messages again: {ledger_states(db)}")
            require_sent(db, n, "after the rerun")
            runs.append(proc.seconds)
            ver = run_timed([STAMP, "--version"], label="stamp-version", env=SECRET_ENV)
            refs.append(ver.seconds)
    except NotMeasured as exc:
        return [not_measured(M, figure, "s", str(exc), target)]
    value, ref = median(runs), median(refs)
    return [
        Row(
            M,
            figure,
            "s",
            value,
            runs,
            reference="`stamp --version` (start-up floor)",
            ref_value=ref,
            ref_runs=refs,
            ratio=value / ref,
            ratio_label="x the start-up floor",
            target=target,
            passed=check(value, "<=", TARGET),
            note="0 messages sent (smtp-sink counter)",
        )
    ]
