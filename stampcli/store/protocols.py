"""The store as its users see it: typing.Protocols any backend implements.

Declared by what the consumers call (listmonk's ``manager.Store``): the
delivery engine, the planner and router, the CLI commands, the suppression
pulls and the unsubscribe server. :class:`stampcli.store.db.Store` (SQLite)
implements them; a PostgreSQL backend implements the same, and
``tests/test_store_contract.py`` is what it has to pass.

The calls are synchronous and batch-shaped on purpose (architecture 4.5 point
4): a claim or a record takes hundreds of rows in one call, so a networked
backend can run them on one dedicated thread without the engine waiting on a
round trip per message. Rows in and out are the records of
:mod:`stampcli.records`; failures are :class:`stampcli.errors.StoreError`.
Policy stays out of the backends: the content-change rule
(``campaigns.check_content``), the pause check and the daily-quota chunking
(``quota.DailyQuota``) are written once over these protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from stampcli.records import (
    ApiMessageRow,
    CampaignRow,
    Claim,
    Contact,
    ContactRow,
    Enqueued,
    EnqueueRequest,
    ErrorRow,
    EventRow,
    EventWrite,
    Forgotten,
    ImportCounts,
    LedgerRef,
    LedgerRow,
    ListSummary,
    LockInfo,
    NewRow,
    Outcome,
    PendingRow,
    QueuedDefinition,
    QueueEntry,
    RunRow,
    ScheduleRow,
    StoredContact,
    Suppression,
    WorkerInfo,
    WorkerRow,
)
from stampcli.records_report import (
    CampaignRef,
    GroupFigures,
    LinkFigures,
    ProviderFigures,
    ProviderTally,
    ReportSummary,
    Spans,
    TimePoint,
)


class LedgerStore(Protocol):
    """One row per (campaign, recipient) and the moves between its states.

    The states are ``stampcli.store.ledger.STATES``. Writes are batches, each
    one commit; a claim commits before its messages leave.
    """

    def insert(self, campaign_id: int, rows: Iterable[NewRow]) -> int:
        """Plan ``rows``; recipients already in the ledger are left alone. Returns rows added."""
        ...

    def insert_steps(self, campaign_id: int, rows: Iterable[NewRow]) -> Generator[int, None, int]:
        """:meth:`insert` one committed chunk at a time: yields the rows added so far."""
        ...

    def mark_stale_sending(self, campaign_id: int) -> int:
        """Rows left ``sending`` by a dead run become ``unknown`` (call with the lock held)."""
        ...

    def count_stale_unknown(self, campaign_id: int) -> int:
        """Rows ``unknown`` because the run sending them died."""
        ...

    def last_second_rate(self, campaign_id: int) -> float:
        """Messages recorded ``sent`` in the last second before the latest one, per second."""
        ...

    def requeue_due(self, campaign_id: int, *, at: float, expire_after: float) -> tuple[int, int]:
        """Due deferred rows back to pending, expired ones to failed: (requeued, expired)."""
        ...

    def read_pending(self, campaign_id: int, *, after_id: int, limit: int) -> list[PendingRow]:
        """Up to ``limit`` pending rows with ids above ``after_id``, in id order (no write)."""
        ...

    def claim(self, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()) -> int:
        """Pending -> sending (and pending -> suppressed) in one commit; rows claimed."""
        ...

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write the fate of a batch of rows, in the order given."""
        ...

    def retry(self, campaign_id: int, states: Sequence[str]) -> int:
        """Rows in ``states`` (failed, unknown, deferred) back to pending; how many."""
        ...

    def counts(self, campaign_id: int) -> dict[str, int]:
        """Rows by state, every state present (zero if none)."""
        ...

    def provider_counts(self, campaign_id: int) -> dict[str, dict[str, int]]:
        """Rows by provider and state, for rows a provider answered."""
        ...

    def last_errors(self, campaign_id: int, limit: int = 10) -> list[ErrorRow]:
        """The most recent rows with an error, newest first."""
        ...

    def answer_stats(self, campaign_id: int) -> tuple[int, int, int]:
        """(answers, hard bounces, complaints) from earlier runs, for auto-stop."""
        ...

    def attempted(self, campaign_id: int) -> bool:
        """Whether any row was ever handed to a provider."""
        ...

    def rows(self, campaign_id: int, state: str | None = None) -> list[LedgerRow]:
        """Every row (in ``state`` only, if given), in id order."""
        ...

    def row(self, campaign_id: int, key: str) -> LedgerRow | None:
        """The row of recipient ``key``, or None."""
        ...


