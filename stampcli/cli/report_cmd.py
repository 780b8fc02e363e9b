"""``stamp report``: how a campaign went, in the terminal, as JSON, HTML or a workbook.

The figures come from :mod:`stampcli.service.report` (aggregated in the store);
this module only picks the store, calls it, and draws: rich tables with bars that
fit 80 columns, or hands the report to :mod:`stampcli.reports.output` for files.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stampcli.cli.common import command, console, echo_json, fail
from stampcli.config import Campaign, load_campaign
from stampcli.reports import sections as sec
from stampcli.reports.formats import cell_text
from stampcli.service.report import (
    CampaignReport,
    CampaignsReport,
    campaign_report,
    campaigns_report,
    template_text_of,
)
from stampcli.store.db import Store as SqliteStore
from stampcli.store.location import StoreChoice, for_campaign, standalone
from stampcli.times import parse_time

BAR = 16  # characters of the longest bar
TERMINAL_ROWS = 24  # a timeline longer than this is merged into fewer rows on screen
# columns shown in the terminal for the wide sections (the files have them all)
_NARROW = {
    "providers": (
        "provider",
        "messages",
        "share",
        "failovers out",
        "failovers in",
        "answer median ms",
        "answer p95 ms",
    ),
    "domains": ("domain", "messages", "delivered", "bounced", "complained", "opened"),
    "segments": None,
}


_BARS = ("funnel", "sends", "providers", "links")  # a bar per row
# shorter headings on screen, so wide sections fit 80 columns
_SHORT = {
    "failovers out": "moved out",
    "failovers in": "moved in",
    "answer median ms": "p50 ms",
    "answer p95 ms": "p95 ms",
}


def _bar(value: float, top: float) -> str:
    if top <= 0 or value <= 0:
        return ""
    return "█" * max(1, round(BAR * value / top))


def _merge(section: sec.Section) -> sec.Section:
    """A long timeline in at most TERMINAL_ROWS rows (sums of neighbouring buckets)."""
    n = len(section.rows)
    if n <= TERMINAL_ROWS:
        return section
    step = -(-n // TERMINAL_ROWS)
    rows = []
    for i in range(0, n, step):
        part = section.rows[i : i + step]
        rows.append([part[0][0], *(sum(r[j] for r in part) for j in range(1, len(part[0])))])
    return sec.Section(
        section.key,
        section.title,
        section.columns,
        rows,
        section.chart,
        f"{step} {section.columns[0][0].split()[0]}s per row",
    )


def _draw(section: sec.Section) -> None:
    console.print(f"\n[bold]{escape(section.title)}[/]")
    if section.key in ("sends", "events"):
        section = _merge(section)
    wanted = _NARROW.get(section.key)
    if section.key == "segments" and section.columns:
        wanted = (section.columns[0][0], "messages", "delivered", "bounced", "complained", "opened")
    idx = [i for i, (name, _) in enumerate(section.columns) if wanted is None or name in wanted]
    if section.rows:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i in idx:
            name, kind = section.columns[i]
            table.add_column(
                escape(_SHORT.get(name, name)),
                justify="left" if kind == "text" else "right",
                overflow="fold",
                no_wrap=kind in ("time", "ms", "pct", "int"),
                min_width=min(len(name), 12) if kind == "text" else None,
                max_width=34 if i == 0 and kind == "text" else None,
            )
        # a bar of the second column (the count) for charted sections
        bars = section.chart is not None and section.key in _BARS
        if bars:
            table.add_column("", style="cyan", no_wrap=True)
        top = max((float(r[1] or 0) for r in section.rows), default=0.0)
        for row in section.rows:
            cells = [escape(cell_text(row[i], section.columns[i][1])) for i in idx]
            if bars:
                cells.append(_bar(float(row[1] or 0), top))
            table.add_row(*cells)
        console.print(table)
    if section.note:
        console.print(f"[dim]{escape(section.note)}[/]")


def _draw_campaign(r: CampaignReport) -> None:
    console.print(f"[bold]report: {escape(r.campaign)}[/]")
    console.print(f"store: {escape(r.store)}", soft_wrap=True)
    for flag, line in zip(r.flags, sec.flags_text(r.flags), strict=True):
        colour = "red" if flag.level == "bad" else "yellow"
        console.print(f"[{colour}]{escape(line)}[/]")
    if r.paused_reason:
        console.print(f"[bold red]paused:[/] {escape(r.paused_reason)}")
    for section in sec.campaign_sections(r):
        if section.key == "funnel" and not r.has_events:
            # without events the event rows are all zero: show what is known
            rows = section.rows[:5]
            section = sec.Section(
                section.key, section.title, section.columns, rows, section.chart, section.note
            )
        _draw(section)


def _draw_all(r: CampaignsReport) -> None:
    console.print(f"[bold]report: all campaigns[/]  store: {escape(r.store)}", soft_wrap=True)
    for section in sec.campaigns_sections(r):
        section = sec.Section(
            section.key,
            section.title,
            [
                c
                for c in section.columns
                if c[0] not in ("first send (UTC)", "planned", "unsubscribed")
            ],
            [
                [
                    v
                    for v, c in zip(row, section.columns, strict=True)
                    if c[0] not in ("first send (UTC)", "planned", "unsubscribed")
                ]
                for row in section.rows
            ],
            None,
            section.note,
        )
        _draw(section)


def _choice(target: str | None, db: Path | None) -> tuple[StoreChoice, str | None, Campaign | None]:
    """(store, campaign name, campaign) for a campaign file, a campaign name, or --all."""
    if target is not None:
        path = Path(target)
        if path.suffix.lower() in (".yml", ".yaml") or path.is_file():
            campaign = load_campaign(path)
            return for_campaign(campaign, db), campaign.name, campaign
        return standalone(db), target, None
    return standalone(db), None, None


@command
def report(
    target: Annotated[
        str | None,
        typer.Argument(
            help="The campaign file (campaign.yml), or a campaign's name in the store.",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="One line per campaign, and the trend.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="With --all: campaigns first sent at or after DATE (ISO 8601).",
            metavar="DATE",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Also the funnel per value of this contact field (segments).",
            metavar="FIELD",
            show_default=False,
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML page with charts.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    xlsx: Annotated[
        Path | None,
        typer.Option(
            "--xlsx",
            help="Write an Excel workbook with native charts.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the HTML page in the browser.")
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="SQLite store to use (default: the campaign's store, else "
            "$STAMP_DB, else stamp.db beside the campaign file or here).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """How a campaign went: funnel, timeline, providers, domains, links (or --all campaigns)."""
    from stampcli.reports import output

    if all_ == (target is not None):
        raise fail("give a campaign (file or name), or --all")
    if since is not None and not all_:
        raise fail("--since goes with --all")
    if open_ and html is None:
        raise fail("--open opens the page of --html FILE; give --html too")
    since_ts = None
    if since is not None:
        since_ts = parse_time(since)
        if since_ts is None:
            raise fail(f"--since: {since!r} is not a date (e.g. 2026-11-01 or 2026-11-01T08:00Z)")
    for path in (html, xlsx):
        if path is not None:
            output.check_writable(path)
    choice, name, campaign = _choice(target, db)
    if not choice.exists:
        raise fail(f"no store at {choice.path} ({choice.origin}): nothing was sent from it")
    with SqliteStore(choice.path, readonly=True) as store:
        result: CampaignReport | CampaignsReport
        if name is None:
            result = campaigns_report(store, since_ts)
        else:
            auto_stop = campaign.auto_stop if campaign is not None else None
            text = template_text_of(campaign) if campaign is not None else None
            result = campaign_report(
                store, name, auto_stop=auto_stop, template_text=text, segment_by=by
            )
    if html is not None:
        output.write_html(html, result)
    if xlsx is not None:
        output.write_xlsx(xlsx, result)
    if as_json:
        echo_json(result.as_dict())
    elif isinstance(result, CampaignReport):
        _draw_campaign(result)
    else:
        _draw_all(result)
    say = console.print if not as_json else _stderr
    for path, what in ((html, "HTML page"), (xlsx, "workbook")):
        if path is not None:
            say(f"wrote the {what} to {path}", soft_wrap=True, markup=False)
    if open_ and html is not None:
        try:
            opened = webbrowser.open(html.resolve().as_uri())
        except webbrowser.Error:
            opened = False
        if not opened:
            say(
                f"no web browser could be started here; the page is at {html.resolve()}",
                soft_wrap=True,
                markup=False,
            )


def _stderr(text: str, **kwargs: object) -> None:
    from stampcli.cli.common import err_console

    err_console.print(text, **kwargs)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command("report")(report)
