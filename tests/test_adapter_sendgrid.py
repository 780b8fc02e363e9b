"""SendGrid adapter against the local SendGrid fake."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator

import pytest
from provider_fakes import SendGridFake, config_for, sample_message

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.providers.sendgrid import SendGridAdapter
from stampcli.render.message import Attachment


@pytest.fixture
def fake() -> Iterator[SendGridFake]:
    with SendGridFake() as server:
        yield server


async def test_maps_every_field(fake: SendGridFake) -> None:
    logo = Attachment("logo.png", "image/png", b"\x89PNG", content_id="logo")
    pdf = Attachment("terms.pdf", "application/pdf", b"%PDF")
    message = sample_message(attachments=(logo, pdf))
    tracking = TrackingConfig(opens=False, clicks=True)
    async with create_adapter(config_for(fake), tracking) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED
    [got] = fake.accepted["ann@example.com"]
    body = got.fields
    assert got.request_headers["authorization"] == f"Bearer {fake.key}"
    assert body["from"] == {"email": "news@acme.example", "name": "ACME News"}
    assert body["personalization"]["custom_args"] == message.tags
    assert body["categories"] == ["november-news"]
    assert body["content"][0] == {"type": "text/plain", "value": "Hello Ann"}
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["reply_to"] == {"email": "help@acme.example"}
    inline, attached = body["attachments"]
    assert inline["disposition"] == "inline" and inline["content_id"] == "logo"
    assert base64.b64decode(attached["content"]) == b"%PDF"
    assert "content_id" not in attached
    assert body["tracking_settings"] == {
        "click_tracking": {"enable": True, "enable_text": True},
        "open_tracking": {"enable": False},
    }


async def test_tracking_left_to_the_account_by_default(fake: SendGridFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        await adapter.send([sample_message()])
    assert "tracking_settings" not in fake.accepted["ann@example.com"][0].fields


async def test_invalid_recipient_is_rejected_and_suppressed(fake: SendGridFake) -> None:
    fake.reject("ann@example.com", "invalid")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.RECIPIENT_REJECTED
    assert result.suppress == "invalid"
    assert "valid address" in result.detail


async def test_wrong_key_is_refused(fake: SendGridFake) -> None:
    config = ProviderConfig(url="sendgrid://SG.wrong", endpoint=fake.url)
    async with create_adapter(config) as adapter:
        [result] = await adapter.send([sample_message()])
        report = await adapter.check()
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert not report.ok


async def test_check_lists_scopes(fake: SendGridFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        report = await adapter.check()
    assert report.ok, report
    assert "mail.send" in report.detail


def test_eu_region_selects_the_eu_host() -> None:
    adapter = create_adapter(ProviderConfig(url="sendgrid://SG.k?region=eu"))
    assert isinstance(adapter, SendGridAdapter)
    assert adapter.endpoint == "https://api.eu.sendgrid.com"
    assert create_adapter(ProviderConfig(url="sendgrid://SG.k")).endpoint == (  # type: ignore[attr-defined]
        "https://api.sendgrid.com"
    )


async def test_named_reply_to_and_quoted_from_name_map_to_objects(fake: SendGridFake) -> None:
    # The renderer gives reply_to in display form ("Name <addr>"); SendGrid wants an object.
    message = dataclasses.replace(
        sample_message(),
        from_header='"ACME, Inc." <news@acme.example>',
        reply_to="ACME Support <help@acme.example>",
    )
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED, result
    body = fake.accepted["ann@example.com"][0].fields
    assert body["reply_to"] == {"email": "help@acme.example", "name": "ACME Support"}
    assert body["from"] == {"email": "news@acme.example", "name": "ACME, Inc."}
