"""SparkPost adapter against the local SparkPost fake (raw MIME transmissions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from provider_fakes import SparkPostFake, config_for, sample_message

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome


@pytest.fixture
def fake() -> Iterator[SparkPostFake]:
    with SparkPostFake() as server:
        yield server


async def test_transmission_carries_raw_and_metadata(fake: SparkPostFake) -> None:
    message = sample_message(campaign="c" * 80)
    async with create_adapter(config_for(fake), TrackingConfig(opens=False)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED
    [got] = fake.accepted["ann@example.com"]
    assert got.raw == message.raw and got.message_id == result.message_id
    assert got.fields["metadata"] == message.tags
    assert got.fields["campaign_id"] == "c" * 64
    assert got.fields["options"] == {"open_tracking": False}
    assert got.request_headers["authorization"] == fake.key


@pytest.mark.parametrize(("reason", "suppress"), [("invalid", "invalid"), ("bounced", None)])
async def test_recipient_rejections(fake: SparkPostFake, reason: str, suppress: str | None) -> None:
    fake.reject("ann@example.com", reason)
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.RECIPIENT_REJECTED and result.suppress == suppress


async def test_check_and_bad_key(fake: SparkPostFake) -> None:
    async with create_adapter(config_for(fake)) as adapter:
        report = await adapter.check()
    assert report.ok and "Fake Co" in report.detail
    async with create_adapter(config_for(fake, url="sparkpost://nope")) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED


def test_eu_region() -> None:
    adapter = create_adapter(ProviderConfig(url="sparkpost://k?region=eu"))
    assert adapter.endpoint == "https://api.eu.sparkpost.com"  # type: ignore[attr-defined]
