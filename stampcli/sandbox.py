"""The Jinja sandbox every template and segment expression of stamp runs in, with its limits.

Jinja's ``ImmutableSandboxedEnvironment`` keeps templates away from Python's
internals and from mutating lists and dicts (so nothing one recipient's render
does is visible in the next one's: campaign ``variables:`` are shared). On top
of that, :class:`LimitedSandbox` bounds what one render may cost, so a template
cannot take the machine down:

* operators: ``x ** y`` with ``y`` over :data:`MAX_POWER`, a ``*`` building a
  string or list longer than :data:`MAX_REPEAT`, ``range()`` longer than
  :data:`MAX_RANGE`; ``+`` and ``~`` building a string longer than the output
  limit, and the filters and methods that take a width (``center``, ``format``,
  ``indent``, ``ljust``, ``replace``, ``join``, ...) likewise;
* output: no template (nor a ``{% set %}`` block or macro inside it) may yield
  more than the :class:`Budget`'s ``limit`` characters; the length is counted
  chunk by chunk as Jinja yields them, so the limit is met before the text is
  joined, not after;
* loops: at most :data:`MAX_LOOP` iterations per render, all loops together
  (a sized iterable is counted when its loop starts, at no cost per item);
* time: a render stops once it has run for the budget's ``seconds`` (checked
  between loop iterations, function calls and output chunks).

A breach raises :class:`LimitExceeded` (a Jinja ``SecurityError``) inside the
template, so the error carries the template's file and line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import Undefined, nodes, pass_context, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, modifies_known_mutable
from jinja2.visitor import NodeTransformer

MAX_POWER = 64  # x ** y beyond this exponent is refused
MAX_REPEAT = 100_000  # longest string or list a '*' may build
MAX_RANGE = 100_000  # longest range() (Jinja's own sandbox default, made explicit)
MAX_LOOP = 1_000_000  # loop iterations in one render, all loops together

DEFAULT_LIMIT = MAX_REPEAT  # output limit of an environment nobody gave a budget
DEFAULT_SECONDS = 10.0

_LOOP_FILTER = "__stamp_loop"
_CONCAT_FILTER = "__stamp_concat"
_OUTPUT_FILTER = "__stamp_output"
_CHECK_EVERY = 1024  # loop iterations between clock readings

# printf widths and precisions ("%0999999d", "%.999999f", "%*d") and format-spec ones
# ("{:>999999}", "{:{width}}") large enough to build a big string from a small one
_WIDE_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d{6,}|\d*\.(?:\*|\d{6,}))")
_WIDE_SPEC = re.compile(r"\{[^{}]*:[^{}]*(?:\d{6,}|\{)")
# str methods whose int argument is the width of the result
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class LimitExceeded(SecurityError):
    """A template went over one of the sandbox's limits."""


class Budget:
    """What the render under way may still spend: output characters and time.

    One budget is shared by the environments of one renderer; the renderer
    :meth:`start`\\ s it for every recipient and sets :attr:`limit` (and
    :attr:`what`, the name the error uses) before each template.
    """

    __slots__ = ("deadline", "limit", "loops", "produced", "seconds", "what")

    def __init__(self, limit: int = DEFAULT_LIMIT, seconds: float = DEFAULT_SECONDS) -> None:
        self.limit = limit
        self.what = "the output"
        self.seconds = seconds
        self.loops = 0
        self.produced = 0  # characters output inside loops ({% set %} blocks included)
        self.deadline = float("inf")  # no clock until a render starts it

    def start(self) -> None:
        """A new render: the clock and the loop count start again."""
        self.loops = 0
        self.produced = 0
        self.deadline = time.monotonic() + self.seconds

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                f"the render took over {self.seconds:g} seconds (limits.seconds); "
                "a template must not loop or recurse that long"
            )

    def too_long(self, size: int | None = None) -> LimitExceeded:
        got = f" ({size:,} characters)" if size is not None else ""
        return LimitExceeded(
            f"{self.what} would be longer than {self.limit:,} characters{got}; "
            "raise the limit under limits: in the campaign if that is meant"
        )

    def check_size(self, size: int) -> None:
        if size > self.limit:
            raise self.too_long(size)


