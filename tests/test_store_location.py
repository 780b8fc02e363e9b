"""Which store a command uses ("Safety first", item 1): never the working directory by accident.

A campaign's store is ``--db``, else its ``store:`` key (relative to the file),
else ``$STAMP_DB``, else ``stamp.db`` beside the campaign file; ``stamp import
FILE`` uses FILE's folder; commands without a file use ``./stamp.db``. A send
that creates a store says so in every log format, and a store that never saw
the campaign while a trail of an earlier send exists is refused until
``--new-store``. The crash window (how many ``unknown`` rows can in fact have
gone out) is in ``stamp status`` and in the notice after a crash.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    UNSUB_SECRET,
    UNSUBSCRIBE,
    addresses,
    json_lines,
    run_stamp,
    summary_of,
)
from smtp_server import SMTPTestServer
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.config import load_campaign
from stampcli.delivery import recorder
from stampcli.delivery.crashwindow import crash_window, on_wire_bound
from stampcli.errors import ConfigError
from stampcli.store import campaigns, ledger
from stampcli.store.db import Store
from stampcli.store.location import for_campaign, for_file, standalone

runner = CliRunner()
NAME = "news"
N = 25


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUB_SECRET)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $STAMP_DB (the suite sets one for every test): the files decide."""
    monkeypatch.delenv("STAMP_DB", raising=False)


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="none") as srv:
        yield srv


def write_campaign(folder: Path, provider: str, *, extra: str = "", n: int = N) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.html").write_text("<p>Hello {{ first_name }}</p>", encoding="utf-8")
    rows = "".join(f"{a},P{i}\n" for i, a in enumerate(addresses(n)))
    (folder / "list.csv").write_text("email,first_name\n" + rows, encoding="utf-8")
    path = folder / "campaign.yml"
    path.write_text(
        f"name: {NAME}\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n" + UNSUBSCRIBE + "audience:\n  file: list.csv\n"
        f'providers:\n  - url: "{provider}"\n' + extra,
        encoding="utf-8",
    )
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def sent_count(db: Path, name: str = NAME) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM ledger JOIN campaigns ON campaigns.id = campaign_id "
            "WHERE campaigns.name = ? AND state = 'sent'",
            (name,),
        ).fetchone()
    return int(n)


# --------------------------------------------------------------------------- the case


