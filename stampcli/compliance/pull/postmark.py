"""Postmark: ``GET /message-streams/{stream}/suppressions/dump``.

Header ``X-Postmark-Server-Token``; the stream is the URL's ``?stream=``
(``broadcast`` by default, as the adapter sends). The dump answers every
suppression of the stream at once: ``{"Suppressions": [{EmailAddress,
SuppressionReason, Origin, CreatedAt}]}``. ``ManualSuppression`` from origin
``Recipient`` is someone who unsubscribed; from ``Customer`` or ``Admin`` a
manual block.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from stampcli.compliance.pull.base import Pulled, Session, records
from stampcli.compliance.times import parse_time

BASE_URL = "https://api.postmarkapp.com"
REGIONAL: dict[str, str] = {}


def headers(token: str) -> dict[str, str]:
    return {"X-Postmark-Server-Token": token, "Accept": "application/json"}


def fetch(session: Session) -> Iterator[Pulled]:
    stream = session.url.options.get("stream", "broadcast")
    data = session.get_json(f"/message-streams/{quote(stream, safe='')}/suppressions/dump")
    for item in records(data, "Suppressions"):
        why = str(item.get("SuppressionReason") or "")
        origin = str(item.get("Origin") or "")
        if why == "HardBounce":
            reason = "hard_bounce"
        elif why == "SpamComplaint":
            reason = "complaint"
        else:
            reason = "unsubscribed" if origin == "Recipient" else "manual"
        yield Pulled(
            str(item.get("EmailAddress") or ""),
            reason,
            f"{why} ({origin}, stream {stream})" if origin else why or None,
            parse_time(item.get("CreatedAt")) or 0.0,
        )
