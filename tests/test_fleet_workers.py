"""Several worker processes on one campaign, on both store backends, against a real SMTP sink.

Each worker is a process of its own (``tests/fleet_worker.py``: the library's
``send_campaign`` with ``SendOptions(shared=True)``). Every recipient is
delivered exactly once whatever the workers do: share the work, one killed with
SIGKILL mid-send (its leased rows go to the others, its rows on the wire become
``unknown``, none twice), all of them killed and started again. A single run
is refused while workers share the campaign.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_server import SMTPTestServer
from test_store_contract import BACKENDS, Backend

from stampcli.errors import LockedError
from stampcli.store import protocols

WORKER = Path(__file__).with_name("fleet_worker.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="none") as srv:
        yield srv


def addresses(n: int) -> list[str]:
    return [f"user{i}@example.test" for i in range(n)]


def write_campaign(tmp_path: Path, server: SMTPTestServer, n: int, rate: str | None) -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    rows = "\n".join(f"{a},U{i}" for i, a in enumerate(addresses(n)))
    (tmp_path / "list.csv").write_text("email,first_name\n" + rows + "\n")
    url = json.dumps(server.url("smtp", tls="none"))
    provider = f"  - url: {url}\n    concurrency: 4\n"
    if rate is not None:
        provider += f"    rate: {rate}\n"
    path = tmp_path / "campaign.yml"
    path.write_text(
        "name: fleet-test\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        f"providers:\n{provider}"
    )
    return path


def start(campaign: Path, backend: Backend, lease: float = 3.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(campaign), backend.url, str(lease)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and "reason" in lines[-1], out + err[-2000:]
    return lines[-1]


def states(backend: Backend) -> dict[str, str]:
    with backend.open() as store:
        row = store.campaigns.get("fleet-test")
        assert row is not None
        return {r.key: r.state for r in store.ledger.rows(row.id)}


def wait_for(server: SMTPTestServer, accepted: int, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while server.accepted < accepted:
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the workers did not get going"
        time.sleep(0.01)


def check_exactly_once(server: SMTPTestServer, backend: Backend, n: int) -> Counter[str]:
    """Every recipient `sent` once, or `unknown` and received at most once."""
    found = states(backend)
    assert len(found) == n
    for address in addresses(n):
        got = server.count(address)
        if found[address] == "sent":
            assert got == 1, (address, got)
        else:
            assert found[address] == "unknown", (address, found[address])
            assert got <= 1, (address, got)
    return Counter(found.values())


def test_three_workers_share_a_campaign_and_send_everyone_once(
    tmp_path: Path, server: SMTPTestServer, backend: Backend
) -> None:
    n = 3000
    campaign = write_campaign(tmp_path, server, n, rate="1500/s")
    procs = [start(campaign, backend) for _ in range(3)]
    summaries = [finish(p) for p in procs]
    counts = check_exactly_once(server, backend, n)
    assert counts == {"sent": n}
    sent_by = [int(s["run_counts"].get("sent", 0)) for s in summaries]  # type: ignore[attr-defined]
    assert sum(sent_by) == n
    # each took a real share (they start within a few hundred ms of each other)
    assert sum(1 for k in sent_by if k > 0) >= 2, sent_by
    with backend.open() as store:
        assert store.leases.workers() == []  # every worker left


def test_kill_9_of_one_worker_mid_send_loses_nobody_and_sends_nobody_twice(
    tmp_path: Path, server: SMTPTestServer, backend: Backend
) -> None:
    n = 2000
    campaign = write_campaign(tmp_path, server, n, rate="600/s")
    procs = [start(campaign, backend) for _ in range(3)]
    wait_for(server, 400, procs)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    for proc in procs[1:]:
        finish(proc)
    counts = check_exactly_once(server, backend, n)
    assert counts["sent"] + counts["unknown"] == n
    # only what was on the wire at the kill is in doubt: connections + 0.1 s of the rate
    assert counts["unknown"] <= 4 + 60 + 8, counts


def test_kill_9_of_every_worker_then_restart_delivers_everyone_once(
    tmp_path: Path, server: SMTPTestServer, backend: Backend
) -> None:
    n = 1500
    campaign = write_campaign(tmp_path, server, n, rate="500/s")
    procs = [start(campaign, backend) for _ in range(2)]
    wait_for(server, 300, procs)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    mid = states(backend)
    assert Counter(mid.values())["sending"] <= 2 * (4 + 50 + 8)
    again = [start(campaign, backend) for _ in range(2)]
    for proc in again:
        finish(proc)
    counts = check_exactly_once(server, backend, n)
    assert counts["sent"] + counts["unknown"] == n
    assert counts["unknown"] <= 2 * (4 + 50 + 8), counts


def test_a_single_run_is_refused_while_workers_share_the_campaign(
    tmp_path: Path, server: SMTPTestServer, backend: Backend
) -> None:
    from stampcli.store import locks

    with backend.open() as store:
        cid = store.campaigns.ensure("fleet-test").id
        store.leases.join(cid, locks.new_owner(), until=time.time() + 60)
        campaign = write_campaign(tmp_path, server, 10, rate=None)
        _refused_single_run(campaign, store)


def _refused_single_run(campaign: Path, store: protocols.Store) -> None:
    import asyncio

    from stampcli.config import load_campaign
    from stampcli.service.send import SendOptions, send_campaign

    # a run that wants the campaign to itself (`stamp send --alone`, a cap, a schedule;
    # every run on SQLite) is refused while workers share it
    with pytest.raises(LockedError, match="worker"):
        asyncio.run(send_campaign(load_campaign(campaign), store, SendOptions(shared=False)))


def test_three_workers_keep_to_the_providers_rate_together(
    tmp_path: Path, server: SMTPTestServer, backend: Backend
) -> None:
    n, per_second = 2500, 500.0
    campaign = write_campaign(tmp_path, server, n, rate=f"{per_second:.0f}/s")
    procs = [start(campaign, backend) for _ in range(3)]
    # what the sink receives, sampled as it comes (the ledger's sent_at is when an
    # outcome committed, batched, not when the message arrived)
    seen: list[tuple[float, int]] = []
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # their pipes drained meanwhile
        ends = [pool.submit(finish, p) for p in procs]
        while not all(e.done() for e in ends):
            seen.append((time.monotonic(), server.accepted))
            time.sleep(0.01)
        summaries = [e.result() for e in ends]
    assert check_exactly_once(server, backend, n) == {"sent": n}, summaries
    assert sum(1 for s in summaries if s["run_counts"].get("sent")) >= 2  # type: ignore[attr-defined]
    # the steady rate, from the 20th to the 80th percentile of the messages (the first
    # second's burst and the workers' start-up stay out): each worker alone would go at
    # the full rate, three at three times it
    lo = next(t for t, k in seen if k >= n // 5)
    hi = next(t for t, k in seen if k >= 4 * n // 5)
    rate = (4 * n // 5 - n // 5) / (hi - lo)
    assert per_second * 0.9 <= rate <= per_second * 1.1, rate
