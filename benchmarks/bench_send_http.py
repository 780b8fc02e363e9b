"""5. End-to-end ``stamp send`` to local HTTP provider APIs on 127.0.0.1.

* one message per call: SendGrid's ``/v3/mail/send`` answered by nginx (202);
* batching: Postmark's ``/email/batch`` (500 messages a call) answered by
  benchmarks/batch_server.py with one result per message.

The provider's ``endpoint:`` points at the local server. Reference: a bare
httpx loop (one AsyncClient, the same number of requests in flight) posting
pre-built payloads of the same shape to the same server; runs alternate.

The same two sends are then made with each template of the corpus
(``benchmarks/templates/``) as its author wrote it, with its own rows: the
floors (800 msg/s, 5,000 recipients/s) must hold on real newsletters too, not
only on the example one.
"""

from __future__ import annotations

import json
import os
import time

from benchmarks.common import (
    BENCH,
    PY,
    Ctx,
    NotMeasured,
    Row,
    all_pass,
    check,
    fmt_n,
    log,
    median,
    run_timed,
)
from benchmarks.corpus import names
from benchmarks.gen_lists import recipients_csv
from benchmarks.stampside import (
    corpus_campaign,
    fresh_db,
    postmark_provider,
    require_ok,
    require_sent,
    send,
    sendgrid_provider,
    write_campaign,
)

M = "5. send http"
BUDGET = 240.0


def bare_http(base: str, mode: str, count: int, conc: int, batch: int = 500) -> float:
    proc = run_timed(
        [PY, BENCH / "bare_http.py", base, mode, count, conc, batch], label=f"bare-httpx-{mode}"
    )
    if proc.returncode != 0:
        raise NotMeasured(f"bare httpx loop failed: {proc.tail(200)}")
    return float(json.loads(proc.stdout.read_text())["rate"])


def _one(
    ctx: Ctx,
    kind: str,
    n: int,
    conc: int,
    target: float,
    unit: str,
    template: str | None = None,
    about: str = "",
) -> Row:
    """``stamp send`` of n recipients through one provider's local API against the bare loop;
    the example newsletter, or the corpus template ``template``."""
    sink = ctx.http()
    if kind == "sendgrid":
        provider = sendgrid_provider(sink.base, conc)
        figure = f"stamp send via SendGrid API (1 msg/call), {fmt_n(n)}"
        mode, base = "single", sink.base
    else:
        provider = postmark_provider(sink.batch_base, conc, 500)
        figure = f"stamp send via Postmark batch API (500/call), {fmt_n(n)}"
        mode, base = "batch", sink.batch_base
    if template is None:
        camp = write_campaign(
            f"http-{kind}-{fmt_n(n)}", audience={"file": str(recipients_csv(n))}, provider=provider
        )
    else:
        camp = corpus_campaign(template, n, provider, f"http-{kind}")
        figure += f", corpus template {template}"
    tag = template or "newsletter"
    runs: list[float] = []
    refs: list[float] = []
    err = ref_err = ""
    t0 = time.perf_counter()
    for i in range(ctx.repeat):
        if not err:
            try:
                db = fresh_db(f"http-{kind}-{tag}")
                log(f"stamp send {fmt_n(n)} ({tag}) -> {kind} on {base}")
                label = f"send-{kind}-{tag}-{fmt_n(n)}-{i}"
                proc = send(camp, db, label=label, timeout=max(600, n / 20))
                require_ok(proc, "stamp send")
                require_sent(db, n, "stamp send")
                runs.append(n / proc.seconds)
            except NotMeasured as exc:
                err = str(exc)
        if not ref_err:
            try:
                log(f"bare httpx {mode} {fmt_n(n)} -> {base}")
                refs.append(bare_http(base, mode, n, conc))
            except NotMeasured as exc:
                ref_err = str(exc)
        elapsed = time.perf_counter() - t0
        if elapsed * (i + 2) / (i + 1) > BUDGET:
            break
    value = median(runs) if runs else None
    ref = median(refs) if refs else None
    ratio = value / ref if value and ref else None
    return Row(
        M,
        figure,
        unit,
        value,
        runs,
        reference=f"bare httpx loop, 1 client, {conc} in flight, pre-built payloads",
        ref_value=ref,
        ref_runs=refs,
        ratio=ratio,
        ratio_label="x the bare loop",
        target=f">= {target:,.0f} {unit}",
        passed=all_pass(check(value, ">=", target)),
        note="; ".join(
            x
            for x in (
                about,
                f"not measured: {err}" if err else "",
                f"reference not measured: {ref_err}" if ref_err else "",
            )
            if x
        ),
    )


def run(ctx: Ctx) -> list[Row]:
    n_single = 5_000 if ctx.quick else 20_000
    n_batch = ctx.n
    return [
        _one(ctx, "sendgrid", n_single, 8, 800, "msg/s"),
        _one(ctx, "postmark", n_batch, 4, 5_000, "recipients/s"),
        *_corpus_rows(ctx),
    ]


def _corpus_rows(ctx: Ctx) -> list[Row]:
    """Both sends again with every corpus template (fewer recipients: six templates, and the
    long digest renders at a few hundred a second on the slow path)."""
    n_single = 2_000 if ctx.quick else 5_000
    n_batch = 5_000 if ctx.quick else 20_000
    from benchmarks.bench_render_corpus import bare_jinja_ms

    cores = os.cpu_count() or 1
    rows: list[Row] = []
    for template in names():
        # the ceiling no sender can pass: Jinja's own render of this template on every core
        try:
            ms = bare_jinja_ms(template)
            about = (
                f"bare Jinja alone renders {ms:.3f} ms a message here: at most "
                f"{cores * 1000 / ms:,.0f} msg/s on {cores} cores"
            )
        except NotMeasured as exc:
            about = f"bare Jinja not measured: {exc}"
        rows.append(_one(ctx, "sendgrid", n_single, 8, 800, "msg/s", template, about))
        rows.append(_one(ctx, "postmark", n_batch, 4, 5_000, "recipients/s", template, about))
    return rows
