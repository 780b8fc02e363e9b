"""The audience pipeline and the list store: dedupe, rejects, segments, exclusions, upserts."""

from __future__ import annotations

import csv
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampcli.audience.resolve import AudienceStats, iter_audience, read_contacts
from stampcli.config import Campaign
from stampcli.errors import ConfigError, InputError, StoreError
from stampcli.records import Contact
from stampcli.store import contacts as store_contacts
from stampcli.store.contacts import iter_list, list_summaries, upsert_contacts
from stampcli.store.db import Store

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "lists"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "stamp.db") as s:
        yield s


def campaign(tmp_path: Path, **audience: Any) -> Campaign:
    template = tmp_path / "t.html"
    template.write_text("<p>hi</p>")
    return Campaign.model_validate(
        {
            "name": "test",
            "from": "News <news@example.com>",
            "subject": "Hello",
            "template": template,
            "audience": audience,
            "providers": [{"url": f"outbox://{tmp_path / 'out'}"}],
            "path": tmp_path / "campaign.yml",
        }
    )


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_read_contacts_dedupes_and_keeps_rejects(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.csv",
        "Email Address,name\n"
        " Anna@Example.COM ,Anna\n"
        "bad-address,Nobody\n"
        "anna@example.com,Anna again\n"
        ",Empty\n"
        "bob@bücher.example,Bob\n",
    )
    stats = AudienceStats()
    got = list(read_contacts(path, stats=stats))
    assert [(c.key, c.email, c.row) for c in got] == [
        ("anna@example.com", "Anna@example.com", 2),
        ("bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example", 6),
    ]
    assert got[0].fields == {"Email Address": "Anna@Example.COM", "name": "Anna"}
    assert (stats.rows, stats.contacts, stats.duplicates) == (5, 2, 1)
    assert [(r.row, r.reason) for r in stats.rejected] == [
        (3, "not an email address: no @ sign"),
        (5, "no address in column 'Email Address'"),
    ]
    assert stats.rejected[0].values == {"Email Address": "bad-address", "name": "Nobody"}


def test_read_contacts_explicit_column_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "Kontakt;Name\na@example.com;A\n")
    with pytest.raises(InputError, match=r"l\.csv: no email column found; the columns are"):
        read_contacts(path, stats=AudienceStats())
    got = list(read_contacts(path, email_column="kontakt", stats=AudienceStats()))
    assert got[0].email == "a@example.com"
    with pytest.raises(InputError, match=r"no column named 'mail'"):
        read_contacts(path, email_column="mail", stats=AudienceStats())


def test_several_email_like_columns_need_a_choice(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "Home Email,Private Email\na@example.com,b@example.com\n")
    with pytest.raises(InputError, match=r"several columns could hold the email address"):
        read_contacts(path, stats=AudienceStats())


def test_example_csv_and_xlsx_give_the_same_contacts() -> None:
    csv_contacts = list(read_contacts(EXAMPLES / "customers.csv", stats=AudienceStats()))
    xlsx_contacts = list(read_contacts(EXAMPLES / "customers.xlsx", stats=AudienceStats()))
    assert len(csv_contacts) == 25
    assert [(c.key, c.fields) for c in csv_contacts] == [(c.key, c.fields) for c in xlsx_contacts]
    names = {c.fields["first_name"] for c in csv_contacts}
    assert "Jürgen" in names
    assert "anna@xn--bcher-kva.example" in {c.key for c in csv_contacts}


def test_messy_example(tmp_path: Path) -> None:
    stats = AudienceStats()
    got = list(read_contacts(EXAMPLES / "messy.csv", stats=stats))
    assert stats.duplicates == 1
    assert {r.reason for r in stats.rejected} >= {"not an email address: no @ sign"}
    assert any(c.fields["Vorname"] == "Jürgen" for c in got)  # cp1252 decoded
    assert any(c.fields["Nachname"] == "Huber; Mag." for c in got)  # quoted delimiter


def test_iter_audience_file_with_segment(tmp_path: Path) -> None:
    camp = campaign(
        tmp_path,
        file=str(EXAMPLES / "customers.csv"),
        segment="country == 'DE' and plan in ['pro', 'team']",
    )
    stats = AudienceStats()
    got = list(iter_audience(camp, None, stats))
    assert got and all(c.fields["country"] == "DE" for c in got)
    assert all(c.fields["plan"] in ("pro", "team") for c in got)
    assert stats.contacts == len(got)
    assert stats.segment_excluded == 25 - len(got)


