"""What every command shares: consoles, the --db options, and turning errors into exit codes.

The CLI is the only layer that prints or exits. Each command function is
wrapped with :func:`command`, which turns a :class:`StampError` into its
one-paragraph message on stderr and its documented exit code, and an
unexpected exception into a short message (no traceback unless STAMP_DEBUG=1).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from stampcli import redact
from stampcli.cli.hints import explain
from stampcli.errors import ExitCode, StampError
from stampcli.store.location import StoreChoice, standalone
from stampcli.store.protocols import Store as StoreLike

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Which store each kind of command uses is stampcli.store.location's rule; the help says it.
# A str, not a Path: a Path would fold the // of postgresql://host into one slash.
_STORE = "Store to use: a SQLite file (PATH or sqlite:///PATH) or postgresql://USER@HOST/DB"
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="STORE",
        help=f"{_STORE} (default: $STAMP_DB, else ./stamp.db).",
        show_default=False,
    ),
]
CampaignDbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="STORE",
        help=f"{_STORE} (default: the campaign's store: key, else $STAMP_DB, "
        "else stamp.db beside the campaign file).",
        show_default=False,
    ),
]
FileDbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="STORE",
        help=f"{_STORE} (default: $STAMP_DB, else stamp.db beside FILE).",
        show_default=False,
    ),
]


def open_store(db: str | StoreChoice | None, *, readonly: bool = False) -> StoreLike:
    """Open the chosen store; a bare ``--db`` value (or None) goes through ``standalone``."""
    choice = db if isinstance(db, StoreChoice) else standalone(db)
    return choice.open(readonly=readonly)


def say_new_store(choice: StoreChoice, what: str) -> None:
    """Tell, on stderr, that ``what`` is about to create the store ``choice``."""
    if not choice.exists:
        text = (
            f"warning: no store at {choice.location} yet; {what} creates a new one "
            f"({choice.origin})"
        )
        err_console.print(f"[yellow]{escape(redact.redact(text))}[/]", soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {redact.redact(message)}", soft_wrap=True)
    return typer.Exit(int(code))


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so stamp's errors become a message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except StampError as exc:
            raise fail(explain(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("STAMP_DEBUG"):
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc}. This is a bug in stamp; "
                "run again with STAMP_DEBUG=1 for a traceback and report it.",
                ExitCode.BAD_INPUT,
            ) from None

    return wrapper


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def echo_json(obj: Any) -> None:
    """One JSON document on stdout (for --json)."""
    import json

    sys.stdout.write(redact.redact(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")
    sys.stdout.flush()
