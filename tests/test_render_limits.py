"""Templates cannot leak, blow up or be mistaken: the render layer's safety rules.

* a render cannot change what another recipient's render sees (the immutable
  sandbox: ``variables:`` are shared), and each body is rendered once;
* every template's output, loops, operators and time are bounded
  (``limits:``, :mod:`stampcli.sandbox`), refused with file and line;
* a ``.txt`` template (or ``format: text``) is a text/plain message, checked as text.
"""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import baseline_rss_kb, run_measured
from render_helpers import SECRET, parse, renderer, write_campaign
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.errors import ConfigError, TemplateError
from stampcli.render.renderer import Renderer

UNSUB = "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>\n"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)


def _render(r: Renderer, i: int, **fields: Any) -> Any:
    return r.render(f"u{i}@example.com", f"u{i}@example.com", {"first_name": f"N{i}", **fields})


# --------------------------------------------------------------------------- item 2: no leaks


@pytest.mark.parametrize(
    "statement",
    [
        "{% set _ = items.append(first_name) %}",
        "{% set _ = settings.update({'seen': first_name}) %}",
        "{% set _ = contact.pop('first_name') %}",
        "{% set _ = items.extend([first_name]) %}",
    ],
)
def test_the_append_idiom_leaks_nothing(tmp_path: Path, statement: str) -> None:
    r = renderer(
        tmp_path,
        template=f"<p>{statement}{{{{ items | join(',') }}}} {{{{ settings }}}}</p>" + UNSUB,
        variables={"items": ["start"], "settings": {"a": 1}},
    )
    for i in range(30):
        with pytest.raises(TemplateError, match=r"t\.html:1: .*would change a value"):
            _render(r, i)
    # nothing any render tried is in the campaign's values
    assert r.campaign.variables == {"items": ["start"], "settings": {"a": 1}}


def test_per_recipient_state_stays_per_recipient(tmp_path: Path) -> None:
    """What a template builds for itself (namespace, set) is the recipient's own."""
    r = renderer(
        tmp_path,
        template=(
            "<p>{% set ns = namespace(seen=items) %}{% set ns.seen = ns.seen + [first_name] %}"
            "{{ ns.seen | join(',') }}</p>" + UNSUB
        ),
        variables={"items": ["start"]},
    )
    for i in range(30):
        assert f"<p>start,N{i}</p>" in _render(r, i).html


def _count_renders(r: Renderer) -> dict[str, int]:
    calls = {"plain": 0, "marked": 0}
    for attr, what in (("_body", "plain"), ("_body_marked", "marked")):
        template = getattr(r, attr)
        real = template.root_render_func

        def counting(ctx: Any, real: Any = real, what: str = what) -> Any:
            calls[what] += 1
            return real(ctx)

        template.root_render_func = counting
    return calls


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("<p>{% for x in items %}{{ x }} {% endfor %}Hi {{ first_name }}</p>" + UNSUB, "t.html"),
        ("<p>Hi {{ first_name }}</p>" + UNSUB, "t.html"),
        ("# Hi {{ first_name }}\n\n{% for x in items %}{{ x }} {% endfor %}\n", "t.md"),
    ],
)
def test_each_body_is_rendered_once(tmp_path: Path, template: str, name: str) -> None:
    r = renderer(tmp_path, template=template, template_name=name, variables={"items": ["a"]})
    reference = renderer(
        tmp_path / "ref", template=template, template_name=name, variables={"items": ["a"]}
    )
    reference._fast = False  # the straightforward pipeline: one plain render
    calls = _count_renders(r)
    n = 12
    for i in range(n):
        # every other value is not plain: the fallback (the former second render)
        value = "<b>N</b> & co" if i % 2 else f"N{i}"
        got = _render(r, i, first_name=value)
        want = _render(reference, i, first_name=value)
        assert got.raw == want.raw
    assert calls["plain"] + calls["marked"] <= n, calls