def test_iter_audience_counts_segment_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.csv", "email,seats\na@example.com,3\nb@example.com,many\nc@example.com,9\n"
    )
    camp = campaign(tmp_path, file=str(path), segment="seats | int(-1) > 5 and (seats | int) > 0")
    stats = AudienceStats()
    assert [c.email for c in iter_audience(camp, None, stats)] == ["c@example.com"]
    assert stats.segment_excluded == 2
    camp = campaign(tmp_path, file=str(path), segment="seats > 5")
    stats = AudienceStats()
    assert list(iter_audience(camp, None, stats)) == []
    assert stats.segment_errors == 3
    assert stats.first_segment_error is not None and "seats > 5" in stats.first_segment_error


def test_iter_audience_bad_segment_fails_before_reading(tmp_path: Path) -> None:
    camp = campaign(tmp_path, file=str(EXAMPLES / "customers.csv"), segment="country ==")
    with pytest.raises(ConfigError, match=r"segment 'country ==' is not a valid expression"):
        iter_audience(camp, None, AudienceStats())
    camp = campaign(tmp_path, file=str(EXAMPLES / "customers.csv"), segment="contry == 'DE'")
    with pytest.raises(ConfigError, match=r"did you mean 'country'"):
        iter_audience(camp, None, AudienceStats())


def contacts(*emails: str, **fields: str) -> list[Contact]:
    return [Contact(e.lower(), e, dict(fields, email=e), 0) for e in emails]


def test_upsert_counts_and_reimport_changes_nothing(store: Store) -> None:
    first = upsert_contacts(store, "news", contacts("a@example.com", "b@example.com", plan="pro"))
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    before = store_contacts.stored(store, "news")
    listed = list_summaries(store)
    again = upsert_contacts(store, "news", contacts("a@example.com", "b@example.com", plan="pro"))
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert store_contacts.stored(store, "news") == before  # not written: updated_at kept
    assert list_summaries(store) == listed
    third = upsert_contacts(store, "news", contacts("b@example.com", "c@example.com", plan="team"))
    assert (third.new, third.updated, third.unchanged) == (1, 1, 0)


def test_upsert_merges_fields(store: Store) -> None:
    upsert_contacts(
        store, "l", [Contact("a@example.com", "a@example.com", {"plan": "pro", "x": "1"})]
    )
    upsert_contacts(store, "l", [Contact("a@example.com", "A@example.com", {"plan": "team"})])
    (got,) = list(iter_list(store, "l"))
    assert got.email == "A@example.com"
    assert got.fields["plan"] == "team" and got.fields["x"] == "1"
    assert got.fields["added_at"].endswith("Z")


def test_iter_list_in_import_order_and_summaries(store: Store) -> None:
    emails = [f"u{i}@example.com" for i in range(25_000)]  # spans pages of BATCH
    upsert_contacts(store, "big", contacts(*emails, country="DE"))
    upsert_contacts(store, "small", [Contact("z@example.org", "z@example.org", {"Name": "Z"})])
    assert [c.email for c in iter_list(store, "big")] == emails
    summaries = {s.name: s for s in list_summaries(store)}
    assert summaries["big"].contacts == 25_000
    assert summaries["big"].fields == ["country", "email"]
    assert summaries["small"].fields == ["Name"]


def test_missing_list_names_the_existing_ones(store: Store) -> None:
    upsert_contacts(store, "customers", contacts("a@example.com"))
    with pytest.raises(InputError, match=r"no list named 'custmers'.*'customers'"):
        iter_list(store, "custmers")


def test_interrupted_import_leaves_whole_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_contacts, "BATCH", 100)

    def dying() -> Iterator[Contact]:
        for i in range(250):
            yield Contact(f"u{i}@example.com", f"u{i}@example.com", {"n": str(i)})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upsert_contacts(store, "l", dying())
    assert len(store_contacts.stored(store, "l")) == 200
    rerun = upsert_contacts(
        store,
        "l",
        (Contact(f"u{i}@example.com", f"u{i}@example.com", {"n": str(i)}) for i in range(250)),
    )
    assert (rerun.new, rerun.unchanged) == (50, 200)


