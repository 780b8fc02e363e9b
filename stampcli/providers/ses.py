"""Amazon SES v2: ``ses://REGION`` or ``ses://ACCESS:SECRET@REGION``.

Long because SES has three sides beside the adapter (SigV4 credentials, the
suppression pull, the SNS webhook in two event formats), kept with it as every
provider's are.

Sends the rendered MIME as it is with SendEmail (``POST
/v2/email/outbound-emails``, ``Content.Raw.Data`` base64), one message per
call, signed with SigV4 by httpx-auth's ``AWS4Auth`` (service ``ses``).
Credentials are found the AWS way (:mod:`stampcli.providers.aws`). Options:
``?configuration_set=NAME`` (event publishing), ``?session_token=...``.
SES has no per-message tracking switch: opens and clicks are tracked by the
event destinations of the configuration set (without the option, the
sending identity's default set, if it has one), so ``tracking:`` is only
warned about (:func:`stampcli.providers.tracking_warning`).

SES answers errors in the rest-json style: the type in the
``x-amzn-ErrorType`` header (or ``__type``/``code`` in the body) and a
``message``. MessageRejected is this message's; AccountSuspended,
SendingPaused, MailFromDomainNotVerified refuse us; TooManyRequests and
LimitExceeded throttle (SES gives no Retry-After: the engine backs off).
Tag values allow only ``[A-Za-z0-9_-]``, so the campaign and recipient are
encoded reversibly (``stampcli.providers.http.tag_value``).

Webhook ``POST /webhooks/ses`` (``SESParser``). Amazon SES events through an SNS topic's
HTTPS subscription.

The body is an SNS message (JSON, sent as ``text/plain``) whose ``Message`` is
the SES event as a JSON string, in either of SES's formats: event publishing
(configuration sets, ``eventType``) or identity notifications
(``notificationType``). The SNS signature is checked against the signing
certificate and the topic against ``SES_SNS_TOPIC_ARNS``. A
``SubscriptionConfirmation`` yields its checked ``subscribe_url`` for the
server to confirm. One SES event can name several recipients: one
``DeliveryEvent`` each.

stamp's adapter sends the tags as SES ``EmailTags`` encoded with ``tag_value``;
they come back in ``mail.tags`` (event publishing only) as lists of values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Self

import httpx
from cryptography import x509
from httpx_auth import AWS4Auth

from stampcli.config import ProviderConfig, ProviderURL
from stampcli.events.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventRejected,
    EventType,
    ParseResult,
    Reason,
    looks_auto_reply,
    make_event,
    timestamp,
)
from stampcli.providers.aws import AWSCredentials, find_credentials
from stampcli.providers.base import NO_TRACKING_SWITCH, Outcome, Result
from stampcli.providers.http import (
    BadAnswer,
    Call,
    CheckProblem,
    HTTPAdapter,
    ProviderSetupError,
    b64,
    body_json,
    short,
    status_result,
    tag_value,
    untag_value,
)
from stampcli.providers.pull import Pulled, Session, records
from stampcli.providers.suppression_files import Cells, ExportFormat
from stampcli.providers.webhook import (
    Headers,
    SNSVerifier,
    WebhookAuthError,
    WebhookParser,
    WebhookPayloadError,
    json_body,
    load_json,
    obj,
    require,
    text_field,
)
from stampcli.render.message import Message
from stampcli.times import parse_time

_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_REFUSING = {
    "AccountSuspended",
    "SendingPaused",
    "MailFromDomainNotVerified",
    "NotFound",
    "AccessDenied",
    "UnrecognizedClient",
    "InvalidSignature",
    "SignatureDoesNotMatch",
}
_THROTTLING = {"TooManyRequests", "LimitExceeded", "Throttling"}


def error_type(response: httpx.Response) -> str:
    """SES's error type without namespace or ``Exception`` suffix ("MessageRejected")."""
    kind = response.headers.get("x-amzn-errortype", "")
    if not kind:
        try:
            body = body_json(response)
            kind = str(body.get("__type") or body.get("code") or body.get("Code") or "")
        except (BadAnswer, AttributeError):
            kind = ""
    name: str = kind.split(":", 1)[0].rsplit("#", 1)[-1]
    return name.removesuffix("Exception")


