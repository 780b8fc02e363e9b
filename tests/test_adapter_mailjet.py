"""Mailjet v3.1 adapter against the local Mailjet fake (batch of 50, per-message status)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from provider_fakes import MailjetFake, config_for, sample_message, sample_messages

from stampcli.config import TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.render.message import Attachment


@pytest.fixture
def fake() -> Iterator[MailjetFake]:
    with MailjetFake() as server:
        yield server


async def test_batches_of_50_with_fields(fake: MailjetFake) -> None:
    async with create_adapter(config_for(fake), TrackingConfig(clicks=False)) as adapter:
        assert adapter.batch_size == 50
        results = await adapter.send(sample_messages(120))
    assert fake.calls == 3
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    entry = fake.accepted["user5@example.com"][0].fields
    assert results[5].message_id == fake.accepted["user5@example.com"][0].message_id
    assert entry["CustomCampaign"] == "november-news"
    assert json.loads(entry["EventPayload"])["recipient"] == "user5@example.com"
    assert entry["TrackClicks"] == "disabled" and entry["TrackOpens"] == "account_default"
    assert entry["Headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_inline_and_attached_files(fake: MailjetFake) -> None:
    logo = Attachment("logo.png", "image/png", b"png", content_id="logo")
    pdf = Attachment("a.pdf", "application/pdf", b"pdf")
    async with create_adapter(config_for(fake)) as adapter:
        await adapter.send([sample_message(attachments=(logo, pdf))])
    entry = fake.accepted["ann@example.com"][0].fields
    assert entry["InlinedAttachments"][0]["ContentID"] == "logo"
    assert entry["Attachments"][0]["Filename"] == "a.pdf"


async def test_partly_bad_batch_keeps_the_good_ones(fake: MailjetFake) -> None:
    fake.reject("user1@example.com", "invalid")
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(3))
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.RECIPIENT_REJECTED,
        Outcome.ACCEPTED,
    ]
    assert results[1].suppress == "invalid" and "mj-0013" in results[1].detail
    assert fake.accepted_count == 2


async def test_global_error_and_auth(fake: MailjetFake) -> None:
    fake.fail("reply", status=400, body={"ErrorMessage": "bad payload", "StatusCode": 400})
    async with create_adapter(config_for(fake)) as adapter:
        results = await adapter.send(sample_messages(2))
        assert {r.outcome for r in results} == {Outcome.PROVIDER_REFUSED}
        assert (await adapter.check()).ok
    async with create_adapter(config_for(fake, url="mailjet://a:b")) as adapter:
        [result] = await adapter.send([sample_message()])
        assert not (await adapter.check()).ok
    assert result.outcome is Outcome.PROVIDER_REFUSED


async def test_named_reply_to_maps_to_email_and_name(fake: MailjetFake) -> None:
    message = dataclasses.replace(sample_message(), reply_to="ACME Support <help@acme.example>")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED, result
    entry = fake.accepted["ann@example.com"][0].fields
    assert entry["ReplyTo"] == {"Email": "help@acme.example", "Name": "ACME Support"}
