"""What ``record_events`` does to be fast keeps what it records: once per backend.

* events with nothing to apply (deliveries, opens of rows not ``unknown``) are
  stored applied at once, the others only after their effects, as before;
* auto-stop with an :class:`AnswerCache` (the server's writer) counts the ledger's
  answers at most once a ``ttl``, reads the events' bounces and complaints fresh
  every time, and counts again at once when an event moved a row of the campaign;
  its verdicts are those of the judgement without the cache.
"""

from __future__ import annotations

from datetime import UTC, datetime

from test_store_contract import _claim_all, _plan, backend, store

from stampcli.config import AutoStopConfig
from stampcli.events.model import BounceKind, DeliveryEvent, EventType
from stampcli.records import Outcome
from stampcli.service.events import AnswerCache, BouncePolicy, record_events, store_settings
from stampcli.store import protocols

__all__ = ["backend", "store"]  # the fixtures, imported for pytest

AT = datetime(2026, 12, 1, tzinfo=UTC)


def _campaign(store: protocols.Store, n: int, *, unknown: int = 0) -> int:
    """Campaign "news" with ``n`` rows sent by "sg" (ids m0..) and ``unknown`` more
    left unknown; auto-stop at 30% hard bounces after 4 answers."""
    store_settings(
        store,
        "news",
        AutoStopConfig.model_validate({"min_answers": 4, "hard_bounce_rate": 0.3}),
        BouncePolicy(),
    )
    cid = store.campaigns.ensure("news").id
    keys = [f"r{i}@example.com" for i in range(n + unknown)]
    _plan(store, cid, keys)
    rows = _claim_all(store, cid)
    outcomes = [Outcome(i, "sent", "sg", f"m{k}") for k, i in enumerate(rows[:n])]
    outcomes += [Outcome(i, "unknown", "sg", f"m{n + k}") for k, i in enumerate(rows[n:])]
    store.ledger.record(outcomes)
    return cid


def _event(kind: EventType, i: int, n: int = 0, **extra: object) -> DeliveryEvent:
    values: dict[str, object] = {
        "type": kind,
        "provider": "sg",
        "event_id": f"{kind.value}-{i}-{n}",
        "occurred_at": AT,
        "recipient": f"r{i}@example.com",
        "campaign": "news",
        "recipient_key": f"r{i}@example.com",
        **extra,
    }
    if kind is EventType.BOUNCED:
        values.setdefault("bounce_kind", BounceKind.HARD)
    return DeliveryEvent(**values)  # type: ignore[arg-type]


def _applied(store: protocols.Store) -> dict[str, bool]:
    """Event id -> applied, through the store's own answer for a repeat."""
    rows = store.events.rows(store.campaigns.ensure("news").id)
    writes = store.events.add(rows, received_at=0.0)
    return {r.event_id: w.applied for r, w in zip(rows, writes, strict=True)}


def test_inert_events_are_stored_applied_and_the_others_after_their_effects(
    store: protocols.Store,
) -> None:
    _campaign(store, 3, unknown=1)
    got = record_events(
        store,
        [
            _event(EventType.DELIVERED, 0),
            _event(EventType.OPENED, 1),
            _event(EventType.BOUNCED, 2),
            _event(EventType.DELIVERED, 3),  # the unknown row: moved to sent
        ],
    )
    assert got.stored == 4 and got.resolved_unknown == 1 and got.suppressed == 1
    assert all(_applied(store).values())
    assert store.suppressions.suppressed(["r2@example.com"]) == {"r2@example.com"}
    # a redelivery changes nothing and applies nothing again
    again = record_events(store, [_event(EventType.DELIVERED, 0), _event(EventType.BOUNCED, 2)])
    assert (again.stored, again.duplicates, again.suppressed) == (0, 2, 0)


def test_the_answer_cache_counts_the_ledger_once_a_ttl(store: protocols.Store) -> None:
    cid = _campaign(store, 10)
    now = [100.0]
    cache = AnswerCache(ttl=1.0, clock=lambda: now[0])
    counted: list[int] = []
    real = store.ledger.answer_stats

    def counting(campaign_id: int) -> tuple[int, int, int]:
        counted.append(campaign_id)
        return real(campaign_id)

    store.ledger.answer_stats = counting  # type: ignore[method-assign]
    # 2 of 10 answers hard-bounced: 20%, under the 30% threshold
    first = record_events(store, [_event(EventType.BOUNCED, i) for i in range(2)], answers=cache)
    assert first.paused == [] and counted == [cid]
    # within the ttl the ledger is not counted again, the bounces are: 3/10 pauses
    now[0] += 0.5
    second = record_events(store, [_event(EventType.BOUNCED, 2)], answers=cache)
    assert second.paused == ["news"] and counted == [cid]
    row = store.campaigns.get("news")
    assert row is not None and "from delivery events" in (row.paused_reason or "")


def test_the_answer_cache_gives_the_verdicts_of_a_fresh_count(store: protocols.Store) -> None:
    _campaign(store, 10)
    now = [100.0]
    cache = AnswerCache(ttl=1.0, clock=lambda: now[0])
    assert record_events(store, [_event(EventType.BOUNCED, 0)], answers=cache).paused == []
    # ten more answers arrive; after the ttl they are counted, so 3/20 does not pause
    cid = store.campaigns.ensure("news").id
    keys = [f"s{i}@example.com" for i in range(10)]
    _plan(store, cid, keys)
    rows = _claim_all(store, cid)
    store.ledger.record([Outcome(i, "sent", "sg", f"n{k}") for k, i in enumerate(rows)])
    now[0] += 1.5
    events = [_event(EventType.BOUNCED, i) for i in (1, 2)]
    assert record_events(store, events, answers=cache).paused == []
    assert store.campaigns.get("news").paused_reason is None  # type: ignore[union-attr]


def test_a_moved_row_drops_the_campaigns_cached_answers(store: protocols.Store) -> None:
    cid = _campaign(store, 3, unknown=3)
    now = [100.0]
    cache = AnswerCache(ttl=60.0, clock=lambda: now[0])
    assert cache.get(store, cid)[0] == 3
    # three unknown rows are heard of (sent): six answers now, counted at once
    record_events(store, [_event(EventType.DELIVERED, i) for i in (3, 4, 5)], answers=cache)
    assert cache.get(store, cid)[0] == 6
    # 2 hard bounces of 6 answers: 33% pauses (the 3 answers cached before are under
    # min_answers: no verdict)
    got = record_events(store, [_event(EventType.BOUNCED, i) for i in (0, 1)], answers=cache)
    assert got.paused == ["news"]