def _names_sender(text: str, sender: str) -> bool:
    """Whether an identity-check failure lists the sender's address or domain."""
    if "failed the check" not in text:
        return False
    identities = text.rpartition(":")[2].lower()
    domain = sender.rpartition("@")[2].lower()
    return any(
        x.strip(" .") in (sender.lower(), domain) for x in identities.replace(";", ",").split(",")
    )


def _destination(message: Message) -> dict[str, list[str]]:
    """The envelope recipients of the raw message (Cc is also in its headers, Bcc not)."""
    out = {"ToAddresses": [message.recipient]}
    if message.cc:
        out["CcAddresses"] = [a for _, a in message.cc_addresses]
    if message.bcc:
        out["BccAddresses"] = [a for _, a in message.bcc_addresses]
    return out


class SESAdapter(HTTPAdapter):
    scheme = "ses"
    max_batch = 1
    # opens and clicks are tracked by the configuration set's event destinations,
    # for every message sent through it: there is nothing to switch per message
    tracking_switch = False
    check_name = "GET /v2/email/account"

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        name = config.parsed.options.get("configuration_set")
        if name:
            return f"{NO_TRACKING_SWITCH}; the configuration set {name!r} decides"
        return (
            f"{NO_TRACKING_SWITCH} and no ?configuration_set=NAME is given, so only the "
            "sending identity's default configuration set, if it has one, can track"
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._credentials: AWSCredentials | None = None

    @staticmethod
    def region_for(url: ProviderURL) -> str:
        """The AWS region (the URL's host); ProviderSetupError when it is not one."""
        region = (url.host or "").lower()
        if not _REGION_RE.fullmatch(region):
            raise ProviderSetupError(
                f"ses:// needs an AWS region, like ses://eu-west-1 (got {region!r})"
            )
        return region

    @classmethod
    def endpoint_for(cls, config: ProviderConfig) -> str:
        if config.endpoint:
            return config.endpoint.rstrip("/")
        return f"https://email.{cls.region_for(config.parsed)}.amazonaws.com"

    @staticmethod
    def credentials_for(url: ProviderURL) -> AWSCredentials:
        """The credentials to sign with (:func:`find_credentials`); ProviderSetupError if none."""
        found = find_credentials(url)
        if found is None:
            raise ProviderSetupError(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE with ~/.aws/credentials, or use ses://ACCESS:SECRET@REGION"
            )
        return found

    @staticmethod
    def signer(creds: AWSCredentials, region: str) -> httpx.Auth:
        """SigV4 for the ``ses`` service in ``region``."""
        kwargs = {"security_token": creds.session_token} if creds.session_token else {}
        auth: httpx.Auth = AWS4Auth(creds.access_key, creds.secret_key, region, "ses", **kwargs)
        return auth

    @classmethod
    def auth_for(cls, url: ProviderURL) -> httpx.Auth:
        return cls.signer(cls.credentials_for(url), cls.region_for(url))

    @property
    def region(self) -> str:
        return self.region_for(self.url)

    def credentials(self) -> AWSCredentials:
        if self._credentials is None:
            self._credentials = self.credentials_for(self.url)
        return self._credentials

    def auth(self) -> httpx.Auth:
        # the instance keeps its credentials: `stamp providers check` says where they came from
        return self.signer(self.credentials(), self.region)

    def payload(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": _destination(message),
            "Content": {"Raw": {"Data": b64(message.raw)}},
            "EmailTags": [{"Name": k, "Value": tag_value(v)} for k, v in message.tags.items()],
        }
        config_set = self.url.options.get("configuration_set")
        if config_set:
            body["ConfigurationSetName"] = config_set
        return body

    def build_send(self, batch: Sequence[Message]) -> Call:
        self.credentials()  # a missing key is a refusal, said before any request
        return Call("POST", "/v2/email/outbound-emails", json=self.payload(batch[0]))

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.is_success:
            return [self.accepted(str(body_json(response)["MessageId"]))]
        kind = error_type(response)
        try:
            text = short(str(body_json(response).get("message", "")))
        except (BadAnswer, AttributeError):
            text = short(response.text)
        detail = f"HTTP {response.status_code} {kind}: {text}"
        if kind == "MessageRejected":
            if _names_sender(text, batch[0].sender):
                # "Email address is not verified ... : news@acme.example": our From identity
                # fails the check, so every message would fail: refused, not the recipient
                return [Result(Outcome.PROVIDER_REFUSED, detail=detail)]
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail)]
        if kind in _THROTTLING:
            return [Result(Outcome.THROTTLED, detail=detail)]
        if kind in _REFUSING:
            return [Result(Outcome.PROVIDER_REFUSED, detail=detail)]
        if kind == "BadRequest" and re.search(r"(illegal|invalid) address", text, re.I):
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)]
        return [status_result(response, f"{kind}: {text}" if kind else text)]

    def check_call(self) -> Call:
        self.credentials()
        return Call("GET", "/v2/email/account")

    def check_detail(self, response: httpx.Response) -> str:
        account = body_json(response)
        if account.get("SendingEnabled") is False:
            raise CheckProblem("sending is paused for this account in this region")
        if account.get("EnforcementStatus") == "SHUTDOWN":
            raise CheckProblem("the account is shut down (EnforcementStatus SHUTDOWN)")
        quota = account.get("SendQuota", {})
        mode = "production" if account.get("ProductionAccessEnabled") else "sandbox"
        creds = self._credentials.source if self._credentials else "?"
        return (
            f"{self.region}, {mode}, {quota.get('MaxSendRate', '?')}/s, "
            f"{quota.get('SentLast24Hours', '?')}/{quota.get('Max24HourSend', '?')} in 24 h, "
            f"credentials from {creds}"
        )


