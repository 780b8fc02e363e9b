"""JSON-object columns, tags and exported subscriber states (listmonk, Mailchimp) on import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from render_helpers import SECRET, write_campaign
from typer.testing import CliRunner

from stampcli.audience.resolve import AudienceStats, read_contacts
from stampcli.audience.segment import compile_segment
from stampcli.audience.shapes import tag_list
from stampcli.cli.app import app
from stampcli.errors import ConfigError
from stampcli.records import Contact
from stampcli.store import open_store

runner = CliRunner()

LISTMONK = (
    "uuid,email,name,attributes,status,created_at,updated_at\n"
    'u1,anna@example.com,Anna,"{""city"": ""Berlin"", ""plan"": {""tier"": 2}}",enabled,'
    "2024-01-01 10:00:00,2024-01-02 10:00:00\n"
    'u2,bob@example.com,Bob,"{""city"": ""Paris""}",blocklisted,'
    "2024-01-01 10:00:00,2024-01-02 10:00:00\n"
    "u3,cara@example.com,Cara,{},disabled,2024-01-01 10:00:00,2024-01-02 10:00:00\n"
    'u4,dan@example.com,Dan,"{""city"": ",enabled,2024-01-01 10:00:00,2024-01-02 10:00:00\n'
)
MAILCHIMP = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,TAGS\n"
    'vip@example.com,Vi,P,2,2024-01-01,"""VIP"",""Customer"""\n'
    'gold@example.com,Go,Ld,2,2024-01-01,"""VIP Gold"""\n'
    "none@example.com,No,Ne,2,2024-01-01,\n"
)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)


def stamp(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_json_object_column_becomes_nested_fields(tmp_path: Path) -> None:
    stats = AudienceStats()
    got = list(read_contacts(write(tmp_path / "l.csv", LISTMONK), stats=stats))
    anna = next(c for c in got if c.key == "anna@example.com")
    assert anna.fields["attributes"] == {"city": "Berlin", "plan": {"tier": 2}}
    assert next(c for c in got if c.key == "cara@example.com").fields["attributes"] == {}
    broken = "column 'attributes' holds JSON objects, but this cell is broken (Expecting value)"
    assert [(r.row, r.reason) for r in stats.rejected] == [(5, broken)]
    seg = compile_segment("attributes.city == 'Berlin' and attributes.plan.tier > 1")
    assert [c.key for c in got if seg.matches(c)] == ["anna@example.com"]


def test_a_column_with_some_text_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "email,note\na@example.com,{curly}\nb@example.com,plain\n")
    got = list(read_contacts(path, stats=AudienceStats()))
    assert [c.fields["note"] for c in got] == ["{curly}", "plain"]


def test_tags_become_a_list_and_has_tag_matches_whole_tags(tmp_path: Path) -> None:
    got = list(read_contacts(write(tmp_path / "mc.csv", MAILCHIMP), stats=AudienceStats()))
    assert [c.fields["TAGS"] for c in got] == [["VIP", "Customer"], ["VIP Gold"], []]
    seg = compile_segment("has_tag('VIP')")
    assert [c.key for c in got if seg.matches(c)] == ["vip@example.com"]
    assert compile_segment("has_tag('vip gold')").matches(got[1])
    assert not compile_segment("'VIP' in TAGS").matches(got[1])  # a list, not text
    # a list imported before tags were parsed still has its text
    old = Contact("o@example.com", "o@example.com", {"tags": '"VIP","Customer"'}, 2)
    assert seg.matches(old)
    assert tag_list("VIP, Customer ,") == ["VIP", "Customer"]
    with pytest.raises(ConfigError, match="has no tags column"):
        seg.check_columns(["email", "name"], "list.csv")


def test_import_suppresses_listmonk_blocklisted_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    src = write(tmp_path / "listmonk.csv", LISTMONK)
    code, out, err = stamp("import", str(src), "--list", "lm", "--db", str(db))
    assert code == 0, err
    assert "3 new" in out and "1 rejected" in out
    assert "1 address suppressed, as the listmonk 'status' column says (1 unsubscribed)" in out
    with open_store(db) as store:
        sup = store.suppressions.get("bob@example.com")
        assert sup is not None and sup.reason == "unsubscribed"
        assert sup.detail == "listmonk: blocklisted"
        assert store.suppressions.get("cara@example.com") is None  # disabled is not a block
        anna = next(c for c in store.contacts.iter_list("lm") if c.key == "anna@example.com")
        assert anna.fields["attributes"]["plan"] == {"tier": 2}


def test_import_of_mailchimp_unsubscribed_and_cleaned_exports(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    unsub = write(
        tmp_path / "unsubscribed.csv",
        "Email Address,First Name,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_REASON\n"
        "gone@example.com,Gone,2024-02-01 10:00:00,March news,No longer interested\n"
        "spam@example.com,Spam,2024-02-01 10:00:00,March news,Abuse report\n",
    )
    cleaned = write(
        tmp_path / "cleaned.csv",
        "Email Address,First Name,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE\n"
        "dead@example.com,Dead,2024-02-01 10:00:00,March news\n",
    )
    code, out, err = stamp("import", str(unsub), "--list", "mc", "--db", str(db), "--json")
    assert code == 0, err
    assert json.loads(out)["suppressed"] == 2
    code, out, err = stamp("import", str(cleaned), "--list", "mc", "--db", str(db))
    assert code == 0, err
    assert "1 address suppressed, as the Mailchimp cleaned export says (1 hard_bounce)" in out
    with open_store(db) as store:
        got = {s.key: (s.reason, s.detail) for s in store.suppressions.iter_suppressions()}
    assert got == {
        "gone@example.com": ("unsubscribed", "Mailchimp: unsubscribed (No longer interested)"),
        "spam@example.com": ("complaint", "Mailchimp: unsubscribed (Abuse report)"),
        "dead@example.com": ("hard_bounce", "Mailchimp: cleaned after March news"),
    }


def test_campaign_from_an_export_skips_blocklisted_and_templates_see_nested_fields(
    tmp_path: Path,
) -> None:
    yml = write_campaign(
        tmp_path,
        template="<p>Hi {{ name }} from {{ attributes.city }}, tier {{ attributes.plan.tier }}</p>",
        csv=LISTMONK,
        subject="News for {{ contact.attributes.city }}",
    )
    result = runner.invoke(app, ["preview", str(yml), "--format", "eml"])
    assert result.exit_code == 0, result.output
    assert "Subject: News for Berlin" in result.output
    assert "from Berlin, tier 2" in result.output
    result = runner.invoke(app, ["preview", str(yml), "--email", "bob@example.com"])
    assert result.exit_code == 2 and "bob@example.com" in result.output
