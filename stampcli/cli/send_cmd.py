"""``stamp send``, ``stamp status`` and ``stamp retry``: running a campaign and reading its ledger.

``send`` plans the audience into the ledger and sends what is due. On a
terminal it first shows what will happen and asks; without one it needs
``--yes``. It draws a progress bar with a per-provider table on a terminal,
and writes one JSON line per event worth reading otherwise (or with
``--log-format json``): start, planned, provider state changes, notices and
the summary, never one line per message. A ``tracking:`` switch that a
provider cannot honour (Resend, Brevo, SES, SMTP, outbox) is a warning
before anything is sent. Ctrl-C (or SIGTERM) once stops
claiming and finishes what is in flight (exit 3); twice stops at once, and
the rows in flight become ``unknown`` (exit 130).

``--dry-run`` renders and "sends" everything into ``./outbox-dry-run/`` through
the outbox adapter, under a ledger campaign of its own, ``NAME (dry run)``,
that is wiped at the start of each dry run: the real campaign's ledger is
never touched, and the suppression list still applies.

``--test-to ADDR`` sends one recipient's real message (the first of the
audience, or ``--row N`` / ``--email ADDR``, chosen as ``stamp preview`` does)
through the campaign's real providers to ADDR only (``delivery.testsend``):
no ledger or campaign row is touched, and a suppression of ADDR is ignored.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stampcli import redact
from stampcli.cli.common import (
    CampaignDbOption,
    command,
    console,
    echo_json,
    err_console,
    fail,
    is_interactive,
    open_store,
)
from stampcli.cli.exit_codes import for_reason, with_exit_code
from stampcli.cli.store_check import check_store, knows
from stampcli.compliance.policy import require_unsubscribe
from stampcli.config import Campaign, ProviderConfig, load_campaign
from stampcli.delivery import run_events as ev
from stampcli.delivery.planner import plan
from stampcli.delivery.run import CampaignRun, RunSummary
from stampcli.errors import ExitCode, InputError, RecipientError
from stampcli.gcpace import collect_rarely
from stampcli.providers import tracking_warning
from stampcli.providers.base import Outcome
from stampcli.providers.outbox import OutboxAdapter
from stampcli.render.renderer import Renderer
from stampcli.report import CampaignStatus, campaign_status
from stampcli.store import ledger, locks, protocols
from stampcli.store.location import StoreChoice, for_campaign

DRY_RUN_DIR = Path("outbox-dry-run")
DRY_RUN_SUFFIX = " (dry run)"


class LogFormat(StrEnum):
    auto = "auto"
    rich = "rich"
    json = "json"


CampaignArg = Annotated[Path, typer.Argument(help="The campaign file (campaign.yml).")]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Send without asking (needed without a terminal).")
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Send at most N messages in this run.", show_default=False),
]
AllowChangedOption = Annotated[
    bool,
    typer.Option(
        "--allow-changed",
        help="Resume even though the subject or template changed since sending started.",
    ),
]
NewStoreOption = Annotated[
    bool,
    typer.Option(
        "--new-store",
        help="Send even though the store has never seen this campaign while .eml files or "
        "another store show it was sent before (everyone may be mailed again).",
    ),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        help="auto: a progress bar on a terminal, JSON lines otherwise.",
        case_sensitive=False,
    ),
]


# --------------------------------------------------------------------------- output


def _json_line(data: dict[str, Any]) -> None:
    sys.stdout.write(redact.redact(json.dumps(data, ensure_ascii=False, default=str)) + "\n")
    sys.stdout.flush()


class JsonLog:
    """One JSON line per event worth reading; progress ticks are left out."""

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Progress):
            return
        if isinstance(event, ev.RunFinished):
            _json_line(with_exit_code(event.as_dict()))
            return
        _json_line(event.as_dict())

    def __enter__(self) -> JsonLog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RichView:
    """A progress bar (rate, ETA) with a live per-provider table under it."""

    def __init__(self, providers: list[str], *, planned_shown: bool = False) -> None:
        # the confirmation already planned and showed the numbers: a second "planned: 0
        # new" line would only confuse
        self.planned_shown = planned_shown
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} msg/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task: TaskID = self.progress.add_task("sending", total=None, rate=0.0)
        self.states: dict[str, str] = dict.fromkeys(providers, "closed")
        self.per_provider: dict[str, dict[str, int]] = {}
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False)
        columns = ("sent", "failed", "deferred", "unknown", "failovers", "throttled")
        for col in ("provider", "state", *columns):
            table.add_column(col, justify="left" if col in ("provider", "state") else "right")
        for name in sorted({*self.states, *self.per_provider}):
            per = self.per_provider.get(name, {})
            state = self.states.get(name, "closed")
            style = "green" if state == "closed" else "yellow" if state == "half_open" else "red"
            table.add_row(
                escape(name),
                f"[{style}]{escape(state)}[/]",
                *(str(per.get(k, 0)) for k in columns),
            )
        return table

    def _render(self) -> Group:
        return Group(self.progress, self._table())

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            what = "dry run" if event.dry_run else "sending"
            self.progress.update(self.task, total=event.pending, description=escape(what))
        elif isinstance(event, ev.Progress):
            self.per_provider = event.per_provider
            self.progress.update(self.task, completed=event.done, rate=event.rate)
        elif isinstance(event, ev.ProviderState):
            self.states[event.provider] = event.state
            why = f": {event.reason}" if event.reason else ""
            self._say("warning", f"provider {event.provider} is {event.state}{why}")
        elif isinstance(event, ev.Notice):
            self._say(event.level, event.message)
        elif isinstance(event, ev.Planned):
            if self.planned_shown and not event.added:
                return
            self._say(
                "info",
                f"planned: {event.added} new recipients ({event.suppressed} suppressed, "
                f"{event.rejected} rejected rows, {event.duplicates} duplicates, "
                f"{event.segment_excluded} outside the segment)",
            )
        elif isinstance(event, ev.RunFinished):
            self.per_provider = event.per_provider
        self.live.update(self._render())

    def _say(self, level: str, text: str) -> None:
        style = {"error": "bold red", "warning": "yellow"}.get(level, "dim")
        self.live.console.print(f"[{style}]{escape(redact.redact(text))}[/]")

    def __enter__(self) -> RichView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()


def _use_rich(log_format: LogFormat) -> bool:
    if log_format is LogFormat.auto:
        return sys.stdout.isatty()
    return log_format is LogFormat.rich


def _print_summary(summary: RunSummary) -> None:
    counts = {k: v for k, v in summary.counts.items() if v}
    line = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no recipients"
    code = for_reason(summary.reason)
    style = "green" if code == ExitCode.OK else "yellow"
    console.print(
        f"[{style}]{escape(summary.reason)}[/] after {summary.elapsed:.1f} s "
        f"(exit {int(code)}): {escape(line)}"
    )
    hints = {
        "stopped": "run the same command again to go on",
        "limit": "run the same command again to send the next ones",
        "deferred": "deferred recipients are retried by a later run",
        "quota": "provider quotas are used up; run again when they reset",
        "all_down": "every provider is down; the rest stays pending for the next run",
        "paused": "look into the bounces, then `stamp send --unpause`",
        "failures": "`stamp status` lists the errors; `stamp retry --failed` or --unknown",
    }
    if summary.reason in hints:
        console.print(f"[dim]{hints[summary.reason]}[/]")


# --------------------------------------------------------------------------- send


def _warn_tracking(campaign: Campaign, rich_view: bool) -> None:
    """Say which providers cannot honour the tracking switches, before anything is sent.

    Told before the confirmation so a person can still change providers; in the
    JSON log as the same ``notice`` lines the engine writes for its warnings.
    """
    for provider in campaign.providers:
        text = tracking_warning(provider, campaign.tracking)
        if text is None:
            continue
        if rich_view:
            console.print(f"[yellow]warning: {escape(redact.redact(text))}[/]", soft_wrap=True)
        else:
            _json_line(ev.Notice("warning", text).as_dict())


def _confirm(
    campaign: Campaign,
    store: protocols.Store,
    name: str,
    limit: int | None,
    retry_states: tuple[str, ...] = (),
) -> None:
    """Plan (harmless: it only adds pending rows), show what will happen, and ask.

    Rows ``stamp retry`` would move back to pending are counted as due, but moved
    only after a yes: a "no" must leave ``unknown`` rows unknown (re-sent only on request).
    """
    row = store.campaigns.ensure(name)
    planned = plan(campaign, store, row.id, name=name)
    counts = store.ledger.counts(row.id)
    due = counts[ledger.PENDING] + counts[ledger.DEFERRED]
    due += sum(counts[s] for s in retry_states if s != ledger.DEFERRED)
    if ledger.UNKNOWN in retry_states:
        due += counts[ledger.SENDING]  # left by a dead run: unknown once the lock is ours
    cap = [c for c in (limit, campaign.throttle.max_messages) if c is not None]
    now_count = min([due, *cap])
    console.print(f"[bold]{escape(name)}[/]: {escape(campaign.subject)}")
    console.print(f"  store: {escape(str(store.location))}", soft_wrap=True)
    console.print(
        f"  recipients: {sum(counts.values())} in the ledger ({planned.added} new), "
        f"{counts[ledger.SENT]} already sent, {counts[ledger.SUPPRESSED]} suppressed, "
        f"{due} to send" + (f", at most {min(cap)} in this run" if cap else "")
    )
    for p in campaign.providers:
        rate = f"{p.rate}" if p.rate else "no rate limit"
        quota = f", {p.daily_quota}/day" if p.daily_quota else ""
        console.print(f"  provider {escape(p.label)}: {escape(str(p.parsed))} ({rate}{quota})")
    if campaign.throttle.rate:
        console.print(f"  campaign rate: {campaign.throttle.rate}")
    if now_count == 0:
        return
    if not typer.confirm(f"Send {now_count} messages now?", default=False):
        console.print("nothing sent")
        raise typer.Exit(int(ExitCode.OK))


async def _run_with_signals(engine: CampaignRun, rich_view: bool) -> RunSummary:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            engine.request_stop()
            if rich_view:
                err_console.print("[dim]press Ctrl-C again to stop at once[/]")
        else:
            engine.abort()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no support
            pass
    try:
        return await engine.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _send(
    campaign_file: Path,
    *,
    dry_run: bool,
    limit: int | None,
    yes: bool,
    allow_changed: bool,
    unpause: bool,
    db: Path | None,
    log_format: LogFormat,
    retry_states: tuple[str, ...] = (),
    new_store: bool = False,
) -> None:
    if not (dry_run or yes or is_interactive()):
        raise fail(
            "not on a terminal, so stamp cannot ask before sending; add --yes to send "
            "(or --dry-run to write the messages to a folder instead)",
            ExitCode.BAD_INPUT,
        )
    campaign = load_campaign(campaign_file)
    renderer = Renderer(campaign)  # template errors surface before anything is planned
    rich_view = _use_rich(log_format)
    choice = _check_store(
        campaign,
        db,
        dry_run=dry_run,
        retry=bool(retry_states),
        new_store=new_store,
        rich_view=rich_view,
    )
    # a dry run too: it previews the real send, whose providers these are
    _warn_tracking(campaign, rich_view)
    with open_store(choice) as store:
        name = campaign.name + (DRY_RUN_SUFFIX if dry_run else "")
        adapters = None
        if dry_run:
            store.campaigns.delete(name)
            folder = DRY_RUN_DIR.resolve()
            adapters = [OutboxAdapter(ProviderConfig(url=f"outbox://{folder}", name="dry-run"))]
        confirmed = not dry_run and not yes
        if confirmed:
            _confirm(campaign, store, name, limit, retry_states)
        if retry_states:
            moved = _reset(store, name, retry_states)
            if rich_view:
                console.print(f"{moved} recipients moved back to pending")
            else:
                _json_line({"event": "retry", "states": list(retry_states), "moved": moved})
        labels = [a.name for a in adapters] if adapters else [p.label for p in campaign.providers]
        view: RichView | JsonLog = (
            RichView(labels, planned_shown=confirmed) if rich_view else JsonLog()
        )
        with view:
            engine = CampaignRun(
                campaign,
                store,
                renderer=renderer,
                adapters=adapters,
                on_event=view,
                limit=limit,
                allow_changed=allow_changed,
                unpause=unpause,
                ledger_name=name,
                dry_run=dry_run,
                exit_code_for=for_reason,
            )
            with collect_rarely():  # this process's GC, for the send (not the library's)
                summary = asyncio.run(_run_with_signals(engine, rich_view))
        if rich_view:
            _print_summary(summary)
            if dry_run:
                console.print(f"messages written to {escape(str(DRY_RUN_DIR.resolve()))}/")
    raise typer.Exit(int(for_reason(summary.reason)))


def _check_store(
    campaign: Campaign,
    db: Path | None,
    *,
    dry_run: bool,
    retry: bool,
    new_store: bool,
    rich_view: bool,
) -> StoreChoice:
    """The campaign's store, refused if it looks like the wrong one; a new one said loudly."""
    choice = for_campaign(campaign, db)
    if retry and not knows(choice.path, campaign.name):
        raise fail(
            f"the store {choice.describe()} has never sent {campaign.name!r}, so there is "
            "nothing to retry; name the store that sent it (--db PATH, store: in the "
            "campaign file, or $STAMP_DB)"
        )
    # a dry run sends nothing, so a trace of an earlier send is no reason to refuse it
    notice = check_store(campaign, choice, new_store=new_store or dry_run)
    if notice is not None:
        if rich_view:
            console.print(
                f"[bold yellow]warning: {escape(redact.redact(notice))}[/]", soft_wrap=True
            )
        else:
            _json_line(ev.Notice("warning", notice).as_dict())
    return choice