# --------------------------------------------------------------------------- suppressions
# GET /v2/email/suppression/addresses (ListSuppressedDestinations), signed as the
# adapter signs. Pages through NextToken with PageSize=1000; each page is
# {"SuppressedDestinationSummaries": [{EmailAddress, Reason, LastUpdateTime}],
# "NextToken": ...} with Reason BOUNCE or COMPLAINT.

SUPPRESSION_PAGE = 1000


def suppression_reason(why: str) -> Reason:
    """Our reason for SES's BOUNCE or COMPLAINT (the API's and the export's)."""
    return Reason.COMPLAINT if why.strip().upper() == "COMPLAINT" else Reason.HARD_BOUNCE


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    token: str | None = None
    seen: set[str] = set()
    while True:
        params: dict[str, Any] = {"PageSize": SUPPRESSION_PAGE}
        if token:
            params["NextToken"] = token
        data = session.get_json("/v2/email/suppression/addresses", params)
        for item in records(data, "SuppressedDestinationSummaries"):
            why = str(item.get("Reason") or "").upper()
            yield Pulled(
                str(item.get("EmailAddress") or ""),
                suppression_reason(why),
                f"SES account suppression list: {why}",
                parse_time(item.get("LastUpdateTime")) or 0.0,
            )
        token = data.get("NextToken") if isinstance(data, dict) else None
        if not token or token in seen:
            return
        seen.add(token)


# --------------------------------------------------------------------------- exports
# ListSuppressedDestinations saved as CSV (EmailAddress, Reason, LastUpdateTime), and
# SES's bulk-import file: no header, address,BOUNCE|COMPLAINT per line.
_DETAIL = "SES account suppression list"


def _export_reason(row: Cells, filename: str) -> tuple[Reason | None, str | None]:
    return suppression_reason(row.get("reason") or row.get("#1") or ""), _DETAIL


def _bulk_import(cells: Sequence[str]) -> bool:
    return len(cells) >= 2 and cells[1].strip().upper() in ("BOUNCE", "COMPLAINT")


