"""Amazon SES v2: ``GET /v2/email/suppression/addresses`` (ListSuppressedDestinations).

Signed with SigV4 (httpx-auth ``AWS4Auth``, service ``ses``) using the
credentials the SES adapter finds (URL, environment, shared file). Pages
through ``NextToken`` with ``PageSize=1000``; each page is
``{"SuppressedDestinationSummaries": [{EmailAddress, Reason, LastUpdateTime}],
"NextToken": ...}`` with ``Reason`` BOUNCE or COMPLAINT.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_auth import AWS4Auth

from stampcli.adapters.aws import find_credentials
from stampcli.compliance.pull.base import Pulled, PullError, Session, records
from stampcli.compliance.times import parse_time
from stampcli.config import ProviderURL

PAGE_SIZE = 1000
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


def region(url: ProviderURL, label: str) -> str:
    name = (url.host or "").lower()
    if not _REGION_RE.fullmatch(name):
        raise PullError(f"{label}: ses:// needs an AWS region, like ses://eu-west-1")
    return name


def base_url(url: ProviderURL, label: str) -> str:
    return f"https://email.{region(url, label)}.amazonaws.com"


def auth(url: ProviderURL, label: str) -> httpx.Auth:
    creds = find_credentials(url)
    if creds is None:
        raise PullError(
            f"{label}: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE with ~/.aws/credentials, or use ses://ACCESS:SECRET@REGION"
        )
    kwargs: dict[str, Any] = {"security_token": creds.session_token} if creds.session_token else {}
    signer: httpx.Auth = AWS4Auth(
        creds.access_key, creds.secret_key, region(url, label), "ses", **kwargs
    )
    return signer


def fetch(session: Session) -> Iterator[Pulled]:
    token: str | None = None
    seen: set[str] = set()
    while True:
        params: dict[str, Any] = {"PageSize": PAGE_SIZE}
        if token:
            params["NextToken"] = token
        data = session.get_json("/v2/email/suppression/addresses", params)
        for item in records(data, "SuppressedDestinationSummaries"):
            why = str(item.get("Reason") or "").upper()
            yield Pulled(
                str(item.get("EmailAddress") or ""),
                "complaint" if why == "COMPLAINT" else "hard_bounce",
                f"SES account suppression list: {why}",
                parse_time(item.get("LastUpdateTime")) or 0.0,
            )
        token = data.get("NextToken") if isinstance(data, dict) else None
        if not token or token in seen:
            return
        seen.add(token)
