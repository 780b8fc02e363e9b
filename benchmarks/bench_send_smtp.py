"""4. End-to-end ``stamp send`` to smtp-sink, ledger included.

stamp: ``stamp send campaign.yml --yes`` in a subprocess against a fresh store
(planning, rendering, 16 pooled SMTP connections, the ledger), wall clock of
the whole command; the ledger must say every recipient ``sent`` and the sink
must have counted them. References, alternating with stamp's runs:

* mailmerge 2.x from PyPI (its own venv), the same newsletter in its own
  template syntax, no rate limit, over the first rows of the same list (it
  opens one connection per message, so its rate does not depend on the count);
* a bare aiosmtplib loop pushing pre-built ~8 KB messages over the same 16
  connections: the ceiling of the client library.

And on a corpus template (``benchmarks/templates/macros_include``, a retail
sale email of macros and includes, its own subscriber rows): the same ``stamp
send`` against Postfix's ``smtp-source -d -s 16 -l SIZE -m N`` into the same
smtp-sink, where SIZE is the mean size of the messages stamp sends in that run
(rendered by stamp's own renderer from the same campaign and list) — the
speed of a C client doing nothing but SMTP. Issue #24 wants stamp >= 0.5x it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.common import (
    BENCH,
    PY,
    Ctx,
    NotMeasured,
    Proc,
    Row,
    all_pass,
    check,
    fmt_n,
    log,
    mailmerge_version,
    median,
    run_timed,
)
from benchmarks.gen_lists import recipients_csv
from benchmarks.refs import mailmerge_run
from benchmarks.stampside import (
    SECRET_ENV,
    fresh_db,
    ledger_states,
    require_ok,
    require_sent,
    send,
    smtp_provider,
    write_campaign,
)
from benchmarks.stampside import corpus_campaign as copy_corpus_campaign

M = "4. send smtp"
CONNECTIONS = 16
TARGET_RATE = 2_000
TARGET_MM = 6.0
TARGET_BARE = 0.8
TARGET_SOURCE = 0.5
SMTP_SOURCE = Path("/usr/sbin/smtp-source")
CORPUS = "macros_include"  # the realistic one: shared macros, header/footer includes, a loop
SIZE_SAMPLE = 1_000  # messages rendered to learn the mean size smtp-source is to send
# Repeats stop early when the next round would end past this many seconds (slow stamp builds
# would otherwise take an hour); the table says how many runs each median has.
BUDGET = 360.0


def stamp_smtp_run(ctx: Ctx, n: int, tag: str) -> tuple[float, float, object]:
    """One ``stamp send`` of n recipients to smtp-sink: (msg/s, peak RSS MB, (campaign, db))."""
    sink = ctx.smtp()
    camp = write_campaign(
        f"smtp-{fmt_n(n)}",
        audience={"file": str(recipients_csv(n))},
        provider=smtp_provider(sink.port, CONNECTIONS),
    )
    db = fresh_db(f"smtp-{fmt_n(n)}")
    before = sink.messages()
    log(f"stamp send {fmt_n(n)} -> smtp-sink ({tag})")
    proc = send(camp, db, label=f"send-smtp-{fmt_n(n)}-{tag}", timeout=max(600, n / 50))
    require_ok(proc, "stamp send")
    require_sent(db, n, "stamp send")
    got = sink.messages() - before
    if got != n:
        raise NotMeasured(f"smtp-sink counted {got} messages, expected {n}")
    ctx.shared.setdefault("rss_detail", {})[n] = _rss_detail(proc)
    return n / proc.seconds, proc.tree_rss_mb, (camp, db)


def _rss_detail(proc: Proc) -> str:
    return (
        f"peak RSS summed over {proc.tree_max_procs} process(es) (stamp + render workers); "
        f"main process alone {proc.max_rss_mb:.0f} MB"
    )


BIG_BUDGET = 480.0  # seconds a 1M send may take before it is stopped and judged on what it did


def stamp_smtp_big(ctx: Ctx, n: int) -> tuple[float, str]:
    """One send of n (1M) recipients, cached: (peak RSS MB, note); its rate goes to scaling.

    A send still running after BIG_BUDGET seconds is killed; its rate is then the
    ledger's ``sent`` count over the elapsed time, and the note says so.
    """
    done = ctx.shared.setdefault("big", {})
    if n in done:
        return done[n]
    sink = ctx.smtp()
    camp = write_campaign(
        f"smtp-{fmt_n(n)}",
        audience={"file": str(recipients_csv(n))},
        provider=smtp_provider(sink.port, CONNECTIONS),
    )
    db = fresh_db(f"smtp-{fmt_n(n)}")
    log(f"stamp send {fmt_n(n)} -> smtp-sink (one run, stopped after {BIG_BUDGET:.0f} s)")
    proc = send(camp, db, label=f"send-smtp-{fmt_n(n)}", timeout=BIG_BUDGET)
    note = ""
    if proc.timed_out:
        sent = ledger_states(db).get("sent", 0)
        if not sent:
            raise NotMeasured(f"nothing sent within {BIG_BUDGET:.0f} s")
        note = (
            f"stopped after {proc.seconds:.0f} s with {sent:,} of {n:,} sent; rate = sent / elapsed"
        )
        rate = sent / proc.seconds
    else:
        require_ok(proc, "stamp send")
        require_sent(db, n, "stamp send")
        rate = n / proc.seconds
        note = f"one run, {proc.seconds:.0f} s"
    ctx.shared.setdefault("smtp_rates", {})[n] = [rate]
    ctx.shared.setdefault("rss", {})[n] = proc.tree_rss_mb
    note += "; " + _rss_detail(proc)
    ctx.shared.setdefault("notes", {})[n] = note
    done[n] = (proc.tree_rss_mb, note)
    return done[n]


def stamp_smtp_runs(ctx: Ctx, n: int, repeat: int) -> list[float]:
    """Median-ready rates for n recipients; also remembered for the scaling table."""
    runs: list[float] = []
    t0 = time.perf_counter()
    for i in range(repeat):
        rate, rss, finished = stamp_smtp_run(ctx, n, f"run{i}")
        runs.append(rate)
        ctx.shared.setdefault("rss", {})[n] = rss
        ctx.shared.setdefault("finished", {})[n] = finished
        elapsed = time.perf_counter() - t0
        if elapsed * (i + 2) / (i + 1) > BUDGET:
            break
    ctx.shared.setdefault("smtp_rates", {})[n] = runs
    return runs


def bare_smtp(ctx: Ctx, count: int) -> float:
    proc = run_timed(
        [PY, BENCH / "bare_smtp.py", ctx.smtp().port, count, CONNECTIONS],
        label="bare-aiosmtplib",
    )
    if proc.returncode != 0:
        raise NotMeasured(f"bare aiosmtplib loop failed: {proc.tail(200)}")
    return float(json.loads(proc.stdout.read_text())["rate"])


def corpus_campaign(ctx: Ctx, n: int) -> Path:
    """The corpus template's campaign on n generated rows, its provider the shared smtp-sink
    (made once per n)."""
    made = ctx.shared.setdefault("corpus_campaign", {})
    if n not in made:
        made[n] = str(
            copy_corpus_campaign(CORPUS, n, smtp_provider(ctx.smtp().port, CONNECTIONS), "smtp")
        )
    return Path(made[n])


def mean_message_size(campaign: Path, sample: int) -> int:
    """Mean bytes of the messages stamp sends for this campaign: its first `sample` contacts
    rendered by stamp's own renderer (what goes after DATA, headers included)."""
    import itertools
    import os

    from stampcli.audience.resolve import AudienceStats, iter_audience
    from stampcli.config import load_campaign
    from stampcli.render.renderer import Renderer

    env = {**os.environ, **SECRET_ENV}
    camp = load_campaign(campaign, env=env)
    renderer = Renderer(camp, env=env)
    raw_at = 10  # Message's field order (MessageCodec): raw is the 11th
    sizes = [
        len(renderer.render_tuple(c.key, c.email, c.fields)[raw_at])
        for c in itertools.islice(iter_audience(camp, None, AudienceStats()), sample)
    ]
    if not sizes:
        raise NotMeasured(f"{campaign}: no contact rendered")
    return round(sum(sizes) / len(sizes))


