"""``stamp suppress ...`` and ``stamp unsubscribe ...``: the suppression list and opt-outs.

Addresses typed on the command line are normalised exactly as subscriber
lists are, so that what is suppressed here matches what the audience holds.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from stampcli.cli.common import (
    CampaignDbOption,
    DbOption,
    command,
    console,
    echo_json,
    err_console,
    say_new_store,
)
from stampcli.compliance.tokens import DEFAULT_SECRET_ENV, MIN_SECRET_LEN, TokenError, verify_token
from stampcli.errors import InputError
from stampcli.service.suppressions import (
    add_suppressions,
    export_suppressions,
    import_suppressions,
    list_suppressions,
    pull_suppressions,
    remove_suppressions,
    suppression_dict,
)
from stampcli.store import suppressions as sup
from stampcli.store.location import StoreChoice, for_campaign, standalone

suppress_app = typer.Typer(
    name="suppress",
    help="The suppression list: addresses stamp never mails again, and why.",
    no_args_is_help=True,
)
unsubscribe_app = typer.Typer(
    name="unsubscribe",
    help="One-click unsubscribe (RFC 8058): a small receiver, and token checks for scripts.",
    no_args_is_help=True,
)

ReasonOption = Annotated[
    str | None,
    typer.Option("--reason", help=f"One of: {', '.join(sup.REASONS)}.", show_default=False),
]
ListOption = Annotated[
    str | None,
    typer.Option(
        "--list",
        help="Only for this list (default: every list).",
        show_default=False,
    ),
]


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"


def _new_store(choice: StoreChoice) -> None:
    say_new_store(choice, "this command")


def _say(text: str, **kwargs: Any) -> None:
    """Plain text on stdout: no markup (file names may hold brackets), no wrapping."""
    console.print(text, markup=False, soft_wrap=True, highlight=False, **kwargs)


def _warn(text: str) -> None:
    err_console.print(text, markup=False, soft_wrap=True, highlight=False)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- suppress


@command
def add(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to suppress.")],
    reason: ReasonOption = None,
    list_name: ListOption = None,
    detail: Annotated[
        str | None, typer.Option("--detail", help="A note kept with each entry.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Suppress addresses (reason 'manual' unless --reason says otherwise)."""
    done = add_suppressions(
        standalone(db),
        addresses,
        reason=reason,
        list_name=list_name,
        detail=detail,
        on_open=_new_store,
    )
    where = f" for list {list_name}" if list_name else ""
    _say(f"suppressed {done.addresses} address(es){where} ({done.new} new, reason {done.reason})")


@command
def remove(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to mail again.")],
    list_name: ListOption = None,
    db: DbOption = None,
) -> None:
    """Lift suppressions (every scope, or only --list NAME)."""
    done = remove_suppressions(standalone(db), addresses, list_name=list_name, on_open=_new_store)
    _say(f"removed {done.removed} suppression(s)")
    if done.missing:
        _warn(f"{done.missing} address(es) were not suppressed{' there' * bool(list_name)}")


@command
def import_(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX or plain list of addresses.")],
    reason: ReasonOption = None,
    list_name: ListOption = None,
    db: DbOption = None,
) -> None:
    """Import a provider's suppression export or a plain list of addresses.

    Recognised by their columns: exports of SendGrid, Mailgun, Postmark, Amazon
    SES, Mailchimp (unsubscribed and cleaned), Mandrill, and stamp's own.
    """
    result = import_suppressions(
        standalone(db), file, reason=reason, list_name=list_name, on_open=_new_store
    )
    _say(
        f"{file.name}: {result.format} format, {result.rows} row(s): "
        f"{result.new} new suppression(s), {result.already} already there, "
        f"{result.skipped_count} skipped"
    )
    for row, why in result.skipped[:20]:
        _warn(f"  row {row}: {why}")
    if result.skipped_count > 20:
        _warn(f"  ... and {result.skipped_count - 20} more")


@command
def export(
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="csv or xlsx (default: xlsx for an --output ending in .xlsx, else csv).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="File to write (default: stdout, for CSV).", show_default=False
        ),
    ] = None,
    reason: ReasonOption = None,
    db: DbOption = None,
) -> None:
    """Write the suppression list as CSV or XLSX.

    Columns: email, reason, source, scope, detail, created_at; `stamp suppress
    import` reads the file back.
    """
    xlsx = None if fmt is None else fmt is ExportFormat.xlsx
    n = export_suppressions(
        standalone(db),
        output=output,
        stream=sys.stdout if output is None else None,
        xlsx=xlsx,
        reason=reason,
    )
    sys.stdout.flush()
    if output is not None:
        _say(f"wrote {n} suppression(s) to {output}")


