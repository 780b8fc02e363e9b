"""Mailgun: ``GET /v3/{domain}/{bounces,complaints,unsubscribes}``.

HTTP Basic ``api:KEY``; each answer is ``{"items": [...], "paging": {"next":
URL, ...}}``; pages are followed through ``paging.next`` until a page is
empty. ``next`` names Mailgun's own host, so only its path and query are used
(the endpoint override must keep working). Bounces carry ``address, code,
error, created_at``; unsubscribes ``address, tags, created_at``; complaints
``address, created_at`` (dates in RFC 2822).
"""

from __future__ import annotations

from collections.abc import Iterator

from stampcli.compliance.pull.base import Pulled, PullError, Session, records, relative
from stampcli.compliance.times import parse_time

BASE_URL = "https://api.mailgun.net"
REGIONAL = {"eu": "https://api.eu.mailgun.net"}
PAGE_SIZE = 1000
LISTS = {"bounces": "hard_bounce", "complaints": "complaint", "unsubscribes": "unsubscribed"}


def domain(session: Session) -> str:
    if not session.url.host:
        raise PullError(
            f"{session.label}: mailgun:// needs KEY@DOMAIN, like mailgun://KEY@mg.x.com"
        )
    return session.url.host


def _detail(name: str, item: dict[str, object]) -> str | None:
    if name == "bounces":
        text = " ".join(str(item.get(k) or "") for k in ("code", "error")).strip()
        return text or None
    if name == "unsubscribes":
        tags = item.get("tags")
        if isinstance(tags, list) and tags and tags != ["*"]:
            return "tags: " + ", ".join(str(t) for t in tags)
    return None


def fetch(session: Session) -> Iterator[Pulled]:
    dom = domain(session)
    for name, reason in LISTS.items():
        path: str | None = f"/v3/{dom}/{name}?limit={PAGE_SIZE}"
        seen: set[str] = set()
        while path is not None:
            seen.add(path)
            data = session.get_json(path)
            items = records(data, "items")
            for item in items:
                yield Pulled(
                    str(item.get("address") or ""),
                    reason,
                    _detail(name, item),
                    parse_time(item.get("created_at")) or 0.0,
                )
            paging = data.get("paging") if isinstance(data, dict) else None
            nxt = paging.get("next") if isinstance(paging, dict) else None
            path = relative(nxt) if items and isinstance(nxt, str) and nxt else None
            if path in seen:
                path = None  # the last page points at itself