def stamp_corpus_run(ctx: Ctx, n: int, tag: str) -> float:
    """One ``stamp send`` of the corpus campaign to smtp-sink, ledger checked: msg/s."""
    sink = ctx.smtp()
    camp = corpus_campaign(ctx, n)
    db = fresh_db(f"smtp-{CORPUS}-{fmt_n(n)}")
    before = sink.messages()
    log(f"stamp send {CORPUS} {fmt_n(n)} -> smtp-sink ({tag})")
    proc = send(camp, db, label=f"send-smtp-{CORPUS}-{fmt_n(n)}-{tag}", timeout=max(600, n / 50))
    require_ok(proc, f"stamp send ({CORPUS})")
    require_sent(db, n, f"stamp send ({CORPUS})")
    got = sink.messages() - before
    if got != n:
        raise NotMeasured(f"smtp-sink counted {got} messages, expected {n}")
    return n / proc.seconds


def smtp_source_run(ctx: Ctx, n: int, size: int) -> float:
    """Postfix's smtp-source: n messages of `size` body bytes over 16 kept-open sessions."""
    if not SMTP_SOURCE.exists():
        raise NotMeasured(
            f"{SMTP_SOURCE} not found (Postfix's smtp-source: apt-get install postfix)"
        )
    sink = ctx.smtp()
    before = sink.messages()
    log(f"smtp-source -d -s {CONNECTIONS} -l {size} -m {fmt_n(n)} -> smtp-sink")
    proc = run_timed(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            str(CONNECTIONS),
            "-l",
            str(size),
            "-m",
            str(n),
            f"127.0.0.1:{sink.port}",
        ],
        label=f"smtp-source-{fmt_n(n)}",
        timeout=max(600, n / 50),
    )
    if proc.returncode != 0:
        raise NotMeasured(f"smtp-source exited {proc.returncode}: {proc.tail(200)}")
    got = sink.messages() - before
    if got != n:
        raise NotMeasured(f"smtp-sink counted {got} smtp-source messages, not {n}")
    return n / proc.seconds


