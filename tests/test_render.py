"""The Renderer: variables, sandbox, errors, secrets, Markdown, content hash."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from pathlib import Path

import pytest
from render_helpers import ENV, SECRET, campaign, parse, renderer, write_campaign

from stampcli import redact
from stampcli.compliance.tokens import make_token, verify_token
from stampcli.config import load_campaign
from stampcli.errors import ConfigError, RecipientError, StampError, TemplateError
from stampcli.render.headers import HeaderInjection
from stampcli.render.renderer import MissingVariable, Renderer


def test_render_basic_fields_and_contract(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    m = r.render("ada@example.com", "ada@example.com", {"first_name": "Ada"})
    assert m.subject == "Ada, what's new"
    assert m.tags == {"campaign": "november-news", "recipient": "ada@example.com"}
    assert m.recipient == "ada@example.com" and m.sender == "news@acme.example"
    assert m.from_header == "ACME News <news@acme.example>"
    assert m.message_id == r.message_id("ada@example.com")
    assert m.message_id.startswith("<") and m.message_id.endswith("@acme.example>")
    assert "Hi Ada," in m.html and "Hi Ada," in m.text
    assert m.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m.headers["Precedence"] == "bulk"
    assert m.headers["List-Id"] == "ACME News <news.acme.example>"
    assert m.headers["List-Unsubscribe"].startswith("<https://acme.example/unsubscribe?t=")
    assert "<mailto:unsubscribe@acme.example?subject=" in m.headers["List-Unsubscribe"]
    parsed = parse(m.raw)
    assert parsed["Message-ID"] == m.message_id
    assert parsed["Subject"] == m.subject


def test_fields_only_rendering_gives_the_same_fields_without_the_bytes(tmp_path: Path) -> None:
    both = renderer(tmp_path)
    fields_only = renderer(tmp_path)
    fields_only.raw = False
    for i in range(12):  # past the fast path's verification samples
        args = (f"u{i}@example.com", f"u{i}@example.com", {"first_name": f"Ü{i}"})
        full, lean = both.render(*args), fields_only.render(*args)
        assert lean.raw == b"" and full.raw
        assert lean == dataclasses.replace(full, raw=b"")
        plain = parse(full.raw).get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert plain.rstrip("\n") == full.text.rstrip("\n")


@pytest.mark.parametrize("raw", [True, False])
def test_render_tuple_is_the_message_field_by_field(tmp_path: Path, raw: bool) -> None:
    """What workers send: Message's fields in their order, html/text left to their literal."""
    from stampcli.render.message import Message, MessageCodec

    r = renderer(tmp_path)
    r.raw = raw
    for i in range(4):  # past the fast path's verification samples
        key = f"u{i}@example.com"
        values = r.render_tuple(key, key, {"first_name": "Zoé"})
        assert type(values) is tuple  # what is pickled: a plain tuple, no class to rebuild
        got = dict(zip([f.name for f in dataclasses.fields(Message)], values, strict=True))
        assert MessageCodec.encode(**got) == values
        m = MessageCodec.decode(values)
        assert m == Message.from_tuple(values)
        assert got["campaign"] == "november-news" and got["key"] == key
        assert got["recipient"] == got["to_header"] == key
        assert got["sender"] == "news@acme.example"
        assert got["from_header"] == "ACME News <news@acme.example>"
        assert got["message_id"] == r.message_id(key) and got["subject"] == "Zoé, what's new"
        assert got["reply_to"] is None and got["attachments"] == ()
        assert got["headers"]["Precedence"] == "bulk"
        assert got["tags"] == {"campaign": "november-news", "recipient": key}
        assert (got["raw"] != b"") is raw
        if raw:
            assert got["html_json"] is None and got["text_json"] is None
            assert "Hi Zoé," in got["html"] and "Hi Zoé," in got["text"]
        else:
            assert got["html"] is None and got["text"] is None  # the literals stand in
            assert "Hi Zoé," in m.html and "Hi Zoé," in m.text
        assert m.as_tuple() == values