class CampaignStore(Protocol):
    """A campaign's identity, content hash, pause and audience mark."""

    def get(self, name: str) -> CampaignRow | None: ...

    def ensure(self, name: str) -> CampaignRow:
        """The campaign called ``name``, created on its first run."""
        ...

    def delete(self, name: str) -> bool:
        """Forget the campaign with its ledger, lock and runs; False if there was none."""
        ...

    def set_content_hash(self, campaign_id: int, content_hash: str) -> None: ...

    def pause(self, campaign_id: int, reason: str) -> None: ...

    def unpause(self, campaign_id: int) -> bool:
        """Clear a pause; True if the campaign was paused."""
        ...

    def audience_mark(self, campaign_id: int) -> dict[str, Any] | None: ...

    def set_audience_mark(self, campaign_id: int, mark: dict[str, Any] | None) -> None: ...

    def lists_mark(self, names: Sequence[str]) -> list[list[Any]]:
        """Per stored list in ``names`` that exists, by name: what changes when it is imported."""
        ...

    def settings(self, campaign_id: int) -> dict[str, Any]:
        """What a send stored for readers that never see the campaign file (the event
        server): ``auto_stop`` thresholds, ``bounce_policy``. Empty if none."""
        ...

    def set_settings(self, campaign_id: int, settings: dict[str, Any]) -> None:
        """Replace the stored settings (JSON-ready values)."""
        ...


class RunStore(Protocol):
    """The history of a campaign's runs."""

    def start(self, campaign_id: int) -> int:
        """Record that a run started; its id."""
        ...

    def finish(
        self, run_id: int, exit_code: int | None, summary: dict[str, Any] | None
    ) -> None: ...

    def last(self, campaign_id: int) -> RunRow | None: ...


