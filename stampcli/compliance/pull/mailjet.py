"""Mailjet: ``GET /v3/REST/contact?IsExcludedFromCampaigns=true`` (the exclusion list).

HTTP Basic with the API key pair (``mailjet://PUBLIC:PRIVATE``). Mailjet
keeps no separate bounce or complaint list in its API; contacts it will not
mail are flagged ``IsExcludedFromCampaigns``. Offset paging with ``Limit``
(up to 1000) and ``Offset``; answers ``{"Count", "Data": [{Email, CreatedAt,
...}], "Total"}``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from stampcli.compliance.pull.base import Pulled, PullError, Session, iter_offset_pages
from stampcli.compliance.times import parse_time
from stampcli.config import ProviderURL

BASE_URL = "https://api.mailjet.com"
REGIONAL: dict[str, str] = {}
PAGE_SIZE = 1000


def auth(url: ProviderURL, label: str) -> httpx.Auth:
    if not url.user or not url.password:
        raise PullError(f"{label}: mailjet:// needs PUBLIC:PRIVATE API keys")
    return httpx.BasicAuth(url.user, url.password)


def fetch(session: Session) -> Iterator[Pulled]:
    for item in iter_offset_pages(
        session,
        "/v3/REST/contact",
        {"IsExcludedFromCampaigns": "true"},
        limit_name="Limit",
        offset_name="Offset",
        page_size=PAGE_SIZE,
        keys=("Data",),
    ):
        yield Pulled(
            str(item.get("Email") or ""),
            "unsubscribed",
            "Mailjet exclusion list",
            parse_time(item.get("CreatedAt")) or 0.0,
        )
