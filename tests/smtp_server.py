"""A recording, scriptable SMTP server on 127.0.0.1 for tests (aiosmtpd in its own thread).

Runs its own event loop in a daemon thread, so it works from sync tests (CLI
runs that start their own loop) and async tests alike::

    with SMTPTestServer(tls="starttls", auth=("user", "secret")) as server:
        url = server.url("smtp", user="user", password="secret")
        # smtp://user:secret@127.0.0.1:PORT?cafile=/tmp/.../ca.pem
        server.on_rcpt("gone@x.test", "550 5.1.1 user unknown")  # every time
        server.on_rcpt("busy@x.test", "451 4.7.1 later", times=1)  # once, then 250
        server.on_data("maybe@x.test", DROP)  # read the message, then hang up
        ...
        assert server.count("ok@x.test") == 1

Options:
    ``tls``: ``"none"`` (plain), ``"starttls"`` (offers STARTTLS, not required)
    or ``"implicit"`` (TLS from the first byte, as smtps:// expects). The
    certificate comes from a throw-away trustme CA; ``ca_file`` is its PEM.
    ``auth``: ``(user, password)``; AUTH PLAIN/LOGIN is then required before
    MAIL (a wrong password gets 535). AUTH is offered only inside TLS unless
    ``auth_require_tls=False``.

Scripting (thread-safe; set before or while clients talk):
    ``on_greeting(reply)``: the next connection gets this greeting instead of
    220, and is closed after it (``"421 4.3.2 busy"``).
    ``on_mail(reply, times=None)``, ``on_rcpt(address, reply, ...)``,
    ``on_data(address, reply, ...)``: the reply to MAIL FROM, to RCPT TO for
    one address, or to the final dot of a message whose first recipient is
    ``address``. A reply is SMTP text (``"451 4.7.1 try later"``), ``DROP``
    (close the connection without answering) or ``Pause(seconds, reply)``
    (answer late, to trigger client timeouts). ``times=None`` applies it to
    every matching command; ``times=n`` to the next ``n`` only. A 421 reply
    also closes the connection afterwards, as real servers do.

Recording:
    ``messages``: every message whose final dot was read, with the reply it got
    (including dropped ones, ``reply="DROP"``); ``count(address)``: how many
    messages to that recipient were answered 250; ``connections``: connections
    accepted; ``commands``: a Counter of commands seen (EHLO, MAIL, RSET, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"

# aiosmtpd logs every session at INFO and warns about AUTH without TLS; tests
# want neither on stderr.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class _Drop:
    """Close the connection instead of answering."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` (server side) before giving ``reply``."""

    seconds: float
    reply: str | _Drop = "250 OK"


Reply = str | _Drop | Pause


@dataclass
class _Script:
    reply: Reply
    times: int | None  # None: forever

    def take(self) -> Reply | None:
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.reply


