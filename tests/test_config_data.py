"""campaign_from_data: a campaign from a mapping (the send API), checked exactly as a file is."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from stampcli import redact
from stampcli.config import Campaign, campaign_from_data, load_campaign
from stampcli.errors import ConfigError

GOOD = """\
name: november-news
from: "ACME News <news@acme.example>"
subject: "{{ first_name }}, save $$5"
template: t.html
attachments: [files/terms.pdf]
audience:
  file: list.csv
unsubscribe:
  url: "https://acme.example/u?t={{ unsubscribe_token }}"
providers:
  - url: "smtp://bob:${SMTP_PASS}@127.0.0.1:2525"
    rate: 3000/min
  - url: outbox://out
"""

ENV = {"SMTP_PASS": "p@ss/w?rd#1%41-data", "STAMP_UNSUBSCRIBE_SECRET": "s" * 40}


def folder(tmp_path: Path) -> Path:
    base = tmp_path / "campaign"
    (base / "files").mkdir(parents=True)
    (base / "t.html").write_text("<p>Hi {{ first_name }}</p>")
    (base / "list.csv").write_text("email,first_name\na@example.com,A\n")
    (base / "files" / "terms.pdf").write_bytes(b"%PDF-1.7 terms")
    return base


def data(**changes: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(GOOD)
    loaded.update(changes)
    return loaded


def refusal(base: Path, body: dict[str, Any], env: dict[str, str] | None = ENV) -> str:
    with pytest.raises(ConfigError) as caught:
        campaign_from_data(body, base_dir=base, env=env, source="api")
    return str(caught.value)


def test_data_gives_the_campaign_its_file_gives(tmp_path: Path) -> None:
    base = folder(tmp_path)
    (base / "campaign.yml").write_text(GOOD)
    from_file = load_campaign(base / "campaign.yml", env=ENV)
    from_data = campaign_from_data(data(), base_dir=base, env=ENV)
    assert isinstance(from_data, Campaign)
    assert from_data.model_dump() == from_file.model_dump()
    assert from_data.base_dir == from_file.base_dir == base.resolve()
    assert from_data.path == base.resolve() / "<data>"
    # the same byte-exact ${NAME} in a URL, paths resolved against base_dir, $$ escape
    assert from_data.providers[0].parsed.password == ENV["SMTP_PASS"]
    assert from_data.providers[1].parsed.path == str((base / "out").resolve())
    assert from_data.template == (base / "t.html").resolve()
    assert from_data.subject.endswith("save $5")


def test_a_json_body_loads_and_is_left_unchanged(tmp_path: Path) -> None:
    base = folder(tmp_path)
    body = json.loads(json.dumps(data()))
    before = copy.deepcopy(body)
    c = campaign_from_data(body, base_dir=str(base), env=ENV, source="POST /v1/campaigns")
    assert body == before
    assert c.path == base.resolve() / "campaigns"  # the last part of source; base_dir kept
    assert c.base_dir == base.resolve()


def test_errors_name_the_source_and_key_path_without_a_line(tmp_path: Path) -> None:
    base = folder(tmp_path)
    body = data(subjet="typo")
    body["providers"][0]["rate"] = "100/fortnight"
    lines = refusal(base, body).splitlines()
    assert "api: subjet: unknown key 'subjet' (did you mean 'subject'?)" in "\n".join(lines)
    assert any(
        line.startswith("api: providers[0].rate: ") and "not a rate" in line for line in lines
    )
    assert all(line.startswith("api: ") for line in lines), lines


def test_a_missing_variable_names_the_key(tmp_path: Path) -> None:
    message = refusal(folder(tmp_path), data(), env={})
    assert message == "api: providers[0].url: environment variable SMTP_PASS is not set"


def test_without_env_nothing_comes_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data may come from a client: it must not pull the server's secrets into a message."""
    monkeypatch.setenv("SMTP_PASS", "server-secret-7e1f")
    monkeypatch.setenv("SERVER_KEY", "server-secret-7e1f")
    body = data(subject="key: ${SERVER_KEY}")
    message = refusal(folder(tmp_path), body, env=None)
    assert "server-secret" not in message
    assert "api: subject: environment variable SERVER_KEY is not set" in message
    assert "no environment" in message
    assert "api: providers[0].url: environment variable SMTP_PASS" in message


