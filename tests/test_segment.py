"""Segment expressions: compile-time errors, case-insensitive fields, built-ins, the sandbox."""

from __future__ import annotations

import pytest

from stampcli.audience.segment import SegmentEvalError, compile_segment
from stampcli.errors import ConfigError
from stampcli.records import Contact


def contact(email: str = "anna@example.com", **fields: str) -> Contact:
    return Contact(key=email.lower(), email=email, fields=fields, row=2)


def test_the_issue_example() -> None:
    seg = compile_segment("country == 'DE' and plan in ['pro', 'team']")
    assert seg.matches(contact(country="DE", plan="pro"))
    assert seg.matches(contact(country="DE", plan="team"))
    assert not seg.matches(contact(country="DE", plan="free"))
    assert not seg.matches(contact(country="FR", plan="pro"))


def test_field_names_match_ignoring_case_and_spaces() -> None:
    seg = compile_segment("Country == 'DE' and FIRST_NAME == 'Anna'")
    assert seg.matches(
        Contact("a@example.com", "a@example.com", {"country": "DE", "First Name": "Anna"})
    )
    assert seg.names == {"country", "first_name"}


def test_builtins_email_domain_added_at() -> None:
    seg = compile_segment("domain == 'example.org' and email.startswith('b')")
    assert seg.matches(contact("bob@example.org"))
    assert not seg.matches(contact("anna@example.org"))
    # A column named "email" (the raw cell) does not shadow the normalised address.
    raw = Contact("bob@example.org", "bob@example.org", {"email": " BOB@Example.ORG "}, 2)
    assert compile_segment("email == 'bob@example.org'").matches(raw)
    assert compile_segment("added_at is none").matches(contact())
    stored = contact(added_at="2024-05-01T10:00:00Z")
    assert compile_segment("added_at >= '2024-01-01'").matches(stored)


def test_numbers_compare_with_a_filter() -> None:
    seg = compile_segment("seats | int > 5")
    assert seg.matches(contact(seats="7"))
    assert not seg.matches(contact(seats="3"))
    assert not compile_segment("seats | int > 5").matches(contact(seats="many"))


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("country == 'DE' and", "at column 20"),
        ("country = 'DE'", "compare with =="),
        ("plan in ['pro',", "unexpected end of expression"),
        ("country == 'DE' plan", "at column 17"),
        ("country ==== 'DE'", "at column"),
    ],
)
def test_syntax_errors_name_expression_and_position(expr: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_segment(expr)
    message = str(info.value)
    assert repr(expr) in message
    assert fragment in message
    assert "Traceback" not in message


def test_empty_segment_is_an_error() -> None:
    with pytest.raises(ConfigError, match="segment is empty"):
        compile_segment("   ")


def test_evaluation_errors_raise_segment_eval_error() -> None:
    seg = compile_segment("nosuchfield == 'x'")
    with pytest.raises(SegmentEvalError, match=r"row 2 \(anna@example.com\).*nosuchfield"):
        seg.matches(contact(country="DE"))
    with pytest.raises(SegmentEvalError):
        compile_segment("country > 3").matches(contact(country="DE"))


@pytest.mark.parametrize(
    "expr",
    [
        "email.__class__.__mro__",
        "''.__class__.__subclasses__()",
        "'x' * 10000000",
        "9 ** 9999",
        "[1] * 10000000",
    ],
)
def test_sandbox_refuses_escapes_and_blowups(expr: str) -> None:
    seg = compile_segment(expr)
    with pytest.raises(SegmentEvalError):
        seg.matches(contact())


def test_unknown_column_check_suggests_a_name() -> None:
    seg = compile_segment("contry == 'DE'")
    with pytest.raises(ConfigError, match=r"'contry' \(did you mean 'country'\?\).*list\.csv"):
        seg.check_columns(["email", "Country", "plan"], "list.csv")
    compile_segment("Plan == 'pro' and domain == 'x'").check_columns(["plan"], "list.csv")
