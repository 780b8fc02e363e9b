"""The plain-text part, generated from the final HTML with html2text.

html2text runs without wrapping (``body_width=0``) and the result is then
tidied and wrapped here. Keeping the two steps apart is what lets the renderer
convert a template's HTML once and substitute each recipient's values into the
unwrapped text: wrapping depends on the length of the values, so it must come
after the substitution.

The output reads as plain text, not Markdown: links as ``text (url)``, images
by their alt text, no emphasis marks, ``#`` heading prefixes or code
backticks, no backslash escapes (html2text writes ``1\\. Shared`` so that a
Markdown reader does not see a list; a person reading the text would see the
backslash), a rule as a line of dashes, at most one blank line in a row, lines
wrapped at 78 characters (URLs are never broken).
"""

from __future__ import annotations

import re
from typing import Any

import html2text

from stampcli.render.textchunks import Composer

WIDTH = 78

# a link's label may hold one level of brackets: "[Read [more]](url)"
_LINK = re.compile(r"(?<!\\)\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(([^()\s]+)\)")
# html2text's Markdown escapes: a backslash before one of these (a literal backslash
# before one of them is doubled, so undoing them left to right is exact)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
RULE = "-" * 30
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_HEADING = re.compile(r"^(#{1,6}) ", re.MULTILINE)
_TRAILING_WS = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)
_BLANKS = re.compile(r"\n{3,}")
_LIST_PREFIX = re.compile(r"^(\s*(?:[*+-]|\d+\.|>)\s+|\s+)")


class _PlainHTML2Text(html2text.HTML2Text):
    """html2text without the Markdown that is not text: code backticks, ``* * *`` rules."""

    def handle_tag(self, tag: str, attrs: Any, start: bool) -> None:
        if tag in ("kbd", "code", "tt") and not self.pre:
            return  # html2text would write `...` around it
        if tag == "hr":
            if start:
                self.p()
                self.o(RULE)
                self.p()
            return
        super().handle_tag(tag, attrs, start)


def _converter() -> html2text.HTML2Text:
    h = _PlainHTML2Text(bodywidth=0)
    h.ignore_emphasis = True  # "**bold**" is markup, not text
    h.images_to_alt = True  # an image becomes its alt text
    h.ignore_tables = True  # table-based layouts are layout, not data tables
    h.unicode_snob = True  # keep ’ and é instead of ASCII look-alikes
    h.single_line_break = False
    h.skip_internal_links = True
    h.inline_links = True
    h.use_automatic_links = True
    h.ul_item_mark = "*"
    return h


# html2text's output for a document, composed from its lines' conversions, which are
# memoised across messages (see stampcli.render.textchunks): exactly _converter().handle
_COMPOSER = Composer(_converter)


def convert(html: str) -> str:
    """html2text's unwrapped output, made plain and tidy: the stage cached per template.

    Tidying (no trailing blanks, at most one empty line in a row, one final
    newline) gives the same result before or after a recipient's values are put
    in, as long as a value neither starts nor ends with a blank and holds no
    line break, which is what the fast path requires of values anyway.
    """
    text = _COMPOSER.handle(html)
    tidy = _TIDY
    lines = []
    for line in text.split("\n"):
        done = tidy.get(line)
        if done is None:
            done = _tidy_line(line)
            if len(tidy) >= 20_000:
                tidy.clear()
            tidy[line] = done
        lines.append(done)
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"


# Every step of _tidy_line reads one line only (no pattern crosses a line break, and
# ^ and $ are line anchors), so tidying line by line is tidying the whole text; most
# lines are the same in every message, so each is tidied once.
_TIDY: dict[str, str] = {}


def _tidy_line(line: str) -> str:
    """One line of html2text's output made plain (links, escapes, headings, blanks)."""
    line = _LINK.sub(_link, line)
    # a <pre> block (indented by four) is written unescaped, so it is left as it is
    if not line.startswith("    "):
        line = _ESCAPE.sub(r"\1", line)
    line = _AUTOLINK.sub(r"\1", line)
    line = _HEADING.sub("", line)
    return _TRAILING_WS.sub("", line)


def _link(m: re.Match[str]) -> str:
    label, url = m.group(1).strip(), m.group(2)
    if url.startswith("mailto:") and label == url[len("mailto:") :]:
        return label
    if not label or label == url:
        return url
    return f"{label} ({url})"


def finish(text: str, width: int = WIDTH, cache: dict[str, str] | None = None) -> str:
    """Wrap lines longer than ``width``: the per-message stage, after :func:`convert`.

    ``cache`` maps a long line to its wrapped form; most lines are the same in
    every message of a campaign, so each is wrapped once.
    """
    lines = text.rstrip("\n").split("\n")
    for i, line in enumerate(lines):
        if len(line) > width and not line.startswith("    "):
            wrapped = cache.get(line) if cache is not None else None
            if wrapped is None:
                wrapped = "\n".join(wrap_line(line, width))
                if cache is not None:
                    if len(cache) >= 20_000:
                        cache.clear()
                    cache[line] = wrapped
            lines[i] = wrapped
    return "\n".join(lines) + "\n"


def finish_line(line: str, width: int = WIDTH) -> str:
    """One line as :func:`finish` leaves it (wrapped when longer than ``width``)."""
    if len(line) > width and not line.startswith("    "):
        return "\n".join(wrap_line(line, width))
    return line


def wrap_line(line: str, width: int = WIDTH) -> list[str]:
    """Wrap one line at spaces; list items and quotes keep a hanging indent; long words stay."""
    m = _LIST_PREFIX.match(line)
    prefix = m.group(0) if m else ""
    hang = "> " if prefix.lstrip().startswith(">") else " " * len(prefix)
    if len(hang) > width // 2:
        hang = ""
    out: list[str] = []
    current: list[str] = [prefix]
    size = len(prefix)
    has_word = False
    for word in line[len(prefix) :].split(" "):
        if not word:
            continue
        if has_word and size + 1 + len(word) > width:
            out.append(" ".join(current))
            current = [hang + word]
            size = len(hang) + len(word)
        else:
            if has_word:
                current.append(word)
                size += 1 + len(word)
            else:
                current[-1] += word
                size += len(word)
        has_word = True
    out.append(" ".join(current))
    return out


def html_to_text(html: str) -> str:
    """The plain-text part for ``html`` (the straightforward, per-message path)."""
    return finish(convert(html))
