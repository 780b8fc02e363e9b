"""``stampcli.service.send`` and ``service.status`` called as a library: no CLI, no exit codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stampcli
from stampcli.cli.app import app
from stampcli.delivery import run_events as ev
from stampcli.errors import InputError, StampError
from stampcli.service.send import (
    DRY_RUN_SUFFIX,
    RetryMoved,
    RunHandle,
    SendOptions,
    count_due,
    prepare_send,
    send_campaign,
)
from stampcli.service.status import campaign_status, status_of
from stampcli.store import ledger
from stampcli.store.db import Store

NAME = "lib-news"


def write_campaign(tmp_path: Path, *, rows: int = 3, extra: str = "") -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    people = "".join(f"p{i}@x.test,P{i}\n" for i in range(rows))
    (tmp_path / "list.csv").write_text("email,first_name\n" + people)
    path = tmp_path / "campaign.yml"
    path.write_text(
        f"name: {NAME}\n"
        'from: "ACME News <news@acme.example>"\n'
        'subject: "{{ first_name }}, what is new"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        "providers:\n  - url: outbox://out\n" + extra
    )
    return path


def test_send_campaign_sends_everyone_and_reports_a_reason(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    seen: list[ev.Event] = []
    with stampcli.open_store(tmp_path / "s.db") as store:
        summary = asyncio.run(send_campaign(campaign, store, on_event=seen.append))
        again = asyncio.run(send_campaign(campaign, store))
    assert summary.reason == "complete" and summary.counts[ledger.SENT] == 3
    assert again.run_counts.get(ledger.SENT, 0) == 0  # never mailed twice
    assert any(isinstance(e, ev.RunFinished) for e in seen)
    assert len(list((tmp_path / "out").rglob("*.eml"))) == 3


def test_a_dry_run_has_its_own_ledger_and_folder(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    options = SendOptions(dry_run=True, dry_run_dir=tmp_path / "dry")
    with stampcli.open_store(tmp_path / "s.db") as store:
        first = asyncio.run(send_campaign(campaign, store, options))
        second = asyncio.run(send_campaign(campaign, store, options))  # wiped: all again
        assert store.campaigns.get(NAME) is None  # the real ledger is never touched
    assert first.campaign == second.campaign == NAME + DRY_RUN_SUFFIX
    assert second.run_counts[ledger.SENT] == 3
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "dry").rglob("*.eml"))


def test_limit_and_the_due_count(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path, rows=5))
    with stampcli.open_store(tmp_path / "s.db") as store:
        due = count_due(campaign, store, SendOptions(limit=2))
        assert (due.due, due.cap, due.now, due.new) == (5, 2, 2, 5)
        summary = asyncio.run(send_campaign(campaign, store, SendOptions(limit=2)))
        assert summary.reason == "limit" and summary.run_counts[ledger.SENT] == 2
        assert count_due(campaign, store, SendOptions()).as_dict()["now"] == 3


def test_retry_moves_failed_rows_back_and_says_so(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    with stampcli.open_store(tmp_path / "s.db") as store:
        asyncio.run(send_campaign(campaign, store))
        row = store.campaigns.get(NAME)
        assert row is not None
        with store.transaction() as conn:
            conn.execute(
                "UPDATE ledger SET state = 'failed' WHERE campaign_id = ? AND key = ?",
                (row.id, "p1@x.test"),
            )
        options = SendOptions(retry=(ledger.FAILED,))
        assert count_due(campaign, store, options).due == 1
        seen: list[ev.Event] = []
        summary = asyncio.run(send_campaign(campaign, store, options, on_event=seen.append))
    assert summary.reason == "complete" and summary.run_counts[ledger.SENT] == 1
    moved = [e for e in seen if isinstance(e, RetryMoved)]
    assert moved and moved[0].as_dict() == {"event": "retry", "states": ["failed"], "moved": 1}


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="only failed, unknown, deferred"):
        SendOptions(retry=("sent",))
    with pytest.raises(InputError):
        SendOptions(limit=0)
    with pytest.raises(StampError):
        SendOptions(dry_run=True, retry=(ledger.FAILED,))


def test_a_retry_refuses_a_store_that_never_sent_the_campaign(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    with pytest.raises(InputError, match="nothing to retry"):
        prepare_send(campaign, SendOptions(retry=(ledger.UNKNOWN,)), tmp_path / "empty.db")
    assert not (tmp_path / "empty.db").exists()


def test_a_new_store_is_announced_not_created(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    prepared = prepare_send(campaign, SendOptions(), tmp_path / "new.db")
    assert prepared.store_notice is not None and "NEW STORE" in prepared.store_notice
    assert not (tmp_path / "new.db").exists()


def test_a_handle_stopped_before_the_run_sends_nothing(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    handle = RunHandle()
    handle.request_stop()
    with stampcli.open_store(tmp_path / "s.db") as store:
        summary = asyncio.run(send_campaign(campaign, store, handle=handle))
    assert summary.reason == "stopped" and summary.run_counts.get(ledger.SENT, 0) == 0


def test_status_of_a_library_run_says_it_ended(tmp_path: Path) -> None:
    """A library run records no exit code; it has ended all the same (not "died")."""
    path = write_campaign(tmp_path)
    campaign = stampcli.load_campaign(path)
    with Store(tmp_path / "stamp.db") as store:
        asyncio.run(send_campaign(campaign, store))
        status = campaign_status(store, NAME, campaign=campaign)
    assert status.last_run is not None
    assert status.last_run.exit_code is None and status.last_run.state == "ended"
    assert status.last_run.reason == "complete"
    assert status.as_dict()["last_run"]["state"] == "ended"
    same, choice = status_of(campaign)
    assert same.last_run == status.last_run and choice.path == tmp_path / "stamp.db"
    shown = CliRunner().invoke(app, ["status", str(path)])
    assert shown.exit_code == 0
    assert "ended, complete" in shown.stdout and "died" not in shown.stdout


def test_status_tells_a_dead_run_from_a_running_one(tmp_path: Path) -> None:
    campaign = stampcli.load_campaign(write_campaign(tmp_path))
    with Store(tmp_path / "stamp.db") as store:
        row = store.campaigns.ensure(NAME)
        store.runs.start(row.id)  # never finished, and no lock: it died
        assert campaign_status(store, NAME).last_run.state == "died"  # type: ignore[union-attr]
        store.locks.acquire(row.id, "me:1:beef", campaign_name=NAME)
        assert campaign_status(store, NAME).last_run.state == "running"  # type: ignore[union-attr]
    never, _ = status_of(campaign, tmp_path / "none.db")
    assert not never.exists and not (tmp_path / "none.db").exists()


def test_the_rich_view_says_how_many_rows_a_retry_moved(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    runner = CliRunner()
    sent = runner.invoke(app, ["send", str(path), "--yes", "--log-format", "json"])
    assert sent.exit_code == 0, sent.output
    with Store(tmp_path / "stamp.db") as store:
        row = store.campaigns.get(NAME)
        assert row is not None
        with store.transaction() as conn:
            conn.execute("UPDATE ledger SET state = 'unknown' WHERE campaign_id = ?", (row.id,))
    result = runner.invoke(app, ["retry", str(path), "--unknown", "--yes", "--log-format", "rich"])
    assert result.exit_code == 0, result.output
    assert "3 recipients moved back to pending" in result.stdout
    assert "complete" in result.stdout
