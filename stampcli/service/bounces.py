"""Bounce mail into delivery events: match what a mail reports to a ledger row, record it.

What DSNs, feedback reports, non-standard bounces, auto-replies and mailed
unsubscribes say (:mod:`stampcli.bounces.parse`) goes into the same events
table, through the same :func:`~stampcli.service.events.record_events`, as
the providers' webhooks, so it has the same consequences: hard bounces and
complaints suppress, soft bounces count under the bounce policy, auto-stop
pauses, ``unknown`` rows are resolved, ``stamp status`` counts them.

Mail is hostile until verified. A report is used only when it names a row
stamp sent: through a VERP token whose signature checks out (the mail's
envelope recipient, the report's Original-Mail-From or the returned copy's
Return-Path), or through stamp's own Message-ID of the returned message
together with the recipient it was for (the Message-ID is derived from both,
so it names exactly one row). A mailed unsubscribe needs the signed token of
its ``mailto:`` subject, or a From address stamp has mailed. Anything else (a
forged token, a DSN for an address stamp never mailed, spam) is counted and
reported, never recorded, and :class:`MailVerdict` tells the mailbox to keep it.

Event ids come from a digest of the mail's body, so a mail read twice, or
arriving once by the listener and once through the mailbox, counts once.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.bounces.mailboxes import Source as MailSource
from stampcli.bounces.parse import JUNK, UNPARSABLE, Finding, MailReport, parse_mail
from stampcli.compliance.policy import unsubscribe_secret
from stampcli.compliance.tokens import TokenError, verify_token
from stampcli.compliance.verp import Verp, campaign_verp
from stampcli.config import Campaign
from stampcli.events.model import DeliveryEvent, EventRejected, EventType, make_event
from stampcli.records import LedgerRef
from stampcli.service.events import record_events
from stampcli.store import protocols

PROVIDER = "bounces"  # the events' provider label
_UNSUB_TOKEN = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]{4,3000}\.[A-Za-z0-9_-]{20,100})")

# what became of one mail
PROCESSED = "processed"  # its events are recorded: the mailbox may move or delete it
FORGED = "forged"  # a VERP token or unsubscribe token that does not check out
UNMATCHED = "unmatched"  # names no row stamp sent
_FORGED = "forged VERP address "
KEEP = frozenset({JUNK, UNPARSABLE, FORGED, UNMATCHED})  # left in the mailbox


@dataclass(frozen=True)
class BounceSettings:
    """What reading bounce mail needs from the campaign (and the environment)."""

    verp: Verp | None = None
    unsubscribe_mailto: str | None = None  # the List-Unsubscribe mailto address, lower case
    unsubscribe_secret: str | None = None

    @classmethod
    def of(cls, campaign: Campaign, env: Mapping[str, str] | None = None) -> BounceSettings:
        """From the campaign and the environment; ConfigError when the VERP secret is unset."""
        env = os.environ if env is None else env
        mailto = None
        unsub = campaign.unsubscribe
        if unsub is not None and unsub.mailto and "{{" not in unsub.mailto:
            mailto = parseaddr(unsub.mailto.removeprefix("mailto:").split("?", 1)[0])[1].lower()
        return cls(
            verp=campaign_verp(campaign, env),
            unsubscribe_mailto=mailto or None,
            unsubscribe_secret=unsubscribe_secret(campaign, env, used_by=None),
        )


@dataclass(frozen=True)
class MailVerdict:
    """One mail's fate: ``verdict`` is processed, junk, unparsable, forged or unmatched."""

    ident: str  # where it came from: file name, IMAP uid, "smtp"
    kind: str  # dsn, arf, flufl, auto_reply, unsubscribe, junk, unparsable
    verdict: str
    why: str = ""
    events: int = 0

    @property
    def keep(self) -> bool:
        return self.verdict in KEEP


@dataclass
class BounceReport:
    """What one batch of mail came to."""

    read: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # by kind of mail
    verdicts: dict[str, int] = field(default_factory=dict)  # by verdict
    stored: int = 0  # new events
    duplicates: int = 0  # events seen before (a mail read again)
    suppressed: int = 0
    resolved_unknown: int = 0
    paused: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    mails: list[MailVerdict] = field(default_factory=list)
    moved: int = 0  # set by the mailbox: processed mail moved or deleted
    lock_taken_over: str | None = None

    def problems(self) -> list[MailVerdict]:
        """The mails kept for a person to look at (junk aside)."""
        return [m for m in self.mails if m.verdict in (UNPARSABLE, FORGED, UNMATCHED)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kinds": dict(sorted(self.kinds.items())),
            "verdicts": dict(sorted(self.verdicts.items())),
            "stored": self.stored,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "resolved_unknown": self.resolved_unknown,
            "paused": list(self.paused),
            "by_type": dict(sorted(self.by_type.items())),
            "moved": self.moved,
            "problems": [
                {"mail": m.ident, "kind": m.kind, "verdict": m.verdict, "why": m.why}
                for m in self.problems()
            ],
        }


