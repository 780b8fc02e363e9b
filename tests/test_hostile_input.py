"""Hostile and broken input (issue #8): lists, addresses, templates, segments, headers.

Property-based (hypothesis) over CSV and xlsx contents, header names, field
values and addresses: reading never raises anything but stamp's own
``InputError``, and every bad row is rejected with a reason. Header injection
through any value that reaches a header is impossible; templates and segment
expressions cannot reach Python internals or files outside their folder; zip
bombs, huge cells and files that are not what their extension says are
refused within bounded memory (peak RSS of a ``stamp import`` subprocess).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from provider_fakes import FakeServer, MailgunFake, MailjetFake, PostmarkFake, SendGridFake, SESFake
from reliability_helpers import (
    UNSUB_SECRET,
    baseline_rss_kb,
    ledger_rows,
    run_measured,
    run_stamp,
    send_args,
    write_campaign,
)
from render_helpers import parse, renderer
from render_helpers import write_campaign as write_render_campaign
from smtp_server import SMTPTestServer

from stampcli import redact
from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.audience.resolve import AudienceStats, read_contacts
from stampcli.audience.segment import SegmentEvalError, compile_segment
from stampcli.config import Campaign, load_campaign
from stampcli.errors import ConfigError, InputError, RecipientError, StampError, TemplateError
from stampcli.records import Contact
from stampcli.render.renderer import Renderer

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that breaks things: controls, CR/LF, NUL, RTL marks, emoji, combining marks, long runs.
NASTY_CHARS = list("\x00\r\n\t\x0b\x0c\x1b\x7f\x85\u2028\u2029\u202e\u200f\ufeff\"',;|=:<>@\\")
NASTY = st.one_of(
    st.lists(
        st.one_of(
            st.sampled_from([*NASTY_CHARS, "😀", "👩\u200d👩\u200d👧", "ﷺ", "ñ", "e\u0301", "א"]),
            st.characters(codec="utf-8"),
        ),
        max_size=40,
    ).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀", "\n"]), st.integers(0, 3000)),
)


def _read_all(path: Path, **kwargs: Any) -> tuple[list[Contact], AudienceStats]:
    stats = AudienceStats()
    return list(read_contacts(path, stats=stats, **kwargs)), stats


def _check_contacts(contacts: list[Contact], stats: AudienceStats) -> None:
    for c in contacts:
        assert c.key == c.key.lower() and "@" in c.key
        assert not re.search(r"[\x00-\x20\x7f]", c.email), c.email
    for rej in stats.rejected:
        assert rej.reason and isinstance(rej.reason, str)
    assert stats.contacts == len(contacts)
    assert stats.rows >= len(contacts) + stats.duplicates + stats.rejected_count - 1


# --------------------------------------------------------------------------- CSV


@SETTINGS
@given(
    header=st.lists(NASTY, min_size=1, max_size=5),
    rows=st.lists(st.lists(NASTY, max_size=6), max_size=8),
    with_email=st.booleans(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
)
def test_csv_of_anything_reads_or_refuses_cleanly(
    header: list[str], rows: list[list[str]], with_email: bool, delimiter: str, encoding: str
) -> None:
    if with_email:
        header = ["email", *header]
        rows = [[f"u{i}@example.com", *r] for i, r in enumerate(rows)]
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([header, *rows])
    data = buf.getvalue().encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.csv"
        path.write_bytes(data)
        try:
            contacts, stats = _read_all(path)
        except InputError as exc:
            assert str(exc).startswith(str(path)) or str(path) in str(exc), exc
            return
        _check_contacts(contacts, stats)


@SETTINGS
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".txt", ".xlsx", ".xls"]))
def test_arbitrary_bytes_read_or_refuse_cleanly(data: bytes, suffix: str) -> None:
    """Invalid UTF-8, NUL bytes, half a BOM, zip headers: an InputError at worst."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"list{suffix}"
        path.write_bytes(b"email,name\n" + data if suffix in (".csv", ".txt") else data)
        try:
            contacts, stats = _read_all(path)
        except InputError:
            return
        _check_contacts(contacts, stats)


# --------------------------------------------------------------------------- xlsx


def _xlsx(path: Path, rows: list[list[Any]]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)


