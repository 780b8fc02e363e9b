"""``stamp forget ADDRESS...``: draw ``service.forget`` (GDPR erasure)."""

from __future__ import annotations

from typing import Annotated

import typer

from stampcli.cli.common import DbOption, command, console, echo_json, fail, is_interactive
from stampcli.errors import ExitCode
from stampcli.service.forget import forget
from stampcli.store.location import standalone

# what the store cannot reach, said after every erasure
OUTSIDE = (
    "Not touched: files outside the store (rejects files, outbox .eml folders, "
    "exports) and each provider's own logs and lists; erase those there."
)


def register(app: typer.Typer) -> None:
    app.command(
        "forget",
        help=(
            "Erase people from the store (a GDPR erasure request): their contacts in every "
            "list go, ledgers and delivery events keep only a hash of the address, and a "
            "hashed suppression makes sure they are never mailed again, even when a later "
            "import brings the address back."
        ),
    )(forget_cmd)


@command
def forget_cmd(
    addresses: Annotated[list[str], typer.Argument(help="The addresses to erase.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Erase without asking (needed without a terminal).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Erase people from the store, keeping only a hashed suppression."""
    choice = standalone(db)
    if not yes:
        question = f"Erase {len(addresses)} address(es) from {choice.path}? This cannot be undone."
        if not is_interactive():
            raise fail(f"not on a terminal, so stamp cannot ask: {question} Add --yes.")
        if not typer.confirm(question, default=False):
            raise typer.Exit(int(ExitCode.OK))
    results = forget(choice, addresses)
    if as_json:
        echo_json({"forgotten": [r.as_dict() for r in results], "not_touched": OUTSIDE})
        return
    for r in results:
        e = r.erased
        lists = f" ({', '.join(e.lists)})" if e.lists else ""
        console.print(
            f"Forgotten: {e.contacts} list membership(s){lists}, {e.ledger} ledger row(s), "
            f"{e.events} event(s), {e.suppressions} suppression(s) replaced; kept as "
            f"{r.hashed} so it is never mailed again.",
            soft_wrap=True,
            markup=False,
        )
    console.print(OUTSIDE, soft_wrap=True, markup=False)
