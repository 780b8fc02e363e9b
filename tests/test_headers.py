"""Header values: injection checks, encoded words, folding, addresses, List-Unsubscribe."""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampcli.errors import RecipientError
from stampcli.render import headers as hdr


def _parse_value(line: str) -> str:
    raw = (line + "\r\nFrom: a@b.example\r\n\r\nx\r\n").encode("ascii")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    name = line.split(":", 1)[0]
    assert not msg.defects
    return str(msg[name])


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nBcc: x@y", "nul\x00", "esc\x1b"])
def test_check_value_refuses_control_characters(value: str) -> None:
    with pytest.raises(hdr.HeaderInjection) as info:
        hdr.check_value("Subject", value, "subject")
    assert info.value.header == "Subject"
    assert "header injection" in str(info.value)


def test_tab_is_allowed() -> None:
    assert hdr.check_value("Subject", "a\tb") == "a\tb"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=300))
def test_unstructured_roundtrips_and_stays_short(value: str) -> None:
    value = value.strip()
    line = hdr.unstructured("Subject", value)
    assert line.isascii()
    assert all(len(x) <= 78 for x in line.split("\r\n")) or not value.isascii()
    assert all(len(x) <= hdr.MAX_LINE for x in line.split("\r\n"))
    decoded = _parse_value(line)
    assert " ".join(decoded.split()) == " ".join(value.split())


def test_encoded_words_are_valid_and_split_on_characters() -> None:
    text = "Grüße aus Köln — 🎉 " * 8
    words = hdr.encoded_words(text)
    assert all(len(w) <= 75 for w in words)
    assert str(make_header(decode_header(" ".join(words)))) == text


def test_ascii_subject_folds_at_spaces() -> None:
    value = "word " * 40
    line = hdr.unstructured("Subject", value.strip())
    assert "\r\n " in line and all(len(x) <= 78 for x in line.split("\r\n"))
    assert _parse_value(line) == value.strip()


def test_literal_encoded_word_is_encoded() -> None:
    line = hdr.unstructured("Subject", "=?utf-8?q?hi?= there")
    assert _parse_value(line) == "=?utf-8?q?hi?= there"


@pytest.mark.parametrize(
    ("name", "addr", "display"),
    [
        ("ACME News", "news@acme.example", "ACME News <news@acme.example>"),
        ("ACME, Inc.", "news@acme.example", '"ACME, Inc." <news@acme.example>'),
        ("Gärtner Club", "news@bücher.example", "Gärtner Club <news@xn--bcher-kva.example>"),
        ("", "a@example.com", "a@example.com"),
        ('Say "hi"', "a@example.com", '"Say \\"hi\\"" <a@example.com>'),
    ],
)
def test_address(name: str, addr: str, display: str) -> None:
    enc = hdr.address(name, addr)
    assert enc.display == display
    line = hdr.address_line("From", enc)
    assert line.isascii()
    msg = email.message_from_bytes(
        (line + "\r\n\r\nx").encode("ascii"), policy=email.policy.default
    )
    parsed = msg["From"].addresses[0]
    assert parsed.display_name == name
    assert parsed.addr_spec == enc.addr_spec


def test_non_ascii_local_part_is_refused() -> None:
    with pytest.raises(RecipientError, match="SMTPUTF8"):
        hdr.ascii_addr_spec("jürgen@example.com")


def test_idna() -> None:
    assert hdr.idna_domain("Bücher.Example") == "xn--bcher-kva.example"
    with pytest.raises(RecipientError):
        hdr.idna_domain("ü..example")


def test_list_unsubscribe() -> None:
    value = hdr.list_unsubscribe("https://x.example/u?t=abc", "mailto:u@x.example?subject=u")
    assert value == "<https://x.example/u?t=abc>, <mailto:u@x.example?subject=u>"
    line = hdr.list_line("List-Unsubscribe", value)
    assert _parse_value(line) == value
    assert hdr.clean_url("https://x.example/ä b", "u") == "https://x.example/%C3%A4%20b"
    assert hdr.mailto_uri("unsub@x.example", None) == "mailto:unsub@x.example?subject=unsubscribe"
    with pytest.raises(hdr.HeaderInjection):
        hdr.clean_url("https://x.example/\r\nBcc: a@b", "List-Unsubscribe")
