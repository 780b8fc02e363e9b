"""html2text on a document, composed from memoised conversions of its blocks.

html2text is a streaming parser: its output for a piece of HTML depends only on
the piece and on the converter's state when the piece starts (pending line
breaks, whether the last output ended a line, the open links, lists, ``<pre>``,
quotes, ...). So a document is cut before the tags that start a line, and each
piece is converted once per state it starts in: the memo maps (state, piece
HTML) to (its output, the state after it). A block that repeats across
recipients (a branch's paragraph, a digest item, the footer) then costs a
dictionary lookup; only the pieces holding a recipient's own values are
converted, and they are small.

The contract: :func:`handle` returns exactly ``converter().handle(html)``.
It holds because a state is recorded only where it is *neutral*: the HTML
parser has consumed everything fed (no half-read tag, comment or entity, not
inside ``<style>``/``<script>``), and html2text has nothing open that a later
piece could read back (no open link, list, ``<pre>``, quote, abbreviation, no
pending link reference, the last output not a link's ``[``). What is left of
html2text's state at such a point is a handful of scalars (the pending
paragraph break ``p_p``, ``start``, ``space``, ``lastWasNL``, ``br_toggle``
...), and that tuple is the state's identity. A piece after which the state is
not neutral is marked "needs the next piece too", and the pieces are joined
until it is (the memo learns that as well). Pieces are fed to one converter
in turn, which is what feeding it the whole document does: every piece starts
with ``<``, so no run of text is ever split.

If a converter has an attribute this module does not know (another html2text
version), or options under which the left-out state is read (emphasis marks,
reference links, Google Docs mode, wrapping), :func:`handle` converts the whole
document the ordinary way. tests/test_textchunks.py checks the equality over
the benchmark corpus and hypothesis-built HTML.
"""

from __future__ import annotations

import html.entities
import html.parser
import re
import threading
from collections.abc import Callable
from typing import Any

import html2text

# a line break and the indent before a tag: a document is cut just before that "<".
# A cut before any "<" is sound (see the docstring); cutting at line starts keeps
# the pieces to a template's own lines, and str-level splitting is cheap (a regex
# that looks ahead for block tag names costs four times as much on a 80 KB digest).
_CUT = re.compile(r"(\n[ \t]*)<")
_NBSP_HOLDER = "&nbsp_place_holder;"  # what html2text writes for &nbsp; until finish()

# Every attribute of a converter, by the part it plays. A name html2text has and
# this list has not turns the composition off (see _ENABLED).
# - options: set before the conversion, never changed by it
_OPTIONS = frozenset(
    {
        "absolute_url_matcher",
        "backquote_code_style",
        "baseurl",
        "body_width",
        "bypass_tables",
        "close_quote",
        "convert_charrefs",
        "default_image_alt",
        "emphasis_mark",
        "escape_snob",
        "google_doc",
        "google_list_indent",
        "hide_strikethrough",
        "ignore_emphasis",
        "ignore_images",
        "ignore_links",
        "ignore_mailto_links",
        "ignore_tables",
        "images_as_html",
        "images_to_alt",
        "images_with_size",
        "include_sup_sub",
        "inline_links",
        "links_each_paragraph",
        "mark_code",
        "open_quote",
        "out",
        "pad_tables",
        "protect_links",
        "single_line_break",
        "skip_internal_links",
        "strong_mark",
        "tag_callback",
        "ul_item_mark",
        "unicode_snob",
        "use_automatic_links",
        "wrap_links",
        "wrap_list_items",
        "wrap_tables",
    }
)
# - state that must be empty (or off) where a document is cut
_CLOSED = frozenset(
    {
        "rawdata",
        "cdata_elem",
        "interesting",
        "astack",
        "a",
        "list",
        "blockquote",
        "pre",
        "startpre",
        "code",
        "quote",
        "abbr_data",
        "abbr_title",
        "abbr_list",
        "maybe_automatic_link",
        "tag_stack",
    }
)
# - the scalar state carried from one piece to the next: the state's identity
_CARRIED = (
    "quiet", "p_p", "start", "space", "empty_link", "acount", "pre_indent",
    "list_code_indent", "br_toggle", "lastWasNL", "lastWasList", "style", "emphasis",
    "drop_white_space", "inheader", "stressed", "preceding_stressed", "current_tag",
    "lasttag", "split_next_td", "td_count", "table_start",
)  # fmt: skip
# - read back only in ways that do not matter here, or reduced to what is read:
#   outtextlist (the output; its last item is checked), outcount (numbers reference
#   links, which inline_links never makes), lineno/offset (positions for errors),
#   style_def (read only for google_doc), preceding_data (only whether it ends in
#   "~" is read, for <s>/<del>; emphasis marks are off); and two the parser sets while
#   it reads one tag or declaration (get_starttag_text, which html2text never calls)
_OTHER = frozenset(
    {
        "outtextlist",
        "outcount",
        "lineno",
        "offset",
        "style_def",
        "preceding_data",
        "_HTMLParser__starttag_text",
        "_decl_otherchars",
    }
)
_KNOWN = _OPTIONS | _CLOSED | frozenset(_CARRIED) | _OTHER

_State = tuple[Any, ...]


class _More:
    """The memo's mark for a piece after which the state is not neutral."""


_MORE = _More()
_END = "\x00end"  # the memo's key for finishing the document (no HTML piece holds NUL)
MAX_ENTRIES = 50_000
MAX_CHARS = 24 << 20  # of HTML and text held; the memo starts over beyond either
# pieces joined while the state is not neutral, at most (each join is a memo key, so a
# run of k pieces holds about k * its length / 2 characters of keys)
MAX_RUN = 8_192  # characters
MAX_RUN_PIECES = 64


