"""8. Scaling: stamp's SMTP send rate at 10k, 100k and 1M recipients.

The rate must not fall as the audience grows; a point within 10% of the one
before counts as level (the machine is noisy). Reuses the runs of
measurements 4 and 6 when they ran in this invocation.
"""

from __future__ import annotations

from benchmarks.bench_send_smtp import stamp_smtp_big, stamp_smtp_runs
from benchmarks.common import Ctx, NotMeasured, Row, fmt_n, median, not_measured

M = "8. scaling"
TOLERANCE = 0.9


def run(ctx: Ctx) -> list[Row]:
    sizes = [1_000, 10_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    rates: dict[int, float] = {}
    runs: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    for n in sizes:
        try:
            have = ctx.shared.get("smtp_rates", {}).get(n)
            if not have:
                if n >= 1_000_000:
                    stamp_smtp_big(ctx, n)
                    have = ctx.shared["smtp_rates"][n]
                else:
                    have = stamp_smtp_runs(ctx, n, ctx.repeat)
            runs[n] = have
            rates[n] = median(have)
        except NotMeasured as exc:
            errors[n] = str(exc)
    rows = []
    base = sizes[0]
    prev: float | None = None
    for n in sizes:
        figure = f"stamp send rate at {fmt_n(n)} recipients"
        if n in errors:
            rows.append(not_measured(M, figure, "msg/s", errors[n], "not below the smaller size"))
            prev = None
            continue
        v = rates[n]
        ok = None if prev is None else v >= prev * TOLERANCE
        ref = rates.get(base)
        rows.append(
            Row(
                M,
                figure,
                "msg/s",
                v,
                runs[n],
                reference=f"the rate at {fmt_n(base)}",
                ref_value=ref,
                ref_runs=runs.get(base, []),
                ratio=v / ref if ref else None,
                ratio_label=f"x the {fmt_n(base)} rate",
                target="-" if n == base else f">= {TOLERANCE:.0%} of the previous size",
                passed=ok,
                note=ctx.shared.get("notes", {}).get(n, ""),
            )
        )
        prev = v
    return rows
