"""The request and answer schema of the send API (pydantic; FastAPI's OpenAPI comes from it).

Every check that needs no store or pool is here, so a bad request is answered
422 with the field's path before anything is queued: addresses must be plain
``Name <local@domain>`` or ``local@domain``; no value that ends up in a header
may hold CR, LF or another control character (header injection); extra headers
may not replace the ones stamp writes; attachments must be valid base64.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from email.utils import parseaddr as _parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_RECIPIENTS = 50  # to + cc + bcc of one message
MAX_BATCH = 500
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# headers stamp writes itself (or that would change who receives the message)
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version",
        "Sender", "Return-Path", "Received", "DKIM-Signature",
    )
)  # fmt: skip


# an address is parsed by the check, the recipient list, the From domain and the compose
# (~75 us each with the stdlib parser): once per distinct value is enough
parseaddr = functools.lru_cache(maxsize=8192)(_parseaddr)


def _no_control(value: str, what: str) -> str:
    bad = _CONTROL.search(value)
    if bad is not None:
        kind = {"\r": "a carriage return", "\n": "a line break"}.get(
            bad.group(), f"the control character U+{ord(bad.group()):04X}"
        )
        raise ValueError(f"header injection refused: {what} contains {kind}")
    return value


def check_address(value: str) -> str:
    """``value`` if it is one plain address (with or without a display name)."""
    _no_control(value, "the address")
    _name, addr = parseaddr(value)
    if "@" not in addr or addr.count("@") != 1 or addr.startswith("@") or addr.endswith("@"):
        raise ValueError(f"{value!r} is not an email address (like 'Ann <ann@example.com>')")
    if "," in addr or " " in addr:
        raise ValueError(f"{value!r} holds more than one address")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttachmentIn(_Model):
    """A file to attach, its content in base64 (``content_id`` set: an inline image)."""

    filename: str = Field(min_length=1, max_length=255)
    content: str = Field(description="the file's bytes, base64")
    content_type: str | None = Field(None, description="guessed from the filename if not given")
    content_id: str | None = Field(None, description="for <img src='cid:...'> in the HTML")

    @field_validator("filename", "content_type", "content_id")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return v if v is None else _no_control(v, "the value")

    @field_validator("content_type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w.+-]+/[\w.+-]+", v):
            raise ValueError(f"{v!r} is not a MIME type like 'application/pdf'")
        return v

    @field_validator("content")
    @classmethod
    def _b64(cls, v: str) -> str:
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        return v

    def data(self) -> bytes:
        return base64.b64decode(self.content)


class MessageIn(_Model):
    """One message. Give ``html`` and/or ``text``, or a ``template`` with its ``data``."""

    from_: str = Field(alias="from", description="'Name <local@domain>'; a pool's domain")
    to: list[str] = Field(min_length=1)
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: str | None = Field(None, alias="reply-to")
    subject: str = Field(
        min_length=1, max_length=998, description="a Jinja template when `template` is given"
    )
    html: str | None = None
    text: str | None = Field(None, description="made from the HTML when not given")
    template: str | None = Field(None, description="a file of the server's template folder")
    data: dict[str, Any] = {}
    headers: dict[str, str] = {}
    attachments: list[AttachmentIn] = []
    tags: list[str] = Field([], max_length=20)
    metadata: dict[str, str] = {}
    transactional: bool = Field(
        False, description="may go to unsubscribed addresses (never to bounced or complaining)"
    )

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return v if v is None else check_address(v)

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        return [check_address(a) for a in v]

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        return _no_control(v, "the subject")

    @field_validator("template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith(("/", "\\")) or ".." in v.split("/") or "\\" in v):
            raise ValueError("a template is a file name inside the server's template folder")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS or name.lower().startswith("content-"):
                raise ValueError(f"the {name} header is written by stamp; set it with its field")
            _no_control(value, f"the {name} header")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            if not re.fullmatch(r"[\w.:-]{1,100}", tag):
                raise ValueError(f"{tag!r}: a tag is 1-100 letters, digits, '_', '.', ':', '-'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str]) -> dict[str, str]:
        for k, value in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", k) or k in ("campaign", "recipient"):
                raise ValueError(f"{k!r} cannot be a metadata key (1-64 of A-Z a-z 0-9 _ -)")
            _no_control(value, f"metadata {k}")
        return v

    @model_validator(mode="after")
    def _body(self) -> MessageIn:
        if self.template is None and self.html is None and self.text is None:
            raise ValueError("give html, text or a template")
        if self.template is not None and (self.html is not None or self.text is not None):
            raise ValueError("give a template or html/text, not both")
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)")
        return self

    def recipients(self) -> list[str]:
        """Every envelope recipient's address, in order, each once (lower case)."""
        seen: dict[str, None] = {}
        for value in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(parseaddr(value)[1].strip().lower(), None)
        return list(seen)

    @property
    def from_domain(self) -> str:
        return parseaddr(self.from_)[1].rsplit("@", 1)[-1].strip().lower()


class BatchIn(_Model):
    """Up to 500 messages, each answered on its own."""

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


State = Literal["queued", "sending", "sent", "partial", "rejected", "failed", "unknown"]


class RecipientResult(BaseModel):
    """What the provider said for one envelope recipient."""

    recipient: str
    outcome: str  # stampcli.providers.base.Outcome value
    provider_message_id: str | None = None
    detail: str | None = None


class EventOut(BaseModel):
    type: str
    recipient: str
    provider: str
    occurred_at: float
    reason: str | None = None
    bounce_kind: str | None = None


class MessageOut(BaseModel):
    """A message's state: what POST answers and GET /v1/messages/{id} returns."""

    id: str
    state: State
    pool: str
    provider: str | None = None
    attempts: int = 0
    recipients: list[RecipientResult] = []
    detail: str | None = None
    created_at: float
    updated_at: float
    events: list[EventOut] | None = None


class BatchOut(BaseModel):
    messages: list[MessageOut]


class ProblemOut(BaseModel):
    """Every refusal: what is wrong, and for 422 where (``field`` paths)."""

    error: str
    fields: list[dict[str, Any]] | None = None
