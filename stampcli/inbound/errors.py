"""The two ways a provider's webhook request can fail before any event is used.

``WebhookAuthError``: the request is not provably from the provider (bad, missing,
stale or replayed signature; wrong basic-auth credentials; an SNS topic or
certificate we do not accept). The server answers 401/403 and stores nothing.

``WebhookPayloadError``: the request as a whole cannot be read (not JSON, wrong
content type, too large, not UTF-8, the wrong shape). One bad event in an
otherwise good batch is not this: it becomes a ``Rejection`` in the
``ParseResult`` and the good events are kept.

Messages name the provider and the field at fault and never contain a secret
or more than a short, sanitised excerpt of what was received.
"""

from __future__ import annotations

from stampcli.errors import StampError


class WebhookAuthError(StampError, PermissionError):
    """The webhook request failed authentication (signature, credentials, topic, replay)."""


class WebhookPayloadError(StampError, ValueError):
    """The webhook request body cannot be used at all (syntax, content type, size, shape)."""


class EventRejected(ValueError):
    """One event of a request cannot be used; the parser turns it into a ``Rejection``.

    Internal to the parsers: it never leaves :meth:`WebhookParser.parse`.
    """