def corpus_rows(ctx: Ctx, n: int) -> Row:
    """stamp send on the corpus template against smtp-source, alternating run by run."""
    figure = f"stamp send, {CORPUS} template, {fmt_n(n)} recipients"
    target = f">= {TARGET_SOURCE:g}x smtp-source"
    runs: list[float] = []
    src: list[float] = []
    stamp_err = src_err = ""
    size = 0
    try:
        size = mean_message_size(corpus_campaign(ctx, n), SIZE_SAMPLE)
    except NotMeasured as exc:
        stamp_err = str(exc)
    except Exception as exc:  # stamp's modules missing or broken: say so in the table
        stamp_err = f"cannot render {CORPUS} to learn the message size: {exc!r}"
    if not SMTP_SOURCE.exists():
        src_err = f"{SMTP_SOURCE} not found (Postfix's smtp-source: apt-get install postfix)"
    t0 = time.perf_counter()
    for i in range(ctx.repeat):
        if not stamp_err:
            try:
                runs.append(stamp_corpus_run(ctx, n, f"run{i}"))
            except NotMeasured as exc:
                stamp_err = str(exc)
        if not src_err and size:
            try:
                src.append(smtp_source_run(ctx, n, size))
            except NotMeasured as exc:
                src_err = str(exc)
        elapsed = time.perf_counter() - t0
        if stamp_err and (src_err or not size):
            break
        if elapsed * (i + 2) / (i + 1) > BUDGET:
            break
    value = median(runs) if runs else None
    sv = median(src) if src else None
    ratio = value / sv if value and sv else None
    return Row(
        M,
        figure,
        "msg/s",
        value,
        runs,
        reference=f"smtp-source -d -s {CONNECTIONS} -l {size} -m {n} (-l = mean size of "
        f"stamp's messages in this run, {SIZE_SAMPLE:,} rendered; smtp-source adds its own "
        "few headers)",
        ref_value=sv,
        ref_runs=src,
        ratio=ratio,
        ratio_label="x smtp-source",
        target=target,
        passed=check(ratio, ">=", TARGET_SOURCE),
        note="; ".join(
            x
            for x in (
                f"not measured: {stamp_err}" if stamp_err else "",
                f"smtp-source not measured: {src_err}" if src_err else "",
            )
            if x
        ),
    )


def run(ctx: Ctx) -> list[Row]:
    n = ctx.n
    mm_n = 1_000 if ctx.quick else 5_000
    bare_n = min(n, 50_000)
    figure = f"stamp send, {fmt_n(n)} recipients"
    t_rate = f">= {TARGET_RATE:,} msg/s"
    runs: list[float] = []
    mm: list[float] = []
    bare: list[float] = []
    mm_err = bare_err = stamp_err = ""
    t0 = time.perf_counter()
    for i in range(ctx.repeat):
        if not stamp_err:
            try:
                rate, rss, finished = stamp_smtp_run(ctx, n, f"run{i}")
                runs.append(rate)
                ctx.shared.setdefault("rss", {})[n] = rss
                ctx.shared.setdefault("finished", {})[n] = finished
            except NotMeasured as exc:
                stamp_err = str(exc)
        if not mm_err:
            try:
                sink = ctx.smtp()
                before = sink.messages()
                log(f"mailmerge {fmt_n(mm_n)} -> smtp-sink")
                proc = mailmerge_run(sink.port, recipients_csv(n), mm_n)
                if proc.returncode != 0:
                    raise NotMeasured(f"mailmerge exited {proc.returncode}: {proc.tail(200)}")
                got = sink.messages() - before
                if got != mm_n:
                    raise NotMeasured(f"smtp-sink counted {got} mailmerge messages, not {mm_n}")
                mm.append(mm_n / proc.seconds)
            except NotMeasured as exc:
                mm_err = str(exc)
        if not bare_err:
            try:
                log(f"bare aiosmtplib {fmt_n(bare_n)} -> smtp-sink")
                bare.append(bare_smtp(ctx, bare_n))
            except NotMeasured as exc:
                bare_err = str(exc)
        elapsed = time.perf_counter() - t0
        if elapsed * (i + 2) / (i + 1) > BUDGET:
            break
    if runs:
        ctx.shared.setdefault("smtp_rates", {})[n] = runs
    value = median(runs) if runs else None
    rows = []
    mmv = median(mm) if mm else None
    ratio_mm = value / mmv if value and mmv else None
    rows.append(
        Row(
            M,
            figure,
            "msg/s",
            value,
            runs,
            reference=f"{mailmerge_version()}, first {fmt_n(mm_n)} rows of the same list",
            ref_value=mmv,
            ref_runs=mm,
            ratio=ratio_mm,
            ratio_label="x mailmerge",
            target=f"{t_rate} and >= {TARGET_MM:g}x mailmerge",
            passed=all_pass(check(value, ">=", TARGET_RATE), check(ratio_mm, ">=", TARGET_MM)),
            note="; ".join(
                x
                for x in (
                    f"not measured: {stamp_err}" if stamp_err else "",
                    f"mailmerge not measured: {mm_err}" if mm_err else "",
                )
                if x
            ),
        )
    )
    bv = median(bare) if bare else None
    ratio_b = value / bv if value and bv else None
    rows.append(
        Row(
            M,
            figure,
            "msg/s",
            value,
            runs,
            reference=f"bare aiosmtplib loop, {CONNECTIONS} connections, pre-built 8 KB messages "
            f"({fmt_n(bare_n)})",
            ref_value=bv,
            ref_runs=bare,
            ratio=ratio_b,
            ratio_label="x the bare loop",
            target=f">= {TARGET_BARE:.0%} of the bare loop",
            passed=check(ratio_b, ">=", TARGET_BARE),
            note="; ".join(
                x
                for x in (
                    f"not measured: {stamp_err}" if stamp_err else "",
                    f"bare loop not measured: {bare_err}" if bare_err else "",
                )
                if x
            ),
        )
    )
    rows.append(corpus_rows(ctx, n))
    return rows
