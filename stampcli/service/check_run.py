"""``stamp check`` over a whole audience, in the render worker processes when it is big.

Checking is rendering plus a look at each message, so it is as CPU-bound as a
send and uses the same :class:`~stampcli.render.pool.RenderPool` a send does;
each worker renders and checks its rows where they are and answers only the
findings, so no message crosses a pipe. Rows go out as the ledger would hold
them (:func:`stampcli.delivery.planner.snapshot`), so the check sees the
values a send renders from. Answers are taken in audience order, which makes
the report the same as a check on one core: the same groups, the same first
rows, and after a template error every later recipient counted as unchecked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

from stampcli.config import Campaign
from stampcli.delivery.planner import snapshot
from stampcli.render.checks import CheckReport, check_audience
from stampcli.render.pool import POOL_CHUNK, Checked, RenderPool, Row, default_workers
from stampcli.render.renderer import Renderer

Contact = tuple[int, str, str, dict[str, Any]]  # row, key, email, fields

# below this many recipients starting worker processes costs more than it saves
SEQUENTIAL_UP_TO = 2000
_IN_FLIGHT_PER_WORKER = 2  # chunks queued at each worker, so none waits for the next


def check_contacts(
    campaign: Campaign,
    renderer: Renderer,
    contacts: Iterable[Contact],
    *,
    workers: int | None = None,
) -> CheckReport:
    """Render and check every contact; in ``workers`` processes (None: as a send would)."""
    stream = iter(contacts)
    head = list(islice(stream, SEQUENTIAL_UP_TO))
    if workers is None:
        # every recipient renders in a worker; the parent only reads the audience
        workers = 0 if len(head) < SEQUENTIAL_UP_TO else default_workers(10**9, raw=False)
    if workers <= 0:
        return check_audience(renderer, chain(head, stream))
    return asyncio.run(_check_pooled(campaign, chain(head, stream), workers))


async def _check_pooled(
    campaign: Campaign, contacts: Iterator[Contact], workers: int
) -> CheckReport:
    report = CheckReport()
    pool = await RenderPool.start(campaign, workers, job="check")
    pending: deque[tuple[list[tuple[int, str]], asyncio.Future[list[Checked]]]] = deque()
    stopped = False

    def merge(rows: list[tuple[int, str]], answers: list[Checked]) -> None:
        nonlocal stopped
        for (row, key), checked in zip(rows, answers, strict=True):
            report.recipients += 1
            if stopped or checked is None:
                report.unchecked += 1
                continue
            findings, rendered, stops = checked
            report.rendered += rendered
            for finding in findings:
                report.add(finding, row, key)
            stopped = stops

    try:
        while not stopped:
            chunk = list(islice(contacts, POOL_CHUNK))
            if not chunk:
                break
            rows: list[Row] = [(key, email, snapshot(fields)) for _, key, email, fields in chunk]
            future = asyncio.ensure_future(pool.check(rows))
            pending.append(([(row, key) for row, key, _, _ in chunk], future))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                merge(*await _first(pending))
        while pending:
            merge(*await _first(pending))
    finally:
        for _, left in pending:
            left.cancel()
        await pool.aclose()
    for _ in contacts:  # after a template error: counted, not rendered
        report.recipients += 1
        report.unchecked += 1
    return report


async def _first(
    pending: deque[tuple[list[tuple[int, str]], asyncio.Future[list[Checked]]]],
) -> tuple[list[tuple[int, str]], list[Checked]]:
    rows, future = pending.popleft()
    return rows, await future
