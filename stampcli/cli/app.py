"""The ``stamp`` command: the typer app, --version, and the command groups it is built from.

Each command group lives in its own module with a ``register(app)`` function.
``main()`` imports only the module of the command being run (``stamp import``
need not load the send engine, nor ``stamp send`` the spreadsheet readers):
start-up is a fixed cost of every cron run. ``app`` with every command is
built on first use, for help, completion and tests.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer

from stampcli import __version__
from stampcli.cli import streams
from stampcli.cli.metavars import StampGroup

HELP = (
    "Bulk newsletters from the command line: import subscriber lists, render "
    "personalised messages, and send them through SMTP or email service providers "
    "with failover, throttling and a ledger that never mails anyone twice."
)

# command name -> the module that registers it (each module defines register(app))
COMMANDS: dict[str, str] = {
    "init": "stampcli.cli.init_cmd",
    "import": "stampcli.cli.lists_cmd",
    "lists": "stampcli.cli.lists_cmd",
    "preview": "stampcli.cli.render_cmd",
    "check": "stampcli.cli.render_cmd",
    "send": "stampcli.cli.send_cmd",
    "status": "stampcli.cli.send_cmd",
    "report": "stampcli.cli.report_cmd",
    "retry": "stampcli.cli.send_cmd",
    "providers": "stampcli.cli.providers_cmd",
    "suppress": "stampcli.cli.suppress_cmd",
    "unsubscribe": "stampcli.cli.suppress_cmd",
    "events": "stampcli.cli.events_cmd",
    "bounces": "stampcli.cli.bounces_cmd",
    "serve": "stampcli.cli.serve_cmd",
    "forget": "stampcli.cli.forget_cmd",
    "queue": "stampcli.cli.queue_cmd",
    "worker": "stampcli.cli.worker_cmd",
    "api": "stampcli.cli.api_cmd",
    "schedule": "stampcli.cli.schedule_cmd",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stamp {__version__}")
        raise typer.Exit()


def build_app(modules: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    """A stamp app with the commands of ``modules``."""
    new = typer.Typer(
        name="stamp",
        cls=StampGroup,
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @new.callback()
    def _root(
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
        ] = False,
    ) -> None:
        """stamp: bulk newsletters that reach every subscriber exactly once."""

    for name in modules:
        importlib.import_module(name).register(new)
    return new


def _wanted(argv: list[str]) -> tuple[str, ...]:
    """The modules the command line needs: one command's, or all for help and completion."""
    if any(key.startswith("_STAMP_COMPLETE") for key in os.environ):
        return COMMAND_MODULES
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMANDS:
        return (COMMANDS[command],)
    if command is None and "--version" in argv:
        return ()
    return COMMAND_MODULES


def main() -> None:
    # before anything prints: a closed stdout or stderr must not stop a command (`| head`)
    streams.protect()
    build_app(_wanted(sys.argv[1:]))()


_full: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """``app``: every command, built on first use."""
    global _full
    if name == "app":
        if _full is None:
            _full = build_app()
        return _full
    raise AttributeError(name)
