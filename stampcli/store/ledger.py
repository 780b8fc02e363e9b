"""The campaign ledger: one row per (campaign, recipient) and the moves between its states.

States: ``pending`` (planned, not yet attempted or due again), ``sending``
(handed to a provider, answer not recorded yet), ``sent``, ``deferred``
(transient failure; due again at ``next_attempt_at`` until ``expire_after``),
``failed`` (permanent), ``unknown`` (handed over, outcome not known: a crash or
a timeout) and ``suppressed``.

Every write here is a batch in one transaction (executemany, hundreds of rows)
because a commit per message would cap a run at a few hundred messages a
second. The order of writes is what makes a crash harmless: rows turn
``sending`` and commit *before* their messages leave, and turn ``sent`` after
the provider took them, so a process killed at any instant leaves only its
in-flight rows as ``sending``, and the next run calls them ``unknown``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable, Sequence
from itertools import groupby, islice
from typing import Any

from stampcli.records import Claim as Claim
from stampcli.records import ErrorRow as ErrorRow
from stampcli.records import LedgerRow as LedgerRow
from stampcli.records import NewRow as NewRow
from stampcli.records import Outcome as Outcome
from stampcli.records import PendingRow as PendingRow
from stampcli.store.db import LEDGER_STATES, Store, now

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEFERRED = "deferred"
FAILED = "failed"
UNKNOWN = "unknown"
SUPPRESSED = "suppressed"
STATES = LEDGER_STATES  # the schema's check lists them: (PENDING, SENDING, SENT, ...)
# States ``stamp retry`` may move back to pending.
RETRYABLE = (FAILED, UNKNOWN, DEFERRED)

_CHUNK = 1000  # rows per executemany when planning; one transaction per chunk


def _chunks(rows: Iterable[Any], size: int) -> Iterable[list[Any]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def insert(store: Store, campaign_id: int, rows: Iterable[NewRow]) -> int:
    """Plan ``rows``; recipients already in the ledger are left alone. Returns rows added."""
    counts = deque(insert_steps(store, campaign_id, rows), maxlen=1)  # the last is the total
    return counts[0] if counts else 0


def insert_steps(
    store: Store, campaign_id: int, rows: Iterable[NewRow]
) -> Generator[int, None, int]:
    """:func:`insert` one committed chunk at a time: yields the rows added so far."""
    added = 0
    ts = now()
    for chunk in _chunks(rows, _CHUNK):
        with store.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO ledger (campaign_id, key, email, fields, state, "
                "last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (campaign_id, r.key, r.email, r.fields, r.state, r.last_error, ts, ts)
                    for r in chunk
                ],
            )
            added += conn.total_changes - before
        yield added
    return added


# last_error of a row a dead run left `sending` (counted by count_stale_unknown)
STALE_ERROR = (
    "the run sending it stopped before the answer was recorded; it may have been "
    "delivered (stamp retry --unknown sends it again)"
)


def mark_stale_sending(store: Store, campaign_id: int) -> int:
    """Rows a dead run left ``sending`` become ``unknown``; returns how many.

    Only call this while holding the campaign's lock: then no live run has rows
    in flight, and whatever is ``sending`` was handed over by a run that died.
    """
    with store.transaction() as conn:
        return conn.execute(
            "UPDATE ledger SET state = 'unknown', updated_at = ?, last_error = ? "
            "WHERE campaign_id = ? AND state = 'sending'",
            (now(), STALE_ERROR, campaign_id),
        ).rowcount


def count_stale_unknown(store: Store, campaign_id: int) -> int:
    """Rows ``unknown`` because the run sending them died (see :func:`mark_stale_sending`)."""
    with store.errors():
        row = store.conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE campaign_id = ? AND state = 'unknown' "
            "AND last_error = ?",
            (campaign_id, STALE_ERROR),
        ).fetchone()
    return int(row[0])


def last_second_rate(store: Store, campaign_id: int) -> float:
    """Messages recorded ``sent`` in the last second before the latest one, per second."""
    with store.errors():
        (last,) = store.conn.execute(
            "SELECT MAX(sent_at) FROM ledger WHERE campaign_id = ? AND state = 'sent'",
            (campaign_id,),
        ).fetchone()
        if last is None:
            return 0.0
        (n,) = store.conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE campaign_id = ? AND state = 'sent' AND sent_at > ?",
            (campaign_id, last - 1.0),
        ).fetchone()
    return float(n)


def requeue_due(
    store: Store, campaign_id: int, *, at: float, expire_after: float
) -> tuple[int, int]:
    """Deferred rows that are due go back to pending; those past ``expire_after`` fail.

    Returns (requeued, expired). ``expire_after`` counts from a row's first attempt.
    """
    with store.transaction() as conn:
        expired = conn.execute(
            "UPDATE ledger SET state = 'failed', updated_at = ?, last_error = "
            "'gave up: still deferred ' || CAST(CAST(? AS INTEGER) AS TEXT) || ' s after the "
            "first attempt; last answer: ' || COALESCE(last_error, '') "
            "WHERE campaign_id = ? AND state = 'deferred' AND first_attempt_at IS NOT NULL "
            "AND first_attempt_at + ? <= ?",
            (at, expire_after, campaign_id, expire_after, at),
        ).rowcount
        requeued = conn.execute(
            "UPDATE ledger SET state = 'pending', updated_at = ? WHERE campaign_id = ? "
            "AND state = 'deferred' AND COALESCE(next_attempt_at, 0) <= ?",
            (at, campaign_id, at),
        ).rowcount
    return requeued, expired


def read_pending(store: Store, campaign_id: int, *, after_id: int, limit: int) -> list[PendingRow]:
    """Up to ``limit`` pending rows with ids above ``after_id``, in id order (no write)."""
    with store.errors():
        rows = store.conn.execute(
            "SELECT id, key, email, fields, attempts, first_attempt_at FROM ledger "
            "WHERE campaign_id = ? AND state = 'pending' AND id > ? ORDER BY id LIMIT ?",
            (campaign_id, after_id, limit),
        ).fetchall()
    return list(map(PendingRow._make, rows))


def claim(store: Store, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()) -> int:
    """Turn ``claims`` pending -> sending and ``suppressed`` (id, why) -> suppressed, in one commit.

    Returns the number of rows claimed; rows no longer pending are left alone.
    This commit must happen before the claimed messages leave.
    """
    ts = now()
    with store.transaction() as conn:
        if suppressed:
            conn.executemany(
                "UPDATE ledger SET state = 'suppressed', last_error = ?, updated_at = ? "
                "WHERE id = ? AND state = 'pending'",
                [(why, ts, row_id) for row_id, why in suppressed],
            )
        before = conn.total_changes
        conn.executemany(
            "UPDATE ledger SET state = 'sending', attempts = attempts + 1, message_id = ?, "
            "first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ? "
            "WHERE id = ? AND state = 'pending'",
            [(c.message_id, ts, ts, c.id) for c in claims],
        )
        return conn.total_changes - before


_RECORD = (
    "UPDATE ledger SET state = ?, provider = COALESCE(?, provider), "
    "provider_message_id = COALESCE(?, provider_message_id), last_error = ?, "
    "next_attempt_at = ?, attempts = attempts + ?, updated_at = ?, "
    # a claim undone before the message left (extra_attempts -1) was no attempt
    "first_attempt_at = CASE WHEN attempts + ? <= 0 THEN NULL ELSE first_attempt_at END, "
    "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
    "WHERE id = ? AND state IN ('sending', 'pending')"
)
# _RECORD for the common outcome, sent at the first try: what it writes then, with a
# quarter fewer instructions a row (fewer values to bind, no CASE to evaluate)
_RECORD_SENT = (
    "UPDATE ledger SET state = 'sent', provider = COALESCE(?, provider), "
    "provider_message_id = COALESCE(?, provider_message_id), last_error = NULL, "
    "next_attempt_at = NULL, updated_at = ?, sent_at = ? "
    "WHERE id = ? AND state IN ('sending', 'pending')"
)


def _sent_first_time(o: Outcome) -> bool:
    return (
        o.state == SENT
        and o.extra_attempts == 0
        and o.last_error is None
        and o.next_attempt_at is None
    )


def record(store: Store, outcomes: Sequence[Outcome]) -> None:
    """Write the fate of a batch of rows (from ``sending``, or ``pending`` for render failures)."""
    if not outcomes:
        return
    ts = now()
    with store.transaction() as conn:
        # runs of one kind, in the order given: what a row written twice in one batch
        # ends as depends on that order
        for sent, run in groupby(outcomes, _sent_first_time):
            if sent:
                conn.executemany(
                    _RECORD_SENT, [(o.provider, o.provider_message_id, ts, ts, o.id) for o in run]
                )
                continue
            conn.executemany(
                _RECORD,
                [
                    (
                        o.state,
                        o.provider,
                        o.provider_message_id,
                        o.last_error,
                        o.next_attempt_at,
                        o.extra_attempts,
                        ts,
                        o.extra_attempts,
                        o.state,
                        ts,
                        o.id,
                    )
                    for o in run
                ],
            )


def retry(store: Store, campaign_id: int, states: Sequence[str]) -> int:
    """Move rows in ``states`` (failed, unknown, deferred) back to pending; returns how many.

    A retried row starts a fresh expiry window; its Message-ID stays the same,
    so a re-sent ``unknown`` is recognisable downstream as the same message.
    """
    wanted = [s for s in states if s in RETRYABLE]
    if not wanted:
        return 0
    marks = ",".join("?" * len(wanted))
    with store.transaction() as conn:
        return conn.execute(
            f"UPDATE ledger SET state = 'pending', next_attempt_at = NULL, "
            f"first_attempt_at = NULL, updated_at = ? "
            f"WHERE campaign_id = ? AND state IN ({marks})",
            (now(), campaign_id, *wanted),
        ).rowcount


def counts(store: Store, campaign_id: int) -> dict[str, int]:
    """Rows by state (every state present, zero if none)."""
    out = dict.fromkeys(STATES, 0)
    with store.errors():
        for state, n in store.conn.execute(
            "SELECT state, COUNT(*) FROM ledger WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        ):
            out[state] = n
    return out


def provider_counts(store: Store, campaign_id: int) -> dict[str, dict[str, int]]:
    """Rows by provider and state, for rows a provider answered."""
    out: dict[str, dict[str, int]] = {}
    with store.errors():
        for provider, state, n in store.conn.execute(
            "SELECT provider, state, COUNT(*) FROM ledger WHERE campaign_id = ? "
            "AND provider IS NOT NULL GROUP BY provider, state ORDER BY provider",
            (campaign_id,),
        ):
            out.setdefault(provider, {})[state] = n
    return out


def last_errors(store: Store, campaign_id: int, limit: int = 10) -> list[ErrorRow]:
    """The most recent rows with an error, newest first."""
    with store.errors():
        rows = store.conn.execute(
            "SELECT key, state, provider, last_error, attempts, updated_at FROM ledger "
            "WHERE campaign_id = ? AND last_error IS NOT NULL AND state IN "
            "('failed', 'deferred', 'unknown') ORDER BY updated_at DESC, id DESC LIMIT ?",
            (campaign_id, limit),
        ).fetchall()
    return [ErrorRow(*row) for row in rows]


def answer_stats(store: Store, campaign_id: int) -> tuple[int, int, int]:
    """(answers, hard bounces, complaints) from providers in earlier runs, for auto-stop.

    An answer is a provider's verdict on a recipient (sent, failed or deferred
    with a provider recorded); a bounce or complaint is a failed row whose
    address that provider's answer put on the suppression list.
    """
    with store.errors():
        row = store.conn.execute(
            "SELECT "
            "COALESCE(SUM(l.state IN ('sent', 'failed', 'deferred')), 0), "
            "COALESCE(SUM(l.state = 'failed' AND s.reason IN ('hard_bounce', 'invalid')), 0), "
            "COALESCE(SUM(l.state = 'failed' AND s.reason = 'complaint'), 0) "
            "FROM ledger l LEFT JOIN suppressions s "
            "ON s.key = l.key AND s.scope = '' AND s.source = l.provider "
            "WHERE l.campaign_id = ? AND l.provider IS NOT NULL",
            (campaign_id,),
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


_ROW_COLUMNS = (
    "id, key, email, fields, state, attempts, provider, provider_message_id, message_id, "
    "last_error, next_attempt_at, first_attempt_at, created_at, updated_at, sent_at"
)


def rows(store: Store, campaign_id: int, state: str | None = None) -> list[LedgerRow]:
    """Every row of the campaign (in ``state`` only, if given), in id order."""
    sql = f"SELECT {_ROW_COLUMNS} FROM ledger WHERE campaign_id = ?"
    params: tuple[Any, ...] = (campaign_id,)
    if state is not None:
        sql += " AND state = ?"
        params = (campaign_id, state)
    with store.errors():
        found = store.conn.execute(sql + " ORDER BY id", params).fetchall()
    return [LedgerRow(*r) for r in found]


def row(store: Store, campaign_id: int, key: str) -> LedgerRow | None:
    """The campaign's row for recipient ``key``, or None if it was never planned."""
    with store.errors():
        found = store.conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM ledger WHERE campaign_id = ? AND key = ?",
            (campaign_id, key),
        ).fetchone()
    return None if found is None else LedgerRow(*found)


