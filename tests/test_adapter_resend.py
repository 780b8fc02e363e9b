"""Resend adapter against the local Resend fake (batch of 100, idempotency keys)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from provider_fakes import ResendFake, config_for, sample_message, sample_messages

from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.providers.http import untag_value
from stampcli.providers.resend import ResendAdapter, idempotency_key
from stampcli.render.message import Attachment


@pytest.fixture
def fake() -> Iterator[ResendFake]:
    with ResendFake() as server:
        yield server


async def test_batches_of_100_with_tags(fake: ResendFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(250))
    assert fake.calls == 3
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    entry = fake.accepted["user3@example.com"][0].fields
    tags = {t["name"]: untag_value(t["value"]) for t in entry["tags"]}
    assert tags == {"campaign": "november-news", "recipient": "user3@example.com"}
    assert entry["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert fake.requests[0].header("idempotency-key").startswith("stamp-")


async def test_attachments_go_one_by_one(fake: ResendFake) -> None:
    logo = Attachment("logo.png", "image/png", b"png", content_id="logo")
    messages = [sample_message(f"u{i}@example.com", attachments=(logo,)) for i in range(3)]
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(messages)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert [r.path for r in fake.requests] == ["/emails"] * 3
    assert fake.accepted["u0@example.com"][0].fields["attachments"][0]["content_id"] == "logo"


async def test_permissive_batch_rejects_only_the_bad_entry(fake: ResendFake) -> None:
    fake.reject("user1@example.com", "invalid")
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(3))
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.RECIPIENT_REJECTED,
        Outcome.ACCEPTED,
    ]
    assert results[1].suppress == "invalid"
    assert results[2].message_id == fake.accepted["user2@example.com"][0].message_id


async def test_same_batch_twice_mails_once(fake: ResendFake) -> None:
    messages = sample_messages(5)
    async with create_adapter(config_for(fake)) as adapter:
        first = await adapter.send(messages)
        second = await adapter.send(messages)
    assert [r.message_id for r in first] == [r.message_id for r in second]
    assert fake.accepted_count == 5
    assert idempotency_key(messages) != idempotency_key(messages[:4])


async def test_rate_limit_throttles_and_daily_quota_refuses(fake: ResendFake) -> None:
    fake.fail("throttle", retry_after="4")
    fake.fail("reply", status=429, body=fake.quota_reply().body)
    async with create_adapter(config_for(fake)) as adapter:
        [throttled] = await adapter.send([sample_message()])
        [quota] = await adapter.send([sample_message()])
    assert throttled.outcome is Outcome.THROTTLED and throttled.retry_after == 4
    assert quota.outcome is Outcome.PROVIDER_REFUSED
    assert "daily_quota_exceeded" in quota.detail


async def test_check(fake: ResendFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        report = await adapter.check()
    assert report.ok and "x.example" in report.detail
    fake.fail(
        "reply",
        status=401,
        body={"statusCode": 401, "name": "restricted_api_key", "message": "sending only"},
    )
    async with create_adapter(config_for(fake)) as adapter:
        report = await adapter.check()
    assert report.ok and "sending-only" in report.detail
    async with create_adapter(config_for(fake, url="resend://re_wrong")) as adapter:
        assert not (await adapter.check()).ok


def test_not_claimed_idempotent_across_regrouping() -> None:
    # A retried UNKNOWN may land in another batch, with another key.
    assert ResendAdapter.idempotent is False
