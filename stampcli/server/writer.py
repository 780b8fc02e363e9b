"""The server's one writer: a thread that owns the store connection and commits for everyone.

Requests never touch the store themselves. They hand their work to
:class:`StoreWriter` and await it; the thread runs the jobs in arrival order
on its own connection, so writes are serialised without locks and SQLite never
answers "database is locked" to a request. Delivery events of requests that
queue up while a commit is running are recorded together in the next call
(group commit): many concurrent one-event requests (Mailgun, Postmark) cost
one commit per group, not one each. Each awaiting request is answered only
after the commit that holds its events returned, so a 2xx is never given for
an event a crash could lose.

Other work may be grouped the same way with :meth:`StoreWriter.batch`: jobs that
name the same ``many(store, items)`` function and wait together are handed to
one call of it, which writes them all in one commit (the send API's queue:
many concurrent ``POST /v1/messages`` cost one commit, not one each) and
returns one result per item, each answered only after that commit.

The queue is bounded in events: past ``max_pending`` a request is refused at
once with :class:`Overloaded` (the server answers 503 and the provider
retries), so memory stays flat however fast a flood arrives.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stampcli.errors import StampError, StoreError
from stampcli.events.model import DeliveryEvent
from stampcli.store.protocols import Store

log = logging.getLogger("stamp.serve")

RecordEvents = Callable[[Store, Sequence[DeliveryEvent]], object]
OpenStore = Callable[[], Store]

MAX_GROUP = 5_000  # events per commit: bigger groups save little and hold the writer longer
MAX_PENDING = 100_000  # events queued or being written before requests are refused


class Overloaded(StampError):
    """The writer has more events waiting than it accepts; the request should be retried."""


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    events: Sequence[DeliveryEvent] = ()
    call: Callable[[Store], Any] | None = None
    size: int = field(default=0)
    many: Callable[[Store, list[Any]], Sequence[Any]] | None = None
    item: Any = None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request went away (client disconnected); the write stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_all(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        _settle(future, result, error)


def _reply(jobs: Sequence[_Job], answers: Sequence[tuple[Any, BaseException | None]]) -> None:
    """Answer each job on its loop: one wake-up per loop for a whole group, not one each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for job, (result, error) in zip(jobs, answers, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, found in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, found)


def _default_record(store: Store, events: Sequence[DeliveryEvent]) -> object:
    from stampcli.service.events import record_events

    return record_events(store, events)


class _Recorder:
    """``record_events`` with an answer cache of its own: the writer is one long-lived
    store user, so auto-stop may reuse the ledger's answer counts for a moment
    (``service.events.AnswerCache``) instead of counting them for every batch."""

    def __init__(self) -> None:
        from stampcli.service.events import AnswerCache

        self.answers = AnswerCache()

    def __call__(self, store: Store, events: Sequence[DeliveryEvent]) -> object:
        from stampcli.service.events import record_events

        return record_events(store, events, answers=self.answers)


class StoreWriter:
    """The writer thread. ``start()`` opens the store (raising ``StoreError`` if it cannot);
    ``record(events)`` and ``call(fn)`` are awaited from the event loop; ``stop()`` drains."""

    def __init__(
        self,
        open_store: OpenStore,
        record: RecordEvents = _default_record,
        *,
        max_group: int = MAX_GROUP,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._open = open_store
        self._record: RecordEvents = _Recorder() if record is _default_record else record
        self.max_group = max_group
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending = 0  # events accepted and not yet answered (the loop thread's count)
        self._pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self.commits = 0  # groups written (for the benchmark and tests)

    # -- the loop side ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stamp-store-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    def stop(self) -> None:
        """Finish every queued job, then close the store."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    async def record(self, events: Sequence[DeliveryEvent]) -> object:
        """Record ``events`` durably; returns when they are committed (the record's result).

        Raises ``Overloaded`` when too much is already waiting, ``StoreError`` when the
        store refused the commit.
        """
        return await self._bounded(len(events), events=events)

    async def _bounded(self, size: int, **job: Any) -> Any:
        with self._pending_lock:
            if self._pending and self._pending + size > self.max_pending:
                raise Overloaded(
                    f"{self._pending:,} writes are waiting to be made; try again shortly"
                )
            self._pending += size
        try:
            return await self._submit(size=size, **job)
        finally:
            with self._pending_lock:
                self._pending -= size

    async def call(self, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn(store)`` on the writer thread, in turn with the writes."""
        return await self._submit(call=fn)

    async def batch(self, many: Callable[[Store, list[Any]], Sequence[Any]], item: Any) -> Any:
        """``many(store, [item, ...])[i]`` for this ``item``, with the items of other ``batch``
        calls of the same ``many`` that wait meanwhile (up to ``max_group`` of them): one
        call, so one commit, for all. ``many`` returns one result per item, in order; a
        result that is an exception is raised to that item's caller alone."""
        return await self._bounded(1, many=many, item=item)

    async def _submit(self, **job: Any) -> Any:
        if self._thread is None or not self._thread.is_alive():
            raise StoreError("the store writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(loop, future, **job))
        return await future

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            store = self._open()
        except BaseException as exc:  # reported to start(), which raises it
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            with store.checkpoints_in_background():
                self._serve(store)
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()

    def _serve(self, store: Store) -> None:
        held: _Job | None = None
        while True:
            job = held if held is not None else self._queue.get()
            held = None
            if job is None:
                return
            if job.call is not None:
                self._answer([job], functools.partial(job.call, store))
                continue
            if job.many is not None:
                held = self._batch(store, job)
                continue
            group, count = [job], job.size
            while count < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.call is not None or nxt.many is not None:
                    held = nxt
                    if nxt is None:
                        self._write(store, group)
                        return
                    break
                group.append(nxt)
                count += nxt.size
            self._write(store, group)

    def _batch(self, store: Store, first: _Job) -> _Job | None:
        """Run ``first`` with the jobs of the same ``many`` queued behind it; the next job
        of another kind (held back for the loop), if one was taken off the queue."""
        group = [first]
        held: _Job | None = None
        while len(group) < self.max_group:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # stop() was called: finish this group, then stop as asked
                self._queue.put(None)
                break
            if nxt.many is not first.many:
                held = nxt
                break
            group.append(nxt)
        many = first.many
        assert many is not None
        results: Sequence[Any] = ()
        error: BaseException | None = None
        try:
            results = many(store, [job.item for job in group])
            if len(results) != len(group):
                raise RuntimeError(f"{len(results)} results for {len(group)} items")
        except StoreError as exc:
            error = exc
        except Exception as exc:  # a bug in a batch must not end the writer
            log.error("store writer: %s in a batch (%s)", type(exc).__name__, exc)
            error = StoreError(f"the write failed ({type(exc).__name__})")
        self.commits += 1
        if error is not None:
            _reply(group, [(None, error)] * len(group))
        else:
            _reply(
                group,
                [(None, r) if isinstance(r, BaseException) else (r, None) for r in results],
            )
        return held

    def _write(self, store: Store, group: list[_Job]) -> None:
        events = [event for job in group for event in job.events]
        self._answer(group, lambda: self._record(store, events))
        self.commits += 1

    @staticmethod
    def _answer(jobs: list[_Job], work: Callable[[], Any]) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = work()
        except StoreError as exc:
            error = exc
        except Exception as exc:  # a bug in a record call must not end the writer
            log.error("store writer: %s while writing (%s)", type(exc).__name__, exc)
            error = StoreError(f"the write failed ({type(exc).__name__})")
        _reply(jobs, [(result, error)] * len(jobs))
