"""Markdown to HTML for ``.md`` templates (markdown-it-py, CommonMark plus tables).

The Markdown template is rendered by Jinja first, with HTML escaping on, so a
subscriber's data cannot inject markup; raw HTML written by the template's
author passes through (``html=True``). The result is then placed into the
layout as ``{{ content }}``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

MARKDOWN_SUFFIXES = (".md", ".markdown", ".md.j2", ".md.jinja")


@functools.cache
def _parser() -> MarkdownIt:
    # imported when a Markdown template is used: ~50 ms less start-up for every
    # stamp process and render worker of an HTML campaign
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


def is_markdown(path: Path) -> bool:
    return path.name.lower().endswith(MARKDOWN_SUFFIXES)


def to_html(source: str) -> str:
    """HTML for a Markdown document: markdown-it's, composed from memoised blocks."""
    from stampcli.render import mdchunks  # imports this module

    return mdchunks.to_html(source)