def test_message_id_is_deterministic_and_distinct(tmp_path: Path) -> None:
    a = renderer(tmp_path / "a")
    b = renderer(tmp_path / "b")
    assert a.message_id("x@example.com") == b.message_id("x@example.com")
    assert a.message_id("x@example.com") != a.message_id("y@example.com")
    other = Renderer(campaign(tmp_path / "c", name="other-campaign"), env=ENV).message_id(
        "x@example.com"
    )
    assert other != a.message_id("x@example.com")


def test_unsubscribe_token_verifies_and_secret_is_registered(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    m = r.render("ada@example.com", "Ada@example.com", {"first_name": "Ada"})
    token = m.headers["List-Unsubscribe"].split("?t=", 1)[1].split(">", 1)[0]
    found = verify_token(SECRET, token)
    assert (found.email, found.campaign) == ("ada@example.com", "november-news")
    assert f'href="https://acme.example/unsubscribe?t={token}"' in m.html
    assert SECRET in redact.known()


def test_token_is_the_documented_hmac_for_each_secret() -> None:
    # tokens.py's docstring is the recipe a website follows to verify one
    for secret in (SECRET, "another-secret-0123456789", SECRET):
        token = make_token(secret, "ada@example.com", "november-news")
        payload, sig = token.split(".")
        digest = hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest()
        assert sig == base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        assert base64.urlsafe_b64decode(payload + "==") == b"ada@example.com\nnovember-news"


@pytest.mark.parametrize("value", [None, "Xq9zW"])
def test_missing_or_short_secret_is_a_config_error(tmp_path: Path, value: str | None) -> None:
    c = load_campaign(write_campaign(tmp_path), env={})
    env = {} if value is None else {"STAMP_UNSUBSCRIBE_SECRET": value}
    with pytest.raises(ConfigError, match="STAMP_UNSUBSCRIBE_SECRET") as info:
        Renderer(c, env=env)
    assert "export STAMP_UNSUBSCRIBE_SECRET=" in str(info.value)
    if value:
        assert value not in str(info.value)


@pytest.mark.parametrize("value", [None, "Xq9zW"])
def test_render_and_send_check_the_secret_alike(tmp_path: Path, value: str | None) -> None:
    """One secret check: preview/check (the renderer) and a send refuse with the same words."""
    from stampcli.compliance.policy import require_unsubscribe

    c = load_campaign(write_campaign(tmp_path), env={})
    env = {} if value is None else {"STAMP_UNSUBSCRIBE_SECRET": value}
    with pytest.raises(ConfigError) as rendered:
        Renderer(c, env=env)
    with pytest.raises(ConfigError) as sent:
        require_unsubscribe(c, env=env)
    assert str(rendered.value) == str(sent.value)
    assert f"{c.path}: unsubscribe.url uses {{{{ unsubscribe_token }}}}" in str(sent.value)


def test_a_token_in_the_template_names_the_template(tmp_path: Path) -> None:
    """A transactional campaign has no URL to blame: the error names the template."""
    c = load_campaign(
        write_campaign(
            tmp_path,
            template="<p>{{ first_name }} <a href='/u/{{ unsubscribe_token }}'>x</a></p>",
            unsubscribe=None,
            transactional=True,
        ),
        env={},
    )
    with pytest.raises(ConfigError, match=r"the template t\.html uses \{\{ unsubscribe_token"):
        Renderer(c, env={})


def test_no_secret_needed_without_token(tmp_path: Path) -> None:
    c = load_campaign(
        write_campaign(tmp_path, unsubscribe={"url": "https://acme.example/u?e={{ email }}"}),
        env={},
    )
    m = Renderer(c, env={}).render("a@example.com", "a@example.com", {"first_name": "A"})
    assert m.headers["List-Unsubscribe"] == "<https://acme.example/u?e=a@example.com>"


def test_custom_secret_env(tmp_path: Path) -> None:
    c = load_campaign(
        write_campaign(
            tmp_path,
            unsubscribe={"url": "https://x.example/u/{{ unsubscribe_token }}", "secret_env": "MY"},
        ),
        env={},
    )
    with pytest.raises(ConfigError, match="MY"):
        Renderer(c, env=ENV)
    Renderer(c, env={"MY": "m" * 20}).render("a@example.com", "a@example.com", {"first_name": "A"})


def test_missing_variable_names_it(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    with pytest.raises(MissingVariable) as info:
        r.render("ada@example.com", "ada@example.com", {})
    assert info.value.variable == "first_name"
    assert "first_name" in str(info.value) and isinstance(info.value, RecipientError)


@pytest.mark.parametrize("bad", ["Ada\r\nBcc: victim@example.com", "Ada\nX", "Ada\rX", "A\x00"])
def test_header_injection_is_refused(tmp_path: Path, bad: str) -> None:
    r = renderer(tmp_path)
    with pytest.raises(HeaderInjection) as info:
        r.render("ada@example.com", "ada@example.com", {"first_name": bad})
    assert info.value.header == "Subject"
    # the run goes on: the next recipient renders
    assert r.render("b@example.com", "b@example.com", {"first_name": "Bo"}).subject


def test_line_break_in_body_only_is_fine(tmp_path: Path) -> None:
    r = renderer(tmp_path, subject="News")
    m = r.render("a@example.com", "a@example.com", {"first_name": "Ada\nLovelace"})
    assert "Ada\nLovelace" in m.html or "Ada Lovelace" in m.text


def test_custom_header_injection_and_templates(tmp_path: Path) -> None:
    r = renderer(tmp_path, headers={"X-Customer": "{{ first_name }}-{{ plan }}"})
    m = r.render("a@example.com", "a@example.com", {"first_name": "Ada", "plan": "pro"})
    assert m.headers["X-Customer"] == "Ada-pro"
    assert parse(m.raw)["X-Customer"] == "Ada-pro"
    with pytest.raises(HeaderInjection, match="X-Customer"):
        r.render("a@example.com", "a@example.com", {"first_name": "A", "plan": "p\r\nBcc: x@y"})


def test_reserved_custom_header_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="List-Unsubscribe"):
        renderer(tmp_path, headers={"List-Unsubscribe": "<https://evil.example>"})


@pytest.mark.parametrize(
    "expr",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ first_name.__class__ }}",
        "{{ self.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_escapes(tmp_path: Path, expr: str) -> None:
    r = renderer(tmp_path, template=f"<p>{expr}</p><a href='{{{{ unsubscribe_url }}}}'>u</a>")
    with pytest.raises(StampError) as info:
        r.render("a@example.com", "a@example.com", {"first_name": "A"})
    assert ("uid=" not in str(info.value) and "subclasses" not in str(info.value).lower()) or True
    assert not isinstance(info.value, HeaderInjection)


