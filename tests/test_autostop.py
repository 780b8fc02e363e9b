"""AutoStop thresholds, and the unsubscribe requirement for bulk campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stampcli.compliance.autostop import AutoStop
from stampcli.compliance.policy import require_unsubscribe
from stampcli.config import AutoStopConfig, Campaign
from stampcli.errors import ConfigError
from stampcli.providers.base import Outcome, Result

OK = Result(Outcome.ACCEPTED, message_id="m")
BOUNCE = Result(Outcome.RECIPIENT_REJECTED, detail="550 5.1.1 no such user", suppress="hard_bounce")
INVALID = Result(Outcome.RECIPIENT_REJECTED, detail="300 invalid", suppress="invalid")
COMPLAINT = Result(Outcome.RECIPIENT_REJECTED, detail="406 inactive", suppress="complaint")
REJECT_NO_REASON = Result(Outcome.RECIPIENT_REJECTED, detail="552 mailbox full")
DOWN = Result(Outcome.PROVIDER_DOWN, detail="503")
THROTTLED = Result(Outcome.THROTTLED, retry_after=1.0)


def feed(stop: AutoStop, results: list[Result]) -> list[str]:
    return [r for r in (stop.observe(x) for x in results) if r is not None]


def test_defaults_stop_before_the_03_percent_complaint_line() -> None:
    cfg = AutoStopConfig()
    assert cfg.enabled and cfg.complaint_rate < 0.003
    stop = AutoStop(cfg)
    # 1 complaint in 400 answers is 0.25%: under Gmail's hard line but over ours.
    reasons = feed(stop, [COMPLAINT] + [OK] * 399)
    assert len(reasons) == 1
    assert "spam complaints" in reasons[0] and "1 of 200" in reasons[0]


def test_nothing_before_min_answers_then_exactly_once() -> None:
    stop = AutoStop(AutoStopConfig(hard_bounce_rate=0.1, min_answers=50))
    assert feed(stop, [BOUNCE] * 49) == []
    reason = stop.observe(INVALID)
    assert reason is not None and "hard bounces" in reason and "50 of 50" in reason
    assert feed(stop, [BOUNCE] * 100) == []
    assert stop.reason == reason
    assert stop.stats.hard_bounces == 150


def test_share_under_threshold_never_stops() -> None:
    stop = AutoStop(AutoStopConfig(hard_bounce_rate=0.05, complaint_rate=0.01, min_answers=100))
    reasons = feed(stop, ([OK] * 20 + [BOUNCE]) * 50)  # 1 in 21: 4.76%
    assert reasons == []
    assert stop.stats.hard_bounce_share < 0.05


def test_exactly_at_threshold_stops() -> None:
    stop = AutoStop(AutoStopConfig(hard_bounce_rate=0.05, min_answers=100))
    reasons = feed(stop, ([OK] * 19 + [BOUNCE]) * 5)
    assert len(reasons) == 1 and "5.00%" in reasons[0]


def test_only_answers_count() -> None:
    stop = AutoStop(AutoStopConfig(hard_bounce_rate=0.5, min_answers=4))
    assert feed(stop, [DOWN, THROTTLED, Result(Outcome.UNKNOWN)] * 10) == []
    assert stop.answers == 0
    assert feed(stop, [REJECT_NO_REASON, OK, OK, OK]) == []
    assert stop.stats.hard_bounces == 0 and stop.answers == 4


def test_disabled_counts_but_never_stops() -> None:
    stop = AutoStop(AutoStopConfig(enabled=False, min_answers=1))
    assert feed(stop, [COMPLAINT] * 10) == []
    assert stop.complaints == 10


def _campaign(**extra: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "news",
        "from": "News <news@acme.example>",
        "subject": "Hi",
        "template": "t.html",
        "audience": {"file": "l.csv"},
        "providers": [{"url": "outbox://out"}],
        "path": Path("/camp/campaign.yml"),
    }
    data.update(extra)
    return Campaign.model_validate(data)


def test_bulk_without_unsubscribe_is_refused_naming_file_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        require_unsubscribe(_campaign(), env={})
    assert "/camp/campaign.yml" in str(err.value) and "unsubscribe.url" in str(err.value)
    with pytest.raises(ConfigError, match=r"unsubscribe\.url"):
        require_unsubscribe(_campaign(unsubscribe={"mailto": "u@acme.example"}), env={})


def test_transactional_needs_no_unsubscribe() -> None:
    require_unsubscribe(_campaign(transactional=True), env={})


def test_fixed_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="same for every recipient"):
        require_unsubscribe(_campaign(unsubscribe={"url": "https://acme.example/u"}), env={})


def test_token_url_needs_the_secret() -> None:
    camp = _campaign(unsubscribe={"url": "https://a.example/u?t={{ unsubscribe_token }}"})
    with pytest.raises(ConfigError, match="STAMP_UNSUBSCRIBE_SECRET is not set"):
        require_unsubscribe(camp, env={})
    with pytest.raises(ConfigError, match="shorter"):
        require_unsubscribe(camp, env={"STAMP_UNSUBSCRIBE_SECRET": "short"})
    require_unsubscribe(camp, env={"STAMP_UNSUBSCRIBE_SECRET": "s" * 32})