def overflow(parts: Iterable[Any], exc: BaseException) -> None:
    """Raise ``exc`` from inside ``parts`` if it is a template's generator (so the error
    gets the template's file and line), else here."""
    throw: Callable[[BaseException], Any] | None = getattr(parts, "throw", None)
    if throw is not None:
        throw(exc)  # raises exc, now with the template's frames, unless it yields again
    raise exc


class _Guard(NodeTransformer):
    """Routes every ``{% for %}`` through the loop counter, every output inside a loop
    through the output counter, and every ``~`` through the length check (none of them
    has a sandbox hook of its own).

    Outputs in loops are counted where they are made, not only where the template's
    text is joined: a loop inside ``{% set %}...{% endset %}`` collects its output in a
    list that is joined (and checked) only at the end.
    """

    def __init__(self) -> None:
        self.loops = 0
        self.captures = 0

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.loops += 1
        self.generic_visit(node)
        self.loops -= 1
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def _capture(self, node: nodes.Node) -> nodes.Node:
        self.captures += 1
        self.generic_visit(node)
        self.captures -= 1
        return node

    visit_AssignBlock = visit_Macro = visit_CallBlock = visit_FilterBlock = _capture

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        # outside a capture the output streams to the length check as it is made
        if self.loops and self.captures:
            node.nodes = [
                n
                if isinstance(n, nodes.TemplateData)
                else nodes.Filter(n, _OUTPUT_FILTER, [], [], None, None, lineno=n.lineno)
                for n in node.nodes
            ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


def _too_many_loops() -> LimitExceeded:
    return LimitExceeded(
        f"more than {MAX_LOOP:,} loop iterations in one message; loop over less data"
    )


@pass_context
def _loop(context: Context, iterable: Any) -> Any:
    budget: Budget = context.environment.budget  # type: ignore[attr-defined]
    try:
        size = len(iterable)
    except TypeError:  # a generator (``select``, ``map``): counted as it goes
        return _counted(budget, iterable)
    # a list, dict or range: counted at once, iterated as it is (no cost per item)
    budget.loops += size
    if budget.loops > MAX_LOOP:
        raise _too_many_loops()
    budget.check_time()
    return iterable


def _counted(budget: Budget, iterable: Any) -> Iterator[Any]:
    for item in iterable:
        budget.loops += 1
        if not budget.loops % _CHECK_EVERY:
            if budget.loops > MAX_LOOP:
                raise _too_many_loops()
            budget.check_time()
        yield item


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the limits above (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, budget: Budget | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget if budget is not None else Budget()
        self.concat = self._concat  # type: ignore[method-assign]
        self.globals["range"] = self._range
        self.filters[_LOOP_FILTER] = _loop
        budget = self.budget

        @pass_eval_context
        def join_checked(eval_ctx: EvalContext, parts: list[Any]) -> str:
            budget.check_size(sum(len(p) if isinstance(p, str) else len(str(p)) for p in parts))
            return markup_join(parts) if eval_ctx.autoescape else str_join(parts)

        self.filters[_CONCAT_FILTER] = join_checked

        def counted(value: Any) -> Any:
            budget.produced += len(value) if isinstance(value, str) else len(str(value))
            if budget.produced > 2 * budget.limit:
                raise LimitExceeded(
                    f"loops made more than {2 * budget.limit:,} characters of output "
                    f"(twice the limit of {budget.what}, counting {{% set %}} blocks)"
                )
            return value

        self.filters[_OUTPUT_FILTER] = counted
        for name in ("center", "format", "indent", "replace", "join", "wordwrap"):
            self.filters[name] = self._guarded(name, self.filters[name])

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        if modifies_known_mutable(obj, attribute):
            return self.undefined(
                f"{type(obj).__name__}.{attribute}() would change a value every recipient "
                "shares (templates cannot change lists or dicts; build a new one, e.g. "
                "with ~, + or a filter)",
                name=attribute,
                obj=obj,
                exc=SecurityError,
            )
        return super().unsafe_undefined(obj, attribute)

    # -- parsing: loops and '~' get their checks
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        guarded: nodes.Template = _Guard().visit(tree)
        return guarded

    # -- output
    def _concat(self, parts: Iterable[str]) -> str:
        budget = self.budget
        limit = budget.limit
        total = 0
        out: list[str] = []
        for part in parts:
            total += len(part)
            if total > limit:
                overflow(parts, budget.too_long())
            out.append(part)
        budget.check_time()
        return "".join(out)

    # -- operators and calls
    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > MAX_RANGE:
            raise LimitExceeded(f"range() longer than {MAX_RANGE:,}")
        return rng

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER:
                raise LimitExceeded(f"exponent above {MAX_POWER}")
            return left**right
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_REPEAT:
                    raise LimitExceeded(f"'*' would build something longer than {MAX_REPEAT:,}")
            return left * right
        if operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                self.budget.check_size(len(left) + len(right))
            return left + right
        # '%': printf formatting builds strings as wide as its format asks
        if isinstance(left, str):
            self._check_printf(left)
        return left % right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.check_time()
        if isinstance(getattr(__obj, "__self__", None), str):
            name = getattr(__obj, "__name__", "")
            text: str = __obj.__self__
            if name in _WIDTH_METHODS:
                __self._check_widths(args, kwargs)
            elif name == "replace" and len(args) >= 2:
                __self.budget.check_size(_replaced_size(text, args[0], args[1]))
            elif name == "join" and args:
                items = list(args[0])
                size = sum(len(x) for x in items if isinstance(x, str))
                __self.budget.check_size(size + len(text) * len(items))
                args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_SPEC.search(value.__self__):

            def refused(*args: Any, **kwargs: Any) -> str:
                raise LimitExceeded("a format width of a million or more (or a nested one)")

            return refused
        return wrapped

    def _check_printf(self, fmt: str) -> None:
        if _WIDE_PRINTF.search(fmt):
            raise LimitExceeded("a printf width of a million or more (or a '*' width)")

    def _check_widths(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and value > self.budget.limit:
                raise self.budget.too_long(value)

    def _guarded(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """A built-in filter whose arguments are checked against the budget first."""
        budget = self.budget
        check_widths = self._check_widths
        check_printf = self._check_printf

        def guarded(*args: Any, **kwargs: Any) -> Any:
            # eval_ctx (pass_eval_context filters) comes first; the value after it
            offset = 1 if name in ("join", "replace", "wordwrap") else 0
            value, rest = args[offset], args[offset + 1 :]
            if name == "center":
                check_widths(rest, kwargs)
            elif name == "format":
                check_printf(str(value))
            elif name == "indent":
                width = rest[0] if rest else kwargs.get("width", 4)
                size = len(width) if isinstance(width, str) else width
                if isinstance(size, int):
                    budget.check_size(len(str(value)) + (str(value).count("\n") + 1) * size)
            elif name == "replace" and len(rest) >= 2:
                budget.check_size(_replaced_size(str(value), rest[0], rest[1]))
            elif name == "join":
                value = list(value)
                sep = rest[0] if rest else kwargs.get("d", "")
                size = sum(len(str(v)) for v in value) + len(str(sep)) * len(value)
                budget.check_size(size)
                args = (*args[:offset], value, *rest)
            elif name == "wordwrap":
                wrap = kwargs.get("wrapstring") or (rest[2] if len(rest) > 2 else None) or "\n"
                text = str(value)
                budget.check_size(len(text) * (1 + len(str(wrap))))
            return func(*args, **kwargs)

        for attr in ("jinja_pass_arg",):  # keep pass_eval_context/pass_environment
            if hasattr(func, attr):
                setattr(guarded, attr, getattr(func, attr))
        return guarded


def _replaced_size(text: str, old: Any, new: Any) -> int:
    old, new = str(old), str(new)
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * (len(new) - len(old))