def test_files_are_confined_to_base_dir(tmp_path: Path) -> None:
    base = folder(tmp_path)
    (tmp_path / "outside.pdf").write_bytes(b"%PDF-1.7 outside")
    message = refusal(base, data(attachments=["../outside.pdf"]))
    assert message.startswith("api: attachments[0]: ") and "outside the campaign folder" in message
    message = refusal(base, data(template="/etc/passwd"))
    assert "api: template: " in message and "outside" in message
    assert "api: attachments[0]: " in refusal(base, data(attachments=["/proc/self/environ"]))
    allowed = campaign_from_data(
        data(attachments=["../outside.pdf"], allow_paths=[".."]), base_dir=base, env=ENV
    )
    assert allowed.attachments == [(tmp_path / "outside.pdf").resolve()]


def test_an_attachment_holding_a_secret_is_refused(tmp_path: Path) -> None:
    base = folder(tmp_path)
    (base / "files" / "notes.txt").write_text(f"minutes\n{ENV['SMTP_PASS']}\n")
    message = refusal(base, data(attachments=["files/notes.txt"]))
    assert "api: attachments[0]: " in message and "contains the value of a secret" in message
    assert ENV["SMTP_PASS"] not in message


def test_the_unsubscribe_secret_of_the_process_is_guarded_without_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no env the renderer signs with the process's secret, so attachments may not hold it."""
    secret = "process-unsubscribe-secret-41c9e0"
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", secret)
    base = folder(tmp_path)
    (base / "files" / "notes.txt").write_text(f"minutes\n{secret}\n")
    body = data(attachments=["files/notes.txt"])
    body["providers"] = [{"url": "outbox://out"}]
    message = refusal(base, body, env=None)
    assert "contains the value of a secret" in message
    assert secret in redact.known()


@pytest.mark.parametrize("body", [[], "name: x", None, 42])
def test_data_that_is_not_a_mapping_is_refused(tmp_path: Path, body: Any) -> None:
    with pytest.raises(ConfigError, match=r"^api: a campaign is a mapping of keys"):
        campaign_from_data(body, base_dir=folder(tmp_path), env=ENV, source="api")


def test_base_dir_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^api: the campaign folder .* is not a folder"):
        campaign_from_data(data(), base_dir=tmp_path / "gone", env=ENV, source="api")


def test_deep_or_self_holding_data_is_refused_cleanly(tmp_path: Path) -> None:
    base = folder(tmp_path)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert "api: variables.x: lists and mappings nested more than" in refusal(
        base, data(variables={"x": deep})
    )
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert "nested more than" in refusal(base, data(variables=loop))


# ------------------------------------------------------------- the file path shares the rules


def write(tmp_path: Path, text: str) -> Path:
    base = folder(tmp_path)
    path = base / "campaign.yml"
    path.write_text(text)
    return path


def test_a_missing_variable_in_a_file_names_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as caught:
        load_campaign(path, env={})
    assert str(caught.value) == (
        f"{path}:11: providers[0].url: environment variable SMTP_PASS is not set"
    )


@pytest.mark.parametrize("depth", [150, 3000])
def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path, depth: int) -> None:
    path = write(tmp_path, GOOD + "variables: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match="nested more than 100 deep"):
        load_campaign(path, env=ENV)


def test_a_value_repeated_by_an_alias_is_substituted_once(tmp_path: Path) -> None:
    text = GOOD.replace("subject: ", 'reply_to: &r "R $${X} <r@acme.example>"\nsubject: ')
    text += "headers: {X-Reply: *r}\n"
    c = load_campaign(write(tmp_path, text), env=ENV)
    assert c.reply_to == c.headers["X-Reply"] == "R ${X} <r@acme.example>"


def test_an_alias_of_a_url_outside_providers_is_not_encoded(tmp_path: Path) -> None:
    """Only providers[N].url gets its ${NAME} parts percent-encoded, not a copy elsewhere."""
    text = GOOD.replace('- url: "smtp://', '- url: &u "smtp://') + "variables: {u: *u}\n"
    c = load_campaign(write(tmp_path, text), env=ENV)
    assert c.providers[0].parsed.password == ENV["SMTP_PASS"]
    assert c.variables["u"] == f"smtp://bob:{ENV['SMTP_PASS']}@127.0.0.1:2525"


def test_the_dotenv_is_read_for_a_file_only(tmp_path: Path) -> None:
    base = folder(tmp_path)
    (base / ".env").write_text("DOTENV_ONLY=from-dotenv-3b9a\n")
    os.environ.pop("DOTENV_ONLY", None)
    try:
        message = refusal(base, data(subject="${DOTENV_ONLY}"), env=None)
        assert "DOTENV_ONLY is not set" in message
        assert "DOTENV_ONLY" not in os.environ
    finally:
        os.environ.pop("DOTENV_ONLY", None)
