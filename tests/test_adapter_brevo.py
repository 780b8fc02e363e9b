"""Brevo adapter against the local Brevo fake (fields, api-key header)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from provider_fakes import BrevoFake, config_for, sample_message

from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.render.message import Attachment


@pytest.fixture
def fake() -> Iterator[BrevoFake]:
    with BrevoFake() as server:
        yield server


async def test_maps_fields(fake: BrevoFake) -> None:
    pdf = Attachment("a.pdf", "application/pdf", b"pdf")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message(attachments=(pdf,))])
    assert result.outcome is Outcome.ACCEPTED
    [got] = fake.accepted["ann@example.com"]
    body = got.fields
    assert result.message_id == got.message_id
    assert body["sender"] == {"email": "news@acme.example", "name": "ACME News"}
    assert body["tags"] == ["november-news"]
    assert json.loads(body["headers"]["X-Mailin-custom"])["recipient"] == "ann@example.com"
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["replyTo"] == {"email": "help@acme.example"}
    assert body["attachment"][0]["name"] == "a.pdf"


async def test_errors(fake: BrevoFake) -> None:
    fake.reject("ann@example.com", "invalid")
    fake.fail("throttle", retry_after="9")
    async with create_adapter(config_for(fake)) as adapter:
        [throttled] = await adapter.send([sample_message()])
        [invalid] = await adapter.send([sample_message()])
        assert (await adapter.check()).ok
    assert throttled.outcome is Outcome.THROTTLED and throttled.retry_after == 9
    assert invalid.outcome is Outcome.RECIPIENT_REJECTED and invalid.suppress == "invalid"
    fake.fail("reply", status=402, body={"code": "not_enough_credits", "message": "no credits"})
    async with create_adapter(config_for(fake)) as adapter:
        [refused] = await adapter.send([sample_message("bob@example.com")])
    assert refused.outcome is Outcome.PROVIDER_REFUSED


async def test_named_reply_to_maps_to_email_and_name(fake: BrevoFake) -> None:
    message = dataclasses.replace(sample_message(), reply_to="ACME Support <help@acme.example>")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED, result
    body = fake.accepted["ann@example.com"][0].fields
    assert body["replyTo"] == {"email": "help@acme.example", "name": "ACME Support"}