def test_a_template_capturing_output_still_renders_right(tmp_path: Path) -> None:
    """{% set %} blocks see marked values: such templates keep their own plain render."""
    template = "<p>{% set x %}{{ first_name }}{% endset %}{{ x | length }}</p>" + UNSUB
    r = renderer(tmp_path, template=template)
    for i, name in enumerate(["Ann", "<Bo>", "Carla"]):
        escaped = name.replace("<", "&lt;").replace(">", "&gt;")
        assert f"<p>{len(escaped)}</p>" in _render(r, i, first_name=name).html


# --------------------------------------------------------------------------- item 5: limits

BOMBS = [
    ("{{ 'x' * 10**9 }}", "longer than 100,000"),
    ("{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}", "longer than 2,000,000"),
    (
        "{% set a %}{% for i in range(10**5) %}{{ 'x' * 10**5 }}{% endfor %}{% endset %}{{ a }}",
        "loops made more than",
    ),
    ("{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}", "loop"),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "longer than 2,000,000",
    ),
    ("{{ '%0999999999d' | format(1) }}", "width"),
    ("{{ '{:>999999999}'.format(1) }}", "width"),
    ("{{ 'x'.center(10**9) }}", "longer than"),
    ("{{ 'x' | indent(10**9) }}", "longer than"),
    ("{{ ('x' * 10**5).replace('', 'y' * 10**5) }}", "longer than"),
    ("{{ range(10**9) | list }}", "range"),
    ("{{ 9 ** 99 }}", "exponent"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself"),
]


@pytest.mark.parametrize(("bomb", "says"), BOMBS)
def test_oversized_templates_are_refused_fast(tmp_path: Path, bomb: str, says: str) -> None:
    r = renderer(tmp_path, template=f"<p>\n{bomb}</p>" + UNSUB)
    started = time.monotonic()
    with pytest.raises(TemplateError, match=says) as caught:
        _render(r, 1)
    assert time.monotonic() - started < 5
    assert f"{tmp_path / 't.html'}:2: " in str(caught.value)


def test_render_time_is_bounded(tmp_path: Path) -> None:
    fan_out = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
    r = renderer(
        tmp_path, template=f"<p>{fan_out}{{{{ f(60) }}}}</p>" + UNSUB, limits={"seconds": 1}
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"took over 1 seconds \(limits.seconds\)"):
        _render(r, 1)
    assert time.monotonic() - started < 4


def test_limits_are_configurable(tmp_path: Path) -> None:
    big = "<p>{% for i in range(30) %}{{ 'x' * 100000 }}{% endfor %}</p>" + UNSUB
    with pytest.raises(TemplateError, match="2,000,000"):
        _render(renderer(tmp_path / "a", template=big), 1)
    roomy = renderer(tmp_path / "b", template=big, limits={"body": "10MB"})
    assert len(_render(roomy, 1).html) > 3_000_000
    with pytest.raises(TemplateError, match="over the body limit of 300 "):
        renderer(tmp_path / "c", limits={"body": "0.3kB"})  # the template itself is longer
    subject = renderer(tmp_path / "d", subject="{{ first_name * 60 }}", limits={"header": 100})
    with pytest.raises(TemplateError, match="subject template's output"):
        _render(subject, 1)
    with pytest.raises(ConfigError, match="limits.body"):
        renderer(tmp_path / "e", limits={"body": "lots"})


