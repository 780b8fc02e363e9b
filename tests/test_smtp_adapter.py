"""The SMTP adapter against a real aiosmtpd server: TLS, AUTH, pooling, every classified answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from smtp_server import DROP, Pause, SMTPTestServer

from stampcli.config import ProviderConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Adapter, Outcome, Result
from stampcli.providers.smtp import SMTPAdapter, classify_reply, dot_stuff, queue_id
from stampcli.render.message import Message

PASSWORD = "s3cr3t-Pa55word"


def message(to: str, body: str = "hello") -> Message:
    raw = (
        f"From: news@acme.test\r\nTo: {to}\r\nSubject: hi\r\n"
        f"Message-ID: <{to}@acme.test>\r\n\r\n{body}\r\n"
    ).encode()
    return Message(
        campaign="c",
        key=to,
        recipient=to,
        sender="news@acme.test",
        message_id=f"<{to}@acme.test>",
        from_header="news@acme.test",
        to_header=to,
        subject="hi",
        html="<p>hi</p>",
        text="hi",
        raw=raw,
    )


def adapter(url: str, **config: object) -> SMTPAdapter:
    made = create_adapter(ProviderConfig.model_validate({"url": url, **config}))
    assert isinstance(made, SMTPAdapter)
    made.ehlo_name = "client.stamp.test"
    return made


async def send_one(a: Adapter, to: str, body: str = "hello") -> Result:
    [result] = await a.send([message(to, body)])
    assert PASSWORD not in result.detail
    return result


@pytest.fixture(params=[False, True], ids=["sequential", "pipelining"])
def plain(request: pytest.FixtureRequest) -> Iterator[SMTPTestServer]:
    with SMTPTestServer(pipelining=request.param) as server:
        yield server


@pytest.fixture
def secure() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="starttls", auth=("user", PASSWORD)) as server:
        yield server


# ----------------------------------------------------------------------------- happy paths


async def test_accepts_and_reuses_a_small_pool_of_connections(plain: SMTPTestServer) -> None:
    async with adapter(plain.url(), concurrency=4) as a:
        results = await asyncio.gather(*(a.send([message(f"r{i}@x.test")]) for i in range(40)))
    assert all(r.outcome is Outcome.ACCEPTED for [r] in results)
    assert results[0][0].message_id is not None
    assert results[0][0].message_id.startswith("T")
    assert plain.accepted == 40
    assert 1 <= plain.connections <= 4
    assert plain.commands["EHLO"] == plain.connections  # no EHLO per message
    got = plain.messages[0]
    assert got.mail_from == "news@acme.test"
    assert got.data.startswith(b"From: news@acme.test\r\n")


async def test_starttls_and_auth(secure: SMTPTestServer) -> None:
    async with adapter(secure.url(user="user", password=PASSWORD)) as a:
        result = await send_one(a, "jane@x.test")
    assert result.outcome is Outcome.ACCEPTED
    [got] = secure.messages
    assert got.tls and got.auth_user == "user"


async def test_smtps_implicit_tls() -> None:
    with SMTPTestServer(tls="implicit", auth=("user", PASSWORD)) as server:
        async with adapter(server.url("smtps", user="user", password=PASSWORD)) as a:
            assert (await send_one(a, "jane@x.test")).outcome is Outcome.ACCEPTED
            report = await a.check()
        assert server.messages[0].tls
    assert report.ok
    assert [s.name for s in report.steps] == ["connect", "EHLO", "AUTH", "NOOP", "QUIT"]


async def test_dot_stuffing_arrives_intact(plain: SMTPTestServer) -> None:
    body = ".leading dot\r\n..two dots\r\n.\r\nafter a lone dot"
    async with adapter(plain.url()) as a:
        assert (await send_one(a, "dots@x.test", body)).outcome is Outcome.ACCEPTED
    assert plain.messages[0].data.endswith(body.encode() + b"\r\n")


def test_dot_stuff_normalises_bare_line_ends() -> None:
    assert dot_stuff(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert dot_stuff(b".x") == b"..x\r\n.\r\n"
    # a bare LF before a dot must not become an early end of data
    assert dot_stuff(b"a\n.\nb\r\n") == b"a\r\n..\r\nb\r\n.\r\n"


# ----------------------------------------------------------------------------- session failures


async def test_wrong_password_is_refused_without_leaking_it(secure: SMTPTestServer) -> None:
    async with adapter(secure.url(user="user", password=PASSWORD + "x")) as a:
        result = await send_one(a, "jane@x.test")
        report = await a.check()
    assert result.outcome is Outcome.PROVIDER_REFUSED
    assert "535" in result.detail
    assert not report.ok
    assert report.steps[-1].name == "AUTH" and not report.steps[-1].ok
    assert PASSWORD not in repr(report)
    assert secure.accepted == 0


async def test_credentials_never_go_in_clear() -> None:
    with SMTPTestServer(auth=("user", PASSWORD), auth_require_tls=False) as server:
        async with adapter(server.url(user="user", password=PASSWORD)) as a:
            refused = await send_one(a, "jane@x.test")
        async with adapter(server.url(user="user", password=PASSWORD, tls="none")) as a:
            allowed = await send_one(a, "jane@x.test")
    assert refused.outcome is Outcome.PROVIDER_REFUSED
    assert "STARTTLS" in refused.detail
    assert allowed.outcome is Outcome.ACCEPTED


async def test_tls_require_refuses_a_server_without_starttls(plain: SMTPTestServer) -> None:
    async with adapter(plain.url(tls="require")) as a:
        assert (await send_one(a, "jane@x.test")).outcome is Outcome.PROVIDER_REFUSED


async def test_untrusted_certificate_is_down_unless_verify_false() -> None:
    with SMTPTestServer(tls="starttls") as server:
        url = server.url()
        untrusted = url.split("?")[0]  # without cafile=
        async with adapter(untrusted) as a:
            result = await send_one(a, "jane@x.test")
        async with adapter(untrusted + "?verify=false") as a:
            accepted = await send_one(a, "jane@x.test")
    assert result.outcome is Outcome.PROVIDER_DOWN
    assert "STARTTLS" in result.detail
    assert accepted.outcome is Outcome.ACCEPTED


async def test_connection_refused_is_provider_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with adapter(f"smtp://127.0.0.1:{port}") as a:
        result = await send_one(a, "jane@x.test")
        report = await a.check()
    assert result.outcome is Outcome.PROVIDER_DOWN
    assert not report.ok and report.steps[0].name == "connect"


@pytest.mark.parametrize(
    ("greeting", "outcome"),
    [("421 4.3.2 too busy", Outcome.PROVIDER_DOWN), ("554 5.7.1 no", Outcome.PROVIDER_REFUSED)],
)
async def test_greeting_refusals(plain: SMTPTestServer, greeting: str, outcome: Outcome) -> None:
    plain.on_greeting(greeting)
    async with adapter(plain.url()) as a:
        assert (await send_one(a, "jane@x.test")).outcome is outcome
        # the next connection is greeted normally
        assert (await send_one(a, "jane@x.test")).outcome is Outcome.ACCEPTED


async def test_unknown_option_is_refused_with_the_url() -> None:
    # checked when the URL is parsed (config.PROVIDER_OPTIONS), before any adapter exists
    with pytest.raises(ValueError, match="did you mean 'tls'"):
        adapter("smtp://127.0.0.1:2525?tsl=none")
    with pytest.raises(ValueError, match="tls='maybe' is not one of starttls, require, none"):
        adapter("smtp://127.0.0.1:2525?tls=maybe")


# ------------------------------------------------------------------------ per-recipient answers


@pytest.mark.parametrize(
    ("reply", "outcome", "suppress"),
    [
        ("550 5.1.1 <x>: Recipient address rejected: User unknown", Outcome.RECIPIENT_REJECTED,
         "hard_bounce"),
        ("550 no such user here", Outcome.RECIPIENT_REJECTED, "hard_bounce"),
        ("553 5.1.3 malformed address", Outcome.RECIPIENT_REJECTED, "invalid"),
        ("550 5.7.1 message refused by policy", Outcome.RECIPIENT_REJECTED, None),
        ("451 4.7.1 greylisted, try later", Outcome.RECIPIENT_DEFERRED, None),
        ("452 4.2.2 mailbox full", Outcome.RECIPIENT_DEFERRED, None),
        ("454 4.7.0 Throttling failure: Maximum sending rate exceeded", Outcome.THROTTLED, None),
        ("550 5.7.1 Relay access denied", Outcome.PROVIDER_REFUSED, None),
    ],
)  # fmt: skip
async def test_rcpt_replies(
    plain: SMTPTestServer, reply: str, outcome: Outcome, suppress: str | None
) -> None:
    plain.on_rcpt("who@x.test", reply)
    async with adapter(plain.url(), concurrency=1) as a:
        result = await send_one(a, "who@x.test")
        after = await send_one(a, "fine@x.test")
    assert (result.outcome, result.suppress) == (outcome, suppress)
    assert reply.split()[0] in result.detail
    # the envelope was reset and the same connection carried the next message
    assert after.outcome is Outcome.ACCEPTED
    assert plain.connections == 1
    assert plain.count("who@x.test") == 0


async def test_421_on_a_reused_connection_reconnects_once(plain: SMTPTestServer) -> None:
    async with adapter(plain.url(), concurrency=1) as a:
        assert (await send_one(a, "first@x.test")).outcome is Outcome.ACCEPTED
        plain.on_rcpt("next@x.test", "421 4.7.0 too many messages on this connection", times=1)
        retried = await send_one(a, "next@x.test")
        plain.on_rcpt("busy@x.test", "421 4.7.0 try again later", times=2)
        throttled = await send_one(a, "busy@x.test")
    assert retried.outcome is Outcome.ACCEPTED
    assert plain.count("next@x.test") == 1
    assert throttled.outcome is Outcome.THROTTLED
    assert plain.connections == 3


async def test_a_dead_pooled_connection_is_replaced(plain: SMTPTestServer) -> None:
    async with adapter(plain.url(), concurrency=1) as a:
        assert (await send_one(a, "first@x.test")).outcome is Outcome.ACCEPTED
        plain.on_mail(DROP, times=1)  # the pooled connection dies at MAIL FROM
        result = await send_one(a, "second@x.test")
    assert result.outcome is Outcome.ACCEPTED
    assert plain.count("second@x.test") == 1
    assert plain.connections == 2


async def test_dropped_on_a_fresh_connection_is_provider_down(plain: SMTPTestServer) -> None:
    plain.on_mail(DROP)
    async with adapter(plain.url()) as a:
        result = await send_one(a, "jane@x.test")
    assert result.outcome is Outcome.PROVIDER_DOWN


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("552 5.3.4 message too big", Outcome.RECIPIENT_REJECTED),
        ("553 5.7.1 sender address not owned by user", Outcome.PROVIDER_REFUSED),
        ("451 4.3.0 local error", Outcome.THROTTLED),
        ("554 5.7.0 Sending paused for this account", Outcome.PROVIDER_REFUSED),
    ],
)
async def test_mail_from_replies(plain: SMTPTestServer, reply: str, outcome: Outcome) -> None:
    plain.on_mail(reply, times=1)
    async with adapter(plain.url()) as a:
        assert (await send_one(a, "jane@x.test")).outcome is outcome


async def test_lost_after_the_data_is_unknown(plain: SMTPTestServer) -> None:
    plain.on_data("maybe@x.test", DROP)
    async with adapter(plain.url(), concurrency=1) as a:
        result = await send_one(a, "maybe@x.test")
        after = await send_one(a, "fine@x.test")
    assert result.outcome is Outcome.UNKNOWN
    assert "may have accepted" in result.detail
    # never silently re-sent: the server saw exactly one copy
    assert sum(1 for m in plain.messages if "maybe@x.test" in m.rcpt_tos) == 1
    assert after.outcome is Outcome.ACCEPTED


async def test_read_timeout_after_the_data_is_unknown(plain: SMTPTestServer) -> None:
    plain.on_data("slow@x.test", Pause(1.0))
    async with adapter(plain.url(), timeout={"connect": 2, "read": 0.2}) as a:
        result = await send_one(a, "slow@x.test")
    assert result.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("reply", "outcome", "suppress"),
    [
        ("554 5.7.1 spam detected", Outcome.RECIPIENT_REJECTED, None),
        ("550 5.1.1 RecipNotFound", Outcome.RECIPIENT_REJECTED, "hard_bounce"),
        ("451 4.7.1 try again later", Outcome.RECIPIENT_DEFERRED, None),
    ],
)
async def test_replies_to_the_final_dot(
    plain: SMTPTestServer, reply: str, outcome: Outcome, suppress: str | None
) -> None:
    plain.on_data("who@x.test", reply)
    async with adapter(plain.url()) as a:
        result = await send_one(a, "who@x.test")
    assert (result.outcome, result.suppress) == (outcome, suppress)


async def test_check_walks_every_step(secure: SMTPTestServer) -> None:
    async with adapter(secure.url(user="user", password=PASSWORD)) as a:
        report = await a.check()
    assert report.ok, report
    names = [s.name for s in report.steps]
    assert names == ["connect", "EHLO", "STARTTLS", "AUTH", "NOOP", "QUIT"]
    assert secure.accepted == 0


# ----------------------------------------------------------------------------- pure functions


def test_classify_reply_table() -> None:
    assert classify_reply("auth", 454, "4.7.0 temporary failure").outcome is Outcome.PROVIDER_DOWN
    assert classify_reply("mail", 530, "5.7.0 auth required").outcome is Outcome.PROVIDER_REFUSED
    assert classify_reply("rcpt", 552, "mailbox full").outcome is Outcome.RECIPIENT_DEFERRED
    assert classify_reply("rcpt", 501, "bad address syntax").suppress == "invalid"
    assert classify_reply("rcpt", 551, "user not local").suppress == "hard_bounce"
    quota = classify_reply("dot", 454, "Throttling failure: Daily message quota exceeded.")
    assert quota.outcome is Outcome.PROVIDER_REFUSED
    # a full mailbox mentioning a quota stays on the recipient
    full = classify_reply("rcpt", 552, "5.2.2 mailbox quota exceeded")
    assert full.outcome is Outcome.RECIPIENT_DEFERRED


def test_queue_id_from_common_servers() -> None:
    assert queue_id("2.0.0 Ok: queued as 4XyZ12AbC") == "4XyZ12AbC"
    assert queue_id("OK id=1rAbCd-000123-AB") == "1rAbCd-000123-AB"
    assert queue_id("2.0.0 x8ABC123 Message accepted for delivery") == "x8ABC123"
    ses = "Ok 0100018c1a2b3c4d-5e6f7a8b-1111-2222-3333-444455556666-000000"
    assert queue_id(ses) == ses[3:]
    gmail = "2.0.0 OK  1700000000 a1b2c3si1234567abc.123 - gsmtp"
    assert queue_id(gmail) == "a1b2c3si1234567abc.123"
    assert queue_id("OK") is None
    assert queue_id("2.0.0 Message accepted") is None


async def test_replies_split_and_joined_across_packets() -> None:
    # pipelined replies may come several to a packet, or one reply over several
    from stampcli.transport.smtp_wire import Wire

    class Transport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.closed = False

        def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
            self.protocol = protocol

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

    wire = Wire(Transport())
    wire.data_received(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n25")
    wire.data_received(b"0-queued\r\n")
    assert [(await wire.read(1)).code for _ in range(3)] == [250, 250, 354]
    reading = asyncio.ensure_future(wire.read(1))
    await asyncio.sleep(0)
    assert not reading.done()  # the multi-line reply is not complete yet
    wire.data_received(b"250 as 4XyZ1\r\n")
    reply = await reading
    assert (reply.code, reply.message) == (250, "queued\nas 4XyZ1")
    assert wire.connected
    wire.data_received(b"oops\r\n")
    assert not wire.connected
    with pytest.raises(Exception, match="Malformed"):
        await wire.read(1)