def _reset(store: protocols.Store, name: str, states: tuple[str, ...]) -> int:
    """Move rows back to pending while holding the lock, so no run is sending them."""
    row = store.campaigns.ensure(name)
    owner = locks.new_owner()
    store.locks.acquire(row.id, owner, campaign_name=name)
    try:
        # rows a dead run left `sending` are `unknown` (the engine would say so next):
        # mark them now, or `retry --unknown` right after a crash would miss them
        store.ledger.mark_stale_sending(row.id)
        return store.ledger.retry(row.id, states)
    finally:
        store.locks.release(row.id, owner)


# --------------------------------------------------------------------------- --test-to

# a test message's fate -> the exit code a send with that outcome would earn
_TEST_EXIT = {
    Outcome.ACCEPTED: ExitCode.OK,
    Outcome.RECIPIENT_REJECTED: ExitCode.PERMANENT_FAILURES,
    Outcome.UNKNOWN: ExitCode.PERMANENT_FAILURES,
    Outcome.RECIPIENT_DEFERRED: ExitCode.RESUMABLE,
    Outcome.THROTTLED: ExitCode.RESUMABLE,
    Outcome.PROVIDER_DOWN: ExitCode.ALL_PROVIDERS_DOWN,
    Outcome.PROVIDER_REFUSED: ExitCode.ALL_PROVIDERS_DOWN,
}


