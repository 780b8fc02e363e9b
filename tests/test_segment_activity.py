"""Segments on activity: opened_within, clicked_within, never_opened, bounced_soft_count, ...

On both store backends: the store's aggregates (``store.activity``), then whole
audiences read through ``iter_audience`` with events in the store, and that
each distinct question is one store call however many contacts there are.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from stampcli.audience.activity import Activity
from stampcli.audience.resolve import AudienceStats, iter_audience
from stampcli.config import Campaign, campaign_from_data
from stampcli.errors import ConfigError
from stampcli.records import Contact, EventRow
from stampcli.store import open_store, protocols

DAY = 86_400.0
NOW = time.time()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stamp.db'}"
    else:
        url = request.getfixturevalue("pg_url")  # skips where PostgreSQL is not installed
    with open_store(url) as s:
        yield s


_ids = iter(range(1, 1_000_000))


def event(recipient: str, type_: str, days_ago: float, kind: str | None = None) -> EventRow:
    return EventRow(
        provider="sg",
        event_id=f"e{next(_ids)}",
        type=type_,
        occurred_at=NOW - days_ago * DAY,
        recipient=recipient,
        bounce_kind=kind,
    )


def fill(store: protocols.Store, n: int = 0) -> None:
    keys = ["a@x.test", "b@x.test", "c@x.test", "d@x.test", *[f"n{i}@x.test" for i in range(n)]]
    store.contacts.upsert_contacts("news", [Contact(k, k, {"plan": "pro"}) for k in keys])
    store.events.add(
        [
            event("a@x.test", "opened", 2),
            event("a@x.test", "clicked", 2),
            event("b@x.test", "opened", 20),
            event("c@x.test", "clicked", 0.5),  # a click without a recorded open: opened
            event("d@x.test", "bounced", 10, "soft"),
            event("d@x.test", "delivered", 8),  # resets the count
            event("d@x.test", "bounced", 5, "soft"),
            event("d@x.test", "bounced", 3, "soft"),
            event("d@x.test", "bounced", 4, "hard"),  # not soft
        ],
        received_at=NOW,
    )


def test_the_store_answers_each_question_in_one_aggregate(store: protocols.Store) -> None:
    fill(store)
    activity = store.activity
    assert activity.recipients_since(["opened"], NOW - 7 * DAY) == {"a@x.test"}
    assert activity.recipients_since(["opened", "clicked"], NOW - 7 * DAY) == {
        "a@x.test",
        "c@x.test",
    }
    assert activity.recipients_since(["opened"], 0) == {"a@x.test", "b@x.test"}
    assert activity.soft_bounce_counts() == {"d@x.test": 2}
    everyone = {"a@x.test", "b@x.test", "c@x.test", "d@x.test"}
    assert activity.added_since(NOW - DAY) == everyone
    assert activity.added_since(time.time() + DAY) == set()


def campaign(tmp_path: Path, segment: str) -> Campaign:
    (tmp_path / "t.html").write_text("<p>hi</p>")
    return campaign_from_data(
        {
            "name": "reminder",
            "from": "News <news@acme.example>",
            "subject": "Hi",
            "template": "t.html",
            "transactional": True,
            "audience": {"list": "news", "segment": segment},
            "providers": [{"url": "outbox://out"}],
        },
        base_dir=tmp_path,
        env={},
    )


def audience(store: protocols.Store, tmp_path: Path, segment: str) -> list[str]:
    stats = AudienceStats()
    return sorted(c.key for c in iter_audience(campaign(tmp_path, segment), store, stats))


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("opened_within(7)", ["a@x.test", "c@x.test"]),
        ("opened_within(30)", ["a@x.test", "b@x.test", "c@x.test"]),
        ("clicked_within(7) and not opened_within(1)", ["a@x.test"]),
        ("never_opened", ["d@x.test"]),
        ("not opened_within(7)", ["b@x.test", "d@x.test"]),
        ("bounced_soft_count >= 2", ["d@x.test"]),
        ("bounced_soft_count == 0 and plan == 'pro'", ["a@x.test", "b@x.test", "c@x.test"]),
        ("added_within(1) and never_opened", ["d@x.test"]),
    ],
)
def test_segments_on_activity(
    store: protocols.Store, tmp_path: Path, segment: str, expected: list[str]
) -> None:
    fill(store)
    assert audience(store, tmp_path, segment) == expected


def test_added_within_counts_from_the_first_import() -> None:
    class Fixed:
        def recipients_since(self, types: Collection[str], since: float) -> set[str]:
            return set()

        def soft_bounce_counts(self) -> dict[str, int]:
            return {}

        def added_since(self, since: float) -> set[str]:
            return {"new@x.test"} if since <= NOW else set()

    later = Activity(Fixed(), NOW + 10 * DAY)
    assert not later.added_within("new@x.test", 5)
    assert later.added_within("new@x.test", 20)


class Counting:
    """store.activity, counting the calls that reach it."""

    def __init__(self, inner: protocols.ActivityStore) -> None:
        self.inner = inner
        self.calls = 0

    def recipients_since(self, types: Collection[str], since: float) -> set[str]:
        self.calls += 1
        return self.inner.recipients_since(types, since)

    def soft_bounce_counts(self) -> dict[str, int]:
        self.calls += 1
        return self.inner.soft_bounce_counts()

    def added_since(self, since: float) -> set[str]:
        self.calls += 1
        return self.inner.added_since(since)


def test_each_question_is_asked_once_for_the_whole_audience(
    store: protocols.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store, n=300)
    counting = Counting(store.activity)
    monkeypatch.setattr(
        "stampcli.audience.resolve.Activity",
        lambda _inner, now: Activity(counting, now),
    )
    keys = audience(store, tmp_path, "never_opened and bounced_soft_count == 0 or opened_within(7)")
    assert len(keys) == 302  # the 300 new ones, a and c
    assert counting.calls == 3  # never_opened, bounced_soft_count, opened_within(7)


def test_bad_arguments_are_counted_errors(store: protocols.Store, tmp_path: Path) -> None:
    fill(store)
    stats = AudienceStats()
    found = list(iter_audience(campaign(tmp_path, "opened_within('x')"), store, stats))
    assert found == [] and stats.segment_errors == 4
    assert stats.first_segment_error is not None
    assert "opened_within() takes a number of days" in stats.first_segment_error
    stats = AudienceStats()
    list(iter_audience(campaign(tmp_path, "clicked_within(-1)"), store, stats))
    assert "cannot be negative" in (stats.first_segment_error or "")


def test_without_a_store_the_segment_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("email\na@x.test\n")
    camp = campaign(tmp_path, "never_opened")
    camp = camp.model_copy(
        update={
            "audience": camp.audience.model_copy(
                update={"list_": None, "file": tmp_path / "list.csv"}
            )
        }
    )
    with pytest.raises(ConfigError, match="uses never_opened, which reads delivery events"):
        list(iter_audience(camp, None, AudienceStats()))
