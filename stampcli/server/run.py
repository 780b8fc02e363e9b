"""Build ``stamp serve`` from the environment and run it under uvicorn.

:func:`build` reads every secret from the environment (never from options or
files named on the command line), builds a route per configured provider and
the report said at start-up: which routes answer, and for each one that
answers 404 which variables it lacks. :func:`serve` runs it with the limits
the old stdlib receiver had by hand: at most ``MAX_CONNECTIONS`` connections
and requests at once (more get 503), ``HEADER_TIMEOUT`` seconds for a
request's headers (slow senders are cut off), a deadline per body
(:mod:`stampcli.server.http`), idle keep-alive connections closed after 5 s.
It is meant to listen on loopback behind an HTTPS reverse proxy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stampcli.compliance.tokens import DEFAULT_SECRET_ENV, MIN_SECRET_LEN
from stampcli.errors import ConfigError
from stampcli.sendapi.config import ServeConfig, load_serve_config
from stampcli.sendapi.keys import MIN_ENV_KEY, KeyRing
from stampcli.server.app import StampApp, create_app
from stampcli.server.metrics import Metrics
from stampcli.server.webhooks import (
    Confirm,
    Fetch,
    build_routes,
    confirm_subscription,
    fetch_certificate,
)
from stampcli.server.writer import RecordEvents, StoreWriter, _default_record

if TYPE_CHECKING:
    from stampcli.server.api import ApiState
from stampcli.store import open_store

log = logging.getLogger("stamp.serve")

MAX_CONNECTIONS = 256  # connections and requests at once; a provider flood queues behind it
HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its headers
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open


@dataclass
class Built:
    """The application and what start-up says about it."""

    app: StampApp
    writer: StoreWriter
    report: list[str] = field(default_factory=list)
    api: ApiState | None = None


def build(
    db: str | os.PathLike[str],
    env: Mapping[str, str],
    *,
    secret_env: str = DEFAULT_SECRET_ENV,
    record: RecordEvents = _default_record,
    fetch: Fetch = fetch_certificate,
    confirm: Confirm = confirm_subscription,
    ses_options: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    serve_config: ServeConfig | None = None,
) -> Built:
    """The app for store ``db`` with the secrets in ``env``.

    ``ses_options`` reach ``SESParser`` as they are: ``trusted_certificates`` there is
    the test-only way to trust an SNS certificate of the tests' own. It exists only as
    this Python argument; no request, option or environment variable sets it. ``clock``:
    the time tracking hits are judged by (tests set it).
    """
    routes, missing = build_routes(env, fetch=fetch, confirm=confirm, ses_options=ses_options)
    secret = env.get(secret_env, "")
    report = []
    for label in sorted(set(routes) | set(missing)):
        if label in routes:
            report.append(f"POST /webhooks/{label}: ready")
        else:
            report.append(
                f"POST /webhooks/{label}: not configured, answers 404 "
                f"(set {', '.join(missing[label])})"
            )
    if len(secret) >= MIN_SECRET_LEN:
        report.append("/unsubscribe: ready")
        report.append("GET /o/<token>.gif, /c/<token> (own tracking): ready")
    else:
        state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LEN} characters"
        report.append(f"/unsubscribe: not configured, answers 404 ({secret_env} {state})")
        report.append(f"/o/, /c/ (own tracking): not configured, answer 404 ({secret_env} {state})")
        secret = ""
    writer = StoreWriter(lambda: open_store(db), record)
    api = None
    if serve_config is not None:
        api = api_state(serve_config, env, writer, db)
        api.reload = functools.partial(reload_keys, api, env)
        report += api_report(api)
    app = create_app(
        writer, routes, missing=missing, unsubscribe_secret=secret or None, api=api, clock=clock
    )
    return Built(app, writer, report, api)


def api_state(
    config: ServeConfig,
    env: Mapping[str, str],
    writer: StoreWriter,
    db: str | os.PathLike[str],
) -> ApiState:
    """The send API's shared state: keys from ``config`` and ``env``, the pools' sender."""
    from stampcli.server.api import ApiState
    from stampcli.service.api_send import ApiSender

    metrics = Metrics()

    def counted(state: str, provider: str | None) -> None:
        metrics.messages.labels(state, provider or "-").inc()

    # the providers' daily quotas count in the store (its own connection: the routers run
    # on the event loop), so they hold across restarts and with other processes
    sender = ApiSender(config, on_fate=counted, open_quota_store=lambda: open_store(db))
    return ApiState(config, KeyRing(config, env), writer, sender, metrics)


def api_report(api: ApiState) -> list[str]:
    lines = [
        f"/v1: pool {p.name}: {len(p.keys)} key hash(es){' + ' + p.key_env if p.key_env else ''}"
        f", from {', '.join(p.from_domains)}, providers {', '.join(q.label for q in p.providers)}"
        for p in api.config.pools
    ]
    lines += [
        f"/v1: {m} is not set (or shorter than {MIN_ENV_KEY} characters)" for m in api.keys.missing
    ]
    if not api.keys.has_admin:
        lines.append("/v1/pools, /v1/providers: answer 404 (no admin key: admin_key_env)")
    return lines


def reload_keys(api: ApiState, env: Mapping[str, str]) -> str:
    """Read serve.yml again and take its keys (and From domains, quotas) without a restart.

    Pools, providers and rates are fixed for the process's life: a file that changes
    them is refused whole (the old keys stay) and the answer says so. Requests under
    way finish with the keys they started with.
    """
    try:
        fresh = load_serve_config(api.config.path, env)
    except ConfigError as exc:
        return f"serve.yml not reloaded: {exc}"

    def fixed(c: ServeConfig) -> list[Any]:
        return [(p.name, p.providers, p.rate) for p in c.pools]

    if fixed(fresh) != fixed(api.config):
        return "serve.yml not reloaded: pools, providers and rates change only with a restart"
    keys = KeyRing(fresh, env)
    api.config, api.keys = fresh, keys  # two plain assignments on the loop's thread
    return f"serve.yml reloaded: {len(keys)} keys"


def uvicorn_config(
    app: Any, host: str, port: int, *, limit_concurrency: int | None = None, **extra: Any
) -> Any:
    """The uvicorn configuration ``stamp serve`` runs with (also used by the tests)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_guarded_protocol(),
        lifespan="on",
        access_log=False,  # its lines carry the query string, and the token is in it
        log_config=None,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=limit_concurrency or MAX_CONNECTIONS,
        backlog=1024,
        **extra,
    )


def serve(built: Built, sock: socket.socket) -> None:
    """Run on the bound ``sock`` until SIGINT/SIGTERM (uvicorn's own handling: finish the
    requests in flight, then the lifespan stops the writer after its queue is written)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(built.app, host, port))
    api = built.api
    if api is not None and hasattr(signal, "SIGHUP"):

        def on_hup(signum: int, frame: Any) -> None:
            log.info("%s", reload_keys(api, os.environ))

        signal.signal(signal.SIGHUP, on_hup)
    server.run(sockets=[sock])


def _guarded_protocol() -> Any:
    """uvicorn's httptools protocol with a timeout on reading each request's headers."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a client that connects and sends nothing is cut off too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()

    return GuardedProtocol