def _test_address(text: str) -> tuple[str, str]:
    # here, not at the top: idna costs `stamp status` ~40 ms of start-up
    from stampcli.audience.address import InvalidAddress, normalize_address

    try:
        return normalize_address(text)
    except InvalidAddress as exc:
        raise InputError(
            f"--test-to: {exc.address!r} is not an address to send to: {exc.reason}"
        ) from None


def _suppressed_note(campaign: Campaign, db: Path | None, key: str) -> str | None:
    """Say so when the real recipient is suppressed: the test goes out, the real send will not."""
    choice = for_campaign(campaign, db)
    if not choice.exists:
        return None
    with open_store(choice, readonly=True) as store:
        found = store.suppressions.suppressed([key], campaign.audience.list_ or [])
    if not found:
        return None
    return f"{key} is on the suppression list: the real send leaves them out"


def _print_test_event(event: ev.Event) -> None:
    if isinstance(event, ev.ProviderState):
        why = f": {event.reason}" if event.reason else ""
        text, style = f"provider {event.provider} is {event.state}{why}", "yellow"
    elif isinstance(event, ev.Notice):
        text = event.message
        style = {"error": "bold red", "warning": "yellow"}.get(event.level, "dim")
    else:
        return
    console.print(f"[{style}]{escape(redact.redact(text))}[/]", soft_wrap=True)


