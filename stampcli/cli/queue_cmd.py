"""``stamp queue add|list|remove``: the campaigns ``stamp worker`` sends, kept in the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stampcli import redact
from stampcli.cli.common import (
    CampaignDbOption,
    DbOption,
    command,
    console,
    echo_json,
    fail,
    say_new_store,
)
from stampcli.config import load_campaign
from stampcli.errors import ExitCode, InputError
from stampcli.records import QueueEntry
from stampcli.service.queue import entry_dict, queue_campaign, queue_entries, unqueue
from stampcli.store.location import for_campaign, standalone

queue_app = typer.Typer(
    name="queue",
    help="Campaigns queued in the store for `stamp worker` (on any host) to send.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document.")]


def _parse_at(text: str) -> float:
    """``--at``: an ISO 8601 time; without a zone it is this host's local time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--at {text!r}: not a time; write e.g. 2026-12-10T09:00 or 2026-12-10T09:00+01:00"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@command
def add(
    campaign_file: Annotated[Path, typer.Argument(help="The campaign file (campaign.yml).")],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Due from this time (ISO 8601, local time without a zone; default: now).",
            show_default=False,
        ),
    ] = None,
    new_store: Annotated[
        bool,
        typer.Option(
            "--new-store",
            help="Queue even though the store has never seen this campaign while .eml files "
            "or another store show it was sent before.",
        ),
    ] = False,
    as_json: JsonOption = False,
    db: CampaignDbOption = None,
) -> None:
    """Check a campaign and queue it, with its templates and files, for the workers.

    The store keeps the campaign's keys with ${NAME} references unresolved: each
    worker takes the values from its own environment. Queuing it again replaces
    the definition and makes it due again; recipients already sent stay sent.
    """
    due = None if at is None else _parse_at(at)
    campaign = load_campaign(campaign_file)
    choice = for_campaign(campaign, db)
    done = queue_campaign(
        campaign, choice, at=due, new_store=new_store, on_open=lambda c: say_new_store(c, "queuing")
    )
    if as_json:
        echo_json(done.as_dict())
        return
    verb = "queued" if done.new else "queued again (definition replaced)"
    console.print(
        f"{escape(done.campaign)}: {verb} in {escape(choice.describe())}, "
        f"{done.files} files ({done.size:,} bytes), due {_utc(done.due_at)}",
        soft_wrap=True,
    )
    console.print("[dim]`stamp worker` against this store sends it; `stamp status` shows it[/]")


@command
def list_(as_json: JsonOption = False, db: DbOption = None) -> None:
    """The queued campaigns: state, when due, and how the last run ended."""
    choice = standalone(db)
    entries = queue_entries(choice)
    if as_json:
        echo_json([entry_dict(e) for e in entries])
        return
    if not entries:
        console.print(f"No campaigns queued in {escape(choice.location)}.", soft_wrap=True)
        return
    console.print(queue_table(entries, title=f"Queue of {choice.location}"))


def queue_table(entries: list[QueueEntry], *, title: str | None = None) -> Table:
    """The queue as ``stamp queue list`` and ``stamp status`` show it."""
    table = Table(
        title=None if title is None else escape(title), title_justify="left", box=None,
        pad_edge=False,
    )  # fmt: skip
    for column in ("campaign", "state", "due", "runs", "last run", "last reason"):
        table.add_column(column)
    for e in entries:
        reason = e.last_reason or "-"
        if e.last_error:
            reason += f": {e.last_error}"
        table.add_row(
            escape(e.name), e.state, "-" if e.state == "done" else _utc(e.due_at), str(e.runs),
            _utc(e.last_run_at), escape(redact.redact(reason)),
        )  # fmt: skip
    return table


@command
def remove(
    name: Annotated[str, typer.Argument(help="The campaign's name (name: in its file).")],
    db: DbOption = None,
) -> None:
    """Take a campaign off the queue (its ledger stays; a run in progress finishes)."""
    choice = standalone(db)
    if not unqueue(choice, name):
        raise fail(f"no campaign {name!r} is queued in {choice.describe()}", ExitCode.BAD_INPUT)
    console.print(f"{escape(name)}: taken off the queue of {escape(choice.location)}")


def register(app: typer.Typer) -> None:
    queue_app.command("add")(add)
    queue_app.command("list")(list_)
    queue_app.command("remove")(remove)
    app.add_typer(queue_app)
