"""3. Render cost per message for the example newsletter.

stamp: ``Renderer(campaign).render(key, email, fields)`` (Jinja, CSS inlining,
text part, MIME bytes, List-Unsubscribe with a signed token), the same path
``stamp send`` takes. Reference: the straightforward pipeline a script would
use on every message: Jinja, premailer, html2text, ``EmailMessage``
(policy.SMTP) serialised. Same template (benchmarks/fixtures/newsletter.html),
same rows; runs alternate.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from benchmarks.common import ROOT, Ctx, NotMeasured, Row, all_pass, check, median, not_measured
from benchmarks.gen_lists import recipients_csv
from benchmarks.refs import EXAMPLE, EXAMPLE_LOGO, NEWSLETTER, straightforward_ms_per_message
from benchmarks.stampside import SECRET_ENV, write_campaign

M = "3. render"
TARGET_MS = 0.3
TARGET_X = 20.0


def run(ctx: Ctx) -> list[Row]:
    n_stamp = 2_000 if ctx.quick else 5_000
    n_ref = 200 if ctx.quick else 400
    figure = "render one message (example newsletter)"
    target = f"<= {TARGET_MS} ms and >= {TARGET_X:g}x faster"
    try:
        from stampcli.audience.resolve import AudienceStats, iter_audience
        from stampcli.config import load_campaign
        from stampcli.render.renderer import Renderer

        path = recipients_csv(10_000)
        example = EXAMPLE.exists() and EXAMPLE_LOGO.exists()
        template = EXAMPLE if example else NEWSLETTER
        logo = EXAMPLE_LOGO if example else None
        # the logo lives beside the example template, outside the campaign's folder
        extra: dict[str, Any] = (
            {"images": {"logo": str(EXAMPLE_LOGO)}, "allow_paths": [str(EXAMPLE_LOGO.parent)]}
            if example
            else {}
        )
        camp = load_campaign(
            write_campaign(
                "render",
                audience={"file": str(path)},
                provider={"url": "outbox://out"},
                template=template,
                extra=extra,
            )
        )
        contacts = list(itertools.islice(iter_audience(camp, None, AudienceStats()), n_stamp))
        rows = [dict(c.fields) for c in contacts[:n_ref]]
        renderer = Renderer(camp, env={**os.environ, **SECRET_ENV})
        first = renderer.render(contacts[0].key, contacts[0].email, contacts[0].fields)
        if not first.raw:
            raise NotMeasured("the renderer produced an empty message")
        runs, refs = [], []
        for _ in range(ctx.repeat):
            t0 = time.perf_counter()
            for c in contacts:
                renderer.render(c.key, c.email, c.fields)
            runs.append((time.perf_counter() - t0) * 1000 / len(contacts))
            refs.append(straightforward_ms_per_message(rows, template, logo))
    except NotMeasured as exc:
        return [not_measured(M, figure, "ms/msg", str(exc), target)]
    except Exception as exc:
        return [not_measured(M, figure, "ms/msg", f"{type(exc).__name__}: {exc}", target)]
    value, ref = median(runs), median(refs)
    speedup = ref / value
    return [
        Row(
            M,
            figure,
            "ms/msg",
            value,
            runs,
            reference="Jinja + premailer + html2text + EmailMessage per message",
            ref_value=ref,
            ref_runs=refs,
            ratio=speedup,
            ratio_label="x faster",
            target=target,
            passed=all_pass(check(value, "<=", TARGET_MS), check(speedup, ">=", TARGET_X)),
            note=f"{template.relative_to(ROOT)}; {len(contacts)} messages (reference: "
            f"{len(rows)}), {len(first.raw):,} bytes each",
        )
    ]
