"""``stamp bounces fetch`` (IMAP) and ``stamp bounces read PATH`` (Maildir, mbox).

Both read a bounce mailbox into delivery events through
:func:`stampcli.service.bounces.read_mailbox` and print what it came to: mails
read, by kind and verdict, events stored, addresses suppressed, campaigns paused,
and every mail that was kept because it could not be used (unparsable, forged,
unmatched). Junk (spam, replies) is counted and left where it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stampcli.cli.common import (
    CampaignDbOption,
    command,
    console,
    echo_json,
    err_console,
    open_store,
    say_new_store,
)
from stampcli.errors import InputError

bounces_app = typer.Typer(
    name="bounces",
    help="Bounces, complaints and auto-replies of SMTP sends, from a mailbox.",
    no_args_is_help=True,
)

FolderOption = Annotated[
    str | None,
    typer.Option(
        "--folder",
        help="Move processed mail to this folder (default: bounces.processed_folder, "
        "stamp-processed).",
    ),
]
DeleteOption = Annotated[
    bool, typer.Option("--delete", help="Delete processed mail instead of moving it.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document.")]
CampaignArg = Annotated[
    Path, typer.Argument(help="campaign.yml (return path, secrets, unsubscribe mailto).")
]


def _say(text: str) -> None:
    console.print(text, markup=False, soft_wrap=True, highlight=False)


def _warn(text: str) -> None:
    err_console.print(text, markup=False, soft_wrap=True, highlight=False)


def _run(
    campaign_file: Path,
    where: str,
    folder: str | None,
    delete: bool,
    as_json: bool,
    db: str | None,
) -> None:
    from stampcli.bounces.mailboxes import open_source
    from stampcli.config import load_campaign
    from stampcli.service.bounces import BounceSettings, read_mailbox
    from stampcli.store.location import for_campaign

    campaign = load_campaign(campaign_file)
    settings = BounceSettings.of(campaign)
    choice = for_campaign(campaign, db)
    say_new_store(choice, "this read")
    source = open_source(where)
    try:
        with open_store(choice) as store:
            report = read_mailbox(
                store,
                settings,
                source,
                folder=folder or campaign.bounces.processed_folder,
                delete=delete or campaign.bounces.delete,
            )
    finally:
        source.close()
    if as_json:
        echo_json({"mailbox": source.name, **report.as_dict()})
        return
    _print(source.name, report.as_dict(), delete or campaign.bounces.delete)


def _print(name: str, data: dict[str, Any], delete: bool) -> None:
    kinds = ", ".join(f"{count} {kind}" for kind, count in data["kinds"].items()) or "none"
    _say(f"{name}: {data['read']} mails read ({kinds})")
    _say(
        f"events: {data['stored']} new, {data['duplicates']} seen before; "
        f"{data['suppressed']} addresses newly suppressed"
        + (
            f", {data['resolved_unknown']} unknown rows now known"
            if data["resolved_unknown"]
            else ""
        )
    )
    _say(f"{data['moved']} processed mails {'deleted' if delete else 'moved'}")
    for campaign in data["paused"]:
        _warn(f"campaign {campaign} paused by auto-stop (see stamp status)")
    for problem in data["problems"]:
        _warn(f"kept {problem['mail']} ({problem['verdict']}): {problem['why']}")


@command
def fetch(
    campaign_file: CampaignArg,
    mailbox: Annotated[
        str | None,
        typer.Option(
            "--mailbox",
            help="imaps://user:${PASS}@host/INBOX (default: the campaign's bounces.mailbox).",
        ),
    ] = None,
    folder: FolderOption = None,
    delete: DeleteOption = False,
    as_json: JsonOption = False,
    db: CampaignDbOption = None,
) -> None:
    """Read the bounce mailbox over IMAP: DSNs, feedback-loop complaints, non-standard
    bounces, auto-replies and mailed unsubscribes become delivery events.

    Processed mail moves to the folder (created if missing) or is deleted with
    --delete; mail that cannot be used stays. Safe from cron: one run per mailbox
    at a time, and a mail read twice counts once.
    """
    from stampcli.config import load_campaign

    where = mailbox
    if where is None:
        where = load_campaign(campaign_file).bounces.mailbox
    if not where:
        raise InputError(
            f"{campaign_file}: no mailbox to fetch from; set bounces.mailbox "
            "(imaps://user:${PASS}@host/INBOX) or give --mailbox"
        )
    if not where.lower().startswith(("imap://", "imaps://")):
        raise InputError("--mailbox must be an imaps:// (or imap://) URL; for files use read")
    _run(campaign_file, where, folder, delete, as_json, db)


@command
def read(
    campaign_file: CampaignArg,
    path: Annotated[Path, typer.Argument(help="A Maildir folder or an mbox file.")],
    folder: FolderOption = None,
    delete: DeleteOption = False,
    as_json: JsonOption = False,
    db: CampaignDbOption = None,
) -> None:
    """Read a Maildir or mbox of bounce mail, as fetch does over IMAP.

    Processed mail moves to the Maildir++ folder .stamp-processed (Maildir) or the
    mbox file beside it, PATH.stamp-processed; --delete removes it instead.
    """
    _run(campaign_file, str(path), folder, delete, as_json, db)


def register(app: typer.Typer) -> None:
    bounces_app.command("fetch")(fetch)
    bounces_app.command("read")(read)
    app.add_typer(bounces_app)
