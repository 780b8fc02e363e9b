"""PostgreSQL restarted in the middle of a shared ``stamp send`` (issue #22).

Three ``stamp send`` runs share a campaign of a few thousand recipients on a
throwaway cluster of the test's own (restarting the session's cluster would
cut every other test's store). Mid-send the cluster is restarted the hard way
(``pg_ctl restart -m immediate``: a crash and a recovery on the same port and
data directory). Each run then either rides it out and goes on, or stops with
the documented store error (exit 7, one line, no traceback); a user runs
``stamp send`` again, and at the end nobody was delivered twice and every
recipient is ``sent``, or ``unknown`` within the crash window of each run that
stopped.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pg_cluster
import pytest
from reliability_helpers import addresses, run_stamp, send_args, stamp, wait_until, write_campaign
from smtp_server import SMTPTestServer
from test_store_contract import Backend

CONNECTIONS = 4
RESUMABLE = 3  # "stopped": run again to go on
STORE_EXIT = 7  # stampcli/cli/exit_codes.py: the store failed


@pytest.fixture
def cluster() -> Iterator[pg_cluster.Cluster]:
    why = pg_cluster.unavailable()
    if why is not None:
        pytest.skip(why)
    # durable: a crash must not lose what the server acknowledged (with synchronous commit
    # off, as the other tests' cluster runs, a claim the crash lost let a row be sent twice)
    own = pg_cluster.start_cluster(durable=True)
    try:
        yield own
    finally:
        own.stop()


def restart(cluster: pg_cluster.Cluster) -> None:
    """Crash and restart the server on the same port and data directory (its options kept)."""
    data = str(cluster.directory / "data")
    pg_ctl = str(cluster.bin / "pg_ctl")
    # -l: the new server's output goes to the log, not to our pipe (which would never close)
    log = str(cluster.directory / "log")
    pg_cluster._as(cluster.user, [pg_ctl, "-D", data, "-l", log, "-m", "immediate", "-w",
                                  "-t", "60", "restart"])  # fmt: skip


# Once in about 30 runs this test used to find a run that never exited (a planning end the
# store had lost) or a recipient mailed twice (the cluster ran without synchronous commit):
# both mended, 40 runs in a row clean since (README "When something dies").
def test_postgres_restarted_during_a_shared_send_loses_nothing_and_sends_nobody_twice(
    tmp_path: Path, cluster: pg_cluster.Cluster
) -> None:
    n = 3000
    url, _schema = cluster.new_store_url()
    store = Backend("postgres", url)
    with SMTPTestServer(tls="none") as server:
        provider = {"url": server.url("smtp", tls="none"), "rate": "600/s",
                    "concurrency": CONNECTIONS}  # fmt: skip
        campaign = write_campaign(tmp_path, [provider], n=n, name="pg-restart")
        procs = [stamp(*send_args(campaign, url), cwd=tmp_path) for _ in range(3)]
        wait_until(lambda: server.accepted >= 600, proc=procs[0], timeout=90, what="sending")
        restart(cluster)
        at_restart = server.accepted
        assert at_restart < n, "the send ended before the restart"
        stopped = 0
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                out, err = proc.communicate()
                raise AssertionError(f"a run hung after the restart:\n{err[-3000:]}") from None
            # rode it out (0/1), or stopped cleanly: resumable (3, its leases were lost
            # while the database was away) or the store's exit code
            assert proc.returncode in (0, 1, RESUMABLE, STORE_EXIT), (proc.returncode, err[-3000:])
            assert "Traceback" not in err + out, err[-3000:]
            if proc.returncode == RESUMABLE:
                stopped += 1
                print(f"\nexit 3: {out.strip().splitlines()[-1:]}")
            if proc.returncode == STORE_EXIT:
                stopped += 1
                assert "store" in (err + out).lower(), err[-2000:]
                print(f"\nexit 7: {err.strip().splitlines()[-1:]}")
        # the user runs it again; it finishes what is left
        final = run_stamp(*send_args(campaign, url), cwd=tmp_path, timeout=180)
        assert final.returncode in (0, 1), final.stdout[-2000:] + final.stderr[-2000:]
        with store.open() as opened:
            row = opened.campaigns.get("pg-restart")
            assert row is not None
            found = {r.key: r.state for r in opened.ledger.rows(row.id)}
        assert len(found) == n
        counts = Counter(found.values())
        assert set(counts) <= {"sent", "unknown"}, counts
        for address in addresses(n):
            got = server.count(address)
            assert got == 1 if found[address] == "sent" else got <= 1, (address, got)
        # each run that stopped leaves at most its crash window in doubt
        print(f"\nrestart at {at_restart} sent: {stopped} of 3 runs stopped, {counts}")
        assert counts["unknown"] <= stopped * (CONNECTIONS + 60), (stopped, counts)
        assert server.accepted <= n
