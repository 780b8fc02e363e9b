"""Rendering in worker processes, so that a big send uses both cores.

Rendering is pure CPU work (~0.3 ms a message) and the send loop's own work
(ledger, router, SMTP client) is about as much again; on one core they add
up to well under the 2,000 messages/s a relay can take. A pool of worker
processes, each holding its own :class:`Renderer` built from the same
campaign, renders chunks of ledger rows while the event loop sends.

Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the send
loop, not its helpers, decides what an interrupt means. A worker whose parent
died exits when its call queue closes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from stampcli.config import Campaign
from stampcli.errors import RecipientError
from stampcli.render.message import Message
from stampcli.render.renderer import Renderer

# (key, email, fields as a JSON object string)
Row = tuple[str, str, str]
# a rendered message, or the reason the recipient cannot get one
Rendered = Message | str

POOL_CHUNK = 100  # rows per job: big enough to amortise the hand-over, small enough to stream

_renderer: Renderer | None = None


def _start(campaign: Campaign) -> None:
    global _renderer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _renderer = Renderer(campaign)  # the environment (secrets) is inherited


def _render_rows(rows: Sequence[Row]) -> list[Rendered]:
    import json

    renderer = _renderer
    if renderer is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("render worker used before it was started")
    out: list[Rendered] = []
    for key, email, fields in rows:
        value: Any = json.loads(fields)
        try:
            out.append(renderer.render(key, email, value if isinstance(value, dict) else {}))
        except RecipientError as exc:
            out.append(str(exc))
    return out


def default_workers(recipients: int) -> int:
    """How many render processes pay off: none for small sends or a single core."""
    cores = os.cpu_count() or 1
    if cores < 2 or recipients < 2000:
        return 0
    return min(cores - 1, 4)


class RenderPool:
    """``await pool.render(rows)`` renders a chunk of rows in a worker process."""

    def __init__(self, campaign: Campaign, workers: int) -> None:
        # spawn, not fork: the parent holds an SQLite connection and an event loop
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start,
            initargs=(campaign,),
        )
        self.workers = workers

    async def render(self, rows: Sequence[Row]) -> list[Rendered]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _render_rows, list(rows))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
