"""Looking at messages before anything is sent: ``preview_message`` and ``check_campaign``.

``preview_message`` renders one recipient's message (the first of the
audience, or the one at a row or with an address, chosen by
``pick_recipient``, which ``stamp send --test-to`` uses too) and gives its
bytes as eml, browser-ready HTML or text. ``check_campaign`` renders every
recipient's message and groups what ``render/checks.py`` finds in them.
Nothing here prints.
"""

from __future__ import annotations

import base64
import html as html_lib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from stampcli.audience.activity import ACTIVITY_NAMES
from stampcli.audience.resolve import AudienceStats, iter_audience
from stampcli.config import Campaign
from stampcli.errors import InputError
from stampcli.records import Contact
from stampcli.render.checks import CheckReport, Group
from stampcli.render.message import Message
from stampcli.render.renderer import Renderer
from stampcli.schedule.zonecheck import ZoneCheck, watch_zones
from stampcli.service.check_run import check_contacts
from stampcli.store.location import DbArg, for_campaign
from stampcli.store.protocols import Store


class Format(StrEnum):
    eml = "eml"
    html = "html"
    text = "text"


def _store_for(campaign: Campaign, db: DbArg) -> Store | None:
    aud = campaign.audience
    if aud.list_ or aud.exclude_lists:
        return for_campaign(campaign, db).open(readonly=True)
    if aud.segment is not None and any(name in aud.segment for name in ACTIVITY_NAMES):
        # opened_within() and the like read the store's events; a store not made yet
        # has none, and the audience reader says the segment needs one
        choice = for_campaign(campaign, db)
        if choice.exists:
            return choice.open(readonly=True)
    return None


def audience_contacts(campaign: Campaign, db: DbArg, stats: AudienceStats) -> Iterator[Contact]:
    """The campaign's recipients as a send reads them (imported lists from its store)."""
    store = _store_for(campaign, db)
    try:
        yield from iter_audience(campaign, store, stats)
    finally:
        if store is not None:
            store.close()


def pick_recipient(campaign: Campaign, db: DbArg, row: int | None, email: str | None) -> Contact:
    """The audience's recipient at ``row`` or with ``email``, else its first one.

    ``stamp preview`` and ``stamp send --test-to`` choose whom to render with this.
    """
    stats = AudienceStats()
    wanted = email.strip().lower() if email else None
    for position, contact in enumerate(audience_contacts(campaign, db, stats), start=1):
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


def browser_html(message: Message) -> str:
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


def format_for(output: Path | None, fmt: Format | None) -> Format:
    """The format asked for, else the one ``output``'s suffix names, else text."""
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


@dataclass(frozen=True, slots=True)
class Preview:
    """One recipient's message, as it would be sent."""

    contact: Contact
    message: Message

    def content(self, fmt: Format) -> bytes:
        """eml: the exact bytes sent; html: ready for a browser; text: the text part."""
        if fmt is Format.eml:
            return self.message.raw
        if fmt is Format.html:
            return browser_html(self.message).encode("utf-8")
        return self.message.text.encode("utf-8")

    def as_dict(self) -> dict[str, Any]:
        m = self.message
        return {
            "row": self.contact.row or None,
            "email": self.contact.email,
            "from": m.from_header,
            "to": m.to_header,
            "subject": m.subject,
            "text": m.text,
            "html": m.html or None,
        }


def preview_message(
    campaign: Campaign,
    *,
    row: int | None = None,
    email: str | None = None,
    db: DbArg = None,
) -> Preview:
    """Render the message of the recipient at ``row`` / with ``email`` (else the first)."""
    if row is not None and email is not None:
        raise InputError("give a row or an address, not both")
    renderer = Renderer(campaign)
    contact = pick_recipient(campaign, db, row, email)
    return Preview(contact, renderer.render(contact.key, contact.email, contact.fields))


@dataclass(slots=True)
class CheckResult:
    """Every recipient rendered and checked: findings grouped, and the audience's own."""

    campaign: str
    report: CheckReport
    stats: AudienceStats
    zones: ZoneCheck | None = None  # schedule.timezone_field: rows per zone, fallbacks

    @property
    def ok(self) -> bool:
        """No errors: the send would not stop on any message, and the segment could be
        evaluated for every row (a row it cannot evaluate is silently left out)."""
        return not self.report.errors and not self.stats.segment_errors

    def as_dict(self) -> dict[str, Any]:
        r = self.report

        def group(g: Group) -> dict[str, Any]:
            return {**asdict(g.finding), "rows": g.rows, "keys": g.keys, "count": g.count}

        return {
            "campaign": self.campaign,
            "ok": self.ok,
            "recipients": r.recipients,
            "rendered": r.rendered,
            "unchecked": r.unchecked,
            "errors": [group(g) for g in r.errors],
            "warnings": [group(g) for g in r.warnings],
            "rejected": [{"row": x.row, "reason": x.reason} for x in self.stats.rejected],
            "duplicates": self.stats.duplicates,
            "segment_errors": self.stats.segment_errors,
            "first_segment_error": self.stats.first_segment_error,
            "zones": None if self.zones is None else self.zones.as_dict(),
        }


def check_campaign(
    campaign: Campaign, *, db: DbArg = None, workers: int | None = None
) -> CheckResult:
    """Render every recipient's message without sending and group the problems found.

    A big audience is checked in render worker processes, as a send renders it
    (``workers``: how many; None decides as a send does, 0 checks in this process).
    """
    renderer = Renderer(campaign)  # a template that does not compile fails here, once
    stats = AudienceStats()
    zones, contacts = watch_zones(campaign, audience_contacts(campaign, db, stats))
    report = check_contacts(
        campaign,
        renderer,
        ((c.row, c.key, c.email, c.fields) for c in contacts),
        workers=workers,
    )
    return CheckResult(campaign.name, report, stats, zones)
