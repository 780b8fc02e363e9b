"""``stamp preview`` and ``stamp check``: look at messages before anything is sent."""

from __future__ import annotations

import base64
import html as html_lib
import os
import sys
import tempfile
import webbrowser
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stampcli.audience.resolve import AudienceStats, iter_audience
from stampcli.cli.common import CampaignDbOption, command, console, open_store
from stampcli.config import Campaign, load_campaign
from stampcli.errors import ExitCode, InputError
from stampcli.records import Contact
from stampcli.render.checks import MAX_ROWS_SHOWN, CheckReport, Group, check_audience
from stampcli.render.message import Message
from stampcli.render.renderer import Renderer
from stampcli.store.db import Store
from stampcli.store.location import for_campaign


class Format(StrEnum):
    eml = "eml"
    html = "html"
    text = "text"


CampaignArg = Annotated[
    Path, typer.Argument(help="The campaign file (campaign.yml).", show_default=False)
]


def _store_for(campaign: Campaign, db: Path | None) -> Store | None:
    aud = campaign.audience
    if aud.list_ or aud.exclude_lists:
        return open_store(for_campaign(campaign, db), readonly=True)
    return None


def _contacts(campaign: Campaign, db: Path | None, stats: AudienceStats) -> Iterator[Contact]:
    store = _store_for(campaign, db)
    try:
        yield from iter_audience(campaign, store, stats)
    finally:
        if store is not None:
            store.close()


def pick_recipient(
    campaign: Campaign, db: Path | None, row: int | None, email: str | None
) -> Contact:
    """The audience's recipient at ``row`` or with ``email``, else its first one.

    ``stamp preview`` and ``stamp send --test-to`` choose whom to render with this.
    """
    stats = AudienceStats()
    wanted = email.strip().lower() if email else None
    for position, contact in enumerate(_contacts(campaign, db, stats), start=1):
        if wanted is not None:
            if wanted in (contact.key, contact.email.lower()):
                return contact
        elif row is None or contact.row == row or (contact.row == 0 and position == row):
            return contact
    if wanted is not None:
        raise InputError(f"{campaign.path}: no recipient with the address {email} in the audience")
    if row is not None:
        rejected = next((r for r in stats.rejected if r.row == row), None)
        if rejected is not None:
            raise InputError(f"row {row} of the audience is rejected: {rejected.reason}")
        raise InputError(
            f"{campaign.path}: no recipient at row {row} (the header is row 1; rows left out "
            "by the segment or as duplicates have no message)"
        )
    raise InputError(f"{campaign.path}: the audience is empty: there is no recipient to render")


def _browser_html(message: Message) -> str:
    """The HTML with cid: images turned into data: URLs, so a browser can show them
    (a text template's message, which has no HTML: its text, as it reads)."""
    if not message.html:
        return f"<!DOCTYPE html>\n<pre>{html_lib.escape(message.text)}</pre>\n"
    html = message.html
    for att in message.attachments:
        if att.content_id is not None:
            data = base64.b64encode(att.data).decode("ascii")
            html = html.replace(f"cid:{att.content_id}", f"data:{att.content_type};base64,{data}")
    return html


def _content(message: Message, fmt: Format) -> bytes:
    if fmt is Format.eml:
        return message.raw
    if fmt is Format.html:
        return _browser_html(message).encode("utf-8")
    return message.text.encode("utf-8")


