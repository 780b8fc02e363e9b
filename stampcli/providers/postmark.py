"""Postmark: ``postmark://SERVER_TOKEN`` (options: ``?stream=broadcast``).

Up to 500 complete messages go in one ``POST /email/batch``; Postmark answers
200 with one entry per message, each with its own ``ErrorCode`` (0 = accepted).
Bulk mail must use a broadcast message stream, so the default stream is
``broadcast`` (every Postmark server has one); ``?stream=outbound`` overrides.

ErrorCodes: 300 invalid request (an invalid 'To' address is the recipient's
fault; anything else 300 says is not), 406 inactive recipient (hard bounce,
spam complaint or manual suppression), 405/412/413 and the rest: account or
request problems, the provider refusing us.

Webhook ``POST /webhooks/postmark`` (``PostmarkParser``). Postmark webhooks: one JSON object
per request, ``RecordType`` says which event.

Postmark does not sign: HTTP Basic credentials in the webhook URL. stamp's
adapter sends the tags as ``Metadata`` (values cut to 80 characters) and the
campaign as ``Tag``. The ``X-PM-Webhook-Trace-Id`` header is the event id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from stampcli.config import ProviderURL
from stampcli.events.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventRejected,
    EventType,
    Reason,
    make_event,
    timestamp,
)
from stampcli.providers.base import Outcome, Result
from stampcli.providers.events_pull import EventPage, parse_items, shared_event_id, since
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
from stampcli.providers.webhook import (
    BasicAuthParser,
    Headers,
    WebhookPayloadError,
    json_body,
    obj,
    text_field,
)
from stampcli.render.message import Message
from stampcli.times import parse_time

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
            **({"Cc": ", ".join(message.cc)} if message.cc else {}),
            **({"Bcc": ", ".join(message.bcc)} if message.bcc else {}),
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


# --------------------------------------------------------------------------- events
BOUNCES_PAGE = 500  # the bounces API's largest page
BOUNCES_WINDOW = 10_000  # count + offset may not pass this: later pulls go on from the cursor
# fromdate has whole seconds and Postmark's own clock: read an hour again each pull
BOUNCES_MARGIN = 3600.0
_POSTMARK_TZ = "America/New_York"  # fromdate/todate are Eastern Time


def _eastern(epoch: float) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(epoch, ZoneInfo(_POSTMARK_TZ)).strftime("%Y-%m-%dT%H:%M:%S")


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """``GET /bounces`` from the cursor (the newest BouncedAt seen, epoch seconds), every
    page of the stream; bounces are Postmark's pull API for events (the webhook's Bounce
    and SpamComplaint records, without the metadata: they match by message id)."""

    parser = PostmarkParser("pulled", "events carry no credentials")
    stream = session.url.options.get("stream", "broadcast")
    newest = since(cursor, now, 0.0)
    params = {
        "count": BOUNCES_PAGE,
        "fromdate": _eastern(since(cursor, now, BOUNCES_MARGIN)),
        "todate": _eastern(now),
        "messagestream": stream,
    }
    offset = 0
    while offset + BOUNCES_PAGE <= BOUNCES_WINDOW:
        data = session.get_json("/bounces", {**params, "offset": offset})
        page = records(data, "Bounces")
        # a pulled bounce is the webhook's Bounce record (SpamComplaint by its Type)
        items = [{**item, "RecordType": "Bounce"} for item in page]
        events, rejected = parse_items(items, lambda item: parser.events(item, {}))
        newest = max([newest, *(e.occurred_at.timestamp() for e in events)])
        last = len(page) < BOUNCES_PAGE or offset + 2 * BOUNCES_PAGE > BOUNCES_WINDOW
        # the list is newest first: the cursor moves only once every page is stored
        yield EventPage(events, rejected, f"{newest:.3f}" if last else None)
        if last:
            return
        offset += len(page)


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


# -- webhook -----------------------------------------------------------------------------

# Bounce ``Type`` -> (event type, bounce kind); types not listed are treated as soft bounces.
BOUNCE_TYPES: dict[str, tuple[EventType, BounceKind | None]] = {
    "HardBounce": (EventType.BOUNCED, BounceKind.HARD),
    "SoftBounce": (EventType.BOUNCED, BounceKind.SOFT),
    "Transient": (EventType.DEFERRED, BounceKind.SOFT),
    "DnsError": (EventType.DEFERRED, BounceKind.SOFT),
    "OpenRelayTest": (EventType.DEFERRED, BounceKind.SOFT),
    "Blocked": (EventType.REJECTED, None),
    "DMARCPolicy": (EventType.REJECTED, None),
    "ManuallyDeactivated": (EventType.DROPPED, None),
    "BadEmailAddress": (EventType.REJECTED, None),
    "Unconfirmed": (EventType.REJECTED, None),
    "AutoResponder": (EventType.AUTO_REPLIED, None),
    "AddressChange": (EventType.AUTO_REPLIED, None),
    "ChallengeVerification": (EventType.AUTO_REPLIED, None),
    "VirusNotification": (EventType.BOUNCED, BounceKind.SOFT),
    "SMTPApiError": (EventType.FAILED, None),
    "TemplateRenderingFailed": (EventType.FAILED, None),
    "SpamNotification": (EventType.COMPLAINED, None),
    "SpamComplaint": (EventType.COMPLAINED, None),
}
RECORD_TYPES = {
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCED,
    "SpamComplaint": EventType.COMPLAINED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "SubscriptionChange": EventType.UNSUBSCRIBED,
}
_TIME_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")


class PostmarkParser(BasicAuthParser):
    provider = "postmark"

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        data = json_body(self.provider, headers, body)
        if not isinstance(data, dict):
            raise WebhookPayloadError("postmark webhook: the body is not a JSON object")
        return [data]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        record = item.get("RecordType")
        kind = RECORD_TYPES.get(record) if isinstance(record, str) else None
        if kind is None:
            raise EventRejected(f"unknown RecordType {str(record)[:40]!r}")
        bounce_kind = None
        if record in ("Bounce", "SpamComplaint"):
            bounce_type = str(item.get("Type") or "")
            kind, bounce_kind = BOUNCE_TYPES.get(bounce_type, (EventType.BOUNCED, BounceKind.SOFT))
        elif record == "SubscriptionChange" and item.get("SuppressSending") is False:
            kind = EventType.SUBSCRIBED
        occurred_at = timestamp(
            next((item[f] for f in _TIME_FIELDS if item.get(f)), None), "event time"
        )
        metadata = obj(item.get("Metadata"))
        recipient = item.get("Recipient") or item.get("Email")
        # One id by webhook and by GET /bounces for the same event. A Bounce or
        # SpamComplaint webhook carries the bounce's ID, the very ID the bounces API
        # lists it under (complaints included, as Type SpamComplaint): that is the id.
        # Deliveries, opens, clicks and subscription changes have no id in the payload
        # (X-PM-Webhook-Trace-Id exists only in the webhook's headers, never in an API):
        # their id is the canonical tuple, which the messages/opens APIs also carry
        # (MessageID, recipient, type, time to the second, and a click's link).
        if record in ("Bounce", "SpamComplaint") and item.get("ID"):
            event_id: str | None = f"bounce-{item['ID']}"
        else:
            event_id = shared_event_id(
                self.provider,
                message_id=item.get("MessageID"),
                recipient=recipient,
                kind=kind,
                bounce_kind=bounce_kind,
                when=occurred_at,
                url=item.get("OriginalLink"),
            ) or headers.get("x-pm-webhook-trace-id")
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=recipient,
                occurred_at=occurred_at,
                event_id=event_id,
                campaign=metadata.get(TAG_CAMPAIGN) or item.get("Tag"),
                recipient_key=metadata.get(TAG_RECIPIENT),
                message_id=item.get("MessageID"),
                bounce_kind=bounce_kind,
                reason=text_field(item, "Description")
                or text_field(item, "Details")
                or text_field(item, "SuppressionReason"),
                url_=item.get("OriginalLink"),
                user_agent=item.get("UserAgent"),
            )
        ]
