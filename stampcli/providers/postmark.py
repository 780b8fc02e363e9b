"""Postmark: ``postmark://SERVER_TOKEN`` (options: ``?stream=broadcast``).

Up to 500 complete messages go in one ``POST /email/batch``; Postmark answers
200 with one entry per message, each with its own ``ErrorCode`` (0 = accepted).
Bulk mail must use a broadcast message stream, so the default stream is
``broadcast`` (every Postmark server has one); ``?stream=outbound`` overrides.

ErrorCodes: 300 invalid request (an invalid 'To' address is the recipient's
fault; anything else 300 says is not), 406 inactive recipient (hard bounce,
spam complaint or manual suppression), 405/412/413 and the rest: account or
request problems, the provider refusing us.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from stampcli.compliance.times import parse_time
from stampcli.config import ProviderURL
from stampcli.events.model import Reason
from stampcli.providers.base import Outcome, Result
from stampcli.providers.http import (
    BadAnswer,
    Call,
    HTTPAdapter,
    b64,
    body_json,
    display_name,
    has_html,
    json_html,
    json_text,
    mailbox,
    short,
    status_result,
)
from stampcli.providers.pull import Pulled, Session, records
from stampcli.providers.suppression_files import Cells, ExportFormat
from stampcli.render.message import Message

_METADATA_VALUE_MAX = 80  # Postmark: at most 80 characters per metadata value


class PostmarkAdapter(HTTPAdapter):
    scheme = "postmark"
    needs_raw = False
    max_batch = 500
    base_url: ClassVar[str] = "https://api.postmarkapp.com"
    check_name = "GET /server"

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        return {"X-Postmark-Server-Token": url.user or "", "Accept": "application/json"}

    def entry(self, message: Message) -> dict[str, Any]:
        """One message in Postmark's shape."""
        entry: dict[str, Any] = {
            "From": mailbox(display_name(message.from_header), message.sender),
            "To": mailbox(display_name(message.to_header), message.recipient),
            "Subject": message.subject,
            "HtmlBody": json_html(message),
            "TextBody": json_text(message),
            "MessageStream": self.url.options.get("stream", "broadcast"),
            "Headers": [{"Name": k, "Value": v} for k, v in message.headers.items()],
            # Tag groups the campaign in Postmark's stats; Metadata comes back in webhooks.
            "Metadata": {k: v[:_METADATA_VALUE_MAX] for k, v in message.tags.items()},
        }
        if not has_html(message):  # a text template's message: text only
            del entry["HtmlBody"]
        if message.tags.get("campaign"):
            entry["Tag"] = message.tags["campaign"][:1000]
        if message.reply_to:
            entry["ReplyTo"] = message.reply_to
        if message.attachments:
            entry["Attachments"] = [
                {
                    "Name": a.filename,
                    "Content": b64(a.data),
                    "ContentType": a.content_type,
                    **({"ContentID": f"cid:{a.content_id}"} if a.content_id else {}),
                }
                for a in message.attachments
            ]
        if self.tracking.opens is not None:
            entry["TrackOpens"] = self.tracking.opens
        if self.tracking.clicks is not None:
            entry["TrackLinks"] = "HtmlAndText" if self.tracking.clicks else "None"
        return entry

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/email/batch", json=[self.entry(m) for m in batch])

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if not response.is_success:
            # A top-level error concerns the whole request, never one recipient.
            return [status_result(response)] * len(batch)
        entries = body_json(response)
        if not isinstance(entries, list):
            raise BadAnswer("expected a list with one entry per message")
        return [self.entry_result(e) for e in entries]

    def entry_result(self, entry: dict[str, Any]) -> Result:
        code = int(entry["ErrorCode"])
        if code == 0:  # the common case, 500 times a call: nothing to clean up
            return Result(Outcome.ACCEPTED, message_id=str(entry["MessageID"]) or None)
        text = short(str(entry.get("Message", "")))
        detail = f"Postmark ErrorCode {code}: {text}"
        if code == 300 and "'to' address" in text.lower():
            # 300 is every validation failure; only a bad To address is the recipient's.
            # Any other (bad From, headers, attachments) is our request: refused, see below.
            return Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)
        if code == 406:
            unsubscribed = "unsubscribe" in text.lower()
            reason = Reason.UNSUBSCRIBED if unsubscribed else Reason.HARD_BOUNCE
            return Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=reason)
        if code == 429:
            return Result(Outcome.THROTTLED, detail=detail)
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)

    def check_call(self) -> Call:
        return Call("GET", "/server")

    def check_detail(self, response: httpx.Response) -> str:
        server = body_json(response)
        stream = self.url.options.get("stream", "broadcast")
        return f"server {server.get('Name', '?')!r}, message stream {stream!r}"


# --------------------------------------------------------------------------- suppressions
# GET /message-streams/{stream}/suppressions/dump, the stream being the URL's ?stream=
# (broadcast by default, as the adapter sends). The dump answers every suppression of
# the stream at once: {"Suppressions": [{EmailAddress, SuppressionReason, Origin,
# CreatedAt}]}. ManualSuppression from origin Recipient is someone who unsubscribed;
# from Customer or Admin a manual block.


def suppression_reason(why: str, origin: str) -> Reason:
    """Our reason for Postmark's SuppressionReason and Origin (the API's and the export's)."""
    if why == "HardBounce":
        return Reason.HARD_BOUNCE
    if why == "SpamComplaint":
        return Reason.COMPLAINT
    return Reason.UNSUBSCRIBED if origin.lower() == "recipient" else Reason.MANUAL


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    stream = session.url.options.get("stream", "broadcast")
    data = session.get_json(f"/message-streams/{quote(stream, safe='')}/suppressions/dump")
    for item in records(data, "Suppressions"):
        why = str(item.get("SuppressionReason") or "")
        origin = str(item.get("Origin") or "")
        yield Pulled(
            str(item.get("EmailAddress") or ""),
            suppression_reason(why, origin),
            f"{why} ({origin}, stream {stream})" if origin else why or None,
            parse_time(item.get("CreatedAt")) or 0.0,
        )


# --------------------------------------------------------------------------- exports
# The suppressions CSV of Postmark's UI: EmailAddress (or Email Address),
# SuppressionReason, Origin, CreatedAt.


def _export_reason(row: Cells, filename: str) -> tuple[Reason | None, str | None]:
    why = row.get("suppressionreason") or row.get("suppression_reason") or row.get("reason") or ""
    origin = row.get("origin", "")
    return suppression_reason(why, origin), f"{why} ({origin})" if origin else why or None


EXPORT_FORMATS = (
    ExportFormat(
        "postmark",
        "emailaddress",
        lambda cols: "emailaddress" in cols and bool(cols & {"suppressionreason", "origin"}),
        _export_reason,
    ),
    ExportFormat(
        "postmark",
        "email_address",
        lambda cols: {"email_address", "suppression_reason"} <= cols,
        _export_reason,
    ),
)