_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
CELL = st.one_of(
    NASTY.map(lambda s: _ILLEGAL_XML.sub("", s)[:32767]),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.dates(),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.lists(CELL, min_size=1, max_size=4),
    rows=st.lists(st.lists(CELL, max_size=5), max_size=5),
    with_email=st.booleans(),
)
def test_xlsx_of_anything_reads_or_refuses_cleanly(
    header: list[Any], rows: list[list[Any]], with_email: bool
) -> None:
    if with_email:
        header = ["email", *header]
        rows = [[f"u{i}@example.com", *r] for i, r in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.xlsx"
        _xlsx(path, [header, *rows])
        try:
            contacts, stats = _read_all(path)
        except InputError:
            return
        _check_contacts(contacts, stats)
        if with_email:  # every row is a contact or a rejection with its reason
            assert len(contacts) + stats.rejected_count == len(rows)


# --------------------------------------------------------------------------- addresses

ADDRESSES = [
    "ann@example.com",
    "Ann@EXAMPLE.com.",  # trailing dot
    "ann@bücher.example",  # IDN
    "анна@пример.рф",  # non-ASCII local part
    '"ann smith"@example.com',  # quoted local part
    '"a\\"b"@example.com',
    "ann@example.com\r\nBcc: evil@x.test",
    "ann@example.com\nbcc: evil@x.test",
    "ann@exa\x00mple.com",
    "ann@example..com",
    "ann@-example.com",
    "ann@example.com..",
    ".ann@example.com",
    "ann.@example.com",
    "ann@[127.0.0.1]",
    "a" * 300 + "@example.com",
    "ann@" + "a" * 64 + ".com",
    "ann@example.123",
    "ann@@example.com",
    "<ann@example.com>",
    "Ann <ann@example.com>",
    "ann@example.com,bob@example.com",
    "ann@\u202eexample.com",
    "ann@xn--ls8h.example",
    "😀@example.com",
]


@pytest.mark.parametrize("text", ADDRESSES)
def test_known_awkward_addresses(text: str) -> None:
    _check_address(text)


def test_trailing_dots_reject_the_row_not_the_import(tmp_path: Path) -> None:
    """Regression: 'a@example.com..' raised StopIteration, which killed the whole import."""
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.com\nbob@example.com..\ncy@example.com.\n")
    contacts, stats = _read_all(path)
    assert [c.key for c in contacts] == ["ann@example.com", "cy@example.com"]
    assert [r.row for r in stats.rejected] == [3]
    assert "empty label" in stats.rejected[0].reason


@SETTINGS
@given(
    text=st.one_of(
        NASTY,
        st.builds(lambda a, b: f"{a}@{b}", NASTY, NASTY),
        st.emails().map(str),
        st.builds(lambda e, t: e + t, st.emails().map(str), st.sampled_from(list(NASTY_CHARS))),
    )
)
def test_any_address_is_normalised_or_rejected(text: str) -> None:
    _check_address(text)


def _check_address(text: str) -> None:
    try:
        key, email = normalize_address(text)
    except InvalidAddress as exc:
        assert exc.reason
        return
    # what comes out can go into a header and an SMTP command as it is
    local, _, domain = email.rpartition("@")
    assert domain.isascii() and not re.search(r"[\x00-\x20\x7f,<>\"]", domain), email
    if local.startswith('"'):  # a quoted local part may hold spaces, never a control character
        assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", local), email
    else:
        assert not re.search(r"[\x00-\x20\x7f\u2028\u2029,<>]", local), email
    assert email.count("@") >= 1 and key == key.lower()
    assert normalize_address(email)[0] == key  # stable


# --------------------------------------------------------------------------- header injection

INJECTIONS = [
    "Ann\r\nBcc: evil@x.test",
    "Ann\nBcc: evil@x.test",
    "Ann\rBcc: evil@x.test",
    "Ann\r\n\r\n<html>body</html>",
    "Ann\x00Bcc: evil@x.test",
    "Ann\u2028Bcc: evil@x.test",
    "Ann\x85Bcc: evil@x.test",
    "=?utf-8?q?Ann=0D=0ABcc:_evil@x.test?=",
    "Ann\r\n Bcc: evil@x.test",
    "Ann\tBcc: evil@x.test",
]


def _injection_renderer(folder: Path) -> Renderer:
    return renderer(
        folder,
        subject="Hi {{ first_name }}",
        from_="{{ first_name }} from ACME <news@acme.example>",
        reply_to="{{ first_name }} <reply@acme.example>",
        headers={"X-Tag": "tag-{{ first_name }}", "X-Campaign": "nov"},
    )


EXPECTED_HEADERS = {
    "date", "from", "to", "subject", "message-id", "reply-to", "list-unsubscribe",
    "list-unsubscribe-post", "x-tag", "x-campaign", "mime-version", "content-type",
    "list-id", "precedence", "auto-submitted", "x-mailer", "feedback-id",
}  # fmt: skip


def _assert_clean_headers(raw: bytes) -> None:
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no header/body separator"
    assert b"\x00" not in head
    # every line break is CRLF, and every line is a header or a folded continuation
    assert b"\n" not in head.replace(b"\r\n", b""), head
    assert b"\r" not in head.replace(b"\r\n", b""), head
    names = []
    for line in head.split(b"\r\n"):
        assert line, head
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        assert colon and re.fullmatch(rb"[A-Za-z0-9-]+", name), line
        names.append(name.decode().lower())
    assert "bcc" not in names
    assert set(names) <= EXPECTED_HEADERS, set(names) - EXPECTED_HEADERS
    assert len(names) == len(set(names)), names
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert [str(a) for a in msg["To"].addresses] and len(msg["To"].addresses) == 1


@pytest.mark.parametrize("value", INJECTIONS)
def test_header_injection_through_fields_is_impossible(tmp_path: Path, value: str) -> None:
    r = _injection_renderer(tmp_path)
    try:
        message = r.render("ann@example.com", "ann@example.com", {"first_name": value})
    except RecipientError as exc:
        assert str(exc), "a rejection says why"
        return
    _assert_clean_headers(message.raw)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=NASTY)
