"""Prose values: text with parentheses, quotes, prices and list-like starts takes the
cached path in running text, and only there, with the straightforward bytes.

``skeleton_cache.slot_kinds`` reads once per skeleton where each value stands;
``is_prose`` says which values may go into running text. Here one template puts
the same values in every place html2text or css-inline read differently (running
text, attributes, ``<pre>``, ``<title>``, ``<style>``, comments, code, after a
struck-through word, link texts and addresses, headings, nested lists, quotes,
tables, next to the template's own brackets) and hypothesis fills them; the fast
render (verification off) must equal the straightforward one byte for byte.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from render_helpers import ENV, renderer

from stampcli.render import skeleton_cache
from stampcli.render.renderer import Renderer

CLOCK = 1_700_000_000.0

EVERYWHERE = """<html><head><title>{{ a }}</title>
<style>.x { color: red; } /* {{ b }} */</style></head><body>
<!-- {{ a }} -->
<p class="x">Hi {{ a }}, {{ b }}.</p>
<p>{{ b }}</p>
<h2>{{ a }}</h2>
<p><s>gone</s>{{ a }} and <b>{{ b }}</b></p>
<p><a href="https://acme.example/p?u={{ a }}">{{ b }}</a> <a href="{{ b }}">{{ b }}</a></p>
<p><img src="https://acme.example/i.png" alt="{{ a }}"></p>
<pre>{{ a }}
  {{ b }}</pre>
<p>Code: <code>{{ a }}</code> <kbd>{{ b }}</kbd></p>
<ul><li>{{ a }}<ul><li>{{ b }}<ul><li>{{ a }}</li></ul></li></ul></li></ul>
<ol><li>{{ b }}</li></ol>
<blockquote>{{ a }}</blockquote>
<table><tr><td>{{ a }}</td><td>{{ b }}</td></tr></table>
<p>{{ a }}</p><p>{{ b }} {{ a }}</p>
<textarea>{{ b }}</textarea>
</body></html>
"""
BRACKETS = """<html><body><p>See [note]{{ a }} and {{ b }}.</p>
<p>[{{ a }}]({{ b }})</p></body></html>
"""

SAMPLES = [
    "Ada", "Why we moved off Rust (and back again)", "(but you should)", "79.00",
    "1. First", "- dash", "+ plus", "* star", "#hash", "# heading", "O'Brien & Sons",
    'say "hi"', "100%", "a;b", "x~y", "~tilde", ".dot", "!bang", "?q", "{brace}",
    "https://x.example/a(b)", "tab\tthere", "two  spaces", " padded ", "", "under_score_",
    "emoji 🎉", "Zoë 美咲", "a\u00a0nbsp", "back\\slash", "`tick`", "[link](u)", "<b>x</b>",
    "&amp;", "it's", "R&D", "a > b", "= equals", "--- rule", "3) third", "end.", "end (x", "x) y",
]  # fmt: skip
_ALPHABET = st.characters(
    codec="utf-8",
    categories=("L", "N", "P", "S", "Zs"),
    include_characters="\t&<>\"'*_`#-+.()[]{}!?~\\;:/=\u00a0\u00ad\u200b\ufeff\u2028",
)
VALUE = st.one_of(st.sampled_from(SAMPLES), st.text(_ALPHABET, min_size=1, max_size=30))


@pytest.fixture(autouse=True)
def _no_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the built-in sample verification a wrong substitution could not hide."""
    monkeypatch.setattr(skeleton_cache, "VERIFY_SAMPLES", 0)


def _pair(tmp_path: Path, template: str, raw: bool = True) -> tuple[Renderer, Renderer]:
    fast = renderer(tmp_path, template=template, subject="News")
    fast.raw = raw
    slow = Renderer(fast.campaign, env=ENV, clock=lambda: CLOCK, fast=False, raw=raw)
    return fast, slow


def _same(fast: Renderer, slow: Renderer, i: int, row: dict[str, Any]) -> None:
    key = f"r{i}@example.com"
    a = fast.render(key, key, row)
    b = slow.render(key, key, row)
    assert (a.html, a.text, a.raw) == (b.html, b.text, b.raw), row
    if not fast.raw:
        import orjson

        assert (a.html_json or orjson.dumps(a.html)) == orjson.dumps(b.html), row


@pytest.mark.parametrize("template", [EVERYWHERE, BRACKETS], ids=["everywhere", "brackets"])
@pytest.mark.parametrize("raw", [True, False], ids=["mime", "json"])
def test_samples_in_every_place(tmp_path: Path, template: str, raw: bool) -> None:
    fast, slow = _pair(tmp_path, template, raw)
    rows = [
        {"a": a, "b": b} for a in SAMPLES for b in ("Ada", SAMPLES[(len(a) * 7) % len(SAMPLES)])
    ]
    rows += [{"a": "Ada", "b": b} for b in SAMPLES]
    for i, row in enumerate(rows):
        _same(fast, slow, i, row)
    assert fast.stats.mismatches == 0
    assert fast.stats.fast > 0


@pytest.mark.parametrize("raw", [True, False], ids=["mime", "json"])
def test_generated_values_in_every_place(tmp_path: Path, raw: bool) -> None:
    fast, slow = _pair(tmp_path, EVERYWHERE, raw)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(a=VALUE, b=VALUE)
    def check(a: str, b: str) -> None:
        _same(fast, slow, 0, {"a": a, "b": b})

    check()


