"""``stamp providers check``: draws ``service.providers.check_providers``.

The table shows the redacted provider URL and every step, and under them a
warning when the campaign's ``tracking:`` switches are ones the provider
cannot honour (they do not fail the check).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stampcli import redact
from stampcli.cli.common import command, console, echo_json
from stampcli.config import load_campaign
from stampcli.errors import ExitCode
from stampcli.providers.base import CheckReport
from stampcli.service.providers import ProvidersCheck, check_providers

providers_app = typer.Typer(
    name="providers",
    help="Check the providers a campaign sends through.",
    no_args_is_help=True,
)


def exit_code(result: ProvidersCheck) -> ExitCode:
    if result.ok:
        return ExitCode.OK
    if result.none_ready:
        return ExitCode.ALL_PROVIDERS_DOWN
    return ExitCode.PERMANENT_FAILURES


def _steps(report: CheckReport, warning: str | None) -> str:
    lines = []
    for step in report.steps:
        mark = "[green]ok[/]" if step.ok else "[red]failed[/]"
        # provider answers are data, not rich markup: "[default]" must show, "[/]" not crash
        detail = f": {escape(redact.redact(step.detail))}" if step.detail else ""
        lines.append(f"{escape(step.name)} {mark}{detail}")
    if not report.steps and report.detail:
        lines.append(escape(redact.redact(report.detail)))
    if warning:
        lines.append(f"[yellow]warning: {escape(redact.redact(warning))}[/]")
    return "\n".join(lines)


@providers_app.command("check")
@command
def check(
    campaign_file: Annotated[
        Path, typer.Argument(help="The campaign.yml whose providers to check.", show_default=False)
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the reports as one JSON document.")
    ] = False,
) -> None:
    """Check every provider of a campaign: reachable, credentials accepted, allowed to send.

    Nothing is sent. Exit codes: 0 every provider is ready, 1 some are not,
    4 none is (the campaign could not send at all).
    """
    campaign = load_campaign(campaign_file)
    result = asyncio.run(check_providers(campaign))
    if json_output:
        echo_json(result.as_dict())
    else:
        table = Table(title=f"Providers of {campaign.name}", show_lines=True)
        table.add_column("provider")
        table.add_column("scheme")
        table.add_column("status")
        table.add_column("steps")
        for item in result.checks:
            status = "[green]ok[/]" if item.report.ok else "[bold red]FAILED[/]"
            table.add_row(
                escape(item.report.provider),
                escape(item.provider.parsed.redacted),
                status,
                _steps(item.report, item.warning),
            )
        console.print(table)
    code = exit_code(result)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    app.add_typer(providers_app)
