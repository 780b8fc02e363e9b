"""Property tests: no campaign file, however broken, gets anything but a ConfigError."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stampcli.config import Campaign, campaign_from_data, load_campaign
from stampcli.errors import ConfigError

KEYS = [
    "name", "from", "subject", "template", "audience", "providers", "unsubscribe",
    "headers", "throttle", "variables", "reply_to", "list_id", "attachments", "images",
    "url", "rate", "file", "segment", "list", "weight", "daily_quota", "nmae", "${X}",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["outbox://o", "smtp://", "sendgrid://${K}", "50/s", "t.html", "a@b.example"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=25,
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(doc=documents)
def test_any_yaml_document_loads_or_fails_cleanly(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        result = load_campaign(path, env={"K": "key-value"})
    except ConfigError as exc:
        assert str(exc).strip()
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(result, Campaign)


@SETTINGS
@given(doc=documents)
def test_any_data_builds_or_fails_cleanly(tmp_path: Path, doc: object) -> None:
    """The send API's way in: the same documents as data, never anything but a ConfigError."""
    try:
        result = campaign_from_data(doc, base_dir=tmp_path, env={"K": "key-value"})  # type: ignore[arg-type]
    except ConfigError as exc:
        assert str(exc).startswith("<data>")
    else:
        assert isinstance(result, Campaign)


@SETTINGS
@given(text=st.text(max_size=300))
def test_any_text_loads_or_fails_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_campaign(path, env={})
    except ConfigError as exc:
        assert str(exc).strip()


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_load_or_fail_cleanly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "c.yml"
    path.write_bytes(data)
    try:
        load_campaign(path, env={})
    except ConfigError as exc:
        assert str(exc).strip()
