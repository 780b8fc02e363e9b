"""Rows that cross layers: what the store hands out and takes in, as plain frozen records.

They sit below every layer (``store``, ``audience``, ``delivery``, the CLI),
so that the store need not import the code that uses it, and a second store
backend returns the same types as the first. The ledger's rows are NamedTuples:
one is made per recipient on each pass, and a tuple builds in a third of the
time of a frozen dataclass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# ----------------------------------------------------------------- contacts

ContactRow = tuple[str, str, dict[str, Any], int]
"""A contact as a tuple, (key, email, fields, row): what an import streams, without objects."""


@dataclass(frozen=True, slots=True)
class Contact:
    """One subscriber row after normalisation, as every later stage sees it."""

    key: str  # identity for dedupe, ledger and suppression: the normalised address, lower case
    email: str  # the address to send to: trimmed, domain lower-cased and IDNA-encoded
    fields: dict[str, Any] = field(default_factory=dict)  # every column, header names trimmed
    row: int = 0  # row number in the source file (the header is row 1), 0 if none

    @property
    def domain(self) -> str:
        return self.key.rsplit("@", 1)[-1]


@dataclass(frozen=True, slots=True)
class StoredContact:
    """A contact as a stored list holds it, with its timestamps (seconds since the epoch)."""

    key: str
    email: str
    fields: dict[str, Any]
    added_at: float
    updated_at: float


@dataclass
class Forgotten:
    """What ``stamp forget`` erased of one address, table by table."""

    contacts: int = 0  # list memberships deleted
    ledger: int = 0  # ledger rows whose address and snapshot were replaced by the hash
    events: int = 0  # delivery events whose address and raw body were replaced
    suppressions: int = 0  # suppressions of the address replaced by the hashed one
    lists: list[str] = field(default_factory=list)  # the lists it was in


@dataclass
class ImportCounts:
    """What an upsert did: contacts added, changed, and left as they were (a running count)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged


@dataclass
class ListSummary:
    name: str
    contacts: int
    fields: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


# ----------------------------------------------------------------- suppressions


@dataclass(frozen=True)
class Suppression:
    key: str
    reason: str
    source: str
    scope: str = ""
    detail: str | None = None
    created_at: float = 0.0  # 0.0 on input: "now"


# ----------------------------------------------------------------- ledger


class NewRow(NamedTuple):
    """A recipient to plan: ``fields`` is the contact's JSON snapshot."""

    key: str
    email: str
    fields: str
    state: str = "pending"
    last_error: str | None = None


class PendingRow(NamedTuple):
    """A row due for sending, as the engine reads it."""

    id: int
    key: str
    email: str
    fields: str  # JSON
    attempts: int
    first_attempt_at: float | None

    def field_dict(self) -> dict[str, Any]:
        value = json.loads(self.fields)
        return value if isinstance(value, dict) else {}


class Claim(NamedTuple):
    """A row about to be handed to a provider, with its derived Message-ID."""

    id: int
    message_id: str


class Outcome(NamedTuple):
    """The recorded fate of one row after a send (or a render failure)."""

    id: int
    state: str
    provider: str | None = None
    provider_message_id: str | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None
    extra_attempts: int = 0  # retries within the run beyond the one counted at claim


RowFate = Outcome  # the name the architecture gives it (ledger.Outcome today)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    key: str
    state: str
    provider: str | None
    error: str
    attempts: int
    at: float


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Everything the ledger holds about one recipient of a campaign (for status and tests)."""

    id: int
    key: str
    email: str
    fields: str  # JSON snapshot of the contact at planning time
    state: str
    attempts: int
    provider: str | None
    provider_message_id: str | None
    message_id: str | None
    last_error: str | None
    next_attempt_at: float | None
    first_attempt_at: float | None
    created_at: float
    updated_at: float
    sent_at: float | None


# ----------------------------------------------------------------- campaigns, runs, locks


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: int
    name: str
    content_hash: str | None
    created_at: float
    updated_at: float
    paused_reason: str | None
    paused_at: float | None


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    started_at: float
    ended_at: float | None
    exit_code: int | None
    summary: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LockInfo:
    owner: str
    host: str
    pid: int
    acquired_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker sharing a campaign (``stampcli.store.leases``), as its heartbeat left it."""

    owner: str  # host:pid:random
    campaign_id: int
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    until: float  # the worker and its leases are taken over after this
    claimed: int  # rows this worker handed to a provider so far
    rate: float  # messages/s it recorded lately
    campaign: str = ""  # the campaign's name

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner, "campaign": self.campaign, "campaign_id": self.campaign_id,
            "host": self.host, "pid": self.pid, "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at, "until": self.until, "claimed": self.claimed,
            "rate": round(self.rate, 1),
        }  # fmt: skip


# ----------------------------------------------------------------- delivery events


@dataclass(frozen=True, slots=True)
class LedgerRef:
    """The ledger row a delivery event is about (what matching an event finds)."""

    ledger_id: int
    campaign_id: int
    campaign: str  # the campaign's name
    key: str
    state: str


