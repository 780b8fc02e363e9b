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


def run_server(
    host: str, port: int, db: str | None, secret_env: str, log_level: str = "info"
) -> None:
    """Build the service from the environment and run it until Ctrl-C / SIGTERM."""
    from stampcli.server.run import build, serve
    from stampcli.store.location import standalone

    if log_level.lower() not in _LEVELS:
        raise InputError(f"--log-level {log_level!r}: use one of {', '.join(_LEVELS)}")
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s stamp serve %(levelname)s: %(message)s",
        force=True,
    )
    choice = standalone(db)
    say_new_store(choice, "the server")
    choice.open().close()  # a store that cannot be opened is said now, exit 7
    built = build(choice.target, os.environ, secret_env=secret_env)
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
    log.info("store %s", choice.location)
    for line in built.report:
        log.info("%s", line)
    # on stdout, as `stamp unsubscribe serve` always said it (scripts read the port from it)
    console.print(
        f"listening on http://{host}:{bound}/ (store {choice.describe()}; Ctrl-C stops)",
        soft_wrap=True,
    )
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
) -> None:
    """Receive provider webhooks and one-click unsubscribes; GET /healthz for monitoring.

    Routes: POST /webhooks/<provider> for sendgrid, mailgun, ses, postmark, resend,
    mailjet, sparkpost, mandrill and brevo (each answers 404 until its secret is in the
    environment), /unsubscribe?t=TOKEN (needs STAMP_UNSUBSCRIBE_SECRET), GET /healthz
    (200 when the store answers). Listen on loopback and put an HTTPS reverse proxy in
    front; see the README's "Delivery events" section for each provider's setup.
    """
    run_server(host, port, db, secret_env, log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
