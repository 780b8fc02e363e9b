"""``stamp serve --smtp PORT``: bounce mail straight over SMTP (aiosmtpd), no mailbox needed.

An MX for the bounce domain (``bounce.acme.example``) can point at this
listener. It accepts mail only for that domain, and there only for addresses
without a ``+`` extension (the bare return path, a feedback-loop address) or
with a VERP token whose signature checks out; every other recipient is
refused at RCPT (550), so it never relays. Mail is size limited (552 past
``max_size``), and each accepted mail goes through the same parsers and use
case as ``stamp bounces read`` (:func:`stampcli.service.bounces.process_mail`)
on the server's store, in a writer thread of its own. The reply is sent only
after the events are committed: a store failure answers 451 and the sending
MTA tries again later, so nothing is lost. A mail that cannot be parsed is
refused with 554 (its sender's MTA keeps it); junk and mail that names no row
stamp sent are accepted and counted, nothing recorded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from stampcli.bounces.parse import UNPARSABLE
from stampcli.compliance.tokens import TokenError
from stampcli.errors import StampError
from stampcli.server.writer import OpenStore, StoreWriter
from stampcli.service.bounces import BounceReport, BounceSettings, process_mail

log = logging.getLogger("stamp.serve")

MAX_SIZE = 10 * 1024 * 1024  # bytes of one mail (bounces with a returned copy stay well under)
MAX_RECIPIENTS = 20  # per mail: a bounce goes to one return path
TIMEOUT = 60  # seconds of silence before a session is dropped


@dataclass
class ListenerStats:
    """What the listener did since it started (for tests, logs and benchmarks)."""

    accepted: int = 0
    refused_rcpt: int = 0
    refused_data: int = 0
    deferred: int = 0  # answered 451: the store failed
    verdicts: dict[str, int] = field(default_factory=dict)
    report: BounceReport = field(default_factory=BounceReport)


class BounceHandler:
    """aiosmtpd handler: RCPT checks the VERP domain and token; DATA records the mail."""

    def __init__(self, settings: BounceSettings, writer: StoreWriter) -> None:
        if settings.verp is None:
            raise ValueError("the inbound listener needs a return path")
        self.settings = settings
        self.verp = settings.verp
        self.writer = writer
        self.stats = ListenerStats()

    def _recipient_ok(self, address: str) -> str | None:
        """None when mail for ``address`` is taken; else the refusal."""
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.verp.domain:
            return "550 5.7.1 relaying denied: this server takes mail for its bounce domain only"
        if "+" not in local:
            return None
        try:
            self.verp.read(address)
        except TokenError:
            return "550 5.1.1 no such return path (its token does not check out)"
        return None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._recipient_ok(address)
        if refusal is not None:
            self.stats.refused_rcpt += 1
            return refusal
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw: bytes = envelope.original_content or b""  # decode_data=False: the bytes
        rcpts = tuple(str(r) for r in envelope.rcpt_tos)
        report = self.stats.report

        def work(store: Any) -> Any:
            return process_mail(store, self.settings, "smtp", raw, report, envelope_to=rcpts)

        try:
            verdict = await self.writer.call(work)
        except StampError as exc:
            self.stats.deferred += 1
            log.warning("inbound mail deferred: %s", exc)
            return "451 4.3.0 cannot record the mail now; try again later"
        self.stats.verdicts[verdict.verdict] = self.stats.verdicts.get(verdict.verdict, 0) + 1
        if verdict.verdict == UNPARSABLE:
            self.stats.refused_data += 1
            return f"554 5.6.0 not understood: {verdict.why[:200]}"
        self.stats.accepted += 1
        if verdict.keep:
            log.info("inbound mail accepted, not used (%s): %s", verdict.verdict, verdict.why)
        return "250 OK"


class InboundListener:
    """The SMTP listener on its own thread and event loop, with its own store writer."""

    def __init__(
        self,
        settings: BounceSettings,
        open_store: OpenStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_size: int = MAX_SIZE,
        hostname: str | None = None,
    ) -> None:
        self.writer = StoreWriter(open_store)
        self.handler = BounceHandler(settings, self.writer)
        self.host = host
        self.port = port
        self.max_size = max_size
        self.hostname = hostname or (settings.verp.domain if settings.verp else "localhost")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def stats(self) -> ListenerStats:
        return self.handler.stats

    def _factory(self) -> SMTP:
        return SMTP(
            self.handler,
            data_size_limit=self.max_size,
            hostname=self.hostname,
            ident="stamp bounce listener",
            timeout=TIMEOUT,
            decode_data=False,
        )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._factory, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

    def start(self) -> int:
        """Open the store, listen; the bound port. OSError when the port is taken."""
        self.writer.start()
        self._thread = threading.Thread(target=self._run, name="stamp-smtp", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self.writer.stop()
            raise self._error
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.writer.stop()
