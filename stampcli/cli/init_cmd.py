"""``stamp init``: write a working campaign (campaign.yml, template, list, secret) into a folder."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from stampcli.cli.common import command, console
from stampcli.errors import InputError

# package file -> name in the new folder
FILES = {
    "campaign.yml": "campaign.yml",
    "newsletter.html": "newsletter.html",
    "subscribers.csv": "subscribers.csv",
    "images/logo.png": "images/logo.png",
}
GITIGNORE = ".env\nstamp.db\nstamp.db-*\noutbox/\n*.rejected.csv\n"


def write_project(folder: Path, *, force: bool = False) -> list[Path]:
    """Write the starter files into ``folder``; refuses to overwrite unless ``force``."""
    targets = [folder / name for name in (*FILES.values(), ".env", ".gitignore")]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise InputError(f"{folder}: {names} already exist; use --force to overwrite them")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        source = resources.files("stampcli") / "defaults"
        for package_name, name in FILES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(source.joinpath(*package_name.split("/")).read_bytes())
        env = folder / ".env"
        env.write_text(
            "# Secrets for this campaign; keep this file out of version control.\n"
            "# The unsubscribe token secret: give the same value to the website that\n"
            "# verifies tokens (see README, 'Unsubscribe tokens').\n"
            f"STAMP_UNSUBSCRIBE_SECRET={secrets.token_urlsafe(32)}\n"
        )
        env.chmod(0o600)
        (folder / ".gitignore").write_text(GITIGNORE)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write the campaign files ({exc.strerror})") from None
    return targets


@command
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to create the campaign in.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a working campaign: campaign.yml, a template, a sample list and an outbox provider.

    `stamp send FOLDER/campaign.yml` works straight after it and writes one .eml
    file per subscriber into FOLDER/outbox. A random unsubscribe-token secret is
    written to FOLDER/.env.
    """
    written = write_project(folder, force=force)
    for path in written:
        console.print(f"  wrote {path}")
    campaign = folder / "campaign.yml"
    # --yes: the command must work as printed, also in a shell that cannot answer a prompt
    console.print(
        f"\nNext: [bold]stamp send {campaign} --yes[/] "
        f"(or [bold]stamp send {campaign} --dry-run[/] to try it first)"
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
