"""The ``stamp`` command: the typer app, --version, and the command groups it is built from."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from stampcli import __version__

app = typer.Typer(
    name="stamp",
    help=(
        "Bulk newsletters from the command line: import subscriber lists, render "
        "personalised messages, and send them through SMTP or email service providers "
        "with failover, throttling and a ledger that never mails anyone twice."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# One module per command group; each defines register(app).
COMMAND_MODULES = (
    "stampcli.cli.init_cmd",
    "stampcli.cli.lists_cmd",
    "stampcli.cli.render_cmd",
    "stampcli.cli.send_cmd",
    "stampcli.cli.providers_cmd",
    "stampcli.cli.suppress_cmd",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stamp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """stamp: bulk newsletters that reach every subscriber exactly once."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
