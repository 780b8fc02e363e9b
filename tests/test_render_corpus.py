"""Over the benchmark corpus, the fast render gives exactly the straightforward one's bytes.

Every template of ``benchmarks/templates/`` (table layout with an article loop,
per-recipient branches, macros and includes, Markdown, an MJML export, a
50-item digest) is rendered by a ``Renderer`` with its fast paths and by one
with ``fast=False`` (Jinja, css-inline and html2text on every message), for the
MIME path (``raw``: the whole message) and the JSON path of the HTTP
providers (the fields and the JSON literals). The messages must be equal
field by field and byte for byte, for the corpus's own generated rows and for
rows whose text cells hypothesis fills with what CRM exports hold (markup,
entities, Markdown characters, list-like starts, runs of spaces, non-ASCII,
empty cells). The built-in sample verification is off, so a wrong substitution
cannot hide behind it. This pins today's output for the render speed work.

``-m slow`` runs the same with thousands of rows per template.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from render_helpers import ENV

from benchmarks import corpus
from benchmarks.templates import people
from stampcli.config import load_campaign
from stampcli.errors import StampError
from stampcli.render import skeleton_cache
from stampcli.render.renderer import Renderer

NAMES = corpus.names()
CLOCK = 1_700_000_000.0
ROWS = 150
EXAMPLES = 50

# what a text cell of a CRM export may hold besides ordinary names
TRICKY = [
    "", " ", "O'Brien & Sons", "<b>bold</b>", "1. First", "- dash", "* star", "+ plus",
    "two  spaces", " padded ", "[link](https://x.example)", "back\\slash", "under_score_",
    "#hash", "emoji 🎉", "a\u00a0nbsp", "tab\there", "line\nbreak", "100%", "a;b;;c",
    "product updates; api", "PRO", "enterprise", "de", "fr", "es", "DE", "GB", "US",
    "&amp;", "`code`", "> quote", "(brackets)", "x" * 90, "Zoë 美咲 Олег",
]  # fmt: skip
_ALPHABET = st.characters(
    codec="utf-8",
    categories=("L", "N", "P", "S", "Zs"),
    include_characters="\t\n&<>\"'*_`#-+.()[]!\\;:/\u00a0",
)
CELL = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(people.FIRST + people.LAST + people.INTERESTS + people.PLANS),
    st.text(_ALPHABET, max_size=40),
)


@pytest.fixture(autouse=True)
def _no_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the built-in sample verification a wrong substitution could not hide."""
    monkeypatch.setattr(skeleton_cache, "VERIFY_SAMPLES", 0)


@functools.cache
def _pair(name: str, raw: bool) -> tuple[Renderer, Renderer]:
    camp = load_campaign(corpus.load(name).campaign_file, env=ENV)
    fast = Renderer(camp, env=ENV, clock=lambda: CLOCK, raw=raw)
    slow = Renderer(camp, env=ENV, clock=lambda: CLOCK, raw=raw, fast=False)
    return fast, slow


def _outcome(r: Renderer, key: str, row: dict[str, str]) -> Any:
    try:
        return r.render(key, row["email"], row)
    except StampError as exc:  # a row one path cannot render, the other must not either
        return (type(exc).__name__, str(exc))


def _same(name: str, raw: bool, i: int, row: dict[str, str]) -> None:
    fast, slow = _pair(name, raw)
    key = f"k{i}"
    a = _outcome(fast, key, row)
    b = _outcome(slow, key, row)
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert a == b, row
        return
    # Message equality: every field, including the raw bytes and the decoded html/text
    assert a == b, row
    if raw:
        assert a.raw == b.raw and a.raw, row
    else:
        assert not a.raw and not b.raw
        # the JSON literals the HTTP adapters send, byte for byte what orjson makes of them
        assert (a.html_json or orjson.dumps(a.html)) == orjson.dumps(b.html), row
        assert (a.text_json or orjson.dumps(a.text)) == orjson.dumps(b.text), row


def _check_rows(name: str, raw: bool, n: int, seed: int) -> None:
    for i, row in enumerate(corpus.load(name).rows(n, seed)):
        _same(name, raw, i, row)


def test_corpus_has_the_six_forms() -> None:
    assert set(NAMES) >= {
        "articles_table", "segmented", "macros_include", "markdown", "mjml_export", "digest",
    }  # fmt: skip


@pytest.mark.parametrize("raw", [True, False], ids=["mime", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_generated_rows(name: str, raw: bool) -> None:
    _check_rows(name, raw, ROWS, seed=7)


@pytest.mark.parametrize("raw", [True, False], ids=["mime", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_hypothesis_rows(name: str, raw: bool) -> None:
    template = corpus.load(name).rows(1, 3)[0]
    columns = [c for c in template if c != "email"]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(seed=st.integers(0, 10_000), cells=st.dictionaries(st.sampled_from(columns), CELL))
    def check(seed: int, cells: dict[str, str]) -> None:
        rng = random.Random(seed)
        row = corpus.load(name).rows(1, seed)[0]
        row.update(cells)
        _same(name, raw, rng.randrange(1_000_000), row)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("raw", [True, False], ids=["mime", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_thousands_of_rows(name: str, raw: bool) -> None:
    _check_rows(name, raw, 3_000, seed=11)