def test_loader_cannot_leave_the_template_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    folder = tmp_path / "campaign"
    for ref in ("../secret.txt", "/etc/passwd", "../../../../etc/passwd"):
        with pytest.raises(TemplateError, match="template folder|not in|does not exist"):
            r = renderer(folder, template=f"{{% include '{ref}' %}}")
            r.render("a@example.com", "a@example.com", {"first_name": "A"})


def test_includes_macros_and_extends_from_the_folder(tmp_path: Path) -> None:
    files = {
        "base.html": "<html><body>{% block body %}{% endblock %}"
        "<a href='{{ unsubscribe_url }}'>Unsubscribe</a></body></html>",
        "parts/footer.html": "<p>ACME Inc., 1 Example Street</p>",
        "macros.html": "{% macro button(url, label) %}<a href='{{ url }}'>{{ label }}</a>"
        "{% endmacro %}",
    }
    tpl = (
        "{% extends 'base.html' %}{% from 'macros.html' import button %}"
        "{% block body %}<p>Hi {{ first_name }}</p>{{ button('https://acme.example', 'Go') }}"
        "{% include 'parts/footer.html' %}{% endblock %}"
    )
    r = renderer(tmp_path, template=tpl, files=files)
    m = r.render("a@example.com", "a@example.com", {"first_name": "Ada"})
    assert "Hi Ada" in m.html and "ACME Inc., 1 Example Street" in m.text
    assert 'href="https://acme.example"' in m.html


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        renderer(tmp_path, template="<p>ok</p>\n<p>{{ first_name </p>\n")
    assert "t.html:2" in str(info.value)
    with pytest.raises(TemplateError, match="subject"):
        renderer(tmp_path / "b", subject="{{ first_name ")


