"""The one-click unsubscribe receiver on 127.0.0.1: genuine, forged and malformed requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stampcli.compliance.tokens import make_token
from stampcli.compliance.unsubscribe_server import UnsubscribeServer
from stampcli.store import suppressions as sup
from stampcli.store.db import Store

SECRET = "s3cret-for-tests-only-0123456789"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UnsubscribeServer]:
    srv = UnsubscribeServer(
        tmp_path / "stamp.db", SECRET, read_timeout=0.5, deadline=1.5, max_connections=8
    )
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def suppressed(srv: UnsubscribeServer) -> list[sup.Suppression]:
    with Store(srv.db_path) as store:
        return list(sup.iter_suppressions(store))


def raw(srv: UnsubscribeServer, data: bytes, *, wait: float = 3.0) -> bytes:
    host, port = srv.server_address[:2]
    with socket.create_connection((str(host), port), timeout=wait) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def alive(srv: UnsubscribeServer) -> bool:
    token = make_token(SECRET, "probe@example.com", "probe")
    return httpx.get(srv.url, params={"t": token}, timeout=3).status_code == 200


def test_one_click_post_suppresses(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "ann@example.com", "november-news")
    r = httpx.post(
        server.url + "unsubscribe",
        params={"t": token},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert r.status_code == 200
    assert "no-store" in r.headers["cache-control"]
    (row,) = suppressed(server)
    assert (row.key, row.reason, row.source, row.scope) == (
        "ann@example.com",
        "unsubscribed",
        "unsubscribe:november-news",
        "",
    )
    again = httpx.post(server.url, params={"t": token}, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200 and len(suppressed(server)) == 1


def test_multipart_one_click_is_accepted(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "bea@example.com", "news")
    r = httpx.post(server.url, params={"t": token}, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert [s.key for s in suppressed(server)] == ["bea@example.com"]


def test_get_only_shows_a_confirmation_form(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "cy@example.com", "<b>news</b>")
    r = httpx.get(server.url, params={"t": token})
    assert r.status_code == 200
    assert '<form method="post"' in r.text and "One-Click" in r.text
    assert "&lt;b&gt;news&lt;/b&gt;" in r.text and "<b>news</b>" not in r.text
    assert suppressed(server) == []


def test_forged_and_tampered_tokens_are_rejected(server: UnsubscribeServer) -> None:
    forged = make_token("another-secret-entirely-123456", "dan@example.com", "news")
    genuine = make_token(SECRET, "dan@example.com", "news")
    sig = genuine.split(".")[1]
    tampered = make_token(SECRET, "eve@example.com", "news").split(".")[0] + "." + sig
    for token in (forged, tampered):
        r = httpx.post(server.url, params={"t": token}, content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 403
        assert "not valid" in r.text
    for token in ("", "garbage", "a.b.c", "ü.x"):
        r = httpx.post(server.url, params={"t": token}, content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 400
    assert httpx.get(server.url).status_code == 400
    assert suppressed(server) == []


def test_post_without_one_click_body_is_refused(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "fay@example.com", "news")
    for body in (b"", b"List-Unsubscribe=Two-Clicks", b"\xff\xfe\x00"):
        r = httpx.post(server.url, params={"t": token}, content=body, headers=ONE_CLICK)
        assert r.status_code == 400
    assert suppressed(server) == []


def test_huge_body_gets_413_without_being_read(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "gil@example.com", "news")
    answer = raw(
        server,
        f"POST /?t={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n".encode()
        + b"x" * 1000,
    )
    assert answer.startswith(b"HTTP/1.0 413")
    assert suppressed(server) == []
    assert alive(server)


def test_malformed_requests_do_not_kill_it(server: UnsubscribeServer) -> None:
    token = make_token(SECRET, "hal@example.com", "news")
    # Not HTTP at all: answered the HTTP/0.9 way (a bare error page), then closed.
    assert b"400" in raw(server, b"\x16\x03\x01\x00\xa5garbage TLS hello\r\n\r\n")
    assert raw(server, b"BREW /pot HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 501")
    assert raw(server, f"DELETE /?t={token} HTTP/1.1\r\n\r\n".encode()).startswith(b"HTTP/1.0 405")
    assert raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 414")
    bad_length = f"POST /?t={token} HTTP/1.1\r\nContent-Length: -5\r\n\r\n".encode()
    assert raw(server, bad_length).startswith(b"HTTP/1.0 400")
    chunked = f"POST /?t={token} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    assert raw(server, chunked).startswith(b"HTTP/1.0 411")
    assert raw(server, b"") == b""
    assert alive(server)


def test_slow_clients_are_cut_off_and_do_not_block_others(server: UnsubscribeServer) -> None:
    host, port = server.server_address[:2]
    idle = []
    for _ in range(4):  # connections that never finish their request line
        conn = socket.create_connection((str(host), port))
        conn.sendall(b"GET /?t=")
        idle.append(conn)
    trickle = socket.create_connection((str(host), port), timeout=0.2)
    try:
        assert alive(server)  # served while the slow ones hang
        start = time.monotonic()
        trickle.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        ended = None
        while time.monotonic() - start < 6:  # one byte each 0.2 s: under the read timeout
            try:
                trickle.sendall(b"x")
                trickle.recv(1)  # anything or EOF: the server has given up on us
            except TimeoutError:
                continue
            except OSError:
                pass
            ended = time.monotonic() - start
            break
    finally:
        trickle.close()
        for conn in idle:
            conn.close()
    # The 1.5 s deadline cut it off; without one it would trickle on for 20 s.
    assert ended is not None and ended < 4
    assert alive(server)


def test_connection_flood_is_bounded(tmp_path: Path) -> None:
    srv = UnsubscribeServer(tmp_path / "f.db", SECRET, read_timeout=3.0, max_connections=4)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = srv.server_address[:2]
    conns = [socket.create_connection((str(host), port), timeout=0.3) for _ in range(12)]
    try:
        dropped = 0
        for conn in conns:  # held connections wait (read timeout 3 s); the rest are dropped now
            try:
                dropped += conn.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                dropped += 1
        assert dropped == 8
    finally:
        for conn in conns:
            conn.close()
        time.sleep(0.2)
        try:
            assert alive(srv)
        finally:
            srv.shutdown()
            srv.server_close()
            thread.join(5)


def test_cli_serve_runs_until_interrupted(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    db = tmp_path / "cli.db"
    env = {**os.environ, "STAMP_UNSUBSCRIBE_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stampcli", "unsubscribe", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[2]
        token = make_token(SECRET, "ivy@example.com", "news")
        r = httpx.post(url, params={"t": token}, content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Store(db) as store:
        assert [s.key for s in sup.iter_suppressions(store)] == ["ivy@example.com"]
