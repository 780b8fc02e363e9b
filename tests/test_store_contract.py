"""The store contract: what every backend of ``stampcli.store.protocols.Store`` must do.

Every test here goes through the protocol only (``store.ledger.claim(...)``,
never a connection or SQL), and runs once per backend in ``BACKENDS``. A new
backend is one more entry there: a :class:`Backend` that opens a fresh, empty
store and can open a second handle on the same one. The SQLite backend's own
internals (schema, migrations, WAL) are tested in ``test_store_sqlite.py``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stampcli.clock import FakeClock
from stampcli.errors import ContentChangedError, InputError, LockedError, StoreError
from stampcli.records import Claim, Contact, EventRow, NewRow, Outcome, Suppression
from stampcli.store import campaigns as campaign_rules
from stampcli.store import open_store, protocols
from stampcli.store.ledger import STATES
from stampcli.store.quota import DailyQuota


@dataclass(frozen=True)
class Backend:
    """A way to reach one fresh store of one backend."""

    name: str
    url: str

    def open(self, *, readonly: bool = False) -> protocols.Store:
        return open_store(self.url, readonly=readonly)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'stamp.db'}")


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # a fresh database of the session's throwaway cluster (tests/pg_cluster.py); skips
    # the test, saying why, where PostgreSQL is not installed
    return Backend("postgres", request.getfixturevalue("pg_url"))


# name -> a function of the test's request and a fresh directory that gives a fresh backend
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[protocols.Store]:
    with backend.open() as s:
        yield s


def _plan(store: protocols.Store, cid: int, keys: list[str]) -> int:
    return store.ledger.insert(cid, [NewRow(k, k.upper(), json.dumps({"k": k})) for k in keys])


def _states(store: protocols.Store, cid: int) -> dict[str, str]:
    return {r.key: r.state for r in store.ledger.rows(cid)}


def _claim_all(store: protocols.Store, cid: int) -> list[int]:
    rows = store.ledger.read_pending(cid, after_id=0, limit=1000)
    store.ledger.claim([Claim(r.id, f"<{r.key}>") for r in rows])
    return [r.id for r in rows]


# ----------------------------------------------------------------- the store itself


def test_a_store_names_where_it_is_and_closes(backend: Backend) -> None:
    with backend.open() as store:
        assert store.location
        assert store.ledger is store.ledger  # one part per store, not one per call
        with store.checkpoints_in_background():
            assert store.campaigns.ensure("c").name == "c"
    with backend.open() as again:  # what was written is there for the next handle
        assert again.campaigns.get("c") is not None


def test_a_read_only_store_that_does_not_exist_is_refused(backend: Backend) -> None:
    with pytest.raises(StoreError, match="no such database"):
        backend.open(readonly=True)


def test_a_read_only_store_reads(backend: Backend) -> None:
    with backend.open() as store:
        cid = store.campaigns.ensure("c").id
        _plan(store, cid, ["a@x.test"])
    with backend.open(readonly=True) as ro:
        assert ro.ledger.counts(cid)["pending"] == 1


# ----------------------------------------------------------------- ledger


def test_planning_is_idempotent_per_campaign(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert _plan(store, cid, [f"u{i}@x.test" for i in range(2500)]) == 2500
    assert _plan(store, cid, [f"u{i}@x.test" for i in range(2600)]) == 100
    other = store.campaigns.ensure("other").id
    assert _plan(store, other, ["u1@x.test"]) == 1
    assert store.ledger.counts(cid)["pending"] == 2600
    assert store.ledger.counts(other)["pending"] == 1


def test_planning_in_steps_reports_progress_and_the_total(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    rows = [NewRow(f"u{i}@x.test", f"u{i}@x.test", "{}") for i in range(2500)]
    steps = store.ledger.insert_steps(cid, rows)
    seen: list[int] = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as done:
            total = done.value
            break
    assert total == 2500 and seen[-1] == 2500 and seen == sorted(seen) and len(seen) >= 2
    assert store.ledger.counts(cid)["pending"] == 2500  # committed as it went


def test_planned_rows_keep_what_was_given(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    store.ledger.insert(
        cid,
        [
            NewRow("a@x.test", "A@x.test", '{"n": 1}'),
            NewRow("b@x.test", "b@x.test", "{}", "suppressed", "on the suppression list"),
        ],
    )
    a = store.ledger.row(cid, "a@x.test")
    assert a is not None
    assert (a.email, a.fields, a.state, a.attempts) == ("A@x.test", '{"n": 1}', "pending", 0)
    assert a.provider is a.message_id is a.sent_at is a.first_attempt_at is None
    b = store.ledger.row(cid, "b@x.test")
    assert b is not None and (b.state, b.last_error) == ("suppressed", "on the suppression list")
    assert store.ledger.row(cid, "nobody@x.test") is None
    assert [r.key for r in store.ledger.rows(cid, "suppressed")] == ["b@x.test"]


def test_read_pending_pages_in_id_order_without_writing(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    keys = [f"u{i:02}@x.test" for i in range(25)]
    _plan(store, cid, keys)
    first = store.ledger.read_pending(cid, after_id=0, limit=10)
    assert [r.key for r in first] == keys[:10]
    assert first[0].field_dict() == {"k": keys[0]} and first[0].email == keys[0].upper()
    second = store.ledger.read_pending(cid, after_id=first[-1].id, limit=100)
    assert [r.key for r in second] == keys[10:]
    assert store.ledger.counts(cid)["pending"] == 25


def test_claim_then_record_moves_only_claimed_rows(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    rows = store.ledger.read_pending(cid, after_id=0, limit=10)
    assert store.ledger.claim([Claim(rows[0].id, "<a@m>")], [(rows[1].id, "suppressed")]) == 1
    assert _states(store, cid) == {
        "a@x.test": "sending",
        "b@x.test": "suppressed",
        "c@x.test": "pending",
    }
    a = store.ledger.row(cid, "a@x.test")
    assert a is not None and a.attempts == 1 and a.message_id == "<a@m>"
    assert a.first_attempt_at is not None
    assert store.ledger.claim([Claim(rows[0].id, "<a@m>")]) == 0  # no longer pending
    store.ledger.record([Outcome(rows[0].id, "sent", provider="smtp", provider_message_id="q1")])
    a = store.ledger.row(cid, "a@x.test")
    assert a is not None
    assert (a.state, a.attempts, a.provider, a.provider_message_id) == ("sent", 1, "smtp", "q1")
    assert a.sent_at is not None and a.last_error is None
    # a row in a final state is never written again
    store.ledger.record([Outcome(rows[0].id, "failed", last_error="late")])
    assert _states(store, cid)["a@x.test"] == "sent"
    assert store.ledger.attempted(cid)


def test_record_keeps_the_order_of_a_batch(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, [f"u{i}@x.test" for i in range(6)])
    ids = _claim_all(store, cid)
    store.ledger.record(
        [
            Outcome(ids[0], "sent", provider="pm", provider_message_id="m0"),
            Outcome(ids[1], "sent", provider="pm", provider_message_id="m1", extra_attempts=2),
            Outcome(ids[2], "failed", provider="pm", last_error="550 no such user"),
            Outcome(ids[3], "deferred", provider="pm", last_error="421", next_attempt_at=5e9),
            Outcome(ids[4], "pending", extra_attempts=-1),
            Outcome(ids[4], "sent", provider="pm", provider_message_id="m4"),  # order matters
            Outcome(ids[5], "unknown", provider="pm", last_error="timeout"),
            Outcome(ids[5], "failed", provider="pm", last_error="a second answer: ignored"),
        ]
    )
    rows = {r.id: r for r in store.ledger.rows(cid)}
    assert [rows[i].state for i in ids] == [
        "sent", "sent", "failed", "deferred", "sent", "unknown",
    ]  # fmt: skip
    assert rows[ids[1]].attempts == 3
    assert rows[ids[3]].next_attempt_at == 5e9 and rows[ids[3]].last_error == "421"
    assert rows[ids[4]].attempts == 0 and rows[ids[4]].provider_message_id == "m4"
    assert rows[ids[5]].last_error == "timeout"


def test_a_sent_outcome_without_provider_keeps_the_one_recorded(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test"])
    (rid,) = _claim_all(store, cid)
    store.ledger.record([Outcome(rid, "deferred", provider="pm", provider_message_id="m1")])
    store.ledger.retry(cid, ["deferred"])
    store.ledger.claim([Claim(rid, "<a>")])
    store.ledger.record([Outcome(rid, "sent")])
    a = store.ledger.row(cid, "a@x.test")
    assert a is not None and (a.state, a.provider, a.provider_message_id) == ("sent", "pm", "m1")


def test_an_unclaimed_row_shows_no_attempt(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test"])
    (rid,) = _claim_all(store, cid)
    store.ledger.record([Outcome(rid, "pending", extra_attempts=-1)])
    (again,) = store.ledger.read_pending(cid, after_id=0, limit=10)
    assert again.attempts == 0 and again.first_attempt_at is None
    assert not store.ledger.attempted(cid)


def test_stale_sending_becomes_unknown(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test", "b@x.test"])
    rows = store.ledger.read_pending(cid, after_id=0, limit=10)
    store.ledger.claim([Claim(rows[0].id, "<a@m>")])
    assert store.ledger.mark_stale_sending(cid) == 1
    assert store.ledger.mark_stale_sending(cid) == 0
    assert _states(store, cid) == {"a@x.test": "unknown", "b@x.test": "pending"}
    (err,) = store.ledger.last_errors(cid)
    assert err.key == "a@x.test" and err.state == "unknown" and "retry --unknown" in err.error


def test_stale_unknown_rows_are_counted(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record([Outcome(ids[0], "unknown", provider="p", last_error="timeout")])
    assert store.ledger.count_stale_unknown(cid) == 0  # a timeout is not a dead run
    assert store.ledger.mark_stale_sending(cid) == 2
    assert store.ledger.count_stale_unknown(cid) == 2
    store.ledger.retry(cid, ["unknown"])
    assert store.ledger.count_stale_unknown(cid) == 0


def test_last_second_rate_counts_the_latest_second_sent(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert store.ledger.last_second_rate(cid) == 0.0
    _plan(store, cid, [f"u{i}@x.test" for i in range(5)])
    ids = _claim_all(store, cid)
    store.ledger.record([Outcome(i, "sent", provider="p") for i in ids[:3]])
    store.ledger.record([Outcome(ids[3], "failed", provider="p", last_error="550")])
    assert store.ledger.last_second_rate(cid) == 3.0
    other = store.campaigns.ensure("other").id
    assert store.ledger.last_second_rate(other) == 0.0


def test_deferred_rows_come_due_then_expire(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    ids = _claim_all(store, cid)
    first = store.ledger.row(cid, "a@x.test")
    assert first is not None and first.first_attempt_at is not None
    t0 = first.first_attempt_at
    store.ledger.record(
        [
            Outcome(ids[0], "deferred", last_error="451 later", next_attempt_at=t0 + 100),
            Outcome(ids[1], "deferred", last_error="451 later", next_attempt_at=t0 + 900),
            Outcome(ids[2], "sent"),
        ]
    )
    assert store.ledger.requeue_due(cid, at=t0 + 50, expire_after=1000) == (0, 0)
    assert store.ledger.requeue_due(cid, at=t0 + 200, expire_after=1000) == (1, 0)
    assert _states(store, cid)["a@x.test"] == "pending"
    assert store.ledger.requeue_due(cid, at=t0 + 1001, expire_after=1000) == (0, 1)
    assert _states(store, cid)["b@x.test"] == "failed"
    (err,) = [e for e in store.ledger.last_errors(cid) if e.key == "b@x.test"]
    assert "451 later" in err.error and "gave up" in err.error


def test_retry_moves_only_retryable_states_back(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test", "d@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record(
        [
            Outcome(ids[0], "failed", provider="p", last_error="550 no"),
            Outcome(ids[1], "unknown", provider="p", last_error="timeout"),
            Outcome(ids[2], "sent", provider="p"),
            Outcome(ids[3], "deferred", provider="q", last_error="421", next_attempt_at=5e9),
        ]
    )
    assert store.ledger.retry(cid, ["unknown"]) == 1
    assert store.ledger.retry(cid, ["sent", "suppressed", "pending"]) == 0
    assert store.ledger.retry(cid, []) == 0
    b = store.ledger.row(cid, "b@x.test")
    assert b is not None and b.state == "pending" and b.message_id == f"<{b.key}>"
    assert b.first_attempt_at is None and b.next_attempt_at is None
    assert store.ledger.retry(cid, ["failed", "deferred"]) == 2
    assert _states(store, cid) == {
        "a@x.test": "pending",
        "b@x.test": "pending",
        "c@x.test": "sent",
        "d@x.test": "pending",
    }


def test_counts_name_every_state(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert store.ledger.counts(cid) == dict.fromkeys(STATES, 0)
    _plan(store, cid, ["a@x.test", "b@x.test", "c@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record(
        [
            Outcome(ids[0], "failed", provider="p", last_error="550"),
            Outcome(ids[1], "sent", provider="p"),
            Outcome(ids[2], "sent", provider="q"),
        ]
    )
    counts = store.ledger.counts(cid)
    assert set(counts) == set(STATES)
    assert (counts["sent"], counts["failed"], counts["pending"]) == (2, 1, 0)
    assert store.ledger.provider_counts(cid) == {"p": {"failed": 1, "sent": 1}, "q": {"sent": 1}}


def test_last_errors_are_newest_first_and_limited(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, [f"u{i}@x.test" for i in range(12)])
    ids = _claim_all(store, cid)
    for n, rid in enumerate(ids):  # one batch each: each a later update than the one before
        store.ledger.record([Outcome(rid, "failed", provider="p", last_error=f"550 #{n}")])
    errors = store.ledger.last_errors(cid, limit=3)
    assert [e.error for e in errors] == ["550 #11", "550 #10", "550 #9"]
    assert len(store.ledger.last_errors(cid)) == 10
    assert errors[0].attempts == 1 and errors[0].provider == "p"


def test_answer_stats_count_what_the_provider_said(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, ["ok@x.test", "bounce@x.test", "angry@x.test", "later@x.test", "new@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record(
        [
            Outcome(ids[0], "sent", provider="p"),
            Outcome(ids[1], "failed", provider="p", last_error="550"),
            Outcome(ids[2], "failed", provider="p", last_error="complaint"),
            Outcome(ids[3], "deferred", provider="p", last_error="421", next_attempt_at=5e9),
        ]
    )
    store.suppressions.add("bounce@x.test", "hard_bounce", "p")
    store.suppressions.add("angry@x.test", "complaint", "p")
    store.suppressions.add("ok@x.test", "complaint", "elsewhere")  # not this provider's answer
    assert store.ledger.answer_stats(cid) == (4, 1, 1)


# ----------------------------------------------------------------- campaigns and runs


def test_campaigns_are_made_once_and_forgotten_with_everything(store: protocols.Store) -> None:
    assert store.campaigns.get("news") is None
    row = store.campaigns.ensure("news")
    assert store.campaigns.ensure("news") == row
    assert store.campaigns.get("news") == row
    assert row.content_hash is None and row.paused_reason is None
    _plan(store, row.id, ["a@x.test"])
    store.locks.acquire(row.id, "elsewhere.invalid:1:ab")
    store.runs.start(row.id)
    assert store.campaigns.delete("news") is True
    assert store.campaigns.delete("news") is False
    assert store.campaigns.get("news") is None
    again = store.campaigns.ensure("news")
    assert store.ledger.counts(again.id)["pending"] == 0
    assert store.locks.holder(again.id) is None and store.runs.last(again.id) is None
    assert store.locks.holder(row.id) is None and store.ledger.rows(row.id) == []


def test_content_hash_rule_over_the_protocol(store: protocols.Store) -> None:
    row = store.campaigns.ensure("c")
    assert campaign_rules.check_content(store, row, "h1", allow_changed=False) is False
    row = store.campaigns.ensure("c")
    assert row.content_hash == "h1"
    # changed before anything was attempted: simply recorded
    assert campaign_rules.check_content(store, row, "h2", allow_changed=False) is False
    _plan(store, row.id, ["a@x.test"])
    _claim_all(store, row.id)
    row = store.campaigns.ensure("c")
    with pytest.raises(ContentChangedError, match="changed since this campaign started sending"):
        campaign_rules.check_content(store, row, "h3", allow_changed=False)
    assert store.campaigns.ensure("c").content_hash == "h2"  # refused: nothing stored
    assert campaign_rules.check_content(store, row, "h3", allow_changed=True) is True
    store.campaigns.set_content_hash(row.id, "h4")
    assert store.campaigns.ensure("c").content_hash == "h4"


def test_pause_and_unpause(store: protocols.Store) -> None:
    row = store.campaigns.ensure("c")
    assert store.campaigns.unpause(row.id) is False
    store.campaigns.pause(row.id, "complaints 2.0% over 0.5%")
    paused = store.campaigns.ensure("c")
    assert paused.paused_reason == "complaints 2.0% over 0.5%" and paused.paused_at is not None
    assert store.campaigns.unpause(row.id) is True
    assert store.campaigns.unpause(row.id) is False
    again = store.campaigns.ensure("c")
    assert again.paused_reason is None and again.paused_at is None


def test_audience_marks_round_trip(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert store.campaigns.audience_mark(cid) is None
    mark = {"file": {"size": 10, "sha256": "ab"}, "lists": [["news", 1.5, 2, 1.5]]}
    store.campaigns.set_audience_mark(cid, mark)
    assert store.campaigns.audience_mark(cid) == mark
    store.campaigns.set_audience_mark(cid, None)
    assert store.campaigns.audience_mark(cid) is None


def test_lists_mark_changes_when_a_list_does(store: protocols.Store) -> None:
    assert store.campaigns.lists_mark([]) == []
    assert store.campaigns.lists_mark(["nothing"]) == []
    store.contacts.upsert_contacts("news", [Contact("a@x.test", "a@x.test", {"n": "1"})])
    store.contacts.upsert_contacts("b-list", [Contact("b@x.test", "b@x.test", {})])
    mark = store.campaigns.lists_mark(["news", "b-list", "nothing"])
    assert [m[0] for m in mark] == ["b-list", "news"] and mark[1][2] == 1
    assert json.loads(json.dumps(mark)) == mark  # it goes into a JSON mark as it is
    store.contacts.upsert_contacts("news", [Contact("a@x.test", "a@x.test", {"n": "1"})])
    assert store.campaigns.lists_mark(["news", "b-list"]) == mark  # re-import: no change
    store.contacts.upsert_contacts("news", [Contact("c@x.test", "c@x.test", {})])
    changed = store.campaigns.lists_mark(["news"])
    assert changed[0][2] == 2 and changed != mark[1:]


def test_runs_are_recorded(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert store.runs.last(cid) is None
    first = store.runs.start(cid)
    second = store.runs.start(cid)
    last = store.runs.last(cid)
    assert last is not None and last.id == second != first and last.ended_at is None
    store.runs.finish(second, 3, {"reason": "limit", "counts": {"sent": 2}})
    last = store.runs.last(cid)
    assert last is not None and last.exit_code == 3 and last.ended_at is not None
    assert last.summary == {"reason": "limit", "counts": {"sent": 2}}
    store.runs.finish(first, None, None)
    assert store.runs.last(cid) == last


# ----------------------------------------------------------------- contacts


def _people(*emails: str, **fields: str) -> list[Contact]:
    return [Contact(e.lower(), e, dict(fields, email=e), 0) for e in emails]


def test_upsert_counts_and_a_reimport_writes_nothing(store: protocols.Store) -> None:
    first = store.contacts.upsert_contacts("news", _people("a@x.test", "b@x.test", plan="pro"))
    assert (first.new, first.updated, first.unchanged, first.total) == (2, 0, 0, 2)
    before = store.contacts.stored("news")
    listed = store.contacts.list_summaries()
    again = store.contacts.upsert_contacts("news", _people("a@x.test", "b@x.test", plan="pro"))
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert store.contacts.stored("news") == before and store.contacts.list_summaries() == listed
    third = store.contacts.upsert_contacts("news", _people("b@x.test", "c@x.test", plan="team"))
    assert (third.new, third.updated, third.unchanged) == (1, 1, 0)
    stored = {c.key: c for c in store.contacts.stored("news")}
    assert stored["b@x.test"].fields["plan"] == "team"
    assert stored["b@x.test"].updated_at >= stored["b@x.test"].added_at


def test_stored_contacts_come_in_import_order(store: protocols.Store) -> None:
    store.contacts.upsert_contacts("l", _people("zed@x.test", "amy@x.test", plan="a"))
    store.contacts.upsert_contacts("l", _people("bob@x.test", "zed@x.test", plan="b"))
    stored = store.contacts.stored("l")
    assert [c.key for c in stored] == ["zed@x.test", "amy@x.test", "bob@x.test"]
    assert [c.fields["plan"] for c in stored] == ["b", "a", "b"]
    assert "added_at" not in stored[0].fields  # as imported: iter_list adds it
    assert [c.key for c in store.contacts.iter_list("l")] == [c.key for c in stored]


def test_upsert_merges_fields_and_takes_the_new_address(store: protocols.Store) -> None:
    store.contacts.upsert_contacts(
        "l", [Contact("a@x.test", "a@x.test", {"plan": "pro", "x": "1"})]
    )
    store.contacts.upsert_contacts("l", [Contact("a@x.test", "A@x.test", {"plan": "team"})])
    (got,) = list(store.contacts.iter_list("l"))
    assert got.email == "A@x.test" and got.fields["plan"] == "team" and got.fields["x"] == "1"
    assert got.fields["added_at"].endswith("Z")
    assert store.contacts.list_fields("l") == ["plan", "x"]


def test_upsert_rows_counts_batches(store: protocols.Store) -> None:
    seen: list[int] = []
    counts = store.contacts.upsert_rows(
        "l",
        [(f"u{i}@x.test", f"u{i}@x.test", {"n": str(i)}, i + 2) for i in range(30)],
        on_batch=lambda c: seen.append(c.total),
    )
    assert counts.new == 30 and seen[-1] == 30
    assert store.contacts.list_keys("l") == {f"u{i}@x.test" for i in range(30)}


def test_lists_read_back_in_import_order(store: protocols.Store) -> None:
    emails = [f"u{i}@x.test" for i in range(25_000)]  # more than one page of any backend
    store.contacts.upsert_contacts("big", _people(*emails, country="DE"))
    store.contacts.upsert_contacts("small", [Contact("z@x.org", "z@x.org", {"Name": "Z"})])
    assert [c.email for c in store.contacts.iter_list("big")] == emails
    summaries = {s.name: s for s in store.contacts.list_summaries()}
    assert [s.name for s in store.contacts.list_summaries()] == ["big", "small"]
    assert summaries["big"].contacts == 25_000 and summaries["big"].fields == ["country", "email"]
    assert summaries["small"].fields == ["Name"] and summaries["small"].created_at > 0
    assert store.contacts.list_exists("small") and not store.contacts.list_exists("smal")


def test_an_empty_import_still_makes_the_list(store: protocols.Store) -> None:
    counts = store.contacts.upsert_contacts("later", [])
    assert counts.total == 0 and store.contacts.list_exists("later")
    assert list(store.contacts.iter_list("later")) == []
    with pytest.raises(InputError, match="name"):
        store.contacts.upsert_contacts("  ", [])


def test_a_missing_list_names_the_ones_there_are(store: protocols.Store) -> None:
    store.contacts.upsert_contacts("customers", _people("a@x.test"))
    for read in (
        store.contacts.iter_list,
        store.contacts.list_keys,
        store.contacts.list_fields,
        store.contacts.stored,
    ):
        with pytest.raises(InputError, match=r"no list named 'custmers'.*'customers'"):
            read("custmers")


def test_fields_present_finds_names_beyond_the_first_page(store: protocols.Store) -> None:
    people = [Contact(f"u{i}@x.test", f"u{i}@x.test", {"Plan": "x"}) for i in range(1500)]
    people.append(Contact("last@x.test", "last@x.test", {"Country Code": "DE"}))
    store.contacts.upsert_contacts("l", people)

    def normalise(name: str) -> str:
        return name.lower().replace(" ", "_")

    found = store.contacts.fields_present("l", {"plan", "country_code", "missing"}, normalise)
    assert found == {"Plan", "Country Code"}


# ----------------------------------------------------------------- suppressions


def test_suppressions_upsert_keeping_the_first_time(store: protocols.Store) -> None:
    assert store.suppressions.add("a@x.test", "manual", "cli") is True
    first = store.suppressions.get("a@x.test")
    assert first is not None and first.created_at > 0
    assert store.suppressions.add("a@x.test", "hard_bounce", "sendgrid", "550 no user") is False
    got = store.suppressions.get("a@x.test")
    assert got == Suppression(
        "a@x.test", "hard_bounce", "sendgrid", "", "550 no user", first.created_at
    )
    assert store.suppressions.get("a@x.test", "news") is None
    assert store.suppressions.get("b@x.test") is None


def test_suppression_reasons_are_checked(store: protocols.Store) -> None:
    with pytest.raises(InputError, match="bounced"):
        store.suppressions.add("a@x.test", "bounced", "cli")
    with pytest.raises(InputError):
        store.suppressions.add_many([Suppression("a@x.test", "bounced", "file")])
    assert list(store.suppressions.iter_suppressions()) == []
    assert store.suppressions.count() == {}


def test_suppression_scopes(store: protocols.Store) -> None:
    store.suppressions.add("everywhere@x.test", "complaint", "cli")
    store.suppressions.add("news-only@x.test", "unsubscribed", "cli", scope="news")
    keys = ["everywhere@x.test", "news-only@x.test", "fine@x.test"]
    assert store.suppressions.suppressed(keys) == {"everywhere@x.test"}
    assert store.suppressions.suppressed(keys, ["news"]) == {
        "everywhere@x.test",
        "news-only@x.test",
    }
    assert store.suppressions.suppressed(keys, ["offers"]) == {"everywhere@x.test"}
    assert store.suppressions.suppressed([]) == set()


def test_many_suppressions_at_once(store: protocols.Store) -> None:
    items = [Suppression(f"u{i}@x.test", "hard_bounce", "file") for i in range(0, 6000, 2)]
    assert store.suppressions.add_many(items) == 3000
    assert store.suppressions.add_many(items[:10]) == 0
    found = store.suppressions.suppressed([f"u{i}@x.test" for i in range(6000)])
    assert len(found) == 3000 and "u5998@x.test" in found and "u5999@x.test" not in found
    kept = Suppression("old@x.test", "complaint", "mailgun", created_at=1_600_000_000.0)
    store.suppressions.add_many([kept])
    assert store.suppressions.get("old@x.test") == kept
    assert store.suppressions.count() == {"complaint": 1, "hard_bounce": 3000}


def test_suppressions_are_listed_by_address_and_filtered(store: protocols.Store) -> None:
    store.suppressions.add("b@x.test", "manual", "cli")
    store.suppressions.add("a@x.test", "complaint", "p", scope="news")
    store.suppressions.add("a@x.test", "manual", "cli")
    every = list(store.suppressions.iter_suppressions())
    assert [(s.key, s.scope) for s in every] == [
        ("a@x.test", ""),
        ("a@x.test", "news"),
        ("b@x.test", ""),
    ]
    manual = store.suppressions.iter_suppressions(reason="manual")
    assert [s.key for s in manual] == ["a@x.test", "b@x.test"]
    assert [s.key for s in store.suppressions.iter_suppressions(scope="news")] == ["a@x.test"]
    assert store.suppressions.count() == {"complaint": 1, "manual": 2}


def test_lifting_suppressions(store: protocols.Store) -> None:
    store.suppressions.add("a@x.test", "manual", "cli")
    store.suppressions.add("a@x.test", "manual", "cli", scope="news")
    store.suppressions.add("b@x.test", "manual", "cli")
    assert store.suppressions.remove(["a@x.test"], scope="news") == 1
    assert store.suppressions.suppressed(["a@x.test"], ["news"]) == {"a@x.test"}
    assert store.suppressions.remove(["a@x.test", "b@x.test", "c@x.test"]) == 2
    assert store.suppressions.suppressed(["a@x.test", "b@x.test"], ["news"]) == set()
    assert store.suppressions.remove([]) == 0


# ----------------------------------------------------------------- locks


def test_one_live_owner_at_a_time(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("news").id
    first = f"{socket.gethostname()}:{os.getpid()}:aaaa"
    assert store.locks.acquire(cid, first) is None
    held = store.locks.holder(cid)
    assert held is not None and held.owner == first and held.pid == os.getpid()
    assert held.host == socket.gethostname() and held.heartbeat_at >= held.acquired_at
    second = f"{socket.gethostname()}:{os.getpid()}:bbbb"
    with pytest.raises(LockedError, match=first):
        store.locks.acquire(cid, second, campaign_name="news")
    assert store.locks.acquire(cid, first) is None  # ours already: taken again
    store.locks.release(cid, second)  # not ours: nothing happens
    assert (h := store.locks.holder(cid)) is not None and h.owner == first
    assert store.locks.heartbeat(cid, first) is True
    store.locks.release(cid, first)
    assert store.locks.holder(cid) is None
    assert store.locks.heartbeat(cid, first) is False


def test_a_stale_lock_is_taken_over_and_its_owner_told(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("news").id
    other = "elsewhere.invalid:1:abcd"
    store.locks.acquire(cid, other)
    mine = f"{socket.gethostname()}:{os.getpid()}:cccc"
    taken = store.locks.acquire(cid, mine, stale_after=-1.0)  # every heartbeat is too old
    assert taken is not None and taken.owner == other
    assert store.locks.heartbeat(cid, other) is False
    assert (h := store.locks.holder(cid)) is not None and h.owner == mine


def test_two_handles_on_one_store_cannot_both_hold_the_lock(backend: Backend) -> None:
    with backend.open() as a, backend.open() as b:
        cid = a.campaigns.ensure("news").id
        a.locks.acquire(cid, f"{socket.gethostname()}:{os.getpid()}:aaaa")
        with pytest.raises(LockedError):
            b.locks.acquire(cid, f"{socket.gethostname()}:{os.getpid()}:bbbb")


# ----------------------------------------------------------------- quota


def test_quota_takes_no_more_than_the_limit(store: protocols.Store) -> None:
    assert store.quota.usage("relay", "2026-01-01") == 0
    assert store.quota.take("relay", "2026-01-01", 40, 100) == 40
    assert store.quota.take("relay", "2026-01-01", 70, 100) == 60
    assert store.quota.take("relay", "2026-01-01", 1, 100) == 0
    assert store.quota.usage("relay", "2026-01-01") == 100
    assert store.quota.usage("relay", "2026-01-02") == 0  # per day
    assert store.quota.usage("other", "2026-01-01") == 0  # per provider
    store.quota.give_back("relay", "2026-01-01", 30)
    assert store.quota.usage("relay", "2026-01-01") == 70
    store.quota.give_back("relay", "2026-01-01", 500)
    assert store.quota.usage("relay", "2026-01-01") == 0  # never below zero
    store.quota.give_back("never", "2026-01-01", 5)
    assert store.quota.usage("never", "2026-01-01") == 0


def test_daily_quota_is_shared_through_the_store(backend: Backend) -> None:
    clock = FakeClock()
    with backend.open() as a, backend.open() as b:
        one = DailyQuota("relay", 30, a, clock=clock, chunk=10)
        two = DailyQuota("relay", 30, b, clock=clock, chunk=10)
        granted = 0
        for _ in range(40):
            granted += one.reserve() is not None
            granted += two.reserve() is not None
        assert granted == 30 and one.exhausted() and two.exhausted()
        day = one.day
        one.give_back(day)
        assert one.remaining == 1 and not one.exhausted()
        one.close()
        two.close()
        assert a.quota.usage("relay", day) == 29


# ----------------------------------------------------------------- open_store


def test_open_store_takes_a_path_or_a_sqlite_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.db"
    for given in (path, str(path), f"sqlite:///{path}"):
        with open_store(given) as store:
            store.campaigns.ensure(str(given))
            assert store.location == str(path)
    with open_store(path, readonly=True) as store:
        assert store.campaigns.get(str(path)) is not None
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///relative.db") as store:
        assert Path(store.location) == Path("relative.db")
    assert (tmp_path / "relative.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db.internal/stamp", "unknown kind of store 'mysql'"),
        ("sqlite://host/stamp.db", "three slashes"),
        ("sqlite:///stamp.db?mode=ro", "no options"),
        ("sqlite:///", "names no file"),
        ("", "no path given"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_store(url)
    assert "hunter2" not in str(info.value)


# ----------------------------------------------------------------- delivery events


def _event(n: int, recipient: str = "a@x.test", **values: object) -> EventRow:
    fields: dict[str, object] = {
        "provider": "sg",
        "event_id": f"e{n}",
        "type": "delivered",
        "occurred_at": 1000.0 + n,
        "recipient": recipient,
        **values,
    }
    return EventRow(**fields)  # type: ignore[arg-type]


def _sent(store: protocols.Store, name: str, keys: list[str], ids: list[str]) -> int:
    cid = store.campaigns.ensure(name).id
    _plan(store, cid, keys)
    rows = _claim_all(store, cid)
    store.ledger.record([Outcome(i, "sent", "sg", mid) for i, mid in zip(rows, ids, strict=True)])
    return cid


def test_events_are_stored_once_per_provider_and_id(store: protocols.Store) -> None:
    first = store.events.add([_event(1), _event(2), _event(1)], received_at=5.0)
    assert [w.new for w in first] == [True, True, False]
    assert first[2].id == first[0].id and not first[2].applied
    store.events.mark_applied([first[0].id])
    again = store.events.add([_event(1), _event(1, provider="pm")], received_at=6.0)
    assert [(w.new, w.applied) for w in again] == [(False, True), (True, False)]
    assert again[0].id == first[0].id
    assert store.events.unmatched() == 3
    unmatched = store.events.rows(None)
    assert [(r.provider, r.event_id) for r in unmatched] == [
        ("sg", "e1"),
        ("pm", "e1"),
        ("sg", "e2"),
    ]


def test_events_stored_applied_at_once_where_asked(store: protocols.Store) -> None:
    # an event with no effects is stored applied; a repeat answers the first row's flag
    first = store.events.add(
        [_event(1), _event(2), _event(1)], received_at=5.0, applied=[True, False, False]
    )
    assert [(w.new, w.applied) for w in first] == [(True, True), (True, False), (False, True)]
    again = store.events.add([_event(2), _event(3)], received_at=6.0, applied=[True, True])
    assert [(w.new, w.applied) for w in again] == [(False, False), (True, True)]
    assert again[0].id == first[1].id


def test_stored_events_keep_every_field(store: protocols.Store) -> None:
    cid = _sent(store, "c", ["a@x.test"], ["m1"])
    ref = store.events.by_key({("c", "a@x.test")})[("c", "a@x.test")]
    row = _event(
        1, type="bounced", bounce_kind="hard", auto_reply=False, campaign="c",
        campaign_id=cid, ledger_id=ref.ledger_id, matched_by="metadata", message_id="m1",
        reason="550 no such user", url=None, raw='{"x": 1}',
    )  # fmt: skip
    store.events.add([row], received_at=1.0)
    assert store.events.rows(cid) == [row]
    assert store.events.rows(None) == []


def test_events_find_ledger_rows_by_key_message_id_and_address(store: protocols.Store) -> None:
    old = _sent(store, "old", ["a@x.test", "b@x.test"], ["<m1@mg>", "batch"])
    new = _sent(store, "new", ["a@x.test", "c@x.test"], ["m3", "batch"])
    _plan(store, new, ["never@x.test"])  # planned, never sent
    refs = store.events.by_key({("old", "a@x.test"), ("old", "zz@x.test"), ("nope", "a@x.test")})
    assert set(refs) == {("old", "a@x.test")}
    ref = refs[("old", "a@x.test")]
    assert (ref.campaign_id, ref.campaign, ref.key, ref.state) == (old, "old", "a@x.test", "sent")
    by_id = store.events.by_message_id(
        {("<m1@mg>", "a@x.test"), ("batch", "b@x.test"), ("batch", "c@x.test"), ("m3", "b@x.test")}
    )
    assert {k: v.campaign for k, v in by_id.items()} == {
        ("<m1@mg>", "a@x.test"): "old",
        ("batch", "b@x.test"): "old",
        ("batch", "c@x.test"): "new",
    }
    by_address = store.events.by_address({"a@x.test", "b@x.test", "never@x.test", "zz@x.test"})
    assert {k: v.campaign for k, v in by_address.items()} == {"a@x.test": "new", "b@x.test": "old"}


def test_events_resolve_only_unknown_rows(store: protocols.Store) -> None:
    cid = _sent(store, "c", ["a@x.test"], ["m1"])
    _plan(store, cid, ["b@x.test", "c@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record([Outcome(i, "unknown") for i in ids])
    rows = {r.key: r.id for r in store.ledger.rows(cid)}
    moved = store.events.resolve(
        [
            (rows["a@x.test"], "sent", None),  # sent already: left alone
            (rows["b@x.test"], "sent", None),
            (rows["c@x.test"], "failed", "dropped by sg"),
        ]
    )
    assert moved == 2
    got = {r.key: r for r in store.ledger.rows(cid)}
    assert [got[k].state for k in ("a@x.test", "b@x.test", "c@x.test")] == [
        "sent",
        "sent",
        "failed",
    ]
    assert got["b@x.test"].sent_at is not None
    assert got["c@x.test"].last_error == "dropped by sg"
    assert store.events.resolve([]) == 0


def test_soft_bounces_count_within_the_window_since_the_last_delivery(
    store: protocols.Store,
) -> None:
    def bounce(n: int, at: float) -> EventRow:
        return _event(n, type="bounced", bounce_kind="soft", occurred_at=at)

    store.events.add(
        [bounce(1, 10.0), bounce(2, 20.0), _event(3, type="delivered", occurred_at=25.0),
         bounce(4, 30.0), bounce(5, 40.0), _event(6, "b@x.test", type="bounced",
         bounce_kind="soft", occurred_at=35.0), _event(7, type="bounced", bounce_kind="hard",
         occurred_at=45.0)],
        received_at=50.0,
    )  # fmt: skip
    assert store.events.soft_bounces("a@x.test", 0.0) == 2  # 10 and 20 came before a delivery
    assert store.events.soft_bounces("a@x.test", 35.0) == 1
    assert store.events.soft_bounces("b@x.test", 0.0) == 1
    assert store.events.soft_bounces("c@x.test", 0.0) == 0


def test_event_counts_per_campaign_with_unique_recipients(store: protocols.Store) -> None:
    cid = _sent(store, "c", ["a@x.test", "b@x.test"], ["m1", "m2"])
    other = _sent(store, "d", ["a@x.test"], ["m9"])
    rows = [
        _event(1, type="opened"), _event(2, type="opened"), _event(3, "b@x.test", type="opened"),
        _event(4, type="bounced", bounce_kind="hard"), _event(5, "b@x.test", type="bounced",
        bounce_kind="soft"), _event(6, type="clicked", url="https://x.test/"),
    ]  # fmt: skip
    store.events.add(
        [EventRow(**{**_fields(r), "campaign_id": cid}) for r in rows]
        + [EventRow(**{**_fields(_event(7, type="opened")), "campaign_id": other})],
        received_at=1.0,
    )
    counts = store.events.counts(cid)
    assert counts["opened"] == 3 and counts["opened_unique"] == 2
    assert counts["bounced_hard"] == 1 and counts["bounced_soft"] == 1
    assert counts["clicked"] == 1 and counts["clicked_unique"] == 1
    assert counts["delivered"] == 0 and counts["complained_unique"] == 0
    assert store.events.counts(other)["opened"] == 1


def test_autostop_counts_are_the_unique_hard_bounces_and_complaints(
    store: protocols.Store,
) -> None:
    cid = _sent(store, "c", ["a@x.test", "b@x.test"], ["m1", "m2"])
    other = _sent(store, "d", ["a@x.test"], ["m9"])
    rows = [
        _event(1, type="bounced", bounce_kind="hard"), _event(2, type="bounced",
        bounce_kind="hard"), _event(3, "b@x.test", type="bounced", bounce_kind="soft"),
        _event(4, "b@x.test", type="bounced"), _event(5, type="complained"),
        _event(6, "b@x.test", type="complained"), _event(7, "b@x.test", type="delivered"),
    ]  # fmt: skip
    store.events.add(
        [EventRow(**{**_fields(r), "campaign_id": cid}) for r in rows]
        + [EventRow(**{**_fields(_event(9, type="complained")), "campaign_id": other})],
        received_at=1.0,
    )
    store.events.add(
        [EventRow(**{**_fields(_event(10, "c@x.test", type="complained")), "campaign_id": cid})],
        received_at=9.0,
    )
    counts = store.events.counts(cid)
    assert store.events.autostop_counts(cid) == (1, 3)
    assert (counts["bounced_hard_unique"], counts["complained_unique"]) == (1, 3)
    assert store.events.autostop_counts(cid, received_since=5.0) == (0, 1)
    assert store.events.autostop_counts(other) == (0, 1)
    assert store.events.autostop_counts(cid + other + 1) == (0, 0)


def _fields(row: EventRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in EventRow.__dataclass_fields__}


def test_forgetting_a_campaign_keeps_its_events_unmatched(store: protocols.Store) -> None:
    cid = _sent(store, "c", ["a@x.test"], ["m1"])
    ref = store.events.by_key({("c", "a@x.test")})[("c", "a@x.test")]
    store.events.add(
        [_event(1, campaign="c", campaign_id=cid, ledger_id=ref.ledger_id, matched_by="metadata")],
        received_at=1.0,
    )
    assert store.campaigns.delete("c")
    (kept,) = store.events.rows(None)
    assert kept.campaign == "c" and kept.ledger_id is None and kept.campaign_id is None


def test_campaign_settings_round_trip(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("c").id
    assert store.campaigns.settings(cid) == {}
    store.campaigns.set_settings(cid, {"auto_stop": {"min_answers": 5}, "bounce_policy": {}})
    assert store.campaigns.settings(cid) == {"auto_stop": {"min_answers": 5}, "bounce_policy": {}}


def test_event_pull_cursors_per_provider_account(store: protocols.Store) -> None:
    assert store.events.cursor("mg", "mg.example.com") is None
    store.events.set_cursor("mg", "mg.example.com", "100")
    store.events.set_cursor("mg", "other.example.com", "7")
    store.events.set_cursor("mg", "mg.example.com", "200")
    assert store.events.cursor("mg", "mg.example.com") == "200"
    assert store.events.cursor("mg", "other.example.com") == "7"
    assert store.events.cursor("pm", "mg.example.com") is None
