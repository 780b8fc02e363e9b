"""The SMTP adapter: ``smtp://user:pass@host:587`` (STARTTLS) and ``smtps://...:465`` (TLS).

The adapter with its reply classification, connection reuse and pipelined
sending; the wire protocol itself is :mod:`stampcli.transport.smtp_wire`.

Connections are opened with aiosmtplib (connect, EHLO, STARTTLS, AUTH) and
kept in a pool of at most ``concurrency``; each message reuses an idle one,
so the per-message path is just MAIL, RCPT, DATA and the raw bytes: no EHLO,
no MIME parsing. A pooled connection that turns out dead, or answers 421
before the message data was sent, is replaced and the message tried once
more on a fresh one (nothing was accepted, so that cannot mail twice).

URL options (``smtp://host:587?tls=none&verify=false``):

``tls``
    ``starttls`` (default): upgrade when the server offers STARTTLS; when it
    does not, send in clear unless credentials are given (then refuse, so a
    password never crosses the network unencrypted). ``require``: refuse
    without STARTTLS even with no credentials. ``none``: never upgrade (a
    local relay). Not taken by ``smtps://``, which is TLS from the first byte.
``verify``
    ``false`` (or ``0``/``no``/``off``) accepts any certificate (self-signed
    relays). Default ``true``.
``cafile``
    A PEM bundle of CAs to trust instead of the system's.
``ehlo``
    The name to send in EHLO (default: this machine's fully qualified name).

Any other option, or a value not listed here, is refused when the campaign
is loaded (``stampcli.config.PROVIDER_OPTIONS``).

How answers are classified (the stage is where the reply came):

========================  =========================================================
connect, greeting, EHLO,  refused/timeout/TLS failure/4xx: PROVIDER_DOWN;
STARTTLS, AUTH            5xx (and 535/534/538/530 anywhere): PROVIDER_REFUSED
MAIL FROM                 421, 454 and other 4xx: THROTTLED; 552: RECIPIENT_REJECTED
                          (too large for this message only); other 5xx:
                          PROVIDER_REFUSED (the relay will not take our sender)
RCPT TO                   421, 454: THROTTLED; other 4xx and 552 (RFC 5321
                          4.5.3.1.10 says treat it as 452): RECIPIENT_DEFERRED;
                          5xx: RECIPIENT_REJECTED, suppressed as ``hard_bounce``
                          for "no such mailbox/domain" (x.1.1, x.1.2, x.1.6,
                          x.1.10, x.2.1, or 550/551 with user-unknown text) and
                          ``invalid`` for syntax (x.1.3, 501, 553); policy
                          rejections (x.7.x, full mailbox) are not suppressed
DATA, final dot           421, 454: THROTTLED; other 4xx: RECIPIENT_DEFERRED;
                          5xx: RECIPIENT_REJECTED (content or size refused for
                          this message; a later recipient-unknown is suppressed
                          as above)
lost/timeout before data  PROVIDER_DOWN (certainly not accepted)
lost/timeout after data   UNKNOWN (the server may have queued it)
250 after the dot         ACCEPTED, with the queue id from the reply text
========================  =========================================================

Any 4xx/5xx whose text says the *account* is the problem (sending paused,
suspended, daily quota exceeded, sender not verified, relaying denied) is
PROVIDER_REFUSED wherever it comes, unless its enhanced status code puts it
on the mailbox (x.1.x, x.2.x).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.errors import ConfigError
from stampcli.events.model import Reason
from stampcli.providers.base import (
    NO_TRACKING_SWITCH,
    Adapter,
    CheckReport,
    CheckStep,
    Outcome,
    Result,
)
from stampcli.redact import redact
from stampcli.render.message import Message
from stampcli.transport.smtp_wire import Conn

if TYPE_CHECKING:
    from stampcli.render.dkim import DkimSigner

_FALSE = ("false", "0", "no", "off")

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ACCOUNT = re.compile(
    r"quota exceeded|daily (?:sending |message )?(?:quota|limit)|sending (?:is )?paused"
    r"|account (?:is |has been )?(?:suspended|disabled|blocked)|suspended account"
    r"|not verified|relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)"
    r"|authentication required"
)
_USER_UNKNOWN = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|does not exist"
    r"|doesn't exist|mailbox (?:is )?unavailable|mailbox not found|invalid recipient"
    r"|recipient (?:address )?rejected: (?:user unknown|undeliverable)|address rejected"
    r"|not our customer|no mailbox"
)
_HARD_ENHANCED = {(1, 1), (1, 2), (1, 6), (1, 10), (2, 1)}
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._@-]+)", re.IGNORECASE)
_ID_EQ = re.compile(r"\bid=<?([A-Za-z0-9._@-]+)", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9._@<>-]+")

_STAGE_LABEL = {
    "greeting": "greeting",
    "ehlo": "EHLO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "copy": "RCPT TO (cc/bcc)",
    "data": "DATA",
    "dot": "end of data",
    "rset": "RSET",
}
_STEP = {"greeting": "connect", "ehlo": "EHLO", "starttls": "STARTTLS", "auth": "AUTH"}
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # no command argument may carry these
_ENVELOPE = ("mail", "rcpt", "data")  # the commands before the message data
# success codes by stage; "copy": the RCPT of a cc/bcc address
_STAGE_OK = {"mail": (250,), "rcpt": (250, 251), "copy": (250, 251), "data": (354,)}


# --------------------------------------------------------------------------- classification


def _enhanced(text: str) -> tuple[int, int, int] | None:
    match = _ENHANCED.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def suppress_reason(code: int, text: str) -> Reason | None:
    """For a permanent recipient rejection: ``hard_bounce``, ``invalid`` or None (policy)."""
    enhanced = _enhanced(text)
    if enhanced is not None:
        _, subject, detail = enhanced
        if (subject, detail) == (1, 3):
            return Reason.INVALID
        if (subject, detail) in _HARD_ENHANCED:
            return Reason.HARD_BOUNCE
        return None
    low = text.lower()
    if code in (501, 553):
        return Reason.INVALID
    if code == 551 or (code == 550 and _USER_UNKNOWN.search(low)):
        return Reason.HARD_BOUNCE
    return None


def classify_reply(stage: str, code: int, text: str) -> Result:
    """The Result for a non-success reply ``code text`` received at ``stage``.

    Stages: greeting, ehlo, starttls, auth (setting up the session), mail,
    rcpt, data (the reply to DATA), dot (the reply after the message data).
    """
    detail = redact(f"{_STAGE_LABEL.get(stage, stage)}: {code} {text}".strip())[:500]
    enhanced = _enhanced(text)
    on_mailbox = enhanced is not None and enhanced[1] in (1, 2)
    if code in (530, 534, 535, 538):
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)
    if code >= 450 and not on_mailbox and _ACCOUNT.search(text.lower()):
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)
    transient = 400 <= code < 500
    if stage in ("greeting", "ehlo", "starttls", "auth", "rset"):
        outcome = Outcome.PROVIDER_DOWN if transient else Outcome.PROVIDER_REFUSED
        return Result(outcome, detail=detail)
    if code in (421, 454):
        return Result(Outcome.THROTTLED, detail=detail)
    if stage == "mail":
        if transient:
            return Result(Outcome.THROTTLED, detail=detail)
        if code == 552:
            return Result(Outcome.RECIPIENT_REJECTED, detail=detail)
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)
    if transient or (stage == "rcpt" and code == 552):
        return Result(Outcome.RECIPIENT_DEFERRED, detail=detail)
    if code >= 500:
        return Result(
            Outcome.RECIPIENT_REJECTED, detail=detail, suppress=suppress_reason(code, text)
        )
    # a 1xx/2xx/3xx where another was due: the server is confused
    return Result(Outcome.PROVIDER_DOWN, detail=detail)


def queue_id(text: str) -> str | None:
    """The queue id in a 250 reply to the final dot, if the server gives one.

    Postfix "2.0.0 Ok: queued as 4XyZ1", Exim "OK id=1abc-000-AB", Sendmail
    "2.0.0 x8ABC123 Message accepted", SES "Ok 0100018c-...-000000", Gmail
    "2.0.0 OK 1700000000 a1b2si123.45 - gsmtp"; aiosmtpd's plain "OK" has none.
    """
    for pattern in (_QUEUED_AS, _ID_EQ):
        match = pattern.search(text)
        if match:
            found: str = match.group(1)
            return found[:200]
    body = _ENHANCED.sub("", text, count=1)
    for word in _TOKEN.findall(body):
        token = str(word).strip("<>")
        if len(token) >= 6 and any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            return token[:200]
    return None


def _exc_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return redact(text)[:500]


def dot_stuff(raw: bytes) -> bytes:
    """The DATA payload for ``raw``: CRLF line ends, leading dots doubled, the final dot.

    Bare CR or LF are normalised first so that no lenient server can see an
    early end of data (SMTP smuggling).
    """
    pairs = raw.count(b"\r\n")  # once: each scan of an 8 KB message costs ~10 us
    if raw.count(b"\n") != pairs or raw.count(b"\r") != pairs:
        raw = normalize_message_line_endings(raw)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    if raw.startswith(b"."):
        raw = b"." + raw
    return raw.replace(b"\r\n.", b"\r\n..") + b".\r\n"


# --------------------------------------------------------------------------- connections


class _SetupFailed(Exception):
    """Opening a session failed; ``result`` says how to treat the message."""

    def __init__(self, result: Result, step: str = "connect") -> None:
        super().__init__(result.detail)
        self.result = result
        self.step = step  # the check step that failed: connect, EHLO, STARTTLS, AUTH


@dataclass
class _Outcome:
    result: Result
    reusable: bool  # the connection is clean and may serve the next message
    retry: bool = False  # nothing was accepted and the connection was the problem


class SMTPAdapter(Adapter):
    """Sends over SMTP with a pool of reused connections."""

    scheme: ClassVar[str] = "smtp"
    max_batch: ClassVar[int] = 1
    tracking_switch: ClassVar[bool] = False  # the message goes out exactly as rendered
    signs_dkim: ClassVar[bool] = True  # a relay of our own does not sign for our domain
    needs_fields: ClassVar[bool] = False  # only the MIME bytes go on the wire

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        return (
            f"{NO_TRACKING_SWITCH}; the message goes out as rendered "
            "(a provider's SMTP relay applies its account settings)"
        )

    def __init__(
        self,
        config: ProviderConfig,
        *,
        tracking: TrackingConfig | None = None,
        dkim: DkimSigner | None = None,
    ):
        super().__init__(config, tracking=tracking, dkim=dkim)
        url = self.url
        self.implicit_tls = url.scheme == "smtps"
        self.host: str = url.host or "localhost"
        self.port: int = url.port or (465 if self.implicit_tls else 587)
        # names and values were checked when the URL was parsed (config.PROVIDER_OPTIONS)
        options = url.options
        self.tls_mode = options.get("tls", "starttls").lower()
        self.verify = options.get("verify", "true").lower() not in _FALSE
        self.cafile = options.get("cafile") or None
        self.ehlo_name = options.get("ehlo") or None
        self._user = url.user
        self._password = url.password or ""
        self._tls_context = self._build_tls_context()
        self._idle: list[Conn] = []
        self._closed = False
        self._slots = asyncio.Semaphore(config.concurrency)
        self._connect_timeout = config.timeout.connect
        self._read_timeout = config.timeout.read

    def _build_tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"provider {self.name}: cannot load cafile {self.cafile}: {exc}"
            ) from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._closed = False
        if self.ehlo_name is None:
            # getfqdn may do a DNS lookup: once, off the event loop
            self.ehlo_name = await asyncio.to_thread(socket.getfqdn)

    async def close(self) -> None:
        self._closed = True  # connections still in use are dropped when they come back
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                if conn.wire is not None:
                    conn.wire.write(b"QUIT\r\n")
                    await conn.wire.read(2)
                else:
                    await asyncio.wait_for(conn.smtp.quit(), timeout=2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass  # closing anyway
            finally:
                conn.close()

    # ------------------------------------------------------------------ sessions

    async def _session(self, steps: list[CheckStep] | None = None) -> Conn:
        """Connect, EHLO, STARTTLS and AUTH as configured; raises _SetupFailed."""

        def step(name: str, detail: str = "") -> None:
            if steps is not None:
                steps.append(CheckStep(name, True, detail))

        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            local_hostname=self.ehlo_name or "localhost",
            timeout=self._read_timeout,
            use_tls=self.implicit_tls,
            start_tls=False,
            tls_context=self._tls_context,
        )
        stage = "greeting"
        try:
            greeting = await smtp.connect(timeout=self._connect_timeout)
            step("connect", f"{self.host}:{self.port}" + (" (TLS)" if self.implicit_tls else ""))
            stage = "ehlo"
            await smtp.ehlo()
            step("EHLO", redact(greeting.message.splitlines()[0] if greeting.message else ""))
            if not self.implicit_tls and self.tls_mode != "none":
                stage = "starttls"
                if smtp.supports_extension("starttls"):
                    await smtp.starttls(server_hostname=self.host)
                    await smtp.ehlo()
                    step("STARTTLS")
                elif self.tls_mode == "require" or self._user is not None:
                    raise _SetupFailed(
                        Result(
                            Outcome.PROVIDER_REFUSED,
                            detail=f"{self.host}:{self.port} does not offer STARTTLS; "
                            "refusing to send credentials or mail in clear "
                            "(add ?tls=none to the URL to allow it)",
                        )
                    )
            if self._user is not None:
                stage = "auth"
                if not smtp.supports_extension("auth"):
                    raise _SetupFailed(
                        Result(
                            Outcome.PROVIDER_REFUSED,
                            detail=f"{self.host}:{self.port} does not offer AUTH, "
                            "but the URL has credentials",
                        )
                    )
                await smtp.login(self._user, self._password)
                step("AUTH", redact(f"as {self._user}"))
        except _SetupFailed as failed:
            smtp.close()
            failed.step = _STEP[stage]
            raise
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            result = classify_reply(stage, exc.code, exc.message)
            raise _SetupFailed(result, _STEP[stage]) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            # refused, timed out, TLS handshake or certificate failure, dropped:
            # ssl.SSLError is an OSError; every one of these leaves nothing accepted
            smtp.close()
            label = _STAGE_LABEL.get(stage, stage)
            where = "connect" if stage == "greeting" else label
            text = f"{where} to {self.host}:{self.port}: {_exc_text(exc)}"
            raise _SetupFailed(Result(Outcome.PROVIDER_DOWN, detail=text), _STEP[stage]) from None
        except asyncio.CancelledError:
            smtp.close()
            raise
        return Conn(
            smtp=smtp,
            size=smtp.supports_extension("size"),
            utf8=smtp.supports_extension("smtputf8"),
            pipelining=smtp.supports_extension("pipelining"),
        )

    def _discard(self, conn: Conn) -> None:
        conn.close()

    # ------------------------------------------------------------------ sending

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        return [await self._send_one(m) for m in messages]

    async def _send_one(self, message: Message) -> Result:
        async with self._slots:
            while True:
                conn: Conn | None = None
                while self._idle:
                    candidate = self._idle.pop()
                    if candidate.connected:
                        conn = candidate
                        break
                    self._discard(candidate)
                if conn is None:
                    try:
                        conn = await self._session()
                    except _SetupFailed as failed:
                        return failed.result
                fresh = conn.fresh
                conn.fresh = False
                try:
                    done = await self._transaction(conn, message)
                except BaseException:
                    self._discard(conn)  # cancelled mid-transaction: state unknown
                    raise
                if done.reusable and conn.connected and not self._closed:
                    self._idle.append(conn)
                else:
                    self._discard(conn)
                if done.retry and not fresh:
                    continue  # a stale pooled connection; a new one gets one more go
                return done.result

    async def _transaction(self, conn: Conn, message: Message) -> _Outcome:
        timeout = self._read_timeout
        payload = dot_stuff(self.final_bytes(message))
        # the VERP return path where the campaign has one (bounces.return_path)
        addresses = [message.mail_from, message.recipient, *message.copies]
        try:
            encoded = [a.encode("ascii") for a in addresses]
            utf8 = False
        except UnicodeEncodeError:
            if not conn.utf8:
                return _Outcome(
                    Result(
                        Outcome.RECIPIENT_REJECTED,
                        detail="the address is not ASCII and the server does not offer SMTPUTF8",
                    ),
                    reusable=True,
                )
            encoded = [a.encode("utf-8") for a in addresses]
            utf8 = True
        sender, recipient, *copies = encoded
        if any(_CONTROL.search(a) for a in encoded):
            # a CR or LF inside an address: it would smuggle another command
            result = Result(
                Outcome.RECIPIENT_REJECTED,
                detail="the address contains characters SMTP cannot carry",
                suppress=Reason.INVALID,
            )
            return await self._reset(conn, result)
        mail = b"MAIL FROM:<" + sender + b">"
        if conn.size:
            mail += b" SIZE=%d" % (len(payload) - 3)
        if utf8:
            mail += b" SMTPUTF8"
        if copies:
            # cc/bcc: one more RCPT each, after the recipient's; a copy the server
            # refuses does not stop the recipient's message (said in the result)
            stages: tuple[str, ...] = ("mail", "rcpt", *("copy",) * len(copies), "data")
            commands: tuple[bytes, ...] = (
                mail + b"\r\n",
                b"RCPT TO:<" + recipient + b">\r\n",
                *(b"RCPT TO:<" + c + b">\r\n" for c in copies),
                b"DATA\r\n",
            )
        else:
            stages = _ENVELOPE
            commands = (mail + b"\r\n", b"RCPT TO:<" + recipient + b">\r\n", b"DATA\r\n")
        refused_copies: list[str] = []
        stage = "mail"
        try:
            wire = conn.take_over()
            replies: list[SMTPResponse] = []
            if conn.pipelining:
                wire.write(b"".join(commands))
                for step in stages:
                    stage = step
                    reply = await wire.read(timeout)
                    replies.append(reply)
                    if reply.code == 421:
                        break  # the server is closing: no more replies come
            else:
                for step, command in zip(stages, commands, strict=True):
                    stage = step
                    wire.write(command)
                    reply = await wire.read(timeout)
                    replies.append(reply)
                    if reply.code not in _STAGE_OK[step] and (step != "copy" or reply.code == 421):
                        break
            for i, (stage, reply) in enumerate(zip(stages, replies, strict=False)):
                if reply.code in _STAGE_OK[stage]:
                    continue
                if stage == "copy" and reply.code != 421:
                    refused_copies.append(
                        f"{message.copies[i - 2]} ({reply.code} {redact(reply.message)[:80]})"
                    )
                    continue
                if len(replies) == len(stages) and replies[-1].code == 354:
                    # DATA was taken although the envelope was not: end it empty
                    # (nothing can be delivered without a recipient)
                    try:
                        wire.write(b".\r\n")
                        await wire.read(timeout)
                    except (aiosmtplib.SMTPException, OSError, TimeoutError):
                        conn.close()  # _refused's RSET then fails: not reused
                return await self._refused(conn, "rcpt" if stage == "copy" else stage, reply)
            stage = "dot"
            wire.write(payload)
            reply = await wire.read(timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            conn.close()
            text = _exc_text(exc)
            if stage == "dot":
                detail = f"{text} after the message was sent; the server may have accepted it"
                return _Outcome(Result(Outcome.UNKNOWN, detail=detail), reusable=False)
            label = _STAGE_LABEL[stage]
            return _Outcome(
                Result(Outcome.PROVIDER_DOWN, detail=f"{label}: {text}"),
                reusable=False,
                retry=True,
            )
        if reply.code == 250:
            detail = f"copies refused: {'; '.join(refused_copies)}" if refused_copies else ""
            return _Outcome(
                Result(Outcome.ACCEPTED, message_id=queue_id(reply.message), detail=detail),
                reusable=True,
            )
        result = classify_reply("dot", reply.code, reply.message)
        return _Outcome(result, reusable=reply.code != 421)

    async def _refused(self, conn: Conn, stage: str, reply: SMTPResponse) -> _Outcome:
        """A non-success reply before the data: classify, then make the connection clean."""
        result = classify_reply(stage, reply.code, reply.message)
        if reply.code == 421:
            # the server is closing this connection; on a reused one that may only
            # mean "enough messages on this connection": a fresh one gets one try
            conn.close()
            return _Outcome(result, reusable=False, retry=True)
        return await self._reset(conn, result)

    async def _reset(self, conn: Conn, result: Result) -> _Outcome:
        """RSET after an abandoned transaction so the connection can be reused."""
        try:
            wire = conn.take_over()
            wire.write(b"RSET\r\n")
            reply = await wire.read(self._read_timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return _Outcome(result, reusable=False)
        return _Outcome(result, reusable=reply.code == 250)

    # ------------------------------------------------------------------ check

    async def check(self) -> CheckReport:
        steps: list[CheckStep] = []
        try:
            conn = await self._session(steps)
        except _SetupFailed as failed:
            steps.append(CheckStep(failed.step, False, failed.result.detail))
            return CheckReport(self.name, False, steps, failed.result.detail)
        smtp = conn.smtp
        try:
            reply = await smtp.noop()
            steps.append(CheckStep("NOOP", reply.code == 250, redact(f"{reply.code}")))
            reply = await smtp.quit()
            steps.append(CheckStep("QUIT", True, redact(f"{reply.code}")))
        except aiosmtplib.SMTPResponseException as exc:
            steps.append(CheckStep("NOOP", False, redact(f"{exc.code} {exc.message}")))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            steps.append(CheckStep("NOOP", False, _exc_text(exc)))
        finally:
            smtp.close()
        ok = all(s.ok for s in steps if s.name != "QUIT")
        detail = f"{self.host}:{self.port} " + ("ready" if ok else "answered, but not cleanly")
        return CheckReport(self.name, ok, steps, detail)
