"""Mailgun adapter against the local Mailgun fake (raw MIME, multipart, Basic auth)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from provider_fakes import MailgunFake, config_for, sample_message

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome


@pytest.fixture
def fake() -> Iterator[MailgunFake]:
    with MailgunFake() as server:
        yield server


async def test_sends_raw_mime_with_variables(fake: MailgunFake) -> None:
    message = sample_message()
    tracking = TrackingConfig(opens=True, clicks=False)
    async with create_adapter(config_for(fake), tracking) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED
    [got] = fake.accepted["ann@example.com"]
    assert got.raw == message.raw
    assert result.message_id == got.message_id
    assert got.fields["o:tag"] == ["november-news"]
    assert got.fields["v:recipient"] == ["ann@example.com"]
    assert got.fields["o:tracking-opens"] == ["yes"]
    assert got.fields["o:tracking-clicks"] == ["no"]


async def test_invalid_address_rejected(fake: MailgunFake) -> None:
    fake.reject("ann@example.com")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.RECIPIENT_REJECTED and result.suppress == "invalid"


async def test_throttle_wait_from_prose(fake: MailgunFake) -> None:
    fake.fail("throttle", retry_after="12")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.THROTTLED and result.retry_after == 12


async def test_not_allowed_and_unknown_domain_refuse(fake: MailgunFake) -> None:
    fake.fail("reply", status=403, body={"message": "Domain mg.x.example is not allowed to send"})
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED
    async with create_adapter(config_for(fake, url=f"mailgun://{fake.key}@other.example")) as ad:
        [result] = await ad.send([sample_message()])
        report = await ad.check()
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert not report.ok and "other.example" in report.steps[0].name


async def test_check_and_wrong_key(fake: MailgunFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        report = await adapter.check()
    assert report.ok and "active" in report.detail
    async with create_adapter(config_for(fake, url=f"mailgun://nope@{fake.domain}")) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED


async def test_missing_domain_refuses_without_a_request(fake: MailgunFake) -> None:
    async with create_adapter(config_for(fake, url="mailgun://justakey")) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED and "KEY@DOMAIN" in result.detail
    assert fake.calls == 0


def test_eu_region() -> None:
    adapter = create_adapter(ProviderConfig(url="mailgun://k@mg.x.example?region=eu"))
    assert adapter.endpoint == "https://api.eu.mailgun.net"  # type: ignore[attr-defined]
