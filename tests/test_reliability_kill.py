"""Crashes (issue #8): ``stamp send`` killed again and again, and ``stamp import`` killed.

The SMTP server records every message and lives in a thread of the test
process, so it survives every kill of the ``stamp`` child. Each MAIL FROM is
answered a few ms late so that kills land in the middle of a run.

Invariants after the campaign completes:

* every recipient the ledger calls ``sent`` reached the server exactly once;
* every ``unknown`` recipient reached it at most once, and the rows left
  ``sending`` at any one kill never exceed the engine's in-flight window;
* the server saw nothing else: its accepted count equals ``sent`` plus the
  ``unknown`` rows it happens to have received;
* with SIGINT (graceful) there is never an ``unknown`` row.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import (
    addresses,
    ledger_states,
    run_stamp,
    send_args,
    slow_smtp_server,
    stamp,
    state_counts,
    summary_of,
    wait_until,
    write_campaign,
    write_list,
)
from smtp_server import SMTPTestServer

from stampcli.config import load_campaign
from stampcli.delivery.run import CampaignRun
from stampcli.store.db import Store


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with slow_smtp_server(0.003, tls="none") as srv:
        yield srv


def campaign_for(tmp_path: Path, server: SMTPTestServer, n: int, rate: str = "400/s") -> Path:
    return write_campaign(
        tmp_path,
        [{"url": server.url("smtp", tls="none"), "rate": rate}],
        n=n,
        name="kill-again",
        extra="throttle:\n  batch_size: 50\n",
    )


def inflight_window(campaign: Path, tmp_path: Path) -> int:
    """The engine's bound on rows claimed and not yet recorded, for this campaign."""
    with Store(tmp_path / "window.db") as store:
        return CampaignRun(load_campaign(campaign), store).max_inflight


def check_delivery(server: SMTPTestServer, db: Path, n: int) -> dict[str, str]:
    """The end-state invariants; returns the ledger's states."""
    states = ledger_states(db)
    assert len(states) == n
    counts = state_counts(states)
    assert set(counts) <= {"sent", "unknown"}, counts
    received_unknown = 0
    for address in addresses(n):
        got = server.count(address)
        if states[address] == "sent":
            assert got == 1, (address, got)
        else:
            assert got <= 1, (address, got)
            received_unknown += got
    # nothing arrived that the ledger does not account for
    assert server.accepted == counts["sent"] + received_unknown
    return states


def kill_until_done(
    tmp_path: Path,
    server: SMTPTestServer,
    campaign: Path,
    *,
    kills: int,
    sig: signal.Signals,
    seed: int,
) -> tuple[list[int], list[set[str]], subprocess.CompletedProcess[str]]:
    """Start ``stamp send``, signal it at a random moment, ``kills`` times; then let it finish.

    Returns the exit codes of the signalled runs, the rows ``sending`` right
    after each, and the final run.
    """
    rng = random.Random(seed)
    db = tmp_path / "stamp.db"
    codes: list[int] = []
    in_flight: list[set[str]] = []
    for i in range(kills):
        before = server.accepted
        proc = stamp(*send_args(campaign, db), cwd=tmp_path)
        if sig == signal.SIGKILL and i % 4 == 3:
            # anywhere at all: start-up, planning, claiming, sending
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=rng.uniform(0.0, 0.9))
        else:
            # mid-run: once this run has delivered a random few messages
            goal = before + rng.randint(1, 40)
            wait_until(lambda g=goal: server.accepted >= g, proc=proc, timeout=60, what="sending")
        if proc.poll() is not None:  # finished first: the campaign is complete
            out, err = proc.communicate()
            assert proc.returncode in (0, 1), err
            return (
                codes,
                in_flight,
                subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
            )
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        codes.append(proc.returncode)
        if sig == signal.SIGINT:
            assert proc.returncode in (3, 130, 0, 1), err
        if db.exists():
            in_flight.append({k for k, s in ledger_states(db).items() if s == "sending"})
    final = run_stamp(*send_args(campaign, db), cwd=tmp_path, timeout=120)
    return codes, in_flight, final