def _format_for(output: Path | None, fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    if output is not None:
        suffix = output.suffix.lower()
        if suffix in (".html", ".htm"):
            return Format.html
        if suffix == ".txt":
            return Format.text
        return Format.eml
    return Format.text


def preview(
    campaign_file: CampaignArg,
    row: Annotated[
        int | None,
        typer.Option("--row", help="Preview the recipient from this row (the header is row 1)."),
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="Preview the recipient with this address.")
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="eml (the exact bytes), html or text. [default: text, or from --output's suffix]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the preview to this file.")
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the HTML in the web browser.")
    ] = False,
    db: CampaignDbOption = None,
) -> None:
    """Render the message for one recipient (the first unless --row or --email) and show it."""
    if row is not None and email is not None:
        raise typer.BadParameter("give --row or --email, not both")
    campaign = load_campaign(campaign_file)
    renderer = Renderer(campaign)
    contact = pick_recipient(campaign, db, row, email)
    message = renderer.render(contact.key, contact.email, contact.fields)
    chosen = _format_for(output, fmt)
    if open_:
        target = output
        if target is None or chosen is not Format.html:
            fd, name = tempfile.mkstemp(prefix="stamp-preview-", suffix=".html")
            with os.fdopen(fd, "wb") as handle:
                handle.write(_content(message, Format.html))
            page = Path(name)
        else:
            page = target
        if output is not None:
            output.write_bytes(_content(message, chosen))
        webbrowser.open(page.resolve().as_uri())
        console.print(f"opened {page} for {contact.email}", soft_wrap=True)
        return
    if output is not None:
        output.write_bytes(_content(message, chosen))
        console.print(
            f"wrote the {chosen.value} preview for {contact.email} to {output}", soft_wrap=True
        )
        return
    if chosen is Format.text:
        for label, value in (
            ("From", message.from_header),
            ("To", message.to_header),
            ("Subject", message.subject),
        ):
            # subscriber data: "[Update]" is not markup and ":smile:" is not an emoji here
            console.print(f"[bold]{label}:[/] {escape(value)}", emoji=False, soft_wrap=True)
        console.print()
        console.print(message.text, markup=False, emoji=False, soft_wrap=True, end="")
    else:
        # The exact bytes: rich would turn CRLF into LF and ":smile:" into an emoji.
        sys.stdout.flush()
        sys.stdout.buffer.write(_content(message, chosen))
        sys.stdout.buffer.flush()


def _rows(group: Group) -> str:
    rows = [str(r) for r in group.rows if r] or group.keys
    more = f", … ({group.count} in all)" if group.count > len(rows) else ""
    label = "row" if group.rows and group.rows[0] else "recipient"
    plural = "s" if group.count > 1 else ""
    return f"{label}{plural} {', '.join(rows)}{more}"


def _print_report(campaign: Campaign, report: CheckReport, stats: AudienceStats) -> None:
    errors, warnings = report.errors, report.warnings
    console.print(
        f"Checked {report.recipients} recipient{'s' if report.recipients != 1 else ''} of "
        f"{campaign.name}: {report.error_count} error{'s' if report.error_count != 1 else ''}, "
        f"{report.warning_count} warning{'s' if report.warning_count != 1 else ''}",
        soft_wrap=True,
    )
    for group in errors:
        console.print(
            f"[bold red]error[/]   {group.finding.message} [dim]({_rows(group)})[/]",
            soft_wrap=True,
        )
    if report.unchecked:
        console.print(
            f"[bold red]stopped[/] at the template error, where stamp send stops too: "
            f"{report.unchecked} more recipient{'s' if report.unchecked != 1 else ''} "
            "not rendered",
            soft_wrap=True,
        )
    for group in warnings:
        everyone = group.count == report.rendered and report.rendered > 1
        where = f"every message ({group.count})" if everyone else _rows(group)
        console.print(
            f"[yellow]warning[/] {group.finding.message} [dim]({where})[/]", soft_wrap=True
        )
    if stats.rejected:
        shown = stats.rejected[:MAX_ROWS_SHOWN]
        more = f" and {len(stats.rejected) - len(shown)} more" if len(stats.rejected) > 10 else ""
        console.print(
            f"[yellow]warning[/] {len(stats.rejected)} row(s) of the list cannot be mailed: "
            + "; ".join(f"row {r.row}: {r.reason}" for r in shown)
            + more,
            soft_wrap=True,
        )
    if stats.duplicates:
        console.print(
            f"[dim]{stats.duplicates} duplicate address(es) left out (the first row wins)[/]"
        )


def check(campaign_file: CampaignArg, db: CampaignDbOption = None) -> None:
    """Render every recipient's message without sending and report problems (exit 2 on errors)."""
    campaign = load_campaign(campaign_file)
    renderer = Renderer(campaign)
    stats = AudienceStats()
    report = check_audience(
        renderer,
        ((c.row, c.key, c.email, c.fields) for c in _contacts(campaign, db, stats)),
    )
    _print_report(campaign, report, stats)
    if report.errors:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def register(app: typer.Typer) -> None:
    app.command("preview")(command(preview))
    app.command("check")(command(check))
