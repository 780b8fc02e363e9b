"""MIME structure and encoding: parsed back with the stdlib, every message is clean."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from render_helpers import ENV, all_defects, example, parse, renderer

from stampcli.render import mime
from stampcli.render.renderer import Renderer

CONTACTS = [
    ("ada@example.com", {"first_name": "Ada", "plan": "pro"}),
    ("anna@xn--bcher-kva.example", {"first_name": "Zoé", "plan": ""}),
    ("ben@example.ie", {"first_name": "Ben O'Connor & Co", "plan": "team"}),
    ("long@example.com", {"first_name": "A" * 300, "plan": "x" * 1200}),
    ("emoji@example.com", {"first_name": "🎉 Ünïcödé 日本", "plan": "pro"}),
]


def _check_raw(raw: bytes) -> None:
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def _content_parts(msg: EmailMessage) -> dict[str, EmailMessage]:
    return {p.get_content_type(): p for p in msg.walk()}


@pytest.mark.parametrize("name", ["newsletter.yml", "markdown.yml"])
def test_example_messages_parse_without_defects(name: str, tmp_path: Path) -> None:
    r = Renderer(example(name, tmp_path), env=ENV)
    for key, fields in CONTACTS:
        m = r.render(key, key, fields)
        _check_raw(m.raw)
        parsed = parse(m.raw)
        assert all_defects(parsed) == []
        assert parsed["MIME-Version"] == "1.0"
        assert parsed["Date"] is not None and parsed["Message-ID"] == m.message_id
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["Subject"] == m.subject
        parts = _content_parts(parsed)
        assert parts["text/plain"].get_content().replace("\r\n", "\n") == m.text
        assert parts["text/html"].get_content().replace("\r\n", "\n") == m.html
        assert parts["text/html"]["Content-Transfer-Encoding"] == "quoted-printable"


def test_structure_order(tmp_path: Path) -> None:
    r = Renderer(example("newsletter.yml", tmp_path), env=ENV)
    parsed = parse(r.render("ada@example.com", "ada@example.com", CONTACTS[0][1]).raw)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    image = list(parsed.walk())[-1]
    assert image["Content-Disposition"].startswith("inline")
    assert image["Content-ID"] == "<logo>"


def test_no_images_no_related(tmp_path: Path) -> None:
    m = renderer(tmp_path).render("a@example.com", "a@example.com", {"first_name": "A"})
    kinds = [p.get_content_type() for p in parse(m.raw).walk()]
    assert kinds == ["multipart/alternative", "text/plain", "text/html"]


def test_header_order_and_values(tmp_path: Path) -> None:
    m = renderer(tmp_path).render("a@example.com", "a@example.com", {"first_name": "A"})
    head = m.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith(" ")]
    assert names[:5] == ["Date", "From", "To", "Subject", "Message-ID"]
    assert "MIME-Version" in names and names[-1] == "Content-Type"
    assert head.count("Date:") == 1


def test_qp_and_base64_encoders() -> None:
    text = "line with trailing space \nä" + "x" * 200 + "\n=_ and = signs\n"
    encoded = mime.qp_encode(text)
    assert encoded.isascii() and max(len(x) for x in encoded.split(b"\r\n")) <= 76
    import quopri

    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == text
    data = bytes(range(256)) * 3
    b64 = mime.b64_encode(data)
    assert all(len(x) <= 76 for x in b64.split(b"\r\n"))
    import base64

    assert base64.b64decode(b64) == data


def test_text_part_7bit_only_when_safe() -> None:
    assert mime.text_body("hello\nworld\n")[0] == "7bit"
    assert mime.text_body("x" * 998 + "\n")[0] == "7bit"
    assert mime.text_body("héllo\n")[0] == "quoted-printable"
    assert mime.text_body("has =_ marker\n")[0] == "quoted-printable"
    assert mime.text_body("x" * 999 + "\n")[0] == "quoted-printable"
    assert mime.text_body("trailing \n")[0] == "quoted-printable"
    assert mime.text_body("trailing at end ")[0] == "quoted-printable"


def test_qp_cache_equals_whole_encoding() -> None:
    cache = mime.QPCache(max_lines=3)
    texts = ["a\n" * 5 + "é" * 200 + "\n  trailing  \nlast", "x=y\r\nä\n", "", "\n\n"]
    for text in texts * 3:
        assert cache.encode(text) == mime.qp_encode(text)


def test_date_uses_clock(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    parsed = parse(r.render("a@example.com", "a@example.com", {"first_name": "A"}).raw)
    assert parsed["Date"].datetime.timestamp() == 1_700_000_000.0