class Composer:
    """Converts documents with one converter factory, memoising pieces across calls."""

    def __init__(self, factory: Callable[[], html2text.HTML2Text]) -> None:
        self._factory = factory
        self._memo: dict[tuple[int, str], tuple[str, int] | _More] = {}
        self._chars = 0
        self._states: dict[_State, int] = {}
        self._by_id: list[_State] = []
        self._lock = threading.Lock()
        fresh = factory()
        # what the neutral state leaves out is read only under these options
        self.enabled = set(vars(fresh)) <= _KNOWN and (
            fresh.ignore_emphasis
            and fresh.inline_links
            and not fresh.google_doc
            and not fresh.body_width
            and not fresh.pad_tables
        )
        self._initial = self._state_id(fresh) if self.enabled else -1
        self._nbsp = html.entities.html5["nbsp;"] if fresh.unicode_snob else " "

    # ---------------------------------------------------------------- state

    def _state_id(self, h: html2text.HTML2Text) -> int:
        """The id of ``h``'s state, or -1 where it is not neutral."""
        if (
            h.rawdata
            or h.cdata_elem is not None
            or h.interesting is not html.parser.interesting_normal  # type: ignore[attr-defined]
            or h.astack
            or h.a
            or h.list
            or h.blockquote
            or h.pre
            or h.startpre
            or h.code
            or h.quote
            or h.abbr_data is not None
            or h.abbr_title is not None
            or h.abbr_list
            or h.maybe_automatic_link is not None
            or h.tag_stack
            or (h.outtextlist and h.outtextlist[-1] == "[")
        ):
            return -1
        d = vars(h)
        key = (*[d[name] for name in _CARRIED], h.preceding_data[-1:] == "~")
        sid = self._states.get(key)
        if sid is None:
            with self._lock:  # an id must name one state, whichever thread made it
                sid = self._states.get(key)
                if sid is None:
                    self._by_id.append(key)
                    sid = self._states[key] = len(self._by_id) - 1
        return sid

    def _converter_in(self, sid: int) -> html2text.HTML2Text:
        """A fresh converter put in the neutral state ``sid``."""
        h = self._factory()
        key = self._by_id[sid]
        d = vars(h)
        for name, value in zip(_CARRIED, key, strict=False):
            d[name] = value
        h.preceding_data = "~" if key[-1] else ""
        return h

    def _remember(self, key: tuple[int, str], value: tuple[str, int] | _More) -> None:
        if len(self._memo) >= MAX_ENTRIES or self._chars >= MAX_CHARS:
            self._memo.clear()
            self._chars = 0
        self._memo[key] = value
        self._chars += len(key[1]) + (len(value[0]) if isinstance(value, tuple) else 0)

    # ---------------------------------------------------------------- conversion

    def handle(self, document: str) -> str:
        """``factory().handle(document)``, from the memo where the pieces were seen."""
        if not self.enabled:
            return self._factory().handle(document)
        pieces = _pieces(document)
        memo = self._memo
        out: list[str] = []
        sid = self._initial
        live: html2text.HTML2Text | None = None  # a converter in state sid, if any
        i, n = 0, len(pieces)
        while i < n:
            html = pieces[i]
            j = i + 1
            hit = memo.get((sid, html))
            while hit is _MORE and j < n:
                html += pieces[j]
                j += 1
                hit = memo.get((sid, html))
            if isinstance(hit, tuple):
                out.append(hit[0])
                sid = hit[1]
                live = None
                i = j
                continue
            # not seen from this state: convert it (and the pieces it needs)
            if live is None:
                live = self._converter_in(sid)
            live.outtextlist = []
            live.feed(html)
            after = self._state_id(live)
            while after < 0 and j < n:
                if len(html) > MAX_RUN or j - i >= MAX_RUN_PIECES:
                    # a long stretch with something open (an unclosed link, a long list):
                    # the rest goes in one feed, unmemoised, as in a whole-document run
                    live.feed("".join(pieces[j:]))
                    j = n
                    break
                self._remember((sid, html), _MORE)
                live.feed(pieces[j])
                html += pieces[j]
                j += 1
                after = self._state_id(live)
            text = "".join(live.outtextlist)
            out.append(text)
            if after < 0:  # the document ends with something open: finish it here
                live.outtextlist = []
                out.append(_finish(live))
                return self._joined(out)
            self._remember((sid, html), (text, after))
            sid = after
            i = j
        end = memo.get((sid, _END))
        if isinstance(end, tuple):
            out.append(end[0])
        else:
            if live is None:
                live = self._converter_in(sid)
            live.outtextlist = []
            tail = _finish(live)
            self._remember((sid, _END), (tail, sid))
            out.append(tail)
        return self._joined(out)

    def _joined(self, out: list[str]) -> str:
        # html2text replaces its &nbsp; placeholder in the whole output (HTML2Text.finish)
        return "".join(out).replace(_NBSP_HOLDER, self._nbsp)


def _pieces(document: str) -> list[str]:
    """``document`` cut before each ``<`` that starts a line (after its indent)."""
    parts = _CUT.split(document)
    if len(parts) == 1:
        return parts
    pieces = []
    prev = parts[0]
    it = iter(parts)
    next(it)
    for indent, rest in zip(it, it, strict=True):
        pieces.append(prev + indent)
        prev = "<" + rest
    pieces.append(prev)
    return pieces


def _finish(h: html2text.HTML2Text) -> str:
    """What ``HTML2Text.handle`` outputs after the document: the final ``feed("")``,
    ``close()`` and the end mark (body_width is 0 and pad_tables off here, so no
    ``optwrap`` or table padding), before the &nbsp; placeholder is replaced."""
    h.feed("")
    h.close()
    h.pbr()
    h.o("", force="end")
    return "".join(h.outtextlist)
