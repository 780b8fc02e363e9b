"""The lease contract (``protocols.LeaseStore``, ``RateStore``) on both store backends.

Through the protocol only, as ``test_store_contract.py``: two workers never lease
the same row, a claim goes through only for the lease holder and only once, a
dead worker's ``sending`` rows become ``unknown`` and its pending rows come free,
planning is one worker's turn, and a shared bucket never grants more than its rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from test_store_contract import BACKENDS, Backend

from stampcli.delivery.planner import PlanResult
from stampcli.delivery.shared import Membership, SharedFeed
from stampcli.records import Claim, NewRow, Outcome
from stampcli.store import protocols
from stampcli.store.leases import DONE, PLAN, WAIT
from stampcli.store.ledger import STALE_ERROR


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[protocols.Store]:
    with backend.open() as s:
        yield s


def _plan(store: protocols.Store, n: int) -> int:
    cid = store.campaigns.ensure("fleet").id
    rows = [NewRow(f"u{i}@x.test", f"u{i}@x.test", json.dumps({"i": i})) for i in range(n)]
    store.ledger.insert(cid, rows)
    return cid


def _states(store: protocols.Store, cid: int) -> dict[str, str]:
    return {r.key: r.state for r in store.ledger.rows(cid)}


def test_two_workers_lease_different_rows_and_claim_only_their_own(
    store: protocols.Store, backend: Backend
) -> None:
    cid = _plan(store, 10)
    later = time.time() + 60
    with backend.open() as other:
        store.leases.join(cid, "h:1:a", until=later)
        other.leases.join(cid, "h:2:b", until=later)
        mine = store.leases.take(cid, "h:1:a", after_id=0, limit=4, until=later)
        theirs = other.leases.take(cid, "h:2:b", after_id=0, limit=100, until=later)
        assert len(mine) == 4 and len(theirs) == 6
        assert not {r.id for r in mine} & {r.id for r in theirs}
        # claiming a row another worker leased does nothing
        assert store.leases.claim("h:1:a", [Claim(theirs[0].id, "<x>")]) == []
        got = store.leases.claim("h:1:a", [Claim(r.id, f"<{r.key}>") for r in mine])
        assert got == [r.id for r in mine]
        assert store.leases.claim("h:1:a", [Claim(mine[0].id, "<again>")]) == []  # sending now
        assert store.leases.outstanding(cid, "h:2:b") == 4  # a's sending rows
        assert other.leases.outstanding(cid, "h:1:a") == 6  # b's pending rows
        assert [w.owner for w in store.leases.workers(cid)] == ["h:1:a", "h:2:b"]
        # nothing left to lease while both are alive
        assert store.leases.take(cid, "h:1:a", after_id=mine[-1].id, limit=9, until=later) == []


def test_a_dead_workers_sending_rows_turn_unknown_and_its_pending_rows_come_free(
    store: protocols.Store,
) -> None:
    cid = _plan(store, 6)
    soon = time.time() + 60
    store.leases.join(cid, "h:1:dead", until=soon)
    rows = store.leases.take(cid, "h:1:dead", after_id=0, limit=6, until=soon)
    assert store.leases.claim("h:1:dead", [Claim(r.id, "<m>") for r in rows[:2]]) == [
        rows[0].id,
        rows[1].id,
    ]
    store.leases.join(cid, "h:2:live", until=soon)
    assert store.leases.take(cid, "h:2:live", after_id=0, limit=6, until=soon) == []
    assert store.leases.reap(cid) == 0  # still alive
    store.leases.expire(["h:1:dead"])  # as when its process is seen to be gone
    assert store.leases.reap(cid) == 2
    states = _states(store, cid)
    assert sorted(states.values()) == ["pending"] * 4 + ["unknown"] * 2
    gone = store.ledger.row(cid, rows[0].key)
    assert gone is not None and gone.last_error == STALE_ERROR
    assert [w.owner for w in store.leases.workers(cid)] == ["h:2:live"]
    taken = store.leases.take(cid, "h:2:live", after_id=0, limit=6, until=soon)
    assert [r.id for r in taken] == [r.id for r in rows[2:]]
    # the dead worker's late claim finds its leases gone
    assert store.leases.claim("h:1:dead", [Claim(rows[3].id, "<m>")]) == []
    assert store.leases.renew("h:1:dead", until=soon) is False


def test_an_expired_lease_is_taken_and_the_old_holder_cannot_claim(
    store: protocols.Store,
) -> None:
    cid = _plan(store, 3)
    past = time.time() - 1  # a lease that has run out (its worker froze)
    store.leases.join(cid, "h:1:slow", until=past)
    slow = store.leases.take(cid, "h:1:slow", after_id=0, limit=3, until=past)
    assert len(slow) == 3
    store.leases.join(cid, "h:2:fast", until=time.time() + 60)
    fast = store.leases.take(cid, "h:2:fast", after_id=0, limit=3, until=time.time() + 60)
    assert [r.id for r in fast] == [r.id for r in slow]
    assert store.leases.claim("h:1:slow", [Claim(r.id, "<m>") for r in slow]) == []
    assert len(store.leases.claim("h:2:fast", [Claim(r.id, "<m>") for r in fast])) == 3


def test_renew_extends_leases_and_drops_settled_ones_and_leave_frees_rows(
    store: protocols.Store,
) -> None:
    cid = _plan(store, 4)
    now = time.time()
    store.leases.join(cid, "h:1:a", until=now + 0.5)
    rows = store.leases.take(cid, "h:1:a", after_id=0, limit=4, until=now + 0.5)
    store.leases.claim("h:1:a", [Claim(rows[0].id, "<m>")])
    store.ledger.record([Outcome(rows[0].id, "sent", provider="p")])
    assert store.leases.renew("h:1:a", until=now + 60, claimed=1, rate=2.0)
    (info,) = store.leases.workers(cid, at=now + 30)
    assert (info.claimed, info.rate, info.host, info.pid) == (1, 2.0, "h", 1)
    # the renewed leases hold past the first expiry; nobody else gets the rows
    assert store.leases.outstanding(cid, "h:2:b", at=now + 30) == 3
    store.leases.leave("h:1:a")
    assert store.leases.workers(cid) == []
    assert len(store.leases.take(cid, "h:2:b", after_id=0, limit=9, until=now + 60)) == 3


def test_orphaned_sending_rows_of_a_single_run_turn_unknown_only_when_asked(
    store: protocols.Store,
) -> None:
    cid = _plan(store, 2)
    (row, _) = store.ledger.read_pending(cid, after_id=0, limit=2)
    store.ledger.claim([Claim(row.id, "<m>")])  # a single run's claim: no lease
    assert store.leases.reap(cid) == 0
    assert store.leases.reap(cid, orphans=True) == 1
    assert _states(store, cid)[row.key] == "unknown"


def test_planning_is_one_workers_turn(store: protocols.Store, backend: Backend) -> None:
    cid = _plan(store, 1)
    later = time.time() + 60
    with backend.open() as other:
        store.leases.join(cid, "h:1:a", until=later)
        other.leases.join(cid, "h:2:b", until=later)
        assert store.leases.plan_turn(cid, "h:1:a", until=later) == PLAN
        assert other.leases.plan_turn(cid, "h:2:b", until=later) == WAIT
        assert other.leases.planning(cid)
        store.leases.plan_done(cid, "h:1:a")
        assert not other.leases.planning(cid)
        assert other.leases.plan_turn(cid, "h:2:b", until=later) == DONE
        # a planner that died mid-way: the turn passes on
        store.leases.plan_turn(cid, "h:1:a", until=later)  # a's own later turn: plan again
        store.leases.expire(["h:1:a"])
        assert other.leases.plan_turn(cid, "h:2:b", until=later) == PLAN


def test_a_planner_whose_end_the_store_lost_says_it_again_and_the_run_ends(
    store: protocols.Store,
) -> None:
    """The fleet hang after a PostgreSQL crash (issue #22): planning had ended, the store
    did not know it (the write failed, or a server without synchronous commit lost it),
    the heartbeat kept the turn alive, and every worker waited for rows forever."""
    cid = _plan(store, 1)
    member = Membership(store, cid, owner="h:1:a")
    member.join()
    events: list[object] = []

    def plan() -> Generator[int, None, PlanResult]:
        return PlanResult()
        yield 0  # a generator, as the planner's steps are

    feed = SharedFeed(
        0, None, member, plan, on_event=events.append, on_planned=lambda: None, poll_every=0.01
    )
    assert feed.take_turn() and not store.leases.planning(cid)
    # the store forgets that planning ended: the same owner's turn, not done
    assert store.leases.plan_turn(cid, "h:1:a", until=member.until()) == PLAN
    assert store.leases.planning(cid)

    async def drain() -> int:
        looks = 0
        while await feed.more_rows():
            looks += 1
            assert looks < 50, "the worker waits for a planning that ended"
        return looks

    assert asyncio.run(asyncio.wait_for(drain(), 30)) <= 2
    assert not store.leases.planning(cid)
    assert feed.done and not events


def test_a_shared_bucket_grants_no_more_than_its_burst_and_refills(
    store: protocols.Store, backend: Backend
) -> None:
    with backend.open() as other:
        t = time.monotonic()
        first = store.rates.take_tokens("rate:p", 80, per_second=100, burst=100)
        second = other.rates.take_tokens("rate:p", 80, per_second=100, burst=100)
        # the burst, plus what refilled meanwhile (a busy machine: a few ms, or more)
        assert first == 80 and second <= 20 + 100 * (time.monotonic() - t) + 1
        time.sleep(0.2)
        t = time.monotonic()
        again = store.rates.take_tokens("rate:p", 1000, per_second=100, burst=100)
        assert 15 <= again <= 20 + 100 * (0.2 + time.monotonic() - t) + 25
        store.rates.give_tokens("rate:p", 10, burst=100)
        assert other.rates.take_tokens("rate:p", 10, per_second=100, burst=100) >= 10
