"""``stamp serve``: the one HTTP service for what reaches stamp from outside.

Provider webhooks (``POST /webhooks/<provider>``), the one-click unsubscribe
receiver (``/unsubscribe``), own open/click tracking (``/o/``, ``/c/``) and a
health route (``GET /healthz``), on one port,
meant for loopback behind an HTTPS reverse proxy. Secrets come only from the
environment; the start-up lines say which routes answer and what the others lack.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated, Any

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
SmtpPortOption = Annotated[
    int | None,
    typer.Option(
        "--smtp",
        help="Also take bounce mail over SMTP on this port (needs --return-path).",
    ),
]
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
ReturnPathOption = Annotated[
    str | None,
    typer.Option(
        "--return-path",
        help="The campaigns' bounces.return_path (bounces@bounce.example): the listener "
        "takes mail for its domain only, VERP addresses only with valid tokens.",
    ),
]
VerpSecretEnvOption = Annotated[
    str,
    typer.Option("--verp-secret-env", help="Environment variable holding the VERP secret."),
]


def start_smtp(
    host: str, port: int, return_path: str | None, verp_secret_env: str, path: str | Path
) -> Any:
    """The inbound bounce listener (stampcli.server.inbound_smtp), started."""
    from stampcli.compliance.verp import Verp, verp_secret
    from stampcli.server.inbound_smtp import InboundListener
    from stampcli.service.bounces import BounceSettings
    from stampcli.store import open_store

    if not return_path:
        raise InputError("--smtp needs --return-path (the campaigns' bounces.return_path)")
    verp = Verp.of(return_path, verp_secret(verp_secret_env))
    listener = InboundListener(
        BounceSettings(verp=verp), lambda: open_store(path), host=host, port=port
    )
    try:
        listener.start()
    except OSError as exc:
        raise InputError(f"cannot listen for SMTP on {host}:{port} ({exc.strerror})") from None
    return listener


def run_server(
    host: str,
    port: int,
    db: str | None,
    secret_env: str,
    log_level: str = "info",
    *,
    smtp: int | None = None,
    return_path: str | None = None,
    verp_secret_env: str = "STAMP_VERP_SECRET",
    config: Path | None = None,
    smtp_relay: int | None = None,
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
    serve_config = None
    if config is not None:
        from stampcli.sendapi.config import load_serve_config

        serve_config = load_serve_config(config)  # a bad file: exit 2 before listening
    elif smtp_relay is not None:
        raise InputError("--smtp-relay needs --config serve.yml (its pools hold the credentials)")
    _access_log()
    choice = standalone(db)
    say_new_store(choice, "the server")
    choice.open().close()  # a store that cannot be opened is said now, exit 7
    built = build(choice.target, os.environ, secret_env=secret_env, serve_config=serve_config)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(1024)  # connections made from now on wait in the backlog until uvicorn runs
    listener = None
    if smtp is not None:
        try:
            listener = start_smtp(host, smtp, return_path, verp_secret_env, choice.target)
        except BaseException:
            sock.close()
            raise
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
    if listener is not None:
        console.print(
            f"taking bounce mail on smtp://{host}:{listener.port}/ for "
            f"{listener.handler.verp.domain}",
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
        if listener is not None:
            listener.stop()
    err_console.print("stopped")


@command
def serve(
    port: PortOption = 8025,
    host: HostOption = "127.0.0.1",
    db: DbOption = None,
    secret_env: SecretEnvOption = DEFAULT_SECRET_ENV,
    log_level: LogLevelOption = "info",
    smtp: SmtpPortOption = None,
    return_path: ReturnPathOption = None,
    verp_secret_env: VerpSecretEnvOption = "STAMP_VERP_SECRET",
    config: ConfigOption = None,
    smtp_relay: RelayOption = None,
) -> None:
    """Receive provider webhooks and one-click unsubscribes; GET /healthz for monitoring.

    Routes: POST /webhooks/<provider> for sendgrid, mailgun, ses, postmark, resend,
    mailjet, sparkpost, mandrill and brevo (each answers 404 until its secret is in the
    environment), /unsubscribe?t=TOKEN (needs STAMP_UNSUBSCRIBE_SECRET), GET /o/TOKEN.gif
    and GET /c/TOKEN for campaigns with tracking.own (the same secret), GET /healthz
    (200 when the store answers). Listen on loopback and put an HTTPS reverse proxy in
    front; see the README's "Delivery events" section for each provider's setup.
    With --smtp PORT --return-path bounces@bounce.example it also takes bounce mail
    over SMTP for that domain (point its MX here; README "Bounces of SMTP sends").
    With --config serve.yml: the send API at /v1 (OpenAPI at /openapi.json, docs at
    /docs), and with --smtp-relay PORT an SMTP submission port; see "Send API".
    """
    run_server(
        host,
        port,
        db,
        secret_env,
        log_level,
        config=config,
        smtp_relay=smtp_relay,
        smtp=smtp,
        return_path=return_path,
        verp_secret_env=verp_secret_env,
    )


def _access_log() -> None:
    """The send API's JSON access lines: on stderr as they are (each line one JSON)."""
    import sys

    access = logging.getLogger("stamp.access")
    access.propagate = False
    access.handlers[:] = [logging.StreamHandler(sys.stderr)]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
