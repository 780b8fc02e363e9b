"""The ledger's state moves, against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampcli.errors import CampaignPausedError, ContentChangedError
from stampcli.store import campaigns, ledger
from stampcli.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "stamp.db")
    return s


def _plan(store: Store, cid: int, keys: list[str]) -> int:
    return ledger.insert(store, cid, [ledger.NewRow(k, k, '{"n": 1}') for k in keys])


def _states(store: Store, cid: int) -> dict[str, str]:
    return {r.key: r.state for r in ledger.rows(store, cid)}


def test_insert_is_idempotent(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    assert _plan(store, cid, [f"u{i}@x.test" for i in range(2500)]) == 2500
    assert _plan(store, cid, [f"u{i}@x.test" for i in range(2600)]) == 100
    assert ledger.counts(store, cid)["pending"] == 2600
    other = campaigns.ensure(store, "other").id
    assert _plan(store, other, ["u1@x.test"]) == 1  # per campaign, not global


def test_claim_then_record_moves_only_claimed_rows(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    rows = ledger.read_pending(store, cid, after_id=0, limit=10)
    assert [r.key for r in rows] == ["a@x.test", "b@x.test", "c@x.test"]
    n = ledger.claim(store, [ledger.Claim(rows[0].id, "<a@m>")], [(rows[1].id, "suppressed")])
    assert n == 1
    assert _states(store, cid) == {
        "a@x.test": "sending",
        "b@x.test": "suppressed",
        "c@x.test": "pending",
    }
    # a second claim of the same row does nothing: it is no longer pending
    assert ledger.claim(store, [ledger.Claim(rows[0].id, "<a@m>")]) == 0
    ledger.record(
        store, [ledger.Outcome(rows[0].id, "sent", provider="smtp", provider_message_id="q1")]
    )
    got = ledger.row(store, cid, "a@x.test")
    assert got is not None and got.id == rows[0].id
    row = (got.state, got.attempts, got.provider, got.provider_message_id, got.message_id)
    assert row == ("sent", 1, "smtp", "q1", "<a@m>")
    assert got.sent_at is not None
    # recording never touches a row in a final state
    ledger.record(store, [ledger.Outcome(rows[0].id, "failed", last_error="late")])
    assert _states(store, cid)["a@x.test"] == "sent"


def test_unclaim_leaves_no_attempt(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test"])
    (row,) = ledger.read_pending(store, cid, after_id=0, limit=10)
    ledger.claim(store, [ledger.Claim(row.id, "<a@m>")])
    ledger.record(store, [ledger.Outcome(row.id, "pending", extra_attempts=-1)])
    (again,) = ledger.read_pending(store, cid, after_id=0, limit=10)
    assert again.attempts == 0
    assert again.first_attempt_at is None


def test_stale_sending_becomes_unknown(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test", "b@x.test"])
    rows = ledger.read_pending(store, cid, after_id=0, limit=10)
    ledger.claim(store, [ledger.Claim(rows[0].id, "<a@m>")])
    assert ledger.mark_stale_sending(store, cid) == 1
    assert _states(store, cid) == {"a@x.test": "unknown", "b@x.test": "pending"}
    errors = ledger.last_errors(store, cid)
    assert errors[0].key == "a@x.test" and "retry --unknown" in errors[0].error


def test_deferred_requeue_and_expiry(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    rows = ledger.read_pending(store, cid, after_id=0, limit=10)
    ledger.claim(store, [ledger.Claim(r.id, f"<{r.id}@m>") for r in rows])
    first = ledger.row(store, cid, "a@x.test")
    assert first is not None and first.first_attempt_at is not None
    t0 = first.first_attempt_at
    ledger.record(
        store,
        [
            ledger.Outcome(
                rows[0].id, "deferred", last_error="451 later", next_attempt_at=t0 + 100
            ),
            ledger.Outcome(
                rows[1].id, "deferred", last_error="451 later", next_attempt_at=t0 + 900
            ),
            ledger.Outcome(rows[2].id, "sent"),
        ],
    )
    assert ledger.requeue_due(store, cid, at=t0 + 50, expire_after=1000) == (0, 0)
    assert ledger.requeue_due(store, cid, at=t0 + 200, expire_after=1000) == (1, 0)
    assert _states(store, cid)["a@x.test"] == "pending"
    # past expire_after since the first attempt: failed, with the last answer kept
    assert ledger.requeue_due(store, cid, at=t0 + 1001, expire_after=1000) == (0, 1)
    assert _states(store, cid)["b@x.test"] == "failed"
    (err,) = [e for e in ledger.last_errors(store, cid) if e.key == "b@x.test"]
    assert "451 later" in err.error and "gave up" in err.error


def test_retry_moves_chosen_states_back(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    rows = ledger.read_pending(store, cid, after_id=0, limit=10)
    ledger.claim(store, [ledger.Claim(r.id, f"<{r.id}@m>") for r in rows])
    ledger.record(
        store,
        [
            ledger.Outcome(rows[0].id, "failed", provider="p", last_error="550 no"),
            ledger.Outcome(rows[1].id, "unknown", provider="p", last_error="timeout"),
            ledger.Outcome(rows[2].id, "sent", provider="p"),
        ],
    )
    assert ledger.retry(store, cid, ["unknown"]) == 1
    assert ledger.retry(store, cid, ["sent", "suppressed"]) == 0  # never re-sends those
    assert _states(store, cid) == {"a@x.test": "failed", "b@x.test": "pending", "c@x.test": "sent"}
    assert ledger.provider_counts(store, cid) == {"p": {"failed": 1, "pending": 1, "sent": 1}}


def test_content_hash_guard(store: Store) -> None:
    row = campaigns.ensure(store, "c")
    assert campaigns.check_content(store, row, "h1", allow_changed=False) is False
    row = campaigns.ensure(store, "c")
    # nothing attempted yet: a change is simply recorded
    assert campaigns.check_content(store, row, "h2", allow_changed=False) is False
    _plan(store, row.id, ["a@x.test"])
    (r,) = ledger.read_pending(store, row.id, after_id=0, limit=1)
    ledger.claim(store, [ledger.Claim(r.id, "<a@m>")])
    row = campaigns.ensure(store, "c")
    with pytest.raises(ContentChangedError, match="changed since this campaign started sending"):
        campaigns.check_content(store, row, "h3", allow_changed=False)
    assert campaigns.check_content(store, row, "h3", allow_changed=True) is True
    assert campaigns.ensure(store, "c").content_hash == "h3"


def test_pause_and_unpause(store: Store) -> None:
    row = campaigns.ensure(store, "c")
    campaigns.check_not_paused(row)
    campaigns.pause(store, row.id, "hard bounces reached 9%")
    paused = campaigns.ensure(store, "c")
    with pytest.raises(CampaignPausedError, match="hard bounces reached 9%"):
        campaigns.check_not_paused(paused)
    assert campaigns.unpause(store, row.id) is True
    assert campaigns.unpause(store, row.id) is False
    campaigns.check_not_paused(campaigns.ensure(store, "c"))


def test_runs_are_recorded(store: Store) -> None:
    cid = campaigns.ensure(store, "c").id
    run = campaigns.start_run(store, cid)
    assert campaigns.last_run(store, cid) is not None
    campaigns.finish_run(store, run, 3, {"reason": "limit"})
    last = campaigns.last_run(store, cid)
    assert last is not None and last.exit_code == 3 and last.summary == {"reason": "limit"}
