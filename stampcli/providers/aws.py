"""AWS credentials, found the way the AWS tools find them.

Order: credentials in the provider URL (``ses://ACCESS:SECRET@REGION``), then
the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``), then the shared credentials file
(``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``, profile
``AWS_PROFILE`` or ``default``). Every secret found is registered with
:mod:`stampcli.redact` so it can never reach a log line.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stampcli import redact
from stampcli.config import ProviderURL


@dataclass(frozen=True, slots=True)
class AWSCredentials:
    access_key: str
    secret_key: str
    session_token: str | None = None
    source: str = ""  # where they came from, for `stamp providers check`

    def __repr__(self) -> str:
        return f"AWSCredentials(access_key='***', source={self.source!r})"


def find_credentials(
    url: ProviderURL, env: Mapping[str, str] | None = None
) -> AWSCredentials | None:
    """The credentials to sign with, or None when there are none anywhere."""
    env = os.environ if env is None else env
    found = _from_url(url) or _from_env(env) or _from_file(env)
    if found is not None:
        for secret in (found.access_key, found.secret_key, found.session_token):
            redact.register(secret)
    return found


def _from_url(url: ProviderURL) -> AWSCredentials | None:
    if url.user and url.password:
        return AWSCredentials(url.user, url.password, url.options.get("session_token"), "URL")
    return None


def _from_env(env: Mapping[str, str]) -> AWSCredentials | None:
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return AWSCredentials(key, secret, env.get("AWS_SESSION_TOKEN") or None, "environment")
    return None


def _from_file(env: Mapping[str, str]) -> AWSCredentials | None:
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path.expanduser(), encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if key and secret:
        token = section.get("aws_session_token") or None
        return AWSCredentials(key.strip(), secret.strip(), token, f"{path} [{profile}]")
    return None
