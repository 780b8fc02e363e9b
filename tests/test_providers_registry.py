"""The provider registry: one entry per scheme, reached lazily, and no module naming every ESP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stampcli.providers import SCHEMES, adapter_class, provider_module
from stampcli.providers.http import HTTPAdapter
from stampcli.providers.pull import puller_for

_ESP_MODULES = sorted({s.module for s in SCHEMES.values()})


def _loaded_after(statement: str) -> list[str]:
    """The stampcli.providers modules a fresh interpreter has loaded after ``statement``."""
    code = (
        f"import sys, json\n{statement}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('stampcli.providers'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_loading_the_config_imports_no_provider_code() -> None:
    assert _loaded_after("import stampcli.config") == [
        "stampcli.providers",
        "stampcli.providers.registry",
    ]


def test_the_pull_names_no_provider() -> None:
    """pull.py dispatches through the registry, so it imports no ESP (no cycle, no if-chain)."""
    loaded = _loaded_after("import stampcli.providers.pull")
    assert not set(loaded) & set(_ESP_MODULES), loaded


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_entry_names_a_real_adapter(scheme: str) -> None:
    cls = adapter_class(scheme)
    assert cls.__module__ == SCHEMES[scheme].module
    # SMTP serves smtp:// and smtps:// with one class
    assert cls.scheme == scheme or (cls.scheme, scheme) == ("smtp", "smtps")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_suppression_pull_sits_beside_an_http_adapter(scheme: str) -> None:
    """The pull reuses the adapter's base URL and auth, so only an HTTP adapter can have one."""
    if puller_for(scheme) is not None:
        assert issubclass(adapter_class(scheme), HTTPAdapter), scheme
    for fmt in getattr(provider_module(scheme), "EXPORT_FORMATS", ()):
        assert fmt.name == scheme  # `stamp suppress import` reports the provider's name
