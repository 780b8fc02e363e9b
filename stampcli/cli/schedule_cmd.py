"""``stamp schedule list`` and ``stamp schedule winner``: what is due when, and the A/B override."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stampcli.cli.common import CampaignDbOption, DbOption, command, console, echo_json
from stampcli.config import load_campaign
from stampcli.service.schedule import list_from, set_winner
from stampcli.store.location import standalone

schedule_app = typer.Typer(
    name="schedule",
    help="Scheduled campaigns: what is due when, and the A/B winner.",
    no_args_is_help=True,
)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


@command
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    db: DbOption = None,
) -> None:
    """Every campaign sent from the store, with its state and when it is next due."""
    choice = standalone(db)
    entries = list_from(choice)
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    if not entries:
        console.print(f"No campaign has run from {escape(str(choice.path))} yet.", soft_wrap=True)
        return
    out = Table(title=escape(f"Campaigns in {choice.path}"), title_justify="left")
    for name in ("campaign", "state", "next due", "left", "A/B winner", "file"):
        out.add_column(name, justify="right" if name == "left" else "left")
    for e in entries:
        due = "now" if e.due_now else _when(e.next_due_at)
        out.add_row(
            escape(e.campaign), e.state, due, f"{e.left:,}", escape(e.ab_winner or "-"),
            escape(e.file or "-"),
        )  # fmt: skip
    console.print(out)


@command
def winner_cmd(
    campaign_file: Annotated[Path, typer.Argument(help="The campaign file.")],
    variant: Annotated[str, typer.Argument(help="The variant: its name, letter (A, B) or number.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    db: CampaignDbOption = None,
) -> None:
    """Choose the A/B winner by hand: the next `stamp send` sends it to the rest at once."""
    result = set_winner(load_campaign(campaign_file), variant, db)
    if as_json:
        echo_json(result)
        return
    console.print(
        f"winner of {escape(str(result['campaign']))}: {escape(str(result.get('winner')))} "
        "(chosen by hand); the next `stamp send` sends it to the rest",
        soft_wrap=True,
    )
    for v in result.get("variants", []):
        console.print(
            f"  {escape(str(v['variant']))}: {v['sent']} sent, {v['opened']} opened, "
            f"{v['clicked']} clicked"
        )


def register(app: typer.Typer) -> None:
    schedule_app.command("list")(list_cmd)
    schedule_app.command("winner")(winner_cmd)
    app.add_typer(schedule_app)
