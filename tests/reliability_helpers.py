"""Shared helpers for the reliability suite (issue #8): campaigns, ``stamp`` subprocesses,
ledger reads, and memory measurement.

Everything runs for real: ``stamp`` is started as ``sys.executable -m stampcli`` in
its own process (so it can be killed), the store is a real SQLite file, and the
servers are the local fakes from ``smtp_server`` and ``provider_fakes`` running
in threads of the test process (so they survive the kills).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from smtp_server import Pause, SMTPTestServer

STAMP = [sys.executable, "-m", "stampcli"]
# The unsubscribe HMAC secret every campaign here signs its tokens with (a secret to grep for).
UNSUB_SECRET = "unsub-hmac-SECRET-4b1d9e0c77a2f5e3d8c6"
UNSUBSCRIBE = (
    "unsubscribe:\n"
    '  url: "https://acme.example/u?t={{ unsubscribe_token }}"\n'
    '  mailto: "unsubscribe@acme.example"\n'
)


def addresses(n: int, domain: str = "example.test") -> list[str]:
    return [f"user{i}@{domain}" for i in range(n)]


def write_list(path: Path, n: int, domain: str = "example.test") -> Path:
    """A CSV of ``n`` subscribers (email, first_name), written in one go."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,first_name\n")
        for i, address in enumerate(addresses(n, domain)):
            fh.write(f"{address},U{i}\n")
    return path


def write_campaign(
    folder: Path,
    providers: Iterable[dict[str, Any]],
    *,
    n: int | None = None,
    name: str = "reliability",
    audience: str | None = None,
    extra: str = "",
    template: str = "<p>Hello {{ first_name }}</p>",
) -> Path:
    """campaign.yml (+ t.html, + list.csv of ``n`` rows unless ``audience`` is given).

    ``providers`` are mappings written as YAML flow mappings (JSON is YAML).
    """
    (folder / "t.html").write_text(template, encoding="utf-8")
    if audience is None:
        assert n is not None
        write_list(folder / "list.csv", n)
        audience = "  file: list.csv\n"
    lines = "".join(f"  - {json.dumps(p)}\n" for p in providers)
    path = folder / "campaign.yml"
    path.write_text(
        f"name: {name}\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n" + UNSUBSCRIBE + f"audience:\n{audience}"
        f"providers:\n{lines}" + extra,
        encoding="utf-8",
    )
    return path


def stamp(
    *args: str | os.PathLike[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen[str]:
    """``stamp ARGS`` as a child process with stdout/stderr piped (text)."""
    full_env = {**os.environ, "STAMP_UNSUBSCRIBE_SECRET": UNSUB_SECRET, **(env or {})}
    return subprocess.Popen(
        [*STAMP, *map(str, args)],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def send_args(campaign: Path, db: Path, *extra: str) -> list[str]:
    return ["send", str(campaign), "--yes", "--log-format", "json", "--db", str(db), *extra]


def run_stamp(
    *args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = stamp(*args, cwd=cwd, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"stamp {args} did not finish in {timeout} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary_of(out: str) -> dict[str, Any]:
    lines = json_lines(out)
    assert lines and lines[-1]["event"] == "summary", out
    return lines[-1]


def ledger_states(db: Path) -> dict[str, str]:
    """key -> state for every ledger row (every campaign in ``db``)."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT key, state FROM ledger").fetchall())


def ledger_rows(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]


def state_counts(states: dict[str, str]) -> Counter[str]:
    return Counter(states.values())


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = 30,
    proc: subprocess.Popen[str] | None = None,
    what: str = "condition",
) -> bool:
    """Poll ``predicate`` until true; False if ``proc`` exited first. Fails on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            return predicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)
    return True


def slow_smtp_server(delay: float = 0.003, **kwargs: Any) -> SMTPTestServer:
    """A recording SMTP server answering every MAIL FROM ``delay`` seconds late."""
    server = SMTPTestServer(**kwargs)
    server.on_mail(Pause(delay, "250 OK"))
    return server


# --------------------------------------------------------------------------- memory

# The peak RSS of this process since it started. Not ru_maxrss: a child started with
# vfork (as subprocess does) inherits its parent's peak into ru_maxrss at exec, so a
# test process holding a million addresses made every probe report ~140 MB.
PEAK_KB = r"""
def peak_kb():
    import resource
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

RSS_PROBE = (
    PEAK_KB
    + r"""
import resource, runpy, sys
sys.argv = ["stamp", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("stampcli", run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
peak = peak_kb()
# render workers, if any (at most this process's peak when they started, plus their own)
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\nRSS_PEAK_KB={max(peak, child)}\n")
sys.exit(code)
"""
)


def run_measured(
    *args: str | os.PathLike[str],
    cwd: Path,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``stamp ARGS`` in a child process; returns (result, peak RSS in KiB of that child)."""
    proc = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, *map(str, args)],
        cwd=cwd,
        env={**os.environ, "STAMP_UNSUBSCRIBE_SECRET": UNSUB_SECRET, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("RSS_PEAK_KB=")]
    assert marker, proc.stderr
    return proc, int(marker[-1].split("=", 1)[1])


def baseline_rss_kb(cwd: Path) -> int:
    """Peak RSS of ``stamp --help``-like startup: every module imported, nothing done."""
    probe = PEAK_KB + (
        "import stampcli.cli.app, stampcli.delivery.engine, stampcli.audience.sources\n"
        "import stampcli.render.renderer, stampcli.delivery.router\n"
        "print(peak_kb())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


# --------------------------------------------------------------------------- a counting sink


class CountingSink:
    """A minimal SMTP sink on 127.0.0.1 (asyncio, own thread): counts accepted recipients.

    Keeps one counter per recipient and nothing of the messages, so a load test
    can check "everyone exactly once" for a large audience cheaply. Speaks just
    enough SMTP (EHLO with PIPELINING, MAIL, RCPT, DATA, RSET, NOOP, QUIT).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._loop: Any = None
        self._thread: Any = None
        self._server: Any = None

    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?tls=none"

    @property
    def accepted(self) -> int:
        return sum(self.counts.values())

    async def _session(self, reader: Any, writer: Any) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        rcpts: list[str] = []
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
                elif verb == b"MAIL":
                    rcpts = []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    addr = line.split(b":", 1)[1].strip().split(b" ")[0].strip(b"<>")
                    rcpts.append(addr.decode("utf-8", "replace").lower())
                    writer.write(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    self.counts.update(rcpts)
                    rcpts = []
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                else:  # RSET, NOOP, anything else
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> CountingSink:
        import asyncio
        import threading

        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._session, "127.0.0.1", 0, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.close()

        self._thread = threading.Thread(target=run, name="counting-sink", daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