EXPORT_FORMATS = (
    # Origin or SuppressionReason beside EmailAddress is Postmark's export
    ExportFormat(
        "ses",
        "emailaddress",
        lambda cols: (
            {"emailaddress", "reason"} <= cols and not cols & {"origin", "suppressionreason"}
        ),
        _export_reason,
    ),
    ExportFormat("ses", "#0", lambda cols: False, _export_reason, headerless=_bulk_import),
)


# -- webhook -----------------------------------------------------------------------------

EVENT_TYPES = {
    "Send": EventType.SENT,
    "Reject": EventType.REJECTED,
    "Bounce": EventType.BOUNCED,
    "Complaint": EventType.COMPLAINED,
    "Delivery": EventType.DELIVERED,
    "DeliveryDelay": EventType.DEFERRED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "Rendering Failure": EventType.FAILED,
    "Subscription": EventType.UNSUBSCRIBED,
}
SUPPRESSED = frozenset({"Suppressed", "OnAccountSuppressionList"})
# The mailbox simulator's out-of-office address: SES delivers, then the simulator auto-replies.
OOTO_SIMULATOR = "ooto@simulator.amazonses.com"
SES_VALIDATED = "Successfully validated SNS topic for Amazon SES event publishing."
SNS_TYPES = ("text/plain", "application/json")


def _tag(tags: Mapping[str, Any], name: str) -> str | None:
    values = tags.get(name)
    value = values[0] if isinstance(values, list) and values else values
    if not isinstance(value, str):
        return None
    try:
        return untag_value(value)
    except (ValueError, UnicodeDecodeError):
        return None


