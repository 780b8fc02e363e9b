"""A missing name or attribute is false in a test but still an error when output."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import ENV, campaign

from stampcli.render.renderer import MissingVariable, Renderer

TESTS = """<html><body>
<p>Hi {{ nickname or first_name }},</p>
{% for item in items %}{% if item.image %}<img src="{{ item.image }}" alt="{{ item.title }}">
{% endif %}<p>{{ item.title }}{% if item.note is defined %} ({{ item.note }}){% endif %}</p>
{% endfor %}{% if vip %}<p>Thanks for being a VIP.</p>{% endif %}
{% if not city %}<p>Tell us where you live.</p>{% endif %}
<p>{{ company | default('your team') }}</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""

ITEMS = [
    {"title": "Workspaces", "image": "https://acme.example/w.png", "note": "new"},
    {"title": "Exports"},
]


def _renderers(tmp_path: Path, template: str) -> tuple[Renderer, Renderer]:
    c = campaign(tmp_path, template=template, variables={"items": ITEMS})
    return (
        Renderer(c, env=ENV, clock=lambda: 1.0),
        Renderer(c, env=ENV, clock=lambda: 1.0, fast=False),
    )


def test_missing_name_or_attribute_is_false_in_tests(tmp_path: Path) -> None:
    fast, slow = _renderers(tmp_path, TESTS)
    for _ in range(3):  # the fast path's first renders are checked against the slow one
        m = fast.render("ada@example.com", "ada@example.com", {"first_name": "Ada"})
        assert (
            m.html == slow.render("ada@example.com", "ada@example.com", {"first_name": "Ada"}).html
        )
    assert "Hi Ada," in m.html
    assert m.html.count("<img") == 1 and "Workspaces (new)" in m.html
    assert "<p>Exports</p>" in m.html
    assert "VIP" not in m.html and "Tell us where you live." in m.html
    assert "your team" in m.html
    m = fast.render(
        "bo@example.com",
        "bo@example.com",
        {"first_name": "Bo", "nickname": "Bobby", "vip": "yes", "city": "Oslo"},
    )
    assert "Hi Bobby," in m.html and "VIP" in m.html and "Tell us" not in m.html


@pytest.mark.parametrize(
    "output",
    ["{{ missing }}", "{{ items[1].image }}", "{{ missing ~ 'x' }}", "{{ missing.attr }}",
     "{% for x in missing %}{% endfor %}", "{% if missing.attr %}{% endif %}"],
)  # fmt: skip
def test_outputs_stay_strict(tmp_path: Path, output: str) -> None:
    fast, slow = _renderers(tmp_path, f"<p>{output}</p>" + '<a href="{{ unsubscribe_url }}">u</a>')
    for r in (fast, slow):
        with pytest.raises(MissingVariable):
            r.render("ada@example.com", "ada@example.com", {"first_name": "Ada"})


def test_subject_test_of_missing_column(tmp_path: Path) -> None:
    c = campaign(
        tmp_path,
        template='<p>News</p><a href="{{ unsubscribe_url }}">u</a>',
        subject="{% if first_name %}{{ first_name }}, {% endif %}our news",
    )
    r = Renderer(c, env=ENV)
    assert r.render("a@example.com", "a@example.com", {"first_name": "Ada"}).subject == (
        "Ada, our news"
    )
    assert r.render("b@example.com", "b@example.com", {}).subject == "our news"
