"""Subscriber states that other tools export, read as suppressions.

An export from another newsletter tool says, per row, who must not be mailed
any more; importing it as plain contacts would mail them. What is recognised
(by column name, any case):

* a ``status`` column (listmonk's export: ``enabled``, ``disabled``,
  ``blocklisted``; Mailchimp's API exports: ``subscribed``, ``unsubscribed``,
  ``cleaned``): ``blocklisted`` and ``unsubscribed`` suppress as
  ``unsubscribed``, ``cleaned`` and ``bounced`` as ``hard_bounce``,
  ``complained`` as ``complaint``; other values (``enabled``, ``disabled``,
  ``subscribed``, ``pending``) change nothing;
* Mailchimp's unsubscribed export (an ``UNSUB_TIME`` column): a row with a
  time is ``unsubscribed`` (``complaint`` when the reason says abuse);
* Mailchimp's cleaned export (a ``CLEAN_TIME`` column): ``hard_bounce``.

Suppressions are global (stamp then mails the address from no list), as the
tools mean them: listmonk's blocklist and a cleaned address hold everywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stampcli.audience.columns import field_id
from stampcli.events.model import Reason
from stampcli.records import Suppression

if TYPE_CHECKING:
    from stampcli.store.protocols import Store

_STATUS_REASONS = {
    "blocklisted": Reason.UNSUBSCRIBED,
    "blacklisted": Reason.UNSUBSCRIBED,
    "unsubscribed": Reason.UNSUBSCRIBED,
    "cleaned": Reason.HARD_BOUNCE,
    "bounced": Reason.HARD_BOUNCE,
    "complained": Reason.COMPLAINT,
}

State = tuple[Reason, str]
"""(reason, detail) of a row that must not be mailed."""


class States:
    """How one file's columns say a row is suppressed; :meth:`of` reads one row."""

    def __init__(self, source: str, of: Callable[[dict[str, Any]], State | None]) -> None:
        self.source = source  # what the summary names: "listmonk status", ...
        self.of = of


def detect_states(columns: Sequence[str]) -> States | None:
    """The states ``columns`` carry, or None for a file that has none."""
    by_id = {field_id(c): c for c in columns}
    unsub, clean = by_id.get("unsub_time"), by_id.get("clean_time")
    if clean is not None:
        title = by_id.get("clean_campaign_title")

        def cleaned(fields: dict[str, Any]) -> State | None:
            if not fields[clean]:
                return None
            after = fields[title] if title else ""
            return Reason.HARD_BOUNCE, f"Mailchimp: cleaned{' after ' + after if after else ''}"

        return States("the Mailchimp cleaned export", cleaned)
    if unsub is not None:
        why_cols = [c for c in (by_id.get("unsub_reason"), by_id.get("unsub_reason_other")) if c]

        def unsubscribed(fields: dict[str, Any]) -> State | None:
            if not fields[unsub]:
                return None
            why = " ".join(w for c in why_cols if (w := str(fields[c]).strip()))
            reason = Reason.COMPLAINT if "abuse" in why.lower() else Reason.UNSUBSCRIBED
            return reason, "Mailchimp: unsubscribed" + (f" ({why})" if why else "")

        return States("the Mailchimp unsubscribed export", unsubscribed)
    status = by_id.get("status")
    if status is None:
        return None
    tool = "listmonk" if {"uuid", "attributes"} <= by_id.keys() else ""

    def by_status(fields: dict[str, Any]) -> State | None:
        value = fields[status]
        reason = _STATUS_REASONS.get(value.strip().lower()) if isinstance(value, str) else None
        if reason is None:
            return None
        return reason, f"listmonk: {value}" if tool else f"{status} {value.strip()}"

    return States(f"the {tool + ' ' if tool else ''}{status!r} column", by_status)


def suppress_states(store: Store, items: Sequence[Suppression], source: str | None) -> str | None:
    """Add the suppressions an import collected; the sentence its summary shows, or None."""
    if not items:
        return None
    new = store.suppressions.add_many(items)
    counts = Counter(str(item.reason) for item in items)
    by_reason = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    already = f"; {len(items) - new} were already" if new < len(items) else ""
    who = "1 address" if len(items) == 1 else f"{len(items)} addresses"
    return (
        f"{who} suppressed, as {source or 'the file'} says ({by_reason}){already}: "
        "stamp will not mail them (see stamp suppress list)"
    )
