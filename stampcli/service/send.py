"""Sending a campaign as a library call: ``send_campaign`` and what comes before it.

::

    prepare_send -> (count_due: the confirmation's numbers) -> send_campaign
        dry run: its own ledger ``NAME (dry run)``, wiped first, into an outbox folder
        retry:   failed / unknown / deferred rows back to pending, under the lock
        then one ``CampaignRun`` (delivery/run.py) -> RunSummary

``--test-to`` is ``prepare_test`` + ``send_test_message``: one recipient's
message, readdressed (``delivery.testsend``), through the real providers.

Nothing here prints or exits: progress reaches ``on_event`` as the run's
events (plus :class:`RetryMoved`), refusals are ``StampError`` subclasses,
and how a run ended is ``RunSummary.reason``. Process-wide settings (signal
handlers, GC pacing) are the caller's: :class:`RunHandle` lets it stop a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.compliance.policy import require_unsubscribe
from stampcli.config import Campaign, ProviderConfig
from stampcli.delivery.engine import Sizing
from stampcli.delivery.planner import PlanResult, plan
from stampcli.delivery.router import Delivery
from stampcli.delivery.run import CampaignRun, RunSummary
from stampcli.delivery.run_events import Event, EventSink, ignore
from stampcli.errors import InputError, RecipientError
from stampcli.providers import tracking_warning
from stampcli.providers.base import Adapter
from stampcli.providers.outbox import OutboxAdapter
from stampcli.records import Contact
from stampcli.render.message import Message
from stampcli.render.renderer import Renderer
from stampcli.schedule.gate import TESTING, WAITING, WINNER, Gate, scheduled
from stampcli.schedule.variants import VariantRenderer
from stampcli.service.store_check import check_store, knows
from stampcli.store import ledger, locks
from stampcli.store.leases import LEASE_FOR
from stampcli.store.location import DbArg, StoreChoice, for_campaign
from stampcli.store.protocols import Store as StoreLike

DRY_RUN_DIR = Path("outbox-dry-run")  # relative to the working directory
DRY_RUN_SUFFIX = " (dry run)"
DRY_RUN_PROVIDER = "dry-run"  # the outbox adapter's label in a dry run
RETRY_STATES = (ledger.FAILED, ledger.UNKNOWN, ledger.DEFERRED)

__all__ = [
    "DRY_RUN_DIR",
    "DRY_RUN_SUFFIX",
    "DueCount",
    "PreparedSend",
    "PreparedTest",
    "RetryMoved",
    "RunHandle",
    "RunSummary",
    "SendOptions",
    "SentTest",
    "check_store_choice",
    "count_due",
    "ledger_name",
    "parse_test_address",
    "prepare_send",
    "prepare_test",
    "provider_labels",
    "reset_for_retry",
    "send_campaign",
    "send_test_message",
    "tracking_warnings",
]


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How to send (``stamp send`` / ``stamp retry`` options).

    ``retry``: ledger states moved back to pending first (failed, unknown,
    deferred). ``dry_run``: render and "send" into ``dry_run_dir`` under a
    ledger of its own; the real ledger is never touched. ``new_store``: send
    although the store never saw the campaign while traces say it was sent.
    """

    dry_run: bool = False
    limit: int | None = None
    allow_changed: bool = False
    unpause: bool = False
    retry: tuple[str, ...] = ()
    new_store: bool = False
    dry_run_dir: Path = DRY_RUN_DIR
    # join the campaign as one of several workers (row leases, delivery/shared.py)
    # instead of locking it. None: as `shares` decides (yes on PostgreSQL, see there)
    shared: bool | None = None
    lease_for: float = LEASE_FOR  # seconds a dead worker's rows stay its own (shared)

    def __post_init__(self) -> None:
        bad = [s for s in self.retry if s not in RETRY_STATES]
        if bad:
            raise InputError(
                f"cannot retry {', '.join(map(repr, bad))}: only {', '.join(RETRY_STATES)}"
            )
        if self.limit is not None and self.limit < 1:
            raise InputError(f"limit must be at least 1, not {self.limit}")
        if self.dry_run and self.retry:
            raise InputError("a dry run has its own ledger, so there is nothing to retry")


def ledger_name(campaign: Campaign, options: SendOptions) -> str:
    """The campaign's name in the store: a dry run has a ledger of its own."""
    return campaign.name + (DRY_RUN_SUFFIX if options.dry_run else "")


def provider_labels(campaign: Campaign, options: SendOptions) -> list[str]:
    """The providers the run sends through, by label (a dry run: its outbox)."""
    if options.dry_run:
        return [DRY_RUN_PROVIDER]
    return [p.label for p in campaign.providers]


@dataclass(frozen=True, slots=True)
class RetryMoved(Event):
    """Rows moved back to pending before a retry run."""

    kind = "retry"
    states: list[str]
    moved: int


