"""What a segment knows about a subscriber's activity: opens, clicks, soft bounces, age.

The segment functions ``opened_within(days)``, ``clicked_within(days)``,
``never_opened``, ``bounced_soft_count`` and ``added_within(days)`` read an
:class:`Activity`. Each distinct question (``opened_within(30)`` is one) is
asked of the store once, as one SQL aggregate over the events or contacts
table (:class:`stampcli.store.protocols.ActivityStore`), and its answer, the
set of matching keys, is kept for the rest of the audience: a contact's test
is a set lookup, never a read of its events.

A click counts as an open: a reader whose mail client blocks images opens
without a recorded open, and clicking needs the message open.
"""

from __future__ import annotations

import math

from stampcli.store.protocols import ActivityStore

ACTIVITY_NAMES = (
    "opened_within",
    "clicked_within",
    "never_opened",
    "bounced_soft_count",
    "added_within",
)
_OPENS = ("opened", "clicked")
_DAY = 86_400.0


class Activity:
    """Cached activity answers from one store, ``now`` fixed for the whole audience."""

    def __init__(self, store: ActivityStore, now: float) -> None:
        self._store = store
        self._now = now
        self._sets: dict[tuple[str, float], set[str]] = {}
        self._soft: dict[str, int] | None = None

    def _since(self, days: object, name: str) -> float:
        if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days):
            raise ValueError(f"{name}() takes a number of days, like {name}(30); got {days!r}")
        if days < 0:
            raise ValueError(f"{name}({days}): the number of days cannot be negative")
        return self._now - float(days) * _DAY

    def _keys(self, what: str, since: float) -> set[str]:
        found = self._sets.get((what, since))
        if found is None:
            if what == "added":
                found = self._store.added_since(since)
            else:
                found = self._store.recipients_since(_OPENS if what == "opened" else (what,), since)
            self._sets[(what, since)] = found
        return found

    def opened_within(self, key: str, days: object) -> bool:
        return key in self._keys("opened", self._since(days, "opened_within"))

    def clicked_within(self, key: str, days: object) -> bool:
        return key in self._keys("clicked", self._since(days, "clicked_within"))

    def added_within(self, key: str, days: object) -> bool:
        return key in self._keys("added", self._since(days, "added_within"))

    def never_opened(self, key: str) -> bool:
        return key not in self._keys("opened", -math.inf)

    def bounced_soft_count(self, key: str) -> int:
        if self._soft is None:
            self._soft = self._store.soft_bounce_counts()
        return self._soft.get(key, 0)
