"""The asyncio network backend under httpx, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpcore
import httpx
import pytest
import trustme
from provider_fakes import SendGridFake, sample_message

from stampcli.config import ProviderConfig
from stampcli.providers import create_adapter, http
from stampcli.providers.base import Outcome
from stampcli.providers.http import HTTPAdapter
from stampcli.transport.netstream import AsyncioBackend, use_asyncio_backend

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def _transport() -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport()
    assert use_asyncio_backend(transport)
    return transport


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=_transport(), timeout=5) as c:
        yield c


async def test_adapters_use_the_backend() -> None:
    adapter = create_adapter(ProviderConfig(url="sendgrid://k"))
    assert isinstance(adapter, HTTPAdapter)
    async with adapter:  # opening makes the clients
        pools = [t._pool for t in adapter._transports]
    assert pools and all(isinstance(p._network_backend, AsyncioBackend) for p in pools)


async def test_https_round_trips_on_one_kept_alive_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    monkeypatch.setattr(http, "_ssl_context", client_ctx)
    fake = SendGridFake()
    fake.tls = server_ctx
    with fake.start():
        config = ProviderConfig(url=fake.provider_url(), endpoint=fake.url, concurrency=1)
        assert config.endpoint is not None and config.endpoint.startswith("https://")
        async with create_adapter(config) as adapter:
            for i in range(3):
                [result] = await adapter.send([sample_message(f"u{i}@example.com")])
                assert result.outcome is Outcome.ACCEPTED, result.detail
        assert fake.accepted_count == 3


async def test_an_idle_connection_the_server_closed_is_replaced(
    client: httpx.AsyncClient,
) -> None:
    """The server answers, then closes without saying so: the next request reconnects."""
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server, base = await _serve(once)
    async with server:
        for _ in range(3):
            response = await client.post(base + "/x", content=b"hello")
            assert response.text == "ok"
            await asyncio.sleep(0.05)  # the close reaches the client while idle
    assert connections == 3


async def test_big_bodies_both_ways(client: httpx.AsyncClient) -> None:
    """Reading pauses past its high-water mark and writing waits for room: nothing lost."""
    body = bytes(range(256)) * (12 << 12)  # 12 MiB up
    answer = b"z" * (5 << 20)  # 5 MiB down

    async def echo_len(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await _read_request(reader)
        assert got == body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer))
        for i in range(0, len(answer), 1 << 16):
            writer.write(answer[i : i + (1 << 16)])
            await writer.drain()
        writer.close()

    server, base = await _serve(echo_len)
    async with server:
        response = await client.post(base + "/big", content=body)
    assert response.content == answer


async def test_read_timeout_connect_refused_and_reset_map_to_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            await asyncio.sleep(5)
        finally:
            writer.close()

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        # linger 0: closing sends RST, not FIN
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with httpx.AsyncClient(transport=_transport(), timeout=0.3) as client:
        server, base = await _serve(silent)
        async with server:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(base + "/x", content=b"x")
        server, base = await _serve(reset)
        async with server:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await client.post(base + "/x", content=b"x")
        with pytest.raises(httpx.ConnectError):
            await client.get(base + "/gone")  # the server has stopped listening


async def test_connect_timeout_and_tls_failure_are_connect_errors() -> None:
    backend = AsyncioBackend()
    # a zero timeout fires before the connection can be made
    with pytest.raises(httpcore.ConnectTimeout):
        await backend.connect_tcp("127.0.0.1", 9, timeout=0)

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server, base = await _serve(plain)
    async with server:
        port = int(base.rsplit(":", 1)[1])
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ConnectError):
            await stream.start_tls(ssl.create_default_context(), "localhost", timeout=5)


async def test_a_unix_socket_endpoint(tmp_path: Path) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    path = str(tmp_path / "api.sock")
    server = await asyncio.start_unix_server(hello, path)
    transport = httpx.AsyncHTTPTransport(uds=path)
    assert use_asyncio_backend(transport)
    async with server, httpx.AsyncClient(transport=transport, timeout=5) as client:
        response = await client.post("http://api.local/x", content=b"x")
    assert response.text == "hello"
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_unix_socket(str(tmp_path / "none.sock"), timeout=5)
