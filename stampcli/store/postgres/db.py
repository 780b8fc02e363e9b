"""The PostgreSQL store: its connection pool, its schema versions, and its errors.

``postgresql://user@host/db`` (or ``postgres://``; any libpq URL, with its
query options) opens a store shared by every process that names it. The
connections come from a :class:`psycopg_pool.ConnectionPool`, so one store
can be used from several threads (the unsubscribe server's); the calls stay
synchronous and batch-shaped, as the protocols ask. Connections run in
autocommit: a write of one statement (a claim or a record of 500 rows) is one
round trip and one commit, and writes of more statements use
:meth:`PostgresStore.transaction`.

The schema is ``schema.sql`` beside this module, its version in the
``stamp_schema`` table. Opening read-write creates it in an empty database
or upgrades an older one (:data:`MIGRATIONS`), under an advisory lock so that
workers starting together migrate once. A newer schema, a schema too old to
read without upgrading, or a database holding tables of the same names that
stamp did not make is refused with :class:`StoreError`: a store is upgraded
or refused, never misread.

A password in the URL is registered with :mod:`stampcli.redact` and never
appears in :attr:`location` or any error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from stampcli import redact
from stampcli.errors import StoreError
from stampcli.store.db import now

if TYPE_CHECKING:
    from stampcli.store.postgres.activity import PostgresActivity
    from stampcli.store.postgres.api_queue import PostgresApiQueue
    from stampcli.store.postgres.campaigns import PostgresCampaigns, PostgresRuns
    from stampcli.store.postgres.contacts import PostgresContacts
    from stampcli.store.postgres.events import PostgresEvents
    from stampcli.store.postgres.fleet import PostgresFleet
    from stampcli.store.postgres.leases import PostgresLeases, PostgresRates
    from stampcli.store.postgres.ledger import PostgresLedger
    from stampcli.store.postgres.locks import PostgresLocks
    from stampcli.store.postgres.quota import PostgresQuota
    from stampcli.store.postgres.reports import PostgresReports
    from stampcli.store.postgres.schedules import PostgresSchedules
    from stampcli.store.postgres.suppressions import PostgresSuppressions


_REPORT_INDEX_MARK = "-- The report's read index"


def _schema_part(start: str, end: str | None) -> str:
    """The statements of ``schema.sql`` from the comment ``start`` up to ``end`` (None: to
    the end): what one migration step adds, written once (in schema.sql)."""
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    return text[text.index(start) : len(text) if end is None else text.index(end)]


# 1 -> 2: the report tables; 4 -> 5: schedules; 2 -> 3: `stamp worker`'s queue and workers;
# 5 -> 6: the lease tables of several workers on one campaign
_REPORT_TABLES = _schema_part("-- What the router counted", "-- Several workers on one campaign")
_SCHEDULES = _schema_part("-- Schedule state", "-- `stamp worker`")
FLEET_TABLES = _schema_part("-- `stamp worker`", "-- the send API's queue")
LEASE_TABLES = _schema_part("-- Several workers on one campaign", "-- end of the lease tables")
# 6 -> 7: the report's read index on events
_REPORT_INDEX = _schema_part(_REPORT_INDEX_MARK, "-- Shared circuit breakers")
# 7 -> 8: circuit breakers shared by the workers of a campaign
BREAKER_TABLES = _schema_part("-- Shared circuit breakers", "-- end of the shared breakers")
SCHEMA_VERSION = 8
# version -> the SQL that takes a store of that version to the next
MIGRATIONS: dict[int, str] = {
    # 1 -> 2: the router's per-run tallies for `stamp report` (the tables of schema.sql)
    1: _REPORT_TABLES,
    # 2 -> 3: `stamp worker`'s queue and workers
    2: FLEET_TABLES,
    # 3 -> 4: the send API's queue and idempotency keys (set below from schema.sql)
    # 4 -> 5: schedules (stampcli.store.postgres.schedules)
    4: _SCHEDULES,
    # 5 -> 6: row leases, workers of one campaign, planning turns, shared rate buckets
    5: LEASE_TABLES,
    # 6 -> 7: the report's read index (stampcli/store/report_sql.py)
    6: _REPORT_INDEX,
    # 7 -> 8: circuit breakers shared by the workers of a campaign (provider_breakers)
    7: BREAKER_TABLES,
}
# the tables schema.sql makes: a database with one of them but no stamp_schema is not ours
TABLES = (
    "lists", "contacts", "suppressions", "campaigns", "ledger", "locks", "quota_usage", "runs",
    "events", "event_cursors", "provider_tallies", "provider_answer_times",
    "fleet_queue", "fleet_workers", "api_messages", "api_idempotency",
    "schedules", "campaign_workers", "ledger_leases", "campaign_plans", "rate_buckets",
    "provider_breakers",
)  # fmt: skip
# pg_advisory_xact_lock key held while a store's schema is created or migrated ('stmp')
_MIGRATION_LOCK = 0x73746D70
POOL_MIN = 1
POOL_MAX = 4  # the engine uses one; the rest are for threads such as the unsubscribe server's
CONNECT_TIMEOUT = 10  # seconds to reach the server
POOL_TIMEOUT = 30.0  # seconds to wait for a free connection of the pool


def schema_sql() -> str:
    """The text of ``schema.sql``: the whole schema at :data:`SCHEMA_VERSION`."""
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


_API_TABLES_MARK = "-- the send API's queue and idempotency keys"
# 3 -> 4: the send API's tables, the part of schema.sql from its mark to the report tables
MIGRATIONS[3] = (
    _API_TABLES_MARK
    + schema_sql().split(_API_TABLES_MARK, 1)[1].split("-- What the router counted", 1)[0]
)


def without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


def holds_store(url: str) -> bool:
    """Whether the database at ``url`` holds a stamp store (its ``stamp_schema`` table).

    For "does the store exist yet" questions (the notice that a command creates
    a store, a status that must create nothing). A server that cannot be
    reached, or refuses us, counts as holding one: opening it says why.
    """
    try:
        with psycopg.connect(
            conninfo(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT
        ) as conn:
            row = conn.execute("SELECT to_regclass('stamp_schema') IS NOT NULL").fetchone()
    except (psycopg.Error, StoreError):
        return True
    return bool(row and row[0])


def conninfo(url: str) -> str:
    """The libpq URL for ``url``: ``postgres://`` is spelled ``postgresql://``."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        return f"postgresql://{rest}"
    raise StoreError(f"store {without_password(text)}: not a postgresql:// URL")


