"""``stamp api``: API keys for the send API of ``stamp serve --config serve.yml``.

``stamp api keygen`` prints a new key (once: it is never stored) and the SHA-256
hash that goes into a pool's ``keys:``; ``stamp api keys serve.yml`` checks the
file and lists each pool with the hashes it accepts (never a key).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from stampcli.cli.common import command, console

api_app = typer.Typer(
    name="api",
    help="API keys for the send API (stamp serve --config serve.yml).",
    no_args_is_help=True,
)


@command
def keygen(
    pool: Annotated[str, typer.Option("--pool", help="Pool name shown in the hint.")] = "POOL",
) -> None:
    """Print a new API key and its SHA-256 hash (put the hash in the pool's keys:)."""
    from stampcli.sendapi.keys import hash_key, new_key

    key = new_key()
    console.print(f"key:  {key}", markup=False, soft_wrap=True, highlight=False)
    console.print(f"hash: {hash_key(key)}", markup=False, soft_wrap=True, highlight=False)
    console.print(
        f"Add the hash to keys: of pool {pool!r} in serve.yml, then send SIGHUP to stamp "
        "serve (or restart it). The key is shown only now; give it to the application.",
        markup=False,
        soft_wrap=True,
        highlight=False,
    )


@command
def keys(
    config: Annotated[Path, typer.Argument(help="The serve.yml file.")],
) -> None:
    """Check serve.yml and list its pools with the key hashes each accepts."""
    from stampcli.sendapi.config import load_serve_config
    from stampcli.sendapi.keys import KeyRing

    loaded = load_serve_config(config)
    ring = KeyRing(loaded, os.environ)
    for pool in loaded.pools:
        console.print(
            f"{pool.name}: from {', '.join(pool.from_domains)}; providers "
            f"{', '.join(p.label for p in pool.providers)}",
            markup=False,
            soft_wrap=True,
            highlight=False,
        )
        for h in pool.keys:
            console.print(f"  sha256 {h[:12]}…", markup=False, highlight=False)
        if pool.key_env:
            state = "missing" if any(m.startswith(f"{pool.name}:") for m in ring.missing) else "set"
            console.print(f"  ${pool.key_env} ({state})", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    api_app.command("keygen")(keygen)
    api_app.command("keys")(keys)
    app.add_typer(api_app)
