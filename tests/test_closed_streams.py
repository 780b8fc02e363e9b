"""A closed stdout or stderr never stops or corrupts a command (issue "Safety first", 3).

Every test runs ``stamp`` as a real subprocess whose stdout or stderr is a pipe
the test closes (after one line, as ``| head -1`` does, or before anything is
written). The send goes on to the end, the ledger says every row is sent, the
exit code is the one the send earned, and nothing on the other stream speaks
of a traceback, a bug or Python's "Exception ignored".
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import (
    STAMP,
    UNSUB_SECRET,
    ledger_states,
    send_args,
    stamp,
    state_counts,
    wait_until,
    write_campaign,
)

N = 400
RATE = "500/s"  # about a second of sending: the reader is gone long before the end


def outbox_campaign(tmp_path: Path, rate: str = RATE) -> Path:
    provider = {"url": f"outbox://{tmp_path / 'outbox'}", "rate": rate}
    return write_campaign(tmp_path, [provider], n=N, name="pipes")


def assert_clean(err: str) -> None:
    for bad in ("Traceback", "bug in stamp", "Exception ignored", "BrokenPipe", "Errno"):
        assert bad not in err, err


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for ``proc``; its exit code and what it wrote on whichever stream is still open."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("stamp did not finish") from None
    return proc.returncode, (out or "") + (err or "")


@pytest.mark.parametrize("log_format", ["json", "rich"])
def test_send_piped_into_head_sends_every_row(tmp_path: Path, log_format: str) -> None:
    """``stamp send ... | head -1``: one line read, the pipe closed, every row still sent."""
    campaign = outbox_campaign(tmp_path)
    db = tmp_path / "stamp.db"
    args = send_args(campaign, db)
    args[args.index("json")] = log_format
    proc = stamp(*args, cwd=tmp_path)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.strip(), "stamp wrote nothing"
    proc.stdout.close()  # what head does after its line
    assert proc.poll() is None, "the send was over before the pipe closed: make it slower"
    code, err = finish(proc)
    assert_clean(err)
    assert code == 0, err
    assert state_counts(ledger_states(db)) == {"sent": N}
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == N


def test_send_with_stdout_and_stderr_closed_before_it_starts(tmp_path: Path) -> None:
    """Both pipes closed before the first byte: still every row sent, still exit 0."""
    campaign = outbox_campaign(tmp_path, rate="2000/s")
    db = tmp_path / "stamp.db"
    proc = stamp(*send_args(campaign, db), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert state_counts(ledger_states(db)) == {"sent": N}


def test_ctrl_c_with_stderr_closed_stops_cleanly(tmp_path: Path) -> None:
    """The Ctrl-C hint goes to a closed stderr: the stop still finishes what is in flight."""
    campaign = outbox_campaign(tmp_path, rate="200/s")
    db = tmp_path / "stamp.db"
    args = send_args(campaign, db)
    args[args.index("json")] = "rich"
    proc = stamp(*args, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stderr.close()
    outbox = tmp_path / "outbox"
    wait_until(lambda: len(list(outbox.rglob("*.eml"))) >= 20, proc=proc, what="sending")
    proc.send_signal(signal.SIGINT)  # rich view: "press Ctrl-C again" is written to stderr
    code, out = finish(proc)
    assert code == 3, out
    assert "bug in stamp" not in out
    counts = state_counts(ledger_states(db))
    assert set(counts) <= {"sent", "pending"}, counts  # nothing left `sending` or `unknown`
    assert 0 < counts["sent"] < N and counts["sent"] == len(list(outbox.rglob("*.eml")))


def test_an_error_on_a_closed_stderr_keeps_its_exit_code(tmp_path: Path) -> None:
    proc = stamp("status", tmp_path / "missing.yml", cwd=tmp_path)
    assert proc.stderr is not None
    proc.stderr.close()
    code, out = finish(proc)
    assert code == 2
    assert out == ""


@pytest.mark.parametrize(
    "args",
    [
        ["status", "{campaign}", "--json"],
        ["status", "{campaign}"],
        ["suppress", "export"],
        ["preview", "{campaign}", "--format", "eml"],
        ["--help"],
    ],
)
def test_any_command_into_a_closed_pipe_exits_quietly(tmp_path: Path, args: list[str]) -> None:
    """``stamp status --json | head -c1`` and friends: no traceback, no "Exception ignored"."""
    campaign = outbox_campaign(tmp_path)
    proc = stamp(*(a.format(campaign=campaign) for a in args), cwd=tmp_path)
    assert proc.stdout is not None
    proc.stdout.close()  # closed before stamp writes anything: every write meets EPIPE
    code, err = finish(proc)
    assert_clean(err)
    assert err == ""
    assert code == 0


def test_a_full_disk_under_stdout_is_said_once_and_the_send_goes_on(tmp_path: Path) -> None:
    """Not a pipe (ENOSPC, /dev/full): the output stops, one line on stderr says why."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    campaign = outbox_campaign(tmp_path, rate="2000/s")
    db = tmp_path / "stamp.db"
    env = {**os.environ, "STAMP_UNSUBSCRIBE_SECRET": UNSUB_SECRET}
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*STAMP, *send_args(campaign, db)],
            cwd=tmp_path,
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    code, err = done.returncode, done.stderr
    assert code == 0, err
    assert err.count("stdout stopped working") == 1, err
    assert_clean(err.replace("[Errno 28]", ""))
    assert state_counts(ledger_states(db)) == {"sent": N}
