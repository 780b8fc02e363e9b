"""What ``record_events`` does to be fast keeps what it records: once per backend.

* events with nothing to apply (deliveries, opens of rows not ``unknown``) are
  stored applied at once, the others only after their effects, as before;
* auto-stop with an :class:`AnswerCache` (the server's writer) counts the ledger's
  answers at most once a ``ttl``, reads the events' bounces and complaints fresh
  every time, and counts again at once when an event moved a row of the campaign;
  its verdicts are those of the judgement without the cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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


def test_the_writer_answers_each_request_of_a_group_after_its_commit(tmp_path: Path) -> None:
    """Group commit: concurrent one-event requests share commits, each is answered (once
    per loop wake-up for the whole group) with that commit's result, and a failed
    commit fails every request of its group."""
    from stampcli.errors import StoreError
    from stampcli.server.writer import StoreWriter
    from stampcli.store import open_store

    db = tmp_path / "stamp.db"
    seen: list[int] = []
    gate = threading.Event()

    def record(store: protocols.Store, events: Sequence[DeliveryEvent]) -> object:
        gate.wait(5)  # the first commit waits, so that the others queue up behind it
        seen.append(len(events))
        if any(e.event_id.startswith("bad") for e in events):
            raise StoreError("the disk is full")
        return record_events(store, events)

    writer = StoreWriter(lambda: open_store(db), record)
    writer.start()

    async def flood() -> list[object]:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(writer.record([_event(EventType.DELIVERED, 0, 0)]))
        await asyncio.sleep(0.05)
        rest = [
            asyncio.ensure_future(writer.record([_event(EventType.DELIVERED, i, 1)]))
            for i in range(1, 21)
        ]
        await asyncio.sleep(0.05)
        loop.call_soon(gate.set)
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        answers = asyncio.run(flood())
        assert [getattr(a, "stored", None) for a in answers] == [1] + [20] * 20
        assert seen == [1, 20]  # the 20 that queued behind the first: one commit
        gate.clear()
        seen.clear()

        async def failing() -> list[object]:
            first = asyncio.ensure_future(writer.record([_event(EventType.DELIVERED, 1, 2)]))
            await asyncio.sleep(0.05)
            group = [
                asyncio.ensure_future(writer.record([_event(EventType.DELIVERED, 1, 3)])),
                asyncio.ensure_future(
                    writer.record([_event(EventType.DELIVERED, 1, 4, event_id="bad-4")])
                ),
            ]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(first, *group, return_exceptions=True)

        first, *group = asyncio.run(failing())
        assert getattr(first, "stored", None) == 1 and seen == [1, 2]
        assert all(isinstance(a, StoreError) for a in group)  # both fail: one commit
    finally:
        writer.stop()
    with open_store(db) as store:
        assert store.events.unmatched() == 21 + 1  # nothing of the failed group
