"""Template errors name the file and line and suggest the nearest existing name."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import renderer

from stampcli.errors import StampError, TemplateError
from stampcli.render.checks import failure
from stampcli.render.renderer import MissingVariable

UNSUB = "<a href='{{ unsubscribe_url }}'>unsubscribe</a>"
VARIABLES = {"items": [{"summary": "Shared workspaces", "title": "News"}], "company": "ACME"}


def _error(tmp_path: Path, template: str, files: dict[str, str | bytes]) -> StampError:
    r = renderer(tmp_path / "c", template=template + UNSUB, files=files, variables=VARIABLES)
    with pytest.raises(StampError) as info:
        r.render("ada@example.com", "ada@example.com", {"first_name": "Ada"})
    return info.value


def test_undefined_name_in_an_include_names_that_file_and_line(tmp_path: Path) -> None:
    exc = _error(
        tmp_path,
        "<p>Hello</p>\n{% include 'parts/intro.html' %}",
        {"parts/intro.html": "<p>one</p>\n<p>two</p>\n<p>{{ frist_name }}</p>"},
    )
    assert isinstance(exc, MissingVariable)
    message = failure(exc).message
    assert message.startswith(f"{tmp_path / 'c' / 'parts' / 'intro.html'}:3: ")
    assert "did you mean 'first_name'?" in message
    assert "variables:;" not in message and "variables:)" not in message


def test_undefined_attribute_in_a_macro_suggests_the_key_the_data_has(tmp_path: Path) -> None:
    exc = _error(
        tmp_path,
        "{% from 'macros.html' import card %}\n{{ card(items[0]) }}",
        {"macros.html": "{% macro card(it) %}\n<h2>{{ it.title }}</h2>\n<p>{{ it.sumary }}</p>"
         "{% endmacro %}"},
    )  # fmt: skip
    assert isinstance(exc, MissingVariable) and exc.attribute
    message = failure(exc).message
    assert message.startswith(f"{tmp_path / 'c' / 'macros.html'}:3: missing attribute 'sumary'")
    assert "did you mean 'summary'?" in message
    assert "did you mean 'summary'?" in str(exc)


def test_undefined_name_suggests_a_campaign_variable(tmp_path: Path) -> None:
    exc = _error(tmp_path, "<p>{{ compnay }}</p>", {})
    assert isinstance(exc, MissingVariable)
    assert f"{tmp_path / 'c' / 't.html'}:1:" in str(exc)
    assert "did you mean 'company'?" in failure(exc).message


def test_far_off_names_get_no_suggestion(tmp_path: Path) -> None:
    exc = _error(tmp_path, "<p>{{ zzqx }}</p>", {})
    assert "did you mean" not in str(exc)
    assert "the columns are: first_name" in failure(exc).message


def test_missing_include_says_it_does_not_exist_and_suggests_the_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        renderer(
            tmp_path / "c",
            template="<p>x</p>\n{% include 'fotter.html' %}" + UNSUB,
            files={"footer.html": "<p>footer</p>"},
        ).render("ada@example.com", "ada@example.com", {"first_name": "Ada"})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c' / 't.html'}:2: ")
    assert "'fotter.html', which does not exist" in message
    assert "did you mean 'footer.html'?" in message
    assert "own folder" not in message


def test_missing_include_of_an_include_names_the_including_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        renderer(
            tmp_path / "c",
            template="{% include 'a.html' %}" + UNSUB,
            files={"a.html": "<p>a</p>\n\n{% include 'b.htm' %}", "b.html": "b"},
        ).render("ada@example.com", "ada@example.com", {"first_name": "Ada"})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c' / 'a.html'}:3: ")
    assert "did you mean 'b.html'?" in message


def test_an_include_outside_the_folder_is_still_refused_as_such(tmp_path: Path) -> None:
    (tmp_path / "secret.html").write_text("secret")
    with pytest.raises(TemplateError, match="outside the template folder"):
        renderer(tmp_path / "c", template="{% include '../secret.html' %}" + UNSUB)
