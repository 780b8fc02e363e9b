"""The send engine against a scripted router and renderer, and a real SQLite ledger.

The router here is a small stand-in with the real Router's shape (``send``,
``all_down``, ``states``, async context manager): each recipient's answers
are scripted, so every ledger transition can be driven exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from stampcli.cli.exit_codes import for_reason
from stampcli.config import Campaign, ProviderConfig, parse_rate
from stampcli.delivery.run import CampaignRun, RunSummary
from stampcli.delivery.run_events import Event, Notice, Planned, Progress, RunFinished, RunStarted
from stampcli.errors import (
    CampaignPausedError,
    ContentChangedError,
    ExitCode,
    InputError,
    LockedError,
    RecipientError,
)
from stampcli.providers.base import Outcome, Result
from stampcli.records import Contact
from stampcli.render.message import Message
from stampcli.store import campaigns, ledger, locks, suppressions, testing
from stampcli.store.db import Store

OK = Result(Outcome.ACCEPTED, message_id="q")


def make_campaign(tmp_path: Path, **throttle: Any) -> Campaign:
    (tmp_path / "t.html").write_text("<p>hi {{ name }}</p>")
    (tmp_path / "list.csv").write_text("email\n")
    return Campaign.model_validate(
        {
            "name": "news",
            "from": "News <news@acme.test>",
            "subject": "Hello",
            "transactional": True,  # no unsubscribe link needed for these unit tests
            "template": tmp_path / "t.html",
            "audience": {"file": tmp_path / "list.csv"},
            "providers": [{"url": "outbox://" + str(tmp_path / "out"), "name": "p1"}],
            "throttle": {"retries": 2, "backoff": 0.001, **throttle},
            "auto_stop": {"min_answers": 10, "hard_bounce_rate": 0.2},
        }
    )


def contacts(n: int, start: int = 0) -> list[Contact]:
    return [Contact(f"u{i}@x.test", f"u{i}@x.test", {"name": f"U{i}"}) for i in range(start, n)]


class FakeRenderer:
    def __init__(self, content: str = "v1") -> None:
        self.content_hash = hashlib.sha256(content.encode()).hexdigest()

    def render(self, key: str, email: str, fields: dict[str, Any]) -> Message:
        if fields.get("bad"):
            raise RecipientError(f"{key}: the template uses 'missing', which this row lacks")
        return Message(
            campaign="news", key=key, recipient=email, sender="news@acme.test",
            message_id=f"<{key}.news@acme.test>", from_header="news@acme.test",
            to_header=email, subject=f"Hello {fields.get('name')}", html="<p>hi</p>",
            text="hi", raw=b"Subject: hi\r\n\r\nhi\r\n",
        )  # fmt: skip


@dataclass
class Delivery:
    result: Result
    provider: str | None
    attempts: int = 1


@dataclass
class Status:
    name: str
    state: str = "closed"
    sent: int = 0


@dataclass
class ScriptedRouter:
    """Answers per recipient: a list consumed one send at a time (the last repeats)."""

    script: dict[str, list[Result]] = field(default_factory=dict)
    default: Result = OK
    all_down: bool = False
    hook: Callable[[Message], Any] | None = None
    sends: Counter[str] = field(default_factory=Counter)
    hang: set[str] = field(default_factory=set)
    entered: bool = False
    state: str = "closed"
    max_batch: int = 1  # above 1: the engine hands over lots through send_many
    rate_waiting: int = 0  # the engine's pacing gate reads it (never paced here)
    needs_raw: bool = True
    lots: list[int] = field(default_factory=list)  # sizes of the lots send_many got

    async def __aenter__(self) -> ScriptedRouter:
        self.entered = True
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.entered = False

    async def send(self, message: Message) -> Delivery:
        assert self.entered
        self.sends[message.key] += 1
        if self.hook is not None:
            await self.hook(message) if asyncio.iscoroutinefunction(self.hook) else self.hook(
                message
            )
        if message.key in self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        answers = self.script.get(message.key)
        result = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else self.default
        return Delivery(result, "p1" if result.outcome is not Outcome.PROVIDER_DOWN else None)

    async def send_many(self, messages: Sequence[Message]) -> list[Delivery]:
        self.lots.append(len(messages))
        return list(await asyncio.gather(*(self.send(m) for m in messages)))

    def states(self) -> list[Status]:
        return [Status("p1", self.state)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "stamp.db")
    yield s
    s.close()


def news_id(store: Store) -> int:
    return campaigns.ensure(store, "news").id


def states(store: Store) -> dict[str, str]:
    return {r.key: r.state for r in ledger.rows(store, news_id(store))}


async def run(
    campaign: Campaign,
    store: Store,
    router: ScriptedRouter,
    people: list[Contact],
    events: list[Event] | None = None,
    **kw: Any,
) -> RunSummary:
    sink = events.append if events is not None else (lambda e: None)
    renderer = kw.pop("renderer", FakeRenderer())
    kw.setdefault("exit_code_for", for_reason)  # as the CLI records it in the runs row
    engine = CampaignRun(
        campaign, store, router=router, renderer=renderer, contacts=people, on_event=sink, **kw
    )
    return await engine.run()


@pytest.mark.parametrize("lot", [1, 25])
async def test_sends_everyone_once_and_rerun_sends_nothing(
    tmp_path: Path, store: Store, lot: int
) -> None:
    campaign = make_campaign(tmp_path, batch_size=50)
    router = ScriptedRouter(max_batch=lot)
    events: list[Event] = []
    summary = await run(campaign, store, router, contacts(700), events)
    assert for_reason(summary.reason) is ExitCode.OK and summary.reason == "complete"
    assert summary.counts["sent"] == 700 and summary.run_counts == {"sent": 700}
    assert summary.per_provider == {"p1": {"sent": 700}}
    assert set(router.sends.values()) == {1} and len(router.sends) == 700
    assert max(router.lots, default=1) == lot  # lots are as big as the provider's batches
    kinds = [type(e) for e in events]
    assert kinds[0] is Planned and RunStarted in kinds and kinds[-1] is RunFinished
    assert any(isinstance(e, Progress) and e.done == 700 for e in events)
    first = ledger.rows(store, news_id(store))[0]
    row = (first.attempts, first.provider, first.provider_message_id, first.message_id)
    assert row == (1, "p1", "q", "<u0@x.test.news@acme.test>")
    assert locks.holder(store, campaigns.ensure(store, "news").id) is None  # released

    again = ScriptedRouter()
    summary = await run(campaign, store, again, contacts(700))
    assert for_reason(summary.reason) is ExitCode.OK and not again.sends
    # a new recipient in the audience: only that one is sent
    summary = await run(campaign, store, again, contacts(701))
    assert summary.planned is not None and summary.planned.added == 1
    assert list(again.sends) == ["u700@x.test"]
    last = campaigns.last_run(store, campaigns.ensure(store, "news").id)
    assert last is not None and last.exit_code == 0 and last.summary is not None


async def test_suppressed_at_planning_and_again_before_sending(
    tmp_path: Path, store: Store
) -> None:
    campaign = make_campaign(tmp_path, batch_size=10)
    suppressions.add(store, "u1@x.test", "unsubscribed", "test")
    router = ScriptedRouter()
    summary = await run(campaign, store, router, contacts(20), limit=5)
    assert summary.planned is not None and summary.planned.suppressed == 1
    assert for_reason(summary.reason) is ExitCode.RESUMABLE and summary.reason == "limit"
    assert sum(router.sends.values()) == 5
    # someone unsubscribes mid-campaign: their row is suppressed when claimed
    suppressions.add(store, "u15@x.test", "unsubscribed", "link")
    summary = await run(campaign, store, router, contacts(20))
    assert for_reason(summary.reason) is ExitCode.OK
    assert states(store)["u15@x.test"] == "suppressed" and "u15@x.test" not in router.sends
    assert states(store)["u1@x.test"] == "suppressed" and "u1@x.test" not in router.sends
    assert summary.counts["sent"] == 18


async def test_permanent_unknown_and_render_failures(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)
    people = [*contacts(6), Contact("bad@x.test", "bad@x.test", {"bad": True})]
    router = ScriptedRouter(
        script={
            "u1@x.test": [Result(Outcome.RECIPIENT_REJECTED, detail="550 5.1.1 no such user",
                                 suppress="hard_bounce")],
            "u2@x.test": [Result(Outcome.RECIPIENT_REJECTED, detail="550 policy")],
            "u3@x.test": [Result(Outcome.UNKNOWN, detail="read timeout after DATA")],
        }
    )  # fmt: skip
    summary = await run(campaign, store, router, people)
    assert (
        for_reason(summary.reason) is ExitCode.PERMANENT_FAILURES and summary.reason == "failures"
    )
    got = states(store)
    assert got["u1@x.test"] == got["u2@x.test"] == "failed" and got["u3@x.test"] == "unknown"
    assert got["bad@x.test"] == "failed" and "bad@x.test" not in router.sends
    assert router.sends["u1@x.test"] == 1  # a rejection is never retried
    # a rejection that says something lasting suppresses the address, source = provider
    assert suppressions.suppressed(store, ["u1@x.test", "u2@x.test"]) == {"u1@x.test"}
    assert (found := suppressions.get(store, "u1@x.test")) is not None and found.source == "p1"
    errors = {e.key: e.error for e in ledger.last_errors(store, campaigns.ensure(store, "news").id)}
    assert errors["u1@x.test"] == "550 5.1.1 no such user"
    assert "missing" in errors["bad@x.test"]


async def test_transient_failures_retry_then_defer(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)
    deferred = Result(Outcome.RECIPIENT_DEFERRED, detail="451 4.7.1 greylisted")
    throttled = Result(Outcome.THROTTLED, detail="429", retry_after=0.01)
    router = ScriptedRouter(
        script={
            "u0@x.test": [deferred],  # always: deferred after 1 + 2 retries
            "u1@x.test": [throttled, OK],  # second try goes through
        }
    )
    summary = await run(campaign, store, router, contacts(3))
    assert router.sends["u0@x.test"] == 3 and router.sends["u1@x.test"] == 2
    assert for_reason(summary.reason) is ExitCode.RESUMABLE and summary.reason == "deferred"
    u0 = ledger.row(store, news_id(store), "u0@x.test")
    assert u0 is not None and u0.next_attempt_at is not None and u0.first_attempt_at is not None
    row = (u0.state, u0.attempts, u0.next_attempt_at, u0.last_error or "", u0.first_attempt_at)
    assert row[0] == "deferred" and row[1] == 3 and row[2] > row[4] and "greylisted" in row[3]
    assert states(store)["u1@x.test"] == "sent"
    # not due yet: a rerun sends nothing and still says work is left
    summary = await run(campaign, store, router, contacts(3))
    assert router.sends["u0@x.test"] == 3 and for_reason(summary.reason) is ExitCode.RESUMABLE
    # due: retried; past expire_after: failed
    testing.set_ledger(store, news_id(store), next_attempt_at=0)
    router.script["u0@x.test"] = [OK]
    summary = await run(campaign, store, router, contacts(3))
    assert states(store)["u0@x.test"] == "sent" and for_reason(summary.reason) is ExitCode.OK


async def test_deferred_rows_expire(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path, expire_after=3600)
    router = ScriptedRouter(default=Result(Outcome.RECIPIENT_DEFERRED, detail="452 mailbox full"))
    await run(campaign, store, router, contacts(1))
    testing.set_ledger(store, news_id(store), next_attempt_at=0, first_attempt_at=1)
    summary = await run(campaign, store, router, contacts(1))
    assert router.sends["u0@x.test"] == 3  # not sent again: expired first
    assert (
        summary.counts["failed"] == 1 and for_reason(summary.reason) is ExitCode.PERMANENT_FAILURES
    )


async def test_all_providers_down_leaves_the_rest_pending(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path, batch_size=20)
    router = ScriptedRouter(default=Result(Outcome.PROVIDER_DOWN, detail="connect refused"),
                            all_down=True)  # fmt: skip
    events: list[Event] = []
    summary = await run(campaign, store, router, contacts(500), events, workers=4)
    assert (
        for_reason(summary.reason) is ExitCode.ALL_PROVIDERS_DOWN and summary.reason == "all_down"
    )
    assert summary.counts["pending"] == 500  # nobody failed for a provider's outage
    assert summary.counts["sending"] == 0
    assert sum(router.sends.values()) <= 4 * 3 + 20  # stopped claiming at once
    assert any(isinstance(e, Notice) and "every provider" in e.message for e in events)


async def test_auto_stop_pauses_until_unpaused(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path, batch_size=10)
    bounce = Result(Outcome.RECIPIENT_REJECTED, detail="550 unknown user", suppress="hard_bounce")
    router = ScriptedRouter(script={f"u{i}@x.test": [bounce] for i in range(0, 60, 2)})
    summary = await run(campaign, store, router, contacts(300), workers=2)
    assert for_reason(summary.reason) is ExitCode.PAUSED and summary.paused_reason
    assert summary.counts["sending"] == 0 and summary.counts["pending"] > 200
    row = campaigns.ensure(store, "news")
    assert row.paused_reason == summary.paused_reason and row.paused_at is not None
    with pytest.raises(CampaignPausedError):
        await run(campaign, store, ScriptedRouter(), contacts(300))
    refused = campaigns.last_run(store, row.id)  # recorded as refused, not "running or died"
    assert refused is not None and refused.exit_code == ExitCode.PAUSED
    assert refused.summary is not None and refused.summary["reason"] == "refused"
    summary = await run(campaign, store, ScriptedRouter(), contacts(300), unpause=True)
    assert for_reason(summary.reason) is ExitCode.PERMANENT_FAILURES  # the bounces stay failed
    assert summary.counts["pending"] == 0 and campaigns.ensure(store, "news").paused_at is None


async def test_changed_content_needs_a_flag(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)
    await run(campaign, store, ScriptedRouter(), contacts(3), limit=1)
    with pytest.raises(ContentChangedError):
        await run(campaign, store, ScriptedRouter(), contacts(3), renderer=FakeRenderer("v2"))
    summary = await run(
        campaign, store, ScriptedRouter(), contacts(3), renderer=FakeRenderer("v2"),
        allow_changed=True,
    )  # fmt: skip
    assert for_reason(summary.reason) is ExitCode.OK and summary.counts["sent"] == 3


async def test_max_messages_caps_each_run(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path, max_messages=40, batch_size=15)
    router = ScriptedRouter()
    for expected in (40, 80, 100):
        summary = await run(campaign, store, router, contacts(100))
        assert summary.counts["sent"] == expected
    assert for_reason(summary.reason) is ExitCode.OK and set(router.sends.values()) == {1}


@pytest.mark.parametrize("lot", [1, 25])
async def test_stop_finishes_in_flight_and_leaves_no_unknown(
    tmp_path: Path, store: Store, lot: int
) -> None:
    campaign = make_campaign(tmp_path, batch_size=50)
    engine: CampaignRun | None = None

    def after_some(message: Message) -> None:
        assert engine is not None
        if sum(router.sends.values()) == 120:
            engine.request_stop()

    router = ScriptedRouter(hook=after_some, max_batch=lot)
    engine = CampaignRun(
        campaign, store, router=router, renderer=FakeRenderer(), contacts=contacts(2000)
    )
    summary = await engine.run()
    assert for_reason(summary.reason) is ExitCode.RESUMABLE and summary.reason == "stopped"
    counts = summary.counts
    assert counts["sending"] == 0 and counts["unknown"] == 0
    assert counts["sent"] == sum(router.sends.values()) and 120 <= counts["sent"] < 2000
    pending = ledger.rows(store, news_id(store), ledger.PENDING)
    assert max(r.attempts for r in pending) == 0  # rows claimed but not handed over were given back


@pytest.mark.parametrize("lot", [1, 4])
async def test_abort_marks_in_flight_unknown(tmp_path: Path, store: Store, lot: int) -> None:
    campaign = make_campaign(tmp_path, batch_size=50)
    engine: CampaignRun | None = None

    def abort_when_stuck(message: Message) -> None:
        if sum(router.sends.values()) == 100:
            assert engine is not None
            asyncio.get_running_loop().call_soon(engine.abort)

    router = ScriptedRouter(hang={"u30@x.test", "u31@x.test"}, hook=abort_when_stuck, max_batch=lot)
    engine = CampaignRun(campaign, store, router=router, renderer=FakeRenderer(),
                         contacts=contacts(300), workers=8)  # fmt: skip
    summary = await engine.run()
    assert for_reason(summary.reason) is ExitCode.INTERRUPTED
    got = states(store)
    assert got["u30@x.test"] == got["u31@x.test"] == "unknown"
    counts = summary.counts
    # the two hung rows, and any other row inside router.send when the abort came
    assert counts["sending"] == 0 and 2 <= counts["unknown"] <= 8
    assert counts["sent"] + counts["unknown"] == sum(router.sends.values())


async def test_stale_sending_rows_become_unknown_and_are_reported(
    tmp_path: Path, store: Store
) -> None:
    campaign = make_campaign(tmp_path)
    await run(campaign, store, ScriptedRouter(), contacts(5), limit=1)
    testing.set_ledger(store, news_id(store), key="u3@x.test", state="sending")
    events: list[Event] = []
    router = ScriptedRouter()
    summary = await run(campaign, store, router, contacts(5), events)
    assert summary.unknown_found == 1 and "u3@x.test" not in router.sends
    assert for_reason(summary.reason) is ExitCode.PERMANENT_FAILURES  # unknown needs a decision
    assert any(isinstance(e, Notice) and "retry --unknown" in e.message for e in events)


async def test_a_second_run_is_locked_out(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)
    cid = campaigns.ensure(store, "news").id
    locks.acquire(store, cid, "elsewhere.invalid:1:abcd")
    with pytest.raises(LockedError, match=r"elsewhere\.invalid"):
        await run(campaign, store, ScriptedRouter(), contacts(3))


@pytest.mark.parametrize("lot", [1, 50])
async def test_in_flight_rows_stay_bounded(tmp_path: Path, store: Store, lot: int) -> None:
    campaign = make_campaign(tmp_path, batch_size=100)
    seen: list[int] = []

    def count_sending(message: Message) -> None:
        if len(seen) % 50 == 0:
            seen.append(ledger.counts(store, news_id(store))[ledger.SENDING])
        else:
            seen.append(0)

    router = ScriptedRouter(hook=count_sending, max_batch=lot)
    engine = CampaignRun(
        campaign, store, router=router, renderer=FakeRenderer(), contacts=contacts(3000), workers=16
    )
    summary = await engine.run()
    assert summary.counts["sent"] == 3000
    assert 0 < max(seen) <= engine.max_inflight < 3000


async def test_a_claimer_short_of_room_does_not_wait_for_the_flusher(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers that make room are committed as soon as enough wait, not at the next tick.

    With the flusher's tick at 30 s the in-flight window (16 + 100 rows) would allow one
    claim per tick: 1,000 rows in minutes. They must go in well under that.
    """
    from stampcli.delivery import recorder

    monkeypatch.setattr(recorder, "FLUSH_EVERY", 30.0)
    campaign = make_campaign(tmp_path, batch_size=100)
    engine = CampaignRun(
        campaign, store, router=ScriptedRouter(), renderer=FakeRenderer(),
        contacts=contacts(1000), workers=16,
    )  # fmt: skip
    summary = await asyncio.wait_for(engine.run(), 20)
    assert summary.counts["sent"] == 1000
    assert ledger.counts(store, news_id(store))[ledger.SENT] == 1000


