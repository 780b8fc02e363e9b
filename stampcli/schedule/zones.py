"""Time zones by name: IANA names (``Europe/Berlin``) and UTC offsets (``+02:00``, ``GMT-5``).

Recipient lists carry zones as Mailchimp exports them (``TIMEZONE`` holding an
IANA name, ``GMTOFF`` holding hours such as ``-5`` or ``5.5``), or as offsets
written by hand (``UTC+1``, ``+0530``). :func:`parse_zone` takes any of these;
zones come from :mod:`zoneinfo`, backed by the ``tzdata`` package where the
platform has no zone database.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_OFFSET = re.compile(
    r"^(?:(?:UTC|GMT|Z)\s*)?([+-])?\s*(\d{1,2})(?:(?::?)(\d{2}))?$|^(?:UTC|GMT|Z)$",
    re.IGNORECASE,
)
_DECIMAL = re.compile(r"^([+-])?(\d{1,2})\.(\d+)$")  # Mailchimp's GMTOFF: 5.5, -3.5
_MAX_OFFSET = 14 * 60  # minutes: the widest offset in use (Kiribati, +14:00)


class UnknownZone(ValueError):
    """Not an IANA zone name nor a UTC offset."""


def _offset(sign: str | None, hours: int, minutes: int, text: str) -> tzinfo:
    total = hours * 60 + minutes
    if minutes >= 60 or total > _MAX_OFFSET:
        raise UnknownZone(f"{text!r} is not a UTC offset (they run from -14:00 to +14:00)")
    if sign == "-":
        total = -total
    return timezone(timedelta(minutes=total)) if total else UTC


@lru_cache(maxsize=1024)
def parse_zone(text: str) -> tzinfo:
    """The zone ``text`` names; :class:`UnknownZone` (with what to write) if none.

    Cached: a list of a million recipients names a few dozen zones.
    """
    name = text.strip()
    if not name:
        raise UnknownZone("the time zone is empty")
    if name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    dec = _DECIMAL.match(name)
    if dec is not None:
        minutes = round(float("0." + dec.group(3)) * 60)
        return _offset(dec.group(1), int(dec.group(2)), minutes, name)
    match = _OFFSET.match(name)
    if match is not None and match.group(2) is not None:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        bare = not re.match(r"^(UTC|GMT|Z)", name, re.IGNORECASE)
        if sign is None and bare and len(name) > 2:  # "530": a typo, not an offset
            raise UnknownZone(f"{text!r} is not a time zone")
        return _offset(sign, hours, minutes, name)
    if "/" in name or name.isalpha():
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise UnknownZone(
        f"{text!r} is not a time zone; write an IANA name like Europe/Berlin or "
        "America/New_York, or a UTC offset like +02:00, UTC-5 or -5"
    )


def zone_name(zone: tzinfo) -> str:
    """How a zone is shown: its IANA key, or ``UTC+02:00``."""
    key = getattr(zone, "key", None)
    if isinstance(key, str):
        return key
    if zone is UTC:
        return "UTC"
    name = zone.tzname(None) or "UTC"
    return name
