"""How many of the rows a dead run left in doubt can in fact have gone out.

A run claims rows (``pending`` -> ``sending``, one commit) a batch ahead of
handing them to a provider, and writes answers back in batches. A run killed
hard (kill -9, power loss, OOM) therefore leaves every claimed, unrecorded row
``sending``, and the next run calls them ``unknown``: typically a few hundred,
of which only those with a provider at that moment, and those answered in
the last instant before their answer was written, can have been delivered.
Which ones cannot be told, so ``stamp retry --unknown`` re-sends them all. This
module puts numbers on that window so the choice is informed; nothing here
changes a row. (A paced run claims close to the send, so its window is a few
rows: see ``engine.Sizing``.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stampcli.config import Campaign
from stampcli.store.protocols import Store


@dataclass(frozen=True, slots=True)
class CrashWindow:
    """The ``unknown`` rows a dead run left, and how many can have reached a provider."""

    left: int  # rows `unknown` because the run sending them died (or `sending` still)
    on_wire: int  # at most this many were with a provider at once (concurrency x batch)
    unwritten: int  # about this many answered just before the death, answers not yet written
    rate: float  # messages/s the dead run recorded in its last second

    @property
    def maybe_sent(self) -> int:
        return min(self.left, self.on_wire + self.unwritten)

    @property
    def probably_not_sent(self) -> int:
        return self.left - self.maybe_sent

    def text(self) -> str:
        """One paragraph for a person deciding whether to run ``stamp retry --unknown``."""
        return (
            f"{self.left} recipients were in flight when a run died and are `unknown`; "
            + self.detail()
        )

    def detail(self) -> str:
        """What :meth:`text` says after the count."""
        return (
            f"at most {self.on_wire} can have been with a provider at that moment and about "
            f"{self.unwritten} more answered but not yet written (at the last "
            f"{self.rate:.0f} msg/s), so about {self.probably_not_sent} of the {self.left} "
            f"were probably never sent and up to about {self.maybe_sent} may have been "
            "delivered; which ones cannot be told. `stamp retry --unknown` sends all "
            f"{self.left} again (the delivered ones get a second copy, with the same "
            "Message-ID); leaving them sends none of them"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = round(self.rate, 1)
        data["maybe_sent"] = self.maybe_sent
        data["probably_not_sent"] = self.probably_not_sent
        return data


def on_wire_bound(campaign: Campaign) -> int:
    """Messages that can be with the campaign's providers at once: concurrency x batch."""
    from stampcli.providers import adapter_class

    return sum(p.concurrency * adapter_class(p.scheme).batch_for(p) for p in campaign.providers)


def crash_window(
    store: Store, campaign_id: int, campaign: Campaign, *, still_sending: int = 0
) -> CrashWindow | None:
    """The window of the rows dead runs left, or None if they left none.

    ``still_sending``: rows still ``sending`` under a dead run's lock (``stamp
    status`` counts them; the next run turns them ``unknown``).
    """
    left = store.ledger.count_stale_unknown(campaign_id) + still_sending
    if not left:
        return None
    from stampcli.delivery.recorder import FLUSH_EVERY  # the run imports this module

    rate = store.ledger.last_second_rate(campaign_id)
    # an answer waits up to FLUSH_EVERY in memory before its batch is written
    unwritten = math.ceil(rate * FLUSH_EVERY)
    return CrashWindow(left, on_wire_bound(campaign), unwritten, rate)
