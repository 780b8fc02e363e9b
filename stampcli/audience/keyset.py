"""The set of addresses seen while reading a list, in bounded memory.

Deduplication must remember every key it has seen so that the first row of an
address wins. A Python set costs ~100 bytes a key: 100 MB for a million-row
list, which would make memory grow with the audience. :class:`KeySet` keeps
keys in a set up to ``limit`` and, at the next new key, moves them into an
SQLite file in the temporary folder, where a lookup costs a few microseconds
and memory stays put.
Lists below the limit (nearly all) never touch the disk. :meth:`KeySet.first_row`
also remembers the row each key came from, so a duplicate can name it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from types import TracebackType

DEFAULT_LIMIT = 100_000


class KeySet:
    """``add(key)`` is True for a key not seen before; use as a context manager."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = DEFAULT_LIMIT if limit is None else limit
        self._memory: set[str] = set()
        self._rows: dict[str, int] = {}  # key -> first row, for first_row()
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self.spilled = 0  # keys moved to disk

    def add(self, key: str) -> bool:
        if self._db is None:
            if key in self._memory:
                return False
            self._memory.add(key)
            if len(self._memory) > self.limit:
                self._spill()
            return True
        cursor = self._db.execute("INSERT OR IGNORE INTO seen (key) VALUES (?)", (key,))
        return cursor.rowcount == 1

    def first_row(self, key: str, row: int) -> int | None:
        """None for a key not seen before (remembering ``row``), else the row it first had.

        Use either this or :meth:`add` on one set, not both.
        """
        if self._db is None:
            first = self._rows.setdefault(key, row)
            if first != row:
                return first
            if len(self._rows) > self.limit:
                self._spill()
            return None
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, row))
        if cursor.rowcount == 1:
            return None
        found = self._db.execute("SELECT row FROM seen WHERE key = ?", (key,)).fetchone()
        return int(found[0])

    def _spill(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="stamp-keys-", suffix=".db")
        os.close(fd)
        db = sqlite3.connect(self._path, isolation_level=None)
        # a scratch file: nothing to recover after a crash, so no journal and no syncs
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, row INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")
        if self._rows:
            db.executemany("INSERT INTO seen VALUES (?, ?)", self._rows.items())
        else:
            db.executemany("INSERT INTO seen (key) VALUES (?)", ((k,) for k in self._memory))
        self.spilled = len(self._memory) + len(self._rows)
        self._memory = set()
        self._rows = {}
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            with contextlib.suppress(OSError):  # the system cleans its temporary folder anyway
                os.unlink(self._path)
            self._path = None

    def __enter__(self) -> KeySet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
