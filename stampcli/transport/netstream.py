"""An asyncio network backend for httpcore: the provider APIs' sockets without anyio.

httpx speaks HTTP/1.1 (h11, pooling, keep-alive, TLS settings) through
httpcore, which reaches its sockets through anyio's streams. On asyncio
anyio adds a cancel scope to every read and write, task and typed-attribute
lookups and a poll of the socket before reusing a connection: about a quarter
of the send loop's time for a one-message-per-call provider (py-spy of a
SendGrid send to nginx on 127.0.0.1). This backend talks to the event loop
directly through a :class:`asyncio.Protocol`: a read waits on one future, a
timeout is one loop timer, and a write goes straight to the transport, waiting
only while the transport pushes back. Everything above the socket stays
httpx's and httpcore's, and so do the exceptions: the same httpcore
``ConnectError``/``ReadTimeout``/... anyio's backend raises, which httpx maps to
its own. On a loop that is not the standard library's (uvloop, which ``stamp
serve`` runs on and where the send API's providers are called) connections go
through anyio's backend as before: this one relies on the stdlib transports.

:func:`use_asyncio_backend` fits it to an ``httpx.AsyncHTTPTransport``; a
transport whose pool does not look as expected (another httpcore) keeps
anyio's backend.
"""

# httpcore's interface passes every timeout as an argument (ASYNC109 wants asyncio.timeout)
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

import httpcore
import httpx

_HIGH_WATER = 1 << 20  # bytes read ahead of httpcore before reading pauses
_HAPPY_EYEBALLS = 0.25  # seconds, as anyio's connect_tcp
_ANYIO = httpcore.AnyIOBackend()


class _Protocol(asyncio.Protocol):
    """The bytes a connection received, and waiting for more or for room to write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost: BaseException | None = None  # the error the connection was lost with
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport: HTTP/1.1 never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = exc
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._reading_paused and len(self.buffer) <= _HIGH_WATER // 4 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_readable(self, timeout: float | None) -> None:
        """Until data or the end arrives; TimeoutError after ``timeout`` seconds."""
        self._waiter = asyncio.get_running_loop().create_future()
        await _bounded(self._waiter, timeout)

    async def drain(self, timeout: float | None) -> None:
        """Until the transport takes writes again; TimeoutError after ``timeout`` seconds."""
        if not self._writing_paused or self.lost is not None or self.eof:
            return
        self._drained = asyncio.get_running_loop().create_future()
        await _bounded(self._drained, timeout)


async def _bounded(future: asyncio.Future[None], timeout: float | None) -> None:
    """Await ``future``; TimeoutError if it is not done within ``timeout`` seconds."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (plain or TLS) as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        proto = self._protocol
        if not proto.buffer and not proto.eof:
            try:
                await proto.wait_readable(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading the answer") from None
        if proto.buffer:
            return proto.take(max_bytes)
        if proto.lost is not None:
            raise httpcore.ReadError(str(proto.lost) or type(proto.lost).__name__)
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        proto = self._protocol
        if proto.lost is not None or self._transport.is_closing():
            why = str(proto.lost) if proto.lost is not None else "the connection is closed"
            raise httpcore.WriteError(why)
        self._transport.write(buffer)
        try:
            await proto.drain(timeout)
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out sending the request") from None
        if proto.lost is not None:
            raise httpcore.WriteError(str(proto.lost) or type(proto.lost).__name__)

    async def aclose(self) -> None:
        if self._transport.get_write_buffer_size() or self._protocol.lost is not None:
            # bytes still queued (a write timed out, an upload was cancelled): close()
            # would keep the socket until a peer that stopped reading takes them
            self._transport.abort()
        else:
            self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport,
                    self._protocol,
                    ssl_context,
                    server_hostname=server_hostname,
                    # asyncio's own 60 s limit would end a slow handshake as a ConnectError
                    ssl_handshake_timeout=timeout if timeout else None,
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (ssl.SSLError, OSError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        # reads now pause and resume the TLS transport (start_tls calls no connection_made)
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            # an idle keep-alive connection with something to read was closed by the
            # server (or sent garbage): httpcore then opens a new one
            return (
                bool(self._protocol.buffer)
                or self._protocol.eof
                or _socket_readable(transport.get_extra_info("socket"))
            )
        return None


def _socket_readable(sock: Any) -> bool:
    """Bytes or the end wait in the socket, not yet taken by the event loop."""
    try:
        fd = sock.fileno()
        if fd < 0:
            return True
        if not hasattr(select, "poll"):  # Windows
            return bool(select.select([fd], [], [], 0)[0])
        poller = select.poll()  # not select.select: descriptors past 1023 are fine
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


_CONNECT_ERRORS = (OSError, ssl.SSLError)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on the running asyncio loop."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, asyncio.BaseEventLoop):
            # another loop (uvloop under stamp serve) has other transports and no
            # happy_eyeballs_delay: anyio's backend, which httpcore would have used
            return await _ANYIO.connect_tcp(host, port, timeout, local_address, socket_options)
        connecting = loop.create_connection(
            _Protocol,
            host,
            port,
            local_addr=(local_address, 0) if local_address else None,
            happy_eyeballs_delay=_HAPPY_EYEBALLS,
        )
        return await _connect(connecting, f"{host}:{port}", timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop):
            return await _ANYIO.connect_unix_socket(path, timeout, socket_options)
        connecting = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connect(connecting, path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(
    connecting: Coroutine[Any, Any, tuple[asyncio.BaseTransport, _Protocol]],
    where: str,
    timeout: float | None,
    socket_options: Iterable[Any] | None,
) -> AsyncioStream:
    """The stream ``connecting`` opens, within ``timeout``; httpcore's errors otherwise."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await connecting
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from None
    except _CONNECT_ERRORS as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
    return _stream(transport, protocol, socket_options)


def _stream(
    transport: asyncio.BaseTransport, protocol: _Protocol, socket_options: Iterable[Any] | None
) -> AsyncioStream:
    assert isinstance(transport, asyncio.Transport)
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
        except OSError as exc:
            transport.abort()
            raise httpcore.ConnectError(f"socket option refused: {exc}") from None
    return AsyncioStream(transport, protocol)


def use_asyncio_backend(transport: httpx.AsyncHTTPTransport) -> bool:
    """Give ``transport``'s connection pool this backend; False if its pool is not one."""
    pool = getattr(transport, "_pool", None)
    if type(pool) is not httpcore.AsyncConnectionPool or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = AsyncioBackend()
    return True