def _send_test(
    campaign_file: Path,
    test_to: str,
    *,
    row: int | None,
    email: str | None,
    db: Path | None,
    log_format: LogFormat,
) -> None:
    """``send --test-to``: one recipient's message, readdressed, through the real providers."""
    # the recipient is chosen and rendered the way `stamp preview` does it
    from stampcli.cli.render_cmd import pick_recipient
    from stampcli.delivery.testsend import readdress, send_test

    test_key, test_email = _test_address(test_to)
    campaign = load_campaign(campaign_file)
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
    message = readdress(real, test_key, test_email)
    rich_view = _use_rich(log_format)
    _warn_tracking(campaign, rich_view)
    note = _suppressed_note(campaign, db, contact.key)
    # a test counts against the providers' daily quotas (the provider counts it): the
    # store holds them, and is opened only then
    quota = any(p.daily_quota for p in campaign.providers)
    on_event: ev.EventSink = _print_test_event if rich_view else JsonLog()
    if quota:
        with open_store(for_campaign(campaign, db)) as store:
            delivery = asyncio.run(send_test(campaign, message, store, on_event=on_event))
    else:
        delivery = asyncio.run(send_test(campaign, message, on_event=on_event))
    result = delivery.result
    code = _TEST_EXIT[result.outcome]
    if not rich_view:
        _json_line(
            {
                "event": "test",
                "campaign": campaign.name,
                "recipient": contact.key,
                "row": contact.row or None,
                "to": test_email,
                "outcome": result.outcome.value,
                "provider": delivery.provider,
                "attempts": delivery.attempts,
                "message_id": result.message_id,
                "detail": result.detail,
                "note": note,
                "exit_code": int(code),
            }
        )
        raise typer.Exit(int(code))
    if note is not None:
        console.print(f"[yellow]note: {escape(note)}[/]", soft_wrap=True)
    if result.outcome is Outcome.ACCEPTED:
        through = f" through {escape(delivery.provider or '?')}"
        ident = f" ({escape(result.message_id)})" if result.message_id else ""
        console.print(
            f"[green]sent[/] {escape(contact.email)}'s message ({escape(where)}) to "
            f"{escape(test_email)}{through}{ident}; no ledger row was touched",
            soft_wrap=True,
        )
        if "List-Unsubscribe" in message.headers:
            console.print(
                f"[dim]its unsubscribe link and List-Unsubscribe are {escape(contact.email)}'s: "
                "following them unsubscribes that recipient[/]",
                soft_wrap=True,
            )
    else:
        detail = f": {result.detail}" if result.detail else ""
        console.print(
            f"[bold red]not sent[/] ({result.outcome.value}"
            f"{', ' + escape(delivery.provider) if delivery.provider else ''})"
            f"{escape(redact.redact(detail))}",
            soft_wrap=True,
        )
    raise typer.Exit(int(code))


