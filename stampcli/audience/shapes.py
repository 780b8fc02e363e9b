"""Cells that hold structure: JSON-object columns become nested fields, a tags column a list.

A listmonk export keeps custom fields in an ``attributes`` column holding a
JSON object (``{"city": "Berlin", "plan": {"tier": 2}}``); a Mailchimp export
keeps tags in a ``TAGS`` column as a quoted comma list (``"VIP","Customer"``).
Left as text, neither can be used: ``attributes.city`` is undefined and
``'VIP' in tags`` also matches ``VIP Gold``. :class:`Shaper` turns them into
what they mean, once per row, before a contact is made (so segments,
templates and the store all see the same nested fields):

* a column is a JSON column when every non-empty value among the first
  :data:`SAMPLE_ROWS` data rows starts with ``{`` and the first one parses as
  an object; only those columns are ever parsed, so an ordinary list pays
  nothing. In a JSON column an empty cell is ``{}``, and a cell that is not a
  JSON object is a problem with the row (it goes to the rejects file);
* the column whose name is ``tags`` (any case) becomes a list of trimmed,
  non-empty tags, read as one CSV record: ``"VIP","Customer"`` and
  ``VIP, Customer`` both give ``["VIP", "Customer"]``.

:func:`tag_list` reads a tags value that is still text (a list imported
before this existed), for ``has_tag()`` in segments.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any

from stampcli.audience.columns import field_id

SAMPLE_ROWS = 20  # data rows looked at to decide which columns hold JSON
TAGS_ID = "tags"


def tag_list(value: Any) -> list[str]:
    """The tags in ``value``: a list as stored, or text like ``"VIP","Customer"``."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        cells = next(csv.reader([value], skipinitialspace=True), [])
    except csv.Error:
        cells = value.split(",")
    return [t for t in (c.strip() for c in cells) if t]


class Shaper:
    """Which columns of a file hold JSON objects or tags, and how to read one row's."""

    def __init__(self, json_columns: Sequence[str], tags_column: str | None) -> None:
        self.json_columns = tuple(json_columns)
        self.tags_column = tags_column

    @classmethod
    def decide(cls, columns: Sequence[str], sample: Iterable[dict[str, Any]]) -> Shaper | None:
        """The shaper for a file whose first data rows are ``sample``; None if nothing to do."""
        rows = list(sample)
        tags = next((c for c in columns if field_id(c) == TAGS_ID), None)
        found = []
        for column in columns:
            if column == tags:
                continue
            values = [v for r in rows if (v := r.get(column))]
            if not values or not all(v.startswith("{") for v in values):
                continue
            try:
                first = json.loads(values[0])
            except (ValueError, RecursionError):
                continue
            if isinstance(first, dict):
                found.append(column)
        if not found and tags is None:
            return None
        return cls(found, tags)

    def apply(self, fields: dict[str, Any]) -> str | None:
        """Replace the row's JSON and tags cells by their values; a problem (no change) or None."""
        parsed: dict[str, Any] = {}
        for column in self.json_columns:
            text = fields[column]
            if not text:
                parsed[column] = {}
                continue
            try:
                value = json.loads(text) if text.startswith("{") else None
            except (ValueError, RecursionError) as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                return f"column {column!r} holds JSON objects, but this cell is broken ({why})"
            if not isinstance(value, dict):
                return (
                    f"column {column!r} holds JSON objects, but this cell is not one: {text[:40]!r}"
                )
            parsed[column] = value
        fields.update(parsed)
        if self.tags_column is not None:
            fields[self.tags_column] = tag_list(fields[self.tags_column])
        return None
