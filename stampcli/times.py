"""Timestamps as providers write them, turned into epoch seconds.

SendGrid gives Unix seconds, Mailgun RFC 2822 dates, Postmark, SES and Brevo
ISO 8601, Mailchimp and Mandrill ``YYYY-MM-DD HH:MM:SS`` in UTC. Anything
unreadable becomes None, and the suppression gets "now" instead: a wrong
date on a suppression is harmless, a refused import is not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Before 2000 or after 2100: a number that is not a plausible timestamp.
_MIN_EPOCH = 946_684_800.0
_MAX_EPOCH = 4_102_444_800.0


def parse_time(value: object) -> float | None:
    """Epoch seconds for ``value``, or None when it is empty or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _epoch(float(value))
    text = str(value).strip()
    if not text:
        return None
    try:
        return _epoch(float(text))
    except ValueError:
        pass
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _epoch(number: float) -> float | None:
    if number > _MAX_EPOCH * 1000:
        return None
    if number > _MAX_EPOCH:  # milliseconds (Mailjet, some exports)
        number /= 1000.0
    return number if _MIN_EPOCH <= number <= _MAX_EPOCH else None
