"""1. List loading: 100k CSV and xlsx rows read, validated, deduped and segmented.

stamp: ``iter_audience`` (the library entry point ``stamp send`` uses) over a
campaign whose audience is the file plus a segment, consumed to the end.
Reference: ``csv.DictReader`` over the same rows as CSV, every row built.
Runs alternate (stamp, reference, stamp, ...) so both see the same noise.
"""

from __future__ import annotations

import time

from benchmarks.common import Ctx, NotMeasured, Row, check, fmt_n, median, not_measured
from benchmarks.gen_lists import SEGMENT, contacts_csv, contacts_xlsx
from benchmarks.refs import dictreader_seconds
from benchmarks.stampside import write_campaign

M = "1. list loading"
TARGETS = {"csv": 1.0, "xlsx": 2.0}


def _stamp_seconds(campaign_path) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from stampcli.audience.resolve import AudienceStats, iter_audience
    from stampcli.config import load_campaign

    t0 = time.perf_counter()
    campaign = load_campaign(campaign_path)
    stats = AudienceStats()
    n = sum(1 for _ in iter_audience(campaign, None, stats))
    return time.perf_counter() - t0, n


def run(ctx: Ctx) -> list[Row]:
    n = ctx.n
    rows = []
    try:  # import stamp's modules before timing anything
        import stampcli.audience.resolve
        import stampcli.config  # noqa: F401
    except Exception as exc:
        return [
            not_measured(M, f"load {fmt_n(n)} {k} rows", "s", f"{type(exc).__name__}: {exc}")
            for k in ("csv", "xlsx")
        ]
    csv_path = contacts_csv(n)
    for kind in ("csv", "xlsx"):
        path = csv_path if kind == "csv" else contacts_xlsx(n)
        figure = f"load+validate+dedupe+segment {fmt_n(n)} {kind} rows"
        target = f"<= {TARGETS[kind]:g} s" + (" (at 100k)" if n != 100_000 else "")
        try:
            camp = write_campaign(
                f"lists-{kind}",
                audience={"file": str(path), "segment": SEGMENT},
                provider={"url": "outbox://out"},
            )
            runs, refs = [], []
            for _ in range(ctx.repeat):
                s, got = _stamp_seconds(camp)
                if got <= 0:
                    raise NotMeasured("the audience came out empty")
                runs.append(s)
                refs.append(dictreader_seconds(csv_path)[0])
        except NotMeasured as exc:
            rows.append(not_measured(M, figure, "s", str(exc), target))
            continue
        except Exception as exc:  # stamp's code not there or broken: report, don't crash
            rows.append(not_measured(M, figure, "s", f"{type(exc).__name__}: {exc}", target))
            continue
        value, ref = median(runs), median(refs)
        rows.append(
            Row(
                M,
                figure,
                "s",
                value,
                runs,
                reference=f"csv.DictReader, same rows as CSV ({got} of {n} kept)",
                ref_value=ref,
                ref_runs=refs,
                ratio=value / ref,
                ratio_label="x DictReader's time",
                target=target,
                passed=check(value, "<=", TARGETS[kind]) if n == 100_000 else None,
            )
        )
    return rows
