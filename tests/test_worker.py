"""``stamp queue add`` + ``stamp worker``: campaigns sent from the store by worker processes.

Real processes (``python -m stampcli``), a real SMTP server on 127.0.0.1 with
AUTH, and both store backends: a SQLite file and a database of the session's
throwaway PostgreSQL cluster. The campaign folder is moved away after queuing,
so the workers can only have what the store keeps; the SMTP password is only in
the environment, and must never be in the store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import UNSUB_SECRET, addresses, run_stamp, stamp, write_campaign
from smtp_server import SMTPTestServer

from stampcli.config import load_campaign
from stampcli.records import QueuedDefinition
from stampcli.service.bundle import pack, unpack
from stampcli.store import open_store

SMTP_USER = "fleet"
SMTP_PASS = "smtp-PASS-9c2e71d0"
ENV = {"SMTP_USER": SMTP_USER, "SMTP_PASS": SMTP_PASS, "PYTHONPATH": str(Path(__file__).parents[1])}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUB_SECRET)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(auth=(SMTP_USER, SMTP_PASS), auth_require_tls=False) as srv:
        yield srv


def smtp_provider(server: SMTPTestServer, **extra: Any) -> dict[str, Any]:
    return {
        "url": f"smtp://${{SMTP_USER}}:${{SMTP_PASS}}@127.0.0.1:{server.port}?tls=none",
        **extra,
    }


def make_campaign(folder: Path, server: SMTPTestServer, n: int, name: str, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_campaign(folder, [smtp_provider(server, **extra)], n=n, name=name)


def queue(campaign: Path, store_url: str, cwd: Path) -> dict[str, Any]:
    done = run_stamp("queue", "add", campaign, "--db", store_url, "--json", cwd=cwd, env=ENV)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def status(store_url: str, cwd: Path) -> dict[str, Any]:
    done = run_stamp("status", "--db", store_url, "--json", cwd=cwd, env=ENV)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def counts(store_url: str, name: str) -> dict[str, int]:
    with open_store(store_url, readonly=True) as store:
        row = store.campaigns.get(name)
        return {} if row is None else store.ledger.counts(row.id)


def assert_no_secret(store_url: str) -> None:
    """Neither the SMTP password nor the unsubscribe secret is anywhere in the store."""
    with open_store(store_url, readonly=True) as store:
        for entry in store.fleet.entries():
            queued = store.fleet.definition(entry.name)
            assert queued is not None
            assert SMTP_PASS not in queued.definition and UNSUB_SECRET not in queued.definition
            assert SMTP_PASS.encode() not in queued.bundle
            assert "${SMTP_PASS}" in queued.definition  # the reference, resolved on the worker
    if "://" not in store_url:
        assert SMTP_PASS.encode() not in Path(store_url).read_bytes()


def test_worker_once_sends_queued_campaigns_without_their_folder(
    store_url: str, server: SMTPTestServer, tmp_path: Path
) -> None:
    first = make_campaign(tmp_path / "news", server, 40, "news")
    second = make_campaign(tmp_path / "promo", server, 25, "promo")
    assert queue(first, store_url, tmp_path)["new"] is True
    assert queue(second, store_url, tmp_path)["files"] == 2  # template and list
    # the workers have no campaign folders: only what the store keeps
    shutil.rmtree(tmp_path / "news")
    shutil.rmtree(tmp_path / "promo")
    elsewhere = tmp_path / "worker-host"
    elsewhere.mkdir()
    done = run_stamp(
        "worker", "--once", "--db", store_url, "--log-format", "json", cwd=elsewhere, env=ENV
    )
    assert done.returncode == 0, done.stdout + done.stderr
    settled = [json.loads(x) for x in done.stdout.splitlines() if '"settled"' in x]
    assert sorted((s["campaign"], s["reason"], s["sent"], s["state"]) for s in settled) == [
        ("news", "complete", 40, "done"),
        ("promo", "complete", 25, "done"),
    ]
    for address in addresses(40):
        assert server.count(address) == (2 if address in addresses(25) else 1)
    assert counts(store_url, "news")["sent"] == 40
    assert_no_secret(store_url)
    # a second pass finds nothing due: nobody is mailed again
    again = run_stamp("worker", "--once", "--db", store_url, cwd=elsewhere, env=ENV)
    assert again.returncode == 0, again.stderr
    assert server.accepted == 65
    data = status(store_url, elsewhere)
    assert [(q["campaign"], q["state"], q["runs"]) for q in data["queue"]] == [
        ("news", "done", 1),
        ("promo", "done", 1),
    ]
    assert [w["state"] for w in data["workers"]] == ["stopped", "stopped"]
    assert data["live_workers"] == 0 and data["workers"][1]["sent"] == 65
    # queued again (more subscribers in the list): only the new ones are mailed
    third = make_campaign(tmp_path / "news", server, 45, "news")
    assert queue(third, store_url, tmp_path)["new"] is False
    more = run_stamp("worker", "--once", "--db", store_url, cwd=elsewhere, env=ENV)
    assert more.returncode == 0, more.stderr
    assert server.accepted == 70 and counts(store_url, "news")["sent"] == 45


def test_a_worker_without_the_campaigns_variables_leaves_it_queued_and_says_why(
    store_url: str, server: SMTPTestServer, tmp_path: Path
) -> None:
    campaign = make_campaign(tmp_path / "news", server, 5, "news")
    queue(campaign, store_url, tmp_path)
    env = {k: v for k, v in ENV.items() if k != "SMTP_PASS"}
    done = run_stamp("worker", "--once", "--db", store_url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "environment variable SMTP_PASS is not set" in done.stdout
    entry = status(store_url, tmp_path)["queue"][0]
    assert entry["state"] == "queued" and entry["last_reason"] == "refused"
    assert "SMTP_PASS is not set" in entry["last_error"]
    assert server.accepted == 0


def test_two_workers_share_the_queue_and_help_on_each_campaign(
    pg_url: str, server: SMTPTestServer, tmp_path: Path
) -> None:
    names = ["a", "b", "c", "d"]
    for name in names:
        queue(make_campaign(tmp_path / name, server, 60, name, rate="100/s"), pg_url, tmp_path)
    procs = [
        stamp("worker", "--once", "--db", pg_url, "--log-format", "json", cwd=tmp_path, env=ENV)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    settled = [json.loads(x) for out, _ in outs for x in out.splitlines() if '"settled"' in x]
    # on PostgreSQL both join each due campaign as its workers (row leases): what they
    # sent of a campaign adds up to its audience, whoever sent which part
    for name in names:
        assert sum(s["sent"] for s in settled if s["campaign"] == name) == 60, settled
    assert all(s["reason"] == "complete" for s in settled)
    assert all(len([x for x in out.splitlines() if '"settled"' in x]) >= 1 for out, _ in outs)
    assert server.accepted == 4 * 60
    for i in range(60):
        assert server.count(f"user{i}@example.test") == 4


def _wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_sigterm_drains_releases_the_campaign_and_exits_0(
    store_url: str, server: SMTPTestServer, tmp_path: Path
) -> None:
    n = 400
    campaign = make_campaign(tmp_path / "news", server, n, "news", rate="80/s")
    queue(campaign, store_url, tmp_path)
    proc = stamp("worker", "--db", store_url, "--poll", "0.5", cwd=tmp_path, env=ENV)
    try:
        _wait(lambda: server.accepted >= 40)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "stopped (stop)" in out and "news: stopped" in out
    state = counts(store_url, "news")
    sent = state["sent"]
    assert 40 <= sent < n and state["sending"] == 0 and state["unknown"] == 0, state
    assert sent == server.accepted  # every message on the wire was recorded
    with open_store(store_url, readonly=True) as store:
        row = store.campaigns.get("news")
        assert row is not None and store.locks.holder(row.id) is None  # released
    data = status(store_url, tmp_path)
    assert data["workers"][0]["state"] == "stopped"
    assert data["queue"][0]["state"] == "queued" and data["queue"][0]["last_reason"] == "stopped"
    # another worker goes on from there: every recipient exactly once
    rest = run_stamp("worker", "--once", "--db", store_url, cwd=tmp_path, env=ENV, timeout=120)
    assert rest.returncode == 0, rest.stderr
    assert counts(store_url, "news")["sent"] == n
    for address in addresses(n):
        assert server.count(address) == 1, address


def test_a_killed_worker_is_shown_gone_and_its_campaign_taken_over(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    store_url = str(tmp_path / "fleet.db")
    n = 300
    queue(make_campaign(tmp_path / "news", server, n, "news", rate="80/s"), store_url, tmp_path)
    proc = stamp("worker", "--db", store_url, cwd=tmp_path, env=ENV)
    try:
        _wait(lambda: server.accepted >= 30)
        live = status(store_url, tmp_path)["workers"][0]
        assert live["state"] == "sending" and live["campaign"] == "news"
        assert live["pid"] == proc.pid and live["host"] == os.uname().nodename
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    gone = status(store_url, tmp_path)
    assert gone["workers"][0]["state"] == "gone" and gone["live_workers"] == 0
    rich = run_stamp("status", "--db", store_url, cwd=tmp_path, env=ENV)
    assert "gone" in rich.stdout and "1 gone" in rich.stdout
    # its lock is stale (its process is gone): the next worker takes the campaign over
    rest = run_stamp("worker", "--once", "--db", store_url, cwd=tmp_path, env=ENV, timeout=120)
    assert rest.returncode == 0, rest.stderr
    assert "took over the lock" in rest.stdout
    final = counts(store_url, "news")
    assert final["sent"] + final["unknown"] == n and final["sending"] == 0
    for address in addresses(n):
        assert server.count(address) <= 1, address


def test_the_bundle_carries_includes_images_and_the_list(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    (folder / "parts").mkdir(parents=True)
    (folder / "parts" / "footer.html").write_text("<p>Bye {{ first_name }}</p>")
    (folder / "style.css").write_text("p { color: red }")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    (folder / "outbox").mkdir()
    (folder / "outbox" / "old.html").write_text("not a template")
    campaign_file = write_campaign(
        folder,
        [{"url": "outbox://out"}],
        n=3,
        name="bundled",
        template=(
            '<link rel="stylesheet" href="style.css"><img src="cid:logo" alt="logo">'
            "<p>Hi {{ first_name }}</p>{% include 'parts/footer.html' %}"
        ),
        extra="images:\n  logo: logo.png\nstore: other.db\n",
    )
    original = load_campaign(campaign_file)
    packed = pack(original)
    queued = QueuedDefinition("bundled", packed.digest, packed.definition, packed.bundle)
    assert '"store"' not in packed.definition and "outbox/old.html" not in packed.definition
    campaign = unpack(queued, root=tmp_path / "cache")
    assert campaign.store is None and campaign.base_dir != original.base_dir
    assert campaign.images["logo"].read_bytes() == (folder / "logo.png").read_bytes()
    assert campaign.audience.file is not None
    assert campaign.audience.file.stat().st_mtime_ns == original.audience.file.stat().st_mtime_ns  # type: ignore[union-attr]
    assert campaign.providers[0].url == original.providers[0].url  # outbox folder kept absolute
    from stampcli.render.renderer import Renderer

    message = Renderer(campaign).render("a@example.test", "a@example.test", {"first_name": "A"})
    assert b"Bye A" in message.raw and b"color: red" in message.raw
    assert Renderer(campaign).content_hash == Renderer(original).content_hash
    # the same files, packed again, give the same digest: nothing is queued twice for nothing
    assert pack(original).digest == packed.digest
    damaged = QueuedDefinition("bundled", "x" * 64, packed.definition, b"not a zip")
    with pytest.raises(Exception, match="damaged"):
        unpack(damaged, root=tmp_path / "cache")


def test_queue_list_and_remove(tmp_path: Path, server: SMTPTestServer) -> None:
    from typer.testing import CliRunner

    from stampcli.cli.app import app

    runner = CliRunner()
    db = str(tmp_path / "q.db")
    campaign = make_campaign(tmp_path / "news", server, 3, "news")
    (tmp_path / "news" / "t.html").write_text("{% if %}")  # a template that cannot compile
    bad = runner.invoke(app, ["queue", "add", str(campaign), "--db", db], env=ENV)
    assert bad.exit_code == 2 and "t.html" in bad.output
    assert not Path(db).exists()  # a refused campaign creates no store
    (tmp_path / "news" / "t.html").write_text("<p>Hi {{ first_name }}</p>")
    added = runner.invoke(
        app, ["queue", "add", str(campaign), "--db", db, "--at", "2030-01-01T09:00+00:00"], env=ENV
    )
    assert added.exit_code == 0, added.output
    assert "news: queued in" in added.stdout and "due 2030-01-01 09:00:00 UTC" in added.stdout
    listed = runner.invoke(app, ["queue", "list", "--db", db, "--json"])
    (entry,) = json.loads(listed.stdout)
    assert entry["campaign"] == "news" and entry["state"] == "queued"
    assert entry["due_at"] == 1893488400.0
    # not due yet: a worker pass sends nothing
    once = run_stamp("worker", "--once", "--db", db, cwd=tmp_path, env=ENV)
    assert once.returncode == 0 and server.accepted == 0
    assert runner.invoke(app, ["queue", "remove", "news", "--db", db]).exit_code == 0
    again = runner.invoke(app, ["queue", "remove", "news", "--db", db])
    assert again.exit_code == 2 and "no campaign 'news' is queued" in again.output
    assert "No campaigns queued" in runner.invoke(app, ["queue", "list", "--db", db]).stdout
    status = runner.invoke(app, ["status", str(campaign), "--db", db, "--json"], env=ENV)
    data = json.loads(status.stdout)
    assert data["queue"] == [] and data["workers"][0]["state"] == "stopped"
