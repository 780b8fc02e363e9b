"""Warm-up caps (``warmup:``): the day's cap holds across runs through the store, on both backends.

Router-level runs use the project's FakeClock (a day passes without waiting);
the last tests run ``stamp send`` and ``stamp status`` on the outbox.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from reliability_helpers import run_stamp, send_args, write_campaign

from stampcli.clock import FakeClock
from stampcli.config import Campaign, ProviderConfig
from stampcli.config.sending import WarmupConfig
from stampcli.delivery.router import Router
from stampcli.providers.base import Adapter, CheckReport, Outcome, Result
from stampcli.render.message import Message
from stampcli.store import open_store, protocols

START = 1_700_000_000.0  # FakeClock's default wall time: 2023-11-14 (UTC)
TODAY = dt.datetime.fromtimestamp(START, dt.UTC).date()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stamp.db'}"
    else:
        url = request.getfixturevalue("pg_url")  # skips where PostgreSQL is not installed
    with open_store(url) as s:
        yield s


class Accepting(Adapter):
    scheme: ClassVar[str] = "outbox"

    def __init__(self, name: str) -> None:
        super().__init__(ProviderConfig.model_validate({"url": "outbox://x", "name": name}))
        self.sent = 0

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        self.sent += len(messages)
        return [Result(Outcome.ACCEPTED) for _ in messages]

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)


def campaign(warmup: dict[str, Any]) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "c",
            "from": "news@acme.test",
            "subject": "s",
            "template": "t.html",
            "audience": {"list": "l"},
            "providers": [{"url": "outbox://x", "name": "a"}, {"url": "outbox://y", "name": "b"}],
            "warmup": warmup,
        }
    )


def message(i: int) -> Message:
    to = f"r{i}@x.test"
    return Message("c", to, to, "news@acme.test", f"<{i}@acme.test>", "n", to, "s", "", "", b"")


async def run(store: protocols.Store, clock: FakeClock, camp: Campaign, n: int) -> int:
    a, b = Accepting("a"), Accepting("b")
    async with Router(camp, store, adapters=[a, b], clock=clock) as router:
        out = [await router.send(message(i)) for i in range(n)]
        if any(d.result.outcome is not Outcome.ACCEPTED for d in out):
            assert "warm-up cap" in " ".join(s.reason for s in router.states())
    return sum(d.result.outcome is Outcome.ACCEPTED for d in out)


async def test_the_cap_holds_across_runs_and_grows_the_next_day(store: protocols.Store) -> None:
    clock = FakeClock(START)
    camp = campaign({"since": TODAY.isoformat(), "days": [3, 5]})
    assert await run(store, clock, camp, 10) == 3  # shared by both providers (scope: domain)
    assert await run(store, clock, camp, 10) == 0  # a second run the same day
    assert store.quota.usage("warmup:acme.test", TODAY.isoformat()) == 3
    clock.advance(86_400)
    assert await run(store, clock, camp, 10) == 5
    clock.advance(86_400)
    assert await run(store, clock, camp, 10) == 10  # past the table: no cap


async def test_scope_provider_gives_each_provider_its_cap(store: protocols.Store) -> None:
    clock = FakeClock(START)
    camp = campaign({"since": TODAY.isoformat(), "start": 2, "scope": "provider"})
    assert await run(store, clock, camp, 10) == 4  # 2 through a, then 2 through b
    day = TODAY.isoformat()
    assert store.quota.usage("warmup:a", day) == 2 and store.quota.usage("warmup:b", day) == 2


def test_the_growing_schedule() -> None:
    w = WarmupConfig.model_validate({"since": "2026-12-01", "start": 200, "factor": 2, "max": 1000})
    caps = [w.cap(dt.date(2026, 12, 1) + dt.timedelta(days=i)) for i in range(-1, 5)]
    assert caps == [200, 200, 400, 800, None, None]
    weekly = WarmupConfig.model_validate({"since": "2026-12-01", "start": 100, "per": "week"})
    assert weekly.cap(dt.date(2026, 12, 7)) == 100 and weekly.cap(dt.date(2026, 12, 8)) == 150


@pytest.mark.parametrize(
    ("warmup", "error"),
    [
        ({"since": "2026-12-01"}, "give warmup.start"),
        ({"since": "2026-12-01", "start": 1, "days": [1]}, "give warmup.start"),
        ({"since": "2026-12-01", "days": []}, "list of daily caps"),
        ({"since": "2026-12-01", "start": 10, "factor": 1}, "greater than 1"),
        ({"since": "someday", "start": 10}, "date"),
    ],
)
def test_bad_warmups_are_refused(warmup: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        campaign(warmup)


def test_stamp_send_stops_at_the_cap_and_status_shows_it(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    extra = f"warmup: {{since: '{today}', days: [2, 4]}}\n"
    path = write_campaign(tmp_path, [{"url": "outbox://outbox"}], n=5, extra=extra)
    db = tmp_path / "stamp.db"
    done = run_stamp(*send_args(path, db), cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr  # stopped with work left
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 2
    done = run_stamp(*send_args(path, db), cwd=tmp_path)
    assert done.returncode == 3
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 2
    shown = run_stamp("status", str(path), "--json", "--db", str(db), cwd=tmp_path)
    warmup = json.loads(shown.stdout)["warmup"]
    assert warmup == [{"label": "warmup:acme.example", "day": today, "cap": 2, "used": 2}]
    text = run_stamp("status", str(path), "--db", str(db), cwd=tmp_path).stdout
    assert f"warm-up warmup:acme.example: 2 sent on {today} (UTC), cap 2" in text
