"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl from Debian's ``postgresql``.

:func:`start_cluster` makes a cluster in a fresh temporary directory, starts
it on a free port of 127.0.0.1 (its socket in that directory too, so it never
meets the system's cluster), and :meth:`Cluster.stop` stops it and removes the
directory. ``tests/conftest.py`` starts one per test session, on first use,
and each test that needs a store gets a schema of its own in one shared
database (:meth:`Cluster.new_store_url`), or a database of its own
(:meth:`Cluster.new_database`, slower) where it needs one. Durability is
switched off (``fsync=off``): the cluster lives for one session and nothing
in it is kept.

As root (CI runs as root) the server runs as the ``postgres`` user that the
package creates, through ``runuser``: PostgreSQL refuses to run as root.
:func:`unavailable` says why no cluster can be had here (for the skip reason).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "stamp"  # the cluster's superuser; trust authentication, so no password


def bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb and pg_ctl, or None."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(p).parent / "pg_ctl").exists()
    ]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _run_as() -> str | None:
    """The user to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    return "postgres"


def unavailable() -> str | None:
    """Why no test cluster can be started here, or None when one can."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return (
            "psycopg or psycopg-pool is not installed (pip install 'psycopg[binary]' psycopg-pool)"
        )
    if bin_dir() is None:
        return (
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin); "
            "apt-get install postgresql, as .ci/run does"
        )
    user = _run_as()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no {user!r} user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (util-linux)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster."""

    directory: Path
    port: int
    bin: Path
    user: str | None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _shared: str = ""  # the database the stores of new_store_url live in, once made

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        auth = SUPERUSER if password is None else f"{SUPERUSER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, *, database: str = "postgres") -> None:
        """Run ``sql`` as the superuser in ``database`` (autocommit)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self) -> str:
        """A fresh, empty database; its name (about a second: see :meth:`new_store_url`)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        # WAL_LOG (the default): FILE_COPY would checkpoint the whole cluster every time
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def new_store_url(self) -> tuple[str, str]:
        """(URL, schema): an empty schema of the shared test database, first on the search path.

        A schema takes milliseconds where a database takes a second, and a store
        opened with this URL sees only its own schema's tables.
        """
        if not self._shared:
            self._shared = self.new_database()
        schema = f"s{next(self._names)}"
        self.admin(f"CREATE SCHEMA {schema}", database=self._shared)
        return f"{self.url(self._shared)}?options=-csearch_path%3D{schema}", schema

    def drop_schema(self, schema: str) -> None:
        self.admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE", database=self._shared)

    def stop(self) -> None:
        """Stop the server (immediately: nothing is kept) and remove its directory."""
        try:
            _as(self.user, [str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"),
                            "-m", "immediate", "-w", "stop"])  # fmt: skip
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _as(user: str | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def start_cluster(*, durable: bool = False) -> Cluster:
    """initdb a cluster in a new temporary directory and start it on a free port.

    Not ``durable`` (for tests): fsync, synchronous commit and full-page writes
    off. ``durable``: PostgreSQL's defaults, for measurements.
    """
    bindir = bin_dir()
    if bindir is None:
        raise RuntimeError(unavailable() or "no PostgreSQL")
    user = _run_as()
    # not under pytest's tmp_path: its folders are 0700 root, closed to the postgres user
    directory = Path(tempfile.mkdtemp(prefix="stamp-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        data = directory / "data"
        _as(user, [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])  # fmt: skip
        for attempt in range(5):
            port = _free_port()
            options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
            options += "-c max_connections=200"
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                _as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                           "-l", str(directory / "log"), "-w", "-t", "60", "start"])  # fmt: skip
            except RuntimeError:
                if attempt == 4:  # another process took the port five times: give up
                    raise
                continue
            return Cluster(directory, port, bindir, user)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")
