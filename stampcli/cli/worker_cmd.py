"""``stamp worker``: send the campaigns queued in the store, until stopped (or ``--once``).

The loop is :class:`stampcli.service.worker.Worker`; this module parses the
options, installs the signal handlers (first SIGTERM/SIGINT drains, a second
stops at once) and writes one line per event worth reading: text with a UTC
time stamp, or JSON lines (``--log-format json``) for a log collector.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from stampcli import redact
from stampcli.cli.common import DbOption, command, err_console
from stampcli.cli.exit_codes import for_reason, with_exit_code
from stampcli.delivery import run_events as ev
from stampcli.errors import ExitCode
from stampcli.gcpace import collect_rarely
from stampcli.service import worker as w
from stampcli.store.location import standalone


class WorkerLog(StrEnum):
    text = "text"
    json = "json"


def _when() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(event: ev.Event) -> str | None:
    """One line for ``event``, or None for those a worker's log leaves out."""
    if isinstance(event, w.WorkerStarted):
        how = "one pass" if event.once else "until stopped"
        return f"worker {event.worker} started on {event.store} ({how})"
    if isinstance(event, w.CampaignTaken):
        return f"{event.campaign}: sending (due {event.due_since:.0f} s)"
    if isinstance(event, w.CampaignSettled):
        if event.state == "done":
            then = "done"
        else:
            then = f"due again {datetime.fromtimestamp(event.due_at or 0, UTC):%H:%M:%S} UTC"
        why = f": {event.error}" if event.error else ""
        return f"{event.campaign}: {event.reason}, {event.sent} sent, {then}{why}"
    if isinstance(event, w.WorkerStopped):
        return (
            f"worker {event.worker} stopped ({event.reason}): {event.runs} runs, {event.sent} sent"
        )
    if isinstance(event, ev.Notice):
        return f"{event.level}: {event.message}"
    if isinstance(event, ev.RunFinished):
        return None  # the worker's own "settled" line says it
    return None


class _Log:
    def __init__(self, fmt: WorkerLog) -> None:
        self.fmt = fmt

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Progress):
            return
        if self.fmt is WorkerLog.json:
            data = event.as_dict()
            if isinstance(event, ev.RunFinished):
                data = with_exit_code(data)
            line = json.dumps({"time": _when(), **data}, ensure_ascii=False, default=str)
        else:
            text = _text(event)
            if text is None:
                return
            line = f"{_when()} {text}"
        sys.stdout.write(redact.redact(line) + "\n")
        sys.stdout.flush()


async def _run(worker: w.Worker) -> w.WorkerSummary:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            err_console.print("stopping: finishing what is on the wire (again: stop at once)")
            worker.request_stop()
        else:
            worker.abort()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        return await worker.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@command
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Send what is due now, then exit (for cron).")
    ] = False,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", metavar="SECONDS", min=0.1, help="Seconds between looks at the queue."
        ),
    ] = w.POLL_EVERY,
    db: DbOption = None,
    log_format: Annotated[
        WorkerLog, typer.Option("--log-format", help="text lines or JSON lines on stdout.")
    ] = WorkerLog.text,
) -> None:
    """Send the campaigns queued with `stamp queue add`, taking turns with other workers.

    Run any number of these, on any hosts, against one store (PostgreSQL for
    several hosts). SIGTERM or Ctrl-C drains: what is on the wire is recorded,
    the campaign is released for another worker, exit 0; a second one stops at
    once. Exit codes: 0 stopped or pass done; 7 store error at start.
    """
    choice = standalone(db)
    store = choice.open()
    try:
        runner = w.Worker(
            store,
            w.WorkerOptions(once=once, poll=poll, exit_code_for=for_reason),
            on_event=_Log(log_format),
        )
        with collect_rarely():
            summary = asyncio.run(_run(runner))
    finally:
        store.close()
    if summary.reason == "store":
        raise typer.Exit(int(ExitCode.STORE))
    if runner.stopping and any(s.reason == "interrupted" for s in summary.settled):
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
