"""Markdown to HTML composed from memoised conversions of a document's top-level blocks.

A campaign's Markdown body differs between recipients in a few lines (a
greeting, a branch, the footer's address); the rest repeats. markdown-it costs
about 1 ms a letter, so the document is cut into top-level blocks, each block
is converted once and remembered by its source (a bounded LRU), and the
outputs are joined. :func:`to_html` returns exactly what markdown-it returns
for the whole document (tests/test_mdchunks.py checks that over hypothesis-built
Markdown and the benchmark corpus).

Where a cut is neutral. markdown-it's block parser reads a document top-down
with no look-back, and its inline parser works on one block's text at a time;
what crosses blocks is (a) link reference definitions, collected from the whole
document before any inline is parsed, and (b) block state still open at the
cut. So:

- A document holding ``]:`` (every reference definition does: the label's ``]``
  is followed at once by ``:``) or ``\\r`` (markdown-it first turns it into a
  line break, which would move the lines the cut is decided on) is converted
  whole.
- A cut is made only before a line that starts at column 0 with neither blank,
  space, tab nor a list marker's first character (``-``, ``+``, ``*``, a digit),
  right after an empty line. At such a line every list and block quote has
  ended (a list continues after a blank line only with an indented line or
  another item; a quote does not continue after one), so do paragraphs,
  tables, indented code and HTML blocks of kinds 6 and 7. What can still be
  open is a top-level fenced code block or HTML block of kinds 1-5 (``<pre>``,
  ``<!--``, ...), which run until their closing line; such a block is then the
  last token of the piece, so a piece ending in a ``fence`` or ``html_block``
  token is joined with the next one (the memo learns that too).
- A piece keeps its trailing empty lines: a fence left open in a list item
  takes the empty lines before the line that ends the list.

The renderer has no state across top-level blocks (it looks one token ahead
within a block, and one back only for a tight list's hidden paragraphs, which
never end a top-level block), so the outputs join by plain concatenation.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from stampcli.render.markdown import _parser

# before a line that starts a new top-level block for sure (see the docstring)
_SPLIT = re.compile(r"(?<=\n\n)(?=[^ \t\n\-+*0-9])")
_OPEN_TOKENS = frozenset({"fence", "html_block"})  # may run past the end of a piece
_MEMO_ENTRIES = 4096
_MAX_PIECE = 8192  # characters; a longer piece (or run of joined pieces) is not memoised
# pieces in a run joined because a block stayed open; past that the rest is converted
# whole (each join converts the run again: a fence left open would cost quadratic time)
_MAX_RUN = 16


def whole(source: str) -> str:
    """markdown-it on the whole document: the reference :func:`to_html` equals."""
    html: str = _parser().render(source)
    return html


def to_html(source: str) -> str:
    """HTML for a Markdown document, equal to :func:`whole`."""
    if "]:" in source or "\r" in source:
        return whole(source)
    pieces = _SPLIT.split(source)
    if len(pieces) == 1:
        return whole(source)
    out: list[str] = []
    start = 0  # where the pending run of pieces starts in the source
    end = 0
    run = 0  # pieces in that run
    for piece in pieces:
        end += len(piece)
        run += 1
        if end - start > _MAX_PIECE or run > _MAX_RUN:
            out.append(whole(source[start:]))
            return "".join(out)
        html, needs_next = _convert(source[start:end])
        if needs_next:
            continue
        out.append(html)
        start = end
        run = 0
    if start < end:  # a block still open at the end closes there, as in the whole document
        out.append(_convert(source[start:end])[0])
    return "".join(out)


@functools.lru_cache(maxsize=_MEMO_ENTRIES)
def _convert(piece: str) -> tuple[str, bool]:
    """The piece's HTML, and whether a block may still be open at its end."""
    md = _parser()
    env: dict[str, Any] = {}
    tokens = md.parse(piece, env)
    html: str = md.renderer.render(tokens, md.options, env)
    return html, bool(tokens) and tokens[-1].type in _OPEN_TOKENS