def test_lists_audience_union_exclusion_and_segment(tmp_path: Path, store: Store) -> None:
    upsert_contacts(store, "a", contacts("x@example.com", "y@example.com", plan="pro"))
    upsert_contacts(store, "b", contacts("y@example.com", "z@example.com", plan="free"))
    upsert_contacts(store, "unsubscribed", contacts("z@example.com"))
    camp = campaign(tmp_path, list=["a", "b"], exclude_lists=["unsubscribed"])
    stats = AudienceStats()
    assert [c.email for c in iter_audience(camp, store, stats)] == [
        "x@example.com",
        "y@example.com",
    ]
    assert (stats.rows, stats.duplicates, stats.list_excluded) == (4, 1, 1)
    camp = campaign(tmp_path, list="a", segment="plan == 'pro' and added_at > '2000'")
    assert len(list(iter_audience(camp, store, AudienceStats()))) == 2
    typo = campaign(tmp_path, list=["a", "b"], segment="Plan == 'pro' or contry == 'DE'")
    with pytest.raises(ConfigError, match=r"'contry'.*list 'a', 'b'; the columns are: plan, email"):
        iter_audience(typo, store, AudienceStats())
    with pytest.raises(ConfigError, match="need the store"):
        iter_audience(camp, None, AudienceStats())
    with pytest.raises(InputError, match="no list named 'nope'"):
        iter_audience(campaign(tmp_path, list="nope"), store, AudienceStats())


def test_file_audience_minus_excluded_list(tmp_path: Path, store: Store) -> None:
    upsert_contacts(store, "blocked", contacts("J.Smith@example.com"))
    camp = campaign(tmp_path, file=str(EXAMPLES / "customers.csv"), exclude_lists=["blocked"])
    stats = AudienceStats()
    got = list(iter_audience(camp, store, stats))
    assert len(got) == 24 and stats.list_excluded == 1
    assert "j.smith@example.com" not in {c.key for c in got}


def test_store_errors_are_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        s = Store(path)
        list_summaries(s)
    assert not isinstance(sqlite3.Error(), StoreError)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.text(max_size=30), min_size=1, max_size=4),
        max_size=15,
    )
)
def test_every_row_becomes_a_contact_a_duplicate_or_a_rejection(rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["email", "a", "b"])
            writer.writerows(rows)
        stats = AudienceStats()
        try:
            got = list(read_contacts(path, stats=stats))
        except InputError as exc:
            assert str(path) in str(exc)
            return
        assert stats.rows == len(got) + stats.duplicates + len(stats.rejected)
        assert len({c.key for c in got}) == len(got)
        assert all(r.reason and r.row >= 2 for r in stats.rejected)


def test_repeated_key_across_batches_of_a_fresh_list(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_contacts, "BATCH", 2)
    got = upsert_contacts(store, "l", contacts("a@example.com", "b@example.com", "A@example.com"))
    assert (got.new, got.updated, got.unchanged) == (2, 0, 1)
    assert [c.email for c in iter_list(store, "l")] == ["a@example.com", "b@example.com"]


def test_rejects_can_stream_instead_of_filling_memory(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "email\n" + "".join(f"bad{i}\n" for i in range(5_000)))
    streamed: list[int] = []
    stats = AudienceStats(on_reject=lambda rej: streamed.append(rej.row))
    assert list(read_contacts(path, stats=stats)) == []
    assert stats.rejected == [] and stats.rejected_count == 5_000
    assert streamed == list(range(2, 5_002))


def test_repeated_key_within_a_batch_of_a_fresh_list_is_folded(store: Store) -> None:
    got = upsert_contacts(store, "l", contacts("a@example.com", "b@example.com", "A@example.com"))
    assert (got.new, got.updated, got.unchanged) == (2, 1, 0)
    assert [c.email for c in iter_list(store, "l")] == ["A@example.com", "b@example.com"]


def test_stored_fields_are_the_json_encoders_text() -> None:
    import json

    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for fields in (
        {},
        {"email": "a@example.com", "Name": 'Zoë "Z" O\'Neil\\', "%s": "%d 100%"},
        {"a\n": "\x00\x1f\u2028", "b": ""},
        {"email": "a@example.com", "n": 3, "x": None},  # not all text: the encoder's answer
        {"email": "a@example.com", "Name": "Z"},  # the first names again, in another order
        {"Name": "Z", "email": "a@example.com"},
    ):
        assert store_contacts._dumps(fields) == encode(fields)
        assert json.loads(store_contacts._dumps(fields)) == fields


def test_keyset_first_row_names_the_first_row_also_past_the_spill() -> None:
    from stampcli.audience.keyset import KeySet

    with KeySet(limit=3) as seen:
        assert [seen.first_row(k, r) for r, k in enumerate("abcd", start=2)] == [None] * 4
        assert seen.spilled == 4  # moved to disk at the fourth key
        assert seen.first_row("b", 9) == 3
        assert seen.first_row("e", 10) is None
        assert seen.first_row("e", 11) == 10
