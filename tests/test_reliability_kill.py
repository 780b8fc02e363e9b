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
)
from smtp_server import SMTPTestServer

from stampcli.config import load_campaign
from stampcli.delivery.engine import Engine
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
        return Engine(load_campaign(campaign), store).max_inflight


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
                proc.wait(timeout=rng.uniform(0.05, 1.5))
        else:
            # mid-run: once this run has delivered something, after a short random delay
            started = wait_until(
                lambda b=before: server.accepted > b, proc=proc, timeout=60, what="sending"
            )
            if started:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=rng.uniform(0.0, 0.12))
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
    codes, in_flight, final = kill_until_done(
        tmp_path, server, campaign, kills=kills, sig=signal.SIGKILL, seed=seed
    )
    assert len(codes) == kills, "the campaign finished before it was killed often enough"
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
    _sigint_run(tmp_path, server, n=500, stops=4)


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