class ContactStore(Protocol):
    """Imported lists: upserted by normalised key, read back in import order."""

    def upsert_contacts(
        self,
        list_name: str,
        contacts: Iterable[Contact],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts: ...

    def upsert_rows(
        self,
        list_name: str,
        contacts: Iterable[ContactRow],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts: ...

    def list_exists(self, list_name: str) -> bool: ...

    def iter_list(self, list_name: str) -> Iterator[Contact]:
        """The contacts in import order, ``added_at`` among their fields; InputError if none."""
        ...

    def list_keys(self, list_name: str) -> set[str]: ...

    def list_fields(self, list_name: str) -> list[str]: ...

    def fields_present(
        self, list_name: str, wanted: Iterable[str], normalise: Callable[[str], str]
    ) -> set[str]: ...

    def list_summaries(self) -> list[ListSummary]: ...

    def stored(self, list_name: str) -> list[StoredContact]:
        """Every contact as stored, with its timestamps, in import order."""
        ...

    def delete_list(self, list_name: str) -> int:
        """Delete the list and its contacts; how many contacts (InputError: no such list)."""
        ...

    def remove_contacts(self, list_name: str, keys: Iterable[str]) -> int:
        """Remove these keys from the list; how many were in it."""
        ...

    def keep_only(self, list_name: str, keys: Iterable[str]) -> int:
        """Remove every contact whose key is not in ``keys`` (``import --replace``)."""
        ...

    def forget(self, key: str, hashed: str, source: str) -> Forgotten:
        """Erase the address from lists, ledger, events and suppressions, in one
        transaction, leaving a global ``forgotten`` suppression under ``hashed``."""
        ...


class SuppressionStore(Protocol):
    """Addresses never to mail again, by (key, scope); scope '' is every list."""

    def suppressed(self, keys: Collection[str], scopes: Sequence[str] = ()) -> set[str]: ...

    def add(
        self,
        key: str,
        reason: str,
        source: str,
        detail: str | None = None,
        scope: str = "",
    ) -> bool:
        """Suppress ``key``; True if it was not suppressed in that scope before."""
        ...

    def add_many(self, items: Iterable[Suppression]) -> int:
        """Suppress every item; the number of new rows."""
        ...

    def remove(self, keys: Iterable[str], scope: str | None = None) -> int: ...

    def iter_suppressions(
        self, reason: str | None = None, scope: str | None = None
    ) -> Iterator[Suppression]: ...

    def get(self, key: str, scope: str = "") -> Suppression | None: ...

    def count(self) -> dict[str, int]:
        """Suppressions per reason that occurs."""
        ...


class EventStore(Protocol):
    """Delivery events from providers (webhooks and pulls), one row per (provider, event id).

    The matching and the rules (what suppresses, the soft-bounce policy, auto-stop)
    live in :mod:`stampcli.service.events`; a backend only stores and looks up.
    """

    def add(
        self,
        rows: Sequence[EventRow],
        *,
        received_at: float,
        applied: Sequence[bool] | None = None,
    ) -> list[EventWrite]:
        """Store ``rows`` in one commit, each (provider, event id) once: one
        :class:`EventWrite` per row, in order (a repeat, in the batch or from before,
        is ``new=False`` with the first one's id). ``applied``, per row: a row stored
        new is marked applied at once (an event with no effects to apply)."""
        ...

    def mark_applied(self, event_ids: Collection[int]) -> None:
        """Record that the effects of these events (by row id) are in the store."""
        ...

    def by_key(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        """Ledger rows by (campaign name, recipient key), for those that exist."""
        ...

    def by_message_id(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        """Ledger rows by (provider message id recorded at send, exact text; recipient
        key): one id may be shared by a batch's rows. The newest where several match."""
        ...

    def by_address(self, keys: Collection[str]) -> dict[str, LedgerRef]:
        """Per recipient key, the ledger row of the most recent send to it (any campaign)."""
        ...

    def by_ledger_id(self, ids: Collection[int]) -> dict[int, LedgerRef]:
        """Ledger rows by id (what a VERP token names), for those that exist."""
        ...

    def by_rfc_message_id(
        self, pairs: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], LedgerRef]:
        """Ledger rows by (the RFC 5322 Message-ID stamp gave the message, ``<...>``;
        recipient key): what a bounce or complaint quoting the original finds."""
        ...

    def resolve(self, moves: Sequence[tuple[int, str, str | None]]) -> int:
        """(ledger id, new state, error): rows still ``unknown`` take the new state
        (``sent`` or ``failed``); one commit; how many moved."""
        ...

    def soft_bounces(self, key: str, since: float) -> int:
        """Soft bounces to ``key`` that occurred at or after ``since`` and after its
        latest delivery (a delivery resets the count)."""
        ...

    def counts(self, campaign_id: int, *, received_since: float | None = None) -> dict[str, int]:
        """The campaign's events (received at or after ``received_since``, if given) by type
        (``bounced`` split into ``bounced_hard`` and ``bounced_soft``), and distinct
        recipients as ``<type>_unique``; every type of :data:`stampcli.store.events.COUNTED`
        present."""
        ...

    def autostop_counts(
        self, campaign_id: int, *, received_since: float | None = None
    ) -> tuple[int, int]:
        """(distinct recipients that hard-bounced, distinct recipients that complained)
        among the campaign's events received at or after ``received_since``: what
        :meth:`counts` says as ``bounced_hard_unique`` and ``complained_unique``, read
        from those events alone (auto-stop asks for every batch that holds one)."""
        ...

    def unmatched(self) -> int:
        """Events that matched no ledger row."""
        ...

    def rows(self, campaign_id: int | None = None, *, limit: int = 1000) -> list[EventRow]:
        """Stored events (of one campaign, or the unmatched ones for None), oldest first."""
        ...

    def cursor(self, provider: str, account: str) -> str | None:
        """Where ``stamp events pull`` left off for this provider account."""
        ...

    def set_cursor(self, provider: str, account: str, cursor: str) -> None: ...


class LockStore(Protocol):
    """One run per campaign: a lock row with an owner and a heartbeat."""

    def holder(self, campaign_id: int) -> LockInfo | None: ...

    def acquire(
        self,
        campaign_id: int,
        owner: str,
        *,
        campaign_name: str = "",
        stale_after: float = ...,
    ) -> LockInfo | None:
        """Take the lock; the stale lock taken over, or None. LockedError if a live run has it."""
        ...

    def heartbeat(self, campaign_id: int, owner: str) -> bool:
        """Refresh the heartbeat; False if the lock is no longer ours."""
        ...

    def release(self, campaign_id: int, owner: str) -> None: ...


class QuotaStore(Protocol):
    """Daily send counts per provider label, shared by every process on the store."""

    def usage(self, provider: str, day: str) -> int: ...

    def take(self, provider: str, day: str, want: int, limit: int) -> int:
        """Reserve up to ``want`` without passing ``limit``, atomically; how many were granted."""
        ...

    def give_back(self, provider: str, day: str, n: int) -> None: ...


class ActivityStore(Protocol):
    """Who did what, for segment expressions: one SQL aggregate per question."""

    def recipients_since(self, types: Collection[str], since: float) -> set[str]:
        """Recipient keys with an event of one of ``types`` at or after ``since``."""
        ...

    def soft_bounce_counts(self) -> dict[str, int]:
        """Soft bounces per recipient key since its latest delivery (those with any)."""
        ...

    def added_since(self, since: float) -> set[str]:
        """Keys of contacts first imported (into any list) at or after ``since``."""


class ReportStore(Protocol):
    """What ``stamp report`` reads (every figure aggregated in the database, never row by
    row), and the router's per-run tallies it reads them from (``save_tallies``)."""

    def save_tallies(self, run_id: int, campaign_id: int, tallies: Sequence[ProviderTally]) -> None:
        """Replace the run's tallies with ``tallies`` (its totals so far), in one commit."""
        ...

    def funnel(self, campaign_id: int, name: str) -> dict[str, int]:
        """Ledger rows by outcome (``planned``, ``sent``, ``failed``, ...) and distinct
        recipients per event outcome (``delivered``, ``bounced_hard``, ``opened``,
        ``opened_human``, ``clicked``, ``unsubscribed`` also by stamp's own link, ...),
        with totals (``opens``, ``opens_machine``, ``clicks``, ``events``)."""
        ...

    def summary(
        self,
        campaign_id: int,
        name: str,
        *,
        segment: str | None = None,
        domains: int = 20,
        segments: int = 50,
    ) -> ReportSummary:
        """:meth:`funnel`, :meth:`providers`, :meth:`domains` and (with ``segment``)
        :meth:`segments` at once, reading the campaign's events once: what a whole
        report asks for."""
        ...

    def spans(self, campaign_id: int) -> Spans:
        """When its sends and its events began and ended."""
        ...

    def timeline(
        self, campaign_id: int, *, start: float, width: float, events: bool
    ) -> list[TimePoint]:
        """Sends (or events by type) per ``width`` seconds from ``start``; empty buckets
        left out."""
        ...

    def domains(self, campaign_id: int, limit: int = 20) -> list[GroupFigures]:
        """The ``limit`` recipient domains with the most rows, with their outcomes."""
        ...

    def segments(self, campaign_id: int, field: str, limit: int = 50) -> list[GroupFigures]:
        """The same, grouped by the value of contact field ``field`` at planning time."""
        ...

    def links(self, campaign_id: int) -> list[LinkFigures]:
        """Clicks and distinct clickers per link, most clicked first."""
        ...

    def providers(self, campaign_id: int) -> list[ProviderFigures]:
        """Per provider: rows, events, and the tallies of every run (answer-time percentiles)."""
        ...

    def campaigns(self, since: float | None = None) -> list[CampaignRef]:
        """Every campaign first sent (or made) at or after ``since``, oldest first."""


class FleetStore(Protocol):
    """Campaigns queued for ``stamp worker`` and the registry of live workers.

    A queued campaign is kept by name with its definition and files, so that a
    worker on any host can run it; which worker sends it is still decided by the
    campaign's lock (:class:`LockStore`).
    """

    def enqueue(
        self,
        name: str,
        definition: str,
        bundle: bytes,
        digest: str,
        *,
        added_by: str,
        due_at: float,
    ) -> bool:
        """Queue ``name`` (or replace its definition, queued again); True if it was new."""
        ...

    def dequeue(self, name: str) -> bool:
        """Take ``name`` off the queue (its ledger stays); False if it was not queued."""
        ...

    def entries(self) -> list[QueueEntry]:
        """Every queued campaign, by name (without their files)."""
        ...

    def due(self, at: float) -> list[QueueEntry]:
        """Campaigns in state ``queued`` whose ``due_at`` has passed, longest due first."""
        ...

    def definition(self, name: str) -> QueuedDefinition | None: ...

    def settle(
        self,
        name: str,
        *,
        digest: str,
        state: str,
        due_at: float,
        reason: str,
        error: str | None,
        worker: str,
    ) -> bool:
        """Record how a worker's run of ``name`` ended and when it is due again.

        Nothing changes (False) if the campaign was queued anew (another ``digest``)
        or taken off the queue meanwhile."""
        ...

    def register_worker(self, worker: WorkerRow) -> None: ...

    def worker_heartbeat(
        self, worker_id: str, *, state: str, campaign: str | None, sent: int, rate: float = 0.0
    ) -> bool:
        """Say the worker is alive, and what it does; False if its row is gone."""
        ...

    def stop_worker(self, worker_id: str, *, sent: int) -> None:
        """The worker exited cleanly."""
        ...

    def workers(self) -> list[WorkerRow]:
        """Every worker the store knows, newest first."""
        ...

    def forget_workers(self, seen_before: float) -> int:
        """Drop workers last heard of before ``seen_before``; how many."""
        ...


ApiFate = tuple[str, str, str | None, str | None, int, str | None, float]
"""(id, state, provider, results JSON, attempts made, detail, next_at) for ApiQueueStore.settle."""


class ApiQueueStore(Protocol):
    """The send API's messages (``api_messages``) and Idempotency-Keys (``api_idempotency``).

    Declared by :mod:`stampcli.service.api_send`, which holds the rules (states,
    back-off, what an answer means); a backend only stores, claims and looks up.
    """

    def enqueue(
        self,
        pool: str,
        items: Sequence[tuple[str, str]],
        *,
        now: float,
        key: str | None = None,
        request_hash: str = "",
        wait: bool = False,
        ttl: float = 24 * 3600.0,
        next_at: float = 0.0,
    ) -> Enqueued:
        """Queue ``items`` (id, request JSON) in one commit. With ``key``: when the pool
        has that key younger than ``ttl``, nothing is queued and the key's first ids
        come back (``new=False``); of concurrent calls with one key exactly one queues.
        ``next_at``: not due for a drainer's claim before then (a synchronous request
        claims its own rows by id; should it die first, a drainer sends them later).

        Written once here: a group of one (backends subclass this protocol for it)."""
        one = EnqueueRequest(pool, tuple(items), now, key, request_hash, wait, ttl, next_at)
        return self.enqueue_many([one])[0]

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Enqueued]:
        """:meth:`enqueue` for each of ``requests``, all in one commit (the server's group
        commit); one result per request, in their order. Of requests with one key the
        first queues and the later ones are its replays; a backend may handle the others
        in another order (PostgreSQL sorts them to take its row locks in one order).
        A request whose ``quota`` has no room for all its messages queues nothing (and
        keeps no key): ``over_quota=True``."""
        ...

    def claim(
        self,
        owner: str,
        *,
        now: float,
        lease: float,
        limit: int = 100,
        ids: Sequence[str] | None = None,
    ) -> list[ApiMessageRow]:
        """Due ``queued`` rows (or those of ``ids`` still queued) -> ``sending`` under
        ``owner``'s lease until ``now + lease``, in one commit; oldest first. A row is
        claimed by one caller only."""
        ...

    def settle(self, owner: str, fates: Sequence[ApiFate], *, now: float) -> int:
        """Record each fate of a row ``owner`` still holds (``queued`` again gives it back
        for ``next_at``); one commit; how many rows changed."""
        ...

    def expire_leases(self, now: float) -> int:
        """``sending`` rows whose lease ran out -> ``unknown`` (their sender died)."""
        ...

    def get(self, ids: Collection[str]) -> list[ApiMessageRow]: ...

    def counts(self) -> dict[str, int]:
        """Messages per state that occurs."""
        ...

    def events_for(self, message_id: str, *, limit: int = 1000) -> list[EventRow]:
        """Delivery events that carried this API message's id, oldest first."""
        ...

    def purge_keys(self, before: float) -> int:
        """Forget Idempotency-Keys made before ``before``."""
        ...


class ScheduleStore(Protocol):
    """Schedule state per campaign (``stampcli.schedule``): due times and the A/B test."""

    def get(self, campaign_id: int) -> ScheduleRow | None: ...

    def save(self, row: ScheduleRow) -> None:
        """Insert or replace the campaign's row (``campaign`` is not written)."""
        ...

    def all(self) -> list[ScheduleRow]:
        """Every campaign's row, soonest due first (nothing due: last), then by name."""
        ...

    def due(self, at: float) -> list[ScheduleRow]:
        """Rows not ``done`` whose ``next_due_at`` is at or before ``at``, soonest first."""
        ...

    def keys(self, campaign_id: int, states: Sequence[str]) -> list[str]:
        """The ledger keys of the campaign's rows in ``states``, in id order."""
        ...

    def engaged(self, campaign_id: int) -> list[tuple[str, str]]:
        """Distinct (ledger key, ``opened`` | ``clicked``) of the campaign's events,
        leaving out opens made by privacy proxies."""
        ...


class LeaseStore(Protocol):
    """Several workers on one campaign: workers, row leases, the planning turn.

    The rules are :mod:`stampcli.store.leases`'s: a worker leases the pending rows it
    reads ahead, claims (``pending -> sending``) only rows it still holds, renews
    everything it holds by heartbeat, and the rows of a worker past its expiry are
    reaped by the others (its ``sending`` rows become ``unknown``, its pending rows
    come free).
    """

    def join(self, campaign_id: int, owner: str, *, until: float) -> None:
        """Register ``owner`` as a worker of the campaign, live until ``until``."""
        ...

    def renew(self, owner: str, *, until: float, claimed: int = 0, rate: float = 0.0) -> bool:
        """Heartbeat: the worker, its leases and its planning turn last until ``until``;
        False if the worker is no longer registered (reaped: its leases are gone)."""
        ...

    def leave(self, owner: str) -> None:
        """Drop the worker and every lease it holds (its pending rows come free)."""
        ...

    def expire(self, owners: Sequence[str]) -> None:
        """Workers known to be dead (their process is gone): expire them and their leases now."""
        ...

    def workers(
        self, campaign_id: int | None = None, *, at: float | None = None
    ) -> list[WorkerInfo]:
        """The live workers (of one campaign, if given), oldest first."""
        ...

    def reap(self, campaign_id: int, *, at: float | None = None, orphans: bool = False) -> int:
        """Take over what dead workers held: their ``sending`` rows become ``unknown``, their
        leases and worker rows go (``orphans``: also ``sending`` rows without a live lease,
        which a single run left when it died). How many rows became ``unknown``."""
        ...

    def take(
        self, campaign_id: int, owner: str, *, after_id: int, limit: int, until: float
    ) -> list[PendingRow]:
        """Lease up to ``limit`` pending rows no live lease holds, ids above ``after_id``
        first (then from the start), in id order; one commit."""
        ...

    def claim(
        self, owner: str, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()
    ) -> list[int]:
        """:meth:`LedgerStore.claim` of the rows ``owner`` still leases and that are still
        pending (the others are left alone); the ids claimed. One commit."""
        ...

    def outstanding(self, campaign_id: int, owner: str, *, at: float | None = None) -> int:
        """Pending or sending rows other live workers hold (the ones still to settle)."""
        ...

    def plan_turn(self, campaign_id: int, owner: str, *, until: float) -> str:
        """Whose turn to plan: ``plan`` (this worker now holds the turn), ``wait`` (another
        live worker is planning) or ``done`` (planned while live workers were running)."""
        ...

    def plan_done(self, campaign_id: int, owner: str) -> None:
        """This worker's planning ended (idempotent: saying it again keeps the first time)."""
        ...

    def planning(self, campaign_id: int, *, at: float | None = None) -> bool:
        """Whether a live worker is planning the campaign now."""
        ...


class RateStore(Protocol):
    """Token buckets and circuit breakers shared by every process on the store (a fleet's
    provider rate, and which providers are down)."""

    def take_tokens(self, name: str, want: float, *, per_second: float, burst: float) -> float:
        """Refill bucket ``name`` (at ``per_second``, up to ``burst``) and take up to ``want``
        tokens from it, atomically; how many were granted (0 when it is empty)."""
        ...

    def give_tokens(self, name: str, n: float, *, burst: float) -> None:
        """Put back tokens taken and not used (up to ``burst``)."""
        ...

    # The fleet's circuit breakers (provider_breakers): one worker that finds a provider
    # down publishes it, and the others stop sending there too until it is due a probe.

    def open_breaker(self, name: str, seconds: float, reason: str) -> None:
        """Breaker ``name`` is open for ``seconds`` from now (by the store's clock; a later
        end already there is kept)."""
        ...

    def close_breaker(self, name: str) -> None:
        """Breaker ``name`` closed again (a probe succeeded)."""
        ...

    def open_breakers(self) -> dict[str, tuple[float, str]]:
        """The breakers open now: name -> (seconds left, reason)."""
        ...


class Store(Protocol):
    """An open store: its parts, and the few calls on the whole."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""
        ...

    @property
    def shared_by_hosts(self) -> bool:
        """Whether processes on several machines may use this store at once (PostgreSQL);
        a SQLite file is one machine's. ``stamp send`` joins a campaign's workers only
        on such a store (``stampcli.service.send.shares``)."""
        ...

    @property
    def ledger(self) -> LedgerStore: ...

    @property
    def campaigns(self) -> CampaignStore: ...

    @property
    def runs(self) -> RunStore: ...

    @property
    def contacts(self) -> ContactStore: ...

    @property
    def suppressions(self) -> SuppressionStore: ...

    @property
    def locks(self) -> LockStore: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def quota(self) -> QuotaStore: ...

    @property
    def activity(self) -> ActivityStore: ...

    @property
    def reports(self) -> ReportStore: ...

    @property
    def fleet(self) -> FleetStore: ...

    @property
    def api_queue(self) -> ApiQueueStore: ...

    @property
    def schedules(self) -> ScheduleStore: ...

    @property
    def leases(self) -> LeaseStore: ...

    @property
    def rates(self) -> RateStore: ...

    def checkpoints_in_background(self) -> AbstractContextManager[None]:
        """Around a long run of writes: housekeeping off the writer (a no-op if none)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
