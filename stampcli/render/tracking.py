"""Own open and click tracking: links rewritten to ``BASE/c/TOKEN``, an open pixel added.

The rewrite works on the finished HTML (after CSS inlining), so links made by
loops, macros, includes, Markdown and campaign variables are all found. It runs
once per template layout: :mod:`stampcli.render.skeleton_cache` hands its
skeleton (the HTML with a sentinel for each recipient value) to :meth:`Tracker.plan`,
which rewrites every link there. A link whose address is the same for every
recipient becomes ``BASE/c/LINK.`` + the message token (one value a message); a
link whose address holds a recipient's value (``?e={{ email }}``) is decided per
message from its address, with the decision and the link's signed part cached per
address. A message that takes the straightforward path (a value the cache cannot
substitute) is rewritten with :meth:`Tracker.rewrite` by the same rules: the
cache's verification compares the two.

No HTML parser runs per message: links are ``<a ... href="...">`` and
``<area ... href="...">`` of the HTML as css-inline serialises it (attributes
in double quotes). Left alone: anything but ``http(s)://`` (``mailto:``,
``tel:``, ``#anchors``, relative links), the message's unsubscribe address and
any address with ``unsubscribe`` in it or under the static start of
``unsubscribe.url``, addresses matching ``tracking.skip``, and an ``href``
holding a line break or backslash. The open pixel goes before the last
``</body>`` (at the end where there is none).

The plain-text part is not rewritten: it is generated from the HTML before the
rewrite (and a ``text_template`` is sent as written), so its links show their
real addresses. A reader of plain text sees where a link goes, a long tracking
address there reads like phishing, and keeping it out keeps the text part's
per-template cache whole (a tracked address in it would make every line holding a
link be wrapped again for each message). Clicks from text-only clients are not
counted.
"""

from __future__ import annotations

import fnmatch
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass

from stampcli.compliance.tracking_tokens import TrackingSigner
from stampcli.config import TrackingConfig

# an <a> or <area> start tag's href, as css-inline writes it (double quotes), with the
# blank before it and the one after it, if any
_HREF = re.compile(r'(<(?:a|area)\b[^>]*?)\s(href=")([^"]*)"(\s?)', re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"unsubscribe", re.IGNORECASE)
LINK_CACHE = 50_000  # addresses whose decision is kept (personal links repeat per recipient)
PIXEL = (
    '<img src="{src}" width="1" height="1" alt="" border="0" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;">'
)


@dataclass(frozen=True, slots=True)
class DynamicLink:
    """A link whose address holds values: its href as (static parts, value slots)."""

    parts: list[str]
    slots: list[int]


@dataclass(frozen=True, slots=True)
class Plan:
    """A skeleton's HTML with its links rewritten: the token at virtual value 0, each
    dynamic link at virtual value 1, 2, ... (in ``links`` order)."""

    html: str
    links: list[DynamicLink]


def _tracked(m: re.Match[str], href: str) -> str:
    """The tag with ``href`` in place of its own, on a line of its own.

    Quoted-printable encodes each line that holds a recipient's value again for every
    message; the token is one, so its line is kept short: the blanks around the
    attribute (inside the tag, where a line break is a blank too) become line breaks.
    Links left alone get the same layout, so that both paths agree whatever a link's
    address turns out to be for a recipient.
    """
    after = "\n" if m.group(4) else ""
    return f'{m.group(1)}\n{m.group(2)}{href}"{after}'


