"""The generated text part is plain text: no Markdown escapes, backticks or ``* * *``."""

from __future__ import annotations

from pathlib import Path

from render_helpers import renderer

from stampcli.render import textpart

NEWSLETTER = """<html><body>
<h2>1. Shared Workspaces</h2>
<p>- no more lost files</p>
<p>+ faster exports</p>
<p>Run <code>stamp send</code> in C:\\newsletters\\*.yml with 2*3 = 6 and a_b_c.</p>
<hr>
<ul><li>2. point two</li></ul>
<p><a href="https://acme.example/read">Read [more]</a></p>
<p>Hi {{ first_name }}, <a href="{{ unsubscribe_url }}">unsubscribe</a></p>
</body></html>
"""


def test_convert_leaves_no_markdown_escapes() -> None:
    text = textpart.convert(NEWSLETTER.replace("{{ first_name }}", "Ada"))
    assert "1. Shared Workspaces" in text
    assert "\n- no more lost files" in text and "\n+ faster exports" in text
    assert "Run stamp send in C:\\newsletters\\*.yml with 2*3 = 6 and a_b_c." in text
    assert "\\." not in text and "\\-" not in text and "\\+" not in text
    assert "`" not in text and "* * *" not in text
    assert textpart.RULE in text
    assert "  * 2. point two" in text
    assert "Read [more] (https://acme.example/read)" in text


def test_a_pre_block_keeps_its_backslashes() -> None:
    text = textpart.convert("<pre>path\\.txt and \\- here</pre>")
    assert "path\\.txt and \\- here" in text


def test_rendered_messages_have_the_plain_text_on_both_paths(tmp_path: Path) -> None:
    fast = renderer(tmp_path / "a", template=NEWSLETTER)
    for _ in range(3):  # the fast path's first messages are checked against the slow one
        message = fast.render("ada@example.com", "ada@example.com", {"first_name": "1. Ada"})
    assert "1. Shared Workspaces" in message.text and "Hi 1. Ada," in message.text
    assert "\\" not in message.text.replace("C:\\newsletters\\*", "")
