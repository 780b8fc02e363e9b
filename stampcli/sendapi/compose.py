"""An accepted send-API request -> the :class:`Message` objects the providers take.

The same pieces campaigns are made of: templates from the configured folder in
stamp's Jinja sandbox (:func:`stampcli.render.environment.build_environment`,
with its output and time limits), CSS inlined (:mod:`stampcli.render.inline`),
the text part made from the HTML when none is given
(:func:`stampcli.render.textpart.html_to_text`), headers encoded and checked
for injection (:mod:`stampcli.render.headers`), and the MIME assembled by
:mod:`stampcli.render.mime`.

One API message with several envelope recipients (to, cc, bcc) becomes one
``Message`` per recipient, all with the same bytes (To and Cc as written, Bcc
nowhere) and the same Message-ID, because a provider call carries one envelope
recipient; providers that build the MIME from fields show each recipient its own
address in To. Each carries the API message id as its ``campaign`` tag, which is
how delivery events find their way back to ``GET /v1/messages/{id}``.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from jinja2 import TemplateError as JinjaError
from jinja2 import TemplateNotFound

from stampcli.errors import RecipientError, TemplateError
from stampcli.render import headers as hdr
from stampcli.render import mime
from stampcli.render.environment import build_environment
from stampcli.render.inline import Inliner
from stampcli.render.message import Attachment, Message
from stampcli.render.textpart import html_to_text
from stampcli.sandbox import Budget
from stampcli.sendapi.model import MessageIn, parseaddr

BODY_LIMIT = 2_000_000  # characters a template may yield
HEADER_LIMIT = 10_000
SECONDS = 5.0  # a request's render may take


class ComposeError(RecipientError):
    """The request cannot be made into a message (template missing or failing, bad address)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Composer:
    """Makes messages for requests; holds the template folder's environments."""

    def __init__(self, templates: Path | None) -> None:
        self.templates = templates
        folders = [templates] if templates is not None else []
        self._budget = Budget(BODY_LIMIT, SECONDS)
        self._env = build_environment(folders, budget=self._budget)
        self._plain = build_environment(folders, autoescape=False, budget=self._budget)
        self._inliner = Inliner(folders)

    def _render(self, req: MessageIn) -> tuple[str, str | None, str]:
        """(subject, html or None, text) of ``req``."""
        if req.template is None:
            subject, html, text = req.subject, req.html, req.text
        else:
            if self.templates is None:
                raise ComposeError("this server has no template folder (templates:)", "template")
            try:
                self._budget.start()
                self._budget.limit, self._budget.what = HEADER_LIMIT, "the subject"
                subject = self._plain.from_string(req.subject).render(req.data)
                self._budget.start()
                self._budget.limit, self._budget.what = BODY_LIMIT, "the template"
                body = self._env.get_template(req.template).render(req.data)
            except TemplateNotFound:
                raise ComposeError(f"no template {req.template!r}", "template") from None
            except (JinjaError, ValueError, TypeError) as exc:
                raise ComposeError(f"the template failed: {exc}", "data") from None
            if req.template.endswith(".txt"):
                html, text = None, body
            else:
                html, text = body, None
            subject = " ".join(subject.split())
            if not subject:
                raise ComposeError("the subject rendered empty", "subject")
        if html is not None:
            try:
                html = self._inliner.inline(html)
            except TemplateError as exc:
                raise ComposeError(str(exc), "html") from None
            if text is None:
                text = html_to_text(html)
        return subject, html, text or ""

    def check(self, req: MessageIn) -> None:
        """What :meth:`compose` would refuse, without making the message: the template
        renders, the addresses and the subject encode. (CSS inlining and the text part,
        most of a compose's time, are left to the send.)"""
        try:
            if req.template is not None:
                self._render(req)
            for header, values in (("From", [req.from_]), ("To", req.to), ("Cc", req.cc),
                                   ("Bcc", req.bcc)):  # fmt: skip
                for value in values:
                    hdr.ascii_addr_spec(parseaddr(value)[1])
                    _encoded(value, header)
            if req.reply_to is not None:
                _encoded(req.reply_to, "Reply-To")
        except RecipientError as exc:
            if isinstance(exc, ComposeError):
                raise
            field = getattr(exc, "header", "message")
            raise ComposeError(str(exc), str(field).lower()) from None

    def compose(self, message_id: str, req: MessageIn) -> list[Message]:
        """One Message per envelope recipient of ``req``; ``message_id`` is the API id."""
        subject, html, text = self._render(req)
        try:
            return self._assemble(message_id, req, subject, html, text)
        except RecipientError as exc:
            field = getattr(exc, "header", "message")
            raise ComposeError(str(exc), str(field).lower()) from None

    def _assemble(
        self, api_id: str, req: MessageIn, subject: str, html: str | None, text: str
    ) -> list[Message]:
        name, addr = parseaddr(req.from_)
        sender = hdr.address(name, addr, "From")
        domain = sender.addr_spec.rsplit("@", 1)[1]
        mid = f"<{api_id}@{domain}>"
        to = [_encoded(v, "To") for v in req.to]
        cc = [_encoded(v, "Cc") for v in req.cc]
        lines = [
            f"Date: {formatdate(time.time(), localtime=True)}",
            hdr.address_line("From", sender),
            hdr.address_list_line("To", to),
            hdr.unstructured("Subject", subject),
            f"Message-ID: {mid}",
        ]
        if cc:
            lines.append(hdr.address_list_line("Cc", cc))
        reply = None
        if req.reply_to is not None:
            rname, raddr = parseaddr(req.reply_to)
            reply = hdr.address(rname, raddr, "Reply-To")
            lines.append(hdr.address_line("Reply-To", reply))
        extra = dict(req.headers)
        if req.tags:
            extra["X-Stamp-Tags"] = ", ".join(req.tags)
        lines += [hdr.unstructured(k, v) for k, v in extra.items()]
        attachments = tuple(
            Attachment(
                a.filename,
                a.content_type or mime.guess_type(a.filename),
                a.data(),
                a.content_id,
            )
            for a in req.attachments
        )
        inline = [mime.attachment_part(a) for a in attachments if a.inline]
        files = [mime.attachment_part(a) for a in attachments if not a.inline]
        entity = mime.body(text, html, "=_stamp_" + api_id[:20], inline, files)
        raw = mime.message(lines, entity)
        shown = {e.addr_spec.lower(): e for e in to}
        out = []
        for key in req.recipients():
            spec = hdr.ascii_addr_spec(key)
            tags: dict[str, Any] = {**req.metadata, "campaign": api_id, "recipient": key}
            if req.tags:
                tags["tags"] = ",".join(req.tags)
            out.append(
                Message(
                    campaign=api_id,
                    key=key,
                    recipient=spec,
                    sender=sender.addr_spec,
                    message_id=mid,
                    from_header=sender.display,
                    to_header=shown[spec.lower()].display if spec.lower() in shown else spec,
                    subject=subject,
                    html=html if html is not None else "",
                    text=text,
                    raw=raw,
                    reply_to=reply.display if reply is not None else None,
                    headers=extra,
                    attachments=attachments,
                    tags=tags,
                )
            )
        return out


def _encoded(value: str, header: str) -> hdr.EncodedAddress:
    name, addr = parseaddr(value)
    return hdr.address(name, addr, header)
