"""One mail from a bounce mailbox or the inbound listener, read into what it reports.

:func:`parse_mail` turns raw bytes into a :class:`MailReport` without looking
anything up (matching is :mod:`stampcli.service.bounces`'). In this order:

1. DSNs (RFC 3464, ``multipart/report; report-type=delivery-status``): one
   :class:`Finding` per recipient block, from Final-Recipient, Action, Status
   and Diagnostic-Code. ``failed`` with 5.x.x is a hard bounce, with 4.x.x a
   soft one; ``delayed`` is a deferral; ``delivered``/``relayed``/``expanded``
   a delivery (a positive DSN).
2. Feedback reports (ARF, RFC 5965, ``report-type=feedback-report``): a
   complaint (``not-spam`` reports are no complaint), with Original-Rcpt-To
   and Original-Mail-From (the VERP address the message went out with).
3. Anything else that ``flufl.bounce`` recognises (the non-standard bounces
   of qmail, old Exchange, Yahoo, AOL, ...): its permanent failures are hard
   bounces, its temporary ones deferrals.
4. Auto-replies (RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, ``Precedence:
   auto_reply``, out-of-office subjects): an auto-reply, never a bounce.

Whatever is none of these is ``junk`` (spam, a person's reply): reported, not
used. A mail that cannot be parsed at all, or is over ``MAX_MAIL`` bytes, is
``unparsable``. Every source of a VERP address (the bounce's own envelope
recipient headers, the report's Original-Mail-From, the returned copy's
Return-Path) and every quoted original Message-ID is collected for matching.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message as EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from flufl.bounce import all_failures

from stampcli.events.model import BounceKind, EventType, clean_text, looks_auto_reply

# flufl.bounce logs every detector it runs (INFO) and the traceback of each that trips over
# broken MIME (log.exception): under `stamp serve`'s INFO logging that is a line per
# detector per mail and tracebacks for hostile input. What it found is what we report.
_FLUFL_LOG = logging.getLogger("flufl.bounce")
_FLUFL_LOG.propagate = False
_FLUFL_LOG.addHandler(logging.NullHandler())

MAX_MAIL = 25 * 1024 * 1024  # bytes; a larger mail is left in the mailbox, reported
_MAX_FINDINGS = 100  # recipient blocks read from one report
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDR = r"[A-Za-z0-9._%+=-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}"
_SIMPLE_ADDRESS = re.compile(rf"\s*(?:[A-Za-z0-9 ._-]{{0,80}}<({_ADDR})>|({_ADDR}))\s*")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,500}>")
# headers that carry the address a mail was delivered to (the envelope recipient)
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-Not", "X-Vacation")

JUNK = "junk"
UNPARSABLE = "unparsable"


@dataclass(frozen=True, slots=True)
class Finding:
    """What a report says about one recipient."""

    type: EventType
    recipient: str | None  # the address, lower case, where the report names one
    bounce_kind: BounceKind | None = None
    status: str | None = None  # "5.1.1"
    reason: str | None = None  # the diagnostic, one line


@dataclass(frozen=True)
class MailReport:
    """What one mail reports, before matching."""

    kind: str  # dsn, arf, flufl, auto_reply, junk, unparsable
    findings: tuple[Finding, ...] = ()
    verp: tuple[str, ...] = ()  # addresses that may be VERP return paths, best first
    message_ids: tuple[str, ...] = ()  # original Message-IDs quoted, "<...>"
    occurred_at: datetime | None = None
    digest: str = ""  # sha256 of the body (what transit does not change): the event ids
    sender: str | None = None  # the From address, lower case
    recipients: tuple[str, ...] = ()  # the addresses the mail was delivered to
    subject: str = ""
    text: str = ""  # the first text part, up to 4 KB (for unsubscribe tokens)
    problem: str | None = None  # why it is unparsable, or what it lacked
    fields: dict[str, Any] = field(default_factory=dict)  # the parsed fields, for `raw`


def body_digest(raw: bytes) -> str:
    """sha256 of the mail after its header block: the same however it reached stamp."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return hashlib.sha256(raw[at + len(sep) :]).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _parse(raw: bytes) -> EmailMessage:
    # compat32: the parser flufl.bounce's detectors are written against; it never raises
    # on broken MIME (defects are recorded on the message instead)
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)


def _addr(value: object) -> str | None:
    """The address of a header value like ``rfc822; a@b.example`` or ``<a@b>``."""
    if not isinstance(value, str):
        return None
    text = str(value).strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    simple = _SIMPLE_ADDRESS.fullmatch(text)
    if simple is not None:
        # the common shapes (a@b, <a@b>, Name <a@b>): the stdlib parser took ~40% of a parse
        return (simple.group(1) or simple.group(2)).lower()
    _name, address = parseaddr(text.strip())
    address = address.strip().strip("<>").lower()
    if "@" not in address[1:-1] or len(address) > 320 or any(c in address for c in " \t\r\n"):
        return None
    return address


