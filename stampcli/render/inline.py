"""CSS inlining with css-inline: ``<style>`` rules into ``style=""`` attributes.

``@media`` rules are kept in a ``<style>`` block (``keep_at_rules``) because
clients that support them need them there. Stylesheets linked with
``<link rel="stylesheet" href="...">`` are read from the template's folder
(never from the network and never from outside the folders the templates
live in) and put in place of the link before inlining, so the cascade order
is the one the author wrote.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from pathlib import Path

import css_inline

from stampcli.errors import TemplateError

_LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")


def _attrs(tag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _ATTR.finditer(tag):
        value = m.group(2) if m.group(2) is not None else m.group(3) or m.group(4) or ""
        out[m.group(1).lower()] = html_lib.unescape(value)
    return out


class Inliner:
    """Inlines CSS for one campaign; linked local stylesheets are read once and cached."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self._folders = [f.resolve() for f in folders]
        self._css: dict[str, str] = {}
        self._inliner = css_inline.CSSInliner(
            keep_at_rules=True,
            load_remote_stylesheets=False,  # a render must never touch the network
            keep_style_tags=False,
            keep_link_tags=False,
        )
        self.remote_stylesheets: set[str] = set()

    def stylesheet(self, href: str) -> str | None:
        """The text of a local stylesheet ``href`` names, or None for a remote one."""
        if href in self._css:
            return self._css[href]
        if re.match(r"^([a-z][a-z0-9+.-]*:|//)", href, re.IGNORECASE):
            self.remote_stylesheets.add(href)
            return None
        relative = href.split("?", 1)[0].split("#", 1)[0].lstrip("/")
        for folder in self._folders:
            path = (folder / relative).resolve()
            if not path.is_relative_to(folder):
                raise TemplateError(
                    f"the stylesheet {href!r} lies outside the template folder {folder}"
                )
            if path.is_file():
                try:
                    text = path.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError) as exc:
                    raise TemplateError(f"cannot read the stylesheet {path}: {exc}") from None
                self._css[href] = text
                return text
        raise TemplateError(
            f"the stylesheet {href!r} linked from the template was not found in "
            + ", ".join(str(f) for f in self._folders)
        )

    def local_stylesheets(self, html: str) -> list[Path]:
        """Paths of the local stylesheets ``html`` links (for the content hash)."""
        found = []
        for m in _LINK_TAG.finditer(html):
            attrs = _attrs(m.group(0))
            if "stylesheet" in attrs.get("rel", "").lower() and attrs.get("href"):
                href = attrs["href"]
                if self.stylesheet(href) is None:
                    continue
                relative = href.split("?", 1)[0].split("#", 1)[0].lstrip("/")
                for folder in self._folders:
                    if (folder / relative).is_file():
                        found.append(folder / relative)
                        break
        return found

    def _expand_links(self, html: str) -> str:
        def repl(m: re.Match[str]) -> str:
            attrs = _attrs(m.group(0))
            if "stylesheet" not in attrs.get("rel", "").lower() or not attrs.get("href"):
                return m.group(0)
            css = self.stylesheet(attrs["href"])
            if css is None:
                return m.group(0)
            media = attrs.get("media")
            if media and media.strip().lower() not in ("all", "screen"):
                css = f"@media {media} {{\n{css}\n}}"
            return f"<style>\n{css}\n</style>"

        return _LINK_TAG.sub(repl, html)

    def inline(self, html: str) -> str:
        """``html`` with its CSS inlined."""
        if "<link" in html or "<LINK" in html:
            html = self._expand_links(html)
        try:
            out: str = self._inliner.inline(html)
        except (css_inline.InlineError, ValueError) as exc:
            raise TemplateError(f"CSS inlining failed: {exc}") from None
        return out