def process_mails(
    store: protocols.Store,
    settings: BounceSettings,
    mails: Iterable[tuple[str, bytes]],
    *,
    envelope_to: tuple[str, ...] = (),
    now: datetime | None = None,
) -> BounceReport:
    """Parse, match and record ``mails`` ((ident, raw bytes) pairs), one commit per mail."""
    report = BounceReport()
    for ident, raw in mails:
        verdict = process_mail(
            store, settings, ident, raw, report, envelope_to=envelope_to, now=now
        )
        report.mails.append(verdict)
    return report


def process_mail(
    store: protocols.Store,
    settings: BounceSettings,
    ident: str,
    raw: bytes,
    report: BounceReport,
    *,
    envelope_to: tuple[str, ...] = (),
    now: datetime | None = None,
) -> MailVerdict:
    """One mail: its verdict, its events recorded into ``report``'s counts."""
    report.read += 1
    parsed = parse_mail(raw, envelope_to=envelope_to)
    kind = parsed.kind
    events: list[DeliveryEvent] = []
    verdict, why = PROCESSED, ""
    if kind == UNPARSABLE:
        verdict, why = UNPARSABLE, parsed.problem or "cannot be parsed"
    elif _for_unsubscribe(parsed, settings):
        kind = "unsubscribe"
        verdict, why, events = _unsubscribe(store, settings, parsed, now)
    elif kind == JUNK:
        verdict, why = JUNK, "not a bounce, complaint or auto-reply"
    else:
        verdict, why, events = _report_events(store, settings, parsed, now)
    report.kinds[kind] = report.kinds.get(kind, 0) + 1
    if events:
        result = record_events(store, events)
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.suppressed += result.suppressed
        report.resolved_unknown += result.resolved_unknown
        report.paused.extend(p for p in result.paused if p not in report.paused)
        for name, count in result.by_type.items():
            report.by_type[name] = report.by_type.get(name, 0) + count
    report.verdicts[verdict] = report.verdicts.get(verdict, 0) + 1
    return MailVerdict(ident, kind, verdict, why, len(events))


# -- matching -----------------------------------------------------------------------------


def _verp_row(
    store: protocols.Store, settings: BounceSettings, parsed: MailReport
) -> tuple[LedgerRef | None, str | None]:
    """The row a VERP address of the mail names; (None, why) for a forged or stale one,
    (None, None) when the mail carries no VERP address of ours."""
    verp = settings.verp
    if verp is None:
        return None, None
    forged: str | None = None
    for candidate in parsed.verp:
        if not verp.ours(candidate) or "+" not in candidate.split("@", 1)[0]:
            continue
        try:
            ref = verp.read(candidate)
        except TokenError as exc:
            forged = f"{_FORGED}{candidate[:100]}: {exc}"
            continue
        row = store.events.by_ledger_id([ref.ledger_id]).get(ref.ledger_id)
        if row is None or row.campaign_id != ref.campaign_id:
            return (
                None,
                f"the VERP token names ledger row {ref.ledger_id}, which is not in the store",
            )
        return row, None
    return None, forged


def _report_events(
    store: protocols.Store, settings: BounceSettings, parsed: MailReport, now: datetime | None
) -> tuple[str, str, list[DeliveryEvent]]:
    row, problem = _verp_row(store, settings, parsed)
    if row is None and problem is not None and problem.startswith(_FORGED):
        # a return path of ours with a token that does not check out: never trusted, even
        # if the rest of the mail looks genuine (a forger can copy a Message-ID)
        return FORGED, problem, []
    refs: list[tuple[Finding, LedgerRef]] = []
    if row is not None:
        # signed: the token names the message, whatever address the report gives for it
        refs = [(finding, row) for finding in parsed.findings]
    else:
        keys = [_key(finding.recipient) for finding in parsed.findings]
        wanted = {(mid, key) for key in keys if key for mid in parsed.message_ids}
        found = store.events.by_rfc_message_id(wanted) if wanted else {}
        for finding, key in zip(parsed.findings, keys, strict=True):
            ref = next(
                (found[(m, key)] for m in parsed.message_ids if key and (m, key) in found), None
            )
            if ref is not None:
                refs.append((finding, ref))
    if not refs:
        why = problem or "names no message stamp sent (no valid VERP token, no known Message-ID)"
        return UNMATCHED, why, []
    events = [_event(parsed, finding, ref, i, now) for i, (finding, ref) in enumerate(refs)]
    return PROCESSED, "", [e for e in events if e is not None]


def _key(address: str | None) -> str | None:
    """The ledger key of a reported address."""
    if not address:
        return None
    try:
        return normalize_address(address)[0]
    except InvalidAddress:
        return None


