"""Header rows: trim the names, refuse empty or duplicate ones, and find the email column.

Header names are trimmed (spaces, tabs, no-break spaces, a stray byte-order
mark) and otherwise kept as written; they become the field names of every
contact. Names are compared ignoring case, so ``Email`` and ``email `` in one
header are duplicates. Unnamed columns at the right-hand end (a common
spreadsheet-export artefact) are dropped; an unnamed column between named ones
is an error, because its values would have no field name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stampcli.errors import InputError

# Header names that hold the address, best first, compared after squash().
EMAIL_NAMES = (
    "email",
    "emailaddress",
    "email1",
    "mail",
    "mailaddress",
    "emailaddr",
    "emailadresse",
    "mailadresse",
    "adresseemail",
    "adressemail",
    "courriel",
    "correo",
    "correoelectronico",
    "posta",
    "subscriberemail",
    "contactemail",
    "primaryemail",
    "workemail",
    "recipient",
)
_TRIM = " \t\r\n\ufeff\u00a0\u2007\u202f\u200b"
_SQUASH = re.compile(r"[\s_\-.]+")
_FIELD_ID = re.compile(r"\W+")


def clean_header(name: object) -> str:
    """A header cell as a field name: text, trimmed."""
    return str(name).strip(_TRIM) if name is not None else ""


def squash(name: str) -> str:
    """Lower case, no spaces, dashes, dots, underscores: ``E-Mail Address`` -> ``emailaddress``."""
    return _SQUASH.sub("", name.lower())


def field_id(name: str) -> str:
    """The identifier a segment expression uses for a column: ``First Name`` -> ``first_name``."""
    return _FIELD_ID.sub("_", name.strip()).strip("_").lower()


def column_label(index: int) -> str:
    """``column 3 (C)`` for the zero-based ``index``: the number for CSV, the letter for Excel."""
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"column {index + 1} ({letters})"


def check_header(raw: Sequence[object], source: str) -> list[str]:
    """The trimmed column names of a header row, or :class:`InputError` naming the problem."""
    names = [clean_header(v) for v in raw]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InputError(
            f"{source}: the header row is empty; the first row must name the columns "
            "(for example: email,first_name,last_name)"
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise InputError(
                f"{source}: {column_label(i)} of the header row has no name; "
                "give it a name or delete the column"
            )
        low = name.lower()
        if low in seen:
            first = seen[low]
            raise InputError(
                f"{source}: the header name {name!r} appears twice, in "
                f"{column_label(first)} and {column_label(i)} (names are compared "
                "ignoring case and surrounding spaces); rename or delete one of them"
            )
        seen[low] = i
    return names


def find_email_column(columns: Sequence[str], explicit: str | None, source: str) -> int:
    """Index of the address column: ``explicit`` if given, else the usual names, best first."""
    shown = ", ".join(repr(c) for c in columns)
    if explicit is not None:
        want = clean_header(explicit).lower()
        for i, name in enumerate(columns):
            if name.lower() == want:
                return i
        raise InputError(
            f"{source}: there is no column named {explicit!r} for the email address; "
            f"the columns are {shown}"
        )
    squashed = [squash(c) for c in columns]
    for candidate in EMAIL_NAMES:
        if candidate in squashed:
            return squashed.index(candidate)
    # "Primary E-mail", "Email (work)": one column mentioning email is unambiguous.
    loose = [i for i, s in enumerate(squashed) if "email" in s]
    if len(loose) == 1:
        return loose[0]
    if len(loose) > 1:
        names = ", ".join(repr(columns[i]) for i in loose)
        raise InputError(
            f"{source}: several columns could hold the email address ({names}); "
            "choose one with audience.email_column in the campaign or --email-column"
        )
    raise InputError(
        f"{source}: no email column found; the columns are {shown}. Name the address "
        "column 'email', or choose it with audience.email_column in the campaign or "
        "--email-column"
    )
