"""SendGrid: ``GET /v3/suppression/{bounces,blocks,spam_reports,invalid_emails,unsubscribes}``.

Bearer API key; offset paging (``limit`` up to 500, ``offset``); each answer
is a JSON array of ``{created, email, reason, status}`` (spam reports carry
``ip``, unsubscribes only ``created`` and ``email``). Blocks are included:
SendGrid drops mail to them, so another provider must not deliver it either.
"""

from __future__ import annotations

from collections.abc import Iterator

from stampcli.compliance.pull.base import Pulled, Session, iter_offset_pages
from stampcli.compliance.times import parse_time

BASE_URL = "https://api.sendgrid.com"
REGIONAL = {"eu": "https://api.eu.sendgrid.com"}
PAGE_SIZE = 500

# list -> (our reason, detail prefix)
LISTS = {
    "bounces": ("hard_bounce", "bounce"),
    "blocks": ("hard_bounce", "block"),
    "spam_reports": ("complaint", "spam report"),
    "invalid_emails": ("invalid", "invalid email"),
    "unsubscribes": ("unsubscribed", "global unsubscribe"),
}


def headers(session_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_key}", "Accept": "application/json"}


def fetch(session: Session) -> Iterator[Pulled]:
    for name, (reason, prefix) in LISTS.items():
        for item in iter_offset_pages(
            session,
            f"/v3/suppression/{name}",
            {},
            limit_name="limit",
            offset_name="offset",
            page_size=PAGE_SIZE,
        ):
            why = " ".join(str(item.get(k) or "") for k in ("status", "reason")).strip()
            yield Pulled(
                str(item.get("email") or ""),
                reason,
                f"{prefix}: {why}" if why else prefix,
                parse_time(item.get("created")) or 0.0,
            )
