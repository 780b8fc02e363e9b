"""Render cost of own open/click tracking (``tracking: {own: true}``) on the template corpus.

Per template of ``benchmarks/templates/``, in one run and alternating: the same
campaign rendered with tracking off (the reference) and with ``tracking.own``
on (every link rewritten, the open pixel added), both to MIME (``stamp send``
over SMTP) and to JSON fields (HTTP providers). Target (issue 21): tracking on
within 10% of off, i.e. a ratio <= 1.10.

    PYTHONPATH=. python benchmarks/bench_tracking.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import WORK, Ctx, NotMeasured, Row, check, median, not_measured
from benchmarks.corpus import CorpusTemplate, load, names, write_list
from benchmarks.stampside import SECRET_ENV

M = "3c. render corpus, own tracking"
TARGET = 1.10
BASE_URL = "https://t.bench.example"


def _ms(fn: Callable[[], None], n: int) -> float:
    # CPU time of this process: the machine is shared, and wall time counts the others'
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1000 / n


def measure(t: CorpusTemplate, n: int, repeat: int) -> dict[str, Any]:
    """Medians (ms a message) of off and on, MIME and JSON, and the links a message got."""
    from stampcli.audience.resolve import AudienceStats, iter_audience
    from stampcli.config import TrackingConfig, load_campaign
    from stampcli.render.renderer import Renderer

    env = {**os.environ, **SECRET_ENV}
    path = WORK / "corpus" / f"{t.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_list(path, t.rows(n, 1))
    off = load_campaign(t.campaign_file, env=env)
    off = off.model_copy(update={"audience": off.audience.model_copy(update={"file": path})})
    on = off.model_copy(update={"tracking": TrackingConfig(own=True, base_url=BASE_URL)})
    contacts = list(iter_audience(off, None, AudienceStats()))
    if len(contacts) != n:
        raise NotMeasured(f"{t.name}: {len(contacts)} of {n} rows made a contact")
    renderers = {
        ("off", "mime"): Renderer(off, env=env),
        ("on", "mime"): Renderer(on, env=env),
        ("off", "json"): Renderer(off, env=env, raw=False),
        ("on", "json"): Renderer(on, env=env, raw=False),
    }
    sample = renderers[("on", "mime")].render(
        contacts[0].key, contacts[0].email, contacts[0].fields
    )
    links = (sample.html or "").count(f"{BASE_URL}/c/")
    if not links and "/o/" not in (sample.html or ""):
        raise NotMeasured(f"{t.name}: tracking on rewrote nothing")

    def go(r: Renderer) -> Callable[[], None]:
        def run() -> None:
            for c in contacts:
                r.render_tuple(c.key, c.email, c.fields)

        return run

    for r in renderers.values():  # warm: skeletons built, verification done
        go(r)()
    runs: dict[tuple[str, str], list[float]] = {k: [] for k in renderers}
    for _ in range(repeat):
        for k, r in renderers.items():
            runs[k].append(_ms(go(r), n))
    return {
        "runs": runs,
        "median": {k: median(v) for k, v in runs.items()},
        "links": links,
        "fast": {k: r.stats.fast for k, r in renderers.items()},
    }


def _rows(name: str, fig: dict[str, Any]) -> list[Row]:
    out = []
    med = fig["median"]
    fast = fig["fast"]
    for path in ("mime", "json"):
        ratio = med[("on", path)] / med[("off", path)]
        out.append(
            Row(
                M,
                f"{name}, {path.upper()}, {fig['links']} tracked links",
                "ms/msg",
                med[("on", path)],
                fig["runs"][("on", path)],
                "tracking off, same run",
                med[("off", path)],
                fig["runs"][("off", path)],
                round(ratio, 3),
                "x off",
                f"<= {TARGET}x off",
                check(ratio, "<=", TARGET),
                f"fast path: {fast[('on', path)]} of on, {fast[('off', path)]} of off",
            )
        )
    return out


def run(ctx: Ctx) -> list[Row]:
    """The rows for benchmarks/run.py (``tracking``)."""
    return list(iter_rows(ctx))


def iter_rows(ctx: Ctx, only: list[str] | None = None) -> Iterator[Row]:
    n = 300 if ctx.quick else 2_000
    for name in only or names():
        try:
            yield from _rows(name, measure(load(name), n, ctx.repeat))
        except NotMeasured as exc:
            yield not_measured(M, name, "ms/msg", str(exc))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 recipients instead of 2,000")
    ap.add_argument("templates", nargs="*", help="only these templates of the corpus")
    ap.add_argument("--repeat", type=int, default=5, help="alternating runs per figure")
    args = ap.parse_args()
    worst = 0.0
    for row in iter_rows(Ctx(quick=args.quick, repeat=args.repeat), args.templates):
        if row.value is None or row.ref_value is None:
            print(f"{row.figure}: {row.note}")
            continue
        worst = max(worst, row.ratio or 0.0)
        print(
            f"{row.figure:50s} on {row.value:.3f} ms  off {row.ref_value:.3f} ms  "
            f"ratio {row.ratio:.3f}  ({row.note})",
            flush=True,
        )
    print(f"worst ratio {worst:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