# --------------------------------------------------------------------------- before


@dataclass(slots=True)
class PreparedSend:
    """A campaign ready to send: its renderer built, its store chosen and checked.

    ``store_notice``: the loud line when the send creates a new store.
    ``warnings``: tracking switches a provider cannot honour (said before sending).
    """

    campaign: Campaign
    renderer: Renderer | VariantRenderer  # each recipient's A/B variant, with ab:
    store: StoreChoice
    store_notice: str | None
    warnings: list[str] = field(default_factory=list)

    def open_store(self) -> StoreLike:
        return self.store.open()


def tracking_warnings(campaign: Campaign) -> list[str]:
    """What each provider says about ``tracking:`` switches it cannot honour."""
    out = [tracking_warning(p, campaign.tracking.for_providers()) for p in campaign.providers]
    return [w for w in out if w is not None]


def check_store_choice(campaign: Campaign, choice: StoreChoice, options: SendOptions) -> str | None:
    """Refuse a store that looks like the wrong one; the notice when the send creates one."""
    if options.retry and not knows(choice, campaign.name):
        raise InputError(
            f"the store {choice.describe()} has never sent {campaign.name!r}, so there is "
            "nothing to retry; name the store that sent it (--db PATH, store: in the "
            "campaign file, or $STAMP_DB)"
        )
    # a dry run sends nothing, so a trace of an earlier send is no reason to refuse it
    return check_store(campaign, choice, new_store=options.new_store or options.dry_run)


def prepare_send(campaign: Campaign, options: SendOptions, db: DbArg = None) -> PreparedSend:
    """Build the renderer (template errors before anything is planned) and pick the store.

    ``db``: the store asked for (``--db``), else the campaign's own (store.location).
    """
    renderer: Renderer | VariantRenderer = (
        VariantRenderer(campaign) if campaign.ab is not None else Renderer(campaign)
    )
    choice = for_campaign(campaign, db)
    notice = check_store_choice(campaign, choice, options)
    # a dry run too: it previews the real send, whose providers these are
    return PreparedSend(campaign, renderer, choice, notice, tracking_warnings(campaign))


@dataclass(frozen=True, slots=True)
class DueCount:
    """What a send would do now: the numbers a confirmation shows."""

    campaign: str
    in_ledger: int
    new: int  # rows planning just added
    sent: int
    suppressed: int
    due: int  # pending and due deferred rows, and the rows a retry moves back
    cap: int | None  # --limit / max_messages
    planned: PlanResult
    # the subject as the first recipient due gets it (None: nobody pending to render for)
    example_subject: str | None = None
    example_to: str | None = None
    next_due_at: float | None = None  # scheduled: when the rows not due now are

    @property
    def now(self) -> int:
        """Messages this run would send at most."""
        return self.due if self.cap is None else min(self.due, self.cap)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "in_ledger": self.in_ledger,
            "new": self.new,
            "sent": self.sent,
            "suppressed": self.suppressed,
            "due": self.due,
            "cap": self.cap,
            "now": self.now,
            "example_subject": self.example_subject,
            "example_to": self.example_to,
            "next_due_at": self.next_due_at,
        }


def _example_subject(
    store: StoreLike, campaign_id: int, renderer: Renderer | VariantRenderer
) -> tuple[str | None, str | None]:
    """(subject, address) of the first pending recipient's message, as it would be sent."""
    first = store.ledger.read_pending(campaign_id, after_id=0, limit=1)
    if not first:
        return None, None
    row = first[0]
    try:
        return renderer.render(row.key, row.email, row.field_dict()).subject, row.email
    except RecipientError as exc:  # the send skips such a recipient; the example says why
        return f"(cannot be rendered: {exc})", row.email


