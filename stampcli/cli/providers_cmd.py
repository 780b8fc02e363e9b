"""``stamp providers check``: can every provider of a campaign be reached and used?

Each provider's adapter runs its own ``check()`` (an authenticated read-only
call for HTTP APIs, connect/EHLO/AUTH for SMTP) concurrently with the others;
nothing is sent. The table shows the redacted provider URL and every step,
and under them a warning when the campaign's ``tracking:`` switches are ones
the provider cannot honour (they do not fail the check).
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
from stampcli.config import ProviderConfig, TrackingConfig, load_campaign
from stampcli.errors import ExitCode
from stampcli.providers import create_adapter, tracking_warning
from stampcli.providers.base import CheckReport, CheckStep

providers_app = typer.Typer(
    name="providers",
    help="Check the providers a campaign sends through.",
    no_args_is_help=True,
)

_GRACE = 5.0  # seconds beyond a provider's own connect + read timeouts


async def check_provider(config: ProviderConfig, tracking: TrackingConfig) -> CheckReport:
    """One provider's report; never raises (a broken adapter is a failed check)."""
    try:
        adapter = create_adapter(config, tracking)
    except Exception as exc:
        detail = redact.redact(f"cannot set up the adapter: {type(exc).__name__}: {exc}")
        return CheckReport(config.label, False, [CheckStep("setup", False, detail)], detail)
    limit = config.timeout.connect + config.timeout.read + _GRACE
    try:
        async with adapter:
            return await asyncio.wait_for(adapter.check(), limit)
    except TimeoutError:
        detail = f"no answer within {limit:.0f} s"
    except Exception as exc:
        detail = redact.redact(f"check failed: {type(exc).__name__}: {exc}")
    return CheckReport(config.label, False, [CheckStep("check", False, detail)], detail)


async def check_all(providers: list[ProviderConfig], tracking: TrackingConfig) -> list[CheckReport]:
    """Every provider's report, checked concurrently, in the campaign's order."""
    return list(await asyncio.gather(*(check_provider(p, tracking) for p in providers)))


def exit_code(reports: list[CheckReport]) -> ExitCode:
    ok = sum(r.ok for r in reports)
    if ok == len(reports):
        return ExitCode.OK
    if ok == 0:
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
    reports = asyncio.run(check_all(list(campaign.providers), campaign.tracking))
    warnings = [tracking_warning(p, campaign.tracking) for p in campaign.providers]
    if json_output:
        echo_json(
            [
                {
                    "provider": r.provider,
                    "url": p.parsed.redacted,
                    "ok": r.ok,
                    "detail": r.detail,
                    "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in r.steps],
                    "warnings": [w] if w else [],
                }
                for p, r, w in zip(campaign.providers, reports, warnings, strict=True)
            ]
        )
    else:
        table = Table(title=f"Providers of {campaign.name}", show_lines=True)
        table.add_column("provider")
        table.add_column("scheme")
        table.add_column("status")
        table.add_column("steps")
        for provider, report, warning in zip(campaign.providers, reports, warnings, strict=True):
            status = "[green]ok[/]" if report.ok else "[bold red]FAILED[/]"
            table.add_row(
                escape(report.provider),
                escape(provider.parsed.redacted),
                status,
                _steps(report, warning),
            )
        console.print(table)
    code = exit_code(reports)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    app.add_typer(providers_app)