def _header(msg: EmailMessage, name: str) -> str | None:
    value = msg.get(name)
    return None if value is None else str(value)


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return (
        when
        if datetime(2000, 1, 1, tzinfo=UTC) <= when < datetime(2100, 1, 1, tzinfo=UTC)
        else None
    )


def _report_type(msg: EmailMessage) -> str | None:
    if msg.get_content_type() != "multipart/report":
        return None
    value = msg.get_param("report-type")
    return str(value).lower() if isinstance(value, str) else None


def _blocks(part: EmailMessage) -> list[EmailMessage]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, EmailMessage)]
    if isinstance(payload, str):
        text = payload.replace("\r\n", "\n")
        parser = email.parser.HeaderParser(policy=email.policy.compat32)
        return [parser.parsestr(chunk) for chunk in text.split("\n\n") if chunk.strip()]
    return []


def _returned(msg: EmailMessage) -> list[EmailMessage]:
    """The copies of the original message (or its headers) a report returns."""
    found: list[EmailMessage] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list):
                found.extend(p for p in inner if isinstance(p, EmailMessage))
        elif ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                found.append(_parse(text.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]))
    return found


def _message_ids(copies: list[EmailMessage], msg: EmailMessage) -> list[str]:
    ids: list[str] = []
    for copy in copies:
        value = _header(copy, "Message-ID")
        if value:
            ids.extend(_MESSAGE_ID.findall(value)[:1])
    for name in ("In-Reply-To", "References"):  # auto-replies name the message they answer
        value = _header(msg, name)
        if value:
            ids.extend(_MESSAGE_ID.findall(value)[:20])
    return list(dict.fromkeys(ids))


def _kind_of(action: str, status: str | None) -> tuple[EventType, BounceKind | None] | None:
    if action == "failed":
        soft = status is not None and status.startswith("4.")
        return EventType.BOUNCED, BounceKind.SOFT if soft else BounceKind.HARD
    if action == "delayed":
        return EventType.DEFERRED, BounceKind.SOFT
    if action in ("delivered", "relayed", "expanded"):
        return EventType.DELIVERED, None
    return None


def _dsn(msg: EmailMessage) -> tuple[list[Finding], list[str], datetime | None, dict[str, Any]]:
    findings: list[Finding] = []
    verp: list[str] = []
    when: datetime | None = None
    fields: dict[str, Any] = {"recipients": []}
    for part in msg.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        blocks = _blocks(part)
        if blocks:
            when = _when(_header(blocks[0], "Arrival-Date"))
            fields["reporting_mta"] = clean_text(_header(blocks[0], "Reporting-MTA"), 200)
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            action = (_header(block, "Action") or "").strip().lower().split(" ", 1)[0]
            if not action:
                continue
            recipient = _addr(_header(block, "Final-Recipient")) or _addr(
                _header(block, "Original-Recipient")
            )
            match = _STATUS.search(_header(block, "Status") or "")
            status = match.group(0) if match else None
            kind = _kind_of(action, status)
            if kind is None:
                continue
            diagnostic = clean_text(_header(block, "Diagnostic-Code"), 400)
            if diagnostic and ";" in diagnostic[:12]:
                diagnostic = diagnostic.split(";", 1)[1].strip()
            reason = " ".join(x for x in (status, diagnostic) if x) or action
            findings.append(Finding(kind[0], recipient, kind[1], status, reason))
            fields["recipients"].append(
                {"final_recipient": recipient, "action": action, "status": status,
                 "diagnostic": diagnostic}
            )  # fmt: skip
            if len(findings) >= _MAX_FINDINGS:
                break
        break
    return findings, verp, when, fields


def _arf(msg: EmailMessage) -> tuple[list[Finding], list[str], datetime | None, dict[str, Any]]:
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        blocks = _blocks(part)
        if not blocks:
            return [], [], None, {}
        block = blocks[0]
        feedback = (_header(block, "Feedback-Type") or "").strip().lower()
        recipient = _addr(_header(block, "Original-Rcpt-To"))
        mail_from = _addr(_header(block, "Original-Mail-From"))
        when = _when(_header(block, "Arrival-Date") or _header(block, "Received-Date"))
        fields = {
            "feedback_type": feedback,
            "original_rcpt_to": recipient,
            "original_mail_from": mail_from,
            "user_agent": clean_text(_header(block, "User-Agent"), 200),
            "source_ip": clean_text(_header(block, "Source-IP"), 64),
        }
        if feedback in ("not-spam", ""):
            return [], [mail_from] if mail_from else [], when, fields
        reason = f"feedback report: {feedback}"
        agent = fields["user_agent"]
        if agent:
            reason += f" ({agent})"
        return (
            [Finding(EventType.COMPLAINED, recipient, reason=reason)],
            ([mail_from] if mail_from else []),
            when,
            fields,
        )
    return [], [], None, {}


