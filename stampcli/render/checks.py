"""What ``stamp check`` looks for in every rendered message, before anything is sent.

Errors stop a send: a recipient whose message cannot be rendered (missing
variable, header injection), no unsubscribe link, scripts, images that point
at nothing. Warnings are things that hurt delivery or display: HTML over
Gmail's clipping limit, images without alt text, links to raw IP addresses,
forms. Findings are grouped by what they say, with the rows they concern, so a
problem in the template shows up once, not once per recipient. A text
template's message (text/plain, see ``format:``) is checked as text: an
unsubscribe URL in the text counts as the link.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from stampcli.errors import RecipientError, StampError, TemplateError
from stampcli.render.diagnose import columns_hint
from stampcli.render.headers import HeaderInjection
from stampcli.render.message import Message
from stampcli.render.renderer import MissingAttachment, MissingVariable, Renderer

Level = Literal["error", "warning"]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" above about 102 KB of HTML
MAX_ROWS_SHOWN = 10

_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"\balt\s*=", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_IP_URL = re.compile(
    r"^(?:https?:)?//(?:[^/@]*@)?(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\])(?::\d+)?(?:[/?#]|$)",
    re.IGNORECASE,
)
_SCRIPT = re.compile(r"<script\b|\bjavascript:|\son[a-z]+\s*=\s*[\"']", re.IGNORECASE)
_FORM = re.compile(r"<form\b", re.IGNORECASE)
_EMBED = re.compile(r"<(iframe|object|embed|video|audio)\b", re.IGNORECASE)
_FIRST_URL = re.compile(r"<([^<>]+)>")
_TEXT_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"']+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    code: str  # stable identifier, e.g. "missing-variable"
    message: str  # the same for every recipient it concerns


@dataclass
class Group:
    finding: Finding
    rows: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class CheckReport:
    """Findings over a whole audience, grouped."""

    recipients: int = 0
    rendered: int = 0
    unchecked: int = 0  # recipients after a template error, which stops a send as well
    groups: dict[Finding, Group] = field(default_factory=dict)

    def add(self, finding: Finding, row: int, key: str) -> None:
        group = self.groups.get(finding)
        if group is None:
            group = self.groups[finding] = Group(finding)
        group.count += 1
        if len(group.rows) < MAX_ROWS_SHOWN:
            group.rows.append(row)
            group.keys.append(key)

    @property
    def errors(self) -> list[Group]:
        return [g for g in self.groups.values() if g.finding.level == "error"]

    @property
    def warnings(self) -> list[Group]:
        return [g for g in self.groups.values() if g.finding.level == "warning"]

    @property
    def error_count(self) -> int:
        return sum(g.count for g in self.errors)

    @property
    def warning_count(self) -> int:
        return sum(g.count for g in self.warnings)


def failure(exc: StampError) -> Finding:
    """The finding for a recipient whose message could not be rendered."""
    if isinstance(exc, MissingVariable):
        where = f"{exc.where}: " if exc.where else ""
        if exc.attribute:
            what = f"missing attribute {exc.variable!r}{exc.hint}"
        else:
            what = (
                f"missing variable {exc.variable!r}: not a column of the list and not in "
                f"the campaign's variables; {columns_hint(exc.variable, exc.columns)}"
            )
            if exc.hint and exc.hint not in what:
                what += exc.hint
        return Finding("error", "missing-variable", f"{where}{what}")
    if isinstance(exc, MissingAttachment):
        # one group for every recipient whose file is missing, not one per file
        return Finding(
            "error",
            "missing-attachment",
            f"attachments: {exc.source!r} names no readable file in the campaign folder "
            "for these recipients (each is skipped by a send and recorded as failed)",
        )
    if isinstance(exc, HeaderInjection):
        return Finding(
            "error",
            "header-injection",
            f"header injection: the {exc.header} header would contain a line break or "
            "control character",
        )
    if isinstance(exc, RecipientError):
        return Finding("error", "render-failed", f"cannot render: {exc}")
    return Finding("error", "template", str(exc))


def _attr(pattern: re.Pattern[str], tag: str) -> str | None:
    m = pattern.search(tag)
    if m is None:
        return None
    return html_lib.unescape(next((g for g in m.groups() if g is not None), ""))


def unsubscribe_url(message: Message) -> str | None:
    """The first URL of the List-Unsubscribe header (HTTPS, else mailto)."""
    value = message.headers.get("List-Unsubscribe")
    if not value:
        return None
    m = _FIRST_URL.search(value)
    return m.group(1) if m else None


def check_message(message: Message, renderer: Renderer) -> list[Finding]:
    """Findings for one rendered message."""
    out: list[Finding] = []
    html = message.html
    campaign = renderer.campaign
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.append(
            Finding(
                "warning",
                "html-size",
                f"HTML is over {GMAIL_CLIP_BYTES // 1024} KB: Gmail clips it and hides the "
                "rest, unsubscribe link included, behind 'View entire message'",
            )
        )
    hrefs = [_attr(_HREF, m.group(0)) or "" for m in re.finditer(r"<a\b[^>]*>", html, re.I)]
    if not campaign.transactional:
        url = unsubscribe_url(message)
        if url is None:
            out.append(
                Finding(
                    "error",
                    "no-unsubscribe",
                    "no unsubscribe configured: add unsubscribe.url (and mailto) to the "
                    "campaign; bulk mail needs a one-click List-Unsubscribe header",
                )
            )
        else:
            targets = set(_FIRST_URL.findall(message.headers["List-Unsubscribe"]))
            if renderer.is_text:
                # a text message has no links, only URLs in its text
                links = [t for t in targets if t in message.text] + [
                    u for u in _TEXT_URL.findall(message.text) if "unsubscribe" in u.lower()
                ]
            else:
                links = [h for h in hrefs if h in targets or "unsubscribe" in h.lower()]
            if not links:
                out.append(_no_link(renderer.is_text))
        if url is not None and url.startswith("http://"):
            out.append(
                Finding(
                    "warning",
                    "unsubscribe-http",
                    "the unsubscribe URL is http://; one-click unsubscribe (RFC 8058) needs https://",
                )
            )
    cids = {a.content_id for a in message.attachments if a.content_id is not None}
    used: set[str] = set()
    for m in _IMG.finditer(html):
        tag = m.group(0)
        src = _attr(_SRC, tag) or ""
        if src.lower().startswith("cid:"):
            cid = src[4:]
            used.add(cid)
            if cid not in cids:
                out.append(
                    Finding(
                        "error",
                        "unknown-cid",
                        f"<img src={src!r}> names no inline image; declare it under images: "
                        f"({cid}: path/to/file.png)",
                    )
                )
        if not _ALT.search(tag):
            out.append(
                Finding(
                    "warning",
                    "img-alt",
                    f"image without alt text: {src or tag[:60]} (shown when images are off, "
                    "and in the text part)",
                )
            )
        if _IP_URL.match(src):
            out.append(_ip_finding(src))
    for cid in sorted(cids - used):
        out.append(
            Finding(
                "warning",
                "unused-image",
                f"the inline image {cid!r} is attached but the HTML never uses cid:{cid}",
            )
        )
    for href in hrefs:
        if _IP_URL.match(href):
            out.append(_ip_finding(href))
    if _SCRIPT.search(html):
        out.append(
            Finding(
                "error",
                "script",
                "the HTML contains a script (<script>, javascript: or an on...= handler): "
                "mail clients strip it and spam filters count it against you",
            )
        )
    if _FORM.search(html):
        out.append(
            Finding(
                "warning",
                "form",
                "the HTML contains a <form>: many clients disable forms and filters flag them",
            )
        )
    for m in _EMBED.finditer(html):
        out.append(
            Finding(
                "warning",
                "embed",
                f"the HTML contains <{m.group(1).lower()}>, which most mail clients do not show",
            )
        )
    for href in sorted(renderer.inliner.remote_stylesheets):
        out.append(
            Finding(
                "warning",
                "remote-css",
                f"the remote stylesheet {href} is not loaded; copy it next to the template",
            )
        )
    return list(dict.fromkeys(out))


def _no_link(text: bool = False) -> Finding:
    if text:
        return Finding(
            "error",
            "no-unsubscribe-link",
            "no unsubscribe URL in the text: add a line like 'Unsubscribe: "
            "{{ unsubscribe_url }}' to the template (Gmail and Yahoo require a visible one)",
        )
    return Finding(
        "error",
        "no-unsubscribe-link",
        'no unsubscribe link in the body: add <a href="{{ unsubscribe_url }}">Unsubscribe</a> '
        "to the template (Gmail and Yahoo require a visible one)",
    )


def _ip_finding(url: str) -> Finding:
    return Finding(
        "warning",
        "ip-link",
        f"link to a raw IP address: {url} (looks like phishing to spam filters; use a host name)",
    )


def check_audience(
    renderer: Renderer, contacts: Iterable[tuple[int, str, str, dict[str, object]]]
) -> CheckReport:
    """Render and check every (row, key, email, fields); nothing is sent."""
    report = CheckReport()
    stopped = False
    for row, key, email, fields in contacts:
        report.recipients += 1
        if stopped:
            report.unchecked += 1
            continue
        try:
            message = renderer.render(key, email, fields)
        except StampError as exc:
            report.add(failure(exc), row, key)
            # what stops `stamp send` (not one recipient's problem) stops the check: the
            # same rules, and an over-limit template is not run once per recipient
            stopped = isinstance(exc, TemplateError)
            continue
        report.rendered += 1
        for finding in check_message(message, renderer):
            report.add(finding, row, key)
    return report
