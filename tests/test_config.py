"""campaign.yml loading: models, ${ENV}, paths, and the error messages people read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stampcli import redact
from stampcli.config import (
    PROVIDER_OPTIONS,
    PROVIDER_SCHEMES,
    load_campaign,
    parse_duration,
    parse_provider_url,
    parse_rate,
)
from stampcli.errors import ConfigError, ExitCode

GOOD = """\
name: november-news
from: "ACME News <news@acme.example>"
subject: "{{ first_name }}, what's new"
template: t.html
audience:
  file: list.csv
  segment: "country == 'DE'"
unsubscribe:
  url: "https://acme.example/u?t={{ unsubscribe_token }}"
providers:
  - url: "sendgrid://${SG_KEY}"
    rate: 100/s
  - url: "smtp://bob:${SMTP_PASS}@127.0.0.1:2525"
    rate: 3000/min
    daily_quota: 50000
  - url: outbox://out
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "t.html").write_text("<p>Hi {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text("email,first_name\na@example.com,A\n")
    path = tmp_path / "campaign.yml"
    path.write_text(text)
    return path


ENV = {"SG_KEY": "SG.secret-key-123", "SMTP_PASS": "hunter2-pass"}


def test_loads_a_good_campaign(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD), env=ENV)
    assert c.name == "november-news"
    assert c.from_address == "news@acme.example"
    assert c.sender_domain == "acme.example"
    assert c.template == (tmp_path / "t.html").resolve()
    assert c.audience.file == (tmp_path / "list.csv").resolve()
    assert [p.label for p in c.providers] == ["sendgrid", "smtp", "outbox"]
    assert c.providers[0].rate is not None and c.providers[0].rate.per_second == 100
    assert c.providers[1].rate is not None and c.providers[1].rate.per_second == 50
    assert c.providers[1].parsed.password == "hunter2-pass"
    assert c.providers[2].parsed.path == str((tmp_path / "out").resolve())
    assert c.throttle.expire_after == 24 * 3600


def test_secrets_from_env_are_registered_and_redacted(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD), env=ENV)
    assert "SG.secret-key-123" in redact.known()
    shown = str(c.providers[0].parsed) + str(c.providers[1].parsed)
    assert "secret-key" not in shown and "hunter2" not in shown
    assert redact.redact("key=SG.secret-key-123") == "key=***"


def test_unknown_key_names_file_line_path_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  segment:", "  segmnt:"))
    with pytest.raises(ConfigError) as info:
        load_campaign(path, env=ENV)
    msg = str(info.value)
    assert f"{path}:7: audience.segmnt: unknown key 'segmnt' (did you mean 'segment'?)" in msg
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = GOOD.replace("rate: 100/s", "rate: 100/fortnight").replace(
        "daily_quota: 50000", "daily_quota: -1"
    )
    with pytest.raises(ConfigError) as info:
        load_campaign(write(tmp_path, text), env=ENV)
    lines = str(info.value).splitlines()
    assert any("providers[0].rate" in line and "not a rate" in line for line in lines)
    assert any("providers[1].daily_quota" in line for line in lines)


def test_missing_env_var_is_named_without_leaking_others(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_campaign(write(tmp_path, GOOD), env={"SMTP_PASS": "hunter2-pass"})
    msg = str(info.value)
    assert "environment variable SG_KEY is not set" in msg
    assert "hunter2" not in msg


def test_bad_provider_url(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("sendgrid://", "sendgird://"))
    with pytest.raises(ConfigError, match=r"did you mean sendgrid://") as info:
        load_campaign(path, env=ENV)
    assert "SG.secret" not in str(info.value)


def test_unknown_url_option_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"sendgrid://${SG_KEY}"', '"postmark://${SG_KEY}?steam=x"'))
    with pytest.raises(ConfigError) as info:
        load_campaign(path, env=ENV)
    assert str(info.value) == (
        f"{path}:11: providers[0].url: unknown option 'steam' (did you mean 'stream'?); "
        "postmark:// takes: stream"
    )


def test_bad_url_option_value_surfaces_at_its_line(tmp_path: Path) -> None:
    url = "smtp://bob:${SMTP_PASS}@127.0.0.1:2525"
    path = write(tmp_path, GOOD.replace(url, url + "?tls=implicit"))
    with pytest.raises(ConfigError) as info:
        load_campaign(path, env=ENV)
    assert str(info.value) == (
        f"{path}:13: providers[1].url: tls='implicit' is not one of starttls, require, none "
        "(for implicit TLS on port 465 use smtps://)"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "smtp://h?tsl=none",
            "unknown option 'tsl' (did you mean 'tls'?); smtp:// takes: tls, verify, cafile, ehlo",
        ),
        ("resend://re_k?region=eu", "unknown option 'region'; resend:// takes no options"),
        ("outbox://out?x=1", "unknown option 'x'; outbox:// takes no options"),
        (
            "ses://eu-west-1?configuraton_set=news",
            "unknown option 'configuraton_set' (did you mean 'configuration_set'?); "
            "ses:// takes: configuration_set, session_token",
        ),
        (
            "smtps://h?tls=none",
            "unknown option 'tls'; smtps:// takes: verify, cafile, ehlo "
            "(smtps:// is TLS from the first byte; tls= is for smtp://)",
        ),
        ("sendgrid://k?region=asia", "region='asia' is not one of eu, us"),
        ("smtp://h?verify=flase", "verify='flase' is not one of true, false, 1, 0, yes, no"),
        ("mailgun://k@mg.example.com?region=", "region='' is not one of eu, us"),
    ],
)
def test_unknown_url_options_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_provider_url(url)
    assert str(info.value).startswith(message)


