"""Every command reaches any store the same way: ``--db``, ``$STAMP_DB`` or ``store:``.

The same command lines run against a SQLite file and a PostgreSQL database of the
session's throwaway cluster (``tests/pg_cluster.py``): import, lists, suppress,
check, preview, send, status, events pull, serve. The PostgreSQL URL carries a
password (the test cluster trusts every login, so it is never checked): it must
never appear in any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import UNSUB_SECRET, UNSUBSCRIBE, addresses, json_lines
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.store import open_store

runner = CliRunner()
PASSWORD = "pw-SECRET-3f9a1c"
N = 12


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUB_SECRET)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store as a user names it: a SQLite path, or a postgres:// URL with a password."""
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")
    url: str = request.getfixturevalue("pg_url")
    # postgres:// (the short spelling) with a password, which must never be shown
    return url.replace("postgresql://stamp@", f"postgres://stamp:{PASSWORD}@", 1)


def shown(url: str) -> str:
    """The store's location as stamp prints it."""
    return url.replace(f":{PASSWORD}@", ":***@")


def write_campaign(folder: Path, *, extra: str = "", name: str = "news") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.html").write_text(
        '<p>Hello {{ first_name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        encoding="utf-8",
    )
    rows = "".join(f"{a},P{i}\n" for i, a in enumerate(addresses(N)))
    (folder / "list.csv").write_text("email,first_name\n" + rows, encoding="utf-8")
    path = folder / f"{name}.yml"
    path.write_text(
        f"name: {name}\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n" + UNSUBSCRIBE + "audience:\n  list: customers\n"
        'providers:\n  - url: "outbox://out"\n' + extra,
        encoding="utf-8",
    )
    return path


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert PASSWORD not in result.output, result.output
    return result


def test_every_command_uses_the_store_named_by_db_env_or_store_key(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAMP_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    news = tmp_path / "news"
    campaign = write_campaign(news)
    # --db: import, lists, suppress
    imported = invoke(
        "import", str(news / "list.csv"), "--list", "customers", "--json", "--db", store_url
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["db"] == shown(store_url)
    assert "creates a new one" in imported.stderr and shown(store_url) in imported.stderr
    lists = invoke("lists", "--json", "--db", store_url)
    assert [x["name"] for x in json.loads(lists.stdout)] == ["customers"]
    assert invoke("suppress", "add", addresses(N)[0], "--db", store_url).exit_code == 0
    listed = invoke("suppress", "list", "--json", "--db", store_url)
    assert addresses(N)[0] in listed.stdout
    # the campaign's commands read the imported list from the same store
    checked = invoke("check", str(campaign), "--db", store_url)
    assert checked.exit_code == 0, checked.output
    preview = invoke("preview", str(campaign), "--db", store_url, "--format", "text")
    assert preview.exit_code == 0 and "Hello P0" in preview.stdout, preview.output
    # $STAMP_DB: the send
    monkeypatch.setenv("STAMP_DB", store_url)
    sent = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert sent.exit_code == 0, sent.output
    assert json_lines(sent.stdout)[-1]["counts"]["sent"] == N - 1
    assert not (tmp_path / "stamp.db").exists() and not (news / "stamp.db").exists()
    status = invoke("status", str(campaign), "--json")
    data = json.loads(status.stdout)
    assert data["store"] == shown(store_url) and data["counts"]["sent"] == N - 1
    monkeypatch.delenv("STAMP_DB")
    # store: in the campaign file (a second campaign of the same store)
    other = write_campaign(news, extra=f'store: "{store_url}"\n', name="other")
    rich = invoke("status", str(other))
    assert rich.exit_code == 0, rich.output
    assert f"store: {shown(store_url)} (store: in {other})" in rich.stdout
    again = invoke("send", str(other), "--yes", "--log-format", "json")
    assert again.exit_code == 0, again.output
    assert json_lines(again.stdout)[-1]["counts"]["sent"] == N - 1
    pulled = invoke("events", "pull", str(other), "--json")
    assert pulled.exit_code == 0, pulled.output
    with open_store(store_url, readonly=True) as store:
        assert store.campaigns.get("news") is not None and store.campaigns.get("other") is not None
        assert store.suppressions.get(addresses(N)[0]) is not None


def test_a_status_looks_without_creating_the_store(store_url: str, tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path / "news")
    result = invoke("status", str(campaign), "--json", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["exists"] is False
    empty = invoke("lists", "--db", store_url)
    assert f"No lists in {shown(store_url)}" in empty.stdout
    if "://" not in store_url:
        assert not Path(store_url).exists()
    else:  # the database holds no stamp tables yet
        from stampcli.store.postgres.db import holds_store

        assert not holds_store(store_url)


def test_an_unreachable_database_is_a_store_error_without_its_password(tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path / "news")
    url = f"postgresql://stamp:{PASSWORD}@127.0.0.1:1/none?connect_timeout=2"
    result = invoke("send", str(campaign), "--yes", "--db", url, "--log-format", "json")
    assert result.exit_code == 7, result.output
    assert "stamp:***@127.0.0.1:1" in result.output


def test_serve_opens_a_postgres_store(pg_url: str, tmp_path: Path) -> None:
    url = pg_url.replace("postgresql://stamp@", f"postgresql://stamp:{PASSWORD}@", 1)
    env = {**os.environ, "STAMP_DB": url, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stampcli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        assert PASSWORD not in line and "stamp:***@" in line
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert PASSWORD not in err
