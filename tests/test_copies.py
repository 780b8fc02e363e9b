"""``cc:`` and ``bcc:``: templated copies, injection-checked, sent by SMTP and every provider."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_fakes import FAKES, FakeServer, config_for, sample_message
from render_helpers import renderer
from smtp_server import SMTPTestServer

from stampcli.config import ProviderConfig
from stampcli.errors import RecipientError
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.render.headers import HeaderInjection
from stampcli.render.message import Message

HTML = "<p>Hi {{ first_name }}, your invoice.</p>"


def _render(tmp_path: Path, fields: dict[str, str], **copies: Any) -> Message:
    r = renderer(tmp_path / "c", template=HTML, transactional=True, **copies)
    return r.render("ann@x.test", "ann@x.test", {"first_name": "Ann", **fields})


def test_cc_is_a_header_bcc_only_the_envelope(tmp_path: Path) -> None:
    m = _render(
        tmp_path,
        {"manager": "Bob Müller <bob@x.test>, carl@x.test"},
        cc="{{ manager }}",
        bcc=["Audit <audit@acme.example>", "{{ nobody | default('') }}"],
    )
    assert m.cc == ("Bob Müller <bob@x.test>", "carl@x.test")
    assert m.bcc == ("Audit <audit@acme.example>",)
    assert m.copies == ["bob@x.test", "carl@x.test", "audit@acme.example"]
    parsed = email.message_from_bytes(m.raw, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["bob@x.test", "carl@x.test"]
    assert parsed["Cc"].addresses[0].display_name == "Bob Müller"
    assert parsed["Bcc"] is None and b"audit@" not in m.raw


def test_an_empty_copy_is_none_and_bad_ones_fail_that_recipient(tmp_path: Path) -> None:
    assert _render(tmp_path, {"manager": ""}, cc="{{ manager }}").cc == ()
    with pytest.raises(HeaderInjection):
        _render(tmp_path, {"manager": "bob@x.test\r\nBcc: all@x.test"}, cc="{{ manager }}")
    with pytest.raises(RecipientError, match="cc: 'not an address'"):
        _render(tmp_path, {"manager": "not an address"}, cc="{{ manager }}")


def _with_copies() -> Message:
    m = sample_message()
    raw = m.raw.replace(b"To: ann@example.com\r\n", b"To: ann@example.com\r\nCc: bob@x.test\r\n")
    return dataclasses.replace(m, raw=raw, cc=("Bob <bob@x.test>",), bcc=("audit@acme.example",))


@pytest.mark.parametrize("pipelining", [True, False])
async def test_smtp_rcpts_every_copy_and_a_refused_copy_does_not_stop_it(
    pipelining: bool,
) -> None:
    with SMTPTestServer(pipelining=pipelining) as server:
        server.on_rcpt("audit@acme.example", "550 5.1.1 no such user")
        adapter = create_adapter(ProviderConfig.model_validate({"url": server.url("smtp")}))
        async with adapter:
            [result] = await adapter.send([_with_copies()])
        assert result.outcome is Outcome.ACCEPTED
        assert "audit@acme.example (550" in result.detail
        (got,) = server.messages
        assert got.rcpt_tos == ("ann@example.com", "bob@x.test")


async def test_smtp_recipient_refused_is_the_message_refused() -> None:
    with SMTPTestServer() as server:
        server.on_rcpt("ann@example.com", "550 5.1.1 no such user")
        adapter = create_adapter(ProviderConfig.model_validate({"url": server.url("smtp")}))
        async with adapter:
            [result] = await adapter.send([_with_copies()])
        assert result.outcome is Outcome.RECIPIENT_REJECTED
        assert not server.messages


def _copies_in(name: str, body: Any, raw: bytes | None) -> tuple[set[str], set[str]]:
    """(cc, bcc) addresses as the provider's request carries them."""
    if name == "sendgrid":
        p = body["personalizations"][0]
        return {c["email"] for c in p.get("cc", [])}, {c["email"] for c in p.get("bcc", [])}
    if name == "postmark":
        entry = body[0] if isinstance(body, list) else body
        return {entry["Cc"].split("<")[1].rstrip(">")}, {entry["Bcc"]}
    if name == "resend":
        entry = body[0] if isinstance(body, list) else body
        return {c.split("<")[-1].rstrip(">") for c in entry["cc"]}, set(entry["bcc"])
    if name == "mailjet":
        entry = body["Messages"][0]
        return {c["Email"] for c in entry["Cc"]}, {c["Email"] for c in entry["Bcc"]}
    if name == "brevo":
        return {c["email"] for c in body["cc"]}, {c["email"] for c in body["bcc"]}
    if name == "ses":
        d = body["Destination"]
        return set(d["CcAddresses"]), set(d["BccAddresses"])
    if name == "sparkpost":
        copies = {r["address"]["email"] for r in body["recipients"][1:]}
        assert all(r["address"]["header_to"] == "ann@example.com" for r in body["recipients"][1:])
        return copies & {"bob@x.test"}, copies & {"audit@acme.example"}
    if name == "mandrill":
        rest = set(body["to"][1:])
        return rest & {"bob@x.test"}, rest & {"audit@acme.example"}
    raise AssertionError(name)


@pytest.fixture(params=sorted(n for n in FAKES if n != "mailgun"))
def fake(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeServer]]:
    with FAKES[request.param]() as server:
        yield request.param, server


async def test_every_http_provider_gets_the_copies(fake: tuple[str, FakeServer]) -> None:
    name, server = fake
    async with create_adapter(config_for(server)) as adapter:
        [result] = await adapter.send([_with_copies()])
    assert result.outcome is Outcome.ACCEPTED, result.detail
    request = next(r for r in reversed(server.requests) if r.method == "POST")
    cc, bcc = _copies_in(name, request.json(), None)
    assert cc == {"bob@x.test"} and bcc == {"audit@acme.example"}


async def test_mailgun_gets_the_copies_as_envelope_recipients() -> None:
    with FAKES["mailgun"]() as server:
        async with create_adapter(config_for(server)) as adapter:
            [result] = await adapter.send([_with_copies()])
        assert result.outcome is Outcome.ACCEPTED, result.detail
        request = next(r for r in reversed(server.requests) if r.method == "POST")
        body = request.body
        for addr in (b"ann@example.com", b"bob@x.test", b"audit@acme.example"):
            assert b'name="to"\r\n\r\n' + addr in body