def store_error(exc: BaseException, location: str) -> StoreError:
    """A StoreError a person can act on, from a psycopg or pool failure (no password in it)."""
    text = redact.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    sqlstate = getattr(exc, "sqlstate", None) or ""
    low = text.lower()
    # a failed connection carries no SQLSTATE: libpq's text is all there is
    if isinstance(exc, psycopg_pool.PoolTimeout):
        why = "no connection to the server could be had in time (is it up and reachable?)"
    elif sqlstate == "3D000" or ("database" in low and "does not exist" in low):
        why = f"no such database ({_server_says(text)}); create it first (createdb)"
    elif "password authentication failed" in low or "no password supplied" in low:
        why = f"the server refused the login: {_server_says(text)}"
    elif sqlstate.startswith("28"):  # invalid authorization
        why = f"the server refused the login: {text}"
    elif sqlstate == "42501":  # insufficient_privilege
        why = f"the user may not do this: {text}"
    elif sqlstate == "25006":  # read_only_sql_transaction
        why = "the store was opened read-only, or the server is a read-only replica"
    elif sqlstate == "53100":  # disk_full
        why = "the server's disk is full; free some space and run again"
    elif sqlstate.startswith("40"):  # serialization failure, deadlock
        why = f"a concurrent run got in the way ({text}); try again"
    elif isinstance(exc, psycopg.OperationalError):
        why = f"cannot reach the server: {text}"
    else:
        why = text
    return StoreError(f"store {location}: {why}")