class SESParser(WebhookParser):
    provider = "ses"
    env = ("SES_SNS_TOPIC_ARNS",)

    def __init__(
        self,
        topics: Collection[str],
        fetch_certificate: Callable[[str], bytes],
        *,
        trusted_certificates: Collection[x509.Certificate] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sns = SNSVerifier(
            topics, fetch_certificate, trusted_certificates=trusted_certificates, clock=self.clock
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        """``options`` must give ``fetch_certificate``; the topics are comma-separated ARNs."""
        [arns] = require(env, cls.env)
        topics = [a.strip() for a in arns.replace("\n", ",").split(",") if a.strip()]
        fetch = options.pop("fetch_certificate", None)
        if fetch is None:
            raise TypeError("SESParser.from_env needs fetch_certificate=")
        return cls(topics, fetch, **options)

    def envelope(self, headers: Headers, body: bytes) -> Mapping[str, Any]:
        data = json_body(self.provider, headers, body, SNS_TYPES)
        if not isinstance(data, dict) or not isinstance(data.get("Type"), str):
            raise WebhookPayloadError("ses webhook: the body is not an SNS message")
        return data

    def verify(self, headers: Headers, body: bytes) -> None:
        self.sns.check(headers, self.envelope(headers, body))

    def parse(self, headers: Headers, body: bytes) -> ParseResult:
        envelope = self.envelope(headers, body)
        kind = envelope["Type"]
        topic = envelope.get("TopicArn") if isinstance(envelope.get("TopicArn"), str) else None
        if kind == "SubscriptionConfirmation":
            try:
                url = self.sns.subscribe_url(envelope)
            except WebhookAuthError as exc:
                raise WebhookPayloadError(str(exc)) from None
            return ParseResult(ignored=1, subscribe_url=url, topic_arn=topic)
        if kind == "UnsubscribeConfirmation":
            return ParseResult(ignored=1, topic_arn=topic)
        if kind != "Notification":
            raise WebhookPayloadError(f"ses webhook: unknown SNS message Type {kind[:40]!r}")
        result = super().parse(headers, body)
        return ParseResult(result.events, result.rejected, result.ignored, topic_arn=topic)

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        envelope = self.envelope(headers, body)
        message = envelope.get("Message")
        if not isinstance(message, str):
            raise WebhookPayloadError("ses webhook: the SNS Message is not text")
        if message.strip() == SES_VALIDATED:
            return [{}]  # SES's note after subscribing: nothing to record
        event = load_json(self.provider, message, "the SNS Message")
        if isinstance(event, dict):
            event = {**event, "_sns_message_id": envelope.get("MessageId")}
        return [event]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        if not item:
            return []
        sns_id = item.get("_sns_message_id")
        item = {k: v for k, v in item.items() if k != "_sns_message_id"}
        name = item.get("eventType", item.get("notificationType"))
        if name == "AmazonSnsSubscriptionSucceeded":
            return []
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None or not isinstance(name, str):
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        mail = obj(item.get("mail"))
        detail = obj(item.get(name[0].lower() + name[1:].replace(" ", "")))  # "bounce", ...
        tags = obj(mail.get("tags"))
        common = obj(mail.get("commonHeaders"))
        bounce_kind = None
        reason: str | None = None
        when_field: Any = detail.get("timestamp") or mail.get("timestamp")
        # (recipient, per-recipient reason) pairs
        recipients: list[tuple[Any, str | None]]
        if kind is EventType.BOUNCED:
            bounce_type = detail.get("bounceType")
            sub_type = str(detail.get("bounceSubType") or "")
            if sub_type in SUPPRESSED:
                kind = EventType.DROPPED
            elif bounce_type == "Permanent":
                bounce_kind = BounceKind.HARD
            else:
                bounce_kind = BounceKind.SOFT  # Transient or Undetermined
            recipients = [
                (r.get("emailAddress"), text_field(r, "diagnosticCode"))
                for r in map(obj, detail.get("bouncedRecipients") or [])
            ]
            reason = f"{bounce_type} {sub_type}".strip()
        elif kind is EventType.COMPLAINED:
            if detail.get("complaintSubType") in SUPPRESSED:
                kind = EventType.DROPPED
            elif detail.get("complaintFeedbackType") == "not-spam":
                return []
            recipients = [
                (r.get("emailAddress"), None)
                for r in map(obj, detail.get("complainedRecipients") or [])
            ]
            reason = text_field(detail, "complaintFeedbackType")
        elif kind is EventType.DELIVERED:
            recipients = [(r, None) for r in detail.get("recipients") or []]
            reason = text_field(detail, "smtpResponse")
        elif kind is EventType.DEFERRED:
            bounce_kind = BounceKind.SOFT
            recipients = [
                (r.get("emailAddress"), text_field(r, "diagnosticCode"))
                for r in map(obj, detail.get("delayedRecipients") or [])
            ]
            reason = text_field(detail, "delayType")
        elif kind is EventType.UNSUBSCRIBED:
            prefs = obj(detail.get("newTopicPreferences"))
            if prefs.get("unsubscribeAll") is False:
                kind = EventType.SUBSCRIBED
            recipients = [(r, None) for r in mail.get("destination") or []]
        else:
            # Send, Reject, Open, Click, Rendering Failure: about the whole message
            recipients = [(r, None) for r in mail.get("destination") or []]
            reason = text_field(detail, "reason") or text_field(detail, "errorMessage")
        if not recipients:
            raise EventRejected(f"{name} event names no recipient")
        if len(recipients) > 1000:
            raise EventRejected(f"{name} event names {len(recipients)} recipients")
        events = []
        for address_, own_reason in recipients:
            text = own_reason or reason
            is_ooto = isinstance(address_, str) and address_.lower() == OOTO_SIMULATOR
            events.append(
                make_event(
                    self.provider,
                    kind,
                    item,
                    recipient=address_,
                    occurred_at=timestamp(when_field),
                    event_id=(
                        f"{sns_id}/{str(address_).lower()}"
                        if isinstance(sns_id, str) and len(recipients) > 1
                        else sns_id
                    ),
                    campaign=_tag(tags, TAG_CAMPAIGN),
                    recipient_key=_tag(tags, TAG_RECIPIENT),
                    message_id=mail.get("messageId"),
                    message_id_header=common.get("messageId"),
                    bounce_kind=bounce_kind,
                    reason=text,
                    url_=detail.get("link"),
                    user_agent=detail.get("userAgent"),
                    auto_reply=is_ooto
                    or (kind in (EventType.BOUNCED, EventType.DEFERRED) and looks_auto_reply(text)),
                )
            )
        return events
