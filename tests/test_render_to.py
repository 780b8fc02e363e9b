"""The ``to:`` key: the subscriber's name in To, never another address."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import ENV, campaign, parse, renderer

from stampcli.errors import StampError
from stampcli.render.headers import HeaderInjection, WrongRecipient
from stampcli.render.renderer import Renderer

TO = "{{ first_name }} {{ last_name }} <{{ email }}>"


def _render(tmp_path: Path, fields: dict[str, str], email: str = "anna@example.org", **kw: str):
    r = renderer(tmp_path, to=kw.get("to", TO))
    return r.render(email.lower(), email, {"first_name": "", "last_name": "", **fields})


def test_to_has_the_name(tmp_path: Path) -> None:
    m = _render(tmp_path, {"first_name": "Anna", "last_name": "Berg"})
    assert m.to_header == "Anna Berg <anna@example.org>" and m.to_name == "Anna Berg"
    assert m.recipient == "anna@example.org"
    assert parse(m.raw)["To"] == "Anna Berg <anna@example.org>"
    assert b"\r\nTo: Anna Berg <anna@example.org>\r\n" in m.raw


def test_empty_name_is_the_bare_address(tmp_path: Path) -> None:
    m = _render(tmp_path, {})
    assert m.to_header == "anna@example.org"
    assert b"\r\nTo: anna@example.org\r\n" in m.raw


def test_non_ascii_and_special_names_are_encoded(tmp_path: Path) -> None:
    m = _render(tmp_path, {"first_name": "Jürgen", "last_name": "Groß"})
    assert m.to_header == "Jürgen Groß <anna@example.org>"
    line = next(x for x in m.raw.split(b"\r\n") if x.startswith(b"To:"))
    assert line.isascii() and b"=?utf-8?" in line.lower()
    assert parse(m.raw)["To"] == "Jürgen Groß <anna@example.org>"
    m = _render(tmp_path / "b", {"first_name": "Berg, Anna", "last_name": "<x@evil.example>"})
    to = parse(m.raw)["To"]
    assert to.addresses[0].addr_spec == "anna@example.org" and len(to.addresses) == 1
    assert to.addresses[0].display_name == "Berg, Anna <x@evil.example>"


def test_address_case_and_idna_match(tmp_path: Path) -> None:
    m = _render(tmp_path, {"first_name": "Anna"}, email="Anna@Bücher.example")
    assert m.recipient == "Anna@xn--bcher-kva.example"
    assert m.to_header == "Anna <Anna@xn--bcher-kva.example>"


@pytest.mark.parametrize(
    "to",
    ["{{ first_name }} <{{ work_email }}>", "{{ work_email }}", "{{ first_name }}",
     "{{ first_name }} <>", "{{ first_name }} <{{ email }}>, <{{ work_email }}>"],
)  # fmt: skip
def test_another_address_fails_the_recipient(tmp_path: Path, to: str) -> None:
    with pytest.raises(WrongRecipient, match="recipient's own address"):
        _render(tmp_path, {"first_name": "Anna", "work_email": "boss@corp.example"}, to=to)


def test_header_injection_in_to(tmp_path: Path) -> None:
    with pytest.raises(HeaderInjection) as info:
        _render(tmp_path, {"first_name": "Anna", "last_name": "B\r\nBcc: victim@example.com"})
    assert info.value.header == "To"


@pytest.mark.parametrize("to", ["Anna <anna@example.org>", "a\n{{ email }}"])
def test_bad_to_key_is_a_config_error(tmp_path: Path, to: str) -> None:
    with pytest.raises(StampError, match="to"):
        campaign(tmp_path, to=to)


def test_to_changes_the_content_hash(tmp_path: Path) -> None:
    plain = Renderer(campaign(tmp_path / "a"), env=ENV).content_hash
    named = Renderer(campaign(tmp_path / "b", to=TO), env=ENV).content_hash
    again = Renderer(campaign(tmp_path / "c"), env=ENV).content_hash
    assert plain != named and plain == again