def _sigkill_run(tmp_path: Path, server: SMTPTestServer, n: int, kills: int, seed: int) -> None:
    campaign = campaign_for(tmp_path, server, n)
    window = inflight_window(campaign, tmp_path)
    codes: list[int] = []
    in_flight: list[set[str]] = []
    while True:
        more, rows, final = kill_until_done(
            tmp_path, server, campaign, kills=kills - len(codes), sig=signal.SIGKILL, seed=seed
        )
        codes += more
        in_flight += rows
        if len(codes) >= kills:
            break
        # a fast machine finished the list first (each kill may leave a whole in-flight
        # window `unknown`): new subscribers join the same campaign and the kills go on
        n += 500
        write_list(tmp_path / "list.csv", n)
        seed += 1
    assert len(codes) == kills
    assert all(code == -signal.SIGKILL for code in codes)
    # kills landed mid-run: some left rows in flight
    assert sum(1 for rows in in_flight if rows) >= kills // 2
    for rows in in_flight:
        assert len(rows) <= window
    states = check_delivery(server, tmp_path / "stamp.db", n)
    unknown = {k for k, s in states.items() if s == "unknown"}
    # exactly the rows in flight at some kill are unknown: nothing else was given up
    assert unknown == set().union(*in_flight)
    summary = summary_of(final.stdout)
    assert final.returncode == (1 if unknown else 0), final.stderr
    assert summary["counts"]["sent"] == n - len(unknown)
    assert summary["counts"]["unknown"] == len(unknown)