@command
def list_(
    reason: ReasonOption = None,
    list_name: ListOption = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    db: DbOption = None,
) -> None:
    """Show the suppression list."""
    items = list_suppressions(standalone(db), reason=reason, list_name=list_name)
    if json:
        echo_json([suppression_dict(s) for s in items])
        return
    if not items:
        _say("the suppression list is empty" if reason is None else "none")
        return
    width = min(max(len(s.key) for s in items), 60)
    for s in items:
        scope = f"  list:{s.scope}" if s.scope else ""
        _say(
            f"{s.key:<{width}}  {s.reason:<12}  {_when(s.created_at)}  {s.source}{scope}",
        )
    _say(f"{len(items)} suppression(s)", style="dim")


@command
def pull(
    campaign_file: Annotated[Path, typer.Argument(help="campaign.yml naming the providers.")],
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Only this provider (its name or scheme); repeatable."),
    ] = None,
    db: CampaignDbOption = None,
) -> None:
    """Fetch bounces, complaints, unsubscribes and blocks from the campaign's providers.

    Merges them into the suppression list, so that failing over to another
    provider never mails someone the first one suppressed. SendGrid, Mailgun,
    Postmark, Amazon SES, Mailjet, Brevo, SparkPost and Mailchimp Transactional
    (Mandrill) have such lists.
    """
    from stampcli.config import load_campaign

    campaign = load_campaign(campaign_file)
    choice = for_campaign(campaign, db)  # where the campaign's sends read them
    result = pull_suppressions(
        campaign, choice, provider, on_open=lambda c: say_new_store(c, "this pull")
    )
    report = result.report
    for item in report.providers:
        if item.skipped:
            _say(f"{item.provider}: skipped ({item.skipped})")
            continue
        kinds = ", ".join(f"{n} {r}" for r, n in sorted(item.by_reason.items())) or "nothing"
        line = f"{item.provider}: {item.fetched} fetched ({kinds}), {item.new} new"
        if item.invalid:
            line += f", {item.invalid} unusable address(es) skipped"
        _say(line)
        if item.error:
            _warn(f"{item.provider}: {item.error}")
        if item.warning:
            _warn(f"{item.provider}: {item.warning}")
    error = result.error()
    if error is not None:
        raise error
    _say(f"{report.new} new suppression(s) in total")


# --------------------------------------------------------------------------- unsubscribe


def _secret(secret_env: str) -> str:
    secret = os.environ.get(secret_env, "")
    if len(secret) < MIN_SECRET_LEN:
        state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LEN} characters"
        raise InputError(
            f"the environment variable {secret_env} {state}; tokens are signed with it"
        )
    return secret


SecretEnvOption = Annotated[
    str,
    typer.Option("--secret-env", help="Environment variable holding the token secret."),
]


@command
def verify(
    token: Annotated[str, typer.Argument(help="The t= value of an unsubscribe URL.")],
    secret_env: SecretEnvOption = DEFAULT_SECRET_ENV,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Check a token: prints its email and campaign (exit 0), or exit 2 if it is not genuine."""
    secret = _secret(secret_env)
    try:
        who = verify_token(secret, token)
    except TokenError as exc:
        raise InputError(f"bad unsubscribe token: {exc}") from None
    if json:
        echo_json({"email": who.email, "campaign": who.campaign})
    else:
        _say(f"email: {who.email}\ncampaign: {who.campaign}")


@command
def serve(
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.", min=0, max=65535)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    secret_env: SecretEnvOption = DEFAULT_SECRET_ENV,
    db: DbOption = None,
) -> None:
    """The same as `stamp serve` (which also receives provider webhooks); kept as an alias.

    Put it behind your HTTPS reverse proxy and use its URL as unsubscribe.url,
    e.g. https://example.com/unsubscribe?t={{ unsubscribe_token }}. A POST with
    List-Unsubscribe=One-Click unsubscribes; a GET shows a confirmation button.
    """
    from stampcli.cli.serve_cmd import run_server

    _secret(secret_env)  # this command was only ever the receiver: no secret, no start
    run_server(host, port, db, secret_env)


def register(app: typer.Typer) -> None:
    suppress_app.command("add")(add)
    suppress_app.command("remove")(remove)
    suppress_app.command("import")(import_)
    suppress_app.command("export")(export)
    suppress_app.command("list")(list_)
    suppress_app.command("pull")(pull)
    unsubscribe_app.command("serve")(serve)
    unsubscribe_app.command("verify")(verify)
    app.add_typer(suppress_app)
    app.add_typer(unsubscribe_app)
