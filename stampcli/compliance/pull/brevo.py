"""Brevo: ``GET /v3/smtp/blockedContacts`` (blocked or unsubscribed transactional contacts).

Header ``api-key``; offset paging with ``limit`` (up to 100) and ``offset``;
answers ``{"contacts": [{email, senderEmail, reason: {code, message},
blockedAt}], "count"}``. Reason codes: ``hardBounce``, ``contactFlaggedAsSpam``,
``unsubscribedViaEmail``, ``unsubscribedViaApi``, ``unsubscribedViaMA``,
``adminBlocked``.
"""

from __future__ import annotations

from collections.abc import Iterator

from stampcli.compliance.pull.base import Pulled, Session, iter_offset_pages
from stampcli.compliance.times import parse_time

BASE_URL = "https://api.brevo.com"
REGIONAL: dict[str, str] = {}
PAGE_SIZE = 100
_REASONS = {
    "hardBounce": "hard_bounce",
    "contactFlaggedAsSpam": "complaint",
    "adminBlocked": "manual",
}


def headers(key: str) -> dict[str, str]:
    return {"api-key": key, "Accept": "application/json"}


def fetch(session: Session) -> Iterator[Pulled]:
    for item in iter_offset_pages(
        session,
        "/v3/smtp/blockedContacts",
        {},
        limit_name="limit",
        offset_name="offset",
        page_size=PAGE_SIZE,
        keys=("contacts",),
    ):
        why = item.get("reason")
        code = str(why.get("code") or "") if isinstance(why, dict) else ""
        message = str(why.get("message") or "") if isinstance(why, dict) else ""
        reason = _REASONS.get(code, "unsubscribed" if code.startswith("unsubscribed") else "manual")
        yield Pulled(
            str(item.get("email") or ""),
            reason,
            f"{code}: {message}" if message else code or None,
            parse_time(item.get("blockedAt")) or 0.0,
        )