def test_header_injection_property(value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = _injection_renderer(Path(tmp))
        try:
            message = r.render("ann@example.com", "ann@example.com", {"first_name": value})
        except RecipientError:
            return
        _assert_clean_headers(message.raw)


CAMPAIGN_INJECTIONS = [
    {"headers": {"X-Foo": "a\r\nBcc: evil@x.test"}},
    {"headers": {"X-Foo\r\nBcc": "a"}},
    {"headers": {"Bcc": "evil@x.test"}},
    {"headers": {"X-Foo": "{{ first_name }}\nBcc: evil@x.test"}},
    {"subject": "Hi\r\nBcc: evil@x.test"},
    {"from_": "Evil\r\nBcc: x@y.test <news@acme.example>"},
    {"reply_to": "r@acme.example\r\nBcc: x@y.test"},
    {"list_id": "x\r\nBcc: y"},
    {"headers": {"X-Foo": "x" * 5000}},
]


@pytest.mark.parametrize("overrides", CAMPAIGN_INJECTIONS, ids=range(len(CAMPAIGN_INJECTIONS)))
def test_header_injection_from_the_campaign_is_refused(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    with pytest.raises(StampError) as caught:
        r = renderer(tmp_path, **overrides)
        r.render("ann@example.com", "ann@example.com", {"first_name": "Ann"})
    assert str(caught.value)


def test_injected_recipient_is_rejected_end_to_end(tmp_path: Path) -> None:
    """Through the CLI: the bad row fails with a reason; no message carries a Bcc."""
    from reliability_helpers import write_campaign

    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://out"}],
        audience="  file: list.csv\n",
        extra='headers:\n  X-Tag: "{{ first_name }}"\n',
    )
    rows = [
        ["ann@example.com", "Ann"],
        ["bob@example.com", "Bob\r\nBcc: evil@x.test"],
        ["cy@example.com", "Cy\nSubject: free money"],
        ["di@example.com\r\nBcc: evil@x.test", "Di"],
    ]
    with (tmp_path / "list.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["email", "first_name"], *rows])
    result = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    states = {r["key"]: (r["state"], r["last_error"]) for r in ledger_rows(tmp_path / "stamp.db")}
    assert states["ann@example.com"][0] == "sent"
    for key in ("bob@example.com", "cy@example.com"):
        state, error = states[key]
        assert state == "failed" and error, (key, state, error)
    assert "di@example.com" not in " ".join(states)  # rejected at planning, never a ledger row
    emls = list((tmp_path / "out").rglob("*.eml"))
    assert len(emls) == 1
    for eml in emls:
        _assert_clean_headers(eml.read_bytes())


def _test_to_campaign(tmp_path: Path) -> Path:
    from reliability_helpers import write_campaign

    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://out"}],
        audience="  file: list.csv\n",
        extra='headers:\n  X-Tag: "{{ first_name }}"\n',
    )
    rows = [["ann@example.com", "Ann"], ["bob@example.com", "Bob\r\nBcc: evil@x.test"]]
    with (tmp_path / "list.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["email", "first_name"], *rows])
    return campaign


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--test-to", "me@example.org\r\nBcc: evil@x.test"], "--test-to"),
        (["--test-to", "me@example.org\nBcc: evil@x.test"], "--test-to"),
        (["--test-to", "me@example.org, evil@x.test"], "--test-to"),
        (["--test-to", "Me <me@example.org>"], "--test-to"),
        (["--test-to", "mé@example.org"], "--test-to"),
        (["--test-to", "me@[192.0.2.1]"], "--test-to"),
        (["--test-to", ""], "--test-to"),
        (["--test-to", "me@example.org", "--email", "ann@example.com\r\nBcc: x@x.test"], "no "),
        (["--test-to", "me@example.org", "--row", "-1"], "no recipient at row -1"),
        # the recipient's own message cannot be made (header injection in a field)
        (["--test-to", "me@example.org", "--email", "bob@example.com"], "bob@example.com (row 3)"),
    ],
)
def test_hostile_test_sends_are_refused(tmp_path: Path, args: list[str], says: str) -> None:
    """``send --test-to``: a bad test address or recipient is refused, nothing is written."""
    campaign = _test_to_campaign(tmp_path)
    result = run_stamp("send", str(campaign), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "bug in stamp" not in result.stderr
    assert not list(tmp_path.rglob("*.eml"))
    assert not (tmp_path / "stamp.db").exists()


def test_an_idn_test_address_is_encoded(tmp_path: Path) -> None:
    campaign = _test_to_campaign(tmp_path)
    result = run_stamp("send", str(campaign), "--test-to", "Me@Bücher.example", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [eml] = list((tmp_path / "out").rglob("*.eml"))
    data = eml.read_bytes()
    assert b"\r\nTo: Me@xn--bcher-kva.example\r\n" in data
    _assert_clean_headers(data)


# --------------------------------------------------------------------------- the store: key


@SETTINGS
@given(value=NASTY)
def test_any_store_key_loads_or_is_refused(value: str) -> None:
    """A ``store:`` value is a path or a sqlite: URL, or one ConfigError naming the key."""
    from reliability_helpers import write_campaign

    from stampcli.config import load_campaign
    from stampcli.store.location import for_campaign

    with tempfile.TemporaryDirectory() as tmp:
        campaign = write_campaign(
            Path(tmp),
            [{"url": "outbox://out"}],
            audience="  file: list.csv\n",
            extra=f"store: {json.dumps(value)}\n",  # JSON strings are YAML strings
        )
        (Path(tmp) / "list.csv").write_text("email\nann@example.com\n", encoding="utf-8")
        try:
            loaded = load_campaign(campaign, env={})
        except ConfigError as exc:
            assert ": store: " in str(exc)
            return
        choice = for_campaign(loaded, None)
        assert choice.path.is_absolute() and "\x00" not in str(choice.path)


def test_a_store_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    """``store:`` pointing at the subscriber list: exit 7, no traceback, the file untouched."""
    from reliability_helpers import write_campaign

    campaign = write_campaign(tmp_path, [{"url": "outbox://out"}], n=3, extra="store: list.csv\n")
    before = (tmp_path / "list.csv").read_bytes()
    result = run_stamp("send", campaign, "--yes", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 7, result.stderr
    assert "list.csv" in result.stderr and "not a stamp database" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "list.csv").read_bytes() == before
    assert not list(tmp_path.glob("list.csv-*"))  # no WAL or journal beside it


def test_an_unreachable_postgres_store_is_refused_without_its_password(tmp_path: Path) -> None:
    from reliability_helpers import write_campaign

    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://out"}],
        n=3,
        extra='store: "postgresql://stamp:${PGPASS}@127.0.0.1:1/news?connect_timeout=3"\n',
    )
    env = {"PGPASS": "pg-SECRET-9f2c71a0b3"}
    result = run_stamp("send", campaign, "--yes", cwd=tmp_path, env=env)
    assert result.returncode == 7, result.stderr
    assert "stamp:***@127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
    assert "pg-SECRET" not in result.stderr + result.stdout


# --------------------------------------------------------------------------- template sandbox

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__call__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ '{0.__class__}'.format('') }}",
    "{{ '%s'|format(''.__class__) }}",
    "{{ contact.__class__.__init__.__globals__ }}",
    "{{ first_name.__class__.__base__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ config }}",
    "{{ request }}",
]
INCLUDES = [
    "{% include '/etc/passwd' %}",
    "{% include '../outside.txt' %}",
    "{% include 'sub/../../outside.txt' %}",
    "{% include 'link.html' %}",  # a symlink in the folder pointing outside it
    "{% extends '../outside.txt' %}",
    "{% import '/etc/hostname' as x %}",
    "{% include first_name %}",  # dynamic: the value is '../outside.txt'
]


