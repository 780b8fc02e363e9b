"""``stamp events pull``: fetch delivery events from the providers that list them.

For a provider that missed webhooks (the server was down longer than the
provider retries, or no server runs at all), its events or bounces API has the
same news. ``pull_events(campaign, store)`` asks each provider of the campaign
whose module defines ``fetch_events(session, cursor, now=...)`` for what
happened since the cursor kept in the store (``event_cursors``, one per
provider account), turns every item into a ``DeliveryEvent`` through the same
normalisation as the webhooks, and records them with
:func:`stampcli.service.events.record_events`: stored once each, so a rerun,
an overlap with the webhooks or a pull from cron beside ``stamp serve`` stores
nothing twice: a puller and its provider's webhook parser derive one event id
for one event (the provider's id where both shapes carry it, else
:func:`shared_event_id` of what both carry).

A puller yields :class:`EventPage` objects; the cursor moves only once the
page's events are committed, so a pull that fails half-way goes on from the
last page stored next time. Pullers re-read a margin before the cursor
(providers store events late and out of order); dedupe makes that free. A
provider without such an API is named in the report (``skipped``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from stampcli.config import Campaign, ProviderConfig
from stampcli.errors import ConfigError, StoreError
from stampcli.events.model import (
    BounceKind,
    DeliveryEvent,
    EventRejected,
    EventType,
    address,
    normalise_message_id,
    token,
)
from stampcli.providers import provider_module
from stampcli.providers.http import ProviderSetupError
from stampcli.providers.pull import PullError, Session, client_for
from stampcli.store import protocols

__all__ = [
    "EventPage",
    "EventPuller",
    "EventsPullReport",
    "ProviderEvents",
    "events_puller_for",
    "parse_items",
    "pull_events",
    "shared_event_id",
]

FIRST_PULL = 3 * 86400.0  # how far back a provider's first pull reaches (seconds)


@dataclass
class EventPage:
    """One page of a provider's events: normalised, with what could not be used, and
    the cursor to store once they are recorded (None: keep the old one for now)."""

    events: list[DeliveryEvent] = field(default_factory=list)
    rejected: int = 0
    cursor: str | None = None


class EventPuller(Protocol):
    """A provider module's ``fetch_events``: its events since ``cursor``, page by page."""

    def __call__(
        self, session: Session, cursor: str | None, *, now: float
    ) -> Iterator[EventPage]: ...


def events_puller_for(scheme: str) -> EventPuller | None:
    """The scheme's ``fetch_events``, or None when its provider has no events API."""
    found: EventPuller | None = getattr(provider_module(scheme), "fetch_events", None)
    return found


def parse_items(
    items: Iterable[Mapping[str, Any]], parse: Callable[[Mapping[str, Any]], list[DeliveryEvent]]
) -> tuple[list[DeliveryEvent], int]:
    """Every item through the provider's webhook normalisation: (events, items rejected)."""
    events: list[DeliveryEvent] = []
    rejected = 0
    for item in items:
        try:
            events.extend(parse(item))
        except EventRejected:
            rejected += 1
    return events, rejected


def shared_event_id(
    provider: str,
    *,
    message_id: object,
    recipient: object,
    kind: EventType,
    bounce_kind: BounceKind | None = None,
    when: datetime | None,
    url: object = None,
) -> str | None:
    """The event id a webhook and a pulled event agree on when the provider gives them
    no common id: a digest of (provider message id, recipient, event type, time to the
    second, and the link of a click). ``when=None`` leaves the time out, for pulls that
    know that a message reached a state but not when. None without a message id (the
    parser's content hash is used then).

    Both paths must pass values already normalised the same way: the type after the
    parser's mapping (so Brevo's ``hardBounces`` and ``hard_bounce`` agree), the
    message id as the send answer gives it (angle brackets and prefixes dropped here).
    """
    raw = token(message_id, "message id")
    if raw is None:
        return None
    parts = [
        provider,
        normalise_message_id(provider, raw),
        address(recipient),
        kind.value,
        bounce_kind.value if bounce_kind is not None else "",
        "" if when is None else str(int(when.timestamp())),
        url if isinstance(url, str) else "",
    ]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]
    return f"key:{digest}"