@command
def send(
    campaign_file: CampaignArg,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help=f"Write every message to ./{DRY_RUN_DIR}/ instead of sending (own ledger).",
        ),
    ] = False,
    limit: LimitOption = None,
    yes: YesOption = False,
    allow_changed: AllowChangedOption = False,
    unpause: Annotated[
        bool, typer.Option("--unpause", help="Clear an auto-stop pause and resume sending.")
    ] = False,
    db: CampaignDbOption = None,
    log_format: LogFormatOption = LogFormat.auto,
    test_to: Annotated[
        str | None,
        typer.Option(
            "--test-to",
            metavar="ADDR",
            help="Send one recipient's real message to ADDR only; the ledger is not touched.",
            show_default=False,
        ),
    ] = None,
    row: Annotated[
        int | None,
        typer.Option(
            "--row", help="With --test-to: the recipient from this row (the header is row 1)."
        ),
    ] = None,
    email: Annotated[
        str | None,
        typer.Option("--email", metavar="ADDR", help="With --test-to: the recipient with ADDR."),
    ] = None,
    new_store: NewStoreOption = False,
) -> None:
    """Send a campaign: plan its audience into the ledger and send what is due.

    Safe to run again at any time (cron): recipients already sent are never
    sent again, and a run stopped half-way resumes where it stopped.

    --test-to ADDR sends the first recipient's message (or --row N's, or
    --email ADDR's) to ADDR alone, through the real providers, to try the
    campaign on yourself; exit 0 when a provider accepted it.

    Exit codes: 0 complete; 1 complete with permanent failures or unknown
    outcomes; 2 bad input; 3 stopped with work left (limit, Ctrl-C, quota,
    deferred); 4 every provider down; 5 another run holds the campaign; 6
    paused; 7 store error; 130 stopped hard.
    """
    if test_to is not None:
        others = [
            flag
            for flag, on in (
                ("--dry-run", dry_run),
                ("--limit", limit is not None),
                ("--allow-changed", allow_changed),
                ("--unpause", unpause),
            )
            if on
        ]
        if others:
            raise fail(f"--test-to sends one test message; it cannot go with {', '.join(others)}")
        if row is not None and email is not None:
            raise fail("give --row or --email, not both")
        _send_test(campaign_file, test_to, row=row, email=email, db=db, log_format=log_format)
        return
    if row is not None or email is not None:
        raise fail("--row and --email choose the recipient of a --test-to message; add --test-to")
    _send(
        campaign_file,
        dry_run=dry_run,
        limit=limit,
        yes=yes,
        allow_changed=allow_changed,
        unpause=unpause,
        db=db,
        log_format=log_format,
        new_store=new_store,
    )


