"""Rendering in worker processes, so that a big send uses both cores.

Rendering is pure CPU work (~0.2 ms a message) and the send loop's own work
(ledger, router, SMTP client) is about as much again; on one core they add
up to well under the 2,000 messages/s a relay can take. Worker processes,
each holding its own :class:`Renderer` built from the same campaign, render
chunks of ledger rows while the event loop sends.

A worker is a plain child process (``python -c`` running
:mod:`stampcli.render.worker`) that talks over its stdin and stdout in
length-prefixed pickle frames, not a ``multiprocessing`` pool: spawning
through ``multiprocessing`` re-imports the parent's main module in the child
and starts a resource-tracker process, together ~25 MB of memory for a
1M-recipient send that has 150 MB to live in.

Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the send
loop, not its helpers, decides what an interrupt means. A worker exits when
its stdin closes, so one whose parent died (even by SIGKILL) goes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

from stampcli.config import Campaign
from stampcli.errors import ExitCode, StampError
from stampcli.redact import redact
from stampcli.render.worker import FRAME, Checked, Rendered, Row, frame, received

__all__ = [
    "POOL_CHUNK",
    "Checked",
    "RenderPool",
    "RenderWorkerError",
    "Rendered",
    "Row",
    "default_workers",
    "most_workers",
]

POOL_CHUNK = 100  # rows per job: big enough to amortise the hand-over, small enough to stream

_READ_LIMIT = 8 << 20  # buffer a whole answer before pausing the pipe
_STOP_GRACE = 5.0  # seconds a worker gets to finish its chunk and exit after stdin closes
_WORKER = "from stampcli.render.worker import main; main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding stampcli/


class RenderWorkerError(StampError, RuntimeError):
    """A render worker process died: what was sent is recorded, the rest stays pending."""

    exit_code = ExitCode.RESUMABLE


def default_workers(recipients: int, *, raw: bool = True) -> int:
    """How many render processes pay off: none for small sends or a single core.

    One core fewer than the machine has, leaving one to the send loop; but when no
    provider needs the MIME bytes (``raw`` False) the send loop's share is small
    (0.1 ms a message against 0.16 ms of rendering), and a worker per core was
    measured faster: 100k recipients through Postmark's batch API in 19.9 s
    against 21.3 s on 2 cores.
    """
    cores = os.cpu_count() or 1
    if cores < 2 or recipients < 2000:
        return 0
    return min(cores if not raw else cores - 1, MOST_WORKERS)


MOST_WORKERS = 4  # render processes a send starts at most, whatever the core count


def most_workers() -> int:
    """How many render processes a pool may grow to: one per core.

    A send starts with :func:`default_workers`; when its loop then waits for renders
    (a template whose render costs more than the loop's own work per message) one more
    on the send loop's core pays: both cores render between the loop's turns.
    """
    return min(os.cpu_count() or 1, MOST_WORKERS)


class _Worker:
    """One child process and the jobs it has been given, answered in order."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.waiting: deque[asyncio.Future[list[Any]]] = deque()
        self.cpu = 0.0  # seconds of CPU its answered chunks took in the worker
        self.reader = asyncio.ensure_future(self._read_answers())

    async def _read_answers(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(FRAME.size)
                (size,) = FRAME.unpack(head)
                kind, value, cpu = pickle.loads(await stdout.readexactly(size))
                self.cpu += cpu
                future = self.waiting.popleft()
                if future.done():  # cancelled by a stopping run
                    continue
                if kind == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            pickle.UnpicklingError,
            IndexError,
            ValueError,  # not a 3-tuple
        ):
            error = RenderWorkerError(await self._death_notice())
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(error)

    async def _death_notice(self) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2.0)
        self.stderr.seek(0)
        tail = self.stderr.read()[-600:].decode("utf-8", "replace").strip()
        code = self.proc.returncode
        why = f"exit status {code}" if code is not None else "its output ended"
        text = f"a render worker process stopped ({why})"
        if tail:
            text += f": {' '.join(tail.splitlines()[-3:])}"
        return redact(text)

    async def job(self, rows: list[Row]) -> list[Any]:
        """The worker's answer for one chunk (messages or findings, by the pool's job)."""
        stdin = self.proc.stdin
        assert stdin is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.reader.done():  # already dead: fail like the jobs it had
            raise RenderWorkerError(await self._death_notice())
        self.waiting.append(future)
        try:
            stdin.write(frame(rows))
            await stdin.drain()
        except (ConnectionError, RuntimeError):
            pass  # the reader reports the death to this job's future
        return await future

    async def close(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None:
            with contextlib.suppress(Exception):
                stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), _STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        self.stderr.close()


async def _spawn(campaign: Campaign, raw: bool, job: str, fields: bool) -> _Worker:
    """One worker process, given its campaign (the environment, secrets included, is
    inherited, not sent)."""
    env = dict(os.environ)
    # the workers import stampcli from wherever this process did
    root = _PACKAGE_ROOT
    env["PYTHONPATH"] = os.pathsep.join(x for x in (root, env.get("PYTHONPATH")) if x)
    # kept open for the worker's life; read only to explain its death
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            limit=_READ_LIMIT,
        )
    except OSError as exc:
        stderr.close()
        raise RenderWorkerError(f"cannot start a render worker process: {exc}") from exc
    assert proc.stdin is not None
    proc.stdin.write(frame((campaign, raw, job, fields)))
    return _Worker(proc, stderr)


class RenderPool:
    """``await pool.render(rows)`` renders a chunk of rows in a worker process.

    Create it with ``await RenderPool.start(campaign, workers)``; ``await pool.aclose()``
    stops the workers. A pool started with ``job="check"`` answers ``await
    pool.check(rows)`` instead: each row rendered and checked in the worker.
    """

    def __init__(self, workers: list[_Worker], start: tuple[Campaign, bool, str, bool]) -> None:
        self._workers = workers
        self.workers = len(workers)
        self._start = start  # what one more worker is started with (grow)

    @classmethod
    async def start(
        cls,
        campaign: Campaign,
        workers: int,
        *,
        raw: bool = True,
        job: Literal["render", "check"] = "render",
        fields: bool = True,
    ) -> RenderPool:
        """``workers`` processes rendering ``campaign`` (``raw``: see ``Renderer.raw``;
        ``fields`` False: the messages come without html and text, for providers that
        send only the MIME bytes)."""
        started: list[_Worker] = []
        start = (campaign, raw, job, fields)
        try:
            for _ in range(workers):
                started.append(await _spawn(*start))
        except RenderWorkerError:
            for worker in started:
                await worker.close()
            raise
        return cls(started, start)

    async def grow(self) -> None:
        """Start one more worker (the send loop waits for renders and a core has room)."""
        self._workers.append(await _spawn(*self._start))
        self.workers = len(self._workers)

    async def render(self, rows: Sequence[Row]) -> list[Rendered]:
        return received(await self._least_busy().job(list(rows)))

    async def check(self, rows: Sequence[Row]) -> list[Checked]:
        """Findings for each row (a pool started with ``job="check"``)."""
        answer: list[Checked] = await self._least_busy().job(list(rows))
        return answer

    @property
    def cpu(self) -> float:
        """Seconds of CPU the workers spent on the chunks answered so far."""
        return sum(w.cpu for w in self._workers)

    def _least_busy(self) -> _Worker:
        return min(self._workers, key=lambda w: len(w.waiting))

    async def aclose(self) -> None:
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.close() for w in workers))