@dataclass(frozen=True)
class Received:
    """One message whose data was read completely."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    reply: str  # the reply given to the final dot, or "DROP"
    tls: bool
    auth_user: str | None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    greeting: list[str] = field(default_factory=list)
    mail: list[_Script] = field(default_factory=list)
    rcpt: dict[str, list[_Script]] = field(default_factory=dict)
    data: dict[str, list[_Script]] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    pipelining: bool = False  # advertise PIPELINING in the EHLO reply


def _next(scripts: list[_Script]) -> Reply | None:
    for script in scripts:
        reply = script.take()
        if reply is not None:
            return reply
    return None


class _Handler:
    """aiosmtpd handler hooks: consult the scripts, record what arrives."""

    def __init__(self, state: _State) -> None:
        self.state = state

    async def _answer(self, server: SMTP, reply: Reply | None, default: str) -> str:
        if isinstance(reply, Pause):
            await asyncio.sleep(reply.seconds)
            reply = reply.reply
        if reply is None:
            return default
        if isinstance(reply, _Drop):
            # abort() (not close()) so the status aiosmtpd pushes next is discarded
            transport = server.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            return "250 dropped"
        if reply.startswith("421") and server.transport is not None:
            # close after the reply has been written, as a real server does
            server.loop.call_soon(server.transport.close)
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self.state.lock:
            self.state.commands["EHLO"] += 1
        if self.state.pipelining:  # aiosmtpd reads commands one by one: pipelining just works
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.state.lock:
            self.state.commands["MAIL"] += 1
            reply = _next(self.state.mail)
        status = await self._answer(server, reply, "250 OK")
        if status.startswith("250"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return status

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.state.lock:
            self.state.commands["RCPT"] += 1
            reply = _next(self.state.rcpt.get(address.lower(), []))
        status = await self._answer(server, reply, "250 OK")
        if status.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return status

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        first = envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else ""
        with self.state.lock:
            self.state.commands["DATA"] += 1
            reply = _next(self.state.data.get(first, []))
        count = self.state.commands["DATA"]
        status = await self._answer(server, reply, f"250 2.0.0 Ok: queued as T{count:08X}")
        dropped = reply is DROP or (isinstance(reply, Pause) and reply.reply is DROP)
        content = envelope.original_content or b""
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        record = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=content,
            reply="DROP" if dropped else status,
            tls=_is_tls(server),
            auth_user=login.decode() if isinstance(login, bytes) else None,
        )
        with self.state.lock:
            self.state.messages.append(record)
        return status

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.state.lock:
            self.state.commands["RSET"] += 1
        return "250 OK"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        with self.state.lock:
            self.state.commands["NOOP"] += 1
        return "250 OK"


def _is_tls(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("sslcontext") is not None


class _SMTP(SMTP):
    """aiosmtpd's server plus a scripted greeting and a connection counter."""

    def __init__(self, state: _State, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = state

    async def _handle_client(self) -> None:
        with self._state.lock:
            self._state.connections += 1
            greeting = self._state.greeting.pop(0) if self._state.greeting else None
        if greeting is None:
            await super()._handle_client()
            return
        await self.push(greeting)
        if self.transport is not None:
            self.transport.close()


class SMTPTestServer:
    """A scriptable SMTP server on 127.0.0.1, random port, in a background thread.

    Use as a context manager (sync); ``port`` is known after ``start()``.
    """

    def __init__(
        self,
        *,
        tls: Literal["none", "starttls", "implicit"] = "none",
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
        hostname: str = "mx.stamp.test",
        data_size_limit: int | None = 33554432,
        pipelining: bool = False,
    ) -> None:
        self.tls = tls
        self.auth = auth
        self.hostname = hostname
        self.port = 0
        # aiosmtpd only knows about STARTTLS; inside implicit TLS AUTH is already encrypted
        self._auth_require_tls = auth_require_tls and tls == "starttls"
        self._data_size_limit = data_size_limit
        self._state = _State()
        self._state.pipelining = pipelining
        self._tmp = tempfile.TemporaryDirectory(prefix="stamp-smtp-")
        self.ca_file: Path | None = None
        self._server_ctx: ssl.SSLContext | None = None
        if tls != "none":
            ca = trustme.CA()
            cert = ca.issue_cert(HOST, "localhost")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            self._server_ctx = ctx
            self.ca_file = Path(self._tmp.name) / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SMTPTestServer:
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(self._serve())
                sock = self._server.sockets[0]  # type: ignore[attr-defined]
                self.port = int(sock.getsockname()[1])
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the test SMTP server did not start")
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> asyncio.AbstractServer:
        assert self._loop is not None
        kwargs: dict[str, Any] = {
            "hostname": self.hostname,
            "data_size_limit": self._data_size_limit,
            "timeout": 30,
            "loop": self._loop,
        }
        if self.tls == "starttls":
            kwargs["tls_context"] = self._server_ctx
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self._auth_require_tls
        handler = _Handler(self._state)

        def factory() -> _SMTP:
            with warnings.catch_warnings():
                # "AUTH without TLS" is exactly what some tests want
                warnings.simplefilter("ignore")
                return _SMTP(self._state, handler, **kwargs)

        return await self._loop.create_server(
            factory,
            host=HOST,
            port=0,
            ssl=self._server_ctx if self.tls == "implicit" else None,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            self.auth is not None
            and isinstance(data, LoginPassword)
            and data.login.decode() == self.auth[0]
            and data.password.decode() == self.auth[1]
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
        self._loop = None
        self._tmp.cleanup()

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addressing

    def url(
        self,
        scheme: str = "smtp",
        *,
        user: str | None = None,
        password: str | None = None,
        **options: str,
    ) -> str:
        """A provider URL for this server; adds ``cafile=`` when it speaks TLS."""
        creds = ""
        if user is not None:
            creds = quote(user, safe="")
            if password is not None:
                creds += ":" + quote(password, safe="")
            creds += "@"
        opts = dict(options)
        if self.ca_file is not None:
            opts.setdefault("cafile", str(self.ca_file))
        query = f"?{urlencode(opts)}" if opts else ""
        return f"{scheme}://{creds}{HOST}:{self.port}{query}"

    # ------------------------------------------------------------------ scripting

    def on_greeting(self, reply: str) -> None:
        with self._state.lock:
            self._state.greeting.append(reply)

    def on_mail(self, reply: Reply, *, times: int | None = None) -> None:
        with self._state.lock:
            self._state.mail.append(_Script(reply, times))

    def on_rcpt(self, address: str, reply: Reply, *, times: int | None = None) -> None:
        with self._state.lock:
            self._state.rcpt.setdefault(address.lower(), []).append(_Script(reply, times))

    def on_data(self, address: str, reply: Reply, *, times: int | None = None) -> None:
        with self._state.lock:
            self._state.data.setdefault(address.lower(), []).append(_Script(reply, times))

    def reset_scripts(self) -> None:
        with self._state.lock:
            self._state.greeting.clear()
            self._state.mail.clear()
            self._state.rcpt.clear()
            self._state.data.clear()

    # ------------------------------------------------------------------ recording

    @property
    def messages(self) -> list[Received]:
        with self._state.lock:
            return list(self._state.messages)

    def count(self, address: str) -> int:
        """Messages to ``address`` answered with 250 (accepted)."""
        address = address.lower()
        return sum(
            1
            for m in self.messages
            if m.reply.startswith("250") and address in (r.lower() for r in m.rcpt_tos)
        )

    @property
    def accepted(self) -> int:
        return sum(1 for m in self.messages if m.reply.startswith("250"))

    @property
    def connections(self) -> int:
        with self._state.lock:
            return self._state.connections

    @property
    def commands(self) -> Counter[str]:
        with self._state.lock:
            return Counter(self._state.commands)


@contextlib.contextmanager
def smtp_server(**kwargs: Any) -> Iterator[SMTPTestServer]:
    """``with smtp_server(tls="implicit") as server:`` -- the same as the class."""
    with SMTPTestServer(**kwargs) as server:
        yield server
