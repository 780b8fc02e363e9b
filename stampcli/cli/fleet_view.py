"""How ``stamp status`` draws the fleet: the workers table and the queue."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape
from rich.table import Table

from stampcli.cli.common import console
from stampcli.cli.queue_cmd import queue_table
from stampcli.service.fleet_status import FleetStatus

_STYLE = {"gone": "red", "stopped": "dim", "draining": "yellow", "sending": "green"}


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M:%S")


def workers_table(fleet: FleetStatus) -> Table:
    table = Table(title="workers", title_justify="left", box=None, pad_edge=False)
    for column in ("worker", "host", "pid", "state", "campaign", "sent", "rate/s", "started (UTC)",
                   "last seen"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("pid", "sent", "rate/s") else "left")
    for w in fleet.workers:
        style = _STYLE.get(w.state, "")
        state = f"[{style}]{w.state}[/]" if style else w.state
        table.add_row(
            escape(w.id.rsplit(":", 1)[-1]), escape(w.host), str(w.pid), state,
            escape(w.campaign or "-"),
            f"{w.sent:,}", f"{w.rate:,.0f}" if w.rate else "-", _utc(w.started_at),
            f"{w.heartbeat_age:.0f} s ago",
        )  # fmt: skip
    return table


def sharing_table(fleet: FleetStatus) -> Table:
    table = Table(title="sharing a campaign", title_justify="left", box=None, pad_edge=False)
    for column in ("campaign", "host", "pid", "claimed", "rate/s", "started (UTC)", "heartbeat"):
        table.add_column(
            column, justify="right" if column in ("pid", "claimed", "rate/s") else "left"
        )
    for w in fleet.sharing:
        table.add_row(
            escape(w.campaign), escape(w.host), str(w.pid), f"{w.claimed:,}",
            f"{w.rate:,.0f}" if w.rate else "-", _utc(w.started_at),
            f"{max(0.0, fleet.at - w.heartbeat_at):.0f} s ago",
        )  # fmt: skip
    return table


def print_fleet(fleet: FleetStatus, *, empty: bool) -> None:
    """The workers, the runs sharing campaigns and the queue; ``empty``: say so when there
    are no workers or queue (else stay quiet)."""
    if fleet.sharing:
        console.print(sharing_table(fleet))
        n = len(fleet.sharing)
        claimed = sum(w.claimed for w in fleet.sharing)
        rate = sum(w.rate for w in fleet.sharing)
        console.print(
            f"{n} live run{'s' if n != 1 else ''} sharing: {claimed:,} claimed, {rate:,.0f}/s"
        )
    if fleet.workers:
        console.print(workers_table(fleet))
        gone = sum(1 for w in fleet.workers if w.state == "gone")
        live = len(fleet.live)
        line = f"{live} live worker{'s' if live != 1 else ''}"
        if gone:
            line += f", {gone} gone (no heartbeat, or its process died: a crash)"
        console.print(line)
    elif empty:
        console.print("no workers have used this store (start some with `stamp worker`)")
    if fleet.queue:
        console.print(queue_table(fleet.queue, title="queue"))
    elif empty:
        console.print("no campaigns queued (`stamp queue add campaign.yml`)")
