"""Amazon SES v2: ``ses://REGION`` or ``ses://ACCESS:SECRET@REGION``.

Sends the rendered MIME as it is with SendEmail (``POST
/v2/email/outbound-emails``, ``Content.Raw.Data`` base64), one message per
call, signed with SigV4 by httpx-auth's ``AWS4Auth`` (service ``ses``).
Credentials are found the AWS way (:mod:`stampcli.adapters.aws`). Options:
``?configuration_set=NAME`` (event publishing), ``?session_token=...``.
SES has no per-message tracking switch: opens and clicks are tracked by the
event destinations of the configuration set (without the option, the
sending identity's default set, if it has one), so ``tracking:`` is only
warned about (:mod:`stampcli.adapters.tracking`).

SES answers errors in the rest-json style: the type in the
``x-amzn-ErrorType`` header (or ``__type``/``code`` in the body) and a
``message``. MessageRejected is this message's; AccountSuspended,
SendingPaused, MailFromDomainNotVerified refuse us; TooManyRequests and
LimitExceeded throttle (SES gives no Retry-After: the engine backs off).
Tag values allow only ``[A-Za-z0-9_-]``, so the campaign and recipient are
encoded reversibly (``stampcli.adapters.http.tag_value``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
from httpx_auth import AWS4Auth

from stampcli.adapters.aws import AWSCredentials, find_credentials
from stampcli.adapters.base import Outcome, Result
from stampcli.adapters.http import (
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
)
from stampcli.render.message import Message

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


class SESAdapter(HTTPAdapter):
    scheme = "ses"
    max_batch = 1
    # opens and clicks are tracked by the configuration set's event destinations,
    # for every message sent through it: there is nothing to switch per message
    tracking_switch = False
    check_name = "GET /v2/email/account"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._credentials: AWSCredentials | None = None

    @property
    def region(self) -> str:
        region = (self.url.host or "").lower()
        if not _REGION_RE.fullmatch(region):
            raise ProviderSetupError(
                f"ses:// needs an AWS region, like ses://eu-west-1 (got {region!r})"
            )
        return region

    @property
    def base_url(self) -> str:  # type: ignore[override]
        return f"https://email.{self.region}.amazonaws.com"

    @property
    def endpoint(self) -> str:
        return self.config.endpoint.rstrip("/") if self.config.endpoint else self.base_url

    def credentials(self) -> AWSCredentials:
        if self._credentials is None:
            self._credentials = find_credentials(self.url)
        if self._credentials is None:
            raise ProviderSetupError(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE with ~/.aws/credentials, or use ses://ACCESS:SECRET@REGION"
            )
        return self._credentials

    def auth(self) -> httpx.Auth:
        creds = self.credentials()
        kwargs = {"security_token": creds.session_token} if creds.session_token else {}
        auth: httpx.Auth = AWS4Auth(
            creds.access_key, creds.secret_key, self.region, "ses", **kwargs
        )
        return auth

    def payload(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
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
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress="invalid")]
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
