"""The composed html2text conversion is exactly the whole-document one.

``stampcli.render.textchunks.Composer`` converts a document from memoised
conversions of its lines; ``textpart.convert`` also tidies line by line from a
memo. Both must give what the plain way gives: one ``HTML2Text.handle`` of the
whole document and the tidying regexes run over the whole text (the reference
below is that code as it was). Checked over the benchmark corpus's rendered
HTML and over documents hypothesis builds from the constructs html2text keeps
state for (links, lists, ``<pre>``, quotes, ``<style>``, comments, entities,
tables, emphasis, ``<abbr>``, line breaks and indents before tags), one memo
shared across all of them, so a wrong memo entry from one document would show
in another.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from render_helpers import ENV

from benchmarks import corpus
from stampcli.config import load_campaign
from stampcli.render import markdown, textchunks, textpart
from stampcli.render.renderer import REFUSALS, Renderer


def reference_convert(html: str) -> str:
    """textpart.convert as it was: html2text on the whole document, tidied as a whole."""
    text = textpart._converter().handle(html)
    text = textpart._LINK.sub(textpart._link, text)
    text = "\n".join(
        line if line.startswith("    ") else textpart._ESCAPE.sub(r"\1", line)
        for line in text.split("\n")
    )
    text = textpart._AUTOLINK.sub(r"\1", text)
    text = textpart._HEADING.sub("", text)
    text = textpart._TRAILING_WS.sub("", text)
    return textpart._BLANKS.sub("\n\n", text).strip("\n") + "\n"


SHARED = textchunks.Composer(textpart._converter)


def check(html: str) -> None:
    want = textpart._converter().handle(html)
    assert SHARED.handle(html) == want
    assert SHARED.handle(html) == want  # every piece from the memo now
    assert textchunks.Composer(textpart._converter).handle(html) == want
    assert textpart.convert(html) == reference_convert(html)


def test_the_composition_is_on_for_the_installed_html2text() -> None:
    # off, every document would silently take the slow whole-document way
    assert SHARED.enabled


def test_a_conversion_sets_no_attribute_the_module_does_not_know() -> None:
    # an attribute html2text sets only while converting would be state the memo misses
    h = textpart._converter()
    h.handle(
        "<!DOCTYPE html><html><head><style>p{}</style></head><body><h1>T</h1>"
        "<p><a href='https://x.example' title='t'>l</a> <abbr title='A'>a</abbr></p>"
        "<ul><li>i<ol><li>j</li></ol></li></ul><pre>p</pre><blockquote>q</blockquote>"
        "<table><tr><td>c</td></tr></table><q>x</q><s>y</s><code>z</code><img src='i' alt='a'>"
        "<br><hr><dl><dt>d</dt><dd>e</dd></dl><![CDATA[x]]><?pi?><!-- c --></body></html>"
    )
    assert set(vars(h)) <= textchunks._KNOWN


def test_an_attribute_it_does_not_know_turns_the_composition_off() -> None:
    def newer() -> Any:
        h = textpart._converter()
        h.some_new_state = 0  # what a later html2text might track
        return h

    composer = textchunks.Composer(newer)
    assert not composer.enabled
    html = "<p>one</p>\n<p>two</p>\n"
    assert composer.handle(html) == textpart._converter().handle(html)


# ------------------------------------------------------------------ the corpus


@functools.cache
def corpus_html(name: str) -> list[str]:
    t = corpus.load(name)
    camp = load_campaign(t.campaign_file, env=ENV)
    renderer = Renderer(camp, env=ENV, fast=False, clock=lambda: 1_700_000_000.0)
    out = []
    for i, row in enumerate(t.rows(40, 3)):
        email = row.get("email") or f"r{i}@example.com"
        fields = {k: v for k, v in row.items() if k != "email"}
        out.append(renderer.render(f"k{i}", email, fields).html or "")
    return out


@pytest.mark.parametrize("name", corpus.names())
def test_the_corpus_converts_as_whole_documents(name: str) -> None:
    for html in corpus_html(name):
        check(html)


# ------------------------------------------------------------------ generated HTML

_TEXT = st.text(
    st.characters(
        codec="utf-8",
        categories=("L", "N", "P", "S", "Zs"),
        include_characters="\t\n&<>\"'*_`#-+.()[]!\\;:/~\u00a0",
    ),
    max_size=12,
)
_WORD = st.sampled_from(
    ["Hi", "1. one", "- two", "a  b", "x_y", "[z]", "~", "~~", "&amp;", "&nbsp;", "&#39;",
     "&bogus;", "& x", "&", "https://x.example", "#", "*", "`c`", "\\", " "]
)  # fmt: skip
_URL = st.sampled_from(["https://x.example/a", "#top", "mailto:a@b.example", "", "x y"])
_LEAF = st.one_of(
    _TEXT,
    _WORD,
    st.sampled_from(
        ["<br>", "<br/>", "<hr>", "<img src='i.png' alt='Logo'>", "<img src='i.png'>",
         "<!-- <p> c -->", "<!--", "<style>p { x: 1 } <p></style>", "<script>a<b</script>",
         "<wbr>", "<meta charset='utf-8'>", "</p>", "</div>", "</a>", "</li>", "<",
         "<td", "\n<", "\n  <"]
    ),
    _URL.map(lambda u: f"<a href='{u}'>{u}</a>"),
)  # fmt: skip
_BLOCKS = ["p", "div", "h1", "h2", "blockquote", "pre", "ul", "ol", "li", "table", "tr", "td",
           "th", "tbody", "center", "dl", "dt", "dd"]  # fmt: skip
_INLINES = ["a", "span", "b", "strong", "em", "i", "u", "s", "del", "code", "kbd", "q",
            "abbr", "sup", "title", "head", "body"]  # fmt: skip


def _element(children: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    def make(tag: str, attrs: str, sep: str, inner: list[str], close: bool) -> str:
        body = sep.join(inner)
        return f"{sep}<{tag}{attrs}>{body}{f'</{tag}>' if close else ''}"

    return st.builds(
        make,
        st.sampled_from(_BLOCKS + _INLINES),
        st.one_of(
            st.just(""),
            _URL.map(lambda u: f" href='{u}'"),
            st.just(" title='T'"),
            st.just(' class="x" style="color: red"'),
        ),
        st.sampled_from(["", "\n", "\n  ", "\n\n"]),
        children,
        st.booleans(),
    )


_NODE = st.recursive(_LEAF, lambda inner: _element(st.lists(inner, max_size=4)), max_leaves=25)
DOCUMENT = st.lists(_NODE, max_size=8).map("\n".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENT)
def test_generated_html_converts_as_a_whole_document(html: str) -> None:
    check(html)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_NODE, min_size=1, max_size=6), st.lists(_NODE, min_size=1, max_size=6))
def test_shared_pieces_in_other_surroundings(head: list[str], tail: list[str]) -> None:
    # the same lines after different beginnings: entries learnt in one state must
    # not be used in another
    body = "\n<p>shared</p>\n<div>line</div>\n"
    for html in ("\n".join(head) + body, body + "\n".join(tail), "\n".join(tail) + body):
        check(html)


def test_lines_of_a_table_layout_are_memoised() -> None:
    composer = textchunks.Composer(textpart._converter)
    rows = "".join(f"\n<tr><td class='n'>{i}</td>\n  <td><p>Item</p></td></tr>" for i in range(3))
    html = f"<table>{rows}\n</table>\n<p>Bye {{}}</p>\n"
    composer.handle(html.replace("{}", "Ann"))
    size = len(composer._memo)
    assert composer.handle(html.replace("{}", "Bob")) == textpart._converter().handle(
        html.replace("{}", "Bob")
    )
    # only the line with the other name (and the end) were new
    assert len(composer._memo) - size <= 2


# ------------------------------------------------------------------ Markdown once a message


def test_a_refused_markdown_campaign_converts_markdown_once_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = corpus.load("markdown")
    camp = load_campaign(t.campaign_file, env=ENV)
    fast = Renderer(camp, env=ENV, clock=lambda: 1_700_000_000.0)
    slow = Renderer(camp, env=ENV, fast=False, clock=lambda: 1_700_000_000.0)
    calls = [0]
    to_html = markdown.to_html

    def counting(source: str) -> str:
        calls[0] += 1
        return to_html(source)

    monkeypatch.setattr(markdown, "to_html", counting)
    rows = t.rows(REFUSALS + 80, 5)
    conversions = []
    for i, row in enumerate(rows):
        fields = {k: v for k, v in row.items() if k != "email"}
        before = calls[0]
        got = fast.render(f"k{i}", row["email"], fields)
        conversions.append(calls[0] - before)
        assert got == slow.render(f"k{i}", row["email"], fields)
    assert fast.stats.fast == 0  # Markdown turns the values' &#39; into ', which is_plain refuses
    # after REFUSALS refusals, most messages skip the marked render and its conversion
    late = conversions[REFUSALS + 16 :]
    assert late.count(1) >= len(late) - 8


def test_a_long_stretch_with_a_link_left_open_is_converted_in_one_go() -> None:
    # an unclosed <a> (or a very long list) keeps the state from being neutral to the
    # end: the pieces are joined only up to MAX_RUN, not one growing key per line
    composer = textchunks.Composer(textpart._converter)
    lines = "".join(f"\n<p>line {i} of the letter</p>" for i in range(3000))
    html = f"<p><a href='https://x.example'>open{lines}\n<p>end</p>\n"
    assert composer.handle(html) == textpart._converter().handle(html)
    assert composer.handle(html) == textpart._converter().handle(html)
    held = sum(len(k[1]) for k in composer._memo)
    assert held < textchunks.MAX_RUN * textchunks.MAX_RUN_PIECES
