"""HTML and text made as JSON by the renderer, and sent as they are by the JSON adapters."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from provider_fakes import FAKES, FakeServer, config_for, sample_message
from render_helpers import renderer

from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.providers.http import HTTPAdapter, encode_json
from stampcli.render.message import Message
from stampcli.render.skeleton_cache import is_plain

JSON_ADAPTERS = ["postmark", "sendgrid", "resend", "mailjet", "brevo"]

# what JSON must escape, and what it must not mangle
TRICKY_HTML = '<p class="a">Grüße \\ "quoted" \t tab\n€ 😀 </script> \u2028 \x01</p>'
TRICKY_TEXT = 'Grüße "quoted" \\ back\nslash\r\n\x1f 😀 \u2029'


def with_literals(message: Message) -> Message:
    return dataclasses.replace(
        message, html_json=orjson.dumps(message.html), text_json=orjson.dumps(message.text)
    )


@pytest.fixture(params=JSON_ADAPTERS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    server = FAKES[request.param]()
    with server:
        yield server


def body(adapter: HTTPAdapter, messages: list[Message]) -> object:
    call = encode_json(adapter.build_send(messages))
    assert call.content is not None
    return json.loads(call.content)


async def test_ready_literals_give_the_same_request(fake: FakeServer) -> None:
    plain = [
        dataclasses.replace(sample_message(f"u{i}@example.com"), html=TRICKY_HTML, text=TRICKY_TEXT)
        for i in range(3)
    ]
    async with create_adapter(config_for(fake)) as adapter:
        assert isinstance(adapter, HTTPAdapter)
        assert body(adapter, [with_literals(m) for m in plain]) == body(adapter, plain)
        results = await adapter.send([with_literals(m) for m in plain])
    # the fake checks the request's shape and fields
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3


async def test_the_literal_is_what_goes_out(fake: FakeServer) -> None:
    # a literal that says something else than .html shows it is sent as it is
    message = dataclasses.replace(
        sample_message(html="<p>from the field</p>"), html_json=b'"<p>from the literal</p>"'
    )
    async with create_adapter(config_for(fake)) as adapter:
        assert isinstance(adapter, HTTPAdapter)
        sent = json.dumps(body(adapter, [message]))
    assert "from the literal" in sent and "from the field" not in sent


@pytest.mark.parametrize(
    ("name", "cached"),
    [("Zoë-Ann", True), ('Zoë "Z" \\ <b>O\'Brien</b>', False)],  # plain, and not plain
)
def test_renderer_makes_literals_only_without_mime(tmp_path: Path, name: str, cached: bool) -> None:
    fields = {"first_name": name}
    with_mime = renderer(tmp_path / "a").render("z@example.com", "z@example.com", fields)
    fields_only = renderer(tmp_path / "b")
    fields_only.raw = False
    message = fields_only.render("z@example.com", "z@example.com", fields)
    assert with_mime.html_json is None and with_mime.text_json is None
    assert message.html == with_mime.html and message.text == with_mime.text
    assert message.text_json == orjson.dumps(message.text)
    # the HTML's literal comes from the per-template cache, which a value with markup skips
    assert (message.html_json is not None) is cached
    if message.html_json is not None:
        assert message.html_json == orjson.dumps(message.html)
    # derived fields: two messages with and without them are the same message
    assert dataclasses.replace(message, html_json=None, text_json=None) == message


def test_plain_values_need_no_json_escaping() -> None:
    # the cache puts a plain value's UTF-8 into the HTML's literal as it is
    for code in range(0x110000):
        char = chr(code)
        if is_plain(f"a{char}a"):
            assert orjson.dumps(char)[1:-1] == char.encode(), hex(code)


def test_a_message_from_a_worker_decodes_html_and_text_when_read(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    r.raw = False
    message = r.render("z@example.com", "z@example.com", {"first_name": "Zoë"})
    wire = pickle.loads(pickle.dumps(message.as_tuple()))
    assert message.html not in wire and message.text not in wire  # only the literals cross
    got = Message.from_tuple(wire)
    assert got.html_json == message.html_json and got.text_json == message.text_json
    assert got.html == message.html and got.text == message.text and got == message
    again = Message.from_tuple(wire)
    assert dataclasses.replace(again, subject="x").html == message.html
    assert copy.copy(Message.from_tuple(wire)).text == message.text
    with pytest.raises(AttributeError):
        _ = again.no_such_field  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.html = "changed"  # type: ignore[misc]


async def test_a_lone_surrogate_still_rejects_only_its_recipient(tmp_path: Path) -> None:
    # a text template: the HTML (CSS inlining) would refuse the value earlier
    r = renderer(
        tmp_path,
        template="<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>",
        files={"t.txt": "Hi {{ first_name }}\n"},
        text_template="t.txt",
    )
    r.raw = False
    bad = r.render("z@example.com", "z@example.com", {"first_name": "Z\ud800"})
    good = r.render("y@example.com", "y@example.com", {"first_name": "Y"})
    assert bad.text_json is None  # the HTML, without the value, has its literal
    server = FAKES["postmark"]()
    with server:
        async with create_adapter(config_for(server)) as adapter:
            [rejected] = await adapter.send([bad])
            [accepted] = await adapter.send([good])
    assert rejected.outcome is Outcome.RECIPIENT_REJECTED
    assert "cannot be encoded as JSON" in rejected.detail
    assert accepted.outcome is Outcome.ACCEPTED


async def test_a_text_message_goes_without_html(fake: FakeServer, tmp_path: Path) -> None:
    """A text template's message (html empty): the JSON APIs get the text only."""
    r = renderer(
        tmp_path,
        template="Hi {{ first_name }}\nUnsubscribe: {{ unsubscribe_url }}\n",
        template_name="t.txt",
    )
    r.raw = False
    message = r.render("ann@example.com", "ann@example.com", {"first_name": "Ann"})
    assert message.html == "" and message.html_json is None
    async with create_adapter(config_for(fake)) as adapter:
        assert isinstance(adapter, HTTPAdapter)
        sent = json.dumps(body(adapter, [message]))
        results = await adapter.send([message])
    assert "Hi Ann" in sent and "text/html" not in sent
    assert not any(k in sent for k in ('"HtmlBody"', '"htmlContent"', '"HTMLPart"', '"html"'))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED]