def count_due(
    campaign: Campaign,
    store: StoreLike,
    options: SendOptions,
    renderer: Renderer | VariantRenderer | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DueCount:
    """Plan (harmless: it only adds pending rows) and count what a send would do.

    Rows a retry would move back to pending are counted as due but not moved:
    a "no" after the numbers must leave ``unknown`` rows unknown. With
    ``renderer``, the first pending recipient's subject is rendered as an example.
    """
    name = ledger_name(campaign, options)
    row = store.campaigns.ensure(name)
    planned = plan(campaign, store, row.id, name=name)
    counts = store.ledger.counts(row.id)
    due = counts[ledger.PENDING] + counts[ledger.DEFERRED]
    due += sum(counts[s] for s in options.retry if s != ledger.DEFERRED)
    if ledger.UNKNOWN in options.retry:
        due += counts[ledger.SENDING]  # left by a dead run: unknown once the lock is ours
    next_due: float | None = None
    if not options.dry_run and scheduled(campaign):
        # what the schedule lets go now (the A/B phase as stored; a run moves it on)
        survey = Gate(campaign, clock.time, phase=_stored_phase(campaign, store, row.id)).survey(
            store, row.id
        )
        due, next_due = survey.due, survey.next_at
    subject, to = _example_subject(store, row.id, renderer) if renderer else (None, None)
    return DueCount(
        campaign=name,
        in_ledger=sum(counts.values()),
        new=planned.added,
        sent=counts[ledger.SENT],
        suppressed=counts[ledger.SUPPRESSED],
        due=due,
        cap=Sizing.of(campaign, options.limit, None).cap,
        planned=planned,
        example_subject=subject,
        example_to=to,
        next_due_at=next_due,
    )


def _stored_phase(campaign: Campaign, store: StoreLike, campaign_id: int) -> str:
    """The A/B phase the store says, without moving it on (a count writes nothing)."""
    found = store.schedules.get(campaign_id)
    if campaign.ab is None or (found is not None and found.ab_winner is not None):
        return WINNER
    return WAITING if found is not None and found.ab_test_done_at is not None else TESTING


def reset_for_retry(store: StoreLike, name: str, states: tuple[str, ...]) -> int:
    """Move rows in ``states`` back to pending while holding the lock, so no run sends them."""
    row = store.campaigns.ensure(name)
    owner = locks.new_owner()
    store.locks.acquire(row.id, owner, campaign_name=name)
    try:
        # rows a dead run left `sending` are `unknown` (the run would say so next):
        # mark them now, or a retry of unknown rows right after a crash would miss them
        store.ledger.mark_stale_sending(row.id)
        return store.ledger.retry(row.id, states)
    finally:
        store.locks.release(row.id, owner)


def _dry_run_adapters(campaign: Campaign, store: StoreLike, options: SendOptions) -> list[Adapter]:
    """Wipe the dry run's ledger and point its one provider at the dry-run folder."""
    store.campaigns.delete(ledger_name(campaign, options))
    folder = options.dry_run_dir.resolve()
    return [OutboxAdapter(ProviderConfig(url=f"outbox://{folder}", name=DRY_RUN_PROVIDER))]


# --------------------------------------------------------------------------- the run


class RunHandle:
    """Stops a send from outside it (signal handlers, an HTTP request, another task).

    Calls made before the run starts take effect when it does.
    """

    def __init__(self) -> None:
        self._run: CampaignRun | None = None
        self._stop = False
        self._abort = False

    def request_stop(self) -> None:
        """Stop claiming; finish and record what is in flight."""
        self._stop = True
        if self._run is not None:
            self._run.request_stop()

    def abort(self) -> None:
        """Stop now: the rows in flight become ``unknown``."""
        self._abort = True
        if self._run is not None:
            self._run.abort()

    def _bind(self, run: CampaignRun) -> None:
        self._run = run
        if self._stop:
            run.request_stop()
        if self._abort:
            run.abort()


def shares(campaign: Campaign, store: StoreLike, options: SendOptions) -> bool:
    """Whether a run joins the campaign's other workers (row leases) or locks it.

    ``options.shared`` when given; else on a store several machines share
    (PostgreSQL), where ``stamp send`` started on several hosts cooperates, except
    where what a run does only holds for one process: a dry run (its own ledger),
    a cap (``--limit``, ``throttle.max_messages``: each worker would send that
    many) and a schedule, window or A/B test (one run opens its gate). Those, and
    every run on SQLite (one machine, one writer), lock the campaign: a second run
    is refused.
    """
    if options.shared is not None:
        return options.shared
    capped = options.limit is not None or campaign.throttle.max_messages is not None
    return store.shared_by_hosts and not (options.dry_run or capped or scheduled(campaign))


async def send_campaign(
    campaign: Campaign,
    store: StoreLike,
    options: SendOptions | None = None,
    *,
    on_event: EventSink = ignore,
    renderer: Renderer | VariantRenderer | None = None,
    handle: RunHandle | None = None,
    exit_code_for: Any = None,
    clock: Clock | None = None,
) -> RunSummary:
    """Send ``campaign`` from ``store``: plan its audience, send what is due, summarise.

    Safe to call again at any time: recipients already sent are never sent
    again. Calls in several processes (hosts) on one PostgreSQL store share the
    campaign as its workers (:func:`shares`); elsewhere the first locks it. Raises
    ``LockedError`` (another run holds it), ``CampaignPausedError``,
    ``ContentChangedError`` and the other ``StampError`` refusals; a run that
    starts ends with ``RunSummary.reason``. ``exit_code_for``: a caller's
    ``reason -> int`` recorded in the runs row (the CLI's exit codes). ``clock``:
    the time schedules, windows and rates go by (default: the system's).
    """
    options = options or SendOptions()
    name = ledger_name(campaign, options)
    adapters = _dry_run_adapters(campaign, store, options) if options.dry_run else None
    if options.retry:
        moved = reset_for_retry(store, name, options.retry)
        on_event(RetryMoved(list(options.retry), moved))
    if not options.dry_run:
        # the event server never reads the campaign file: it finds these with the row
        from stampcli.service.events import store_settings  # pulls in idna: only when sending

        store_settings(
            store, name, campaign.auto_stop, campaign.bounce_policy, unpause=options.unpause
        )
    run = CampaignRun(
        campaign,
        store,
        renderer=renderer,
        adapters=adapters,
        on_event=on_event,
        limit=options.limit,
        allow_changed=options.allow_changed,
        unpause=options.unpause,
        ledger_name=name,
        dry_run=options.dry_run,
        exit_code_for=exit_code_for,
        clock=clock,
        shared=shares(campaign, store, options),
        lease_for=options.lease_for,
    )
    if handle is not None:
        handle._bind(run)
    return await run.run()


# --------------------------------------------------------------------------- --test-to


@dataclass(frozen=True, slots=True)
class PreparedTest:
    """One recipient's real message, readdressed to a test address."""

    campaign: Campaign
    contact: Contact
    to: str  # the test address as given, trimmed
    message: Message
    note: str | None  # e.g. the real recipient is suppressed (the test still goes)
    warnings: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The recipient as a person names it: its row, or its address."""
        return f"row {self.contact.row}" if self.contact.row else self.contact.email


@dataclass(frozen=True, slots=True)
class SentTest:
    plan: PreparedTest
    delivery: Delivery

    def as_dict(self) -> dict[str, Any]:
        result = self.delivery.result
        return {
            "event": "test",
            "campaign": self.plan.campaign.name,
            "recipient": self.plan.contact.key,
            "row": self.plan.contact.row or None,
            "to": self.plan.to,
            "outcome": result.outcome.value,
            "provider": self.delivery.provider,
            "attempts": self.delivery.attempts,
            "message_id": result.message_id,
            "detail": result.detail,
            "note": self.plan.note,
        }


def parse_test_address(text: str) -> tuple[str, str]:
    """``text`` as a test address: (key, email), or InputError."""
    # here, not at the top: idna costs `stamp status` ~40 ms of start-up
    from stampcli.audience.address import InvalidAddress, normalize_address

    try:
        return normalize_address(text)
    except InvalidAddress as exc:
        raise InputError(
            f"--test-to: {exc.address!r} is not an address to send to: {exc.reason}"
        ) from None


def _suppressed_note(campaign: Campaign, db: DbArg, key: str) -> str | None:
    """Say so when the real recipient is suppressed: the test goes out, the real send will not."""
    choice = for_campaign(campaign, db)
    if not choice.exists:
        return None
    with choice.open(readonly=True) as store:
        found = store.suppressions.suppressed([key], campaign.audience.list_ or [])
    if not found:
        return None
    return f"{key} is on the suppression list: the real send leaves them out"


def prepare_test(
    campaign: Campaign,
    to: str,
    *,
    row: int | None = None,
    email: str | None = None,
    db: DbArg = None,
    test_key: tuple[str, str] | None = None,
) -> PreparedTest:
    """Render the recipient at ``row`` / with ``email`` (else the first), readdressed to ``to``."""
    # the recipient is chosen and rendered the way `stamp preview` does it
    from stampcli.delivery.testsend import readdress
    from stampcli.service.preview import pick_recipient

    key, address = test_key or parse_test_address(to)
    renderer = Renderer(campaign)
    require_unsubscribe(campaign)  # what the real send would refuse, the test refuses too
    contact = pick_recipient(campaign, db, row, email)
    where = f"row {contact.row}" if contact.row else contact.email
    try:
        real = renderer.render(contact.key, contact.email, contact.fields)
    except RecipientError as exc:
        # the real send would record this against the recipient and go on to the next
        raise RecipientError(
            f"no message can be made for {contact.email} ({where}): {exc}"
        ) from None
    message = readdress(real, key, address)
    note = _suppressed_note(campaign, db, contact.key)
    return PreparedTest(campaign, contact, address, message, note, tracking_warnings(campaign))


async def send_test_message(
    plan: PreparedTest, *, db: DbArg = None, on_event: EventSink = ignore
) -> SentTest:
    """Send a prepared test through the campaign's providers; no ledger row is touched."""
    from stampcli.delivery.testsend import send_test

    campaign = plan.campaign
    # a test counts against the providers' daily quotas (the provider counts it): the
    # store holds them, and is opened only then
    if any(p.daily_quota for p in campaign.providers):
        with for_campaign(campaign, db).open() as store:
            delivery = await send_test(campaign, plan.message, store, on_event=on_event)
    else:
        delivery = await send_test(campaign, plan.message, on_event=on_event)
    return SentTest(plan, delivery)