@pytest.mark.parametrize(
    ("provider", "in_flight"),
    [
        ({"url": "postmark://t", "concurrency": 4}, 2000),  # 4 calls of Postmark's 500
        ({"url": "postmark://t", "concurrency": 2, "batch_size": 100}, 200),
        ({"url": "resend://k", "concurrency": 3}, 300),
        ({"url": "sendgrid://k", "concurrency": 8}, 64),  # one message a call: the floor
    ],
)
def test_messages_in_flight_fill_every_providers_batches(
    tmp_path: Path, store: Store, provider: dict[str, Any], in_flight: int
) -> None:
    campaign = make_campaign(tmp_path).model_copy(
        update={"providers": [ProviderConfig.model_validate(provider)]}
    )
    assert CampaignRun(campaign, store).workers == in_flight


async def test_no_provider_for_a_while_stops_claiming(tmp_path: Path, store: Store) -> None:
    """The router says down for each message but not yet "all down": no churn through rows."""
    campaign = make_campaign(tmp_path, batch_size=20)
    router = ScriptedRouter(default=Result(Outcome.PROVIDER_DOWN, detail="every provider is down"))
    summary = await run(campaign, store, router, contacts(2000), workers=4)
    assert for_reason(summary.reason) is ExitCode.ALL_PROVIDERS_DOWN
    assert summary.counts["pending"] == 2000 and summary.counts["failed"] == 0
    assert sum(router.sends.values()) <= 3 * (4 + 20)  # the first claims only, with retries


