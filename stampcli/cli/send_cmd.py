"""``stamp send``, ``stamp status`` and ``stamp retry``: running a campaign and reading its ledger.

Long because of drawing, not rules: the rich progress view, the JSON log, the
confirmation and the status tables of three commands; every decision is a
:mod:`stampcli.service` call.

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
from collections.abc import Coroutine
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
)
from stampcli.cli.exit_codes import for_reason, with_exit_code
from stampcli.config import Campaign, load_campaign
from stampcli.delivery import run_events as ev
from stampcli.delivery.planner import segment_error_text
from stampcli.errors import ExitCode
from stampcli.gcpace import collect_rarely
from stampcli.providers.base import Outcome
from stampcli.service.send import (
    DRY_RUN_DIR,
    DueCount,
    RetryMoved,
    RunHandle,
    RunSummary,
    SendOptions,
    count_due,
    parse_test_address,
    prepare_send,
    prepare_test,
    provider_labels,
    send_campaign,
    send_test_message,
)
from stampcli.service.status import CampaignStatus, status_of
from stampcli.store import ledger, protocols


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
        elif isinstance(event, RetryMoved):
            self.live.console.print(f"{event.moved} recipients moved back to pending")
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
        "not_due": "nothing more is due now (schedule, window or A/B wait); run again later",
    }
    if summary.reason in hints:
        console.print(f"[dim]{hints[summary.reason]}[/]")
    if summary.reason == "not_due":
        console.print(f"next due: {escape(_due_text(summary.next_due_at))}", soft_wrap=True)


def _due_text(ts: float | None) -> str:
    """When a scheduled campaign is next due, in local time and UTC, for people."""
    if ts is None:
        return "never: no send window is ever open for the rest"
    local = datetime.fromtimestamp(ts).astimezone()
    utc = datetime.fromtimestamp(ts, UTC)
    return f"{local:%Y-%m-%d %H:%M %Z} ({utc:%Y-%m-%dT%H:%M}Z); a later `stamp send` sends it"


# --------------------------------------------------------------------------- send


def _warn_tracking(warnings: list[str], rich_view: bool) -> None:
    """Say which providers cannot honour the tracking switches, before anything is sent.

    Told before the confirmation so a person can still change providers; in the
    JSON log as the same ``notice`` lines the engine writes for its warnings.
    """
    for text in warnings:
        if rich_view:
            console.print(f"[yellow]warning: {escape(redact.redact(text))}[/]", soft_wrap=True)
        else:
            _json_line(ev.Notice("warning", text).as_dict())


def _confirm(due: DueCount, campaign: Campaign, store: protocols.Store) -> None:
    """Show what will happen (``count_due`` planned it), and ask."""
    console.print(f"[bold]{escape(due.campaign)}[/]", soft_wrap=True)
    if due.example_subject is not None:
        console.print(
            f"  subject: {escape(due.example_subject)} "
            f"[dim](for {escape(due.example_to or '?')}; template: {escape(campaign.subject)})[/]",
            emoji=False,
            soft_wrap=True,
        )
    else:
        console.print(f"  subject template: {escape(campaign.subject)}", emoji=False)
    console.print(f"  store: {escape(str(store.location))}", soft_wrap=True)
    console.print(
        f"  recipients: {due.in_ledger} in the ledger ({due.new} new), "
        f"{due.sent} already sent, {due.suppressed} suppressed, "
        f"{due.due} to send" + (f", at most {due.cap} in this run" if due.cap is not None else "")
    )
    planned = due.planned
    if planned.unchanged:
        console.print("  audience: unchanged since it was last planned")
    else:
        console.print(
            f"  audience: {planned.rejected} rejected rows, {planned.duplicates} duplicates, "
            f"{planned.segment_excluded} left out (segment, excluded lists, states)"
        )
    if planned.segment_errors:
        text = segment_error_text(planned.segment_errors, planned.first_segment_error)
        console.print(f"  [yellow]warning: {escape(text)}[/]", soft_wrap=True)
    for p in campaign.providers:
        rate = f"{p.rate}" if p.rate else "no rate limit"
        quota = f", {p.daily_quota}/day" if p.daily_quota else ""
        console.print(f"  provider {escape(p.label)}: {escape(str(p.parsed))} ({rate}{quota})")
    if campaign.throttle.rate:
        console.print(f"  campaign rate: {campaign.throttle.rate}")
    if due.now == 0:
        return
    if not typer.confirm(f"Send {due.now} messages now?", default=False):
        console.print("nothing sent")
        raise typer.Exit(int(ExitCode.OK))


async def _run_with_signals(
    run: Coroutine[Any, Any, RunSummary], handle: RunHandle, rich_view: bool
) -> RunSummary:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            handle.request_stop()
            if rich_view:
                err_console.print("[dim]press Ctrl-C again to stop at once[/]")
        else:
            handle.abort()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no support
            pass
    try:
        return await run
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _send(
    campaign_file: Path,
    options: SendOptions,
    *,
    yes: bool,
    db: str | None,
    log_format: LogFormat,
) -> None:
    if not (options.dry_run or yes or is_interactive()):
        raise fail(
            "not on a terminal, so stamp cannot ask before sending; add --yes to send "
            "(or --dry-run to write the messages to a folder instead)",
            ExitCode.BAD_INPUT,
        )
    rich_view = _use_rich(log_format)
    prepared = prepare_send(load_campaign(campaign_file), options, db)
    campaign = prepared.campaign
    if prepared.store_notice is not None:
        _say_warning(prepared.store_notice, rich_view)
    _warn_tracking(prepared.warnings, rich_view)
    with prepared.open_store() as store:
        confirmed = not options.dry_run and not yes
        if confirmed:
            _confirm(count_due(campaign, store, options, prepared.renderer), campaign, store)
        labels = provider_labels(campaign, options)
        view: RichView | JsonLog = (
            RichView(labels, planned_shown=confirmed) if rich_view else JsonLog()
        )
        handle = RunHandle()
        with view:
            run = send_campaign(
                campaign,
                store,
                options,
                on_event=view,
                renderer=prepared.renderer,
                handle=handle,
                exit_code_for=for_reason,
            )
            with collect_rarely():  # this process's GC, for the send (not the library's)
                summary = asyncio.run(_run_with_signals(run, handle, rich_view))
        if rich_view:
            _print_summary(summary)
            if options.dry_run:
                console.print(f"messages written to {escape(str(options.dry_run_dir.resolve()))}/")
    raise typer.Exit(int(for_reason(summary.reason)))


def _say_warning(text: str, rich_view: bool) -> None:
    if rich_view:
        console.print(f"[bold yellow]warning: {escape(redact.redact(text))}[/]", soft_wrap=True)
    else:
        _json_line(ev.Notice("warning", text).as_dict())


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
    db: str | None,
    log_format: LogFormat,
) -> None:
    """``send --test-to``: one recipient's message, readdressed, through the real providers."""
    test_key = parse_test_address(test_to)  # before the campaign: the option is the mistake
    plan = prepare_test(
        load_campaign(campaign_file), test_to, row=row, email=email, db=db, test_key=test_key
    )
    rich_view = _use_rich(log_format)
    _warn_tracking(plan.warnings, rich_view)
    on_event: ev.EventSink = _print_test_event if rich_view else JsonLog()
    sent = asyncio.run(send_test_message(plan, db=db, on_event=on_event))
    result, delivery, contact = sent.delivery.result, sent.delivery, plan.contact
    code = _TEST_EXIT[result.outcome]
    if not rich_view:
        _json_line({**sent.as_dict(), "exit_code": int(code)})
        raise typer.Exit(int(code))
    if plan.note is not None:
        console.print(f"[yellow]note: {escape(plan.note)}[/]", soft_wrap=True)
    if result.outcome is Outcome.ACCEPTED:
        through = f" through {escape(delivery.provider or '?')}"
        ident = f" ({escape(result.message_id)})" if result.message_id else ""
        console.print(
            f"[green]sent[/] {escape(contact.email)}'s message ({escape(plan.where)}) to "
            f"{escape(plan.to)}{through}{ident}; no ledger row was touched",
            soft_wrap=True,
        )
        if "List-Unsubscribe" in plan.message.headers:
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
    alone: Annotated[
        bool,
        typer.Option(
            "--alone",
            help="On PostgreSQL: lock the campaign (refuse other runs) instead of sharing it.",
        ),
    ] = False,
) -> None:
    """Send a campaign: plan its audience into the ledger and send what is due.

    Safe to run again at any time (cron): recipients already sent are never
    sent again, and a run stopped half-way resumes where it stopped.

    On a PostgreSQL store, `stamp send` started several times (on several
    machines) shares the campaign: each run sends a part, every recipient
    once. On SQLite, and with --alone, --limit, a schedule or --dry-run, a
    second run of the campaign is refused (exit 5).

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
    options = SendOptions(
        dry_run=dry_run,
        limit=limit,
        allow_changed=allow_changed,
        unpause=unpause,
        new_store=new_store,
        shared=False if alone else None,
    )
    _send(campaign_file, options, yes=yes, db=db, log_format=log_format)


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
    options = SendOptions(limit=limit, allow_changed=allow_changed, retry=states)
    _send(campaign_file, options, yes=yes, db=db, log_format=log_format)


# --------------------------------------------------------------------------- status


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_events(status: CampaignStatus) -> None:
    """One line of delivery event counts (with rates of the messages sent), if any."""
    ev, rates = status.events, status.event_rates
    if not any(ev.values()):
        return
    parts = []
    for name, label in (
        ("delivered", "delivered"),
        ("bounced_hard", "hard bounces"),
        ("bounced_soft", "soft bounces"),
        ("complained", "complaints"),
        ("unsubscribed", "unsubscribed"),
        ("opened", "opens"),
        ("clicked", "clicks"),
    ):
        n = ev.get(name, 0)
        if not n:
            continue
        text = f"{n} {label}"
        if name in ("opened", "clicked"):
            text += f" ({ev.get(name + '_unique', 0)} unique)"
        if name in rates:
            text += f" {rates[name]:.1%}"
        parts.append(text)
    extra = ", ".join(
        f"{ev[k]} {k.replace('_', ' ')}"
        for k in ("deferred", "rejected", "dropped", "auto_replied")
        if ev.get(k)
    )
    # own tracking's machine hits (privacy proxies, prefetchers, scanners), apart
    machine = ", ".join(
        f"{ev[k]} {label}"
        for k, label in (("opened_machine", "opens"), ("clicked_machine", "clicks"))
        if ev.get(k)
    )
    if machine:
        extra += ("; " if extra else "") + f"by machines: {machine}"
    console.print("events: " + ", ".join(parts) + (f"; {extra}" if extra else ""), soft_wrap=True)


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
    if status.segment_errors:
        text = segment_error_text(status.segment_errors, status.first_segment_error)
        console.print(f"[yellow]warning: {escape(text)}[/]", soft_wrap=True)
    if status.crash is not None:
        # before `retry --unknown`: how many of these can in fact have gone out
        console.print(f"[yellow]{escape(status.crash.text())}[/]", soft_wrap=True)
    _print_events(status)
    for w in status.warmup:
        cap = "no cap (warmed up)" if w["cap"] is None else f"cap {w['cap']}"
        console.print(
            f"warm-up {escape(w['label'])}: {w['used']} sent on {w['day']} (UTC), {cap}",
            soft_wrap=True,
        )
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
        code = {
            "running": "still running",
            "died": "died",
        }.get(run.state, "ended" if run.exit_code is None else f"exit {run.exit_code}")
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
    campaign_file: Annotated[
        Path | None,
        typer.Argument(
            help="The campaign file (campaign.yml); without it, the store's workers and queue.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    db: CampaignDbOption = None,
) -> None:
    """Where a campaign stands: recipients by state and provider, errors, lock, pause;
    and the store's workers (`stamp worker`) and queue."""
    from stampcli.cli.fleet_view import print_fleet
    from stampcli.service.fleet_status import fleet_status
    from stampcli.store.location import standalone

    if campaign_file is None:
        choice = standalone(db)
        fleet = fleet_status(choice)
        if as_json:
            echo_json({"store": choice.location, **fleet.as_dict()})
            return
        console.print(f"store: {escape(choice.describe())}", soft_wrap=True, highlight=False)
        print_fleet(fleet, empty=True)
        return
    campaign = load_campaign(campaign_file)
    result, choice = status_of(campaign, db)
    fleet = fleet_status(choice).of_campaign(campaign.name)
    if as_json:
        echo_json({**result.as_dict(), "store": choice.location, **fleet.as_dict()})
    else:
        console.print(f"store: {escape(choice.describe())}", soft_wrap=True, highlight=False)
        _print_status(result)
        print_fleet(fleet, empty=False)


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("status")(status)
    app.command("retry")(retry)
