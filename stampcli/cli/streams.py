"""Standard output and error that a closed reader cannot break.

``stamp send ... | head -1``: once ``head`` has its line it closes the pipe,
and every later write to stdout raises ``BrokenPipeError``, from wherever it
happens (a JSON log line, a rich refresh in its own thread, Python's own flush
at exit). Writing progress or logs must never stop a send, so :func:`protect`
(called once by ``main()``) puts a guard around ``sys.stdout`` and
``sys.stderr``: the first write or flush that fails with an ``OSError`` (a
closed pipe, a socket reset by a log collector, a full disk, a closed
descriptor) turns that stream off. Its descriptor is pointed at the null
device, so whatever is still buffered, in Python or in a library, drains there
and the exit-time flush has nothing to complain about; later writes are
dropped without a system call. The command goes on and exits with the code it
earned. A closed pipe is the reader's choice and passes silently; any other
failure is said once on the other stream, if that one still works.

A process started with stdout or stderr closed (``>&-``) gets the null device
for it, so the writes find a file.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import IO, Any

# a reader that went away: expected (`| head`), nothing to report
_GONE = frozenset((errno.EPIPE, errno.ECONNRESET))


class _Guard:
    """One standard stream's on/off switch, shared by its text and binary layers."""

    def __init__(self, name: str, fd: int | None) -> None:
        self.name = name  # "stdout" or "stderr"
        self.fd = fd
        self.broken = False
        self.lock = threading.Lock()  # rich refreshes from its own thread

    def fail(self, exc: OSError) -> None:
        """Turn the stream off after ``exc``; said once on the other stream unless a pipe."""
        with self.lock:
            if self.broken:
                return
            self.broken = True
            if self.fd is not None:
                try:
                    null = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(null, self.fd)
                    finally:
                        os.close(null)
                except OSError:
                    pass  # the descriptor is gone: nothing will be written to it anyway
        if exc.errno not in _GONE:
            other = sys.stderr if self.name == "stdout" else sys.stdout
            if other is not None:
                other.write(f"stamp: {self.name} stopped working ({exc}); output to it dropped\n")
                other.flush()


class _Binary:
    """``sys.stdout.buffer`` behind the same guard."""

    def __init__(self, raw: Any, guard: _Guard) -> None:
        self._raw = raw
        self._guard = guard

    def write(self, data: bytes) -> int:
        if not self._guard.broken:
            try:
                return int(self._raw.write(data))
            except OSError as exc:
                self._guard.fail(exc)
        return len(data)

    def flush(self) -> None:
        if not self._guard.broken:
            try:
                self._raw.flush()
            except OSError as exc:
                self._guard.fail(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class SafeStream:
    """A text stream that stops writing, instead of raising, once its file fails.

    Everything but writing (``isatty``, ``fileno``, ``encoding``, ...) is the
    wrapped stream's, so rich and click see the terminal or pipe they would see.
    """

    def __init__(self, stream: IO[str], name: str) -> None:
        self._stream = stream
        try:
            fd: int | None = stream.fileno()
        except (OSError, ValueError, AttributeError):
            fd = None
        self._guard = _Guard(name, fd)
        raw = getattr(stream, "buffer", None)
        self.buffer = _Binary(raw, self._guard) if raw is not None else None

    @property
    def broken(self) -> bool:
        """This stream failed and is off."""
        return self._guard.broken

    def write(self, text: str) -> int:
        if not self._guard.broken:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._guard.fail(exc)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._guard.broken:
            try:
                self._stream.flush()
            except OSError as exc:
                self._guard.fail(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _usable(stream: IO[str] | None, fd: int, name: str) -> IO[str]:
    if stream is not None:
        return stream
    # started with the descriptor closed: Python left sys.<name> None
    try:
        os.fstat(fd)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


def protect() -> None:
    """Guard ``sys.stdout`` and ``sys.stderr`` for the rest of the process (idempotent)."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name)
        if isinstance(current, SafeStream):
            continue
        setattr(sys, name, SafeStream(_usable(current, fd, name), name))
