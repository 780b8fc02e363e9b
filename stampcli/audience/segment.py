"""Segment expressions (``country == 'DE' and plan in ['pro', 'team']``): compile once, run often.

An expression is Jinja expression syntax, compiled once in stamp's sandbox
(:mod:`stampcli.sandbox`: Jinja's ``ImmutableSandboxedEnvironment``, no
attribute access to internals, no mutation, the templates' limits on ``*``,
``**`` and ``range``), so a campaign file cannot run arbitrary code. A syntax
error is a :class:`ConfigError` naming the expression and, where it can be
found, the column of the fault.

Names in an expression:

* every column, by its header name lower-cased with each run of characters
  other than letters, digits and ``_`` turned into ``_``: the column headed
  ``First Name`` is ``first_name``. Names are matched ignoring case, so
  ``Country``, ``country`` and ``COUNTRY`` all read the column ``Country``;
* ``email`` (the normalised address) and ``domain`` (its domain, lower case,
  IDNA-encoded) always come from the contact, even if a column has that name;
* ``added_at``: when the contact was first imported (ISO 8601, UTC) for an
  imported list, a column of that name if there is one, else ``None``;
* ``has_tag('VIP')``: whether the contact's ``tags`` column holds the tag
  ``VIP`` (one whole tag, ignoring case: not ``VIP Gold``);
* activity, from the store's delivery events and imported lists
  (:mod:`stampcli.audience.activity`, each question one SQL aggregate):
  ``opened_within(30)`` and ``clicked_within(30)`` (an open or click in the
  last 30 days), ``never_opened`` (no open or click recorded ever),
  ``bounced_soft_count`` (soft bounces since the latest delivery) and
  ``added_within(7)`` (first imported in the last 7 days).

Values are text, as the sources give them (compare numbers with a filter,
``seats | int > 5``), except what :mod:`stampcli.audience.shapes` reads: a
JSON-object column is a nested mapping (``attributes.city == 'Berlin'``; a
key it lacks is ``None``) and the tags column a list. A contact the
expression cannot evaluate (an unknown name, a type error) raises
:class:`SegmentEvalError`; the audience reader excludes it and counts it
rather than stopping.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.parser import Parser

from stampcli.audience.activity import ACTIVITY_NAMES, Activity
from stampcli.audience.columns import field_id
from stampcli.audience.shapes import TAGS_ID, tag_list
from stampcli.errors import ConfigError, InputError
from stampcli.records import Contact
from stampcli.sandbox import LimitedSandbox

BUILTINS = ("email", "domain", "added_at", "has_tag", *ACTIVITY_NAMES)
# never a column, even one of that name
_ALWAYS_BUILTIN = ("email", "domain", "has_tag", *ACTIVITY_NAMES)


class SegmentEvalError(InputError):
    """The segment expression failed for one contact (caught and counted by the reader)."""


class _SegmentSandbox(LimitedSandbox):
    """A key a nested mapping lacks is None: a JSON column's objects differ from row to row.

    ``attributes.city == 'Berlin'`` is then simply false for a subscriber without
    a city, not an error; names at the top are still checked (:meth:`check_columns`).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        value = super().getattr(obj, attribute)
        return None if isinstance(value, Undefined) and isinstance(obj, Mapping) else value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        return None if isinstance(value, Undefined) and isinstance(obj, Mapping) else value


# the limits on '*', '**', range() and the rest are the templates' (stampcli.sandbox)
_ENV = _SegmentSandbox(undefined=StrictUndefined, autoescape=False)


