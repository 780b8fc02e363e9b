"""Postmark adapter against the local Postmark fake (batch of up to 500)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from provider_fakes import PostmarkFake, config_for, sample_message, sample_messages

from stampcli.config import TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.render.message import Attachment


@pytest.fixture
def fake() -> Iterator[PostmarkFake]:
    with PostmarkFake() as server:
        yield server


async def test_batch_of_500_in_one_call(fake: PostmarkFake) -> None:
    messages = sample_messages(1000)
    async with create_adapter(config_for(fake)) as adapter:
        assert adapter.batch_size == 500
        results = await adapter.send(messages)
    assert fake.calls == 2
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert results[7].message_id == fake.accepted["user7@example.com"][0].message_id


async def test_entry_fields(fake: PostmarkFake) -> None:
    logo = Attachment("logo.png", "image/png", b"png", content_id="logo")
    tracking = TrackingConfig(opens=True, clicks=False)
    async with create_adapter(config_for(fake), tracking) as adapter:
        await adapter.send([sample_message(attachments=(logo,))])
    entry = fake.accepted["ann@example.com"][0].fields
    assert entry["From"] == "ACME News <news@acme.example>"
    assert entry["MessageStream"] == "broadcast"
    assert entry["Tag"] == "november-news"
    assert entry["Metadata"] == {"campaign": "november-news", "recipient": "ann@example.com"}
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in entry[
        "Headers"
    ]
    assert entry["Attachments"][0]["ContentID"] == "cid:logo"
    assert entry["TrackOpens"] is True and entry["TrackLinks"] == "None"


async def test_per_entry_errors(fake: PostmarkFake) -> None:
    fake.reject("user1@example.com", "invalid")
    fake.reject("user2@example.com", "inactive")
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(4))
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.RECIPIENT_REJECTED,
        Outcome.RECIPIENT_REJECTED,
        Outcome.ACCEPTED,
    ]
    assert results[1].suppress == "invalid"
    assert results[2].suppress == "hard_bounce"
    assert "406" in results[2].detail


@pytest.mark.parametrize("code", [405, 412, 413])
async def test_account_errors_refuse(fake: PostmarkFake, code: int) -> None:
    fake.fail("reply", status=422, body={"ErrorCode": code, "Message": "account problem"})
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(3))
    assert {r.outcome for r in results} == {Outcome.PROVIDER_REFUSED}


async def test_account_error_inside_a_batch_entry_refuses(fake: PostmarkFake) -> None:
    body = [{"ErrorCode": 412, "Message": "trial account may only send to its own domain"}]
    fake.fail("reply", status=200, body=body)
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED


async def test_short_batch_answer_is_unknown(fake: PostmarkFake) -> None:
    fake.fail("reply", status=200, body=[{"ErrorCode": 0, "MessageID": "x"}])
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(2))
    assert {r.outcome for r in results} == {Outcome.UNKNOWN}


async def test_wrong_token_and_check(fake: PostmarkFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        assert (await adapter.check()).ok
    async with create_adapter(config_for(fake, url="postmark://nope")) as adapter:
        [result] = await adapter.send([sample_message()])
        report = await adapter.check()
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert not report.ok and "Server token" in report.detail


async def test_validation_error_not_about_to_refuses_us(fake: PostmarkFake) -> None:
    # ErrorCode 300 about From is the same for every message: never the recipient's fault.
    message = dataclasses.replace(sample_message(), sender="", from_header="")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.PROVIDER_REFUSED, result
    assert "From" in result.detail
