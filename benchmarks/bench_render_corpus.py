"""3b. Render cost per message for each template of the corpus (benchmarks/templates/).

Per template, in one run and alternating:

* bare Jinja: ``Template.render`` alone of the same template with the same
  context (a plain ``jinja2.Environment`` with stamp's filters; for the Markdown
  template the body and the layout renders, the Markdown conversion done
  beforehand), nothing else;
* stamp, MIME: ``Renderer(campaign).render(...)``, the complete message bytes
  (what ``stamp send`` does for SMTP);
* stamp, JSON: ``Renderer(campaign, raw=False)``, the fields and JSON literals
  the HTTP providers' adapters use;
* the naive pipeline: Jinja, premailer, html2text and ``EmailMessage`` on every
  message (refs.StraightforwardRenderer, extended to includes, variables and a
  Markdown layout).

Targets (issue "speed on real newsletters"): stamp at most 4x bare Jinja or
0.2 ms a message, whichever is larger, and >= 20x the naive pipeline, on both
paths. The note gives the share of messages the fast path took.

Each recipient is rendered once, as in a send: the renderers are warmed on one
set of generated rows, then every timed pass renders rows they have not seen
(caches keep what earlier rows taught them). Timing the warm-up's own rows again
would flatter every per-layout or per-piece cache.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from typing import Any

from benchmarks.common import WORK, Ctx, NotMeasured, Row, all_pass, check, median, not_measured
from benchmarks.corpus import CorpusTemplate, load, names, write_list
from benchmarks.stampside import SECRET_ENV

M = "3b. render corpus"
JINJA_X = 4.0
FLOOR_MS = 0.2
TARGET_X = 20.0
UNSUB = "https://example.com/unsubscribe?t="


def _jinja_env(folders: list[Path]) -> Any:
    """A plain Jinja environment (no sandbox) with stamp's extra filters."""
    import jinja2

    from stampcli.render.environment import FILTERS

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(f) for f in folders]),
        autoescape=jinja2.select_autoescape(["html", "htm", "md"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def _folders(camp: Any) -> list[Path]:
    folders = [camp.template.parent]
    if camp.layout is not None and camp.layout.parent not in folders:
        folders.append(camp.layout.parent)
    return folders


class BareJinja:
    """``Template.render`` of the campaign's template(s), contexts made beforehand."""

    def __init__(self, camp: Any, contexts: list[dict[str, Any]]) -> None:
        from markupsafe import Markup

        from stampcli.render import markdown

        env = _jinja_env(_folders(camp))
        self.body = env.get_template(camp.template.name)
        self.layout = env.get_template(camp.layout.name) if camp.layout is not None else None
        self.contexts = contexts
        self.layout_contexts: list[dict[str, Any]] = []
        if self.layout is not None:
            for ctx in contexts:
                content = Markup(markdown.to_html(self.body.render(ctx)))
                self.layout_contexts.append({**ctx, "content": content})

    def part(self, start: int, end: int) -> BareJinja:
        """The same renders for the contexts ``start:end`` only."""
        part = copy.copy(self)
        part.contexts = self.contexts[start:end]
        part.layout_contexts = self.layout_contexts[start:end]
        return part

    def run(self) -> None:
        body, layout = self.body, self.layout
        if layout is None:
            for ctx in self.contexts:
                body.render(ctx)
        else:
            for ctx, lctx in zip(self.contexts, self.layout_contexts, strict=True):
                body.render(ctx)
                layout.render(lctx)


class Naive:
    """What a script would do for each message: Jinja, premailer, html2text, EmailMessage."""

    def __init__(self, camp: Any) -> None:
        import html2text
        import premailer  # noqa: F401  (benchmark-only dependency)
        from markdown_it import MarkdownIt

        env = _jinja_env(_folders(camp))
        self.camp = camp
        self.body = env.get_template(camp.template.name)
        self.layout = env.get_template(camp.layout.name) if camp.layout is not None else None
        self.subject = env.from_string(camp.subject)
        self.md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
        self.h2t = html2text

    def render(self, row: dict[str, str]) -> bytes:
        import premailer
        from markupsafe import Markup

        token = hashlib.sha256(row["email"].encode()).hexdigest()[:32]
        ctx = {**self.camp.variables, **row, "campaign": self.camp.name}
        subject = self.subject.render(ctx)
        ctx.update(subject=subject, unsubscribe_url=UNSUB + token)
        html = self.body.render(ctx)
        if self.layout is not None:
            html = self.layout.render({**ctx, "content": Markup(self.md.render(html))})
        # no network, as css-inline in stamp (the MJML export links a web font's CSS)
        inlined = premailer.transform(
            html,
            keep_style_tags=True,
            disable_validation=True,
            allow_network=False,
            cssutils_logging_level=logging.CRITICAL,  # its warnings about mso-* properties
        )
        text = self.h2t.HTML2Text().handle(inlined)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = self.camp.from_
        msg["To"] = row["email"]
        msg["Subject"] = subject
        msg["Date"] = formatdate()
        msg["Message-ID"] = f"<{row['email'].replace('@', '.')}@example.com>"
        msg["List-Unsubscribe"] = f"<{UNSUB}{token}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text)
        msg.add_alternative(inlined, subtype="html")
        return msg.as_bytes()


def _ms(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000 / n


def prepared(t: CorpusTemplate, n_stamp: int) -> tuple[Any, list[Any], Any, list[Any], BareJinja]:
    """One template made ready to time: its campaign on ``n_stamp`` generated rows, their
    contacts, the MIME renderer and its messages, and bare Jinja given the same contexts."""
    from stampcli.audience.resolve import AudienceStats, iter_audience
    from stampcli.config import load_campaign
    from stampcli.render.renderer import Renderer

    env = {**os.environ, **SECRET_ENV}
    path = WORK / "corpus" / f"{t.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_list(path, t.rows(n_stamp, 1))
    camp = load_campaign(t.campaign_file, env=env)
    camp = camp.model_copy(update={"audience": camp.audience.model_copy(update={"file": path})})
    contacts = list(iter_audience(camp, None, AudienceStats()))
    if len(contacts) != n_stamp:
        raise NotMeasured(f"{t.name}: {len(contacts)} of {n_stamp} rows made a contact")
    mime = Renderer(camp, env=env)
    messages = [mime.render(c.key, c.email, c.fields) for c in contacts]
    contexts = []
    for c, m in zip(contacts, messages, strict=True):
        ctx = mime.context(c.key, c.email, c.fields)
        ctx["subject"] = m.subject
        ctx["unsubscribe_url"] = m.headers["List-Unsubscribe"].split(">", 1)[0][1:]
        contexts.append(ctx)
    return camp, contacts, mime, messages, BareJinja(camp, contexts)


def bare_jinja_ms(name: str, n: int = 1000, repeat: int = 3) -> float:
    """Bare Jinja's own render of corpus template ``name``: the best ms a message of
    ``repeat`` runs over ``n`` rows (what no sender can beat on one core)."""
    *_, bare = prepared(load(name), n)
    return min(_ms(bare.run, n) for _ in range(repeat))


def measure(t: CorpusTemplate, n_stamp: int, n_ref: int, repeat: int) -> dict[str, Any]:
    """Every figure of one template: medians and runs, ms a message.

    As in a real send, where each recipient comes once: the renderers are warmed on
    ``n_stamp`` recipients, then each timed pass renders ``n_stamp`` recipients that
    neither renderer has seen (what the caches learnt from earlier ones is kept, as it
    is in a send); bare Jinja and the naive pipeline render the same pass's recipients.
    """
    from stampcli.render.renderer import Renderer

    env = {**os.environ, **SECRET_ENV}
    camp, everyone, _, messages, bare_all = prepared(t, n_stamp * (repeat + 1))
    if not messages[0].raw:
        raise NotMeasured(f"{t.name}: the renderer produced an empty message")
    sizes = sorted(len(m.raw) for m in messages)
    mime = Renderer(camp, env=env)
    json_ = Renderer(camp, env=env, raw=False)
    for c in everyone[:n_stamp]:  # the start of a send: caches learn
        mime.render_tuple(c.key, c.email, c.fields)
        json_.render_tuple(c.key, c.email, c.fields)
    warm = {"mime": _counts(mime), "json": _counts(json_)}
    naive = Naive(camp)
    naive.render({**everyone[0].fields, "email": everyone[0].email})

    def run_stamp(r: Renderer, contacts: list[Any]) -> Callable[[], None]:
        def go() -> None:
            for c in contacts:
                r.render_tuple(c.key, c.email, c.fields)

        return go

    def run_naive(rows: list[dict[str, str]]) -> Callable[[], None]:
        def go() -> None:
            for row in rows:
                naive.render(row)

        return go

    runs: dict[str, list[float]] = {"jinja": [], "mime": [], "json": [], "naive": []}
    for k in range(1, repeat + 1):
        start, end = k * n_stamp, (k + 1) * n_stamp
        contacts = everyone[start:end]
        ref_rows = [{**c.fields, "email": c.email} for c in contacts[:n_ref]]
        runs["jinja"].append(_ms(bare_all.part(start, end).run, n_stamp))
        runs["mime"].append(_ms(run_stamp(mime, contacts), n_stamp))
        runs["json"].append(_ms(run_stamp(json_, contacts), n_stamp))
        runs["naive"].append(_ms(run_naive(ref_rows), n_ref))
    # the fast-path share of the timed passes only
    stats = {
        path: tuple(a - b for a, b in zip(_counts(r), warm[path], strict=True))
        for path, r in (("mime", mime), ("json", json_))
    }
    return {
        "runs": runs,
        "median": {k: median(v) for k, v in runs.items()},
        "stats": stats,
        "bytes": sizes[len(sizes) // 2],
        "n": n_stamp,
        "n_ref": n_ref,
    }


def _counts(r: Any) -> tuple[int, int]:
    """(fast, slow) bodies a renderer has made so far."""
    return (r.stats.fast, r.stats.slow)


def _rows_for(name: str, fig: dict[str, Any]) -> list[Row]:
    med = fig["median"]
    out = []
    for path, label in (("mime", "MIME"), ("json", "JSON")):
        value = med[path]
        speedup = med["naive"] / value
        of_jinja = value / med["jinja"]
        limit = max(JINJA_X * med["jinja"], FLOOR_MS)
        fast, slow = fig["stats"][path]
        fast_share = fast / (fast + slow) if fast + slow else 0.0
        out.append(
            Row(
                M,
                f"{name}, {label}",
                "ms/msg",
                value,
                fig["runs"][path],
                reference="Jinja + premailer + html2text + EmailMessage per message",
                ref_value=med["naive"],
                ref_runs=fig["runs"]["naive"],
                ratio=speedup,
                ratio_label="x faster",
                target=f"<= max({JINJA_X:g}x Jinja, {FLOOR_MS} ms) and >= {TARGET_X:g}x",
                passed=all_pass(check(value, "<=", limit), check(speedup, ">=", TARGET_X)),
                note=f"bare Jinja {med['jinja']:.3f} ms (stamp = {of_jinja:.1f}x Jinja); "
                f"fast path {fast_share:.0%} of bodies; {fig['n']} messages "
                f"(naive: {fig['n_ref']}), median {fig['bytes']:,} bytes (MIME)",
            )
        )
    return out


def run(ctx: Ctx) -> list[Row]:
    n_stamp = 1_000 if ctx.quick else 3_000
    n_ref = 100 if ctx.quick else 200
    rows: list[Row] = []
    for name in names():
        figure = f"{name}, MIME and JSON"
        try:
            fig = measure(load(name), n_stamp, n_ref, ctx.repeat)
        except NotMeasured as exc:
            rows.append(not_measured(M, figure, "ms/msg", str(exc)))
            continue
        except Exception as exc:
            rows.append(not_measured(M, figure, "ms/msg", f"{type(exc).__name__}: {exc}"))
            continue
        rows += _rows_for(name, fig)
    return rows
