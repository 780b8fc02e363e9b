"""``stamp events pull``: delivery events from the providers' events and bounces APIs.

What ``stamp serve`` receives by webhook, pulled instead (or as well: each
event is stored once, so running both, or the pull from cron, is safe). The
output names each provider, what it gave, and the providers that have no
events API to pull from.
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
from stampcli.errors import ProviderError
from stampcli.store.location import for_campaign

events_app = typer.Typer(
    name="events",
    help="Delivery events (delivered, bounced, opened...) from the providers.",
    no_args_is_help=True,
)


def _say(text: str, **kwargs: Any) -> None:
    console.print(text, markup=False, soft_wrap=True, highlight=False, **kwargs)


def _warn(text: str) -> None:
    err_console.print(text, markup=False, soft_wrap=True, highlight=False)


@command
def pull(
    campaign_file: Annotated[Path, typer.Argument(help="campaign.yml naming the providers.")],
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Only this provider (its name); repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    db: CampaignDbOption = None,
) -> None:
    """Fetch new delivery events from the campaign's providers into the store.

    Incremental: each provider account goes on from where its last pull
    stopped. Mailgun (events API), Postmark (bounces), SparkPost (events
    search), Mailjet (messages), Brevo (email events) and Mandrill (message
    search) have such APIs; the others are named as skipped. Events are
    matched, stored once and applied as webhooks are (suppressions, auto-stop).
    """
    from stampcli.config import load_campaign
    from stampcli.providers.events_pull import pull_events

    campaign = load_campaign(campaign_file)
    choice = for_campaign(campaign, db)
    say_new_store(choice, "this pull")
    with open_store(choice) as store:
        report = pull_events(campaign, store, provider or None)
    if as_json:
        echo_json(report.as_dict())
    else:
        for item in report.providers:
            if item.skipped:
                _say(f"{item.provider}: skipped ({item.skipped})")
                continue
            line = (
                f"{item.provider}: {item.fetched} fetched, {item.stored} new, "
                f"{item.duplicates} seen before, {item.unmatched} unmatched, "
                f"{item.suppressed} newly suppressed"
            )
            if item.rejected:
                line += f", {item.rejected} unusable"
            if item.resolved_unknown:
                line += f", {item.resolved_unknown} unknown rows now known"
            _say(line)
            for name in item.paused:
                _warn(f"campaign {name} paused by auto-stop (see stamp status)")
    for item in report.errors:
        _warn(f"{item.provider}: {item.error}")
    if report.errors:
        names = ", ".join(p.provider for p in report.errors)
        raise ProviderError(
            f"could not pull the events of every provider ({names}); what came is stored"
        )


def register(app: typer.Typer) -> None:
    events_app.command("pull")(pull)
    app.add_typer(events_app)
