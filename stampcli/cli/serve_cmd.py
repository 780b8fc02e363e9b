"""``stamp serve``: the one HTTP service for what reaches stamp from outside.

Provider webhooks (``POST /webhooks/<provider>``), the one-click unsubscribe
receiver (``/unsubscribe``) and a health route (``GET /healthz``), on one port,
meant for loopback behind an HTTPS reverse proxy. Secrets come only from the
environment; the start-up lines say which routes answer and what the others lack.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from stampcli.cli.common import DbOption, command, console, err_console, say_new_store
from stampcli.compliance.tokens import DEFAULT_SECRET_ENV
from stampcli.errors import InputError

HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[
    int, typer.Option("--port", help="TCP port to listen on (0: any free port).", min=0, max=65535)
]
SecretEnvOption = Annotated[
    str,
    typer.Option("--secret-env", help="Environment variable holding the unsubscribe token secret."),
]
LogLevelOption = Annotated[
    str,
    typer.Option(
        "--log-level",
        help="debug, info, warning or error.",
        case_sensitive=False,
    ),
]
_LEVELS = ("debug", "info", "warning", "error")
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="serve.yml: pools of API keys and providers; turns on the send API (/v1).",
        exists=False,
    ),
]
RelayOption = Annotated[
    int | None,
    typer.Option(
        "--smtp-relay",
        help="Also accept authenticated SMTP submissions (STARTTLS) on this port (needs --config).",
        min=0,
        max=65535,
    ),
]


def run_server(
    host: str,
    port: int,
    db: Path | None,
    secret_env: str,
    log_level: str = "info",
    config: Path | None = None,
    smtp_relay: int | None = None,
) -> None:
    """Build the service from the environment and run it until Ctrl-C / SIGTERM."""
    from stampcli.server.run import build, serve
    from stampcli.store import open_store
    from stampcli.store.location import standalone

    if log_level.lower() not in _LEVELS:
        raise InputError(f"--log-level {log_level!r}: use one of {', '.join(_LEVELS)}")
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s stamp serve %(levelname)s: %(message)s",
        force=True,
    )
    serve_config = None
    if config is not None:
        from stampcli.sendapi.config import load_serve_config

        serve_config = load_serve_config(config)  # a bad file: exit 2 before listening
    elif smtp_relay is not None:
        raise InputError("--smtp-relay needs --config serve.yml (its pools hold the credentials)")
    _access_log()
    choice = standalone(db)
    say_new_store(choice, "the server")
    path = choice.path
    open_store(path).close()  # a store that cannot be opened is said now, exit 7
    built = build(path, os.environ, secret_env=secret_env, serve_config=serve_config)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(1024)  # connections made from now on wait in the backlog until uvicorn runs
    bound = sock.getsockname()[1]
    log = logging.getLogger("stamp.serve")
    log.info("store %s", path)
    for line in built.report:
        log.info("%s", line)
    # on stdout, as `stamp unsubscribe serve` always said it (scripts read the port from it)
    console.print(
        f"listening on http://{host}:{bound}/ (store {choice.describe()}; Ctrl-C stops)",
        soft_wrap=True,
    )
    if smtp_relay is not None and built.api is not None:
        from stampcli.server.smtp_relay import relay_from_env

        built.api.relay = relay_from_env(built.api, host, smtp_relay, os.environ)
        log.info("SMTP relay on %s:%d (AUTH after STARTTLS only)", host, smtp_relay)
    try:
        serve(built, sock)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it shut down on: a normal stop, exit 0
    finally:
        sock.close()
    err_console.print("stopped")


@command
def serve(
    port: PortOption = 8025,
    host: HostOption = "127.0.0.1",
    db: DbOption = None,
    secret_env: SecretEnvOption = DEFAULT_SECRET_ENV,
    log_level: LogLevelOption = "info",
    config: ConfigOption = None,
    smtp_relay: RelayOption = None,
) -> None:
    """Receive provider webhooks and one-click unsubscribes; GET /healthz for monitoring.

    Routes: POST /webhooks/<provider> for sendgrid, mailgun, ses, postmark, resend,
    mailjet, sparkpost, mandrill and brevo (each answers 404 until its secret is in the
    environment), /unsubscribe?t=TOKEN (needs STAMP_UNSUBSCRIBE_SECRET), GET /healthz
    (200 when the store answers). Listen on loopback and put an HTTPS reverse proxy in
    front; see the README's "Delivery events" section for each provider's setup.
    With --config serve.yml: the send API at /v1 (OpenAPI at /openapi.json, docs at
    /docs), and with --smtp-relay PORT an SMTP submission port; see "Send API".
    """
    run_server(host, port, db, secret_env, log_level, config, smtp_relay)


def _access_log() -> None:
    """The send API's JSON access lines: on stderr as they are (each line one JSON)."""
    import sys

    access = logging.getLogger("stamp.access")
    access.propagate = False
    access.handlers[:] = [logging.StreamHandler(sys.stderr)]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