async def test_provider_back_after_a_blip_resumes(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path, batch_size=20)
    down = Result(Outcome.PROVIDER_DOWN, detail="connect refused")
    router = ScriptedRouter(script={"u3@x.test": [down, down, OK]})
    summary = await run(campaign, store, router, contacts(200), workers=4)
    assert for_reason(summary.reason) is ExitCode.OK and summary.counts["sent"] == 200


async def test_quota_used_up_exits_3_even_if_permits_come_back_before_the_end(
    tmp_path: Path, store: Store
) -> None:
    """Two runs share a quota; the other one returns its unused permits as this one ends."""

    class QuotaRouter(ScriptedRouter):
        async def __aexit__(
            self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
        ) -> None:
            self.state = "closed"  # the router's quota check now finds a permit again
            await super().__aexit__(t, e, tb)

    campaign = make_campaign(tmp_path, batch_size=20)
    out = Result(Outcome.PROVIDER_DOWN, detail="every provider is down, refused or out of quota")
    router = QuotaRouter(default=out, all_down=True, state="quota_used")
    summary = await run(campaign, store, router, contacts(50), workers=4)
    assert for_reason(summary.reason) is ExitCode.RESUMABLE and summary.reason == "quota"
    assert summary.counts["pending"] == 50


def test_rate_limited_sends_claim_only_a_little_ahead(tmp_path: Path, store: Store) -> None:
    fast = make_campaign(tmp_path)
    paced = fast.model_copy(
        update={"providers": [fast.providers[0].model_copy(update={"rate": parse_rate("10/s")})]}
    )
    # a tenth of a second of 10/s is one row; the connections (8) and the floor decide
    assert CampaignRun(paced, store).max_inflight == 9
    assert CampaignRun(fast, store).max_inflight > 200


