"""Composed Markdown conversion (stampcli/render/mdchunks.py) equals markdown-it's.

Over the benchmark corpus's rendered letters, over hypothesis-built Markdown
(headings, paragraphs with emphasis across lines, tight and loose lists with
nested blocks, fences open and closed, HTML blocks of every kind, tables, block
quotes, indented code, reference links) with one memo shared across examples,
and over one example per neutrality condition: each fails when its condition is
taken out of the module.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from render_helpers import ENV

from benchmarks import corpus
from stampcli.config import load_campaign
from stampcli.render import markdown, mdchunks
from stampcli.render.renderer import Renderer


def check(source: str) -> None:
    # twice: the second conversion comes from the memo
    expected = mdchunks.whole(source)
    assert mdchunks.to_html(source) == expected
    assert mdchunks.to_html(source) == expected


# ------------------------------------------------------------------ the corpus


@functools.cache
def corpus_markdown() -> list[str]:
    t = corpus.load("markdown")
    camp = load_campaign(t.campaign_file, env=ENV)
    renderer = Renderer(camp, env=ENV, fast=False, clock=lambda: 1_700_000_000.0)
    sources: list[str] = []
    to_html = markdown.to_html

    def recording(source: str) -> str:
        sources.append(source)
        return to_html(source)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(markdown, "to_html", recording)
        for i, row in enumerate(t.rows(60, 3)):
            fields = {k: v for k, v in row.items() if k != "email"}
            renderer.render(f"k{i}", row["email"], fields)
    return sources


def test_the_corpus_letters_convert_as_whole_documents() -> None:
    sources = corpus_markdown()
    assert len(sources) == 60
    for source in sources:
        check(source)
    # the letter is cut: its blocks come from the memo
    assert len(mdchunks._SPLIT.split(sources[0])) > 5


def test_the_renderer_converts_through_the_memo() -> None:
    mdchunks._convert.cache_clear()
    corpus_markdown.cache_clear()
    corpus_markdown()
    assert mdchunks._convert.cache_info().hits > 0


# ------------------------------------------------------------------ one example per condition


@pytest.mark.parametrize(
    "source",
    [
        # a reference defined after its use: definitions act across blocks
        "see [the shelf][s]\n\n[s]: https://x.example\n",
        # \r is a line break to markdown-it: "\r  b" is an indented continuation
        "- a\n\n\r  b\n",
        # an indented line after an empty one continues the list item
        "- a\n\n  b\n",
        # another item after an empty line makes the list loose
        "- a\n\n- b\n",
        "+ a\n\n+ b\n",
        "* a\n\n* b\n",
        "1. a\n\n2. b\n",
        # a tab-indented line continues indented code
        "    code\n\n\tmore\n",
        # a fence runs past empty lines until it closes
        "```\na\n\nb\n```\n\nc\n",
        "~~~~\na\n\n~~~\n\nb\n~~~~\n",
        # HTML blocks of kinds 1-5 run until their end marker
        "<!-- a\n\nb -->\n\nc\n",
        "<pre>\na\n\n*b*\n</pre>\n",
        "<?php\n\nx ?>\n",
        "<!DOCTYPE\n\nhtml>\n",
        "<![CDATA[\n\n]]>\n",
        # a fence left open in a list item takes the empty lines before the list ends
        "- ```\n  a\n\n\nb\n",
        # an empty line only: a line after a paragraph line is its continuation
        "a\nb\n\nc\n*d*\n",
    ],
)
def test_each_condition_holds_its_example(source: str) -> None:
    mdchunks._convert.cache_clear()
    check(source)


# ------------------------------------------------------------------ generated Markdown

_WORD = st.sampled_from(
    [
        *("a", "b", "shelf", "*em", "em*", "**st", "st**", "_u", "u_", "~~s", "s~~", "`c", "c`"),
        *("[x]", "[x][y]", "[x](/u)", "<b>", "</b>", "<https://x.example>", "&amp;", "\\*", "|"),
    ]
)
_INLINE = st.lists(_WORD, min_size=1, max_size=5).map(" ".join)
_LINES = st.lists(_INLINE, min_size=1, max_size=3).map("\n".join)
_INDENT = st.sampled_from(["", " ", "  ", "   ", "    ", "\t"])


def _fence(draw: st.DrawFn) -> str:
    mark = draw(st.sampled_from(["```", "~~~", "````"]))
    body = draw(st.lists(st.sampled_from(["x", "", "- y", "```", "~~~", "  ```"]), max_size=4))
    close = draw(st.sampled_from([mark, mark + "`", "", "```", "~~~"]))
    info = draw(st.sampled_from(["", "py", "`x`"]))
    opening = draw(st.sampled_from(["", " ", "   ", "    "])) + mark + info
    return "\n".join([opening, *body, close] if close else [opening, *body])


_FENCE = st.composite(_fence)()


_HTML = st.sampled_from(
    [
        "<!-- note",
        "<!-- note -->",
        "-->",
        "<pre>",
        "</pre>",
        "<script>x</script>",
        "<style>",
        "</style>",
        "<textarea>",
        "<?x",
        "?>",
        "<!X",
        ">",
        "<![CDATA[",
        "]]>",
        "<div>",
        "</div>",
        "<table><tr><td>",
        "<span class='x'>",
        "</span>",
        "<custom-tag>",
    ]
)


@st.composite
def _block(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 13))
    if kind == 0:
        return "#" * draw(st.integers(1, 3)) + " " + draw(_INLINE)
    if kind == 1:
        return draw(_LINES)
    if kind == 2:  # a list, its items split by empty lines or not, with nested blocks
        marker = draw(st.sampled_from(["-", "+", "*", "1.", "2)"]))
        items = []
        for _ in range(draw(st.integers(1, 3))):
            item = f"{marker} {draw(_INLINE)}"
            for _ in range(draw(st.integers(0, 2))):
                sep = draw(st.sampled_from(["\n", "\n\n"]))
                inner = draw(st.one_of(_LINES, _FENCE, _HTML, st.just("> q")))
                indent = draw(st.sampled_from(["  ", "   ", "    ", "", " "]))
                item += sep + "\n".join(indent + line for line in inner.split("\n"))
            items.append(item)
        return draw(st.sampled_from(["\n", "\n\n"])).join(items)
    if kind == 3:
        return draw(_FENCE)
    if kind == 4:
        return "\n".join(draw(st.lists(_HTML, min_size=1, max_size=3)))
    if kind == 5:
        rows = draw(st.lists(_INLINE.map(lambda c: f"| {c} | b |"), max_size=3))
        return "\n".join(["| h | i |", "|---|:-:|", *rows])
    if kind == 6:
        lines = draw(_LINES).split("\n")
        return "\n".join(draw(st.sampled_from(["> ", ">", ""])) + line for line in lines)
    if kind == 7:
        return "    " + draw(_INLINE) + "\n\n" + draw(_INDENT) + draw(_INLINE)
    if kind == 8:
        return f"[{draw(st.sampled_from(['x', 'y']))}]: /ref"
    if kind == 9:
        return draw(st.sampled_from(["---", "***", "___", "===", "- - -"]))
    if kind == 10:
        return draw(_INLINE) + "\n" + draw(st.sampled_from(["===", "---"]))
    if kind == 11:
        return draw(_INDENT) + draw(_INLINE)
    if kind == 12:
        return draw(st.sampled_from(["\r", "\r  ", "\0", "\u00a0", "\x0c"])) + draw(_INLINE)
    return draw(st.sampled_from(["<!-- a -->", "<div>\n\n*x*\n\n</div>"]))


_SEP = st.sampled_from(["\n", "\n\n", "\n\n\n", "\n \n", "\n\t\n\n"])


@st.composite
def _document(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(_block(), min_size=1, max_size=8))
    source = blocks[0]
    for block in blocks[1:]:
        source += draw(_SEP) + block
    return source + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document())
def test_generated_markdown_converts_as_a_whole_document(source: str) -> None:
    check(source)


@settings(max_examples=300, deadline=None)
@given(st.lists(_block(), min_size=2, max_size=6), st.data())
def test_shared_blocks_convert_alike_in_any_order(blocks: list[str], data: st.DataObject) -> None:
    # the memo holds blocks seen in other documents: reordering reuses them elsewhere
    for _ in range(3):
        order = data.draw(st.permutations(blocks))
        check("\n\n".join(order) + "\n")


def test_a_long_run_left_open_is_converted_in_one_go() -> None:
    mdchunks._convert.cache_clear()
    paragraphs = "".join(f"\n\nline {i} of the letter" for i in range(3000))
    source = f"intro\n\n```{paragraphs}\n\nend\n"
    check(source)
    # the open fence's run is joined up to _MAX_RUN pieces, then converted whole (the 8 KB
    # cap alone would hold some 340 ever longer runs of this document)
    assert mdchunks._convert.cache_info().currsize < 64
