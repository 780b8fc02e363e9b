"""``stamp serve --smtp-relay PORT``: SMTP submission into the send API's queue (aiosmtpd).

Never an open relay: STARTTLS is required before anything else (``530`` until
then), AUTH PLAIN/LOGIN only over TLS, and every MAIL needs a successful AUTH.
The credentials are per pool: the user name is the pool's name, the password one
of its API keys (``535 5.7.8`` otherwise). The envelope sender's domain and the
From header's domain must be the pool's (``553 5.7.1`` / ``550 5.7.1``).

A submission is read into the fields of ``POST /v1/messages`` (From, To, Cc,
Reply-To, Subject, the text and HTML parts, attachments; envelope recipients
not in To or Cc are Bcc) and goes through the same checks and queue as an
asynchronous API request: ``250 2.0.0 queued as msg_...`` once it is durably
queued, a suppressed recipient ``550 5.7.1`` naming it, a pool over its rate
or quota ``451 4.7.1``, a store that does not answer ``451 4.3.0``. The
message is re-composed by stamp (its own Message-ID and MIME); other headers
of the submission are dropped.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from stampcli.errors import InputError
from stampcli.sendapi.model import MessageIn
from stampcli.server.api import ApiState, accept
from stampcli.server.http import Problem

log = logging.getLogger("stamp.smtp")
CERT_ENV, KEY_ENV = "STAMP_SMTP_TLS_CERT", "STAMP_SMTP_TLS_KEY"
MAX_MESSAGE = 25_000_000


@dataclass
class RelayConfig:
    host: str
    port: int
    tls: ssl.SSLContext


def relay_from_env(api: ApiState, host: str, port: int, env: Mapping[str, str]) -> RelayConfig:
    """The relay's settings: the TLS certificate and key files named in the environment."""
    cert, key = env.get(CERT_ENV), env.get(KEY_ENV)
    if not cert or not key:
        raise InputError(
            f"--smtp-relay needs a TLS certificate: set {CERT_ENV} and {KEY_ENV} to the PEM files"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"{CERT_ENV}/{KEY_ENV}: cannot load them ({exc})") from None
    return RelayConfig(host, port, ctx)


class _Handler:
    def __init__(self, api: ApiState) -> None:
        self.api = api

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        pool = self.api.config.pool(str(session.auth_data or ""))
        domain = address.rsplit("@", 1)[-1].lower() if "@" in address else ""
        if pool is None or not pool.allows_from(domain):
            return "553 5.7.1 the sender's domain is not one this login may send from"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= 50:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        pool = str(session.auth_data or "")
        raw = envelope.original_content or envelope.content or b""
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        try:
            request = to_request(raw, envelope.rcpt_tos)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return f"550 5.6.0 {where}: {first['msg']}"[:500]
        except ValueError as exc:
            return f"550 5.6.0 {exc}"[:500]
        cfg = self.api.config.pool(pool)
        if cfg is None or not cfg.allows_from(request.from_domain):
            return "550 5.7.1 the From header's domain is not one this login may send from"
        try:
            outs, _ = await accept(self.api, pool, [request], False, None, mode="smtp")
        except Problem as exc:
            text = " ".join(exc.message.split())[:400]
            if exc.status in (422, 403):
                return f"550 5.7.1 {text}"
            if exc.status == 429:
                return f"451 4.7.1 {text}"
            return f"451 4.3.0 {text}"
        return f"250 2.0.0 queued as {outs[0].id}"


def to_request(raw: bytes, rcpt_tos: list[str]) -> MessageIn:
    """A submitted message as a send-API request (``ValueError`` if it has no usable From)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    sender = str(msg.get("From", "")).strip()
    if not sender or "@" not in parseaddr(sender)[1]:
        raise ValueError("the message has no From address")
    to = [_fmt(n, a) for n, a in getaddresses([str(v) for v in msg.get_all("To", [])]) if a]
    cc = [_fmt(n, a) for n, a in getaddresses([str(v) for v in msg.get_all("Cc", [])]) if a]
    shown = {parseaddr(v)[1].lower() for v in (*to, *cc)}
    envelope = [r for r in rcpt_tos]
    bcc = [r for r in envelope if r.lower() not in shown]
    in_envelope = {r.lower() for r in envelope}
    # only envelope recipients get it: a To/Cc name not in RCPT TO is shown, not sent
    to_sent = [v for v in to if parseaddr(v)[1].lower() in in_envelope]
    cc_sent = [v for v in cc if parseaddr(v)[1].lower() in in_envelope]
    if not to_sent:
        to_sent, bcc = bcc[:1], bcc[1:]
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    attachments = []
    for part in msg.iter_attachments():
        data = part.get_payload(decode=True) or b""
        attachments.append(
            {
                "filename": part.get_filename() or "attachment",
                "content": base64.b64encode(data if isinstance(data, bytes) else b"").decode(),
                "content_type": part.get_content_type(),
            }
        )
    fields: dict[str, Any] = {
        "from": sender,
        "to": to_sent,
        "cc": cc_sent,
        "bcc": bcc,
        "subject": str(msg.get("Subject", "")).strip() or "(no subject)",
        "attachments": attachments,
    }
    if msg.get("Reply-To"):
        fields["reply-to"] = str(msg["Reply-To"]).strip()
    if html_part is not None:
        fields["html"] = html_part.get_content()
    if text_part is not None:
        fields["text"] = text_part.get_content()
    if html_part is None and text_part is None:
        fields["text"] = ""
    return MessageIn.model_validate(fields)


def _fmt(name: str, addr: str) -> str:
    return f'"{name}" <{addr}>' if name else addr


def authenticator(api: ApiState) -> Any:
    """aiosmtpd's authenticator: login = pool name, password = one of its API keys."""

    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", "replace")
        key = data.password.decode("utf-8", "replace")
        pool = api.keys.pool_of(key)
        if pool is None or pool != login:
            log.info("smtp: AUTH %s refused for login %r", mechanism, login[:64])
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=pool)

    return check


def make_protocol(api: ApiState, relay: RelayConfig) -> SMTP:
    return SMTP(
        _Handler(api),
        data_size_limit=MAX_MESSAGE,
        hostname="stamp",
        ident="stamp relay",
        tls_context=relay.tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator(api),
        timeout=60,
    )