def _server_says(text: str) -> str:
    """The server's own words in a libpq connection error (after its ``FATAL:``)."""
    return text.rsplit("FATAL:", 1)[-1].strip()


class PostgresStore:
    """An open PostgreSQL store. Use as a context manager, or call :meth:`close`.

    It implements :class:`stampcli.store.protocols.Store`; its parts are the
    ``Postgres*`` classes of the sibling modules, one per table (or two).
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self._url = conninfo(url)
        parts = urlsplit(self._url)
        redact.register(parts.password)
        self._location = without_password(url.strip())
        self.readonly = readonly
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[TupleRow]] | None
        self._pool = None
        kwargs: dict[str, object] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "stamp",
        }
        with self.errors():
            with psycopg.connect(self._url, **kwargs) as conn:  # type: ignore[arg-type]
                # a first connection of our own: a wrong host or password is said now,
                # with the server's reason, rather than as a pool timeout later
                if readonly:
                    self._check_readable(conn)
                else:
                    self._migrate(conn)
            self._pool = psycopg_pool.ConnectionPool(
                self._url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                kwargs=kwargs,
                configure=self._configure,
                timeout=POOL_TIMEOUT,
                name="stamp",
                open=False,
            )
            self._pool.open(wait=True, timeout=POOL_TIMEOUT)

    def _configure(self, conn: psycopg.Connection[TupleRow]) -> None:
        # psycopg prepares a statement run five times, and the server then may plan it
        # once for any parameters: for `id = ANY(500 ids)` that generic plan scans the
        # whole ledger (measured: a 500-row claim 40 ms -> 290 ms). Plan each run anew.
        conn.execute("SET plan_cache_mode = force_custom_plan")
        if self.readonly:
            # the server itself refuses any write on these connections
            conn.execute("SET default_transaction_read_only = on")

    # ------------------------------------------------------------------ schema

    def _version(self, conn: psycopg.Connection[TupleRow]) -> int | None:
        """The schema version in the database; None if stamp never made a store there."""
        row = conn.execute("SELECT to_regclass('stamp_schema') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return None
        found = conn.execute("SELECT max(version) FROM stamp_schema").fetchone()
        if found is None or found[0] is None:
            raise StoreError(f"store {self._location}: its stamp_schema table is empty")
        return int(found[0])

    def _foreign_tables(self, conn: psycopg.Connection[TupleRow]) -> list[str]:
        rows = conn.execute(  # to_regclass looks along the search path, as CREATE TABLE does
            "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL ORDER BY t",
            (list(TABLES),),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _check_readable(self, conn: psycopg.Connection[TupleRow]) -> None:
        version = self._version(conn)
        if version is None:
            raise StoreError(
                f"store {self._location}: no such database: it holds no stamp store yet "
                "(import a list first)"
            )
        self._check_not_newer(version)
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"store {self._location}: made by an older stamp (schema {version}); "
                "run a command that writes (stamp import, stamp send) once to upgrade it"
            )

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self._location}: written by a newer stamp (schema {version}, "
                f"this one knows {SCHEMA_VERSION}); upgrade stamp"
            )

    def _migrate(self, conn: psycopg.Connection[TupleRow]) -> None:
        with conn.transaction():
            # one process at a time creates or upgrades; the others wait, then see it done
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = self._version(conn)
            if version == SCHEMA_VERSION:
                return
            if version is None:
                foreign = self._foreign_tables(conn)
                if foreign:
                    raise StoreError(
                        f"store {self._location}: the database already has tables stamp did "
                        f"not make ({', '.join(foreign)}); use an empty database or schema"
                    )
                conn.execute(schema_sql().encode())
            else:
                self._check_not_newer(version)
                for step in range(version, SCHEMA_VERSION):
                    sql = MIGRATIONS.get(step)
                    if sql is None:
                        raise StoreError(
                            f"store {self._location}: schema {version} cannot be upgraded by "
                            "this stamp; upgrade with the stamp release that followed it"
                        )
                    conn.execute(sql.encode())
                conn.execute("DELETE FROM stamp_schema")
            conn.execute(
                "INSERT INTO stamp_schema (version, migrated_at) VALUES (%s, %s)",
                (SCHEMA_VERSION, now()),
            )

    # ------------------------------------------------------------------ connections

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A connection of the pool (autocommit) for the block; failures become StoreError."""
        if self._pool is None:
            raise StoreError(f"store {self._location}: the store is closed")
        with self.errors(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """One transaction on a pooled connection: committed at the end, rolled back on error."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def analyze(self, table: str) -> None:
        """Refresh the planner's statistics of ``table`` after a bulk write.

        Without them a table just filled looks nearly empty to the planner, and
        a claim or record of 500 ids is planned as a scan of the whole table
        (measured: 50 ms a batch on 20k rows instead of a few). Autovacuum
        would catch up only after a minute or so. A user that may not analyze
        the table gets a warning from the server, not an error: nothing is lost.
        """
        if table not in TABLES:
            raise ValueError(f"not a stamp table: {table!r}")
        with self.connection() as conn:
            conn.execute(f"ANALYZE {table}".encode())

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Map psycopg and pool failures in the block to :class:`StoreError`."""
        try:
            yield
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise store_error(exc, self._location) from None

    @contextmanager
    def checkpoints_in_background(self) -> Iterator[None]:
        """Nothing to do: the server checkpoints on its own, off the writer's connection."""
        yield

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @property
    def location(self) -> str:
        """The URL without its password."""
        return self._location

    @property
    def shared_by_hosts(self) -> bool:
        """True: workers on many machines share it (row leases, ``store.leases``)."""
        return True

    # The protocol's parts. Imported here, not at the top: each module imports this one.

    @cached_property
    def ledger(self) -> PostgresLedger:
        from stampcli.store.postgres.ledger import PostgresLedger

        return PostgresLedger(self)

    @cached_property
    def campaigns(self) -> PostgresCampaigns:
        from stampcli.store.postgres.campaigns import PostgresCampaigns

        return PostgresCampaigns(self)

    @cached_property
    def runs(self) -> PostgresRuns:
        from stampcli.store.postgres.campaigns import PostgresRuns

        return PostgresRuns(self)

    @cached_property
    def contacts(self) -> PostgresContacts:
        from stampcli.store.postgres.contacts import PostgresContacts

        return PostgresContacts(self)

    @cached_property
    def suppressions(self) -> PostgresSuppressions:
        from stampcli.store.postgres.suppressions import PostgresSuppressions

        return PostgresSuppressions(self)

    @cached_property
    def locks(self) -> PostgresLocks:
        from stampcli.store.postgres.locks import PostgresLocks

        return PostgresLocks(self)

    @cached_property
    def events(self) -> PostgresEvents:
        from stampcli.store.postgres.events import PostgresEvents

        return PostgresEvents(self)

    @cached_property
    def leases(self) -> PostgresLeases:
        from stampcli.store.postgres.leases import PostgresLeases

        return PostgresLeases(self)

    @cached_property
    def rates(self) -> PostgresRates:
        from stampcli.store.postgres.leases import PostgresRates

        return PostgresRates(self)

    @cached_property
    def quota(self) -> PostgresQuota:
        from stampcli.store.postgres.quota import PostgresQuota

        return PostgresQuota(self)

    @cached_property
    def activity(self) -> PostgresActivity:
        from stampcli.store.postgres.activity import PostgresActivity

        return PostgresActivity(self)

    @cached_property
    def reports(self) -> PostgresReports:
        from stampcli.store.postgres.reports import PostgresReports

        return PostgresReports(self)

    @cached_property
    def fleet(self) -> PostgresFleet:
        from stampcli.store.postgres.fleet import PostgresFleet

        return PostgresFleet(self)

    @cached_property
    def api_queue(self) -> PostgresApiQueue:
        from stampcli.store.postgres.api_queue import PostgresApiQueue

        return PostgresApiQueue(self)

    @cached_property
    def schedules(self) -> PostgresSchedules:
        from stampcli.store.postgres.schedules import PostgresSchedules

        return PostgresSchedules(self)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
