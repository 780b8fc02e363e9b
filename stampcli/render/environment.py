"""The Jinja environment a campaign's templates are compiled in.

One sandboxed environment per campaign (:mod:`stampcli.sandbox`: immutable,
so a render cannot change the campaign's ``variables:`` for the next
recipient, and with limits on output size, loops and time): the template's folder (and the
layout's, for Markdown) is the only search path, so ``include``/``extends``/
``import`` work but nothing outside those folders can be read; an undefined
variable raises when it is output (``{{ missing }}``) instead of printing
nothing, but is false in a test (``{% if item.image %}``, ``or``), as Jinja
users expect; ``is defined`` and ``default`` see it as undefined; HTML and Markdown templates are
autoescaped, text templates (subject, headers, ``.txt``) are not.

A few filters people expect from newsletter tools are added: ``date`` (format
a date, datetime or ISO string), ``default`` that also treats empty CSV cells
as missing, ``number`` (thousands separators) and ``initial``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    Undefined,
    select_autoescape,
)

from stampcli import paths
from stampcli.sandbox import Budget, LimitedSandbox

# Extensions whose templates are autoescaped. Markdown is rendered with escaping
# so that subscriber data cannot inject HTML through the Markdown converter.
AUTOESCAPE_EXTENSIONS = (
    "html", "htm", "xml", "md", "markdown",
    "html.j2", "html.jinja", "htm.j2", "md.j2", "md.jinja",
)  # fmt: skip

BUILTIN_LAYOUT_NAME = "__stamp_layout__.html"

# The built-in layout a Markdown template is rendered into when the campaign
# names none: one centred column, readable type, the unsubscribe link in the footer.
BUILTIN_LAYOUT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title>
<style>
body { margin: 0; padding: 0; background: #f4f4f7; }
.wrapper { width: 100%; background: #f4f4f7; padding: 24px 0; }
.content { max-width: 600px; margin: 0 auto; background: #ffffff; padding: 32px;
  font-family: Helvetica, Arial, sans-serif; font-size: 16px; line-height: 1.5; color: #333333; }
h1, h2, h3 { color: #111111; line-height: 1.25; }
a { color: #1a5fb4; }
img { max-width: 100%; height: auto; }
.footer { max-width: 600px; margin: 0 auto; padding: 16px 32px; color: #777777;
  font-family: Helvetica, Arial, sans-serif; font-size: 12px; line-height: 1.5; }
@media (max-width: 620px) { .content { padding: 16px; } }
</style>
</head>
<body>
<div class="wrapper">
<div class="content">
{{ content }}
</div>
{% if unsubscribe_url is defined %}
<div class="footer">
<p>You receive this email because you subscribed to {{ campaign }}.
<a href="{{ unsubscribe_url }}">Unsubscribe</a> at any time.</p>
</div>
{% endif %}
</div>
</body>
</html>
"""

_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y", "%m/%d/%Y")


def _to_datetime(value: Any) -> dt.date | dt.datetime:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    text = str(value).strip()
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (use YYYY-MM-DD or an ISO 8601 timestamp)")


def filter_date(value: Any, fmt: str = "%B %-d, %Y") -> str:
    """``{{ signup_date | date('%d %B %Y') }}``; an empty value stays empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    when = _to_datetime(value)
    # "%-d" (day without zero padding) is glibc-only; spell it out portably.
    fmt = fmt.replace("%-d", str(when.day)).replace("%-m", str(when.month))
    return when.strftime(fmt)


def filter_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default``, but an empty CSV cell (None or blank text) also counts as missing."""
    if isinstance(value, Undefined):
        return default_value
    if value is None or (isinstance(value, str) and not value.strip()):
        return default_value
    if boolean and not value:
        return default_value
    return value


def filter_number(value: Any, decimals: int = 0, sep: str = ",") -> str:
    """``{{ points | number }}`` -> ``12,345``."""
    try:
        num = float(value)
    except (TypeError, ValueError):
        return str(value)
    text = f"{num:,.{decimals}f}"
    return text.replace(",", sep) if sep != "," else text


def filter_initial(value: Any) -> str:
    """The first letter, upper case: ``{{ first_name | initial }}.``"""
    text = str(value).strip()
    return text[:1].upper()


FILTERS: dict[str, Callable[..., Any]] = {
    "date": filter_date,
    "default": filter_default,
    "d": filter_default,
    "number": filter_number,
    "initial": filter_initial,
}


_WS = re.compile(r"\s+")


class TestableUndefined(StrictUndefined):
    """StrictUndefined for output, false in a test.

    ``{{ missing }}``, ``missing ~ 'x'``, ``missing.attr`` and loops over it still
    raise (a typo must not send an empty greeting to everyone), but
    ``{% if item.image %}`` and ``nickname or first_name`` treat a missing name or
    attribute as false, as plain Jinja does, instead of failing every recipient.
    """

    __slots__ = ()

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


class FolderLoader(FileSystemLoader):
    """A FileSystemLoader that also refuses a symlink leading out of its folders."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not paths.inside(filename, self.searchpath):
            raise TemplateNotFound(template, f"{template!r} leads outside the template folder")
        return source, filename, uptodate


class _Environment(LimitedSandbox):
    """stamp's sandbox, with each template's globals flattened into a plain dict.

    Jinja keeps a template's globals as a ChainMap over the environment's, and
    copies them into a new dict (and a set of their names) on every render:
    iterating a ChainMap is slow Python, about a tenth of rendering a whole
    newsletter. Nothing here changes globals after templates are loaded.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


def build_environment(
    search_path: Sequence[Path],
    *,
    autoescape: bool | None = None,
    finalize: Callable[[Any], Any] | None = None,
    budget: Budget | None = None,
) -> LimitedSandbox:
    """A sandboxed environment whose loader sees only ``search_path``.

    ``autoescape=None`` chooses by file extension (HTML and Markdown escaped);
    ``True``/``False`` force it (subject and header templates are plain text).
    ``finalize`` is Jinja's hook on every ``{{ }}`` output value. ``budget``: the
    limits renders in this environment run under (:mod:`stampcli.sandbox`).
    """
    loaders: list[BaseLoader] = [FolderLoader([str(p) for p in search_path])]
    loaders.append(DictLoader({BUILTIN_LAYOUT_NAME: BUILTIN_LAYOUT}))
    auto: Any
    if autoescape is None:
        auto = select_autoescape(
            enabled_extensions=AUTOESCAPE_EXTENSIONS,
            default_for_string=True,
            default=False,
        )
    else:
        auto = autoescape
    kwargs: dict[str, Any] = {}
    if finalize is not None:
        kwargs["finalize"] = finalize
    env = _Environment(
        loader=ChoiceLoader(loaders),
        undefined=TestableUndefined,
        autoescape=auto,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=-1,
        budget=budget,
        **kwargs,
    )
    env.filters.update(FILTERS)
    return env


def collapse_whitespace(text: str) -> str:
    """Header templates may span lines in YAML; one space between words."""
    return _WS.sub(" ", text).strip()
