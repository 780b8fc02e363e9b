"""SES v2 adapter against the local SES fake, which verifies the SigV4 signature itself."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from provider_fakes import SESFake, config_for, sample_message

from stampcli import redact
from stampcli.config import parse_provider_url
from stampcli.providers import create_adapter
from stampcli.providers.aws import find_credentials
from stampcli.providers.base import Outcome
from stampcli.providers.http import untag_value


@pytest.fixture
def fake() -> Iterator[SESFake]:
    with SESFake() as server:
        yield server


async def test_sends_raw_signed(fake: SESFake) -> None:
    message = sample_message()
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([message])
    assert result.outcome is Outcome.ACCEPTED, result
    [got] = fake.accepted["ann@example.com"]
    assert got.raw == message.raw
    assert result.message_id == got.message_id
    tags = {t["Name"]: untag_value(t["Value"]) for t in got.fields["EmailTags"]}
    assert tags == message.tags
    assert got.fields["Content"]["Raw"]["Data"] == base64.b64encode(message.raw).decode()


async def test_credentials_from_the_environment(
    fake: SESFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_key)
    async with create_adapter(config_for(fake, url=f"ses://{fake.region}")) as adapter:
        [result] = await adapter.send([sample_message()])
        report = await adapter.check()
    assert result.outcome is Outcome.ACCEPTED
    assert report.ok and "environment" in report.detail and "production" in report.detail


def test_credentials_file_and_profile(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n"
        "[mail]\naws_access_key_id = AKMAIL\naws_secret_access_key = s2-secret\n"
        "aws_session_token = tok\n"
    )
    url = parse_provider_url("ses://eu-west-1")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    found = find_credentials(url, env)
    assert found is not None and found.access_key == "AKDEFAULT"
    found = find_credentials(url, {**env, "AWS_PROFILE": "mail"})
    assert found is not None and (found.access_key, found.session_token) == ("AKMAIL", "tok")
    assert "s2-secret" not in repr(found)
    assert redact.redact("secret s2-secret here") == "secret *** here"
    assert find_credentials(url, {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}) is None


async def test_session_token_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    with SESFake(session_token="sess-tok-123") as fake:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_key)
        monkeypatch.setenv("AWS_SESSION_TOKEN", "sess-tok-123")
        async with create_adapter(config_for(fake, url=f"ses://{fake.region}")) as adapter:
            [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.ACCEPTED, result


async def test_no_credentials_refuses(fake: SESFake, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    async with create_adapter(config_for(fake, url="ses://eu-west-1")) as adapter:
        [result] = await adapter.send([sample_message()])
        report = await adapter.check()
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert "no AWS credentials" in result.detail
    assert not report.ok and "no AWS credentials" in report.detail


async def test_wrong_secret_or_region_fails_the_signature(fake: SESFake) -> None:
    url = f"ses://{fake.access_key}:wrong-secret@{fake.region}"
    async with create_adapter(config_for(fake, url=url)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert "SignatureDoesNotMatch" in result.detail
    url = f"ses://{fake.access_key}:x@us-east-1"
    async with create_adapter(config_for(fake, url=url)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED


@pytest.mark.parametrize(
    ("kind", "status", "outcome"),
    [
        ("MessageRejected", 400, Outcome.RECIPIENT_REJECTED),
        ("AccountSuspendedException", 400, Outcome.PROVIDER_REFUSED),
        ("SendingPausedException", 400, Outcome.PROVIDER_REFUSED),
        ("MailFromDomainNotVerifiedException", 400, Outcome.PROVIDER_REFUSED),
        ("TooManyRequestsException", 429, Outcome.THROTTLED),
        ("LimitExceededException", 400, Outcome.THROTTLED),
        ("InternalFailure", 500, Outcome.PROVIDER_DOWN),
    ],
)
async def test_error_types(fake: SESFake, kind: str, status: int, outcome: Outcome) -> None:
    fake.fail(
        "reply",
        status=status,
        body={"message": "nope"},
        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/"},
    )
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is outcome
    assert kind.removesuffix("Exception") in result.detail


async def test_error_type_from_body(fake: SESFake) -> None:
    fake.fail("reply", status=400, body={"__type": "SendingPausedException", "message": "paused"})
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.PROVIDER_REFUSED


async def test_rejected_recipient(fake: SESFake) -> None:
    fake.reject("ann@example.com")
    async with create_adapter(config_for(fake)) as adapter:
        [result] = await adapter.send([sample_message()])
    assert result.outcome is Outcome.RECIPIENT_REJECTED


def test_region_picks_the_endpoint() -> None:
    from stampcli.config import ProviderConfig

    adapter = create_adapter(ProviderConfig(url="ses://AK:SK@eu-central-1"))
    assert adapter.endpoint == "https://email.eu-central-1.amazonaws.com"  # type: ignore[attr-defined]


async def test_unverified_sender_refuses_us_not_the_recipient(fake: SESFake) -> None:
    # SES says MessageRejected for an unverified From too; that is every message's problem.
    text = "Email address is not verified. The following identities failed the check in region "
    fake.fail(
        "reply",
        status=400,
        body={"message": text + "EU-WEST-1: news@acme.example"},
        headers={"x-amzn-ErrorType": "MessageRejected:http://internal.amazon.com/"},
    )
    fake.fail(
        "reply",
        status=400,
        body={"message": text + "EU-WEST-1: ann@example.com"},
        headers={"x-amzn-ErrorType": "MessageRejected:http://internal.amazon.com/"},
    )
    async with create_adapter(config_for(fake)) as adapter:
        [first] = await adapter.send([sample_message()])
        [second] = await adapter.send([sample_message()])
    assert first.outcome is Outcome.PROVIDER_REFUSED, first
    assert second.outcome is Outcome.RECIPIENT_REJECTED, second
