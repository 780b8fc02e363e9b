"""The render worker process: reads chunks of ledger rows, answers rendered messages.

Started by :class:`stampcli.render.pool.RenderPool` as ``python -c``; it
imports only what rendering needs. On stdin: one frame holding the
:class:`Campaign`, ``Renderer.raw``, the job (``"render"`` or ``"check"``) and whether the
messages carry their html and text (False: only ``raw`` is sent anywhere), then one
frame per chunk of rows. On stdout: one frame per chunk, in order, ``("ok", [...], cpu)`` or
``("error", exception, 0.0)`` for a failure that concerns the whole template (``cpu``:
the seconds of CPU the chunk took here, which tells the send loop whether rendering
is what it waits for). A render job
answers ``MessageCodec.encode() | reason`` for each row; a check job (``stamp check``)
renders and checks each row where it is and answers only its findings
(:data:`Checked`), so the messages themselves never cross the pipe. EOF on stdin ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import re
import signal
import struct
import sys
import time
from typing import IO, Any

import orjson

from stampcli.errors import RecipientError, StampError, TemplateError
from stampcli.render.checks import Finding, check_message, failure
from stampcli.render.message import Message, MessageCodec
from stampcli.render.renderer import Renderer

# (key, email, fields as a JSON object string)
Row = tuple[str, str, str]
# a rendered message, or the reason the recipient cannot get one
Rendered = Message | str
# what crosses the pipe for it: the message's fields (MessageCodec.encode), or the reason
Sent = tuple[Any, ...] | str
# a checked row: its findings, whether it rendered, whether it stops the check (a
# template error, as it stops a send); None for a row after such a stop
Checked = tuple[tuple[Finding, ...], bool, bool] | None

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
_PIPE_SIZE = 4 << 20
FRAME = struct.Struct(">Q")  # every frame: its length, then that many bytes of pickle


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    (size,) = FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# orjson reads an integer past 64 bits as a float; the planner's json fallback writes them
_LONG_NUMBER = re.compile(r"[0-9]{19}")


def read_fields(text: str) -> Any:
    """A row's fields: orjson (a third of json.loads' time) unless json wrote what it lacks."""
    if _LONG_NUMBER.search(text) is None:
        with contextlib.suppress(orjson.JSONDecodeError):  # NaN and the like
            return orjson.loads(text)
    return json.loads(text)


_HTML_AT, _RAW_AT = 8, 10  # MessageCodec's order: html, text, raw


def render_rows(renderer: Renderer, rows: list[Row], *, fields: bool = True) -> list[Sent]:
    """Each row's message; ``fields`` False: without html and text (empty), which no
    provider of the send reads, so that only the MIME bytes cross the pipe."""
    out: list[Sent] = []
    for key, email, row_fields in rows:
        value: Any = read_fields(row_fields)
        try:
            done = renderer.render_tuple(key, email, value if isinstance(value, dict) else {})
        except RecipientError as exc:
            out.append(str(exc))
            continue
        out.append(done if fields else (*done[:_HTML_AT], "", "", *done[_RAW_AT:]))
    return out


def check_rows(renderer: Renderer, rows: list[Row]) -> list[Checked]:
    """Render and check each row here; after a template error the rest go unchecked."""
    out: list[Checked] = []
    stopped = False
    for key, email, fields in rows:
        if stopped:
            out.append(None)
            continue
        value: Any = read_fields(fields)
        try:
            message = renderer.render(key, email, value if isinstance(value, dict) else {})
        except StampError as exc:
            # what stops `stamp send` (not one recipient's problem) stops the check
            stopped = isinstance(exc, TemplateError)
            out.append(((failure(exc),), False, stopped))
            continue
        out.append((tuple(check_message(message, renderer)), True, False))
    return out


def received(answer: list[Sent]) -> list[Rendered]:
    """The messages of a worker's answer, as the parent uses them."""
    decode = MessageCodec.decode
    return [value if isinstance(value, str) else decode(value) for value in answer]


def _answer(exc: BaseException) -> bytes:
    """An exception as a frame; one that cannot be pickled goes as its text."""
    try:
        return frame(("error", exc, 0.0))
    except Exception:
        return frame(("error", StampError(str(exc)), 0.0))


def _widen_pipe(fd: int) -> None:
    """Let a whole answer (~1 MB for 100 messages) wait in the pipe.

    With the default 64 KiB the worker blocks on every answer until the event loop
    comes round to read it, and sits idle while the parent is busy sending.
    """
    for size in (_PIPE_SIZE, _PIPE_SIZE // 4):
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
            return
        except OSError:  # above /proc/sys/fs/pipe-max-size, or not a pipe
            continue


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    # frames go out on the real stdout; anything printed by accident goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _widen_pipe(out.fileno())
    renderer: Renderer | None = None
    failure = b""
    job = "render"
    fields = True
    try:
        campaign, raw, job, fields = read_frame(stdin)
        renderer = Renderer(campaign, raw=raw)
    except EOFError:
        return
    except StampError as exc:  # e.g. a template that does not compile: every chunk says so
        failure = _answer(exc)
    while True:
        try:
            rows = read_frame(stdin)
        except EOFError:
            return
        if renderer is None:
            answer = failure
        else:
            try:
                began = time.process_time()
                if job == "check":
                    done: list[Any] = check_rows(renderer, rows)
                else:
                    done = render_rows(renderer, rows, fields=fields)
                answer = frame(("ok", done, time.process_time() - began))
            except StampError as exc:
                answer = _answer(exc)
        out.write(answer)
        out.flush()


if __name__ == "__main__":
    main()
