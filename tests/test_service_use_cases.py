"""The other use cases called as a library (no CLI): lists, suppressions, preview, check,
provider checks, test messages; and the public names of ``stampcli``."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import pytest
from smtp_server import smtp_server

import stampcli
from stampcli.errors import InputError, StampError
from stampcli.service import lists, preview, providers, send, suppressions
from stampcli.store.db import Store
from stampcli.store.location import StoreChoice

NAME = "lib-news"


def write_campaign(tmp_path: Path, provider: str = "outbox://out", audience: str = "") -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text(
        "email,first_name\nann@x.test,Ann\nbob@x.test,Bob\nnot-an-address,X\n"
    )
    path = tmp_path / "campaign.yml"
    path.write_text(
        f"name: {NAME}\n"
        'from: "ACME News <news@acme.example>"\n'
        'subject: "{{ first_name }}, what is new"\n'
        "template: t.html\n"
        "transactional: true\n"
        + (audience or "audience:\n  file: list.csv\n")
        + f"providers:\n  - url: {provider}\n"
    )
    return path


def choice(path: Path) -> StoreChoice:
    return StoreChoice(path, "test")


# --------------------------------------------------------------------------- lists


def test_import_list_reports_counts_and_writes_the_rejects(tmp_path: Path) -> None:
    file = tmp_path / "people.csv"
    file.write_text("Email,Name\nann@x.test,Ann\nANN@x.test,Dup\nnope,Bad\nbob@x.test,Bob\n")
    seen: list[tuple[int, int | None, str]] = []
    opened: list[bool] = []
    result = stampcli.import_list(
        file,
        " members ",
        choice(tmp_path / "s.db"),
        on_progress=lambda done, total, unit: seen.append((done, total, unit)),
        on_open=lambda c: opened.append(c.path == tmp_path / "s.db"),
    )
    assert (result.counts.new, result.duplicates, result.rejected) == (2, 1, 1)
    assert result.list_name == "members" and result.email_column == "Email"
    assert result.rejects_file == tmp_path / "people.rejected.csv"
    assert "nope" in result.rejects_file.read_text(encoding="utf-8-sig")
    assert result.first_rejects[0].row == 4
    assert result.as_dict()["new"] == 2 and result.as_dict()["list"] == "members"
    assert opened == [True] and seen and seen[-1][2] == "bytes"
    with Store(tmp_path / "s.db") as store:
        again = lists.import_list(file, "members", store)  # an open store works as well
        summaries = lists.list_summaries(store)
    assert again.counts.unchanged == 2 and again.counts.new == 0
    assert [(s.name, s.contacts) for s in summaries] == [("members", 2)]
    assert summaries[0].as_dict()["fields"] == summaries[0].fields


def test_a_bad_list_file_creates_no_store(tmp_path: Path) -> None:
    file = tmp_path / "people.csv"
    file.write_text("name,phone\nAnn,1\n")
    with pytest.raises(InputError):
        stampcli.import_list(file, "members", choice(tmp_path / "s.db"))
    assert not (tmp_path / "s.db").exists()
    assert lists.list_summaries(choice(tmp_path / "s.db")) == []


# --------------------------------------------------------------------------- suppressions


def test_suppressions_add_remove_list_export_import(tmp_path: Path) -> None:
    db = choice(tmp_path / "s.db")
    added = stampcli.add_suppressions(db, [" Ann@X.test ", "bob@x.test"], reason="complaint")
    assert (added.addresses, added.new, added.reason) == (2, 2, "complaint")
    assert [s.key for s in stampcli.list_suppressions(db)] == ["ann@x.test", "bob@x.test"]
    assert stampcli.list_suppressions(db, reason="hard_bounce") == []
    stream = io.StringIO()
    assert stampcli.export_suppressions(db, stream=stream) == 2
    removed = stampcli.remove_suppressions(db, ["ann@x.test", "cy@x.test"])
    assert (removed.removed, removed.missing) == (1, 1)
    exported = tmp_path / "export.csv"
    exported.write_text(stream.getvalue())
    back = stampcli.import_suppressions(db, exported)
    assert (back.found, back.new, back.already) == (2, 1, 1)
    assert back.as_dict()["format"] == back.format


def test_bad_addresses_are_named_and_nothing_is_created(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'nope'"):
        suppressions.add_suppressions(choice(tmp_path / "s.db"), ["ok@x.test", "nope"])
    with pytest.raises(StampError):
        suppressions.add_suppressions(choice(tmp_path / "s.db"), ["ok@x.test"], reason="why")
    assert not (tmp_path / "s.db").exists()
    with pytest.raises(InputError, match="xlsx needs --output"):
        suppressions.export_suppressions(choice(tmp_path / "s.db"), xlsx=True)


def test_pull_skips_a_provider_without_a_suppression_api(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    result = stampcli.pull_suppressions(campaign, choice(tmp_path / "s.db"))
    assert result.error() is None and result.new == 0
    assert result.as_dict()["providers"][0]["skipped"]


# --------------------------------------------------------------------------- preview, check


def test_preview_and_check(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    shown = stampcli.preview_message(campaign, email="BOB@x.test")
    assert shown.contact.key == "bob@x.test" and shown.message.subject == "Bob, what is new"
    assert b"Hello Bob" in shown.content(preview.Format.html)
    assert shown.as_dict()["to"].endswith("bob@x.test")
    with pytest.raises(InputError, match="rejected"):
        preview.preview_message(campaign, row=4)
    checked = stampcli.check_campaign(campaign)
    assert checked.report.recipients == 2 and checked.ok
    assert checked.as_dict()["rejected"][0]["row"] == 4


def test_check_reports_a_missing_variable_as_an_error(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    (tmp_path / "t.html").write_text("<p>{{ nickname }}</p>")
    checked = stampcli.check_campaign(stampcli.load_campaign(path))
    assert not checked.ok and checked.as_dict()["errors"]


# --------------------------------------------------------------------------- providers


def test_check_providers_against_a_real_smtp_server(tmp_path: Path) -> None:
    with smtp_server() as server:
        url = f"smtp://127.0.0.1:{server.port}"
        campaign = stampcli.load_campaign(write_campaign(tmp_path, url))
        result = asyncio.run(stampcli.check_providers(campaign))
    assert result.ok and not result.none_ready
    assert result.as_dict()[0]["ok"] is True


def test_check_providers_says_when_none_is_ready(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path, "smtp://127.0.0.1:1"))
    result = asyncio.run(providers.check_providers(campaign))
    assert not result.ok and result.none_ready
    assert result.checks[0].report.detail


# --------------------------------------------------------------------------- --test-to


def test_a_test_message_goes_to_the_test_address_only(tmp_path: Path) -> None:
    with smtp_server() as server:
        url = f"smtp://127.0.0.1:{server.port}"
        campaign = stampcli.load_campaign(write_campaign(tmp_path, url))
        plan = stampcli.prepare_test(campaign, "me@test.example", row=3)
        assert plan.contact.key == "bob@x.test" and plan.where == "row 3"
        sent = asyncio.run(stampcli.send_test_message(plan))
        assert server.count("me@test.example") == 1 and server.count("bob@x.test") == 0
    assert sent.as_dict()["outcome"] == "accepted" and sent.as_dict()["recipient"] == "bob@x.test"
    assert not (tmp_path / "stamp.db").exists()  # no ledger, no store
    with pytest.raises(InputError, match="--test-to"):
        send.prepare_test(campaign, "not an address")


# --------------------------------------------------------------------------- the package


def test_the_public_names_resolve_and_import_stampcli_stays_cheap() -> None:
    for name in stampcli.__all__:
        assert getattr(stampcli, name) is not None
    with pytest.raises(AttributeError):
        _ = stampcli.no_such_name  # type: ignore[attr-defined]
    code = "import sys, stampcli; print(any(m.startswith('stampcli.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