def attempted(store: Store, campaign_id: int) -> bool:
    """Whether any row of the campaign was ever handed to a provider."""
    with store.errors():
        return (
            store.conn.execute(
                "SELECT 1 FROM ledger WHERE campaign_id = ? AND attempts > 0 LIMIT 1",
                (campaign_id,),
            ).fetchone()
            is not None
        )


class SQLiteLedger:
    """:class:`stampcli.store.protocols.LedgerStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def insert(self, campaign_id: int, rows: Iterable[NewRow]) -> int:
        return insert(self._store, campaign_id, rows)

    def insert_steps(self, campaign_id: int, rows: Iterable[NewRow]) -> Generator[int, None, int]:
        return insert_steps(self._store, campaign_id, rows)

    def mark_stale_sending(self, campaign_id: int) -> int:
        return mark_stale_sending(self._store, campaign_id)

    def count_stale_unknown(self, campaign_id: int) -> int:
        return count_stale_unknown(self._store, campaign_id)

    def last_second_rate(self, campaign_id: int) -> float:
        return last_second_rate(self._store, campaign_id)

    def requeue_due(self, campaign_id: int, *, at: float, expire_after: float) -> tuple[int, int]:
        return requeue_due(self._store, campaign_id, at=at, expire_after=expire_after)

    def read_pending(self, campaign_id: int, *, after_id: int, limit: int) -> list[PendingRow]:
        return read_pending(self._store, campaign_id, after_id=after_id, limit=limit)

    def claim(self, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()) -> int:
        return claim(self._store, claims, suppressed)

    def record(self, outcomes: Sequence[Outcome]) -> None:
        record(self._store, outcomes)

    def retry(self, campaign_id: int, states: Sequence[str]) -> int:
        return retry(self._store, campaign_id, states)

    def counts(self, campaign_id: int) -> dict[str, int]:
        return counts(self._store, campaign_id)

    def provider_counts(self, campaign_id: int) -> dict[str, dict[str, int]]:
        return provider_counts(self._store, campaign_id)

    def last_errors(self, campaign_id: int, limit: int = 10) -> list[ErrorRow]:
        return last_errors(self._store, campaign_id, limit)

    def answer_stats(self, campaign_id: int) -> tuple[int, int, int]:
        return answer_stats(self._store, campaign_id)

    def attempted(self, campaign_id: int) -> bool:
        return attempted(self._store, campaign_id)

    def rows(self, campaign_id: int, state: str | None = None) -> list[LedgerRow]:
        return rows(self._store, campaign_id, state)

    def row(self, campaign_id: int, key: str) -> LedgerRow | None:
        return row(self._store, campaign_id, key)
