"""``stamp preview`` and ``stamp check``: draw ``service.preview``'s results."""

from __future__ import annotations

import os
import sys
import tempfile
import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stampcli.audience.resolve import AudienceStats
from stampcli.cli.common import CampaignDbOption, command, console, echo_json
from stampcli.cli.dns_draw import print_dns_report
from stampcli.config import Campaign, load_campaign
from stampcli.delivery.planner import segment_error_text
from stampcli.errors import ExitCode
from stampcli.render.checks import MAX_ROWS_SHOWN, CheckReport, Group
from stampcli.service.dns_check import dns_preflight
from stampcli.service.preview import Format, check_campaign, format_for, preview_message

CampaignArg = Annotated[
    Path, typer.Argument(help="The campaign file (campaign.yml).", show_default=False)
]


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
            help="eml (the exact bytes), html or text (default: from --output's suffix: .html, "
            ".txt, else eml; text without --output).",
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
    shown = preview_message(load_campaign(campaign_file), row=row, email=email, db=db)
    contact, message = shown.contact, shown.message
    chosen = format_for(output, fmt)
    if open_:
        target = output
        if target is None or chosen is not Format.html:
            fd, name = tempfile.mkstemp(prefix="stamp-preview-", suffix=".html")
            with os.fdopen(fd, "wb") as handle:
                handle.write(shown.content(Format.html))
            page = Path(name)
        else:
            page = target
        if output is not None:
            output.write_bytes(shown.content(chosen))
        # False (or an error) when no browser can be started here (a server, ssh): then the
        # page is kept, and where it is is what a person needs
        try:
            opened = webbrowser.open(page.resolve().as_uri())
        except webbrowser.Error:
            opened = False
        if opened:
            console.print(f"opened {page} for {contact.email}", soft_wrap=True, markup=False)
        else:
            console.print(
                f"no web browser could be started here; the HTML preview for {contact.email} "
                f"is at {page.resolve()}",
                soft_wrap=True,
                markup=False,
            )
        return
    if output is not None:
        output.write_bytes(shown.content(chosen))
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
        sys.stdout.buffer.write(shown.content(chosen))
        sys.stdout.buffer.flush()


def _rows(group: Group) -> str:
    rows = [str(r) for r in group.rows if r] or group.keys
    more = f", … ({group.count} in all)" if group.count > len(rows) else ""
    label = "row" if group.rows and group.rows[0] else "recipient"
    plural = "s" if group.count > 1 else ""
    return f"{label}{plural} {', '.join(rows)}{more}"


def _print_report(campaign: Campaign, report: CheckReport, stats: AudienceStats) -> None:
    errors, warnings = report.errors, report.warnings
    error_count = report.error_count + (1 if stats.segment_errors else 0)
    console.print(
        f"Checked {report.recipients} recipient{'s' if report.recipients != 1 else ''} of "
        f"{campaign.name}: {error_count} error{'s' if error_count != 1 else ''}, "
        f"{report.warning_count} warning{'s' if report.warning_count != 1 else ''}",
        soft_wrap=True,
    )
    for group in errors:
        console.print(
            f"[bold red]error[/]   {group.finding.message} [dim]({_rows(group)})[/]",
            soft_wrap=True,
        )
    if stats.segment_errors:
        text = segment_error_text(stats.segment_errors, stats.first_segment_error)
        console.print(f"[bold red]error[/]   {escape(text)}", soft_wrap=True)
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


def check(
    campaign_file: CampaignArg,
    db: CampaignDbOption = None,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns",
            help="Also check the From domain's DNS: MX, SPF, DKIM, DMARC, alignment, the "
            "unsubscribe host.",
        ),
    ] = False,
    dns_server: Annotated[
        str | None,
        typer.Option(
            "--dns-server",
            metavar="IP[:PORT]",
            help="Ask this DNS server instead of the system's resolver (implies --dns).",
        ),
    ] = None,
    dns_timeout: Annotated[
        float,
        typer.Option("--dns-timeout", min=0.1, help="Seconds to wait for each DNS answer."),
    ] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Render every recipient's message without sending and report problems (exit 2 on errors)."""
    campaign = load_campaign(campaign_file)
    result = check_campaign(campaign, db=db)
    report = None
    if dns or dns_server is not None:
        report = dns_preflight(campaign, server=dns_server, timeout=dns_timeout)
    if as_json:
        echo_json({**result.as_dict(), **({"dns": report.as_dict()} if report else {})})
    else:
        _print_report(campaign, result.report, result.stats)
        if report is not None:
            print_dns_report(report)
        zones = result.zones
        if zones is not None:
            shown = ", ".join(f"{n} {z}" for z, n in zones.zones.most_common(8))
            console.print(f"time zones ({escape(zones.field)}): {escape(shown)}", soft_wrap=True)
            if zones.fallback:
                rows = "; ".join(f"row {r}: {why}" for r, why in zones.problems)
                more = zones.fallback - len(zones.problems)
                console.print(
                    f"[yellow]warning[/] {zones.fallback} recipient(s) get the campaign's zone "
                    f"{escape(zones.fallback_zone)} instead of their own: {escape(rows)}"
                    + (f" and {more} more" if more > 0 else ""),
                    soft_wrap=True,
                )
    if not result.ok or (report is not None and not report.ok):
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def register(app: typer.Typer) -> None:
    app.command("preview")(command(preview))
    app.command("check")(command(check))