def test_sigkill_twenty_times_nobody_lost_or_doubled(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    _sigkill_run(tmp_path, server, n=1500, kills=20, seed=8)


@pytest.mark.slow
def test_sigkill_many_times_large_campaign(tmp_path: Path, server: SMTPTestServer) -> None:
    _sigkill_run(tmp_path, server, n=6000, kills=60, seed=88)


def _sigint_run(tmp_path: Path, server: SMTPTestServer, n: int, stops: int) -> None:
    campaign = campaign_for(tmp_path, server, n, rate="300/s")
    codes, in_flight, final = kill_until_done(
        tmp_path, server, campaign, kills=stops, sig=signal.SIGINT, seed=3
    )
    assert len(codes) == stops
    assert all(code == 3 for code in codes), codes
    assert all(not rows for rows in in_flight), "a graceful stop left rows in flight"
    states = check_delivery(server, tmp_path / "stamp.db", n)
    assert state_counts(states)["unknown"] == 0
    assert final.returncode == 0, final.stderr
    assert server.accepted == n


def test_sigint_repeatedly_leaves_no_unknown(tmp_path: Path, server: SMTPTestServer) -> None:
    _sigint_run(tmp_path, server, n=400, stops=3)


@pytest.mark.slow
def test_sigint_many_times(tmp_path: Path, server: SMTPTestServer) -> None:
    _sigint_run(tmp_path, server, n=3000, stops=25)


# --------------------------------------------------------------------------- import killed


def _contacts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(
            conn.execute(
                "SELECT l.name, COUNT(c.id) FROM lists l LEFT JOIN contacts c "
                "ON c.list_id = l.id GROUP BY l.name"
            ).fetchall()
        )


# --------------------------------------------------------------------------- full disk, read-only


@contextlib.contextmanager
def mounted(target: Path, *options: str) -> Iterator[Path]:
    """``mount -t tmpfs`` (or a bind mount) at ``target``; skips the test when not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def fill(folder: Path) -> None:
    """Write a filler file until the file system under ``folder`` is full."""
    with (folder / "filler").open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_disk_full_mid_run_is_a_store_error_and_nothing_is_lost(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    """A real full disk: the store lives on an 8 MiB tmpfs that is filled up mid-run."""
    n = 800
    campaign = campaign_for(tmp_path, server, n)
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=8m", "tmpfs") as small:
        db = small / "stamp.db"
        first = run_stamp(*send_args(campaign, db, "--limit", "20"), cwd=tmp_path)
        assert first.returncode == 3, first.stderr
        proc = stamp(*send_args(campaign, db), cwd=tmp_path)
        wait_until(lambda: server.accepted > 100, proc=proc, what="sending")
        fill(small)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 7, (out, err)
        assert str(db) in err and "full" in err, err
        assert "Traceback" not in err
        assert integrity(db) == "ok"
        (small / "filler").unlink()
        at_error = ledger_states(db)
        final = run_stamp(*send_args(campaign, db), cwd=tmp_path)
        assert final.returncode in (0, 1), final.stderr
        states = check_delivery(server, db, n)
    unknown = {k for k, s in states.items() if s == "unknown"}
    # rows in flight at the error: still `sending` (their answer could not be written) or
    # already `unknown` (the run's last write, a smaller one, found room)
    assert unknown == {k for k, s in at_error.items() if s in ("sending", "unknown")}


def test_read_only_store_is_a_clear_error_and_the_ledger_is_intact(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    n = 300
    campaign = campaign_for(tmp_path, server, n)
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "stamp.db"
    first = run_stamp(*send_args(campaign, db, "--limit", "50"), cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    before = ledger_states(db)
    with mounted(folder, "--bind", str(folder)):
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        result = run_stamp(*send_args(campaign, db), cwd=tmp_path)
        assert result.returncode == 7, (result.stdout, result.stderr)
        assert str(db) in result.stderr and "Traceback" not in result.stderr
        assert "read-only" in result.stderr or "cannot be opened" in result.stderr
        assert server.accepted == 50  # nothing was sent without a ledger to record it
    assert ledger_states(db) == before
    assert integrity(db) == "ok"
    final = run_stamp(*send_args(campaign, db), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    check_delivery(server, db, n)


def test_a_limited_run_ends(tmp_path: Path, server: SMTPTestServer) -> None:
    """Regression: with --limit the reader, blocked on a full render queue, was cancelled and
    then waited for room in that queue forever, so the run never ended."""
    campaign = campaign_for(tmp_path, server, 1500)
    result = run_stamp(*send_args(campaign, tmp_path / "stamp.db", "--limit", "20"), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert summary_of(result.stdout)["reason"] == "limit"
    assert server.accepted == 20


# --------------------------------------------------------------------------- import killed


def _contact_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0])
    except sqlite3.OperationalError:  # no schema yet
        return 0


def _write_import_list(path: Path, n: int) -> tuple[int, int]:
    """n rows: every 500th a bad address, every 700th a duplicate. Returns (valid, rejected)."""
    bad = dup = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,first_name,plan\n")
        for i in range(n):
            if i % 500 == 499:
                fh.write(f"not-an-address-{i},Bad,free\n")
                bad += 1
            elif i % 700 == 699:
                fh.write(f"user{i - 1}@example.test,Dup,free\n")
                dup += 1
            else:
                fh.write(f"user{i}@example.test,U{i},pro\n")
    return n - bad - dup, bad


def test_import_killed_is_all_or_nothing_per_batch_and_a_rerun_completes(tmp_path: Path) -> None:
    from stampcli.store.contacts import BATCH

    n = 3 * BATCH + 1234
    source = tmp_path / "big.csv"
    valid, rejected = _write_import_list(source, n)
    db = tmp_path / "stamp.db"
    args = ("import", source, "--list", "big", "--json", "--db", db)
    rng = random.Random(11)
    seen = []
    for _ in range(2):
        before = _contact_count(db)
        proc = stamp(*args, cwd=tmp_path)
        # after at least one more batch has committed, at a random moment
        wait_until(lambda b=before: _contact_count(db) > b, proc=proc, timeout=60, what="a batch")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=rng.uniform(0.0, 0.08))
        proc.kill()
        proc.communicate(timeout=30)
        count = _contact_count(db)
        seen.append(count)
        assert count % BATCH == 0 or count == valid, count  # whole batches only
        assert integrity(db) == "ok"
        with sqlite3.connect(db) as conn:  # what is there is right
            rows = conn.execute("SELECT key, fields FROM contacts ORDER BY id").fetchall()
        for key, fields in rows[:: max(1, len(rows) // 200)]:
            i = int(key.removeprefix("user").split("@")[0])
            assert f'"U{i}"' in fields, (key, fields)
    assert any(0 < c < valid for c in seen), seen
    final = run_stamp(*args, cwd=tmp_path, timeout=120)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["new"] == valid - seen[-1]
    assert summary["unchanged"] == seen[-1] and summary["updated"] == 0
    assert summary["rejected"] == rejected
    assert _contact_count(db) == valid
    again = json.loads(run_stamp(*args, cwd=tmp_path, timeout=120).stdout)
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 0, valid)
