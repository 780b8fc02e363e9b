"""Own tracking hits (``GET /o/TOKEN.gif``, ``GET /c/TOKEN``) turned into delivery events.

:func:`read_hit` checks a token (:mod:`stampcli.compliance.tracking_tokens`) and
:func:`hit_event` makes the ``opened`` or ``clicked`` event of a genuine,
unexpired one, which then goes through :func:`stampcli.service.events.record_events`
like any provider's (provider label ``stamp``). Machine hits
(:mod:`stampcli.events.machine`) are recorded with a reason starting
``machine:`` and counted apart (``opened_machine``, ``clicked_machine``), never in
the human counts.

Deduplication: one open per recipient and hour, one click per recipient, link
and hour, each for people and machines apart (the event id is a hash of those),
so a reader who opens a message three times in a minute counts once, and a
proxy's fetch does not hide the person's open after it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from stampcli.compliance.tracking_tokens import Hit, read_click, read_open
from stampcli.events.machine import Classifier
from stampcli.events.model import DeliveryEvent, EventType, make_event

PROVIDER = "stamp"
MACHINE = "machine: "  # the reason of a machine hit starts with this
DEDUPE_SECONDS = 3600


def read_hit(secret: str | bytes, kind: str, token: str) -> Hit:
    """The genuine hit ``token`` names (``kind``: open or click); ``TokenError`` if not."""
    return read_open(secret, token) if kind == "open" else read_click(secret, token)


def hit_event(
    hit: Hit,
    kind: str,
    classifier: Classifier,
    *,
    method: str,
    user_agent: str | None,
    ip: str | None,
    now: float,
) -> DeliveryEvent | None:
    """The event of one hit; None when its token has expired (nothing is recorded)."""
    if now > hit.expires:
        return None
    why = classifier.machine(
        kind,
        method=method,
        user_agent=user_agent,
        ip=ip,
        issued=hit.issued,
        now=now,
        campaign=hit.campaign,
        key=hit.key,
        url=hit.url,
    )
    who = "machine" if why else "human"
    bucket = int(now // DEDUPE_SECONDS)
    ident = f"{kind}\n{hit.campaign}\n{hit.key}\n{hit.url or ''}\n{who}\n{bucket}"
    event_id = "track:" + hashlib.sha256(ident.encode()).hexdigest()[:40]
    item = {"kind": kind, "campaign": hit.campaign, "url": hit.url, "machine": why}
    return make_event(
        PROVIDER,
        EventType.OPENED if kind == "open" else EventType.CLICKED,
        item,
        recipient=hit.key,
        occurred_at=datetime.fromtimestamp(now, UTC),
        event_id=event_id,
        campaign=hit.campaign,
        recipient_key=hit.key,
        reason=MACHINE + why if why else None,
        url_=hit.url,
        user_agent=user_agent,
    )
