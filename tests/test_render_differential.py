"""The cached fast path gives exactly what the straightforward pipeline gives.

The straightforward pipeline renders the template, inlines CSS and runs
html2text on every message. The fast path (``stampcli.render.skeleton_cache``)
does the last two once per template layout and substitutes values. Here both
run over sample rows chosen to hit every edge the substitution must respect:
entities, Markdown-significant characters, list-like starts, runs of spaces,
empty values, non-ASCII, values equal to each other, conditionals.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import pytest
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from render_helpers import ENV, EXAMPLES, example, parse, renderer

from stampcli.render import skeleton_cache, textpart
from stampcli.render.environment import FILTERS
from stampcli.render.renderer import Renderer

TRICKY = [
    "Ada",
    "O'Brien & Sons",
    "Zoé",
    "1. First",
    "- dash",
    "+ plus",
    "* star",
    "two  spaces",
    " padded ",
    "",
    "[link](https://x.example)",
    "<b>bold</b>",
    "back\\slash",
    "under_score_",
    "emoji 🎉",
    "https://acme.example/unsubscribe",
    "ACME News",
    "a\u00a0nbsp",
    "#hash",
    "tab\there",
]


@pytest.fixture(autouse=True)
def _no_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the built-in sample verification a wrong substitution could not hide."""
    monkeypatch.setattr(skeleton_cache, "VERIFY_SAMPLES", 0)


def _rows() -> list[dict[str, Any]]:
    with (EXAMPLES / "lists" / "customers.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for i, value in enumerate(TRICKY):
        base = dict(rows[i % len(rows)])
        base["first_name"] = value
        base["plan"] = TRICKY[(i + 3) % len(TRICKY)]
        rows.append(base)
    return rows


def _pairs(fast: Renderer, slow: Renderer, rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows):
        key = f"r{i}@example.com"
        a = fast.render(key, key, row)
        b = slow.render(key, key, row)
        assert a.html == b.html, row
        assert a.text == b.text, row
        assert a.raw == b.raw


@pytest.mark.parametrize("name", ["newsletter.yml", "markdown.yml"])
def test_examples_fast_equals_straightforward(name: str, tmp_path: Path) -> None:
    c = example(name, tmp_path)
    fast = Renderer(c, env=ENV, clock=lambda: 1e9)
    slow = Renderer(c, env=ENV, clock=lambda: 1e9, fast=False)
    rows = _rows()
    _pairs(fast, slow, rows)
    assert fast.stats.fast >= len(rows) // 2  # the fast path is really taken
    assert fast.stats.mismatches == 0
    assert slow.stats.fast == 0


def test_reference_pipeline(tmp_path: Path) -> None:
    """Independent of the renderer: Jinja, css-inline and html2text called directly."""
    import css_inline

    c = example("newsletter.yml", tmp_path)
    r = Renderer(c, env=ENV)
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(c.template.parent)),
        undefined=StrictUndefined,
        autoescape=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    template = env.get_template(c.template.name)
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    for i, row in enumerate(_rows()[:30]):
        key = f"r{i}@example.com"
        m = r.render(key, key, row)
        ctx = {**row, "email": key, "campaign": c.name, "subject": m.subject}
        ctx["unsubscribe_url"] = m.headers["List-Unsubscribe"].split(">", 1)[0][1:]
        ctx["contact"] = row
        html = inliner.inline(template.render(ctx))
        assert m.html == html
        assert m.text == textpart.html_to_text(html)
        parsed = parse(m.raw)
        body = parsed.get_body(("html",))
        assert body is not None and body.get_content().replace("\r\n", "\n") == html


CONDITIONAL = """<html><head><style>.x { color: red; }</style></head><body>
{% if plan == "pro" %}<p class="x">Thanks for going pro, {{ first_name }}!</p>
{% else %}<p>Try pro, {{ first_name | default("friend") }}.</p>{% endif %}
{% for item in items %}<p>{{ loop.index }}. {{ item }}</p>{% endfor %}
<p><a href="https://acme.example/p?u={{ email }}">{{ email }}</a></p>
<p><a href="{{ unsubscribe_url }}">{{ unsubscribe_url }}</a></p></body></html>
"""


