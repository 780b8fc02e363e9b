"""Templates of only text and ``{{ name }}`` outputs, rendered without running Jinja.

Most mail-merge templates are text with the recipient's fields put in:
``Hello {{ first_name }}``, or ``{{ plan | default("free") }}``, and no tags,
other filters or attribute lookups. For such a template Jinja's compiled code
yields each run of text and, for each output, ``escape(finalize(value))``
(``str(...)`` where it does not autoescape). For a value of a plain type (str,
int, float, bool, None) that is the escaped ``str(value)``, which is what this
module computes, without the generator, the context object and the two Markup
objects a value costs there. For the body, whose outputs the fast path marks
(:func:`stampcli.render.skeleton_cache.mark`), that was over a quarter of a render
worker's instructions a message (632k -> ~455k, ``benchmarks/render_instructions.py``).

Anything else (a name the recipient lacks, a value of another type, a
marker character) gets None, and the caller renders with Jinja, which gives
its own answer or raises its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from markupsafe import escape

from stampcli.render.environment import filter_default
from stampcli.render.skeleton_cache import MARK_CLOSE, MARK_OPEN, Layout


@dataclass(frozen=True, slots=True)
class Slot:
    """One output: ``{{ name }}``, or ``{{ name | default("text") }}`` with ``default``."""

    name: str
    default: str | None = None


# a run of the template's text, or an output
Piece = str | Slot

# the types whose ``f"{value}"`` is ``str(value)`` and that have no ``__html__``
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
MISSING: Any = object()


def simple_pieces(ast: nodes.Template, filters: Mapping[str, Any]) -> tuple[Piece, ...] | None:
    """The pieces of a template of only text and outputs :class:`Slot` covers, else None.

    ``filters`` is the environment's: ``default`` is recognised only where it is
    stamp's :func:`filter_default`.
    """
    pieces: list[Piece] = []
    for stmt in ast.body:
        if not isinstance(stmt, nodes.Output):
            return None
        for node in stmt.nodes:
            if type(node) is nodes.TemplateData:
                pieces.append(node.data)
                continue
            slot = _slot(node, filters)
            if slot is None:
                return None
            pieces.append(slot)
    return tuple(pieces)


def _slot(node: nodes.Node, filters: Mapping[str, Any]) -> Slot | None:
    if type(node) is nodes.Name and node.ctx == "load":
        return Slot(node.name)
    if (
        type(node) is nodes.Filter
        and filters.get(node.name) is filter_default
        and type(node.node) is nodes.Name
        and node.node.ctx == "load"
        and len(node.args) == 1
        and type(node.args[0]) is nodes.Const
        and type(node.args[0].value) is str
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return Slot(node.node.name, node.args[0].value)
    return None


def lookup(ctx: Mapping[str, Any], slot: Slot, globals_: Container[str]) -> Any:
    """What ``slot`` outputs for ``ctx`` before conversion to text; MISSING: ask Jinja.

    ``globals_``: the template's globals, where Jinja looks up a name ``ctx`` lacks.
    """
    value = ctx.get(slot.name, MISSING)
    if slot.default is None:
        return value
    if value is MISSING:
        return MISSING if slot.name in globals_ else slot.default
    return filter_default(value, slot.default)


class MarkedBody:
    """What :func:`stampcli.render.skeleton_cache.parse_pieces` makes of a plain body's
    marked render (its layout and values), computed from the context directly."""

    @classmethod
    def of(
        cls, pieces: tuple[Piece, ...] | None, *, autoescape: bool, globals_: Container[str]
    ) -> MarkedBody | None:
        """None where the fast path would not take the template's renders either: not
        straight-line, or marker characters in its own text (see ``parse_pieces``)."""
        if pieces is None or any(
            type(p) is str and (MARK_OPEN in p or MARK_CLOSE in p) for p in pieces
        ):
            return None
        return cls(pieces, autoescape=autoescape, globals_=globals_)

    def __init__(
        self, pieces: tuple[Piece, ...], *, autoescape: bool, globals_: Container[str]
    ) -> None:
        self.layout: Layout = tuple(p if type(p) is str else None for p in pieces if p != "")
        self.slots = tuple(p for p in pieces if isinstance(p, Slot))
        self._globals = globals_
        self._text: Callable[[Any], str] = _escaped if autoescape else str

    def parse(self, ctx: Mapping[str, Any]) -> tuple[Layout, list[str]] | None:
        """The layout and the values for ``ctx``; None: render with Jinja instead."""
        text = self._text
        values: list[str] = []
        for slot in self.slots:
            value = lookup(ctx, slot, self._globals)
            if type(value) not in _PLAIN_TYPES:  # MISSING too
                return None
            out = text(value)
            if MARK_OPEN in out or MARK_CLOSE in out:
                return None
            values.append(out)
        return self.layout, values


def _escaped(value: Any) -> str:
    """markupsafe's ``escape(value)`` (Jinja's) as a plain str.

    Most values hold nothing to escape: five ``in`` tests cost a sixth of making the
    Markup. A plain str, not Markup: the fast path's unescape and replace would treat
    a Markup's arguments as text to escape.
    """
    text = value if type(value) is str else str(value)
    if "&" in text or "<" in text or ">" in text or "'" in text or '"' in text:
        return str(escape(text))
    return text