def test_known_url_options_are_kept_with_lower_case_names() -> None:
    u = parse_provider_url("mailgun://k@mg.example.com?Region=EU")
    assert u.options == {"region": "EU"}  # readers lower-case the value themselves
    u = parse_provider_url("smtp://h:25?tls=none&verify=off&cafile=/ca.pem&ehlo=me.example")
    assert u.options == {"tls": "none", "verify": "off", "cafile": "/ca.pem", "ehlo": "me.example"}
    u = parse_provider_url("postmark://tok?stream=outbound")
    assert u.options == {"stream": "outbound"}
    u = parse_provider_url("ses://eu-west-1?configuration_set=news&session_token=tok-9f8e7d")
    assert u.options["configuration_set"] == "news"
    assert "tok-9f8e7d" not in str(u)  # the session token is a secret like the key


def test_every_scheme_has_an_options_table() -> None:
    assert set(PROVIDER_OPTIONS) == set(PROVIDER_SCHEMES)


def test_regions_match_what_the_adapters_and_pulls_serve() -> None:
    """A region the table accepts but an adapter does not know would silently send to the US.

    The suppression pull reaches the same base URLs through the adapter class
    (``HTTPAdapter.endpoint_for``), so one check covers both.
    """
    from stampcli.providers import adapter_class
    from stampcli.providers.http import HTTPAdapter

    for scheme, options in PROVIDER_OPTIONS.items():
        cls = adapter_class(scheme)
        regional = set(cls.regional_urls) if issubclass(cls, HTTPAdapter) else set()
        served = set(options.get("region") or ()) - {"us"}  # us: the default base URL
        assert regional == served, scheme


def test_missing_template_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("template: t.html", "template: nope.html"))
    with pytest.raises(ConfigError, match=r"campaign.yml:4: template: no such file"):
        load_campaign(path, env=ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the campaign file is empty"),
        ("- a\n- b\n", "a mapping of keys"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_campaign(write(tmp_path, text), env=ENV)


def test_missing_file_and_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such campaign file"):
        load_campaign(tmp_path / "absent.yml", env=ENV)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        load_campaign(binary, env=ENV)


def test_audience_needs_exactly_one_source(tmp_path: Path) -> None:
    text = GOOD.replace("  file: list.csv\n", "  file: list.csv\n  list: customers\n")
    with pytest.raises(ConfigError, match="exactly one of audience.file or audience.list"):
        load_campaign(write(tmp_path, text), env=ENV)


def test_crlf_in_from_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        '"ACME News <news@acme.example>"', '"ACME\\r\\nBcc: x@evil.example <n@a.example>"'
    )
    with pytest.raises(ConfigError, match="line break"):
        load_campaign(write(tmp_path, text), env=ENV)


def test_dotenv_next_to_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_KEY", raising=False)
    monkeypatch.setenv("SMTP_PASS", "from-the-shell")
    path = write(tmp_path, GOOD)
    (tmp_path / ".env").write_text(
        "# secrets\nSG_KEY='SG.dotenv-key'\nexport SMTP_PASS=from-dotenv\n"
    )
    c = load_campaign(path)
    assert c.providers[0].parsed.user == "SG.dotenv-key"
    assert c.providers[1].parsed.password == "from-the-shell"  # the environment wins
    assert os.environ["SG_KEY"] == "SG.dotenv-key"
    assert "SG.dotenv-key" in redact.known()


def test_dollar_escape(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("what's new", "save $$5 ${SG_KEY}"))
    c = load_campaign(path, env=ENV)
    assert c.subject.startswith("{{ first_name }}, save $5 SG.secret")


def test_value_parsers() -> None:
    assert parse_rate("3000/min").per_second == 50
    assert parse_rate(20).per_second == 20
    assert parse_rate("100000/h").per_seconds == 3600
    with pytest.raises(ValueError):
        parse_rate("0/s")
    assert parse_duration("24h") == 86400
    assert parse_duration("500ms") == 0.5
    assert parse_duration(30) == 30
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_provider_url_forms() -> None:
    u = parse_provider_url("mailgun://key-abc123@mg.example.com?region=eu")
    assert (u.user, u.host, u.options["region"]) == ("key-abc123", "mg.example.com", "eu")
    u = parse_provider_url("ses://AKIAEXAMPLE:abc/def+ghi=@eu-west-1")
    assert (u.user, u.password, u.host) == ("AKIAEXAMPLE", "abc/def+ghi=", "eu-west-1")
    u = parse_provider_url("smtps://user%40x.example:p%40ss@127.0.0.1:465")
    assert (u.user, u.password, u.port) == ("user@x.example", "p@ss", 465)
    assert "p@ss" not in str(u)
    with pytest.raises(ValueError, match="needs a host"):
        parse_provider_url("smtp://")


def test_api_key_urls_keep_the_key_as_given() -> None:
    u = parse_provider_url("sendgrid://SG.AbC.dEf")
    assert (u.user, u.host) == ("SG.AbC.dEf", None)
    u = parse_provider_url("mailjet://PubKey:PrivKey")
    assert (u.user, u.password) == ("PubKey", "PrivKey")
    u = parse_provider_url("sparkpost://Key123?region=eu")
    assert (u.user, u.options) == ("Key123", {"region": "eu"})
    assert "Key123" not in str(u)
    with pytest.raises(ValueError, match="needs an API key"):
        parse_provider_url("resend://")


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_campaign(path, env={})


def test_redacted_forms() -> None:
    assert str(parse_provider_url("resend://re_123456")) == "resend://***"
    assert (
        str(parse_provider_url("mailgun://key-1234@mg.example.com"))
        == "mailgun://***@mg.example.com"
    )
    assert (
        str(parse_provider_url("smtp://bob:pw1234@127.0.0.1:25")) == "smtp://bob:***@127.0.0.1:25"
    )
