"""The SMTP wire protocol of a set-up session: pipelined writes, replies parsed as they come.

aiosmtplib opens a session (connect, EHLO, STARTTLS, AUTH); :class:`Conn`
then hands its transport to :class:`Wire`, which the SMTP adapter
(:mod:`stampcli.providers.smtp`) drives for every message: MAIL, RCPT and
DATA in one write when the server offers PIPELINING (RFC 2920). Nothing here
classifies replies; that is the adapter's job.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.response import SMTPResponse

MAX_REPLY = 1 << 16  # bytes of one reply at most (aiosmtplib's own bound is similar)


class Wire(asyncio.Protocol):
    """The per-message path of a set-up session: raw writes, replies parsed as they come.

    aiosmtplib's protocol pairs one write with one reply and drops replies that
    arrive early, so it cannot pipeline (RFC 2920); once a session is set up
    (connect, EHLO, STARTTLS, AUTH by aiosmtplib), its transport is handed to
    this protocol, which queues every complete reply. MAIL, RCPT and DATA then
    go in one write when the server offers PIPELINING: one round trip and one
    system call instead of three before the message data.
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.replies: deque[SMTPResponse] = deque()
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        transport.set_protocol(self)

    @property
    def connected(self) -> bool:
        return self.error is None and not self.transport.is_closing()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\n")
            start = 0
            lines: list[bytes] = []
            while end != -1:
                line = bytes(buffer[start : end + 1])
                lines.append(line)
                start = end + 1
                if line[3:4] != b"-":
                    break
                end = buffer.find(b"\n", start)
            else:
                if len(buffer) > MAX_REPLY:
                    self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
                break  # no complete reply yet
            del buffer[:start]
            try:
                code = int(lines[0][:3])
            except ValueError:
                text = lines[0].decode("utf-8", "replace").strip()
                self._fail(
                    aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
                )
                return
            text = "\n".join(
                line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape") for line in lines
            )
            self.replies.append(SMTPResponse(code, text))
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        if self.error is None:
            self.error = aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
            lost.__cause__ = exc
            self.error = lost
        self._wake()

    def write(self, data: bytes) -> None:
        if not self.connected:
            raise self.error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)  # type: ignore[attr-defined]

    async def read(self, seconds: float | None) -> SMTPResponse:
        """The next reply; raises SMTPServerDisconnected or SMTPReadTimeoutError."""
        while not self.replies:
            if self.error is not None:
                raise self.error
            loop = asyncio.get_running_loop()
            waiter = self.waiter = loop.create_future()
            timer = None
            if seconds is not None:  # a timer, not wait_for: no task per reply
                timer = loop.call_later(seconds, _time_out, waiter)
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
        return self.replies.popleft()

    def close(self) -> None:
        self.transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
        )


@dataclass
class Conn:
    smtp: aiosmtplib.SMTP
    size: bool  # server takes SIZE= on MAIL FROM
    utf8: bool  # server takes SMTPUTF8
    pipelining: bool = False  # server takes MAIL, RCPT and DATA in one write
    fresh: bool = True  # not yet used for a message
    wire: Wire | None = field(default=None, repr=False)  # set once the session is set up

    def take_over(self) -> Wire:
        """Move the set-up session's transport to a :class:`Wire` (once)."""
        if self.wire is None:
            transport = self.smtp.transport
            if transport is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost after setting up")
            self.wire = Wire(transport)
        return self.wire

    @property
    def connected(self) -> bool:
        """Still open, and no stray reply waiting that the next command would take as its own."""
        if self.wire is not None:
            return self.wire.connected and not self.wire.replies and not self.wire.buffer
        return self.smtp.is_connected

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
        self.smtp.close()