async def test_auto_stop_counts_answers_across_runs(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)  # min_answers 10, hard_bounce_rate 0.2
    bounce = Result(Outcome.RECIPIENT_REJECTED, detail="550 no such user", suppress="hard_bounce")
    first = contacts(6)
    router = ScriptedRouter(script={"u0@x.test": [bounce], "u1@x.test": [bounce]})
    summary = await run(campaign, store, router, first)
    assert for_reason(summary.reason) != ExitCode.PAUSED  # 6 answers: too few to judge
    second = contacts(12, start=6)
    router = ScriptedRouter(script={"u6@x.test": [bounce]})
    summary = await run(campaign, store, router, first + second)
    assert (
        for_reason(summary.reason) == ExitCode.PAUSED
    )  # 3 bounces in the first 10 answers of the two


def test_the_cli_renderer_does_not_keep_rendering_out_of_the_pool(tmp_path: Path) -> None:
    # `stamp send` builds a Renderer up front (template errors first) and passes it
    # in; big sends must still render in worker processes, custom renderers not
    from stampcli.delivery.engine import _poolable
    from stampcli.render.renderer import Renderer

    campaign = make_campaign(tmp_path)
    assert _poolable(None)
    assert _poolable(Renderer(campaign))
    assert not _poolable(FakeRenderer())


