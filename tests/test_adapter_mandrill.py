"""Mandrill adapter against the local Mandrill fake (send-raw, key in the body)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from provider_fakes import MandrillFake, config_for, sample_message

from stampcli.config import TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome


@pytest.fixture
def fake() -> Iterator[MandrillFake]:
    with MandrillFake() as server:
        yield server


async def test_raw_with_control_headers(fake: MandrillFake) -> None:
    message = sample_message()
    tracking = TrackingConfig(opens=True, clicks=False)
    async with create_adapter(config_for(fake), tracking) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED
    [got] = fake.accepted["ann@example.com"]
    assert got.message_id == result.message_id
    assert got.raw is not None and got.raw.endswith(message.raw)
    head = got.raw[: -len(message.raw)].decode()
    assert "X-MC-Tags: november-news\r\n" in head
    assert "X-MC-Track: opens\r\n" in head
    meta = next(line for line in head.split("\r\n") if line.startswith("X-MC-Metadata"))
    assert json.loads(meta.split(":", 1)[1]) == message.tags


@pytest.mark.parametrize(
    ("reason", "outcome", "suppress"),
    [
        ("invalid", Outcome.RECIPIENT_REJECTED, "invalid"),
        ("bounced", Outcome.RECIPIENT_REJECTED, "hard_bounce"),
        ("unsubscribed", Outcome.RECIPIENT_REJECTED, "unsubscribed"),
        ("complaint", Outcome.RECIPIENT_REJECTED, "complaint"),
    ],
)
async def test_statuses(
    fake: MandrillFake, reason: str, outcome: Outcome, suppress: str | None
) -> None:
    fake.reject("ann@example.com", reason)
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert (result.outcome, result.suppress) == (outcome, suppress)


async def test_account_errors(fake: MandrillFake) -> None:
    fake.fail(
        "reply",
        status=500,
        body={"status": "error", "code": -1, "name": "GeneralError", "message": "oops"},
    )
    async with create_adapter(config_for(fake)) as adapter:
        [down] = await adapter.send([sample_message()])
        assert (await adapter.check()).ok
    async with create_adapter(config_for(fake, url="mandrill://wrong")) as adapter:
        [refused] = await adapter.send([sample_message()])
        report = await adapter.check()
    assert down.outcome is Outcome.PROVIDER_DOWN
    assert refused.outcome is Outcome.PROVIDER_REFUSED and "Invalid_Key" in refused.detail
    assert not report.ok and "Invalid_Key" in report.detail


async def test_unsigned_sender_refuses(fake: MandrillFake) -> None:
    body = [{"email": "ann@example.com", "status": "rejected", "reject_reason": "unsigned"}]
    fake.fail("reply", status=200, body=body)
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED
