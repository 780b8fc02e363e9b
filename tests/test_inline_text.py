"""CSS inlining (css-inline) and the generated plain-text part (html2text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from render_helpers import ENV, example, renderer

from stampcli.errors import TemplateError
from stampcli.render import textpart
from stampcli.render.inline import Inliner
from stampcli.render.renderer import Renderer


def test_style_block_inlined_and_media_kept(tmp_path: Path) -> None:
    html = (
        "<html><head><style>p { color: red; } @media (max-width: 600px) { p { color: blue; } }"
        "</style></head><body><p>Hi</p></body></html>"
    )
    out = Inliner([tmp_path]).inline(html)
    assert '<p style="color: red;">Hi</p>' in out
    assert "@media (max-width: 600px)" in out


def test_linked_local_stylesheet_is_inlined(tmp_path: Path) -> None:
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "s.css").write_text("p { color: green; }")
    html = '<html><head><link rel="stylesheet" href="css/s.css"></head><body><p>x</p></body></html>'
    out = Inliner([tmp_path]).inline(html)
    assert '<p style="color: green;">x</p>' in out and "<link" not in out


def test_stylesheet_outside_folder_and_missing_are_refused(tmp_path: Path) -> None:
    (tmp_path / "s.css").write_text("p { color: green; }")
    inner = tmp_path / "t"
    inner.mkdir()
    with pytest.raises(TemplateError, match="outside"):
        Inliner([inner]).inline('<link rel="stylesheet" href="../s.css"><p>x</p>')
    with pytest.raises(TemplateError, match="not found"):
        Inliner([inner]).inline('<link rel="stylesheet" href="nope.css"><p>x</p>')


def test_remote_stylesheet_is_not_fetched(tmp_path: Path) -> None:
    inliner = Inliner([tmp_path])
    out = inliner.inline(
        '<html><head><link rel="stylesheet" href="https://203.0.113.1/s.css"></head>'
        "<body><p>x</p></body></html>"
    )
    assert "<p>x</p>" in out
    assert inliner.remote_stylesheets == {"https://203.0.113.1/s.css"}


def test_text_part_is_plain_text() -> None:
    html = """<html><head><title>T</title><style>p{color:red}</style></head><body>
    <table><tr><td><img src="cid:logo" alt="ACME News"></td></tr>
    <tr><td><h1>Big <em>news</em></h1><p>Hello <strong>Ada</strong> &amp; friends, caf&eacute;.</p>
    <p><a href="https://acme.example/a">Read more</a> or <a href="https://acme.example/b">https://acme.example/b</a></p>
    <ul><li>one</li><li>two</li></ul></td></tr></table></body></html>"""
    text = textpart.html_to_text(html)
    assert "ACME News" in text
    assert "Big news" in text and "#" not in text and "*" not in text.replace("  * ", "")
    assert "Hello Ada & friends, café." in text
    assert "Read more (https://acme.example/a)" in text
    assert "https://acme.example/b" in text and "[" not in text
    assert re.search(r"^\s*\* one$", text, re.M)
    assert "<" not in text and "&amp;" not in text and "color:red" not in text
    assert text.endswith("\n") and "\n\n\n" not in text


def test_wrapping_keeps_urls_whole() -> None:
    url = "https://acme.example/" + "x" * 120
    words = " ".join(["word"] * 40)
    text = textpart.finish(f"{words} {url} {words}\n* {words}\n")
    lines = text.splitlines()
    assert url in lines
    assert all(len(line) <= 78 for line in lines if line != url)
    # list items keep a hanging indent
    item = lines.index(next(x for x in lines if x.startswith("* ")))
    assert lines[item + 1].startswith("  word")


def _words(s: str) -> set[str]:
    return set(re.findall(r"[A-Za-zÀ-ÿ]{4,}", s))


@pytest.mark.parametrize("name", ["newsletter.yml", "markdown.yml"])
def test_text_says_what_the_html_says(name: str, tmp_path: Path) -> None:
    r = Renderer(example(name, tmp_path), env=ENV)
    m = r.render("ada@example.com", "ada@example.com", {"first_name": "Ada", "plan": "pro"})
    visible = re.sub(r"<style.*?</style>|<title.*?</title>", "", m.html, flags=re.S)
    visible = re.sub(r"<[^>]+>", " ", visible)
    assert _words(visible) <= _words(m.text)
    assert all(len(x) <= 78 or "://" in x for x in m.text.splitlines())


def test_css_is_inlined_in_rendered_message(tmp_path: Path) -> None:
    m = renderer(tmp_path).render("a@example.com", "a@example.com", {"first_name": "A"})
    assert '<p style="color: #333333;">Hi A,</p>' in m.html
    assert "@media (max-width: 600px)" in m.html