def _template_folder(tmp_path: Path) -> Path:
    (tmp_path / "outside.txt").write_text("OUTSIDE-THE-FOLDER")
    folder = tmp_path / "c"
    (folder / "sub").mkdir(parents=True)
    os.symlink(tmp_path / "outside.txt", folder / "link.html")
    return folder


@pytest.mark.parametrize("payload", ESCAPES + INCLUDES)
@pytest.mark.parametrize("where", ["template", "subject"])
def test_templates_cannot_escape(tmp_path: Path, payload: str, where: str) -> None:
    folder = _template_folder(tmp_path)
    kwargs: dict[str, Any] = (
        {"template": f"<p>{payload}</p>"} if where == "template" else {"subject": payload}
    )
    with pytest.raises(StampError) as caught:
        r = renderer(folder, **kwargs)
        r.render("ann@example.com", "ann@example.com", {"first_name": "../outside.txt"})
    text = str(caught.value)
    assert "OUTSIDE-THE-FOLDER" not in text and "root:" not in text
    assert isinstance(caught.value, TemplateError | ConfigError | RecipientError)


@pytest.mark.parametrize(
    "value",
    ["{{ 7*7 }}", "{% include '/etc/passwd' %}", "{{ ''.__class__ }}", "<script>x</script>"],
)
def test_field_values_are_data_not_templates(tmp_path: Path, value: str) -> None:
    r = renderer(tmp_path, template="<p>{{ first_name }}</p>", subject="Hi {{ first_name }}")
    message = r.render("ann@example.com", "ann@example.com", {"first_name": value})
    assert "49" not in message.html and "root:" not in message.html
    assert "<script>" not in message.html
    assert message.subject == f"Hi {value}"


SEGMENT_ESCAPES = [
    "email.__class__",
    "''.__class__.__mro__[1].__subclasses__()",
    "country.__class__.__base__",
    "cycler.__init__.__globals__",
    "lipsum.__globals__",
    "range(10**9)|list",
    "(country|attr('__class__'))",
    "'{0.__class__}'.format(country)",
    "country * 10**9",
    "9**99",
]


@pytest.mark.parametrize("expr", SEGMENT_ESCAPES)
def test_segments_run_sandboxed(expr: str) -> None:
    try:
        segment = compile_segment(expr)
    except ConfigError:
        return
    contact = Contact("ann@example.com", "ann@example.com", {"country": "DE"}, 2)
    with pytest.raises(SegmentEvalError):
        segment.matches(contact)


@SETTINGS
@given(expr=NASTY)
def test_any_segment_text_compiles_or_is_refused(expr: str) -> None:
    try:
        segment = compile_segment(expr)
    except ConfigError as exc:
        assert str(exc)
        return
    contact = Contact("ann@example.com", "ann@example.com", {"country": "DE", "plan": "pro"}, 2)
    try:
        assert segment.matches(contact) in (True, False)
    except SegmentEvalError as exc:
        assert str(exc)