@dataclass(frozen=True, slots=True)
class EventRow:
    """One normalised delivery event as the ``events`` table holds it.

    ``(provider, event_id)`` is its identity: a redelivered event is stored once.
    ``campaign`` is the campaign name the event carried (kept even when no such
    campaign exists); ``campaign_id`` and ``ledger_id`` are set when it matched a
    ledger row, ``matched_by`` says how (``metadata``, ``message_id``, ``address``).
    """

    provider: str
    event_id: str
    type: str  # inbound.model.EventType value
    occurred_at: float  # epoch seconds, UTC
    recipient: str
    bounce_kind: str | None = None  # "hard" | "soft" for bounced/deferred
    auto_reply: bool = False
    campaign: str | None = None
    campaign_id: int | None = None
    ledger_id: int | None = None
    matched_by: str | None = None
    message_id: str | None = None  # the provider's message id, normalised
    reason: str | None = None
    url: str | None = None
    raw: str = "{}"  # the provider's event, JSON, secrets redacted


@dataclass(frozen=True, slots=True)
class EventWrite:
    """What :meth:`EventStore.add` did with one row: its id, whether it was new, and
    whether its effects (suppressions, ledger, auto-stop) were applied already."""

    id: int
    new: bool
    applied: bool


# ----------------------------------------------------------------- the fleet (stamp worker)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A campaign queued for ``stamp worker`` (its definition and files kept apart).

    ``state``: ``queued`` (a worker takes it once ``due_at`` has passed) or
    ``done`` (every recipient has a final state). ``last_reason`` is the reason
    the last run ended for (``RunSummary.reason``, or ``refused``/``error``),
    ``last_error`` what stopped it, if anything did.
    """

    name: str
    digest: str  # sha256 of the definition and its files
    state: str
    due_at: float
    added_at: float
    updated_at: float
    added_by: str  # host:pid of the command that queued it
    size: int  # bytes of the files kept with it
    runs: int = 0
    last_run_at: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    last_worker: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedDefinition:
    """What a worker needs to run a queued campaign: its keys and its files."""

    name: str
    digest: str
    definition: str  # JSON: the campaign's keys, ${NAME} references unresolved
    bundle: bytes  # a zip of the files it reads


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One ``stamp worker`` process, as it last told the store.

    ``state``: idle, sending, draining or stopped. ``id`` is ``host:pid:random``,
    also the owner of the locks it takes.
    """

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    state: str
    campaign: str | None = None  # the campaign it is sending, if any
    sent: int = 0  # messages it recorded sent since it started
    stopped_at: float | None = None
    rate: float = 0.0  # messages per second of its current run, recently


# ----------------------------------------------------------------- send API queue


@dataclass(frozen=True, slots=True)
class ApiMessageRow:
    """One message handed to the send API, as the ``api_messages`` table holds it.

    ``request`` is the accepted request as JSON text (attachments base64), so any
    process can compose and send it again; ``results`` is the per-recipient answer
    list as JSON text once sent (None before).
    """

    id: str
    pool: str
    state: str  # stampcli.service.api_send.STATES
    request: str
    created_at: float
    updated_at: float
    attempts: int = 0
    provider: str | None = None
    results: str | None = None
    detail: str | None = None
    next_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What :meth:`ApiQueueStore.enqueue` did: the ids the request stands for, whether they
    were queued now (``new``) or by an earlier request with the same idempotency key, and
    that earlier request's hash and mode (``wait``) so a replay can be checked and answered
    as the first one was."""

    ids: tuple[str, ...]
    new: bool
    request_hash: str = ""
    wait: bool = False
    over_quota: bool = False  # the request's daily quota had no room: nothing was queued


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One request's part of :meth:`ApiQueueStore.enqueue_many`: its messages (id, request
    JSON) for ``pool``, its Idempotency-Key if any, and the daily quota its messages are
    counted in (``quota``: counter name, UTC day, limit; all of them fit or none is queued).
    ``next_at``: not due for a drainer's claim before then."""

    pool: str
    items: tuple[tuple[str, str], ...]
    now: float
    key: str | None = None
    request_hash: str = ""
    wait: bool = False
    ttl: float = 24 * 3600.0
    next_at: float = 0.0
    quota: tuple[str, str, int] | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A campaign's schedule state as the ``schedules`` table keeps it (one row per campaign).

    ``state``: what the last run left (``stampcli.schedule.state.STATES``);
    ``next_due_at``: when a run next has something to send (None: nothing left, or
    due now); ``file``: the campaign file the last run came from, so that a
    worker or ``stamp schedule list`` can find it; ``detail``: JSON-ready facts
    (zones, the A/B figures). ``ab_*``: when the A/B test share finished sending,
    the winner's index, when it was chosen and whether by hand.
    """

    campaign_id: int
    state: str
    next_due_at: float | None = None
    file: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    ab_test_done_at: float | None = None
    ab_winner: int | None = None
    ab_decided_at: float | None = None
    ab_manual: bool = False
    updated_at: float = 0.0
    campaign: str = ""  # the campaign's name (filled when read)