# ---------------------------------------------------------------- planning while sending


async def test_a_big_audience_is_planned_while_sending_starts(tmp_path: Path, store: Store) -> None:
    campaign = make_campaign(tmp_path)
    seen_while_planning: list[bool] = []
    engine_box: list[CampaignRun] = []

    def hook(message: Message) -> None:
        seen_while_planning.append(not engine_box[0].planning_done)

    router = ScriptedRouter(hook=hook)
    events: list[Event] = []
    engine = CampaignRun(
        campaign, store, router=router, renderer=FakeRenderer(), contacts=contacts(9000),
        on_event=events.append, render_workers=0,
    )  # fmt: skip
    engine_box.append(engine)
    summary = await engine.run()
    assert for_reason(summary.reason) is ExitCode.OK and summary.counts["sent"] == 9000
    assert set(router.sends.values()) == {1} and len(router.sends) == 9000
    assert any(seen_while_planning), "sending only began after planning"
    assert summary.planned is not None and summary.planned.added == 9000
    kinds = [type(e) for e in events if not isinstance(e, Progress | Notice)]
    assert kinds[:2] == [Planned, RunStarted] and kinds[-1] is RunFinished
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.total == 9000 and started.pending == 9000
    final = [e for e in events if isinstance(e, Progress)][-1]
    assert final.total == 9000 and final.done == 9000