def test_a_send_from_another_working_directory_after_a_completed_send_sends_0(
    tmp_path: Path, server: SMTPTestServer, no_env: None
) -> None:
    news = tmp_path / "srv" / "news"
    campaign = write_campaign(news, server.url("smtp", tls="none"))
    # the two unsubscribed people, suppressed from inside the campaign's folder
    gone = addresses(N)[:2]
    done = run_stamp("suppress", "add", *gone, "--reason", "unsubscribed", cwd=news)
    assert done.returncode == 0, done.stderr
    first = run_stamp("send", "campaign.yml", "--yes", "--log-format", "json", cwd=news)
    assert first.returncode == 0, first.stderr
    assert summary_of(first.stdout)["counts"]["sent"] == N - 2
    elsewhere = tmp_path / "tmp"
    elsewhere.mkdir()
    again = run_stamp("send", campaign, "--yes", "--log-format", "json", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    summary = summary_of(again.stdout)
    assert summary["run_counts"] == {}
    assert summary["counts"]["sent"] == N - 2 and summary["counts"]["suppressed"] == 2
    assert not (elsewhere / "stamp.db").exists()
    assert "NEW STORE" not in again.stdout
    for address in addresses(N):
        assert server.count(address) == (0 if address in gone else 1), address
    # and from the home folder, with a crontab-style relative path
    home = run_stamp("send", "srv/news/campaign.yml", "--yes", "--log-format", "json", cwd=tmp_path)
    assert home.returncode == 0, home.stderr
    assert summary_of(home.stdout)["run_counts"] == {}
    assert sum(server.count(a) for a in addresses(N)) == N - 2


# --------------------------------------------------------------------------- the rule


def test_the_store_key_is_relative_to_the_campaign_file_and_beats_stamp_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out", extra="store: data/news.db\n")
    (tmp_path / "news" / "data").mkdir()
    monkeypatch.chdir(tmp_path)  # STAMP_DB is set (conftest): the store: key wins over it
    result = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    db = tmp_path / "news" / "data" / "news.db"
    assert sent_count(db) == N
    assert not Path(str(tmp_path / "stamp.db")).exists()
    assert json_lines(result.stdout)[0]["message"].startswith(f"NEW STORE: {db} ")
    choice = for_campaign(load_campaign(campaign), None)
    assert choice.path == db and choice.origin == f"store: in {campaign}"


@pytest.mark.parametrize("form", ["sqlite:///{abs}", "sqlite:{rel}", "{abs}", "~/{home}"])
def test_store_urls_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = {
        "sqlite:///{abs}": tmp_path / "abs.db",
        "sqlite:{rel}": tmp_path / "news" / "rel.db",
        "{abs}": tmp_path / "abs.db",
        "~/{home}": tmp_path / "home" / "h.db",
    }[form]
    value = form.format(abs=str(tmp_path / "abs.db").lstrip("/"), rel="rel.db", home="h.db")
    if form == "{abs}":
        value = str(tmp_path / "abs.db")
    campaign = write_campaign(tmp_path / "news", "outbox://out", extra=f'store: "{value}"\n')
    assert for_campaign(load_campaign(campaign), None).path == target


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("postgresql://", "names no server or database"),
        ("postgres://db.example:port/news", "is not a valid PostgreSQL URL"),
        ("mysql://db.example/news", "unknown store URL scheme 'mysql'"),
        ("sqlite://db.example/news.db", "a SQLite store is a local file, not a host"),
        ("sqlite:///", "names no file"),
        ("''", "the store is empty"),
    ],
)
def test_stores_stamp_cannot_open_are_refused_naming_the_line(
    tmp_path: Path, value: str, says: str
) -> None:
    campaign = write_campaign(tmp_path, "outbox://out", extra=f"store: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_campaign(campaign)
    text = str(caught.value)
    line = campaign.read_text().splitlines().index(f"store: {value}") + 1
    assert text.startswith(f"{campaign}:{line}: store: ") and says in text, text
    result = invoke("send", str(campaign), "--yes")
    assert result.exit_code == 2 and says in result.stderr
    assert not (tmp_path / "stamp.db").exists()


def test_a_bad_stamp_db_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = write_campaign(tmp_path, "outbox://out")
    monkeypatch.setenv("STAMP_DB", "postgresql://stamp:hunter2@db.example:x/news")
    result = invoke("status", str(campaign))
    assert result.exit_code == 2
    assert "$STAMP_DB: postgresql://stamp:***@db.example:x/news is not a valid" in result.stderr
    assert "hunter2" not in result.output


def test_stamp_db_is_used_without_a_store_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    monkeypatch.setenv("STAMP_DB", str(tmp_path / "env.db"))
    monkeypatch.chdir(tmp_path)
    assert invoke("send", str(campaign), "--yes", "--log-format", "json").exit_code == 0
    assert sent_count(tmp_path / "env.db") == N
    assert not (tmp_path / "news" / "stamp.db").exists()


def test_without_anything_the_store_is_beside_the_campaign_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    monkeypatch.chdir(tmp_path)
    assert invoke("send", str(campaign), "--yes", "--log-format", "json").exit_code == 0
    assert sent_count(tmp_path / "news" / "stamp.db") == N
    assert not (tmp_path / "stamp.db").exists()


def test_db_option_beats_the_store_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out", extra="store: keyed.db\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("send", str(campaign), "--yes", "--log-format", "json", "--db", "opt.db")
    assert result.exit_code == 0, result.output
    assert sent_count(tmp_path / "opt.db") == N
    assert not (tmp_path / "news" / "keyed.db").exists()
    status = invoke("status", str(campaign), "--json", "--db", "opt.db")
    assert json.loads(status.stdout)["store"] == str(tmp_path / "opt.db")


def test_import_lists_suppress_and_status_follow_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    news = tmp_path / "news"
    campaign = write_campaign(news, "outbox://out")
    # a campaign reading an imported list, imported from another folder
    text = campaign.read_text().replace("  file: list.csv\n", "  list: customers\n")
    campaign.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    imported = invoke("import", str(news / "list.csv"), "--list", "customers", "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["db"] == str(news / "stamp.db")
    assert "creates a new one" in imported.stderr  # said on stderr, the JSON stays clean
    # commands without a file: ./stamp.db unless --db or $STAMP_DB
    empty = invoke("lists")
    assert "No lists in " + str(elsewhere / "stamp.db") in empty.stdout
    assert not (elsewhere / "stamp.db").exists()  # looking creates nothing
    assert "customers" in invoke("lists", "--db", str(news / "stamp.db")).stdout
    monkeypatch.setenv("STAMP_DB", str(news / "stamp.db"))
    assert "customers" in invoke("lists").stdout
    assert invoke("suppress", "add", addresses(N)[0]).exit_code == 0
    monkeypatch.delenv("STAMP_DB")
    # the campaign's commands: beside the campaign file, from anywhere
    result = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    summary = json_lines(result.stdout)[-1]
    assert summary["counts"]["sent"] == N - 1 and summary["counts"]["suppressed"] == 1
    status = invoke("status", str(campaign), "--json")
    data = json.loads(status.stdout)
    assert data["store"] == str(news / "stamp.db") and data["counts"]["sent"] == N - 1
    rich = invoke("status", str(campaign))
    assert f"store: {news / 'stamp.db'} (beside {campaign})" in rich.stdout
    # suppress pull takes the campaign's store (the outbox has no list to pull)
    pulled = invoke("suppress", "pull", str(campaign))
    assert pulled.exit_code == 0, pulled.output
    assert "creates a new one" not in pulled.stderr
    assert not (elsewhere / "stamp.db").exists()
    # a suppression added here, without --db, goes to ./stamp.db, and says so loudly
    added = invoke("suppress", "add", addresses(N)[1])
    assert added.exit_code == 0
    assert f"no store at {elsewhere / 'stamp.db'} yet" in added.stderr


def test_rules_in_one_place() -> None:
    env = {"STAMP_DB": "/var/lib/stamp/env.db"}
    here = Path("/srv/news/list.csv")
    assert for_file(here, None, env={}).path == Path("/srv/news/stamp.db")
    assert for_file(here, None, env=env).path == Path("/var/lib/stamp/env.db")
    assert for_file(here, Path("/x/y.db"), env=env).path == Path("/x/y.db")
    assert standalone(None, env={}).path == Path.cwd() / "stamp.db"
    assert standalone(None, env=env).origin == "$STAMP_DB"


# --------------------------------------------------------------------------- new stores


def test_a_new_store_is_said_loudly_in_rich_and_json(tmp_path: Path, no_env: None) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    db = tmp_path / "news" / "stamp.db"
    rich = invoke("send", str(campaign), "--yes", "--log-format", "rich")
    assert rich.exit_code == 0, rich.output
    assert f"warning: NEW STORE: {db} does not exist; this send creates it" in rich.stdout
    again = invoke("send", str(campaign), "--yes", "--log-format", "rich")
    assert "NEW STORE" not in again.stdout  # only the first time
    other = tmp_path / "other.db"
    as_json = invoke("send", str(campaign), "--yes", "--log-format", "json", "--db", str(other))
    # another store beside the outbox trail of this campaign: refused (next test); confirmed:
    assert as_json.exit_code == 2
    confirmed = invoke(
        "send", str(campaign), "--yes", "--log-format", "json", "--db", str(other), "--new-store"
    )
    assert confirmed.exit_code == 0, confirmed.output
    first = json_lines(confirmed.stdout)[0]
    assert first["event"] == "notice" and first["level"] == "warning"
    assert first["message"].startswith(f"NEW STORE: {other} does not exist; this send creates it")
    assert "confirmed with --new-store despite" in first["message"]


def test_a_fresh_store_beside_an_outbox_trail_of_the_campaign_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    monkeypatch.chdir(tmp_path / "news")
    assert invoke("send", "campaign.yml", "--yes", "--log-format", "json").exit_code == 0
    (tmp_path / "news" / "stamp.db").rename(tmp_path / "news" / "moved.db")
    for name in ("stamp.db-wal", "stamp.db-shm"):
        (tmp_path / "news" / name).unlink(missing_ok=True)
    refused = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert refused.exit_code == 2
    err = " ".join(refused.stderr.split())
    assert f"refusing to send 'news' with the store {tmp_path / 'news' / 'stamp.db'}" in err
    assert f"{N} .eml files of it in {tmp_path / 'news' / 'out' / 'news'}" in err
    assert "--new-store" in err
    assert not (tmp_path / "news" / "stamp.db").exists()  # nothing created, nothing sent
    # a store that exists but never saw this campaign is refused just the same
    with Store(tmp_path / "news" / "stamp.db") as store:
        campaigns.ensure(store, "another campaign")
    assert invoke("send", str(campaign), "--yes").exit_code == 2
    # retry has nothing to retry there
    retry = invoke("retry", str(campaign), "--unknown", "--yes")
    assert retry.exit_code == 2 and "nothing to retry" in retry.stderr
    # the store that sent it is found again with --db, and sends nothing
    back = invoke("send", str(campaign), "--yes", "--log-format", "json", "--db", "moved.db")
    assert back.exit_code == 0 and json_lines(back.stdout)[-1]["run_counts"] == {}
    # --new-store confirms: this store starts afresh
    fresh = invoke("send", str(campaign), "--yes", "--log-format", "json", "--new-store")
    assert fresh.exit_code == 0 and json_lines(fresh.stdout)[-1]["counts"]["sent"] == N


def test_the_old_default_store_in_the_working_directory_is_a_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    """Upgrading: an older stamp kept the ledger in ./stamp.db of wherever it ran."""
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    monkeypatch.chdir(tmp_path)
    old = invoke("send", str(campaign), "--yes", "--log-format", "json", "--db", "stamp.db")
    assert old.exit_code == 0
    for eml in (tmp_path / "news" / "out" / "news").iterdir():
        eml.unlink()  # no outbox trail: only the old store tells
    refused = invoke("send", str(campaign), "--yes")
    assert refused.exit_code == 2
    assert f"the store {tmp_path / 'stamp.db'} has a ledger for it" in " ".join(
        refused.stderr.split()
    )


def test_a_dry_run_is_never_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    monkeypatch.chdir(tmp_path)  # the dry run writes ./outbox-dry-run/
    campaign = write_campaign(tmp_path / "news", "outbox://out")
    assert invoke("send", str(campaign), "--yes", "--db", str(tmp_path / "a.db")).exit_code == 0
    dry = invoke("send", str(campaign), "--dry-run", "--log-format", "json")
    assert dry.exit_code == 0, dry.output
    assert json_lines(dry.stdout)[0]["message"].startswith("NEW STORE: ")


# --------------------------------------------------------------------------- crash window


def test_status_and_the_next_run_say_how_many_unknown_rows_may_not_have_been_sent(
    tmp_path: Path, server: SMTPTestServer, no_env: None
) -> None:
    campaign = write_campaign(tmp_path, server.url("smtp", tls="none"), n=300)
    db = tmp_path / "stamp.db"
    first = invoke("send", str(campaign), "--yes", "--log-format", "json", "--limit", "100")
    assert first.exit_code == 3, first.output
    # what a kill -9 leaves: claimed rows `sending`, the run's lock and no summary
    with Store(db) as store:
        row = campaigns.get(store, NAME)
        assert row is not None
        with store.transaction() as conn:
            conn.execute(
                "UPDATE ledger SET state = 'sending', attempts = 1 WHERE id IN "
                "(SELECT id FROM ledger WHERE campaign_id = ? AND state = 'pending' "
                "ORDER BY id LIMIT 150)",
                (row.id,),
            )
    status = json.loads(invoke("status", str(campaign), "--json").stdout)
    crash = status["crash"]
    assert crash["left"] == 150 and crash["on_wire"] == 8  # smtp: concurrency 8, one a call
    assert crash["maybe_sent"] == 8 + crash["unwritten"]
    assert crash["probably_not_sent"] == 150 - crash["maybe_sent"]
    rich = " ".join(invoke("status", str(campaign)).stdout.split())
    assert "150 recipients were in flight when a run died" in rich
    assert f"about {crash['probably_not_sent']} of the 150 were probably never sent" in rich
    # the next run marks them unknown and says the same in its notice
    second = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert second.exit_code == 1, second.output
    notices = [line["message"] for line in json_lines(second.stdout) if line["event"] == "notice"]
    said = [m for m in notices if m.startswith("150 recipients were in flight")]
    assert said and "at most 8 can have been with a provider" in said[0], notices
    after = json.loads(invoke("status", str(campaign), "--json").stdout)
    assert after["counts"]["unknown"] == 150 and after["crash"]["left"] == 150
    # once retried, they are no longer in doubt
    retried = invoke("retry", str(campaign), "--unknown", "--yes", "--log-format", "json")
    assert retried.exit_code == 0, retried.output
    assert json.loads(invoke("status", str(campaign), "--json").stdout)["crash"] is None


def test_the_window_counts_only_rows_a_dead_run_left(tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(tmp_path, "smtp://127.0.0.1:1"))
    assert on_wire_bound(campaign) == 8
    with Store(tmp_path / "w.db") as store:
        row = campaigns.ensure(store, NAME)
        assert crash_window(store, row.id, campaign) is None
        assert crash_window(store, row.id, campaign, still_sending=3) is not None
    assert recorder.FLUSH_EVERY > 0  # the estimate's answer wait is the recorder's own
    assert ledger.STALE_ERROR.startswith("the run sending it stopped")
