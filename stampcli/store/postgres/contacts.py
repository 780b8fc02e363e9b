"""Imported lists in PostgreSQL: :class:`stampcli.store.protocols.ContactStore`.

The same merge as :mod:`stampcli.store.contacts` (new columns overwrite,
missing ones are kept, an unchanged contact is not written), with the same
JSON text, so that both backends store byte for byte what an import gave.
A batch of up to :data:`BATCH` contacts is one transaction: one look-up of
the keys already stored, one insert and one update, each over arrays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import psycopg
from psycopg.rows import TupleRow

from stampcli.errors import InputError
from stampcli.records import (
    Contact,
    ContactRow,
    Forgotten,
    ImportCounts,
    ListSummary,
    StoredContact,
)
from stampcli.store.contacts import BATCH, _add_field_names, _check_name, _dumps, _iso
from stampcli.store.db import now
from stampcli.store.postgres.db import PostgresStore

Conn = psycopg.Connection[TupleRow]
ANALYZE_AFTER = 1000  # contacts added past which the planner's statistics are refreshed

ENSURE_LIST = (
    "INSERT INTO lists (name, created_at, updated_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (name) DO NOTHING"
)
LIST_ID = "SELECT id FROM lists WHERE name = %s"
LIST_FIELDS = "SELECT fields FROM lists WHERE id = %s"
ANY_CONTACT = "SELECT 1 FROM contacts WHERE list_id = %s LIMIT 1"
TOUCH_LIST = "UPDATE lists SET updated_at = %s WHERE id = %s"
SET_LIST_FIELDS = "UPDATE lists SET fields = %s WHERE id = %s"
EXISTING = (
    "SELECT id, key, email, fields FROM contacts WHERE list_id = %s AND key = ANY(%b::text[])"
)
# a key the list has already is skipped (counted unchanged by the caller)
INSERT = (
    "INSERT INTO contacts (list_id, key, email, fields, added_at, updated_at) "
    "SELECT %s, r.key, r.email, r.fields, %s, %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS r(key, email, fields, n) "
    "ORDER BY r.n ON CONFLICT (list_id, key) DO NOTHING"
)
UPDATE = (
    "UPDATE contacts AS c SET email = u.email, fields = u.fields, updated_at = %s "
    "FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS u(id, email, fields) WHERE c.id = u.id"
)
PAGE = (
    "SELECT id, key, email, fields, added_at FROM contacts "
    "WHERE list_id = %s AND id > %s ORDER BY id LIMIT %s"
)
KEYS = "SELECT key FROM contacts WHERE list_id = %s"
FIRST_FIELDS = "SELECT fields FROM contacts WHERE list_id = %s ORDER BY id LIMIT 1000"
ALL_FIELD_NAMES = (
    "SELECT DISTINCT k FROM contacts AS c, json_object_keys(c.fields::json) AS k "
    "WHERE c.list_id = %s"
)
STORED = (
    "SELECT key, email, fields, added_at, updated_at FROM contacts WHERE list_id = %s ORDER BY id"
)
SUMMARIES = (
    "SELECT l.name, l.created_at, l.updated_at, l.fields, "
    "(SELECT count(*) FROM contacts AS c WHERE c.list_id = l.id) "
    "FROM lists AS l ORDER BY l.name"
)
LIST_NAMES = "SELECT name FROM lists ORDER BY name"
COUNT_LIST = "SELECT count(*) FROM contacts WHERE list_id = %s"
DELETE_LIST_CONTACTS = "DELETE FROM contacts WHERE list_id = %s"
DELETE_LIST = "DELETE FROM lists WHERE id = %s"
REMOVE_KEYS = "DELETE FROM contacts WHERE list_id = %s AND key = ANY(%s::text[])"
KEEP_TABLE = 'CREATE TEMP TABLE stamp_keep (key text COLLATE "C" PRIMARY KEY) ON COMMIT DROP'
KEEP_COPY = "COPY stamp_keep (key) FROM STDIN"
KEEP_ONLY = (
    "DELETE FROM contacts c WHERE c.list_id = %s "
    "AND NOT EXISTS (SELECT 1 FROM stamp_keep k WHERE k.key = c.key)"
)
FORGET_LISTS = (
    "SELECT l.name FROM lists l JOIN contacts c ON c.list_id = l.id WHERE c.key = %s "
    "ORDER BY l.name"
)
FORGET_CONTACTS = "DELETE FROM contacts WHERE key = %s"
FORGET_LEDGER = (
    "UPDATE ledger SET key = %s, email = %s, fields = '{}', last_error = NULL, "
    "updated_at = %s WHERE key = %s"
)
FORGET_EVENTS = (
    "UPDATE events SET recipient = %s, raw = '{}', url = NULL, reason = NULL WHERE recipient = %s"
)
FORGET_SUPPRESSIONS = "DELETE FROM suppressions WHERE key = %s"
FORGOTTEN = (
    "INSERT INTO suppressions (key, scope, reason, source, detail, created_at) "
    "VALUES (%s, '', 'forgotten', %s, NULL, %s) ON CONFLICT (key, scope) DO NOTHING"
)


def _ensure_list(conn: Conn, name: str) -> int:
    t = now()
    conn.execute(ENSURE_LIST, (name, t, t))
    row = conn.execute(LIST_ID, (name,)).fetchone()
    assert row is not None  # inserted, or there already
    return int(row[0])


def _insert(
    conn: Conn, list_id: int, rows: list[tuple[str, str, str]], counts: ImportCounts
) -> None:
    """Insert (key, email, fields) ``rows``, already counted as new; a stored key is skipped."""
    t = now()
    cur = conn.execute(
        INSERT,
        (list_id, t, t, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
    )
    skipped = len(rows) - cur.rowcount
    counts.new -= skipped
    counts.unchanged += skipped


def _write_batch(
    conn: Conn, list_id: int, batch: list[ContactRow], counts: ImportCounts, *, fresh: bool
) -> None:
    if fresh and len({c[0] for c in batch}) == len(batch):
        # each key once and none stored yet: nothing to look up or fold, insert them all
        counts.new += len(batch)
        _insert(conn, list_id, [(k, e, _dumps(f)) for k, e, f, _ in batch], counts)
        return
    existing: dict[str, tuple[int, str, str]] = {}
    if not fresh:
        found = conn.execute(EXISTING, (list_id, [c[0] for c in batch]))
        existing = {key: (rid, email, doc) for rid, key, email, doc in found}
    inserts: dict[str, tuple[str, str, str]] = {}  # key -> row, in first-seen order
    updates: dict[int, tuple[str, str]] = {}  # id -> (email, fields)
    for key, email, fields, _row in batch:
        old = existing.get(key)
        doc = _dumps(fields)
        if old is None:
            inserts[key] = (key, email, doc)
            existing[key] = (-1, email, doc)
            counts.new += 1
            continue
        rid, old_email, old_doc = old
        if doc != old_doc:  # the same columns and values need no merge: the common re-import
            merged = json.loads(old_doc)
            merged.update(fields)
            doc = _dumps(merged)
        if doc == old_doc and old_email == email:
            counts.unchanged += 1
            continue
        if rid == -1:  # the same key twice in one batch: fold into the pending insert
            inserts[key] = (key, email, doc)
        else:
            updates[rid] = (email, doc)
        existing[key] = (rid, email, doc)
        counts.updated += 1
    if inserts:
        _insert(conn, list_id, list(inserts.values()), counts)
    if updates:
        conn.execute(
            UPDATE,
            (
                now(),
                list(updates),
                [u[0] for u in updates.values()],
                [u[1] for u in updates.values()],
            ),
        )


class PostgresContacts:
    """:class:`stampcli.store.protocols.ContactStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def upsert_contacts(
        self,
        list_name: str,
        contacts: Iterable[Contact],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts:
        rows = ((c.key, c.email, c.fields, c.row) for c in contacts)
        return self.upsert_rows(list_name, rows, on_batch=on_batch)

    def upsert_rows(
        self,
        list_name: str,
        contacts: Iterable[ContactRow],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts:
        name = _check_name(list_name)
        counts = ImportCounts()
        list_id: int | None = None
        fresh = False  # the list was empty when this import began: nothing to look up
        known: list[str] = []  # the list's field names, kept in `lists.fields`
        it = iter(contacts)
        while batch := list(islice(it, BATCH)):
            with self._store.transaction() as conn:
                if list_id is None:
                    list_id = _ensure_list(conn, name)
                    fresh = conn.execute(ANY_CONTACT, (list_id,)).fetchone() is None
                    row = conn.execute(LIST_FIELDS, (list_id,)).fetchone()
                    known = json.loads(row[0]) if row else []
                changed = counts.new + counts.updated
                _write_batch(conn, list_id, batch, counts, fresh=fresh)
                if counts.new + counts.updated != changed:  # a re-import changes nothing
                    conn.execute(TOUCH_LIST, (now(), list_id))
                if _add_field_names(known, batch):
                    conn.execute(SET_LIST_FIELDS, (json.dumps(known), list_id))
            if on_batch is not None:
                on_batch(counts)
        if list_id is None:  # an empty import still creates the list, so it can be named later
            with self._store.transaction() as conn:
                _ensure_list(conn, name)
        if counts.new >= ANALYZE_AFTER:  # see PostgresStore.analyze
            self._store.analyze("contacts")
        return counts

    def _list_id(self, list_name: str) -> int:
        with self._store.connection() as conn:
            row = conn.execute(LIST_ID, (list_name.strip(),)).fetchone()
            if row is not None:
                return int(row[0])
            names = [r[0] for r in conn.execute(LIST_NAMES)]
        known = ", ".join(repr(n) for n in names) if names else "none yet"
        raise InputError(
            f"there is no list named {list_name!r} in {self._store.location}; the lists are: "
            f"{known} (import one with: stamp import FILE --list NAME)"
        )

    def list_exists(self, list_name: str) -> bool:
        with self._store.connection() as conn:
            return conn.execute(LIST_ID, (list_name.strip(),)).fetchone() is not None

    def iter_list(self, list_name: str) -> Iterator[Contact]:
        return self._iter_list(self._list_id(list_name))

    def _iter_list(self, list_id: int) -> Iterator[Contact]:
        # pages by id, a connection each: none is held while the caller writes to the store
        last = 0
        loads = json.loads
        while True:
            with self._store.connection() as conn:
                page = conn.execute(PAGE, (list_id, last, BATCH)).fetchall()
            if not page:
                return
            for _id, key, email, doc, added_at in page:
                fields = loads(doc)
                if "added_at" not in fields:
                    fields["added_at"] = _iso(added_at)
                yield Contact(key=key, email=email, fields=fields, row=0)
            last = page[-1][0]

    def list_keys(self, list_name: str) -> set[str]:
        list_id = self._list_id(list_name)
        with self._store.connection() as conn:
            return {r[0] for r in conn.execute(KEYS, (list_id,))}

    def list_fields(self, list_name: str) -> list[str]:
        list_id = self._list_id(list_name)
        with self._store.connection() as conn:
            row = conn.execute(LIST_FIELDS, (list_id,)).fetchone()
        return [str(n) for n in json.loads(row[0])] if row else []

    def fields_present(
        self, list_name: str, wanted: Iterable[str], normalise: Callable[[str], str]
    ) -> set[str]:
        list_id = self._list_id(list_name)
        want = set(wanted)
        found: set[str] = set()
        with self._store.connection() as conn:
            for (doc,) in conn.execute(FIRST_FIELDS, (list_id,)):
                found |= {k for k in json.loads(doc) if normalise(k) in want}
            missing = want - {normalise(k) for k in found}
            if missing:
                # normalise is Python: the server lists each distinct name once, we match here
                for (name,) in conn.execute(ALL_FIELD_NAMES, (list_id,)):
                    if normalise(name) in missing:
                        found.add(name)
                        missing.discard(normalise(name))
        return found

    def list_summaries(self) -> list[ListSummary]:
        with self._store.connection() as conn:
            rows = conn.execute(SUMMARIES).fetchall()
        return [
            ListSummary(
                name=name,
                contacts=int(count),
                fields=[str(n) for n in json.loads(fields)],
                created_at=float(created),
                updated_at=float(updated),
            )
            for name, created, updated, fields, count in rows
        ]

    def stored(self, list_name: str) -> list[StoredContact]:
        list_id = self._list_id(list_name)
        with self._store.connection() as conn:
            found = conn.execute(STORED, (list_id,)).fetchall()
        return [StoredContact(k, e, json.loads(doc), a, u) for k, e, doc, a, u in found]

    def delete_list(self, list_name: str) -> int:
        list_id = self._list_id(list_name)
        with self._store.transaction() as conn:
            removed = int(conn.execute(COUNT_LIST, (list_id,)).fetchone()[0])  # type: ignore[index]
            conn.execute(DELETE_LIST_CONTACTS, (list_id,))
            conn.execute(DELETE_LIST, (list_id,))
        return removed

    def remove_contacts(self, list_name: str, keys: Iterable[str]) -> int:
        list_id = self._list_id(list_name)
        with self._store.transaction() as conn:
            removed = conn.execute(REMOVE_KEYS, (list_id, list(dict.fromkeys(keys)))).rowcount
            if removed:
                conn.execute(TOUCH_LIST, (now(), list_id))
        return int(removed)

    def keep_only(self, list_name: str, keys: Iterable[str]) -> int:
        list_id = self._list_id(list_name)
        with self._store.transaction() as conn:
            conn.execute(KEEP_TABLE)
            with conn.cursor().copy(KEEP_COPY) as copy:
                for key in dict.fromkeys(keys):
                    copy.write_row((key,))
            removed = conn.execute(KEEP_ONLY, (list_id,)).rowcount
            if removed:
                conn.execute(TOUCH_LIST, (now(), list_id))
        return int(removed)

    def forget(self, key: str, hashed: str, source: str) -> Forgotten:
        out = Forgotten()
        t = now()
        with self._store.transaction() as conn:
            out.lists = [r[0] for r in conn.execute(FORGET_LISTS, (key,))]
            out.contacts = conn.execute(FORGET_CONTACTS, (key,)).rowcount
            out.ledger = conn.execute(FORGET_LEDGER, (hashed, hashed, t, key)).rowcount
            out.events = conn.execute(FORGET_EVENTS, (hashed, key)).rowcount
            out.suppressions = conn.execute(FORGET_SUPPRESSIONS, (key,)).rowcount
            conn.execute(FORGOTTEN, (hashed, source, t))
        return out