def _event(
    parsed: MailReport, finding: Finding, ref: LedgerRef, index: int, now: datetime | None
) -> DeliveryEvent | None:
    item = {
        "kind": parsed.kind,
        "type": finding.type.value,
        "recipient": finding.recipient,
        "status": finding.status,
        "reason": finding.reason,
        "subject": parsed.subject,
        "fields": parsed.fields,
    }
    try:
        return make_event(
            PROVIDER,
            finding.type,
            item,
            recipient=ref.key,
            occurred_at=parsed.occurred_at or now or datetime.now(UTC),
            # the body's digest and the row: a mail read twice is one event, and one
            # person's identical out-of-office notes to two campaigns are two
            event_id=f"mail:{parsed.digest[:48]}:{ref.ledger_id}:{index}",
            campaign=ref.campaign,
            recipient_key=ref.key,
            message_id_header=parsed.message_ids[0] if parsed.message_ids else None,
            bounce_kind=finding.bounce_kind,
            reason=finding.reason,
            auto_reply=finding.type is EventType.AUTO_REPLIED,
        )
    except EventRejected:
        return None


# -- unsubscribes by mail ------------------------------------------------------------------


def _for_unsubscribe(parsed: MailReport, settings: BounceSettings) -> bool:
    mailto = settings.unsubscribe_mailto
    return (
        mailto is not None and mailto in parsed.recipients and parsed.kind in (JUNK, "auto_reply")
    )


def _unsubscribe(
    store: protocols.Store, settings: BounceSettings, parsed: MailReport, now: datetime | None
) -> tuple[str, str, list[DeliveryEvent]]:
    match = _UNSUB_TOKEN.search(parsed.subject) or _UNSUB_TOKEN.search(parsed.text)
    campaign: str | None = None
    key: str | None = None
    if match is not None and settings.unsubscribe_secret:
        try:
            asked = verify_token(settings.unsubscribe_secret, match.group(1))
        except TokenError as exc:
            return FORGED, f"unsubscribe token: {exc}", []
        campaign, key = asked.campaign, asked.email
    elif parsed.sender:
        # RFC 2369 mailto without a token: the sender asks for itself, if stamp mailed it
        sender = _key(parsed.sender) or parsed.sender
        ref = store.events.by_address([sender]).get(sender)
        if ref is None:
            return UNMATCHED, "an unsubscribe mail from an address stamp never mailed", []
        campaign, key = ref.campaign, ref.key
    if key is None:
        return UNMATCHED, "an unsubscribe mail with no token and no sender", []
    try:
        event = make_event(
            PROVIDER,
            EventType.UNSUBSCRIBED,
            {"kind": "unsubscribe", "subject": parsed.subject, "from": parsed.sender},
            recipient=key,
            occurred_at=parsed.occurred_at or now or datetime.now(UTC),
            event_id=f"mail:{parsed.digest[:48]}:0",
            campaign=campaign,
            recipient_key=key,
            reason="unsubscribe by mail (List-Unsubscribe mailto)",
        )
    except EventRejected as exc:
        return UNMATCHED, f"unsubscribe mail: {exc}", []
    return PROCESSED, "", [event]


# -- a mailbox run --------------------------------------------------------------------------

LOCK_PREFIX = "stamp bounces: "  # the lock's row in campaigns, one per mailbox
LOCK_STALE_AFTER = 600.0  # seconds without a heartbeat before a crashed run's lock is taken


def read_mailbox(
    store: protocols.Store,
    settings: BounceSettings,
    source: MailSource,
    *,
    folder: str = "stamp-processed",
    delete: bool = False,
) -> BounceReport:
    """Read every mail of ``source``, record what it reports, move (or delete) the processed
    mails; one run per mailbox at a time (:class:`~stampcli.errors.LockedError` otherwise)."""
    from stampcli.store.locks import HEARTBEAT_EVERY, new_owner

    row = store.campaigns.ensure(LOCK_PREFIX + source.name)
    owner = new_owner()
    taken = store.locks.acquire(
        row.id, owner, campaign_name=LOCK_PREFIX + source.name, stale_after=LOCK_STALE_AFTER
    )
    report = BounceReport()
    if taken is not None:
        report.lock_taken_over = taken.owner
    try:
        beat = time.monotonic()
        for ident, raw in source.mails():
            report.mails.append(process_mail(store, settings, ident, raw, report))
            if time.monotonic() - beat > HEARTBEAT_EVERY:
                beat = time.monotonic()
                store.locks.heartbeat(row.id, owner)
        processed = [m.ident for m in report.mails if not m.keep]
        report.moved = source.finish(processed, folder=folder, delete=delete)
    finally:
        store.locks.release(row.id, owner)
    return report