def since(cursor: str | None, now: float, margin: float) -> float:
    """Epoch seconds to ask from: the cursor less ``margin``, or FIRST_PULL ago."""
    if cursor:
        try:
            return max(float(cursor) - margin, 0.0)
        except ValueError:
            pass  # a cursor from another version: start as if there were none
    return now - FIRST_PULL


@dataclass
class ProviderEvents:
    """What one provider's pull did."""

    provider: str  # label
    scheme: str
    fetched: int = 0  # events normalised from the provider's answers
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    rejected: int = 0  # items that could not be used
    suppressed: int = 0
    resolved_unknown: int = 0
    paused: list[str] = field(default_factory=list)
    cursor: str | None = None
    error: str | None = None
    skipped: str | None = None  # why it was not asked (no events API)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class EventsPullReport:
    providers: list[ProviderEvents] = field(default_factory=list)

    @property
    def errors(self) -> list[ProviderEvents]:
        return [p for p in self.providers if p.error is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "providers": [p.as_dict() for p in self.providers],
            "stored": sum(p.stored for p in self.providers),
            "duplicates": sum(p.duplicates for p in self.providers),
            "unmatched": sum(p.unmatched for p in self.providers),
            "suppressed": sum(p.suppressed for p in self.providers),
        }


def account_key(config: ProviderConfig) -> str:
    """Which account of the provider (so two campaigns on one account share a cursor):
    a digest of the URL's credentials and host, never the credentials themselves."""
    url = config.parsed
    text = "\0".join(str(part or "") for part in (url.user, url.host, url.path, config.endpoint))
    return "acct:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def pull_one(
    config: ProviderConfig,
    store: protocols.Store,
    *,
    sleep: Callable[[float], None] | None = None,
    now: float | None = None,
) -> ProviderEvents:
    """Pull one provider's events into ``store``; provider failures go into the result.

    A store failure raises :class:`StoreError`: the cursor then stays where the
    last committed page left it.
    """
    from stampcli.service.events import record_events  # the service imports providers

    result = ProviderEvents(config.label, config.scheme)
    fetch = events_puller_for(config.scheme)
    if fetch is None:
        result.skipped = f"{config.scheme} has no events API to pull from"
        return result
    account = account_key(config)
    cursor = store.events.cursor(config.scheme, account)
    at = time.time() if now is None else now
    try:
        with client_for(config) as client:
            session = Session(config, config.parsed, client, config.label)
            if sleep is not None:
                session.sleep = sleep
            for page in fetch(session, cursor, now=at):
                result.fetched += len(page.events)
                result.rejected += page.rejected
                recorded = record_events(store, page.events, now=at)
                result.stored += recorded.stored
                result.duplicates += recorded.duplicates
                result.unmatched += recorded.unmatched
                result.suppressed += recorded.suppressed
                result.resolved_unknown += recorded.resolved_unknown
                result.paused.extend(p for p in recorded.paused if p not in result.paused)
                if page.cursor is not None and page.cursor != cursor:
                    store.events.set_cursor(config.scheme, account, page.cursor)
                    cursor = page.cursor
    except StoreError:
        raise
    except PullError as exc:
        result.error = str(exc)
    except ProviderSetupError as exc:
        result.error = f"{config.label}: {exc}"
    result.cursor = cursor
    return result


def pull_events(
    campaign: Campaign,
    store: protocols.Store,
    providers: Sequence[str] | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
    now: float | None = None,
) -> EventsPullReport:
    """Pull the events of the campaign's providers (or only ``providers``, by label)."""
    chosen = list(campaign.providers)
    if providers:
        labels = {p.label for p in chosen}
        unknown = [name for name in providers if name not in labels]
        if unknown:
            raise ConfigError(
                f"{campaign.path}: providers: no provider named {unknown[0]!r}; "
                f"known: {', '.join(sorted(labels))}"
            )
        chosen = [p for p in chosen if p.label in providers]
    report = EventsPullReport()
    seen: set[tuple[str, str]] = set()
    for config in chosen:
        key = (config.scheme, account_key(config))
        if key in seen:  # the same account twice (two labels): pulled once
            continue
        seen.add(key)
        report.providers.append(pull_one(config, store, sleep=sleep, now=now))
    return report