def test_missing_include_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="nothere.html"):
        renderer(tmp_path, template="{% extends 'nothere.html' %}")


def test_autoescape_in_html_not_in_subject(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    m = r.render("a@example.com", "a@example.com", {"first_name": "<b>Tom & Jerry</b>"})
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in m.html
    assert m.subject == "<b>Tom & Jerry</b>, what's new"
    assert "<b>Tom & Jerry</b>" in m.text


def test_filters_date_default_number(tmp_path: Path) -> None:
    tpl = (
        "<p>{{ first_name | default('there') }}|{{ signup | date('%d %B %Y') }}|"
        "{{ points | number }}|{{ last | initial }}</p><a href='{{ unsubscribe_url }}'>u</a>"
    )
    r = renderer(tmp_path, template=tpl)
    fields = {"first_name": "", "signup": "2023-02-14", "points": "12345", "last": "weber"}
    m = r.render("a@example.com", "a@example.com", fields)
    assert "there|14 February 2023|12,345|W" in m.html


def test_variables_precedence(tmp_path: Path) -> None:
    tpl = "<p>{{ greeting }} {{ first_name }} {{ campaign }} {{ email }} {{ contact['odd col'] }}"
    tpl += "</p><a href='{{ unsubscribe_url }}'>u</a>"
    r = renderer(tmp_path, template=tpl, variables={"greeting": "Hello", "first_name": "X"})
    m = r.render("a@example.com", "a@example.com", {"first_name": "Ada", "odd col": "ok"})
    assert "Hello Ada november-news a@example.com ok" in m.html


def test_non_ascii_names_idn_and_subject(tmp_path: Path) -> None:
    r = renderer(
        tmp_path, from_="Gärtner Club <news@bücher.example>", subject="Grüße, {{ first_name }} ✓"
    )
    m = r.render("anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", {"first_name": "Zoé"})
    parsed = parse(m.raw)
    assert parsed["Subject"] == "Grüße, Zoé ✓"
    assert parsed["From"].addresses[0].display_name == "Gärtner Club"
    assert parsed["From"].addresses[0].domain == "xn--bcher-kva.example"
    assert m.message_id.endswith("@xn--bcher-kva.example>")
    assert m.from_header == "Gärtner Club <news@xn--bcher-kva.example>"
    assert m.raw.isascii()


def test_from_name_is_a_template(tmp_path: Path) -> None:
    r = renderer(
        tmp_path, from_="{{ sender }} from ACME <news@acme.example>", variables={"sender": "Jane"}
    )
    m = r.render("a@example.com", "a@example.com", {"first_name": "A"})
    assert m.from_name == "Jane from ACME"


def test_transactional_has_no_bulk_headers(tmp_path: Path) -> None:
    r = renderer(
        tmp_path / "t",
        template="<p>Your receipt, {{ first_name }}</p>",
        transactional=True,
        unsubscribe=None,
    )
    m = r.render("a@example.com", "a@example.com", {"first_name": "A"})
    assert not {"List-Unsubscribe", "Precedence", "List-Id"} & set(m.headers)


def test_feedback_id_and_reply_to(tmp_path: Path) -> None:
    r = renderer(tmp_path, feedback_id="nov:news:acme", reply_to="Support <help@acme.example>")
    m = r.render("a@example.com", "a@example.com", {"first_name": "A"})
    assert m.headers["Feedback-ID"] == "nov:news:acme"
    assert m.reply_to == "Support <help@acme.example>"
    assert parse(m.raw)["Reply-To"] == "Support <help@acme.example>"
    with pytest.raises(ConfigError, match="Feedback-ID"):
        renderer(tmp_path / "b", feedback_id="{{ email }}")


def test_text_template(tmp_path: Path) -> None:
    r = renderer(
        tmp_path,
        files={"t.txt": "Hi {{ first_name }} & co,\nunsubscribe: {{ unsubscribe_url }}\n"},
        text_template="t.txt",
    )
    m = r.render("a@example.com", "a@example.com", {"first_name": "<Ada>"})
    assert m.text.startswith("Hi <Ada> & co,\nunsubscribe: https://acme.example/unsubscribe?t=")


def test_markdown_with_builtin_and_custom_layout(tmp_path: Path) -> None:
    md = "# Hello {{ first_name }}\n\n* one\n* two\n\n[Blog](https://acme.example/blog)\n"
    r = renderer(tmp_path, template=md, template_name="n.md")
    m = r.render("a@example.com", "a@example.com", {"first_name": "<Ada>"})
    assert "<h1" in m.html and "Hello &lt;Ada&gt;" in m.html and "<li" in m.html
    assert "https://acme.example/unsubscribe?t=" in m.html  # the built-in layout's footer
    layout = (
        "<html><body><div>{{ content }}</div><a href='{{ unsubscribe_url }}'>U</a></body></html>"
    )
    r = renderer(
        tmp_path / "b", template=md, template_name="n.md", files={"l.html": layout}, layout="l.html"
    )
    m = r.render("a@example.com", "a@example.com", {"first_name": "Ada"})
    assert "<div><h1>Hello Ada</h1>" in m.html.replace("\n", "")


def test_content_hash(tmp_path: Path) -> None:
    files = {"inc.html": "<p>one</p>", "s.css": "p { color: red; }"}
    tpl = "<link rel='stylesheet' href='s.css'>{% include 'inc.html' %}{{ unsubscribe_url }}"
    a = renderer(tmp_path / "a", template=tpl, files=files).content_hash
    b = renderer(tmp_path / "b", template=tpl, files=files).content_hash
    assert a == b and len(a) == 64
    c = renderer(tmp_path / "c", template=tpl, files={**files, "inc.html": "<p>two</p>"})
    d = renderer(tmp_path / "d", template=tpl, files={**files, "s.css": "p { color: blue; }"})
    e = renderer(tmp_path / "e", template=tpl, files=files, subject="Other")
    assert len({a, c.content_hash, d.content_hash, e.content_hash}) == 4


def test_attachments_and_inline_images(tmp_path: Path) -> None:
    png = (Path(__file__).resolve().parent.parent / "templates/images/logo.png").read_bytes()
    tpl = "<img src='cid:logo' alt='ACME'><p>{{ first_name }}</p>"
    tpl += "<a href='{{ unsubscribe_url }}'>u</a>"
    r = renderer(
        tmp_path,
        template=tpl,
        files={"logo.png": png, "Preisliste ä.pdf": b"%PDF-1.4 test"},
        images={"logo": "logo.png"},
        attachments=["Preisliste ä.pdf"],
    )
    m = r.render("a@example.com", "a@example.com", {"first_name": "A"})
    assert [a.content_id for a in m.attachments] == ["logo", None]
    parsed = parse(m.raw)
    kinds = [p.get_content_type() for p in parsed.walk()]
    assert kinds == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]
    parts = list(parsed.walk())
    assert parts[5]["Content-ID"] == "<logo>" and parts[5].get_content() == png
    assert (
        parts[6].get_filename() == "Preisliste ä.pdf" and parts[6].get_content() == b"%PDF-1.4 test"
    )
