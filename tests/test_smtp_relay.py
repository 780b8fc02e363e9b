"""``stamp serve --smtp-relay``: aiosmtplib as the client, against the relay on the real
app under uvicorn (127.0.0.1) with a trustme certificate and the Postmark fake behind it."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
import trustme
from api_helpers import auth, build_api, write_config
from provider_fakes import PostmarkFake
from serve_helpers import running

from stampcli.sendapi.keys import new_key
from stampcli.server.smtp_relay import RelayConfig
from stampcli.store import open_store


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, str, str, PostmarkFake, ssl.SSLContext]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    key = new_key()
    with PostmarkFake() as fake:
        provider = {"url": fake.provider_url(), "endpoint": fake.url}
        built = build_api(tmp_path, write_config(tmp_path, [provider], key=key))
        assert built.api is not None
        built.api.relay = RelayConfig("127.0.0.1", 0, server_ctx)
        with running(built) as url:
            assert built.api.relay_port
            yield built.api.relay_port, key, url, fake, client_ctx


def mail(sender: str = "Shop <shop@acme.example>", to: str = "ann@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Your order"
    msg.set_content("Thanks for your order.")
    msg.add_alternative("<p>Thanks for your <b>order</b>.</p>", subtype="html")
    return msg


async def submit(port: int, ctx: ssl.SSLContext, msg: EmailMessage, **kw: Any) -> Any:
    return await aiosmtplib.send(
        msg, hostname="127.0.0.1", port=port, start_tls=True, tls_context=ctx, timeout=10, **kw
    )


def test_auth_ok_queues_and_sends(relay: Any) -> None:
    port, key, url, fake, ctx = relay
    errors, reply = asyncio.run(
        submit(
            port,
            ctx,
            mail(),
            username="app",
            password=key,
            recipients=["ann@example.com", "hidden@example.com"],
        )
    )
    assert not errors and reply.startswith("2.0.0 queued as msg_")
    mid = reply.rsplit(" ", 1)[1]
    end = time.monotonic() + 10
    while time.monotonic() < end:
        got = httpx.get(f"{url}/v1/messages/{mid}", headers=auth(key)).json()
        if got["state"] == "sent":
            break
        time.sleep(0.05)
    assert got["state"] == "sent"
    (ann,) = fake.accepted["ann@example.com"]
    assert ann.fields["Subject"] == "Your order"
    assert "order" in ann.fields["HtmlBody"]
    assert fake.accepted["hidden@example.com"]  # an envelope-only recipient is a Bcc


def test_wrong_password_is_535(relay: Any) -> None:
    port, key, _, fake, ctx = relay
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as err:
        asyncio.run(submit(port, ctx, mail(), username="app", password="stamp_wrong"))
    assert err.value.code == 535
    # another pool's name with this key: refused as well
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        asyncio.run(submit(port, ctx, mail(), username="other", password=key))
    assert not fake.accepted


def test_no_tls_no_auth(relay: Any) -> None:
    port, _, _, fake, ctx = relay

    async def plain() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
        await client.connect()
        try:
            assert "auth" not in client.esmtp_extensions  # AUTH is offered only inside TLS
            code, _ = await client.execute_command(b"AUTH", b"PLAIN", b"AGFwcABrZXk=")
            assert code == 530
            code, _ = await client.execute_command(b"MAIL", b"FROM:<shop@acme.example>")
            assert code == 530
        finally:
            client.close()

    asyncio.run(plain())

    async def tls_without_auth() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=True, tls_context=ctx, timeout=10
        )
        await client.connect()
        try:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as err:
                await client.mail("shop@acme.example")
            assert err.value.code == 530
        finally:
            client.close()

    asyncio.run(tls_without_auth())
    assert not fake.accepted


def test_foreign_from_is_refused(relay: Any) -> None:
    port, key, _, fake, ctx = relay
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as err:
        asyncio.run(
            submit(
                port,
                ctx,
                mail(sender="x@evil.example"),
                username="app",
                password=key,
                sender="x@evil.example",
            )
        )
    assert err.value.code == 553
    # envelope allowed, From header foreign: refused at the end of DATA
    with pytest.raises(aiosmtplib.SMTPDataError) as data_err:
        asyncio.run(
            submit(
                port,
                ctx,
                mail(sender="x@evil.example"),
                username="app",
                password=key,
                sender="shop@acme.example",
            )
        )
    assert data_err.value.code == 550
    assert not fake.accepted


def test_suppressed_recipient_is_550(relay: Any, tmp_path: Path) -> None:
    port, key, _, fake, ctx = relay
    with open_store(str(tmp_path / "stamp.db")) as store:
        store.suppressions.add("gone@example.com", "complaint", "test")
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        asyncio.run(submit(port, ctx, mail(to="gone@example.com"), username="app", password=key))
    assert err.value.code == 550 and "gone@example.com (complaint)" in err.value.message
    assert not fake.accepted