async def test_a_run_that_stops_early_leaves_the_rest_of_planning_to_the_next(
    tmp_path: Path, store: Store
) -> None:
    campaign = make_campaign(tmp_path, max_messages=2500)
    router = ScriptedRouter()
    first = await run(campaign, store, router, contacts(20_000), render_workers=0)
    assert first.counts["sent"] == 2500 and for_reason(first.reason) is ExitCode.RESUMABLE
    assert set(states(store).values()) <= {"sent", "pending"}  # nothing claimed and lost
    for _ in range(10):
        summary = await run(campaign, store, router, contacts(20_000), render_workers=0)
        if for_reason(summary.reason) is ExitCode.OK:
            break
    assert for_reason(summary.reason) is ExitCode.OK and summary.counts["sent"] == 20_000
    assert set(router.sends.values()) == {1} and len(router.sends) == 20_000


class AudienceBreaks(InputError):
    pass


def breaking_audience(n: int, after: int) -> Iterator[Contact]:
    for i, c in enumerate(contacts(n)):
        if i == after:
            raise AudienceBreaks("list.csv: row 4002: the file ends in the middle of a row")
        yield c


async def test_a_failure_while_planning_the_rest_ends_the_run_with_its_error(
    tmp_path: Path, store: Store
) -> None:
    campaign = make_campaign(tmp_path)
    router = ScriptedRouter()
    engine = CampaignRun(
        campaign, store, router=router, renderer=FakeRenderer(),
        contacts=breaking_audience(9000, 4000), render_workers=0,
    )  # fmt: skip
    with pytest.raises(AudienceBreaks, match="row 4002"):
        await engine.run()
    got = states(store)
    assert len(got) == 4000 and set(got.values()) <= {"sent", "pending"}
    assert set(router.sends.values()) == {1}
    assert sum(1 for s in got.values() if s == "sent") == len(router.sends)
    assert locks.holder(store, campaigns.ensure(store, "news").id) is None
