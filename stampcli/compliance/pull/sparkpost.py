"""SparkPost: ``GET /api/v1/suppression-list``.

Header ``Authorization: KEY``; cursor paging: ask with ``cursor=initial`` and
``per_page`` (up to 10,000), then follow the ``links`` entry whose ``rel`` is
``next`` until there is none (its href names SparkPost's path, used against
our base URL). Each result is ``{recipient, type, source, description,
created, updated}``. ``type`` says which mail the entry stops: a newsletter
is ``non_transactional`` mail, so entries that stop only transactional mail
are left out. ``source`` is ``Bounce Rule``, ``Spam Complaint``, ``List
Unsubscribe``, ``Unsubscribe Link``, ``Manually Added`` or ``Compliance``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stampcli.compliance.pull.base import Pulled, Session, records, relative
from stampcli.compliance.times import parse_time

BASE_URL = "https://api.sparkpost.com"
REGIONAL = {"eu": "https://api.eu.sparkpost.com"}
PAGE_SIZE = 10_000

SOURCES = {
    "Bounce Rule": "hard_bounce",
    "Spam Complaint": "complaint",
    "List Unsubscribe": "unsubscribed",
    "Unsubscribe Link": "unsubscribed",
    "Manually Added": "manual",
    "Compliance": "manual",  # SparkPost's compliance team blocked the address
}


def headers(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


def _next(data: Any) -> str | None:
    links = data.get("links") if isinstance(data, dict) else None
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return relative(str(link["href"]))
    return None


def fetch(session: Session) -> Iterator[Pulled]:
    path: str | None = f"/api/v1/suppression-list?cursor=initial&per_page={PAGE_SIZE}"
    seen: set[str] = set()
    while path is not None and path not in seen:
        seen.add(path)
        data = session.get_json(path)
        page = records(data, "results")
        for item in page:
            kind = item.get("type")
            stops_bulk = kind == "non_transactional" or item.get("non_transactional") is True
            if not stops_bulk:
                continue
            source = str(item.get("source") or "")
            description = " ".join(str(item.get("description") or "").split())
            yield Pulled(
                str(item.get("recipient") or ""),
                SOURCES.get(source, "manual"),
                f"{source}: {description}" if description else source or None,
                parse_time(item.get("created") or item.get("updated")) or 0.0,
            )
        path = _next(data) if page else None
