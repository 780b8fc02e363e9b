"""Per-run secret registries: a Redactor per campaign or request; the CLI uses the default."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from render_helpers import ENV, SECRET, campaign

from stampcli import redact
from stampcli.errors import RecipientError
from stampcli.redact import Redactor
from stampcli.render.renderer import Renderer


def test_redactors_keep_their_secrets_apart() -> None:
    first, second = Redactor(), Redactor()
    first.register("alpha-secret-1")
    second.register("beta-secret-22")
    text = "alpha-secret-1 and beta-secret-22"
    assert first.redact(text) == "*** and beta-secret-22"
    assert second.redact(text) == "alpha-secret-1 and ***"
    assert redact.redact(text) == text  # the process default holds neither
    assert first.known() == {"alpha-secret-1"}
    first.clear()
    assert first.redact(text) == text and not first.known()


def test_url_quoted_forms_and_the_longest_first() -> None:
    r = Redactor()
    r.register("pw/s3cr3t:9a@x")
    r.register("s3cr3t")
    assert r.redact("url pw%2Fs3cr3t%3A9a%40x, raw pw/s3cr3t:9a@x, part s3cr3t") == (
        "url ***, raw ***, part ***"
    )
    r.register("abc")  # too short to be told apart from ordinary text
    assert r.redact("abc") == "abc"


def test_the_module_functions_are_the_process_default() -> None:
    redact.register("gamma-secret-333")
    assert redact.DEFAULT.known() == redact.known() == {"gamma-secret-333"}
    assert redact.redact("x gamma-secret-333") == "x ***"
    redact.clear()
    assert not redact.DEFAULT.known()


def test_registering_from_threads_loses_nothing() -> None:
    r = Redactor()
    threads = [
        threading.Thread(target=lambda i=i: [r.register(f"secret-{i}-{j:04d}") for j in range(50)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(r.known()) == 400


def test_a_renderer_registers_its_secret_in_the_redactor_it_is_given(tmp_path: Path) -> None:
    loaded = campaign(tmp_path)
    redact.clear()  # what loading the campaign registered in the process default
    own = Redactor()
    Renderer(loaded, env=ENV, redactor=own)
    assert SECRET in own.known() and SECRET not in redact.known()
    Renderer(loaded, env=ENV)
    assert SECRET in redact.known()


def test_a_renderer_redacts_errors_with_its_own_redactor(tmp_path: Path) -> None:
    own = Redactor()
    own.register("Top-Secret-Value")
    r = Renderer(
        campaign(tmp_path, template="<p>{{ ('{' ~ first_name ~ '}').format() }}</p>"),
        env=ENV,
        redactor=own,
    )
    with pytest.raises(RecipientError) as info:
        r.render("ada@example.com", "ada@example.com", {"first_name": "Top-Secret-Value"})
    assert "Top-Secret-Value" not in str(info.value) and "***" in str(info.value)
