"""Recording delivery events: match each to its ledger row, store it once, apply what it means.

:func:`record_events` is the one way events enter the store, from the webhook
server (``stamp serve``) and from ``stamp events pull`` alike. For each
:class:`~stampcli.events.model.DeliveryEvent` it

1. finds the ledger row it is about: by the campaign and recipient key stamp
   sent as metadata first, by the provider message id recorded at send second
   (in the form both sides agree on, see ``normalise_message_id``), and by the
   address (the most recent send to it) last, for events that carry neither
   (SendGrid's asynchronous bounces). Events that match nothing are stored and
   counted as unmatched, never dropped;
2. stores it once per (provider, event id), committed before this returns, so
   a server may answer 2xx as soon as it has the result;
3. applies its effects once: a hard bounce, a complaint or an unsubscribe
   suppresses the address for every list at once; soft bounces suppress after
   the bounce policy's count within its window (a delivery resets the count);
   auto-replies are never bounces; a ledger row a crash left ``unknown``
   becomes ``sent`` (or ``failed``) when the provider reports on it; and a
   campaign whose bounce or complaint share passes its stored ``auto_stop``
   thresholds is paused (a running send sees the flag and stops).

Effects are written after the events, and each event is marked applied only
after its effects are: a crash in between leaves it unapplied, and its
redelivery (or the next pull) applies it then. Every effect is idempotent.
A store failure raises :class:`~stampcli.errors.StoreError`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.compliance.autostop import AutoStop
from stampcli.config import AutoStopConfig
from stampcli.events.model import BounceKind, DeliveryEvent, EventType, Reason
from stampcli.events.policy import DEFAULT_POLICY, BouncePolicy
from stampcli.records import EventRow, LedgerRef, Suppression
from stampcli.sendapi import is_api_message_id
from stampcli.store import protocols

__all__ = ["BouncePolicy", "RecordResult", "record_events", "store_settings"]

# Events that show the provider took the message: an ``unknown`` row was sent.
_TAKEN = frozenset(
    {
        EventType.QUEUED, EventType.SENT, EventType.DELIVERED, EventType.DEFERRED,
        EventType.BOUNCED, EventType.COMPLAINED, EventType.UNSUBSCRIBED, EventType.OPENED,
        EventType.CLICKED, EventType.AUTO_REPLIED,
    }
)  # fmt: skip
# Events that show the provider refused it: an ``unknown`` row failed (and is not re-sent).
_REFUSED = frozenset({EventType.REJECTED, EventType.DROPPED, EventType.FAILED})

# Events that may suppress an address (and, complaints and hard bounces, judge auto-stop)
_SUPPRESSING = frozenset({EventType.UNSUBSCRIBED, EventType.COMPLAINED, EventType.BOUNCED})
_EFFECTFUL = _SUPPRESSING
# Events that move a ledger row left ``unknown``
_MOVES = _TAKEN | _REFUSED

# the campaign setting a send with --unpause writes: auto-stop counts events from then on
COUNTED_SINCE = "events_counted_since"
METADATA = "metadata"
MESSAGE_ID = "message_id"
ADDRESS = "address"


@dataclass
class RecordResult:
    """What :func:`record_events` did with one batch."""

    received: int = 0
    stored: int = 0  # new events
    duplicates: int = 0  # seen before (redelivered), or twice in the batch
    unmatched: int = 0  # new events that matched no ledger row
    matched: dict[str, int] = field(default_factory=dict)  # new events by how they matched
    suppressed: int = 0  # addresses newly put on the suppression list
    resolved_unknown: int = 0  # ledger rows moved from unknown by an event
    paused: list[str] = field(default_factory=list)  # campaigns paused by auto-stop
    by_type: dict[str, int] = field(default_factory=dict)  # new events by type

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "matched": dict(sorted(self.matched.items())),
            "suppressed": self.suppressed,
            "resolved_unknown": self.resolved_unknown,
            "paused": list(self.paused),
            "by_type": dict(sorted(self.by_type.items())),
        }


def store_settings(
    store: protocols.Store,
    name: str,
    auto_stop: AutoStopConfig,
    bounce_policy: BouncePolicy,
    *,
    unpause: bool = False,
) -> None:
    """Store what a send of campaign ``name`` runs with, for :func:`record_events` to find
    (the event server never reads campaign files). ``unpause``: the send clears a pause,
    so auto-stop counts delivery events from now on (as the send counts its answers)."""
    row = store.campaigns.ensure(name)
    since = store.campaigns.settings(row.id).get(COUNTED_SINCE)
    if unpause and row.paused_reason is not None:
        since = time.time()
    values: dict[str, Any] = {
        "auto_stop": auto_stop.model_dump(),
        "bounce_policy": bounce_policy.as_dict(),
    }
    if since is not None:
        values[COUNTED_SINCE] = since
    store.campaigns.set_settings(row.id, values)


def record_events(
    store: protocols.Store,
    events: Sequence[DeliveryEvent],
    *,
    policy: BouncePolicy | None = None,
    now: float | None = None,
    answers: AnswerCache | None = None,
) -> RecordResult:
    """Match, store (once each, committed) and apply ``events``; see the module docstring.

    ``policy`` overrides every campaign's stored ``bounce_policy`` (the default
    applies where a campaign stored none); ``now`` is the receive time; ``answers``
    (a long-running server's) lets auto-stop reuse the ledger's answer counts for
    a moment instead of counting the ledger again for every batch.
    """
    at = time.time() if now is None else now
    result = RecordResult(received=len(events))
    if not events:
        return result
    # each address normalised once: matching, the rows and the effects all use the key
    keys = [_key(event.recipient) for event in events]
    refs = _match(store, events, keys)
    rows = [
        _row(event, key, ref, how)
        for event, key, (ref, how) in zip(events, keys, refs, strict=True)
    ]
    # an event with nothing to apply (most: deliveries, opens, clicks) is stored applied
    inert = [_inert(event, ref) for event, (ref, _) in zip(events, refs, strict=True)]
    writes = store.events.add(rows, received_at=at, applied=inert)

    todo: list[tuple[DeliveryEvent, str, LedgerRef | None]] = []
    seen: set[int] = set()
    by_type = result.by_type
    matched = result.matched
    for event, key, row, write, (ref, _) in zip(events, keys, rows, writes, refs, strict=True):
        if write.new:
            result.stored += 1
            kind = _kind(row)
            by_type[kind] = by_type.get(kind, 0) + 1
            if row.matched_by is None:
                result.unmatched += 1
            else:
                matched[row.matched_by] = matched.get(row.matched_by, 0) + 1
        else:
            result.duplicates += 1
        if not write.applied and write.id not in seen:
            seen.add(write.id)
            todo.append((event, key, ref))
    if not todo:
        return result

    policies = _Policies(store, policy)
    suppressions: dict[str, Suppression] = {}
    moves: dict[int, tuple[int, str, str | None]] = {}
    moved_in: set[int] = set()  # campaigns whose rows moved: their answer counts changed
    judged: dict[int, str] = {}  # campaigns to judge for auto-stop
    for event, key, ref in todo:
        rule = policies.get(ref)
        why = _suppression_reason(store, event, rule, key)
        if why is not None and key not in suppressions:
            reason, detail = why
            suppressions[key] = Suppression(key, reason, event.provider, "", detail)
        if ref is not None:
            if ref.state == "unknown" and ref.ledger_id not in moves:
                if event.type in _TAKEN:
                    moves[ref.ledger_id] = (ref.ledger_id, "sent", None)
                    moved_in.add(ref.campaign_id)
                elif event.type in _REFUSED:
                    error = f"{event.provider} {event.type.value}: {event.reason or 'no reason'}"
                    moves[ref.ledger_id] = (ref.ledger_id, "failed", error[:500])
                    moved_in.add(ref.campaign_id)
            if _counts_for_autostop(event):
                judged[ref.campaign_id] = ref.campaign

    if suppressions:
        already = store.suppressions.suppressed(list(suppressions))
        store.suppressions.add_many(suppressions.values())
        result.suppressed = len(set(suppressions) - already)
    result.resolved_unknown = store.events.resolve(list(moves.values()))
    if answers is not None:
        for campaign_id in moved_in:
            answers.forget(store, campaign_id)
    for campaign_id, name in sorted(judged.items()):
        if _judge(store, campaign_id, name, answers):
            result.paused.append(name)
    store.events.mark_applied([write.id for write in writes if not write.applied])
    return result


def _inert(event: DeliveryEvent, ref: LedgerRef | None) -> bool:
    """Whether applying ``event`` does nothing: it suppresses no address (not a bounce,
    complaint or unsubscribe), moves no ``unknown`` ledger row and counts for no
    auto-stop judgement. Such an event is stored as applied at once."""
    if event.type in _EFFECTFUL:
        return False
    return ref is None or ref.state != "unknown" or event.type not in _MOVES


class AnswerCache:
    """The ledger's answer counts per campaign (``ledger.answer_stats``), reused for
    ``ttl`` seconds: what auto-stop divides by, counted over the whole campaign's ledger
    (~40 ms at 100k rows), for every batch that holds a bounce or complaint otherwise.

    For ``stamp serve``'s writer: during a flood of bounces the judgement then counts
    the ledger at most once a ``ttl``, while the events' own counts (the bounces and
    complaints) are read fresh each time. A running send's answers are at most ``ttl``
    old, so a verdict comes no later than it would (fewer answers: a higher share);
    rows an event moves out of ``unknown`` drop the campaign's entry at once.
    """

    def __init__(self, ttl: float = 1.0, clock: Any = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._stats: dict[tuple[str, int], tuple[float, tuple[int, int, int]]] = {}

    def get(self, store: protocols.Store, campaign_id: int) -> tuple[int, int, int]:
        where = (store.location, campaign_id)
        now = self.clock()
        found = self._stats.get(where)
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        stats = store.ledger.answer_stats(campaign_id)
        self._stats[where] = (now, stats)
        return stats

    def forget(self, store: protocols.Store, campaign_id: int) -> None:
        self._stats.pop((store.location, campaign_id), None)


# -- matching ---------------------------------------------------------------------------


def _match(
    store: protocols.Store, events: Sequence[DeliveryEvent], keys: Sequence[str]
) -> list[tuple[LedgerRef | None, str | None]]:
    """Per event (``keys``: their addresses' keys), its ledger row and how it was found
    (metadata, message id, address). One lookup per way for the whole batch."""
    none: tuple[LedgerRef | None, str | None] = (None, None)
    out = [none] * len(events)
    pairs = {(e.campaign, e.recipient_key) for e in events if e.campaign and e.recipient_key}
    by_key = store.events.by_key(pairs) if pairs else {}
    # the send answer's id may differ in form from the event's (brackets): ask for both;
    # with the recipient, as one id may stand for a whole batch (SendGrid's X-Message-Id)
    rest: list[tuple[int, list[str]]] = []  # events metadata did not match, their id forms
    wanted: set[tuple[str, str]] = set()
    for i, e in enumerate(events):
        if e.campaign and e.recipient_key:
            ref = by_key.get((e.campaign, e.recipient_key))
            if ref is not None:
                out[i] = (ref, METADATA)
                continue
        forms = _id_forms(e)
        key = keys[i]
        for form in forms:
            wanted.add((form, key))
        rest.append((i, forms))
    if not rest:
        return out
    by_id = store.events.by_message_id(wanted) if wanted else {}
    # no metadata and no known id: the most recent send to the address; not for an event
    # of a send-API message (its campaign tag is the message's id): no campaign sent it
    loose: list[int] = []
    for i, forms in rest:
        key = keys[i]
        ref = next((by_id[(f, key)] for f in forms if (f, key) in by_id), None)
        if ref is not None:
            out[i] = (ref, MESSAGE_ID)
        elif not is_api_message_id(events[i].campaign):
            loose.append(i)
    by_address = store.events.by_address({keys[i] for i in loose}) if loose else {}
    for i in loose:
        ref = by_address.get(keys[i])
        if ref is not None:
            out[i] = (ref, ADDRESS)
    return out


def _id_forms(event: DeliveryEvent) -> list[str]:
    """The forms the ledger may hold the event's provider message id in."""
    mid, given = event.message_id, event.provider_message_id
    if not mid:
        return [given] if given else []
    forms = [mid] if not given or given == mid else [mid, given]
    if not mid.startswith("<"):
        forms.append(f"<{mid}>")  # Mailgun and Brevo answer with brackets
    return forms


def _key(address: str) -> str:
    """The suppression/ledger key of an event's address (the parsers lower-case it)."""
    try:
        return normalize_address(address)[0]
    except InvalidAddress:
        return address.strip().lower()


def _row(event: DeliveryEvent, key: str, ref: LedgerRef | None, how: str | None) -> EventRow:
    return EventRow(
        provider=event.provider,
        event_id=event.event_id,
        # str() of a StrEnum is its value, without the enum's slower ``.value`` property
        type=str(event.type),
        occurred_at=event.occurred_at.timestamp(),
        recipient=key,
        bounce_kind=str(event.bounce_kind) if event.bounce_kind else None,
        auto_reply=event.auto_reply,
        campaign=ref.campaign if ref is not None else event.campaign,
        campaign_id=ref.campaign_id if ref is not None else None,
        ledger_id=ref.ledger_id if ref is not None else None,
        matched_by=how if ref is not None else None,
        message_id=event.message_id,
        reason=event.reason,
        url=event.url,
        raw=event.raw,
    )


def _kind(row: EventRow) -> str:
    return f"bounced_{row.bounce_kind or 'soft'}" if row.type == EventType.BOUNCED else row.type


# -- effects ----------------------------------------------------------------------------


class _Policies:
    """The bounce policy for an event's campaign: the override, the stored one, or the default."""

    def __init__(self, store: protocols.Store, override: BouncePolicy | None) -> None:
        self._store = store
        self._override = override
        self._cache: dict[int, BouncePolicy] = {}

    def get(self, ref: LedgerRef | None) -> BouncePolicy:
        if self._override is not None:
            return self._override
        if ref is None:
            return DEFAULT_POLICY
        if ref.campaign_id not in self._cache:
            stored = self._store.campaigns.settings(ref.campaign_id).get("bounce_policy")
            try:
                rule = BouncePolicy.model_validate(stored) if stored else DEFAULT_POLICY
            except ValidationError:
                rule = DEFAULT_POLICY  # written by another version: the safe default
            self._cache[ref.campaign_id] = rule
        return self._cache[ref.campaign_id]


def _suppression_reason(
    store: protocols.Store, event: DeliveryEvent, rule: BouncePolicy, key: str
) -> tuple[str, str] | None:
    """(reason, detail) if ``event`` puts its address on the suppression list, else None."""
    if event.type not in _SUPPRESSING or (event.auto_reply and event.type is EventType.BOUNCED):
        return None
    said = f"{event.provider} {event.type.value} event {event.event_id}"
    if event.reason:
        said += f": {event.reason}"
    if event.type is EventType.UNSUBSCRIBED:
        return Reason.UNSUBSCRIBED, said[:1000]
    if event.type is EventType.COMPLAINED:
        return (Reason.COMPLAINT, said[:1000]) if rule.complaint == "suppress" else None
    if event.type is not EventType.BOUNCED or event.auto_reply:
        return None
    if event.bounce_kind is BounceKind.HARD:
        return (Reason.HARD_BOUNCE, said[:1000]) if rule.hard == "suppress" else None
    # a soft bounce (or one of no stated kind): counted, this one included (stored above)
    since = event.occurred_at.timestamp() - rule.soft.within
    count = store.events.soft_bounces(key, since)
    if count >= rule.soft.count:
        days = rule.soft.within / 86400
        detail = f"{count} soft bounces within {days:g} days; last: {said}"
        return Reason.HARD_BOUNCE, detail[:1000]
    return None


def _counts_for_autostop(event: DeliveryEvent) -> bool:
    if event.type is EventType.COMPLAINED:
        return True
    return event.type is EventType.BOUNCED and event.bounce_kind is BounceKind.HARD


def _judge(
    store: protocols.Store, campaign_id: int, name: str, answers: AnswerCache | None = None
) -> bool:
    """Pause the campaign if its bounce or complaint share reached its stored thresholds."""
    campaign = store.campaigns.get(name)
    if campaign is None or campaign.paused_reason is not None:
        return False
    settings = store.campaigns.settings(campaign_id)
    stored = settings.get("auto_stop")
    # after `stamp send --unpause` a person decided to go on: count events afresh
    since = settings.get(COUNTED_SINCE)
    try:
        config = AutoStopConfig.model_validate(stored) if stored else AutoStopConfig()
    except ValidationError:
        config = AutoStopConfig()
    if not config.enabled:
        return False  # nothing to count: verdict() would say None whatever the counts
    took, hard, complaints = (
        answers.get(store, campaign_id) if answers else store.ledger.answer_stats(campaign_id)
    )
    # the distinct addresses that hard-bounced or complained, by the events' own index
    hard_events, complaint_events = store.events.autostop_counts(
        campaign_id, received_since=float(since) if isinstance(since, int | float) else None
    )
    judge = AutoStop(config)
    # a row the provider took and then bounced is one answer with one bounce
    judge.seed(took, hard + hard_events, complaints + complaint_events)
    reason = judge.verdict()
    if reason is None:
        return False
    store.campaigns.pause(campaign_id, f"{reason} (from delivery events)")
    return True
