"""Straight-line templates read without Jinja give exactly what Jinja's render gives.

``stampcli.render.plain_templates`` computes a template's outputs itself where the
template is only text and ``{{ name }}`` / ``{{ name | default("...") }}``;
everything here is checked against Jinja rendering the same template in the
same environment, over values chosen to hit escaping, blanks, types and
missing names.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from markupsafe import Markup
from render_helpers import ENV, EXAMPLES, example, renderer
from test_render_differential import TRICKY

from stampcli.render import skeleton_cache
from stampcli.render.environment import build_environment
from stampcli.render.plain_templates import MarkedBody, Slot, simple_pieces
from stampcli.render.renderer import Renderer

STRAIGHT = (
    '<p class="x">Hi {{ first_name }}{{ last_name }}, plan {{ plan | default("free & co") }}'
    "</p>\n<p>{{ score }} / {{ nickname | d('you') }} &middot; {{ email }}</p>\n"
)

VALUES: list[Any] = [*TRICKY, 0, 435, -1.5, 1e21, True, False, None, "   ", "\ue000x\ue001"]


def _marked(tmp_path: Path, template: str, name: str = "t.html") -> tuple[Any, MarkedBody | None]:
    (tmp_path / name).write_text(template, encoding="utf-8")
    env = build_environment([tmp_path], finalize=skeleton_cache.mark)
    compiled = env.get_template(name)
    from jinja2.nodes import EvalContext

    body = MarkedBody.of(
        simple_pieces(env.parse(template), env.filters),
        autoescape=EvalContext(env, name).autoescape,
        globals_=compiled.globals,
    )
    return compiled, body


def _contexts() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(itertools.product(VALUES, VALUES[::3])):
        ctx: dict[str, Any] = {"first_name": a, "last_name": b, "score": i, "email": "a@x.example"}
        if i % 3:
            ctx["plan"] = b
        if i % 4 == 1:
            ctx["nickname"] = a
        out.append(ctx)
    return out


OTHER_STRAIGHT = [
    # comments, whitespace control, a raw block, no trailing newline, outputs side by side
    "{# note #}<p>\n  {{- first_name -}}  \n</p>{% raw %}{{ not_a_name }}{% endraw %}"
    "{{ score }}{{ email }}",
    "{{ first_name }}",
    "\n\n{{ last_name | default('') }}\n\n",
]


@pytest.mark.parametrize(
    ("template", "name"),
    [(STRAIGHT, "t.html"), (STRAIGHT, "t.j2")]  # autoescaped, and not
    + [(t, "t.html") for t in OTHER_STRAIGHT],
)
def test_layout_and_values_are_those_of_jinjas_marked_render(
    tmp_path: Path, template: str, name: str
) -> None:
    compiled, body = _marked(tmp_path, template, name)
    assert body is not None
    taken = 0
    for ctx in _contexts():
        mine = body.parse(ctx)
        theirs = skeleton_cache.parse_pieces(compiled.generate(ctx))
        if mine is None:
            # only where a value holds a marker character: Jinja's render is refused too
            assert theirs is None, ctx
            continue
        taken += 1
        assert theirs is not None, ctx
        assert skeleton_cache._statics(mine[0]) == skeleton_cache._statics(theirs[0])
        assert mine[1] == theirs[1], ctx
        assert all(type(v) is str for v in mine[1])
    assert taken > len(_contexts()) * 0.8


def test_what_is_left_to_jinja(tmp_path: Path) -> None:
    _, body = _marked(tmp_path, "{{ a }}-{{ b | default('x') }}-{{ range }}")
    assert body is not None
    assert body.layout == (None, "-", None, "-", None)
    assert body.parse({"a": "1", "b": "2", "range": "r"}) == (body.layout, ["1", "2", "r"])
    # a name the recipient lacks (Jinja raises, or finds a global), a value of another type
    for ctx in (
        {"b": "2", "range": "r"},
        {"a": "1", "b": "2"},
        {"a": Markup("<b>1</b>"), "b": "2", "range": "r"},
        {"a": ["1"], "b": "2", "range": "r"},
        {"a": {"k": 1}, "b": "2", "range": "r"},
    ):
        assert body.parse(ctx) is None, ctx
    # a default stands in for a missing name, but not for a global of that name
    _, body = _marked(tmp_path, "{{ range | default('x') }}{{ b | default('y') }}")
    assert body is not None and body.parse({}) is None
    _, body = _marked(tmp_path, "{{ b | default('y') }}")
    assert body is not None and body.parse({}) == (body.layout, ["y"])


@pytest.mark.parametrize(
    "template",
    [
        "{% if a %}{{ a }}{% endif %}",
        "{{ a.b }}",
        "{{ a['b'] }}",
        "{{ a | upper }}",
        "{{ a | default(b) }}",
        "{{ a | default('x', true) }}",
        "{{ a | default(boolean=true) }}",
        "{{ a | default(1) }}",
        "{{ 'const' }}",
        "{{ a ~ b }}",
        "{% set x = 1 %}{{ x }}",
        "{% for i in a %}{{ i }}{% endfor %}",
        "{% include 'other.html' %}",
    ],
)
def test_anything_else_is_not_straight_line(tmp_path: Path, template: str) -> None:
    env = build_environment([tmp_path], finalize=skeleton_cache.mark)
    assert simple_pieces(env.parse(template), env.filters) is None


def test_pieces_of_a_straight_template(tmp_path: Path) -> None:
    env = build_environment([tmp_path])
    pieces = simple_pieces(env.parse("Hi {{ a }}{{ b | d('x') }}!"), env.filters)
    assert pieces == ("Hi ", Slot("a"), Slot("b", "x"), "!")
    # another filter under the name default is not stamp's: not read here
    env.filters["default"] = lambda value, text: text
    assert simple_pieces(env.parse("{{ b | default('x') }}"), env.filters) is None


def test_marker_characters_in_the_templates_own_text(tmp_path: Path) -> None:
    _, body = _marked(tmp_path, "<p>{{ a }} \ue001</p>")
    assert body is None


@pytest.mark.parametrize(
    "subject",
    [
        "{{ first_name | default('friend') }}, what's new",
        "{{ first_name }} {{ last_name | d('&') }}",
        "News for {{ first_name }}",
    ],
)
def test_header_fields_match_jinja(tmp_path: Path, subject: str) -> None:
    r = renderer(tmp_path / "c", subject=subject)
    assert r._subject.source == subject
    assert r._subject._pieces is not None  # read without Jinja
    template = r._subject.template
    assert template is not None
    for ctx in _contexts():
        try:
            expected = template.render(ctx)
        except Exception as exc:  # the same error must come out
            with pytest.raises(type(exc)):
                r._subject.render(ctx)
            continue
        assert r._subject.render(ctx) == expected, ctx


def test_missing_name_without_default_is_jinjas_error(tmp_path: Path) -> None:
    from stampcli.render.renderer import MissingVariable

    r = renderer(tmp_path / "c", template="<p>{{ first_name }} {{ nope }}</p>\n")
    assert r._plain_body is not None
    with pytest.raises(MissingVariable, match="'nope' is not defined"):
        r.render("a@x.example", "a@x.example", {"first_name": "Ada"})


def test_the_example_newsletter_takes_it(tmp_path: Path) -> None:
    """templates/newsletter.html uses ``| default("free")``: read without Jinja, and the
    messages are those of the straightforward pipeline (test_render_differential)."""
    c = example("newsletter.yml", tmp_path)
    assert (EXAMPLES / "newsletter.yml").exists()
    fast = Renderer(c, env=ENV, clock=lambda: 1e9)
    assert fast._plain_body is not None
    slow = Renderer(c, env=ENV, clock=lambda: 1e9, fast=False)
    for i, plan in enumerate(["pro", "", "  ", "Team & Co", "<b>x</b>"]):
        key = f"r{i}@example.com"
        row = {"first_name": "Ada", "plan": plan}
        assert fast.render(key, key, row) == slow.render(key, key, row), plan
    assert fast.stats.fast >= 3