class Segment:
    """A compiled segment expression; :meth:`matches` says whether a contact is in it.

    One instance reuses one Jinja context, so use it from one thread at a time.
    """

    def __init__(self, expr: str, template: Template, names: frozenset[str]) -> None:
        self.expr = expr
        # One context, reused with a fresh variable dict per contact: building a Jinja
        # context per call (as TemplateExpression does) costs more than the evaluation.
        self._globals = dict(template.globals)
        self._context = template.new_context({}, shared=True)
        self._root = template.root_render_func
        self.written = names  # the names the expression reads, as written
        self.names = frozenset(n.lower() for n in names)  # the same, lower-cased
        self._columns: dict[tuple[str, ...], dict[str, str | None]] = {}
        self._tags: dict[tuple[str, ...], str | None] = {}  # field names -> the tags column
        self.activity: Activity | None = None  # set by the audience reader (bind_activity)

    @property
    def reads_activity(self) -> bool:
        """The expression uses an activity name (opened_within, never_opened, ...)."""
        return any(n in ACTIVITY_NAMES for n in self.names)

    def bind_activity(self, activity: Activity) -> None:
        self.activity = activity

    def unknown_names(self, columns: Iterable[str]) -> list[str]:
        """Names the expression reads that are neither a column among ``columns`` nor built in."""
        known = {field_id(c) for c in columns} | set(BUILTINS)
        return sorted(n for n in self.names if n not in known)

    def check_columns(self, columns: Iterable[str], source: str) -> None:
        """:class:`ConfigError` if the expression names a column ``source`` does not have."""
        columns = list(columns)
        unknown = self.unknown_names(columns)
        if "has_tag" in self.names and not any(field_id(c) == TAGS_ID for c in columns):
            raise ConfigError(
                f"segment {self.expr!r} uses has_tag(), but {source} has no tags column"
            )
        if unknown:
            import difflib

            ids = [field_id(c) for c in columns]
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, [*ids, *BUILTINS], n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            shown = ", ".join(ids) or "(none)"
            raise ConfigError(
                f"segment {self.expr!r} uses {', '.join(hints)}, which is not a column of "
                f"{source}; the columns are: {shown} (and built in: {', '.join(BUILTINS)})"
            )

    def matches(self, contact: Contact) -> bool:
        """True if ``contact`` is in the segment; :class:`SegmentEvalError` if it cannot say."""
        fields = contact.fields
        keys = tuple(fields)
        lookup = self._columns.get(keys)
        if lookup is None:
            lookup = self._lookup(keys)
        ctx = self._globals.copy()
        for name, column in lookup.items():
            if column is not None:
                ctx[name] = fields[column]
            else:
                low = name.lower()
                if low == "email":
                    ctx[name] = contact.email
                elif low == "domain":
                    ctx[name] = contact.domain
                elif low == "added_at":
                    ctx[name] = None
                elif low == "has_tag":
                    ctx[name] = self._has_tag(fields, keys)
                elif low in ACTIVITY_NAMES:
                    ctx[name] = self._activity(low, contact.key)
        context = self._context
        context.parent = ctx
        context.vars.clear()
        try:
            for _ in self._root(context):
                pass
            return bool(context.vars["result"])
        except Exception as exc:
            raise SegmentEvalError(
                f"row {contact.row} ({contact.email}): segment {self.expr!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _lookup(self, keys: tuple[str, ...]) -> dict[str, str | None]:
        by_id: dict[str, str] = {}
        for key in keys:
            by_id.setdefault(field_id(key), key)
        lookup = {
            n: None if n.lower() in _ALWAYS_BUILTIN else by_id.get(n.lower()) for n in self.written
        }
        if len(self._columns) < 64:  # a few shapes per audience; never grow without bound
            self._columns[keys] = lookup
        return lookup

    def _activity(self, name: str, key: str) -> Any:
        activity = self.activity
        if activity is None:
            raise SegmentEvalError(f"segment {self.expr!r}: {name} needs the store's events")
        if name == "never_opened":
            return activity.never_opened(key)
        if name == "bounced_soft_count":
            return activity.bounced_soft_count(key)
        method = getattr(activity, name)

        def within(days: object) -> bool:
            return bool(method(key, days))

        return within

    def _has_tag(self, fields: dict[str, Any], keys: tuple[str, ...]) -> Callable[[str], bool]:
        if keys in self._tags:
            column = self._tags[keys]
        else:
            column = next((k for k in keys if field_id(k) == TAGS_ID), None)
            if len(self._tags) < 64:
                self._tags[keys] = column
        tags = {t.casefold() for t in tag_list(fields[column])} if column is not None else set()

        def has_tag(tag: object) -> bool:
            return str(tag).strip().casefold() in tags

        return has_tag


def compile_segment(expr: str) -> Segment:
    """Compile ``expr`` once; :class:`ConfigError` naming the expression and the fault's column."""
    text = expr.strip()
    if not text:
        raise ConfigError("audience.segment is empty; remove it or write an expression")
    try:
        parser = Parser(_ENV, text, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            tok = parser.stream.current
            raise TemplateSyntaxError(
                f"unexpected {tok.value!r} after the end of the expression", tok.lineno
            )
        tree = nodes.Template([nodes.Output([node])])
        tree.set_environment(_ENV)
        names = meta.find_undeclared_variables(tree)
    except TemplateSyntaxError as exc:
        raise ConfigError(_syntax_message(text, exc)) from None
    # What Environment.compile_expression builds: the expression assigned to "result".
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), node)], lineno=1)
    try:
        template = _ENV.from_string(body)
    except TemplateSyntaxError as exc:
        raise ConfigError(_syntax_message(text, exc)) from None
    return Segment(text, template, frozenset(names))


def _syntax_message(text: str, exc: TemplateSyntaxError) -> str:
    message = (exc.message or "syntax error").rstrip(".")
    message = message.replace("'end of template'", "end of expression")
    message = message.replace("end of template", "end of expression")
    if "unexpected '='" in message:
        message += " (compare with ==)"
    col: int | None = None
    if "end of expression" in message:
        col = len(text) + 1
    else:
        # Jinja gives only a line; Python's parser, for this shared syntax, gives the column.
        try:
            ast.parse(text, mode="eval")
        except SyntaxError as py:
            if py.lineno == 1 and py.offset is not None and 1 <= py.offset <= len(text) + 1:
                col = py.offset
    where = f" at column {col}:\n    {text}\n    {' ' * (col - 1)}^" if col else ""
    return f"segment {text!r} is not a valid expression: {message}{where}"