class Tracker:
    """One campaign's tracking rules and signer; build once, use for every message."""

    def __init__(
        self, config: TrackingConfig, signer: TrackingSigner, unsubscribe_url: str | None
    ) -> None:
        assert config.base_url is not None  # the config checks own: true has one
        self.opens = config.own_opens
        self.clicks = config.own_clicks
        self.signer = signer
        self._click = f"{config.base_url}/c/"
        self._open = f"{config.base_url}/o/"
        self._skip = [re.compile(fnmatch.translate(p)) for p in config.skip]
        # the static start of unsubscribe.url ("https://acme.example/unsub?t="): links
        # under it are unsubscribe links whatever their token
        static = (unsubscribe_url or "").split("{", 1)[0].strip()
        self._unsub_prefix = static if "://" in static and static.count("/") >= 3 else None
        self._decided: dict[str, str | None] = {}

    def token(self, key: str, issued: float) -> str:
        """The message token of recipient ``key`` (one HMAC a message)."""
        return self.signer.message(key, issued)

    def prefix(self, url: str) -> str | None:
        """``BASE/c/LINK.`` for a link to ``url`` (its message token goes after), or None
        when the link is left alone. Cached per address."""
        done = self._decided.get(url, "")
        if done != "":
            return done
        out = None if self._left_alone(url) else f"{self._click}{self.signer.link(url)}."
        if len(self._decided) >= LINK_CACHE:
            self._decided.clear()
        self._decided[url] = out
        return out

    def _left_alone(self, url: str) -> bool:
        if not url.lower().startswith(("https://", "http://")):
            return True
        if "\n" in url or "\r" in url or "\\" in url:
            return True
        if _UNSUBSCRIBE.search(url):
            return True
        if self._unsub_prefix is not None and url.startswith(self._unsub_prefix):
            return True
        return any(p.match(url) for p in self._skip)

    def _href(self, href: str, token: str, unsubscribe: str | None) -> str:
        """What one final href becomes in a message with ``token``."""
        if "\n" in href or "\\" in href:
            return href
        url = html_lib.unescape(href) if "&" in href else href
        if url == unsubscribe:
            return href
        prefix = self.prefix(url)
        return href if prefix is None else prefix + token

    def pixel(self, token: str) -> str:
        return PIXEL.format(src=f"{self._open}{token}.gif")

    def _add_pixel(self, html: str, pixel: str) -> str:
        ends = list(_BODY_END.finditer(html))
        if not ends:
            return html + pixel
        at = ends[-1].start()
        return html[:at] + pixel + html[at:]

    def rewrite(self, html: str, token: str, unsubscribe: str | None) -> str:
        """The finished HTML of one message with its links and pixel (the slow path)."""
        if self.clicks:

            def one(m: re.Match[str]) -> str:
                href = m.group(3)
                if "\n" in href or "\\" in href:
                    return m.group(0)
                return _tracked(m, self._href(href, token, unsubscribe))

            html = _HREF.sub(one, html)
        if self.opens:
            html = self._add_pixel(html, self.pixel(token))
        return html

    def plan(
        self,
        skeleton: str,
        values: re.Pattern[str],
        slot_of: Callable[[str], int],
        virtual: Callable[[int], str],
    ) -> Plan:
        """Rewrite a skeleton's links once: ``values`` finds its value sentinels,
        ``slot_of`` gives a sentinel's value slot, ``virtual(k)`` the sentinel of
        virtual value ``k`` (0: the message token)."""
        token = virtual(0)
        links: list[DynamicLink] = []

        def one(m: re.Match[str]) -> str:
            href = m.group(3)
            found = list(values.finditer(href))
            if not found:
                if "\n" in href or "\\" in href:
                    return m.group(0)
                prefix = self.prefix(html_lib.unescape(href))
                # the message's unsubscribe address is a value: a static one is not it
                return _tracked(m, href if prefix is None else prefix + token)
            parts: list[str] = []
            slots: list[int] = []
            pos = 0
            for v in found:
                parts.append(href[pos : v.start()])
                slots.append(slot_of(v.group(0)))
                pos = v.end()
            parts.append(href[pos:])
            if any("\n" in p or "\\" in p for p in parts):
                return m.group(0)  # left alone by the slow path too
            links.append(DynamicLink(parts, slots))
            # left alone, the href comes back as it was, but on a line of its own
            return _tracked(m, virtual(len(links)))

        html = _HREF.sub(one, skeleton) if self.clicks else skeleton
        if self.opens:
            html = self._add_pixel(html, self.pixel(token))
        return Plan(html, links)

    def virtual_values(
        self,
        links: list[DynamicLink],
        html_values: list[str],
        token: str,
        unsubscribe: str | None,
    ) -> tuple[list[str], list[str]]:
        """(HTML form, plain form) of one message's virtual values: the token, then what
        each dynamic link's href becomes (tracked: the same in both forms)."""
        html_out = [token]
        plain_out = [token]
        for link in links:
            parts, slots = link.parts, link.slots
            out = [parts[0]]
            for i, slot in enumerate(slots):
                out.append(html_values[slot])
                out.append(parts[i + 1])
            href = "".join(out)
            done = self._href(href, token, unsubscribe)
            html_out.append(done)
            plain_out.append(html_lib.unescape(done) if done is href and "&" in done else done)
        return html_out, plain_out
