"""serve.yml is read again when it changes on disk (besides SIGHUP): keys rotate
without a signal; a half-written or pool-changing file leaves the keys in use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from api_helpers import ADMIN_KEY, api_server, auth, message
from provider_fakes import PostmarkFake

from stampcli.sendapi.keys import hash_key, new_key
from stampcli.server.config_watch import ConfigWatch


def test_check_reloads_once_per_change_and_not_for_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.yml"
    path.write_text("a: 1\n")
    calls: list[int] = []
    watch = ConfigWatch(path, lambda: f"reloaded {len(calls.append(1) or calls)}")
    assert watch.check() is None  # as it was when the watch began
    path.write_text("a: 22\n")
    assert watch.check() == "reloaded 1"
    assert watch.check() is None  # one reload per change
    path.unlink()
    assert watch.check() is None  # gone: the keys in use stay
    other = tmp_path / "new.yml"
    other.write_text("a: 333\n")
    os.replace(other, path)  # an editor's save: a new file in its place
    assert watch.check() == "reloaded 2"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched only
    assert watch.check() == "reloaded 3"


def wait_status(post: str, key: str, want: int, timeout: float = 10.0) -> int:
    end = time.monotonic() + timeout
    while True:
        code = httpx.post(post, json=message(), headers=auth(key)).status_code
        if code == want or time.monotonic() > end:
            return code
        time.sleep(0.05)


def test_a_new_key_written_to_serve_yml_works_without_sighup(tmp_path: Path) -> None:
    with (
        PostmarkFake() as fake,
        api_server(
            tmp_path,
            [{"url": fake.provider_url(), "endpoint": fake.url}],
            extra={"reload_every": "0.1s"},
        ) as (url, key, _),
    ):
        config = tmp_path / "serve.yml"
        post = f"{url}/v1/messages?wait=false"
        fresh = new_key()
        text = config.read_text()
        config.write_text(text.replace(hash_key(key), hash_key(fresh)))
        assert wait_status(post, fresh, 202) == 202
        assert httpx.post(post, json=message(), headers=auth(key)).status_code == 401
        # a half-written file does not load: the keys in use stay
        config.write_text("pools:\n  - name: app\n    keys: [")
        time.sleep(0.5)
        assert httpx.post(post, json=message(), headers=auth(fresh)).status_code == 202
        # a file that changes providers is refused whole, as with SIGHUP
        config.write_text(text.replace("postmark://", "postmark://x"))  # the old key, too
        time.sleep(0.5)
        assert httpx.post(post, json=message(), headers=auth(fresh)).status_code == 202
        assert httpx.post(post, json=message(), headers=auth(key)).status_code == 401
        # and the old key back, in a good file: taken
        config.write_text(text)
        assert wait_status(post, key, 202) == 202
        assert httpx.get(f"{url}/v1/pools", headers=auth(ADMIN_KEY)).status_code == 200
