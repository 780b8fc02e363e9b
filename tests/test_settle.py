"""settle: one provider answer -> one decision, without a send loop around it.

Also the run's edges that moved with the engine split: the library leaves the
process's GC settings alone, and the reason -> exit code mapping is the CLI's.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from test_engine import FakeRenderer, ScriptedRouter, contacts, make_campaign

from stampcli.cli.exit_codes import RUN_EXIT_CODES, for_reason, with_exit_code
from stampcli.cli.hints import explain
from stampcli.delivery.run import REASONS, CampaignRun
from stampcli.delivery.settle import (
    ALL_DOWN,
    DEFER_AT_LEAST,
    Record,
    RetryAfter,
    RetryPolicy,
    give_up,
    settle,
)
from stampcli.errors import CampaignPausedError, ContentChangedError, ExitCode
from stampcli.providers.base import Outcome, Result
from stampcli.store import campaigns, ledger
from stampcli.store.db import Store

POLICY = RetryPolicy(retries=2, backoff=1.0, expire_after=3600.0)
ROW = ledger.PendingRow(7, "a@x.test", "a@x.test", "{}", 0, None)
DOWN = Result(Outcome.PROVIDER_DOWN, detail="connection refused")
TEMP = Result(Outcome.RECIPIENT_DEFERRED, detail="451 try later")


def decide(result: Result, tries: int = 1, **kw: bool) -> Record | RetryAfter:
    flags = {"all_down": False, "stopping": False, "everyone_down": False, **kw}
    return settle(ROW, tries, result, "p1", POLICY, **flags)


def test_final_answers_are_recorded_with_their_provider() -> None:
    sent = decide(Result(Outcome.ACCEPTED, message_id="m-1"), tries=2)
    assert isinstance(sent, Record) and sent.halt is None and sent.suppress is None
    assert sent.outcome == ledger.Outcome(
        7, ledger.SENT, provider="p1", provider_message_id="m-1", extra_attempts=1
    )
    bounce = decide(
        Result(Outcome.RECIPIENT_REJECTED, detail="550  no\nuser", suppress="hard_bounce")
    )
    assert isinstance(bounce, Record) and bounce.outcome.state == ledger.FAILED
    assert bounce.outcome.last_error == "550 no user"  # one line for the ledger
    assert bounce.suppress is not None and bounce.suppress.reason == "hard_bounce"
    unknown = decide(Result(Outcome.UNKNOWN))
    assert isinstance(unknown, Record) and unknown.outcome.state == ledger.UNKNOWN
    assert unknown.outcome.last_error == "unknown"  # no detail: the outcome says it


def test_transient_answers_retry_with_growing_backoff_then_give_up() -> None:
    first = decide(TEMP, tries=1)
    second = decide(TEMP, tries=2)
    assert isinstance(first, RetryAfter) and isinstance(second, RetryAfter)
    assert 0.5 <= first.delay <= 1.5 and 1.0 <= second.delay <= 3.0 and not first.down
    throttled = decide(Result(Outcome.THROTTLED, retry_after=30.0))
    assert isinstance(throttled, RetryAfter) and throttled.delay == 30.0  # Retry-After wins
    assert isinstance(decide(DOWN), RetryAfter) and decide(DOWN).down  # type: ignore[union-attr]
    deferred = decide(TEMP, tries=3)  # retries used up: a later run tries again
    assert isinstance(deferred, Record) and deferred.outcome.state == ledger.DEFERRED
    assert deferred.outcome.next_attempt_at is not None and deferred.outcome.extra_attempts == 2
    stopping = decide(TEMP, tries=1, stopping=True)  # no retries once the run stops
    assert isinstance(stopping, Record) and stopping.outcome.state == ledger.DEFERRED


def test_deferral_waits_a_minute_and_expires() -> None:
    fresh = give_up(ROW, 3, TEMP, "p1", POLICY, all_down=False, stopping=False, at=1000.0)
    assert fresh.outcome.next_attempt_at is not None
    assert fresh.outcome.next_attempt_at >= 1000.0 + DEFER_AT_LEAST
    old = ROW._replace(first_attempt_at=1000.0)
    late = give_up(old, 3, TEMP, "p1", POLICY, all_down=False, stopping=False, at=1000.0 + 3600)
    assert (
        late.outcome.state == ledger.FAILED and late.outcome.last_error == "expired: 451 try later"
    )


def test_provider_down_leaves_the_row_pending_and_halts_once() -> None:
    halted = decide(DOWN, everyone_down=True)  # the router says nobody takes messages
    assert isinstance(halted, Record) and halted.halt == ALL_DOWN
    assert halted.outcome == ledger.Outcome(7, ledger.PENDING, last_error="connection refused")
    known = decide(DOWN, everyone_down=True, all_down=True, stopping=True)  # said once
    assert isinstance(known, Record) and known.halt is None
    last_try = decide(DOWN, tries=3)  # retries used up on a down provider
    assert isinstance(last_try, Record) and last_try.outcome.state == ledger.PENDING
    assert last_try.halt == "no provider takes messages: connection refused"
    assert decide(DOWN, tries=3, stopping=True).halt is None  # type: ignore[union-attr]


def test_every_reason_has_the_exit_code_it_always_had() -> None:
    assert set(RUN_EXIT_CODES) == set(REASONS)
    assert for_reason("complete") is ExitCode.OK
    assert for_reason("failures") is ExitCode.PERMANENT_FAILURES
    assert {for_reason(r) for r in ("stopped", "limit", "quota", "deferred")} == {
        ExitCode.RESUMABLE
    }
    assert for_reason("all_down") is ExitCode.ALL_PROVIDERS_DOWN
    assert for_reason("paused") is ExitCode.PAUSED
    assert for_reason("interrupted") is ExitCode.INTERRUPTED
    line = with_exit_code({"event": "summary", "campaign": "c", "reason": "limit"})
    assert list(line) == ["event", "campaign", "exit_code", "reason"] and line["exit_code"] == 3


def test_library_errors_leave_command_line_options_to_the_cli() -> None:
    changed = ContentChangedError("campaign 'c': the message changed.")
    paused = CampaignPausedError("campaign 'c' is paused: hard bounces reached 9%.")
    assert "--allow-changed" in explain(changed) and "--unpause" in explain(paused)
    assert "--" not in str(changed) + str(paused)


def test_a_library_run_leaves_the_process_gc_alone(tmp_path: Path) -> None:
    """A server process running a send must not have its whole heap frozen (gcpace)."""
    campaign = make_campaign(tmp_path)
    seen: list[tuple[tuple[int, int, int], int]] = []

    def hook(message: object) -> None:
        if not seen:
            seen.append((gc.get_threshold(), gc.get_freeze_count()))

    before = (gc.get_threshold(), gc.get_freeze_count())
    with Store(tmp_path / "s.db") as store:
        run = CampaignRun(
            campaign,
            store,
            router=ScriptedRouter(hook=hook),
            renderer=FakeRenderer(),
            contacts=contacts(20),
        )
        summary = asyncio.run(run.run())
        row = campaigns.ensure(store, "news")
        last = campaigns.last_run(store, row.id)
    assert summary.reason == "complete" and seen == [before]
    # without the CLI's mapping the runs row keeps the reason, and no made-up exit code
    assert last is not None and last.summary is not None and last.summary["reason"] == "complete"
