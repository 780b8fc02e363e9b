"""Reload ``serve.yml`` when it changes on disk, as SIGHUP does.

A task on the server's loop looks at the file's modification time, size and inode
every ``every`` seconds; when they differ from the last look, it calls ``reload``
(:func:`stampcli.server.run.reload_keys`: keys and From domains taken, a file that
changes pools, providers or rates refused whole) and logs what it said. A file
being written is read once it stops changing: a half-written file fails to load,
the old keys stay, and the next change (the end of the write) is read again. An
editor that replaces the file (a new inode) is seen as well. A file that is gone
is not a change: the keys in use stay until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stamp.serve")

EVERY = 2.0  # seconds between looks at serve.yml


def signature(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of the file from another; None while it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatch:
    """``start()`` on the running loop; ``stop()`` before it ends."""

    def __init__(self, path: Path, reload: Callable[[], str], *, every: float = EVERY) -> None:
        self.path = path
        self.reload = reload
        self.every = every
        self._seen = signature(path)
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0  # changes acted on (for tests)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def check(self) -> str | None:
        """Reload if the file changed since the last look; what the reload said."""
        now = signature(self.path)
        if now is None or now == self._seen:
            return None
        self._seen = now
        self.reloads += 1
        return self.reload()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                said = self.check()
            except Exception as exc:  # a reload must never end the server
                log.error("serve.yml not reloaded (%s: %s)", type(exc).__name__, exc)
                continue
            if said is not None:
                log.info("%s (the file changed)", said)