def _auto_reply(msg: EmailMessage, subject: str) -> bool:
    auto = (_header(msg, "Auto-Submitted") or "").strip().lower()
    if auto.startswith("auto-replied"):
        return True
    if any(msg.get(name) is not None for name in _AUTO_HEADERS):
        return True
    precedence = (_header(msg, "Precedence") or "").strip().lower()
    if precedence == "auto_reply" or (
        msg.get("X-Auto-Response-Suppress") and looks_auto_reply(subject)
    ):
        return True
    return looks_auto_reply(subject)


def _text(msg: EmailMessage) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    return data[:4096].decode(charset, "replace")
                except LookupError:
                    return data[:4096].decode("utf-8", "replace")
    return ""


def _decoded(value: str | None) -> str:
    if not value:
        return ""
    try:
        from email.header import decode_header, make_header

        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def parse_mail(raw: bytes, *, envelope_to: tuple[str, ...] = ()) -> MailReport:
    """What ``raw`` reports; ``envelope_to``: the SMTP recipients it came to (listener)."""
    digest = body_digest(raw)
    if len(raw) > MAX_MAIL:
        return MailReport(UNPARSABLE, digest=digest, problem=f"larger than {MAX_MAIL} bytes")
    try:
        msg = _parse(raw)
    except Exception as exc:
        return MailReport(UNPARSABLE, digest=digest, problem=f"not a mail: {type(exc).__name__}")
    if not msg.keys():
        return MailReport(UNPARSABLE, digest=digest, problem="no headers: not a mail")
    try:
        return _read(msg, raw, digest, envelope_to)
    except (ValueError, TypeError, LookupError, AttributeError, UnicodeError) as exc:
        # broken MIME the parser let through and a detector tripped over
        return MailReport(
            UNPARSABLE, digest=digest, problem=f"malformed MIME: {clean_text(str(exc), 200)}"
        )


def _read(msg: EmailMessage, raw: bytes, digest: str, envelope_to: tuple[str, ...]) -> MailReport:
    subject = clean_text(_decoded(_header(msg, "Subject")), 300) or ""
    sender = _addr(_header(msg, "From"))
    delivered: list[str] = [a.lower() for a in envelope_to]
    for name in _ENVELOPE_HEADERS:
        for value in msg.get_all(name) or []:
            one = _addr(str(value)) if "," not in str(value) else None
            if one is not None:
                delivered.append(one)
                continue
            for _, address in getaddresses([str(value)]):
                if "@" in address:
                    delivered.append(address.strip().lower())
    delivered = list(dict.fromkeys(delivered))
    copies = _returned(msg)
    common: dict[str, Any] = {
        "digest": digest,
        "sender": sender,
        "recipients": tuple(delivered),
        "subject": subject,
        "message_ids": tuple(_message_ids(copies, msg)),
        "occurred_at": _when(_header(msg, "Date")),
    }
    returned_paths = [p for c in copies if (p := _addr(_header(c, "Return-Path")))]
    report_type = _report_type(msg)
    findings: list[Finding] = []
    kind = JUNK
    fields: dict[str, Any] = {}
    extra_verp: list[str] = []
    when: datetime | None = None
    if report_type == "delivery-status":
        findings, extra_verp, when, fields = _dsn(msg)
        kind = "dsn"
    elif report_type == "feedback-report":
        findings, extra_verp, when, fields = _arf(msg)
        kind = "arf"
    if kind == JUNK or (kind == "dsn" and not findings):
        temporary, permanent = _flufl(msg)
        hard = sorted({b for a in permanent if (b := _b(a))})
        soft = sorted({b for a in temporary if (b := _b(a))} - set(hard))
        if hard or soft:
            kind = "flufl"
            findings = [
                Finding(EventType.BOUNCED, a, BounceKind.HARD, None, "non-standard bounce")
                for a in hard
            ] + [
                Finding(EventType.DEFERRED, a, BounceKind.SOFT, None, "non-standard delay warning")
                for a in soft
            ]
            fields = {"permanent": hard, "temporary": soft}
    if kind == JUNK and _auto_reply(msg, subject):
        kind = "auto_reply"
        findings = [Finding(EventType.AUTO_REPLIED, sender, reason=subject or "auto-reply")]
    if kind == "dsn" and not findings:
        return MailReport(UNPARSABLE, problem="a DSN without a usable recipient block", **common)
    verp = list(dict.fromkeys([*delivered, *extra_verp, *returned_paths]))
    if when is not None:
        common["occurred_at"] = when
    return MailReport(
        kind,
        findings=tuple(findings[:_MAX_FINDINGS]),
        verp=tuple(verp),
        text=_text(msg) if kind == JUNK else "",
        fields=fields,
        **common,
    )


def _flufl(msg: EmailMessage) -> tuple[Any, Any]:
    """flufl.bounce's (temporary, permanent) failures; none where a detector trips over
    broken MIME (it re-raises what its heuristics hit)."""
    try:
        return all_failures(msg)
    except Exception:
        return frozenset(), frozenset()


def _b(value: object) -> str | None:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return _addr(text) if isinstance(text, str) else None