def test_conditionals_loops_and_equal_values(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"template": CONDITIONAL, "variables": {"items": ["a", "b & c"]}}
    fast = renderer(tmp_path / "f", **kwargs)
    slow = Renderer(fast.campaign, env=ENV, clock=lambda: 1_700_000_000.0, fast=False)
    rows = [
        {"first_name": name, "plan": plan}
        for name, plan in itertools.product(TRICKY[:12], ["pro", "free"])
    ]
    _pairs(fast, slow, rows)
    assert fast.stats.fast > 0 and fast.stats.mismatches == 0


MACROS = """<html><head><style>.c { color: red; } p { margin: 0; }</style></head><body>
{% macro card(title, body) %}<div class="c"><h3>{{ title }}</h3><p>{{ body }}</p></div>
{%- endmacro %}
{{ card("Hi " ~ first_name, plan) }}
{% set greeting %}Dear {{ first_name }} of {{ plan }},{% endset %}<p>{{ greeting }}</p>
{{ card(first_name, "static body") }}<p>{{ first_name }} / {{ email }}</p>
<p><a href="{{ unsubscribe_url }}">unsubscribe</a></p></body></html>
"""


@pytest.mark.parametrize("raw", [True, False])
def test_macros_and_set_blocks(tmp_path: Path, raw: bool) -> None:
    """A macro's or a set block's output reaches the body as one piece holding marked values."""
    import orjson

    fast = renderer(tmp_path / "f", template=MACROS)
    slow = Renderer(fast.campaign, env=ENV, clock=lambda: 1_700_000_000.0, fast=False)
    fast.raw = raw
    rows = [{"first_name": n, "plan": p} for n, p in itertools.product(TRICKY, ["pro", "Zoé"])]
    for i, row in enumerate(rows):
        key = f"r{i}@example.com"
        a = fast.render(key, key, row)
        b = slow.render(key, key, row)
        assert (a.html, a.text) == (b.html, b.text), row
        if not raw and a.html_json is not None:
            assert orjson.loads(a.html_json) == b.html
    # (most TRICKY values are not plain and take the straightforward path on purpose)
    assert fast.stats.fast >= len(rows) // 4 and fast.stats.mismatches == 0


def test_marker_characters_in_the_template_take_the_straightforward_path(tmp_path: Path) -> None:
    template = "<html><body><p>{{ first_name }} \ue001 \ue000 {{ plan }}</p></body></html>\n"
    fast = renderer(tmp_path / "f", template=template)
    slow = Renderer(fast.campaign, env=ENV, clock=lambda: 1_700_000_000.0, fast=False)
    _pairs(fast, slow, [{"first_name": "Ada", "plan": "pro"}, {"first_name": "Bo", "plan": "x"}])
    assert fast.stats.fast == 0 and fast.stats.slow == 2


def test_parse_pieces() -> None:
    from markupsafe import Markup

    o, c = skeleton_cache.MARK_OPEN, skeleton_cache.MARK_CLOSE
    static = "<p>Hello "
    parsed = skeleton_cache.parse_pieces(
        [static, Markup(f"{o}Ada{c}"), "!</p>", f"<i>{o}x{c}</i>{o}{c}"]
    )
    assert parsed is not None
    layout, values = parsed
    assert layout == (static, None, "!</p>", "<i>", None, "</i>", None, "")
    assert layout[0] is static  # the template's own constant, not a copy
    assert values == ["Ada", "x", ""] and all(type(v) is str for v in values)
    assert skeleton_cache._statics(layout) == [static, "!</p><i>", "</i>", ""]
    for bad in ([f"a{c}"], [f"{o}a"], [f"{o}a{o}b{c}"], [f"x{o}a{c}{c}"], [f"{o}a{c}b{o}"]):
        assert skeleton_cache.parse_pieces(bad) is None, bad
    assert skeleton_cache.split_marked(f"a{o}1{c}b{o}2{c}") == (["a", "b", ""], ["1", "2"])


def test_is_plain_fails_fast_on_a_value_that_is_not_plain() -> None:
    """A long run of word characters before a character outside the plain set (here a
    parenthesis) used to make the match try every way of splitting the run: ~1 s for this
    value (on an idle machine), twice that per character more; a campaign variable with a
    sentence like it hung the render."""
    import time

    value = "Highlights_of_the_week ("
    t0 = time.perf_counter()
    assert not skeleton_cache.is_plain(value)
    assert not skeleton_cache.is_plain("recommendations & suggestions (but you should)")
    assert time.perf_counter() - t0 < 0.1
    assert skeleton_cache.is_plain("Highlights_of_the_week &amp; more")