@SETTINGS
@given(source=NASTY)
def test_any_template_text_compiles_or_is_refused(source: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = renderer(Path(tmp), template=source, subject="Hi {{ first_name | default('') }}")
            r.render("ann@example.com", "ann@example.com", {"first_name": "Ann"})
        except StampError as exc:
            assert str(exc)


# --------------------------------------------------------------------------- files that lie, bombs

RSS_BOUND_KB = 64 * 1024  # growth over a bare start-up allowed for refusing a bad file


def _zip_bomb(path: Path, member: str = "xl/sharedStrings.xml", size: int = 64 * 1024**2) -> None:
    """A valid-looking xlsx whose one member unpacks to ``size`` bytes of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open(member, "w", force_zip64=True) as fh:
            chunk = b"0" * (1024 * 1024)
            for _ in range(size // len(chunk)):
                fh.write(chunk)


def _huge_cell_xlsx(path: Path) -> None:
    _xlsx(path, [["email", "note"], ["ann@example.com", "x" * 32767]] + [
        [f"u{i}@example.com", "y" * 32000] for i in range(40)
    ])  # fmt: skip


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> int:
    return baseline_rss_kb(tmp_path_factory.mktemp("base"))


@pytest.mark.parametrize(
    ("name", "make", "refused"),
    [
        ("bomb.xlsx", _zip_bomb, True),
        ("huge-cells.xlsx", _huge_cell_xlsx, False),
        ("png.csv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000)), True),
        ("text.xlsx", lambda p: p.write_text("email\nann@example.com\n"), True),
        ("zip.csv", lambda p: _zip_bomb(p, "data.bin", 8 * 1024**2), True),
        ("pdf.xlsx", lambda p: p.write_bytes(b"%PDF-1.7\n" + os.urandom(2000)), True),
        ("noline.csv", lambda p: p.write_bytes(b"email," + b"a" * 12 * 1024**2), True),
        (
            "bigcell.csv",
            lambda p: p.write_bytes(b'email,x\nann@e.com,"' + b"b" * 3 * 1024**2),
            True,
        ),
    ],
)
def test_bad_files_are_refused_in_bounded_memory(
    tmp_path: Path, baseline: int, name: str, make: Any, refused: bool
) -> None:
    path = tmp_path / name
    make(path)
    result, peak = run_measured(
        "import", path, "--list", "l", "--db", tmp_path / "stamp.db", cwd=tmp_path
    )
    if refused:
        assert result.returncode == 2, result.stderr
        assert str(path.name) in result.stderr and "Traceback" not in result.stderr
    else:
        assert result.returncode in (0, 1), result.stderr
    assert peak - baseline < RSS_BOUND_KB, f"{name}: {peak - baseline} KiB over start-up"


# ------------------------------------------------------------------- secrets in provider URLs
# Issue "Safety first" 4: a ${NAME} inside a provider URL reaches the provider byte for byte
# (no percent-decoding, no cut at '?', '#', '@', ':' or '/'), and no error quotes any of it.

SMTP_PASSWORDS = ["ab%41c?x&#", "p@ss:w/rd %2F ü+=?#&;"]
# distinctive pieces: a message quoting any part of a secret built from them shows one
MARKERS = ("QZX", "JVK")
# ASCII only: HTTP headers (Bearer, Basic) cannot carry anything else
HTTP_SECRET = "k%41y?a#b@c/d:e&f=g+h %2F;"


def _secret_env(**values: str) -> dict[str, str]:
    return {**values, "STAMP_UNSUBSCRIBE_SECRET": UNSUB_SECRET}


@pytest.mark.parametrize("password", SMTP_PASSWORDS)
def test_smtp_auth_receives_the_exact_password_bytes(tmp_path: Path, password: str) -> None:
    user = "news@acme.example"  # SMTP users are often addresses: an '@' of their own
    with SMTPTestServer(tls="starttls", auth=(user, password)) as server:
        url = (
            f"smtp://${{SMTP_USER}}:${{SMTP_PASS}}@127.0.0.1:{server.port}?cafile={server.ca_file}"
        )
        campaign = write_campaign(tmp_path, [{"url": url}], n=3)
        run = run_stamp(
            *send_args(campaign, tmp_path / "stamp.db"),
            cwd=tmp_path,
            env={"SMTP_USER": user, "SMTP_PASS": password},
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert all(server.count(f"user{i}@example.test") == 1 for i in range(3))
        assert {m.auth_user for m in server.messages} == {user}
    for text in (run.stdout, run.stderr):
        assert password not in text and quote(password, safe="") not in text


def _http_case(scheme: str) -> tuple[FakeServer, str, dict[str, str]]:
    """A fake whose credentials hold every URL delimiter, its URL template and the env."""
    secret = HTTP_SECRET
    if scheme == "sendgrid":
        return SendGridFake(key=secret), "sendgrid://${KEY}", {"KEY": secret}
    if scheme == "postmark":
        return (
            PostmarkFake(token=secret),
            "postmark://${KEY}?stream=${STREAM}",
            {
                "KEY": secret,
                "STREAM": "broadcast",
            },
        )
    if scheme == "mailgun":
        fake: FakeServer = MailgunFake(key=secret, domain="mg.acme.example")
        return fake, "mailgun://${KEY}@${DOMAIN}", {"KEY": secret, "DOMAIN": "mg.acme.example"}
    if scheme == "mailjet":
        # Basic auth splits user from password at the first ':', so the public key has none
        public = secret.replace(":", "")
        return (
            MailjetFake(public=public, private=secret),
            "mailjet://${PUB}:${PRIV}",
            {
                "PUB": public,
                "PRIV": secret,
            },
        )
    assert scheme == "ses"
    token = "tok+en/==" + secret
    fake = SESFake(access_key="AKIA%41TEST", secret_key=secret, session_token=token)
    url = "ses://${AK}:${SK}@eu-west-1?session_token=${TOKEN}"
    return fake, url, {"AK": "AKIA%41TEST", "SK": secret, "TOKEN": token}


@pytest.mark.parametrize("scheme", ["sendgrid", "postmark", "mailgun", "mailjet", "ses"])
def test_http_provider_receives_the_exact_key(tmp_path: Path, scheme: str) -> None:
    fake, url, values = _http_case(scheme)
    with fake:
        provider = {"url": url, "endpoint": fake.url, "timeout": {"read": 5}}
        campaign = write_campaign(tmp_path, [provider], n=2)
        run = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path, env=values)
        assert run.returncode == 0, run.stdout + run.stderr
        assert sorted(fake.accepted) == ["user0@example.test", "user1@example.test"]
    for text in (run.stdout, run.stderr):
        assert HTTP_SECRET not in text and quote(HTTP_SECRET, safe="") not in text


def _load(tmp_path: Path, url: str, env: dict[str, str], extra: str = "") -> Campaign:
    campaign = write_campaign(tmp_path, [{"url": url}], n=1, extra=extra)
    return load_campaign(campaign, env=_secret_env(**env))


# bytes as the environment gives them (os.environ decodes with surrogateescape)
ENV_BYTES = st.binary(min_size=1, max_size=24).filter(lambda b: b"\0" not in b)
ENV_VALUE = st.one_of(
    ENV_BYTES.map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.lists(
        st.sampled_from([*"%?#@:/&=+; ~$", "%41", "%2F", "%%", "ü", "😀", "a", "Z"]), min_size=1
    ).map("".join),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(user=ENV_VALUE, password=ENV_VALUE, token=ENV_VALUE)
def test_any_value_reaches_every_scheme_exactly(
    tmp_path_factory: pytest.TempPathFactory, user: str, password: str, token: str
) -> None:
    folder = tmp_path_factory.mktemp("exact")
    env = {"U": user, "P": password, "T": token}
    cases = {
        "smtp://${U}:${P}@mail.acme.example:587": (user, password),
        "smtps://${U}:${P}@mail.acme.example": (user, password),
        "ses://${U}:${P}@eu-west-1?session_token=${T}": (user, password),
        "mailgun://${P}@mg.acme.example": (password, None),
        "mailjet://${U}:${P}": (user, password),
        "sendgrid://${P}": (password, None),
        "brevo://${P}/": (password, None),
    }
    for url, (want_user, want_password) in cases.items():
        redact.clear()
        parsed = _load(folder, url, env).providers[0].parsed
        assert (parsed.user, parsed.password) == (want_user, want_password), url
        if parsed.scheme == "ses":
            assert parsed.options["session_token"] == token
        if parsed.scheme == "mailgun":
            assert parsed.host == "mg.acme.example"
        shown = str(parsed)
        assert not any(len(s) >= 4 and s in shown for s in (user, password, token)), url


MALFORMED = [
    "smtp://user:${S}@127.0.0.1:notaport",
    "smtp://user:${S}@127.0.0.1:99999",
    "smtp://user:${S}@",
    "smtp://user:${S}@mail.acme.example?tsl=none",
    "smtp://user:${S}@mail.acme.example?tls=${S}",
    "smtp://user:${S}@mail.acme.example?${S}=1",
    "smtp://${S}",
    "smtp://user:${S}@mail.acme.example:25#${S}",
    "sendgird://${S}",
    "sendgrid://${S}?region=asia",
    "sendgrid://${S}?${S}",
    "postmark://${S}?stream=a&steam=${S}",
    "mailgun://${S}@${S}?region=${S}",
    "ses://${S}:${S}@eu-west-1?session_token=${S}&bogus=1",
    "ses://${S}:${S}@${S}:${S}",
    "outbox://${S}?x=${S}",
    "${S}",
    "${S}://x",
    "smtp:${S}",
]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    pieces=st.lists(
        st.lists(
            st.sampled_from([*"%?#@:/&=+; ", "%41", "%2", "ü", "\\", "'", '"']), max_size=4
        ).map("".join),
        min_size=3,
        max_size=3,
    )
)
@example(pieces=["", "", ""])  # a host of letters only: valid, and lower-cased by urllib
@example(pieces=["", "%", ""])  # urllib lower-cases a host only up to its first '%'
def test_malformed_urls_never_show_the_secret(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[str]
) -> None:
    secret = f"{pieces[0]}{MARKERS[0]}{pieces[1]}{MARKERS[1]}{pieces[2]}"
    folder = tmp_path_factory.mktemp("malformed")
    for url in MALFORMED:
        redact.clear()
        try:
            campaign = _load(folder, url, {"S": secret})
        except ConfigError as exc:
            shown = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.args)
            assert not any(m in shown.upper() for m in MARKERS), f"{url}: {exc}"
            assert "providers[0].url" in str(exc) or "not set" in str(exc), str(exc)
        else:
            # a URL that turned out valid after all: its printable form hides the secret
            text = str(campaign.providers[0].parsed) + campaign.providers[0].label
            assert not any(m in text.upper() for m in MARKERS), f"{url}: {text}"


def test_malformed_url_errors_hold_no_secret_end_to_end(tmp_path: Path) -> None:
    secret = "ab%41c?QZX&#JVK"
    url = "smtp://user:${S}@127.0.0.1:notaport?tls=${S}"
    campaign = write_campaign(tmp_path, [{"url": url}], n=1)
    for args in (["check", campaign], send_args(campaign, tmp_path / "stamp.db")):
        run = run_stamp(*args, cwd=tmp_path, env={"S": secret, "STAMP_DEBUG": "1"})
        assert run.returncode == 2, run.stdout + run.stderr
        assert "providers[0].url" in run.stderr
        output = run.stdout + run.stderr
        assert not any(m in output.upper() for m in MARKERS), output


def test_a_whole_url_in_one_variable_is_read_as_a_url(tmp_path: Path) -> None:
    """``url: ${SMTP_URL}`` keeps working: that value is URL text, encoded by its author."""
    parsed = (
        _load(tmp_path, "${SMTP_URL}", {"SMTP_URL": "smtp://me:p%40ss%3Fx@mail.acme.example:2525"})
        .providers[0]
        .parsed
    )
    assert (parsed.user, parsed.password, parsed.host, parsed.port) == (
        "me",
        "p@ss?x",
        "mail.acme.example",
        2525,
    )


def test_literal_url_parts_are_decoded_once(tmp_path: Path) -> None:
    parsed = (
        _load(tmp_path, "ses://AK:se%2Bcr%25et@eu-west-1?session_token=a+b%2Fc", {})
        .providers[0]
        .parsed
    )
    # '%25' is one '%': decoded once, not twice; '+' is a plus sign, as AWS tokens need
    assert (parsed.user, parsed.password) == ("AK", "se+cr%et")
    assert parsed.options["session_token"] == "a+b/c"


def test_outbox_folder_from_a_variable(tmp_path: Path) -> None:
    folder = tmp_path / "out 100% ?#"
    parsed = _load(tmp_path, "outbox://${OUT}", {"OUT": str(folder)}).providers[0].parsed
    assert parsed.path == str(folder)
    assert _load(tmp_path, "outbox://out%20box/", {}).providers[0].parsed.path == str(
        tmp_path / "out box"
    )


# ----------------------------------------------------------------- files a campaign may read
# Issue "Safety first" 6: template, layout, attachments and images come from the campaign's
# folder (symlinks resolved) or an allow_paths: entry; never /proc, /sys, /dev, a dotenv file
# or anything but a regular file; an attachment holding a secret's value is refused.


def _files_campaign(folder: Path, extra: str, template: str = "t.html") -> Path:
    campaign = write_campaign(folder, [{"url": "outbox://out"}], n=1)
    text = campaign.read_text(encoding="utf-8").replace("template: t.html", f"template: {template}")
    campaign.write_text(text + extra, encoding="utf-8")
    return campaign


def _refusal(campaign: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_campaign(campaign, env=_secret_env(**(env or {})))
    return str(caught.value)


@pytest.mark.parametrize(
    ("extra", "key", "why"),
    [
        ("attachments: [/proc/self/environ]\n", "attachments[0]", "system file"),
        ("attachments: [/sys/kernel/notes]\n", "attachments[0]", "system file"),
        ("images: {logo: /dev/zero}\n", "images.logo", "system file"),
        ("attachments: [.env]\n", "attachments[0]", "dotenv file"),
        ("attachments: [config/.env.production]\n", "attachments[0]", "dotenv file"),
        ("attachments: [/etc/passwd]\n", "attachments[0]", "outside the campaign folder"),
        ("attachments: [../outside/report.pdf]\n", "attachments[0]", "outside"),
        ("layout: ~/layout.html\n", "layout", "outside"),
        ("attachments: [files/link.pdf]\n", "attachments[0]", "outside"),  # symlink out
        ("attachments: [files/null.pdf]\n", "attachments[0]", "system file"),  # -> /dev/null
        ("attachments: [files/pipe.pdf]\n", "attachments[0]", "not a regular file"),
        ("attachments: [files]\n", "attachments[0]", "not a regular file"),
        ("images: {logo: files/gone.png}\n", "images.logo", "no such file"),
    ],
)
def test_campaign_files_outside_or_special_are_refused(
    tmp_path: Path, extra: str, key: str, why: str
) -> None:
    folder = tmp_path / "campaign"
    (folder / "files").mkdir(parents=True)
    (folder / "config").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "report.pdf").write_bytes(b"%PDF-1.7 outside")
    (folder / ".env").write_text("X=1\n")
    (folder / "config" / ".env.production").write_text("Y=2\n")
    os.symlink(tmp_path / "outside" / "report.pdf", folder / "files" / "link.pdf")
    os.symlink("/dev/null", folder / "files" / "null.pdf")
    os.mkfifo(folder / "files" / "pipe.pdf")
    message = _refusal(_files_campaign(folder, extra))
    assert f": {key}: " in message and why in message, message
    assert "campaign.yml:" in message  # file and line


@pytest.mark.parametrize("template", ["../../../../../../etc/passwd", "../outside.html"])
def test_a_template_from_outside_is_refused(tmp_path: Path, template: str) -> None:
    folder = tmp_path / "campaign"
    folder.mkdir()
    (tmp_path / "outside.html").write_text("<p>outside</p>")
    message = _refusal(_files_campaign(folder, "", template=template))
    assert ": template: " in message and "outside the campaign folder" in message, message


def test_allow_paths_lets_one_folder_in(tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    folder.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "layout.html").write_text("<html>{{ content }}</html>")
    (shared / "terms.pdf").write_bytes(b"%PDF-1.7 terms")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.pdf").write_bytes(b"%PDF-1.7 x")
    files = "layout: ../shared/layout.html\nattachments: [../shared/terms.pdf]\n"
    assert "allow_paths:" in _refusal(_files_campaign(folder, files))
    loaded = load_campaign(
        _files_campaign(folder, files + "allow_paths: [../shared]\n"), env=_secret_env()
    )
    assert loaded.attachments == [shared / "terms.pdf"]
    assert loaded.allow_paths == [shared]
    # only that folder: a sibling stays outside, and /proc stays refused even when listed
    other = files + "allow_paths: [../shared, /proc]\nimages: {logo: ../other/x.pdf}\n"
    assert "images.logo" in _refusal(_files_campaign(folder, other))
    environ = "attachments: [/proc/self/environ]\nallow_paths: [/proc]\n"
    assert "system file" in _refusal(_files_campaign(folder, environ))
    assert "allow_paths[0]: no such folder" in _refusal(
        _files_campaign(folder, "allow_paths: [../typo]\n")
    )


@pytest.mark.parametrize("where", ["url", "unsubscribe", "dotenv"])
def test_an_attachment_holding_a_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    folder = tmp_path / "campaign"
    (folder / "files").mkdir(parents=True)
    key = "SG.attach-me-not-5f0c2b"
    secret = {"url": key, "unsubscribe": UNSUB_SECRET, "dotenv": "dotenv-value-9c1e"}[where]
    (folder / "files" / "notes.txt").write_bytes(b"minutes\n" + secret.encode() + b"\nend\n")
    (folder / ".env").write_text("FROM_DOTENV=dotenv-value-9c1e\n")
    campaign = _files_campaign(folder, "attachments: [files/notes.txt]\n")
    text = campaign.read_text().replace("outbox://out", "sendgrid://${SG_KEY}")
    campaign.write_text(text)
    if where == "dotenv":
        # env=None: load_campaign reads the .env next to the campaign, as the CLI does
        # (FROM_DOTENV set here too only so that monkeypatch restores the environment)
        monkeypatch.setenv("SG_KEY", key)
        monkeypatch.setenv("FROM_DOTENV", "dotenv-value-9c1e")
        with pytest.raises(ConfigError) as caught:
            load_campaign(campaign)
        message = str(caught.value)
    else:
        message = _refusal(campaign, {"SG_KEY": key})
    assert "attachments[0]" in message and "contains the value of a secret" in message
    assert secret not in message


def test_short_secrets_are_not_looked_for_in_attachments(tmp_path: Path) -> None:
    """Below 8 characters a value turns up by chance; only longer ones refuse a file."""
    folder = tmp_path / "campaign"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "notes.txt").write_text("port 2525, region eu")
    extra = "attachments: [files/notes.txt]\nvariables: {port: '${PORT}'}\n"
    loaded = load_campaign(_files_campaign(folder, extra), env=_secret_env(PORT="2525"))
    assert loaded.attachments == [folder / "files" / "notes.txt"]


def test_proc_environ_is_refused_end_to_end(tmp_path: Path) -> None:
    campaign = _files_campaign(tmp_path, "attachments: [/proc/self/environ]\n")
    for args in (["check", campaign], send_args(campaign, tmp_path / "stamp.db")):
        run = run_stamp(*args, cwd=tmp_path, env={"API_KEY": "environ-secret-8d2a41"})
        assert run.returncode == 2, run.stdout + run.stderr
        assert "attachments[0]" in run.stderr and "Traceback" not in run.stderr
        assert "environ-secret" not in run.stdout + run.stderr
    assert not list(tmp_path.glob("out/*.eml"))


# --------------------------------------------------------------------------- template vs template

MANY = "email,first_name\n" + "".join(f"u{i}@example.com,Name{i}\n" for i in range(25))


def _sent(folder: Path) -> list[Any]:
    return [parse(p.read_bytes()) for p in sorted((folder / "out").rglob("*.eml"))]


@pytest.mark.parametrize(
    "idiom",
    [
        "{% set _ = items.append(first_name) %}{{ items | join(',') }}",
        "{% set _ = seen.update({email: first_name}) %}{{ seen | length }}",
        "{% set _ = contact.clear() %}{{ contact | length }}",
    ],
)
def test_one_recipients_render_never_reaches_another(tmp_path: Path, idiom: str) -> None:
    """The append idiom leaks nothing: refused, so no message is sent with another's data."""
    yml = write_render_campaign(
        tmp_path,
        template=f"<p>{idiom}</p><a href='{{{{ unsubscribe_url }}}}'>u</a>",
        csv=MANY,
        variables={"items": [], "seen": {}},
    )
    result = run_stamp(*send_args(yml, tmp_path / "stamp.db"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "t.html:1" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for message in _sent(tmp_path):  # whatever went out holds no other name
        body = message.get_body(("html",)).get_content()
        assert len(re.findall(r"Name\d+", body)) <= 1


def test_an_oversized_template_is_refused_by_send_in_bounded_memory(
    tmp_path: Path, baseline: int
) -> None:
    yml = write_render_campaign(
        tmp_path,
        template="<p>Hi</p>\n<p>{{ 'x' * 10**9 }}</p><a href='{{ unsubscribe_url }}'>u</a>",
        csv=MANY,
    )
    result, peak = run_measured(*send_args(yml, tmp_path / "stamp.db"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "t.html:2" in result.stdout + result.stderr
    assert _sent(tmp_path) == []
    assert peak - baseline < RSS_BOUND_KB, f"{peak - baseline} KiB over start-up"


def test_a_text_template_is_sent_as_text(tmp_path: Path) -> None:
    yml = write_render_campaign(
        tmp_path,
        template="Hi {{ first_name }},\n\nwrite to <sig@example.com>.\n\n"
        "Unsubscribe: {{ unsubscribe_url }}\n",
        template_name="t.txt",
        csv=MANY,
    )
    check = run_stamp("check", yml, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = run_stamp(*send_args(yml, tmp_path / "stamp.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = _sent(tmp_path)
    assert len(sent) == 25
    for message in sent:
        assert message.get_content_type() == "text/plain"
        text = message.get_content().replace("\r\n", "\n")
        assert re.match(
            r"Hi Name\d+,\n\nwrite to <sig@example.com>\.\n\nUnsubscribe: https://", text
        )
