"""Per-template caching of CSS inlining and the text part.

Just over 500 lines: the cache, its verification and its layout parser share
the marker format.

Most of a newsletter is the same for every recipient; only the ``{{ }}``
outputs differ. The body template is also compiled with a ``finalize`` hook
that wraps every output value in private-use marker characters, so one render
yields the *skeleton* (the static HTML between outputs) and the values. The
render is taken as the pieces Jinja yields (``Template.generate``): the static
pieces are the compiled template's own string constants, the same objects in
every render, so a skeleton is looked up by those pieces without reading its
text; only a piece holding both (a macro's output, Markdown content) is split.
A template of only text and ``{{ name }}`` outputs is not run through Jinja at
all: its layout and values come from :mod:`stampcli.render.plain_templates`. The
expensive steps (css-inline, html2text) then run once per distinct skeleton,
on a copy where each distinct value is replaced by an alphanumeric sentinel;
each recipient's values are substituted into the cached results.

Substitution gives the same bytes as the straightforward pipeline only when a
value is text that neither css-inline nor html2text transforms in the place it
stands. Where that is, is read once per skeleton from its inlined HTML and its
text (:func:`slot_kinds`):

- *prose*: running text (not inside a tag, a comment or an element whose text
  css-inline or html2text treat apart, such as ``<style>`` or ``<pre>``, nor on
  a line html2text indents by four, and in a text without brackets). There a
  value may be nearly any text without markup (:func:`is_prose`): html2text's
  Markdown escapes of running text are all undone by ``textpart.convert``, so
  parentheses, quotes, prices and list-like starts come out as they went in.
- anywhere else (an attribute, a ``<pre>``, a Markdown template's values,
  which pass through Markdown first): word characters and everyday
  punctuation, not starting like a list item (:func:`is_plain`).

A message with any other value takes the straightforward path. The first
messages of every skeleton are also rendered both ways and compared; a
skeleton that ever differs is never used again. Beyond the first few layouts
an entry is built only when a layout comes a second time, and only while the
entries built pay for themselves: a layout only one recipient has
(per-recipient branches and loops) would cost its build and verification on
top of the straightforward render.

For providers that take JSON, the HTML also comes as a JSON string literal built
the same way: the static parts escaped once per skeleton, the values as they
are (a plain value holds nothing JSON escapes; a prose value at most a quote,
then it is escaped). JSON escapes every character on
its own, so escaped pieces join to the escaped whole.
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AnyStr

import orjson
from markupsafe import Markup

from stampcli.sandbox import Budget, overflow

if TYPE_CHECKING:
    from stampcli.render.tracking import DynamicLink, Tracker

MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
_INNER = slice(1, -1)
# A value both css-inline and html2text pass through unchanged once unescaped
# (word characters, single spaces, everyday punctuation; `&` and `'` only as the
# entities Jinja's autoescape writes), not starting like a list item.
# Runs, not chars, and possessive (``++``): a value that does not match (say one with a
# parenthesis after a few long words) must fail at once; with a backtracking ``+`` inside
# the outer ``+`` every way of splitting each run was tried first, twice the time for each
# character more (a 100-character sentence hung the render).
_PLAIN = re.compile(r"(?:[\w.,’@:/?=%~$€£!;#+-]++|&amp;|&#39;| (?! ))+")
_LIST_START = re.compile(r"^(?:\d+[.)]|[-+*])")
# A value in running text (see the module docstring): no markup, no entities but the
# escapes Jinja writes, no brackets (textpart reads "[a](b)" as a link), backslashes or
# backticks (escapes), no "~" (html2text reads it beside a <s>), no control, private-use
# (the markers) or surrogate characters, no white space but single spaces (html2text
# collapses runs). Possessive runs as in _PLAIN.
_PROSE = re.compile(
    r"(?:[^\s<>\[\]\\`~&\x00-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufffe\uffff]++"
    r"|&(?:amp|#34|#39);| (?! ))+"
)
# starts html2text or textpart read with what is before them: "#" a heading mark,
# ".!?(){}" after a struck-through word (html2text puts no space before them)
_PROSE_START = frozenset("#(){}.!?")
_ABSOLUTE_URL = re.compile(r"^[a-zA-Z+]+://")  # html2text may write it as an autolink
# where a value stands, as flags (a value in several places has each of them): running
# text, anywhere else, in a tag with a link address (textpart finds a link's address
# only without white space), and where css-inline writes text as it is, entities
# included (a comment, <style>, <script>)
PROSE, PLAIN, URL, RAW = 1, 2, 4, 8
# a heading mark at the start: textpart takes "# " at a line's start away
_HEADING_START = re.compile(r"#{1,6}(?: |$)")
# elements whose text css-inline writes raw (entities as they are)
_RAW_TAGS = frozenset(
    ("style", "script", "xmp", "noscript", "iframe", "noembed", "noframes", "plaintext")
)
# elements whose text html2text keeps apart (or drops), and the raw ones
_APART_TAGS = _RAW_TAGS | frozenset(
    ("pre", "title", "textarea", "listing", "code", "kbd", "tt", "svg", "math")
)
# markup of css-inline's output (well-formed HTML5): a comment, a tag with its attributes
_MARKUP = re.compile(r"<!--.*?(?:-->|\Z)|<[^>]*>?", re.DOTALL)
_TAG_NAME = re.compile(r"</?([a-zA-Z][^\s/>]*)")

VERIFY_SAMPLES = 2  # messages per skeleton rendered both ways and compared
MAX_SKELETONS = 256  # beyond this many layouts the cache would only cost memory
SEEN_LAYOUTS = 4096  # layouts seen once, kept to build an entry when one comes again
FIRST_SIGHT = 8  # entries built at a layout's first sighting, before the rule above
# An entry costs about three straightforward renders (css-inline and html2text of the
# skeleton, then the verification): after this many builds, new entries are built only
# while the built ones have served BUILD_PAYBACK messages each on average
BUILD_TRIAL = 32
BUILD_PAYBACK = 3
PLAIN_VERDICTS = 20_000  # value verdicts kept (most values repeat: names, countries)


def counting_mark() -> tuple[Callable[[Any], Any], list[int]]:
    """A :func:`mark` that also counts the values it wraps, and its counter.

    A render whose parsed values number exactly the wraps has no marker
    character of its own, so its plain HTML is the marked one without markers
    (what the renderer uses instead of rendering the template a second time).
    """
    count = [0]
    markup_open, markup_close = Markup(MARK_OPEN), Markup(MARK_CLOSE)

    def mark(value: Any) -> Any:
        """Jinja ``finalize`` hook: wrap one output value in markers."""
        if hasattr(value, "__html__"):
            markup = Markup(value)
            if MARK_OPEN in markup:
                # already-marked content (Markdown rendered into the layout): keep its slots
                return markup
            if "<" in markup:
                # markup with no outputs in it (a macro's or a caller's, |safe HTML): part of
                # the skeleton, converted with it, not a value to substitute
                return markup
            count[0] += 1
            return markup_open + markup + markup_close
        count[0] += 1
        return f"{MARK_OPEN}{value}{MARK_CLOSE}"

    return mark, count


mark, _ = counting_mark()


def unmarked(parsed: tuple[Layout, list[str]]) -> str:
    """The text of a parsed render without its markers: the layout with the values put in."""
    layout, values = parsed
    it = iter(values)
    return "".join([next(it) if piece is None else piece for piece in layout])


def is_plain(value: str) -> bool:
    """True if substituting ``value`` gives what css-inline and html2text would give."""
    return (
        bool(_PLAIN.fullmatch(value))
        # html2text collapses whitespace with the neighbouring static text
        and value[0] != " "
        and value[-1] != " "
        and not _LIST_START.match(value)
        and not _HEADING_START.match(value)
        # after a struck-through word html2text puts a space before a value but these
        and value[0] not in ".!?"
    )


def is_prose(value: str) -> bool:
    """True if substituting ``value`` in running text (a PROSE slot) gives what css-inline
    and html2text (with textpart's clean-up) would give."""
    return (
        bool(_PROSE.fullmatch(value))
        and value[0] != " "
        and value[-1] != " "
        and value[0] not in _PROSE_START
        and not _ABSOLUTE_URL.match(value)
    )


def slot_kinds(html: str, text: str, pattern: re.Pattern[str], lookup: dict[str, int]) -> list[int]:
    """Where each sentinel of a skeleton stands (flags: PROSE, PLAIN, URL, RAW), read from the
    inlined ``html`` and the ``text`` made of it: one forward scan of each."""
    kinds = [0] * len(lookup)
    for s in pattern.findall(html):
        kinds[lookup[s]] |= PROSE
    if "[" in text or "]" in text:
        # brackets of the template's own: textpart may read "[a](b)" around any value
        # as a link, and does only when b has no white space and no parenthesis
        kinds = [k and PLAIN | URL for k in kinds]
    apart = raw = 0  # depth of open elements whose text is not running text, raw text
    pos = 0
    for m in _MARKUP.finditer(html):
        if apart:
            flag = PLAIN | RAW if raw else PLAIN
            for s in pattern.findall(html, pos, m.start()):
                kinds[lookup[s]] |= flag
        # a value inside a tag or a comment
        tag = m.group(0)
        if tag.startswith("<!--"):
            flag = PLAIN | RAW
        else:
            flag = PLAIN | URL if "href" in tag.lower() else PLAIN
        for s in pattern.findall(tag):
            kinds[lookup[s]] |= flag
        pos = m.end()
        name = _TAG_NAME.match(tag)
        if name is not None and (lower := name.group(1).lower()) in _APART_TAGS:
            step = -1 if tag.startswith("</") else 0 if tag.endswith("/>") else 1
            apart = max(apart + step, 0)
            if lower in _RAW_TAGS:
                raw = max(raw + step, 0)
    if apart:
        for s in pattern.findall(html, pos):
            kinds[lookup[s]] |= PLAIN | RAW if raw else PLAIN
    line_start = searched = 0
    for m in pattern.finditer(text):
        # a line html2text indents by four keeps its escapes (textpart takes it for code)
        newline = text.rfind("\n", searched, m.start())
        if newline >= 0:
            line_start = newline + 1
        searched = m.end()
        if text.startswith("    ", line_start):
            kinds[lookup[m.group(0)]] |= PLAIN
    # a PLAIN value may also go into running text; a sentinel found nowhere (css-inline
    # dropped it) is PLAIN, as every slot was before prose slots
    return [k & ~PROSE if k & PLAIN else k or PLAIN for k in kinds]


# The pieces of a render: a static piece, or None where a value went.
Layout = tuple[str | None, ...]


def split_marked(text: str) -> tuple[list[str], list[str]] | None:
    """The static parts around the marked values of ``text``, and the values.

    None when the markers do not pair up (a marker character in the template's
    own text or in a value): such a render takes the straightforward path.
    """
    pieces = text.split(MARK_OPEN)
    if text.count(MARK_CLOSE) != len(pieces) - 1:
        return None
    statics = [pieces[0]]
    values: list[str] = []
    for piece in pieces[1:]:
        value, found, static = piece.partition(MARK_CLOSE)
        if not found:
            return None
        values.append(value)
        statics.append(static)
    return statics, values


def parse_pieces(
    pieces: Iterable[str], budget: Budget | None = None
) -> tuple[Layout, list[str]] | None:
    """The layout and the values of a render given as Jinja yields it (None: see split_marked).

    Values come out as plain ``str`` (Jinja yields them as Markup, whose slicing
    and most methods run Python code). With ``budget``, a render longer than its
    limit is stopped as it streams (``LimitExceeded``, raised inside the template).
    """
    layout: list[str | None] = []
    values: list[str] = []
    limit = budget.limit if budget is not None else sys.maxsize
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > limit:
            assert budget is not None
            overflow(pieces, budget.too_long())
        if MARK_OPEN not in piece:
            if MARK_CLOSE in piece:
                return None
            # a macro's markup comes as Markup, whose methods run Python code
            layout.append(piece if type(piece) is str else str.__str__(piece))
        elif (
            piece.startswith(MARK_OPEN)  # not piece[0]: Markup's [] runs Python code
            and piece.endswith(MARK_CLOSE)
            and piece.count(MARK_OPEN) == 1
            and piece.count(MARK_CLOSE) == 1
        ):
            layout.append(None)
            values.append(str.__getitem__(piece, _INNER))
        else:
            split = split_marked(str(piece))
            if split is None:
                return None
            statics, inner = split
            for static in statics[:-1]:
                layout.append(static)
                layout.append(None)
            layout.append(statics[-1])
            values.extend(inner)
    return tuple(layout), values


def _statics(layout: Layout) -> list[str]:
    """The static text between values: adjacent static pieces joined."""
    statics: list[str] = []
    run: list[str] = []
    for piece in layout:
        if piece is None:
            statics.append("".join(run))
            run = []
        else:
            run.append(piece)
    statics.append("".join(run))
    return statics


# A line of a cached result: the same text for every recipient, or (parts, slots).
_Line = str | tuple[list[str], list[int]]
# A run of encoded static lines, or one line with slots to encode per message.
_Segment = bytes | tuple[list[str], list[int]]


def _lines(parts: list[str], slots: list[int]) -> tuple[list[_Line], _Line]:
    """The lines of ``_join(parts, slots, values)`` for values without line breaks.

    Returns the lines before the final newline and the text after it.
    """
    lines: list[_Line] = []
    cur_slots: list[int] = []
    first = parts[0].split("\n")
    cur_parts = [first[-1]]
    lines.extend(first[:-1])
    for slot, part in zip(slots, parts[1:], strict=True):
        cur_slots.append(slot)
        pieces = part.split("\n")
        cur_parts.append(pieces[0])
        if len(pieces) > 1:
            lines.append((cur_parts, cur_slots))
            lines.extend(pieces[1:-1])
            cur_parts = [pieces[-1]]
            cur_slots = []
    return lines, (cur_parts, cur_slots) if cur_slots else cur_parts[0]


def _segments(lines: list[_Line], encode: Callable[[str], bytes]) -> list[_Segment]:
    """Static lines encoded (``encode`` of the line with its newline), runs merged."""
    out: list[_Segment] = []
    for line in lines:
        if isinstance(line, str):
            enc = encode(line + "\n")
            if out and isinstance(out[-1], bytes):
                out[-1] += enc
            else:
                out.append(enc)
        else:
            out.append(line)
    return out


class JsonString:
    """A cached text as a JSON string literal (quotes included), static parts escaped once.

    ``encode`` takes each distinct value already escaped.
    """

    def __init__(self, parts: list[str], slots: list[int]) -> None:
        escaped = [orjson.dumps(p)[1:-1] for p in parts]  # TypeError: a lone surrogate
        escaped[0] = b'"' + escaped[0]
        escaped[-1] += b'"'
        self._parts = escaped
        self._slots = slots

    def encode(self, values: list[bytes]) -> bytes:
        return _join(self._parts, self._slots, values)


class _Slotted:
    """A line holding values, with what was made of it for the values it had last time.

    Most lines keep their values from one message to the next (a campaign's own
    variables, such as article links, are values too), so the encoding or wrapping
    of such a line is reused instead of done again.
    """

    __slots__ = ("key", "parts", "result", "slots")

    def __init__(self, parts: list[str], slots: list[int]) -> None:
        self.parts = parts
        self.slots = slots
        self.key: object = None
        self.result: Any = None


class HtmlQP:
    """The quoted-printable form of a cached HTML, static lines encoded once.

    Quoted-printable encodes every line on its own (see :class:`mime.QPCache`), so
    only the lines holding a recipient's values are encoded per message.
    """

    def __init__(self, parts: list[str], slots: list[int], qp: Callable[[str], bytes]) -> None:
        self._qp = qp
        # line ends normalised as mime.qp_encode does; values hold no CR or LF
        parts = [p.replace("\r\n", "\n").replace("\r", "\n") for p in parts]
        lines, last = _lines(parts, slots)
        self._segments = [
            seg if isinstance(seg, bytes) else _Slotted(*seg) for seg in _segments(lines, qp)
        ]
        self._last = last

    def encode(self, values: list[str]) -> bytes:
        qp = self._qp
        out = []
        for seg in self._segments:
            if isinstance(seg, bytes):
                out.append(seg)
                continue
            # a line's values compared with its last ones in place: a call per line costs more
            slots = seg.slots
            key = values[slots[0]] if len(slots) == 1 else tuple([values[i] for i in slots])
            if key != seg.key:
                seg.key, seg.result = key, qp(_join(seg.parts, slots, values) + "\n")
            out.append(seg.result)
        last = self._last
        text = last if isinstance(last, str) else _join(last[0], last[1], values)
        if text:
            out.append(qp(text))
        return b"".join(out)


def fits_7bit_line(line: str) -> bool:
    """One line of a text part that can go as 7bit (the per-line form of ``mime._fits_7bit``)."""
    return (
        line.isascii()
        and not line.endswith((" ", "\t"))
        and "\x00" not in line
        and "=_" not in line
        and "\r" not in line
        and len(line) <= 998
    )


class Text7bit:
    """The finished (wrapped) text part of a cached text, and whether it can go as 7bit.

    ``finish`` wraps one line; lines without values are wrapped and checked once.
    """

    def __init__(self, parts: list[str], slots: list[int], finish: Callable[[str], str]) -> None:
        self._finish = finish
        # textpart.finish drops the newlines at the end; values hold none
        lines, last = _lines([*parts[:-1], parts[-1].rstrip("\n")], slots)
        self.ok = True
        self._segments: list[str | _Slotted] = []
        for line in [*lines, last]:
            if not isinstance(line, str):
                self._segments.append(_Slotted(*line))
                continue
            done = finish(line)
            if not all(map(fits_7bit_line, done.split("\n"))):
                self.ok = False
            if self._segments and isinstance(self._segments[-1], str):
                self._segments[-1] += done + "\n"
            else:
                self._segments.append(done + "\n")

    def render(self, values: list[str], *, check: bool = True) -> tuple[str, bool]:
        """``textpart.finish`` of the text with ``values``, and whether it fits 7bit.

        ``check`` False: not worth knowing (no MIME is made); the answer is then False.
        """
        texts: list[str] = []
        seven = self.ok and check
        finish = self._finish
        for seg in self._segments:
            if isinstance(seg, str):
                texts.append(seg)
                continue
            slots = seg.slots
            key = values[slots[0]] if len(slots) == 1 else tuple([values[i] for i in slots])
            if key != seg.key:
                done = finish(_join(seg.parts, slots, values))
                seg.key = key
                seg.result = (done + "\n", all(map(fits_7bit_line, done.split("\n"))))
            known = seg.result
            texts.append(known[0])
            if not known[1]:
                seven = False
        return "".join(texts), seven


@dataclass
class _Entry:
    html_parts: list[str]
    html_slots: list[int]
    text_parts: list[str]
    text_slots: list[int]
    verified: int = 0
    ok: bool = True
    html_qp: HtmlQP | None = None
    text_7bit: Text7bit | None = None
    html_json: JsonString | None = None
    json_ok: bool = True  # False: the static parts hold what JSON cannot (a lone surrogate)
    # own tracking: the links whose href holds values (virtual values 1.. after the token)
    links: list[DynamicLink] | None = None
    kinds: list[int] = field(default_factory=list)  # where each distinct value stands


def _split(
    text: str, sentinels: dict[str, int], pattern: re.Pattern[str]
) -> tuple[list[str], list[int]]:
    parts: list[str] = []
    slots: list[int] = []
    pos = 0
    for m in pattern.finditer(text):
        parts.append(text[pos : m.start()])
        slots.append(sentinels[m.group(0)])
        pos = m.end()
    parts.append(text[pos:])
    return parts, slots


def _join(parts: Sequence[AnyStr], slots: list[int], values: Sequence[AnyStr]) -> AnyStr:
    if len(slots) == 1:  # most lines of a text hold one value
        return parts[0] + values[slots[0]] + parts[1]
    out = [parts[0]]
    for i, slot in enumerate(slots):
        out.append(values[slot])
        out.append(parts[i + 1])
    return parts[0][:0].join(out)


@dataclass
class Stats:
    fast: int = 0
    slow: int = 0
    verified: int = 0
    mismatches: int = 0


@dataclass
class BodyCache:
    """Turns a marked HTML render into (final HTML, unwrapped text) using cached work.

    ``inline`` is the CSS inliner; ``slow`` computes (html, text) the straightforward way
    from the unmarked HTML and is what every fallback and verification uses.
    """

    inline: Callable[[str], str]
    convert_text: Callable[[str], str] | None  # None: the campaign has a text template
    # own open/click tracking (stampcli.render.tracking): links rewritten once per skeleton
    tracker: Tracker | None = None
    stats: Stats = field(default_factory=Stats)
    # keyed by the render's layout: its static pieces are the compiled template's own
    # constants, whose hashes Python keeps, so a lookup does not read the skeleton's text
    _entries: dict[tuple[Layout, tuple[int, ...], str], _Entry] = field(default_factory=dict)
    # False: values go only where is_plain allows (a Markdown template's values passed
    # through Markdown, which reads more of them than html2text does)
    prose: bool = True
    _verdicts: dict[str, int] = field(default_factory=dict)  # the places a value may go
    # layouts seen once: an entry is built on the second sighting (see the module docstring)
    _seen: set[tuple[Layout, tuple[int, ...], str]] = field(default_factory=set)
    _builds: int = 0  # entries built
    _hits: int = 0  # messages an entry served
    _nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    _digits: str = field(default_factory=lambda: str(100000 + secrets.randbelow(900000)))

    def _sentinel(self, n: int, digits: bool) -> str:
        # A number stands in for a number: html2text escapes "1." at the start of a line,
        # so the sentinel must look the same to it as the value does.
        return f"9{self._digits}{n:05d}" if digits else f"Zq{self._nonce}x{n}xQz"

    def _build(self, statics: list[str], slot_ids: list[int], shapes: str) -> _Entry:
        sentinels = [self._sentinel(n, shape == "d") for n, shape in enumerate(shapes)]
        skeleton = _join(statics, slot_ids, sentinels)
        html = self.inline(skeleton)
        # the text part comes from the HTML before any tracking rewrite (its links stay
        # the real addresses, see stampcli.render.tracking)
        text = self.convert_text(html) if self.convert_text is not None else ""
        lookup = {s: i for i, s in enumerate(sentinels)}
        values = re.compile(f"Zq{self._nonce}x[0-9]+xQz|9{self._digits}[0-9]{{5}}")
        kinds = slot_kinds(html, text, values, lookup)
        if not self.prose:
            kinds = [(k & ~PROSE) | PLAIN for k in kinds]
        pattern = values
        links = None
        if self.tracker is not None:
            # the links are rewritten here, once for the skeleton; the message token and
            # each link whose href holds values are virtual values after the real ones
            def virtual(k: int) -> str:
                sentinel = f"Zq{self._nonce}y{k}yQz"
                lookup[sentinel] = len(sentinels) + k
                return sentinel

            plan = self.tracker.plan(html, values, lookup.__getitem__, virtual)
            html, links = plan.html, plan.links
            pattern = re.compile(f"Zq{self._nonce}[xy][0-9]+[xy]Qz|9{self._digits}[0-9]{{5}}")
        html_parts, html_slots = _split(html, lookup, pattern)
        text_parts, text_slots = _split(text, lookup, values)
        return _Entry(html_parts, html_slots, text_parts, text_slots, links=links, kinds=kinds)

    def body_encoded(
        self,
        parsed: tuple[Layout, list[str]] | None,
        slow: Callable[[], tuple[str, str]],
        qp: Callable[[str], bytes] | None,
        finish_line: Callable[[str], str] | None,
        json: bool = False,
        track: tuple[str, str | None] | None = None,
    ) -> tuple[str | None, str | None, bytes | None, tuple[str, bool] | None, bytes | None]:
        """(HTML with CSS inlined, text before wrapping) for one recipient from the layout
        and values of the marked render (:func:`parse_pieces`; None: the slow path), plus
        per-skeleton work where this message has an entry (else None): the HTML as
        quoted-printable (``qp`` of the whole HTML; None: not wanted), the finished text
        with whether it fits 7bit (``finish_line`` wraps one line; None: not wanted), and
        with ``json`` the HTML as a JSON string literal. The HTML is None when its JSON
        literal stands for it, and the text when the finished text does. ``track``: the
        message's tracking token and unsubscribe address, with a ``tracker``.
        """
        found = self._entry(parsed)
        if found is None:
            return *self._slow(slow), None, None, None
        entry, distinct = found
        # most values hold no entity: the test spares a call each (~40 a message)
        unescape = html_lib.unescape
        plain = [unescape(v) if "&" in v else v for v in distinct]
        html_values = [p.replace("&", "&amp;") if "&" in p else p for p in plain]
        if entry.links is not None and self.tracker is not None and track is not None:
            more_html, more_plain = self.tracker.virtual_values(
                entry.links, html_values, track[0], track[1]
            )
            html_values += more_html
            plain += more_plain
        html: str | None = None
        text: str | None = None
        if entry.verified < VERIFY_SAMPLES:
            html = _join(entry.html_parts, entry.html_slots, html_values)
            text = _join(entry.text_parts, entry.text_slots, plain)
            expected = slow()
            entry.verified += 1
            self.stats.verified += 1
            if expected != (html, text):
                entry.ok = False
                self.stats.mismatches += 1
                self.stats.slow += 1
                return *expected, None, None, None
        self.stats.fast += 1
        html_qp = None
        if qp is not None:
            if entry.html_qp is None:
                entry.html_qp = HtmlQP(entry.html_parts, entry.html_slots, qp)
            html_qp = entry.html_qp.encode(html_values)
        finished = None
        if finish_line is not None:
            if entry.text_7bit is None:
                entry.text_7bit = Text7bit(entry.text_parts, entry.text_slots, finish_line)
            # whether the text fits 7bit matters only to MIME, as the HTML's QP does
            finished = entry.text_7bit.render(plain, check=qp is not None)
        elif text is None:
            text = _join(entry.text_parts, entry.text_slots, plain)
        html_json = None
        if json and entry.json_ok and entry.html_json is None:
            try:
                entry.html_json = JsonString(entry.html_parts, entry.html_slots)
            except TypeError:
                entry.json_ok = False
        if json and entry.html_json is not None:
            # plain values (is_plain) hold no quote, backslash or control character; prose
            # ones (is_prose) no backslash or control character, but maybe a quote
            html_json = entry.html_json.encode(
                [orjson.dumps(v)[1:-1] if '"' in v else v.encode() for v in html_values]
            )
            html = None
        elif html is None:
            html = _join(entry.html_parts, entry.html_slots, html_values)
        return html, text, html_qp, finished, html_json

    def _entry(self, parsed: tuple[Layout, list[str]] | None) -> tuple[_Entry, list[str]] | None:
        """The skeleton's entry and this render's distinct values; None: the slow path."""
        if parsed is None:
            return None
        layout, values = parsed
        distinct: dict[str, int] = {}
        slot_ids = [distinct.setdefault(v, len(distinct)) for v in values]
        verdicts = self._verdicts
        found: list[int] = []
        for v in distinct:
            verdict = verdicts.get(v)
            if verdict is None:
                verdict = self._verdict(v)
                if len(verdicts) >= PLAIN_VERDICTS:
                    verdicts.clear()
                verdicts[v] = verdict
            if not verdict:
                return None
            found.append(verdict)
        shapes = "".join("d" if v.isdigit() and v.isascii() else "w" for v in distinct)
        key = (layout, tuple(slot_ids), shapes)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_SKELETONS or (
                self._builds >= BUILD_TRIAL and self._hits < BUILD_PAYBACK * self._builds
            ):
                return None
            if len(self._entries) >= FIRST_SIGHT and key not in self._seen:
                if len(self._seen) >= SEEN_LAYOUTS:
                    self._seen.clear()
                self._seen.add(key)
                return None
            self._seen.discard(key)
            entry = self._build(_statics(layout), slot_ids, shapes)
            self._entries[key] = entry
            self._builds += 1
        if not entry.ok:
            return None
        for kind, verdict in zip(entry.kinds, found, strict=True):
            if kind & ~verdict:
                return None
        self._hits += 1
        return entry, list(distinct)

    def _verdict(self, value: str) -> int:
        """The places (PROSE, PLAIN, URL, RAW flags) ``value`` may be substituted in; 0: none."""
        if is_plain(value):
            return PROSE | PLAIN | (0 if " " in value else URL) | (0 if "&" in value else RAW)
        return PROSE if self.prose and is_prose(value) else 0

    def _slow(self, slow: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        self.stats.slow += 1
        return slow()