def test_check_refuses_the_oversized_template_in_bounded_memory(tmp_path: Path) -> None:
    baseline = baseline_rss_kb(tmp_path)
    yml = write_campaign(tmp_path, template="<p>Hi</p>\n<p>{{ 'x' * 10**9 }}</p>" + UNSUB)
    started = time.monotonic()
    result, peak = run_measured(
        "check", yml, cwd=tmp_path, env={"STAMP_UNSUBSCRIBE_SECRET": SECRET}
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "t.html:2" in out and "Traceback" not in out
    assert peak - baseline < 64 * 1024, f"{peak - baseline} KiB over start-up"


def test_check_stops_at_a_template_error_as_send_does(tmp_path: Path) -> None:
    loop = "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}"
    csv = "email,first_name\n" + "".join(f"u{i}@example.com,N{i}\n" for i in range(50))
    yml = write_campaign(tmp_path, template=f"<p>{loop}</p>" + UNSUB, csv=csv)
    started = time.monotonic()
    result = runner.invoke(app, ["check", str(yml)])
    assert time.monotonic() - started < 20  # not 50 renders' worth of loops
    assert result.exit_code == 2, result.output
    assert "loop iterations" in result.output
    assert "49 more recipients not rendered" in result.output


# --------------------------------------------------------------------------- item 7: text templates

TEXT = (
    "Hi {{ first_name }},\n\nReply to <sig@example.com> & say hi.\n\n"
    "Unsubscribe: {{ unsubscribe_url }}\n"
)


@pytest.mark.parametrize(("name", "fmt"), [("t.txt", None), ("t.html", "text")])
def test_a_text_template_yields_text_plain(tmp_path: Path, name: str, fmt: str | None) -> None:
    extra = {"format": fmt} if fmt else {}
    r = renderer(tmp_path, template=TEXT, template_name=name, **extra)
    message = _render(r, 1, first_name="Ann <a&b>")
    parsed = parse(message.raw)
    assert parsed.get_content_type() == "text/plain"
    assert not parsed.is_multipart()
    body = parsed.get_content().replace("\r\n", "\n")
    assert body.startswith("Hi Ann <a&b>,\n\nReply to <sig@example.com> & say hi.\n\n")
    assert message.text == body and message.html == ""


def test_a_text_template_with_an_attachment(tmp_path: Path) -> None:
    r = renderer(
        tmp_path,
        template=TEXT,
        template_name="t.txt",
        files={"a.pdf": b"%PDF"},
        attachments=["a.pdf"],
    )
    parsed = email.message_from_bytes(_render(r, 1).raw, policy=email.policy.default)
    kinds = [p.get_content_type() for p in parsed.walk()]
    assert kinds == ["multipart/mixed", "text/plain", "application/pdf"]


def test_a_text_template_refuses_html_only_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text_template"):
        renderer(tmp_path, template=TEXT, template_name="t.txt", text_template="t.txt")


@pytest.mark.parametrize(("template", "errors"), [(TEXT, 0), ("Hi {{ first_name }}\n", 2)])
def test_check_judges_a_text_message_as_text(tmp_path: Path, template: str, errors: int) -> None:
    yml = write_campaign(
        tmp_path,
        template=template,
        template_name="t.txt",
        csv="email,first_name\nada@example.com,Ada\nbob@example.com,Bob\n",
    )
    result = runner.invoke(app, ["check", str(yml)])
    if errors:
        assert result.exit_code != 0
        assert "no unsubscribe URL in the text" in result.output
    else:
        assert result.exit_code == 0, result.output
        assert "unsubscribe" not in result.output.lower() or "no unsubscribe" not in result.output


def test_preview_of_a_text_message_as_html_shows_the_text(tmp_path: Path) -> None:
    yml = write_campaign(tmp_path, template=TEXT, template_name="t.txt")
    out = tmp_path / "m.html"
    result = runner.invoke(app, ["preview", str(yml), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "<pre>Hi Ada,\n\nReply to &lt;sig@example.com&gt; &amp; say hi." in out.read_text()


def test_format_html_on_a_txt_file_still_escapes(tmp_path: Path) -> None:
    r = renderer(
        tmp_path,
        template="<p>Hi {{ first_name }}</p>" + UNSUB,
        template_name="t.txt",
        format="html",
    )
    message = _render(r, 1, first_name="<script>x</script>")
    assert "&lt;script&gt;" in message.html and "<script>" not in message.html
    assert parse(message.raw).get_content_type() == "multipart/alternative"