@command
def retry(
    campaign_file: CampaignArg,
    failed: Annotated[bool, typer.Option("--failed", help="Retry permanent failures.")] = False,
    unknown: Annotated[
        bool,
        typer.Option(
            "--unknown", help="Re-send messages whose outcome is unknown (may duplicate)."
        ),
    ] = False,
    deferred: Annotated[
        bool, typer.Option("--deferred", help="Retry deferred recipients now.")
    ] = False,
    limit: LimitOption = None,
    yes: YesOption = False,
    allow_changed: AllowChangedOption = False,
    db: CampaignDbOption = None,
    log_format: LogFormatOption = LogFormat.auto,
) -> None:
    """Move failed, unknown or deferred recipients back to pending, then send like `send`."""
    states = tuple(
        s
        for s, on in (
            (ledger.FAILED, failed),
            (ledger.UNKNOWN, unknown),
            (ledger.DEFERRED, deferred),
        )
        if on
    )
    if not states:
        raise fail("say which recipients to retry: --failed, --unknown and/or --deferred")
    _send(
        campaign_file,
        dry_run=False,
        limit=limit,
        yes=yes,
        allow_changed=allow_changed,
        unpause=False,
        db=db,
        log_format=log_format,
        retry_states=states,
    )


# --------------------------------------------------------------------------- status


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_status(status: CampaignStatus) -> None:
    if not status.exists:
        console.print(f"[bold]{escape(status.campaign)}[/]: not sent yet (no ledger rows)")
        return
    console.print(f"[bold]{escape(status.campaign)}[/]: {status.total} recipients")
    counts = Table(box=None, show_header=False, pad_edge=False)
    for state, n in status.counts.items():
        if n:
            counts.add_row(f"  {state}", str(n))
    console.print(counts)
    if status.per_provider:
        table = Table(box=None, pad_edge=False, title=None)
        states = sorted({s for per in status.per_provider.values() for s in per})
        table.add_column("provider")
        for s in states:
            table.add_column(s, justify="right")
        for name, per in status.per_provider.items():
            table.add_row(escape(name), *(str(per.get(s, 0)) for s in states))
        console.print(table)
    if status.crash is not None:
        # before `retry --unknown`: how many of these can in fact have gone out
        console.print(f"[yellow]{escape(status.crash.text())}[/]", soft_wrap=True)
    if status.paused_reason:
        console.print(
            f"[bold red]paused[/] since {_when(status.paused_at)}: "
            f"{escape(redact.redact(status.paused_reason))}"
        )
    if status.lock is not None:
        stale = f" (stale: {status.lock.stale})" if status.lock.stale else ""
        console.print(
            f"locked by {escape(status.lock.owner)}, heartbeat "
            f"{status.lock.heartbeat_age:.0f} s ago{escape(stale)}"
        )
    run = status.last_run
    if run is not None:
        code = "still running or died" if run.exit_code is None else f"exit {run.exit_code}"
        console.print(f"last run: {_when(run.started_at)}, {code}, {escape(run.reason or '-')}")
        for p in run.providers:
            tallies = ", ".join(
                f"{p[k]} {k}"
                for k in ("sent", "rejected", "failed", "throttled", "failovers")
                if p.get(k)
            )
            if p.get("quota") is not None:
                tallies += f"{', ' if tallies else ''}quota {p.get('quota_used')}/{p['quota']}"
            console.print(
                f"  {escape(str(p.get('name')))}: {escape(str(p.get('state')))}"
                + (f", {escape(tallies)}" if tallies else "")
                + (f" ({escape(redact.redact(str(p['reason'])))})" if p.get("reason") else "")
            )
    if status.last_errors:
        console.print("last errors:")
        for e in status.last_errors:
            console.print(
                f"  {escape(e['key'])} [{escape(e['state'])}] {escape(redact.redact(e['error']))}",
                soft_wrap=True,
            )


@command
def status(
    campaign_file: CampaignArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    db: CampaignDbOption = None,
) -> None:
    """Where a campaign stands: recipients by state and provider, errors, lock, pause."""
    campaign = load_campaign(campaign_file)
    choice = for_campaign(campaign, db)
    if not choice.exists:
        result = CampaignStatus(campaign.name, exists=False)
    else:
        with open_store(choice, readonly=True) as store:
            result = campaign_status(store, campaign.name, campaign=campaign)
    if as_json:
        echo_json({**result.as_dict(), "store": str(choice.path)})
    else:
        console.print(f"store: {escape(choice.describe())}", soft_wrap=True, highlight=False)
        _print_status(result)


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("status")(status)
    app.command("retry")(retry)
