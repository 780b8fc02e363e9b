"""The suppression list in a real SQLite file: upserts, scopes, batches, removal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stampcli.errors import InputError
from stampcli.store import suppressions as sup
from stampcli.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "stamp.db") as s:
        yield s


def test_add_is_an_upsert_that_keeps_the_first_time(store: Store) -> None:
    assert sup.add(store, "a@x.example", "manual", "cli") is True
    first = next(sup.iter_suppressions(store))
    assert sup.add(store, "a@x.example", "hard_bounce", "sendgrid", "550 no such user") is False
    (row,) = list(sup.iter_suppressions(store))
    assert (row.reason, row.source, row.detail) == ("hard_bounce", "sendgrid", "550 no such user")
    assert row.created_at == first.created_at


def test_unknown_reason_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="bounced"):
        sup.add(store, "a@x.example", "bounced", "cli")
    assert list(sup.iter_suppressions(store)) == []


def test_scopes_global_and_per_list(store: Store) -> None:
    sup.add(store, "everywhere@x.example", "complaint", "cli")
    sup.add(store, "news-only@x.example", "unsubscribed", "cli", scope="news")
    keys = ["everywhere@x.example", "news-only@x.example", "fine@x.example"]
    assert sup.suppressed(store, keys) == {"everywhere@x.example"}
    assert sup.suppressed(store, keys, ["news"]) == {"everywhere@x.example", "news-only@x.example"}
    assert sup.suppressed(store, keys, ["offers"]) == {"everywhere@x.example"}
    assert sup.suppressed(store, []) == set()


def test_batches_larger_than_sqlite_parameter_limit(store: Store) -> None:
    items = [sup.Suppression(f"u{i}@x.example", "hard_bounce", "file") for i in range(0, 3000, 2)]
    assert sup.add_many(store, items) == 1500
    assert sup.add_many(store, items[:10]) == 0
    keys = [f"u{i}@x.example" for i in range(3000)]
    found = sup.suppressed(store, keys)
    assert len(found) == 1500
    assert "u2998@x.example" in found and "u2999@x.example" not in found


def test_add_many_keeps_given_times_and_refreshes(store: Store) -> None:
    n = sup.add_many(
        store,
        [
            sup.Suppression("a@x.example", "complaint", "mailgun", created_at=1_600_000_000.0),
            sup.Suppression("b@x.example", "invalid", "file", detail="bad syntax"),
        ],
    )
    assert n == 2
    sup.add_many(store, [sup.Suppression("a@x.example", "unsubscribed", "postmark")])
    rows = {s.key: s for s in sup.iter_suppressions(store)}
    assert rows["a@x.example"].created_at == 1_600_000_000.0
    assert rows["a@x.example"].reason == "unsubscribed"
    assert rows["b@x.example"].detail == "bad syntax"
    assert [s.key for s in sup.iter_suppressions(store, reason="invalid")] == ["b@x.example"]
    assert sup.count(store) == {"invalid": 1, "unsubscribed": 1}


def test_remove_in_one_scope_or_all(store: Store) -> None:
    sup.add(store, "a@x.example", "manual", "cli")
    sup.add(store, "a@x.example", "manual", "cli", scope="news")
    sup.add(store, "b@x.example", "manual", "cli")
    assert sup.remove(store, ["a@x.example"], scope="news") == 1
    assert sup.suppressed(store, ["a@x.example"], ["news"]) == {"a@x.example"}
    assert sup.remove(store, ["a@x.example", "b@x.example", "c@x.example"]) == 2
    assert list(sup.iter_suppressions(store)) == []


def test_survives_reopening(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        sup.add(s, "a@x.example", "complaint", "cli")
    with Store(tmp_path / "s.db", readonly=True) as s:
        assert sup.suppressed(s, ["a@x.example"]) == {"a@x.example"}