PROSE_ONLY = """<html><head><style>p { margin: 0; }</style></head><body>
<p>{{ title }}</p><p>{{ summary }} costs {{ price }} EUR.</p>
<p><a href="https://acme.example/{{ slug }}">Read on</a></p></body></html>
"""


def test_prose_values_take_the_cached_path_in_running_text(tmp_path: Path) -> None:
    fast, slow = _pair(tmp_path, PROSE_ONLY)
    rows = [
        {"title": "Why we moved off DNS (and back again)", "summary": "It's \"fine\"",
         "price": "79.00", "slug": f"post-{i}"}
        for i in range(6)
    ]  # fmt: skip
    for i, row in enumerate(rows):
        _same(fast, slow, i, row)
    assert fast.stats.fast == len(rows)
    # the same parenthesis in an address is not prose: that message is straightforward
    _same(fast, slow, 99, {**rows[0], "slug": "a(b)"})
    assert fast.stats.slow == 1


def test_is_prose() -> None:
    for ok in ("Why (and back again)", "79.00", "1. First", "- dash", 'say "hi"', "a*b_c"):
        assert skeleton_cache.is_prose(ok), ok
    for bad in (
        "", " a", "a ", "two  spaces", "#hash", "(x)", ".x", "!x", "?x", "{x}", "x~y",
        "[a](b)", "a\\b", "`x`", "<b>", "a&b", "&lt;", "tab\tx", "line\nx", "a\u00a0b",
        "https://x.example", "\ue000x",
    ):  # fmt: skip
        assert not skeleton_cache.is_prose(bad), bad


def test_slot_kinds_reads_each_place_once() -> None:
    lookup = {f"S{i}S": i for i in range(9)}
    pattern = re.compile("S[0-9]S")
    html = (
        '<title>S0S</title><p title="S1S">S2S</p><!-- S3S --><pre>S4S</pre>'
        "<style>x{}</style><p>S5S <code>S6S</code></p><br/>S7S<script>S8S</script>"
    )
    text = "S2S\n\n    S5S S7S\n"
    kinds = skeleton_cache.slot_kinds(html, text, pattern, lookup)
    P, L = skeleton_cache.PROSE, skeleton_cache.PLAIN
    U, R = L | skeleton_cache.URL, skeleton_cache.RAW
    # S5S stands on a line html2text indents by four; S7S too
    assert kinds == [L, L, P, L | R, L, L, L, L, L | R]
    brackets = skeleton_cache.slot_kinds(html, "[S2S]", pattern, lookup)
    assert brackets == [U, U, U, U | R, U, U, U, U, U | R]
    # linear: a long skeleton with many slots is read in well under a second
    many = {f"S{i:05d}S": i for i in range(20_000)}
    big = "".join(f"<p>S{i:05d}S</p>" for i in range(20_000))
    import time

    t0 = time.perf_counter()
    got = skeleton_cache.slot_kinds(big, big, re.compile("S[0-9]{5}S"), many)
    assert time.perf_counter() - t0 < 1.0
    assert got == [P] * 20_000


def test_macro_markup_stays_in_the_skeleton(tmp_path: Path) -> None:
    template = """{% macro button(label) %}<a class="b" href="https://a.example/">{{ label }}</a>
{%- endmacro %}{% macro rule() %}<hr>{% endmacro %}<html><body><p>Hi {{ a }}</p>{{ rule() }}
{{ button("Go (now)") }}{{ button(b) }}</body></html>
"""
    fast, slow = _pair(tmp_path, template)
    for i in range(4):
        _same(fast, slow, i, {"a": f"Ada {i}", "b": "Read (more)"})
    assert fast.stats.fast == 4


def test_layouts_no_other_message_shares_stop_being_built(tmp_path: Path) -> None:
    """Each message a new layout: after the first few, the cache stops building entries
    (each costs more than the straightforward render) and the messages go straight."""
    template = "<html><body>{% for i in range(n | int) %}<p>{{ a }}</p>{% endfor %}</body></html>\n"
    fast, slow = _pair(tmp_path, template)
    n = skeleton_cache.FIRST_SIGHT + 40
    for i in range(n):
        _same(fast, slow, i, {"a": "Ada", "n": str(i + 1)})
    assert len(fast.cache._entries) == skeleton_cache.FIRST_SIGHT
    # a layout that comes again is built and then used
    for i in range(3):
        _same(fast, slow, i, {"a": "Bo", "n": str(n + 1)})
    assert len(fast.cache._entries) == skeleton_cache.FIRST_SIGHT + 1
    assert fast.stats.fast >= skeleton_cache.FIRST_SIGHT + 2


def test_entries_that_do_not_pay_back_stop_being_built(tmp_path: Path) -> None:
    """Layouts that come twice but never more: after BUILD_TRIAL builds served a message
    each, no more entries are built."""
    template = "<html><body>{% for i in range(n | int) %}<p>{{ a }}</p>{% endfor %}</body></html>\n"
    fast, slow = _pair(tmp_path, template)
    for i in range(skeleton_cache.BUILD_TRIAL + 10):
        for _ in range(2):
            _same(fast, slow, i, {"a": "Ada", "n": str(i + 1)})
    assert len(fast.cache._entries) == skeleton_cache.BUILD_TRIAL
