"""normalize_address: what is accepted, how it is normalised, and why the rest is refused."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stampcli.audience.address import InvalidAddress, is_valid_address, normalize_address
from stampcli.errors import InputError


@pytest.mark.parametrize(
    ("text", "key", "email"),
    [
        ("anna@example.com", "anna@example.com", "anna@example.com"),
        ("  Anna.Schmidt@Example.COM \t", "anna.schmidt@example.com", "Anna.Schmidt@example.com"),
        ("a+tag@sub.example.org", "a+tag@sub.example.org", "a+tag@sub.example.org"),
        ("o'connor@example.ie", "o'connor@example.ie", "o'connor@example.ie"),
        ("anna@bücher.example", "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example"),
        ("Anna@BÜCHER.example", "anna@xn--bcher-kva.example", "Anna@xn--bcher-kva.example"),
        ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ("a@example.com.", "a@example.com", "a@example.com"),
        ('"john smith"@Example.org', '"john smith"@example.org', '"john smith"@example.org'),
        ("x@ｅｘａｍｐｌｅ.com", "x@example.com", "x@example.com"),
        (" <Anna@Example.com> ", "anna@example.com", "Anna@example.com"),
    ],
)
def test_accepts_and_normalises(text: str, key: str, email: str) -> None:
    assert normalize_address(text) == (key, email)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        ("anna.example.com", "no @ sign"),
        ("a@@example.com", "more than one @"),
        ("@example.com", "nothing before the @"),
        ("anna@", "nothing after the @"),
        ("anna schmidt@example.com", "space in address"),
        ("anna@exa mple.com", "space in address"),
        ("anna@localhost", "domain has no dot"),
        ("anna@example..com", "empty label"),
        (".anna@example.com", "dot at the start or end"),
        ("an..na@example.com", "two dots in a row"),
        ("an(na)@example.com", "'(' is not allowed"),
        ("anna@ex_ample.com", "'_' is not allowed in the domain"),
        ("anna@-example.com", "starts or ends with a hyphen"),
        ("anna@example.123", "top-level domain is a number"),
        ("anna@[192.0.2.1]", "IP-address domains"),
        ("jürgen@example.de", "SMTPUTF8"),
        ("a@xn--zz.example", "not a valid internationalised label"),
        ("anna@example.com\r\nBcc: x@example.com", "control character"),
        ("anna\x00@example.com", "control character"),
        ("an\nna@example.com", "control character"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("a@" + "b" * 64 + ".com", "longer than 63"),
        ("a@" + ".".join(["b" * 60] * 5) + ".com", "longer than"),
        ('"unclosed@example.com', "badly quoted"),
        ("Anna Schmidt <anna@example.com>", "a name and an address"),
        ("<>", "empty address"),
    ],
)
def test_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalize_address(text)
    assert reason in info.value.reason
    assert isinstance(info.value, InputError)
    assert repr(text) in str(info.value)


def test_trailing_newline_is_trimmed_not_injected() -> None:
    # A cell ending in a line break is ordinary trimming; one inside is refused.
    assert normalize_address("anna@example.com\r\n")[0] == "anna@example.com"
    assert not is_valid_address("anna@example.com\r\nX: y")


def test_key_is_lower_case_email() -> None:
    key, email = normalize_address("John.Doe@EXAMPLE.net")
    assert key == email.lower()
    assert email == "John.Doe@example.net"


@given(st.text(max_size=80))
@example("a@b.c\x00")
@example("\u200b@example.com")
@example("a@" + "ä" * 300 + ".com")
def test_any_text_gives_an_address_or_a_reason(text: str) -> None:
    try:
        key, email = normalize_address(text)
    except InvalidAddress as exc:
        assert exc.reason
        return
    assert key == email.lower()
    assert email.isascii() or email.split("@")[0].startswith('"')
    assert "\n" not in email and "\r" not in email and "\x00" not in email
    assert len(email) <= 254
    # Normalising is idempotent: the output is its own normal form.
    assert normalize_address(email) == (key, email)


@given(
    st.from_regex(
        r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]@[a-z0-9]{1,10}\.(com|org|de)", fullmatch=True
    )
)
def test_ordinary_addresses_accepted_unless_double_dot(text: str) -> None:
    if ".." in text.split("@")[0]:
        assert not is_valid_address(text)
    else:
        assert normalize_address(text) == (text.lower(), text)
