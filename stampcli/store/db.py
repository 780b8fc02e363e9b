"""The SQLite store: opening it, its schema, and turning SQLite failures into StoreError.

One file (chosen by :mod:`stampcli.store.location`: ``--db``, ``store:``, ``STAMP_DB``
or ``stamp.db`` beside the campaign or list file) holds
the imported lists, the suppression list, every campaign's ledger, locks and
quota counters. The tables are read and written by the sibling modules
(contacts, ledger, suppressions, locks, quota); this module only owns the
connection and the schema, so that a second backend is one more module.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from stampcli.errors import StoreError

if TYPE_CHECKING:
    from stampcli.store.activity import SQLiteActivity
    from stampcli.store.api_queue import SQLiteApiQueue
    from stampcli.store.campaigns import SQLiteCampaigns, SQLiteRuns
    from stampcli.store.contacts import SQLiteContacts
    from stampcli.store.events import SQLiteEvents
    from stampcli.store.fleet import SQLiteFleet
    from stampcli.store.leases import SQLiteLeases, SQLiteRates
    from stampcli.store.ledger import SQLiteLedger
    from stampcli.store.locks import SQLiteLocks
    from stampcli.store.quota import SQLiteQuota
    from stampcli.store.reports import SQLiteReports
    from stampcli.store.schedules import SQLiteSchedules
    from stampcli.store.suppressions import SQLiteSuppressions

DEFAULT_DB = "stamp.db"
# 2: the ledger's state check without IN (see _LEDGER_TABLE)
# 3: delivery events (events, event_cursors), campaigns.settings, ledger by provider message id
# 4: the tables and indexes added after 3 (report tallies, fleet, send API queue, schedules,
#    row leases, the report's read index): SCHEMA is all IF NOT EXISTS, and it runs only on
#    a store older than SCHEMA_VERSION, so a store made at 3 gains them only by this bump
SCHEMA_VERSION = 4
CHECKPOINT_EVERY = 0.25  # seconds between background WAL checkpoints during a send
AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, restored after a background checkpointer
# WAL pages past which the writer's connection makes the log start over (RESTART):
# passive checkpoints alone may never catch up with a steady writer. A 100k send
# reaches ~25 MB of WAL; each restart is a short stall, so they are kept rare.
WAL_RESTART_PAGES = 16_384
WAL_SIZE_LIMIT = 64 << 20  # bytes a WAL file is cut back to when it starts over

LEDGER_STATES = ("pending", "sending", "sent", "deferred", "failed", "unknown", "suppressed")
# The table's check also accepts 'skipped', a state every schema has listed and no
# version of stamp ever wrote: dropping it would make the table of a new store differ
# from every existing one's (and need a copy of each ledger) for nothing.
_CHECKED_STATES = (*LEDGER_STATES, "skipped")
# The state check is a chain of `=`, not `state IN (...)`: SQLite builds the IN list's
# lookup table again for every row a statement writes, which cost ~5 us on each insert
# and state change (about a third of a ledger write).
_STATE_CHECK = " OR ".join(f"state = '{s}'" for s in _CHECKED_STATES)
_LEDGER_TABLE = f"""CREATE TABLE IF NOT EXISTS {{name}} (
    id                  INTEGER PRIMARY KEY,
    campaign_id         INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    key                 TEXT NOT NULL,
    email               TEXT NOT NULL,
    fields              TEXT NOT NULL,   -- JSON snapshot of the contact at planning time
    state               TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    provider            TEXT,
    provider_message_id TEXT,
    message_id          TEXT,
    last_error          TEXT,
    next_attempt_at     REAL,
    first_attempt_at    REAL,           -- expire_after counts from here
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    sent_at             REAL,
    UNIQUE (campaign_id, key),
    CHECK ({_STATE_CHECK})
);
"""
# schema 1 -> 2: SQLite cannot change a CHECK in place; the table is copied (once).
# Schema 1's ledger has these columns in this order (tests/test_ledger.py builds one).
_LEDGER_V2 = f"""{_LEDGER_TABLE.format(name="ledger_v2")}
INSERT INTO ledger_v2 SELECT * FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
"""
# `stamp report` reads a campaign's events through this index only (store/report_sql.py):
# each type one range, its recipients in order, so distinct recipients need no sort and
# the raw text (the bulk of a row) is not read. Added without a version bump (older
# stamps read the store as before): a store made before it gets it when opened for
# writing (Store._migrate), once.
REPORT_INDEX = (
    "CREATE INDEX IF NOT EXISTS events_for_report ON events "
    "(campaign_id, type, recipient, provider, ledger_id, bounce_kind, occurred_at);"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    fields      TEXT NOT NULL DEFAULT '[]',  -- JSON array of field names, first seen first
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,          -- normalised address, lower case: the identity
    email       TEXT NOT NULL,          -- address to send to (domain IDNA-encoded)
    fields      TEXT NOT NULL,          -- JSON object of every column
    added_at    REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (list_id, key)
);
CREATE TABLE IF NOT EXISTS suppressions (
    key         TEXT NOT NULL,
    scope       TEXT NOT NULL DEFAULT '',   -- '' = every list, else a list name
    reason      TEXT NOT NULL,              -- unsubscribed|hard_bounce|complaint|manual|invalid
    source      TEXT NOT NULL,              -- provider label, file name or command
    detail      TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (key, scope)
);
CREATE TABLE IF NOT EXISTS campaigns (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    content_hash  TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    paused_reason TEXT,
    paused_at     REAL,
    audience_mark TEXT,                 -- size/mtime/hash of the audience file last planned
    settings      TEXT                  -- JSON: auto_stop, bounce_policy (for the event server)
);
{ledger}CREATE INDEX IF NOT EXISTS ledger_by_state ON ledger (campaign_id, state, id);
CREATE INDEX IF NOT EXISTS ledger_by_provider_message_id ON ledger (provider_message_id)
    WHERE provider_message_id IS NOT NULL;  -- planning (NULL ids) never writes it
CREATE TABLE IF NOT EXISTS locks (
    campaign_id   INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    owner         TEXT NOT NULL,        -- host:pid:random
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    acquired_at   REAL NOT NULL,
    heartbeat_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quota_usage (
    provider    TEXT NOT NULL,          -- provider label
    day         TEXT NOT NULL,          -- UTC date, YYYY-MM-DD
    count       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, day)
);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    provider     TEXT NOT NULL,         -- provider label
    event_id     TEXT NOT NULL,         -- the provider's id, or sha256:<hex> of the event
    type         TEXT NOT NULL,         -- inbound.model.EventType
    bounce_kind  TEXT,                  -- hard|soft (bounced, deferred)
    auto_reply   INTEGER NOT NULL DEFAULT 0,
    occurred_at  REAL NOT NULL,
    received_at  REAL NOT NULL,
    campaign     TEXT,                  -- the campaign name the event carried
    campaign_id  INTEGER REFERENCES campaigns(id) ON DELETE SET NULL,
    ledger_id    INTEGER REFERENCES ledger(id) ON DELETE SET NULL,
    matched_by   TEXT,                  -- metadata|message_id|address; NULL: unmatched
    recipient    TEXT NOT NULL,         -- the address, lower case
    message_id   TEXT,                  -- the provider's message id, normalised
    reason       TEXT,
    url          TEXT,
    raw          TEXT NOT NULL,         -- the provider's event, JSON, secrets redacted
    applied      INTEGER NOT NULL DEFAULT 0,  -- 1 once its suppressions etc. are written
    UNIQUE (provider, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_campaign ON events (campaign_id, type);
CREATE INDEX IF NOT EXISTS events_by_recipient ON events (recipient, type, occurred_at);
CREATE INDEX IF NOT EXISTS events_by_ledger ON events (ledger_id);
{report_index}
CREATE TABLE IF NOT EXISTS event_cursors (
    provider    TEXT NOT NULL,          -- provider label
    account     TEXT NOT NULL,          -- which account/domain of it ('' if one)
    cursor      TEXT NOT NULL,          -- where `stamp events pull` goes on from
    updated_at  REAL NOT NULL,
    PRIMARY KEY (provider, account)
);
CREATE TABLE IF NOT EXISTS api_messages (
    id           TEXT PRIMARY KEY,      -- "msg_<hex>": what the send API answers
    pool         TEXT NOT NULL,         -- the serve.yml pool whose key sent it
    state        TEXT NOT NULL,         -- queued|sending|sent|partial|rejected|failed|unknown
    request      TEXT NOT NULL,         -- the accepted request, JSON (attachments base64)
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    next_at      REAL NOT NULL DEFAULT 0,  -- queued: not before (back-off when all were down)
    lease_owner  TEXT,                  -- sending: the process that claimed it
    lease_until  REAL,                  -- sending: after this, a dead owner's row -> unknown
    attempts     INTEGER NOT NULL DEFAULT 0,  -- adapter calls made for it so far
    provider     TEXT,                  -- label of the provider that accepted it
    results      TEXT,                  -- JSON list, one answer per recipient
    detail       TEXT
);
CREATE INDEX IF NOT EXISTS api_messages_due ON api_messages (state, next_at, created_at);
CREATE TABLE IF NOT EXISTS api_idempotency (
    pool         TEXT NOT NULL,
    key          TEXT NOT NULL,         -- the client's Idempotency-Key
    request_hash TEXT NOT NULL,         -- sha256 of the request: a reuse with another is refused
    message_ids  TEXT NOT NULL,         -- JSON list of the api_messages ids it made
    wait         INTEGER NOT NULL,      -- 1: the first request waited for the answer
    created_at   REAL NOT NULL,         -- keys live 24 h
    PRIMARY KEY (pool, key)
);
CREATE TABLE IF NOT EXISTS schedules (
    campaign_id     INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    state           TEXT NOT NULL,      -- stampcli.schedule.state.STATES
    next_due_at     REAL,               -- when a run next has something to send
    file            TEXT,               -- the campaign file the last run came from
    detail          TEXT,               -- JSON: zones, A/B figures
    ab_test_done_at REAL,               -- the A/B test share finished sending
    ab_winner       INTEGER,            -- index of the winning variant
    ab_decided_at   REAL,
    ab_manual       INTEGER NOT NULL DEFAULT 0,  -- 1: chosen with stamp schedule winner
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_by_due ON schedules (next_due_at);
CREATE TABLE IF NOT EXISTS runs (
    id           INTEGER PRIMARY KEY,
    campaign_id  INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    started_at   REAL NOT NULL,
    ended_at     REAL,
    exit_code    INTEGER,
    summary      TEXT                   -- JSON
);
-- What the router counted per provider in each run, for `stamp report` (reports.py):
-- answers by outcome, failovers, throttle waits, circuit openings; and the adapter
-- calls' answer times, as counts per time bucket (records_report.ANSWER_BUCKETS_MS).
CREATE TABLE IF NOT EXISTS provider_tallies (
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    campaign_id  INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,         -- provider label
    metric       TEXT NOT NULL,         -- answers.<outcome>, failovers_out, circuit_opens, ...
    value        INTEGER NOT NULL,
    PRIMARY KEY (run_id, provider, metric)
);
CREATE INDEX IF NOT EXISTS provider_tallies_by_campaign ON provider_tallies (campaign_id);
CREATE TABLE IF NOT EXISTS provider_answer_times (
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    campaign_id  INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    le_ms        INTEGER NOT NULL,      -- the bucket's upper bound, milliseconds
    calls        INTEGER NOT NULL,
    PRIMARY KEY (run_id, provider, le_ms)
);
CREATE INDEX IF NOT EXISTS provider_answer_times_by_campaign
    ON provider_answer_times (campaign_id);
"""
# `stamp worker`'s tables. Also made on first use by stampcli.store.fleet, so that a
# store of this schema version made before them gains them without a version step.
FLEET_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_queue (      -- campaigns queued for `stamp worker`
    name         TEXT PRIMARY KEY,     -- the campaign's name (its ledger's)
    definition   TEXT NOT NULL,        -- JSON: its keys, ${NAME} unresolved, paths into bundle
    bundle       BLOB NOT NULL,        -- zip of the files it reads (templates, images, list)
    digest       TEXT NOT NULL,        -- sha256 of definition and bundle
    state        TEXT NOT NULL DEFAULT 'queued',  -- queued | done
    due_at       REAL NOT NULL,        -- a worker takes it once this has passed
    added_at     REAL NOT NULL,
    updated_at   REAL NOT NULL,
    added_by     TEXT NOT NULL,        -- host:pid of the command that queued it
    runs         INTEGER NOT NULL DEFAULT 0,
    last_run_at  REAL,
    last_reason  TEXT,                 -- RunSummary.reason, or refused / error
    last_error   TEXT,
    last_worker  TEXT
);
CREATE TABLE IF NOT EXISTS fleet_workers (    -- `stamp worker` processes, as they last said
    id           TEXT PRIMARY KEY,     -- host:pid:random, also the owner of its locks
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    state        TEXT NOT NULL,        -- idle | sending | draining | stopped
    campaign     TEXT,
    sent         INTEGER NOT NULL DEFAULT 0,
    stopped_at   REAL,
    rate         REAL NOT NULL DEFAULT 0  -- messages/s of its run, recently
);
"""
# made on first use too (store/leases.py), so a store of this version made before them
# gains them
LEASE_SCHEMA = """
-- Several workers on one campaign (store/leases.py): who they are, which pending or
-- sending rows each holds and until when, who plans, and rate buckets they share.
CREATE TABLE IF NOT EXISTS campaign_workers (
    owner         TEXT PRIMARY KEY,     -- host:pid:random
    campaign_id   INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    until         REAL NOT NULL,        -- taken over after this without a heartbeat
    claimed       INTEGER NOT NULL DEFAULT 0,
    rate          REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ledger_leases (
    ledger_id     INTEGER PRIMARY KEY REFERENCES ledger(id) ON DELETE CASCADE,
    campaign_id   INTEGER NOT NULL,
    owner         TEXT NOT NULL,        -- the worker holding the row
    until         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_leases_by_owner ON ledger_leases (owner);
CREATE INDEX IF NOT EXISTS ledger_leases_by_campaign ON ledger_leases (campaign_id, until);
CREATE TABLE IF NOT EXISTS campaign_plans (
    campaign_id   INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    owner         TEXT,                 -- the worker planning (NULL: given up)
    until         REAL NOT NULL,
    done_at       REAL                  -- when that planning ended
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    name          TEXT PRIMARY KEY,     -- rate:<provider label> or rate:campaign:<name>
    tokens        REAL NOT NULL,
    stamp         REAL NOT NULL         -- when tokens was computed (wall clock)
);
"""
# Shared circuit breakers (issue #22): a provider one worker found down, until when. Its
# own part, made with the lease tables (stampcli.store.leases.ensure_tables)
BREAKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_breakers (
    name          TEXT PRIMARY KEY,     -- breaker:<provider label>
    open_until    REAL NOT NULL,        -- wall clock (epoch seconds)
    reason        TEXT NOT NULL
);
"""
SCHEMA = (
    _SCHEMA.replace("{ledger}", _LEDGER_TABLE.format(name="ledger")).replace(
        "{report_index}", REPORT_INDEX
    )
    + FLEET_SCHEMA
    + LEASE_SCHEMA
    + BREAKER_SCHEMA
)


def default_path() -> Path:
    """``$STAMP_DB`` if set, else ``./stamp.db``."""
    return Path(os.environ.get("STAMP_DB") or DEFAULT_DB)


BUSY_SECONDS = 30  # how long a write waits for another process's before "busy"


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one at a time (SQLite's own rule of completeness)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():  # a trailing comment (an incomplete statement fails when run)
        yield statement


def store_error(exc: BaseException, path: Path | str) -> StoreError:
    """A StoreError with a message a person can act on."""
    text = str(exc)
    low = text.lower()
    if "full" in low:
        why = "the disk is full; free some space and run again (nothing recorded was lost)"
    elif "readonly" in low or "read-only" in low:
        why = "the file or its folder is read-only; stamp needs to write it"
    elif "locked" in low or "busy" in low:
        why = "another process kept the database busy for too long; try again"
    elif "not a database" in low or "malformed" in low:
        why = "the file is not a stamp database, or it is damaged"
    elif "unable to open" in low:
        why = "the file cannot be opened (does its folder exist, and may stamp write it?)"
    else:
        why = text
    return StoreError(f"store {path}: {why}")


class Store:
    """An open store. Use as a context manager, or call :meth:`close`.

    It implements :class:`stampcli.store.protocols.Store`: ``store.ledger``,
    ``store.campaigns`` and the rest are the SQLite side of those protocols
    (thin objects over the sibling modules' functions, made on first use).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, readonly: bool = False):
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        # set by the background checkpointer when the WAL has outgrown passive checkpoints
        self._wal_restart = threading.Event()
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreError(f"store {self.path}: no such database (import a list first)")
                self.conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    timeout=BUSY_SECONDS,
                )
            else:
                self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_SECONDS)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_SECONDS * 1000}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._use_wal()
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None

    def _use_wal(self) -> None:
        """Put the store in WAL mode (kept in the file: set once, by its first opener).

        Switching needs the file to itself, and SQLite answers "database is locked"
        at once, without its busy wait, while another connection is opening the same
        new store: two ``stamp`` commands started together on a fresh store failed so.
        So the switch is tried again after short waits, for as long as the busy wait
        would have lasted."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path}: written by a newer stamp (schema {version}); upgrade stamp"
            )
        if version == SCHEMA_VERSION:
            return
        # Under the write lock, and the version read again there: another process may
        # have upgraded the store meanwhile (its ALTER TABLE run twice would fail). The
        # statements run one by one inside that transaction (executescript() would
        # commit it first): the whole migration is all or nothing.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                steps = _LEDGER_V2 if version == 1 else ""
                if version in (1, 2):  # 2 -> 3: a column CREATE TABLE IF NOT EXISTS cannot add
                    steps += "ALTER TABLE campaigns ADD COLUMN settings TEXT;\n"
                for statement in _statements(steps + SCHEMA):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            raise

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; SQLite errors inside it become :class:`StoreError`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None
        try:
            yield self.conn
        except sqlite3.Error as exc:
            self._rollback()
            raise store_error(exc, self.path) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise store_error(exc, self.path) from None
        if self._wal_restart.is_set():
            self._restart_wal()

    def _restart_wal(self) -> None:
        """Copy the rest of the WAL back and let the next commit write it from the start.

        Done here, between this connection's own transactions, because a steady writer
        may leave passive checkpoints behind for good, and a checkpoint in the other
        thread that waits for the writer lock may never catch it free. Most of the log
        is copied already, so this is short; a failure only leaves the log long.
        """
        self._wal_restart.clear()
        with suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(RESTART)")

    def _rollback(self) -> None:
        # the transaction may already be gone (e.g. a full disk aborted it)
        with suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextmanager
    def checkpoints_in_background(self) -> Iterator[None]:
        """Move WAL checkpoints off this connection into a thread while the block runs.

        A checkpoint copies the WAL back into the database and syncs it to disk. Left
        to SQLite, it runs inside whichever commit crosses 1,000 pages, so a send
        loop would stall on disk in the middle of its event loop: about a sixth of
        a 100k send's wall time here. The thread's own connection runs passive
        checkpoints (they never block a writer), and SQLite releases the GIL while
        they run. When the log passes WAL_RESTART_PAGES anyway, the next commit on
        this connection makes it start over (:meth:`_restart_wal`), which bounds it.
        Durability is unchanged: a commit is durable exactly as before.
        """
        if self.readonly or self.path == Path(":memory:"):
            yield
            return
        try:
            # opened here, so that a store the thread could not open is said now
            # ("rw": never create a stray database; resolved: a later chdir is harmless)
            conn = sqlite3.connect(
                f"file:{self.path.resolve()}?mode=rw",
                uri=True,
                isolation_level=None,
                timeout=5,
                check_same_thread=False,
            )
            self.conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None
        stop = threading.Event()
        thread = threading.Thread(
            target=_checkpoint_loop,
            args=(conn, stop, self._wal_restart),
            name="stamp-checkpoint",
            daemon=True,
        )
        try:
            thread.start()
            yield
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
            else:
                conn.close()
            with suppress(sqlite3.Error):
                self.conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Map SQLite errors raised by plain reads to :class:`StoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.conn.close()

    @property
    def location(self) -> str:
        """Where the store is, for messages: the database file."""
        return str(self.path)

    @property
    def shared_by_hosts(self) -> bool:
        """False: one machine's file, one writer at a time (runs of a campaign lock it)."""
        return False

    # The protocol's parts. Imported here, not at the top: each module imports this one.

    @cached_property
    def ledger(self) -> SQLiteLedger:
        from stampcli.store.ledger import SQLiteLedger

        return SQLiteLedger(self)

    @cached_property
    def campaigns(self) -> SQLiteCampaigns:
        from stampcli.store.campaigns import SQLiteCampaigns

        return SQLiteCampaigns(self)

    @cached_property
    def runs(self) -> SQLiteRuns:
        from stampcli.store.campaigns import SQLiteRuns

        return SQLiteRuns(self)

    @cached_property
    def contacts(self) -> SQLiteContacts:
        from stampcli.store.contacts import SQLiteContacts

        return SQLiteContacts(self)

    @cached_property
    def suppressions(self) -> SQLiteSuppressions:
        from stampcli.store.suppressions import SQLiteSuppressions

        return SQLiteSuppressions(self)

    @cached_property
    def locks(self) -> SQLiteLocks:
        from stampcli.store.locks import SQLiteLocks

        return SQLiteLocks(self)

    @cached_property
    def events(self) -> SQLiteEvents:
        from stampcli.store.events import SQLiteEvents

        return SQLiteEvents(self)

    @cached_property
    def quota(self) -> SQLiteQuota:
        from stampcli.store.quota import SQLiteQuota

        return SQLiteQuota(self)

    @cached_property
    def activity(self) -> SQLiteActivity:
        from stampcli.store.activity import SQLiteActivity

        return SQLiteActivity(self)

    @cached_property
    def reports(self) -> SQLiteReports:
        from stampcli.store.reports import SQLiteReports

        return SQLiteReports(self)

    @cached_property
    def fleet(self) -> SQLiteFleet:
        from stampcli.store.fleet import SQLiteFleet

        return SQLiteFleet(self)

    @cached_property
    def api_queue(self) -> SQLiteApiQueue:
        from stampcli.store.api_queue import SQLiteApiQueue

        return SQLiteApiQueue(self)

    @cached_property
    def schedules(self) -> SQLiteSchedules:
        from stampcli.store.schedules import SQLiteSchedules

        return SQLiteSchedules(self)

    @cached_property
    def leases(self) -> SQLiteLeases:
        from stampcli.store.leases import SQLiteLeases

        return SQLiteLeases(self)

    @cached_property
    def rates(self) -> SQLiteRates:
        from stampcli.store.leases import SQLiteRates

        return SQLiteRates(self)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _checkpoint_loop(
    conn: sqlite3.Connection, stop: threading.Event, restart: threading.Event
) -> None:
    """Passive checkpoints on ``conn`` every CHECKPOINT_EVERY seconds until ``stop``.

    Sets ``restart`` when the log has grown past WAL_RESTART_PAGES; closes ``conn``.
    """
    try:
        while not stop.wait(CHECKPOINT_EVERY):
            # a failed checkpoint loses nothing (the WAL keeps every commit): try again
            with suppress(sqlite3.Error):
                _, logged, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if logged > WAL_RESTART_PAGES:
                    restart.set()
    finally:
        conn.close()


def now() -> float:
    """Wall-clock seconds, the unit of every timestamp in the store."""
    return time.time()
