"""Imported lists in the store: upsert contacts, read a list back in import order, summarise lists.

A list is a name; its contacts are keyed by the normalised address, so a
re-import updates rather than duplicates. An upsert merges: the new file's
columns overwrite the stored ones of the same name, columns the new file does
not have are kept, and a contact whose merged fields and address are
unchanged is not written at all (its ``updated_at`` stays), so importing the
same file twice changes nothing.

Writes go in batches of :data:`BATCH` contacts, one transaction each: a killed
import leaves whole batches behind and a rerun completes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from stampcli.errors import InputError
from stampcli.records import Contact, Forgotten, StoredContact
from stampcli.records import ContactRow as ContactRow
from stampcli.records import ImportCounts as ImportCounts
from stampcli.records import ListSummary as ListSummary
from stampcli.store.db import Store, now

BATCH = 10_000


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # the C string encoder that _encode uses too


_templates: dict[tuple[str, ...], str] = {}  # field names -> '{"a":%s,"b":%s}'


def _dumps(fields: dict[str, Any]) -> str:
    """Compact JSON of ``fields``, the same text ``_encode`` gives.

    Imported fields are all text, and the rows of one file share their field
    names: the names are quoted once into a template that takes the quoted
    values, several times faster than the encoder (rebuilt on every call); on
    a million-row import that is seconds.
    """
    names = tuple(fields)
    template = _templates.get(names)
    try:
        if template is None:
            template = _template(names)
        return template % tuple(map(_quote, fields.values()))
    except TypeError:  # a name or value that is not text
        return _encode(fields)


def _template(names: tuple[str, ...]) -> str:
    if len(_templates) >= 256:  # merged documents may mix names: keep the cache small
        _templates.clear()
    template = "{" + ",".join([_quote(n).replace("%", "%%") + ":%s" for n in names]) + "}"
    _templates[names] = template
    return template


def upsert_contacts(
    store: Store,
    list_name: str,
    contacts: Iterable[Contact],
    *,
    on_batch: Callable[[ImportCounts], None] | None = None,
) -> ImportCounts:
    """Add or update ``contacts`` in ``list_name`` (created if new); see :func:`upsert_rows`."""
    return upsert_rows(
        store, list_name, ((c.key, c.email, c.fields, c.row) for c in contacts), on_batch=on_batch
    )


def upsert_rows(
    store: Store,
    list_name: str,
    contacts: Iterable[ContactRow],
    *,
    on_batch: Callable[[ImportCounts], None] | None = None,
) -> ImportCounts:
    """Add or update ``contacts`` in ``list_name`` (created if new); returns the counts.

    ``contacts`` should hold each key once (the readers dedupe); a repeated key
    counts as an update of the first within a batch, and is left out (counted
    unchanged) across batches of an import into an empty list. ``on_batch`` is called after every
    committed batch with the running counts.
    """
    name = _check_name(list_name)
    counts = ImportCounts()
    list_id: int | None = None
    fresh = False  # the list was empty when this import began: nothing to look up
    known: list[str] = []  # the list's field names, kept in `lists.fields` for `stamp lists`
    it = iter(contacts)
    while batch := list(islice(it, BATCH)):
        with store.transaction() as conn:
            if list_id is None:
                list_id = _ensure_list(conn, name)
                fresh = (
                    conn.execute(
                        "SELECT 1 FROM contacts WHERE list_id = ? LIMIT 1", (list_id,)
                    ).fetchone()
                    is None
                )
                row = conn.execute("SELECT fields FROM lists WHERE id = ?", (list_id,)).fetchone()
                known = json.loads(row[0])
            changed = counts.new + counts.updated
            _write_batch(conn, list_id, batch, counts, fresh=fresh)
            if counts.new + counts.updated != changed:  # a re-import changes nothing, not even this
                conn.execute("UPDATE lists SET updated_at = ? WHERE id = ?", (now(), list_id))
            if _add_field_names(known, batch):
                conn.execute(
                    "UPDATE lists SET fields = ? WHERE id = ?", (json.dumps(known), list_id)
                )
        if on_batch is not None:
            on_batch(counts)
    if list_id is None:  # an empty import still creates the list, so it can be named later
        with store.transaction() as conn:
            _ensure_list(conn, name)
    return counts


def _add_field_names(known: list[str], batch: list[ContactRow]) -> bool:
    """Append the batch's field names not in ``known`` yet; True if any were."""
    seen = set(known)
    if seen.issuperset(set().union(*[c[2] for c in batch])):  # the usual case, in C
        return False
    before = len(known)
    for _key, _email, fields, _row in batch:
        if len(fields) <= len(seen) and seen.issuperset(fields):
            continue
        for name in fields:
            if name not in seen:
                seen.add(name)
                known.append(name)
    return len(known) != before


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise InputError("a list needs a name (--list NAME)")
    if any(ord(c) < 32 for c in clean) or len(clean) > 200:
        raise InputError(f"list name {name!r}: use up to 200 printable characters")
    return clean


def _ensure_list(conn: sqlite3.Connection, name: str) -> int:
    t = now()
    conn.execute(
        "INSERT INTO lists (name, created_at, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO NOTHING",
        (name, t, t),
    )
    row = conn.execute("SELECT id FROM lists WHERE name = ?", (name,)).fetchone()
    return int(row[0])


def _write_batch(
    conn: sqlite3.Connection,
    list_id: int,
    batch: list[ContactRow],
    counts: ImportCounts,
    *,
    fresh: bool,
) -> None:
    t = now()
    if fresh and len({c[0] for c in batch}) == len(batch):
        # Each key once and none stored yet: nothing to look up or fold, insert them all.
        dumps = _dumps
        rows = [(list_id, key, email, dumps(fields), t, t) for key, email, fields, _ in batch]
        counts.new += len(rows)
        _insert(conn, rows, counts)
        return
    existing: dict[str, tuple[int, str, str]] = {}
    if not fresh:
        keys = json.dumps([c[0] for c in batch])
        existing = {
            key: (rid, email, fields)
            for rid, key, email, fields in conn.execute(
                "SELECT id, key, email, fields FROM contacts "
                "WHERE list_id = ? AND key IN (SELECT value FROM json_each(?))",
                (list_id, keys),
            )
        }
    inserts: list[tuple[int, str, str, str, float, float]] = []
    updates: list[tuple[str, str, float, int]] = []
    for key, email, fields, _row in batch:
        old = existing.get(key)
        if old is None:
            doc = _dumps(fields)
            inserts.append((list_id, key, email, doc, t, t))
            existing[key] = (-1, email, doc)
            counts.new += 1
            continue
        rid, old_email, old_doc = old
        doc = _dumps(fields)
        if doc != old_doc:  # the same columns and values need no merge: the common re-import
            merged = json.loads(old_doc)
            merged.update(fields)
            doc = _dumps(merged)
        if doc == old_doc and old_email == email:
            counts.unchanged += 1
            continue
        if rid == -1:  # the same key twice in one batch: fold into the pending insert
            for i in range(len(inserts) - 1, -1, -1):
                if inserts[i][1] == key:
                    inserts[i] = (list_id, key, email, doc, t, t)
                    break
        else:
            updates.append((email, doc, t, rid))
        existing[key] = (rid, email, doc)
        counts.updated += 1
    if inserts:
        _insert(conn, inserts, counts)
    if updates:
        conn.executemany(
            "UPDATE contacts SET email = ?, fields = ?, updated_at = ? WHERE id = ?", updates
        )


def _insert(
    conn: sqlite3.Connection,
    rows: list[tuple[int, str, str, str, float, float]],
    counts: ImportCounts,
) -> None:
    """Insert ``rows``, already counted as new; a key the list has is skipped, as unchanged."""
    # On a fresh list a key from an earlier batch of this import (a caller that did
    # not dedupe) is not looked up: it is skipped here and counted as unchanged.
    cursor = conn.executemany(
        "INSERT INTO contacts (list_id, key, email, fields, added_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (list_id, key) DO NOTHING",
        rows,
    )
    skipped = len(rows) - cursor.rowcount
    counts.new -= skipped
    counts.unchanged += skipped


def _list_id(store: Store, list_name: str) -> int:
    with store.errors():
        row = store.conn.execute(
            "SELECT id FROM lists WHERE name = ?", (list_name.strip(),)
        ).fetchone()
        if row is not None:
            return int(row[0])
        names = [r[0] for r in store.conn.execute("SELECT name FROM lists ORDER BY name")]
    known = ", ".join(repr(n) for n in names) if names else "none yet"
    raise InputError(
        f"there is no list named {list_name!r} in {store.path}; the lists are: {known} "
        "(import one with: stamp import FILE --list NAME)"
    )


def list_exists(store: Store, list_name: str) -> bool:
    with store.errors():
        row = store.conn.execute(
            "SELECT 1 FROM lists WHERE name = ?", (list_name.strip(),)
        ).fetchone()
    return row is not None


def iter_list(store: Store, list_name: str) -> Iterator[Contact]:
    """The contacts of ``list_name`` in import order, streamed.

    Each contact's fields get ``added_at`` (ISO 8601, UTC) unless a column of
    that name was imported. :class:`InputError` naming the lists that exist if
    there is no such list.
    """
    list_id = _list_id(store, list_name)
    return _iter_list(store, list_id)


def _iter_list(store: Store, list_id: int) -> Iterator[Contact]:
    # Read in pages by id, so no cursor stays open while the caller writes to the store.
    last = 0
    loads = json.loads
    while True:
        with store.errors():
            page = store.conn.execute(
                "SELECT id, key, email, fields, added_at FROM contacts "
                "WHERE list_id = ? AND id > ? ORDER BY id LIMIT ?",
                (list_id, last, BATCH),
            ).fetchall()
        if not page:
            return
        for _id, key, email, doc, added_at in page:
            fields = loads(doc)
            if "added_at" not in fields:
                fields["added_at"] = _iso(added_at)
            yield Contact(key=key, email=email, fields=fields, row=0)
        last = page[-1][0]


def list_keys(store: Store, list_name: str) -> set[str]:
    """Every key in ``list_name`` (for excluding a list from an audience)."""
    list_id = _list_id(store, list_name)
    with store.errors():
        return {
            r[0]
            for r in store.conn.execute("SELECT key FROM contacts WHERE list_id = ?", (list_id,))
        }


def list_fields(store: Store, list_name: str) -> list[str]:
    """The field names used in ``list_name``, in the order they were first imported."""
    return _fields(store, _list_id(store, list_name))


def _fields(store: Store, list_id: int) -> list[str]:
    with store.errors():
        row = store.conn.execute("SELECT fields FROM lists WHERE id = ?", (list_id,)).fetchone()
    names = json.loads(row[0]) if row else []
    return [str(n) for n in names]


def fields_present(
    store: Store, list_name: str, wanted: Iterable[str], normalise: Callable[[str], str]
) -> set[str]:
    """The field names of ``list_name`` that ``normalise`` maps into ``wanted``.

    Used to check a segment's names against a list without reading every
    contact: the first page answers nearly always; a name not found there is
    looked for in the whole list, stopping at the first contact that has it.
    """
    list_id = _list_id(store, list_name)
    want = set(wanted)
    found: set[str] = set()
    with store.errors():
        for (doc,) in store.conn.execute(
            "SELECT fields FROM contacts WHERE list_id = ? ORDER BY id LIMIT 1000", (list_id,)
        ):
            found |= {k for k in json.loads(doc) if normalise(k) in want}
        missing = want - {normalise(k) for k in found}
        if missing:
            store.conn.create_function("stamp_field_id", 1, normalise, deterministic=True)
        for name in sorted(missing):
            row = store.conn.execute(
                "SELECT j.key FROM contacts AS c, json_each(c.fields) AS j "
                "WHERE c.list_id = ? AND stamp_field_id(j.key) = ? LIMIT 1",
                (list_id, name),
            ).fetchone()
            if row is not None:
                found.add(row[0])
    return found


def stored(store: Store, list_name: str) -> list[StoredContact]:
    """Every contact of ``list_name`` as stored (fields as imported, timestamps), in order."""
    list_id = _list_id(store, list_name)
    with store.errors():
        found = store.conn.execute(
            "SELECT key, email, fields, added_at, updated_at FROM contacts "
            "WHERE list_id = ? ORDER BY id",
            (list_id,),
        ).fetchall()
    return [StoredContact(k, e, json.loads(doc), a, u) for k, e, doc, a, u in found]


def list_summaries(store: Store) -> list[ListSummary]:
    """Every list with its contact count and field names, by name."""
    with store.errors():
        rows = store.conn.execute(
            "SELECT l.id, l.name, l.created_at, l.updated_at, "
            "(SELECT COUNT(*) FROM contacts c WHERE c.list_id = l.id) "
            "FROM lists l ORDER BY l.name"
        ).fetchall()
    return [
        ListSummary(
            name=name,
            contacts=int(count),
            fields=_fields(store, list_id),
            created_at=float(created),
            updated_at=float(updated),
        )
        for list_id, name, created, updated, count in rows
    ]


def delete_list(store: Store, list_name: str) -> int:
    """Delete ``list_name`` and its contacts; how many contacts went with it."""
    list_id = _list_id(store, list_name)
    with store.transaction() as conn:
        count = conn.execute("SELECT COUNT(*) FROM contacts WHERE list_id = ?", (list_id,))
        removed = int(count.fetchone()[0])
        conn.execute("DELETE FROM contacts WHERE list_id = ?", (list_id,))
        conn.execute("DELETE FROM lists WHERE id = ?", (list_id,))
    return removed


def remove_contacts(store: Store, list_name: str, keys: Iterable[str]) -> int:
    """Remove the contacts with ``keys`` from ``list_name``; how many were there."""
    list_id = _list_id(store, list_name)
    wanted = json.dumps(list(dict.fromkeys(keys)))
    with store.transaction() as conn:
        removed = conn.execute(
            "DELETE FROM contacts WHERE list_id = ? AND key IN (SELECT value FROM json_each(?))",
            (list_id, wanted),
        ).rowcount
        if removed:
            conn.execute("UPDATE lists SET updated_at = ? WHERE id = ?", (now(), list_id))
    return int(removed)


def keep_only(store: Store, list_name: str, keys: Iterable[str]) -> int:
    """Remove every contact of ``list_name`` whose key is not in ``keys``; how many went.

    What ``stamp import --replace`` does after the upsert; the keys wait in a
    temporary table, so a million of them are one indexed anti-join.
    """
    list_id = _list_id(store, list_name)
    with store.transaction() as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stamp_keep (key TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM stamp_keep")
        it = iter(keys)
        while batch := list(islice(it, BATCH)):
            conn.executemany(
                "INSERT OR IGNORE INTO stamp_keep (key) VALUES (?)", [(k,) for k in batch]
            )
        removed = conn.execute(
            "DELETE FROM contacts WHERE list_id = ? AND key NOT IN (SELECT key FROM stamp_keep)",
            (list_id,),
        ).rowcount
        conn.execute("DELETE FROM stamp_keep")
        if removed:
            conn.execute("UPDATE lists SET updated_at = ? WHERE id = ?", (now(), list_id))
    return int(removed)


def forget(store: Store, key: str, hashed: str, source: str) -> Forgotten:
    """Erase ``key`` from lists, ledger snapshots, events and suppressions, in one go.

    Ledger rows and events stay (campaign counts do not change) but carry
    ``hashed`` instead of the address, and no snapshot, error text or raw
    body; the person's suppressions become one global ``forgotten`` one under
    ``hashed``, which :func:`stampcli.store.suppressions.suppressed` matches.
    """
    out = Forgotten()
    with store.transaction() as conn:
        out.lists = [
            r[0]
            for r in conn.execute(
                "SELECT l.name FROM lists l JOIN contacts c ON c.list_id = l.id "
                "WHERE c.key = ? ORDER BY l.name",
                (key,),
            )
        ]
        out.contacts = conn.execute("DELETE FROM contacts WHERE key = ?", (key,)).rowcount
        out.ledger = conn.execute(
            "UPDATE ledger SET key = ?, email = ?, fields = '{}', last_error = NULL, "
            "updated_at = ? WHERE key = ?",
            (hashed, hashed, now(), key),
        ).rowcount
        out.events = conn.execute(
            "UPDATE events SET recipient = ?, raw = '{}', url = NULL, reason = NULL "
            "WHERE recipient = ?",
            (hashed, key),
        ).rowcount
        out.suppressions = conn.execute("DELETE FROM suppressions WHERE key = ?", (key,)).rowcount
        conn.execute(
            "INSERT OR IGNORE INTO suppressions (key, scope, reason, source, detail, created_at) "
            "VALUES (?, '', 'forgotten', ?, NULL, ?)",
            (hashed, source, now()),
        )
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SQLiteContacts:
    """:class:`stampcli.store.protocols.ContactStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def upsert_contacts(
        self,
        list_name: str,
        contacts: Iterable[Contact],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts:
        return upsert_contacts(self._store, list_name, contacts, on_batch=on_batch)

    def upsert_rows(
        self,
        list_name: str,
        contacts: Iterable[ContactRow],
        *,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts:
        return upsert_rows(self._store, list_name, contacts, on_batch=on_batch)

    def list_exists(self, list_name: str) -> bool:
        return list_exists(self._store, list_name)

    def iter_list(self, list_name: str) -> Iterator[Contact]:
        return iter_list(self._store, list_name)

    def list_keys(self, list_name: str) -> set[str]:
        return list_keys(self._store, list_name)

    def list_fields(self, list_name: str) -> list[str]:
        return list_fields(self._store, list_name)

    def fields_present(
        self, list_name: str, wanted: Iterable[str], normalise: Callable[[str], str]
    ) -> set[str]:
        return fields_present(self._store, list_name, wanted, normalise)

    def list_summaries(self) -> list[ListSummary]:
        return list_summaries(self._store)

    def stored(self, list_name: str) -> list[StoredContact]:
        return stored(self._store, list_name)

    def delete_list(self, list_name: str) -> int:
        return delete_list(self._store, list_name)

    def remove_contacts(self, list_name: str, keys: Iterable[str]) -> int:
        return remove_contacts(self._store, list_name, keys)

    def keep_only(self, list_name: str, keys: Iterable[str]) -> int:
        return keep_only(self._store, list_name, keys)

    def forget(self, key: str, hashed: str, source: str) -> Forgotten:
        return forget(self._store, key, hashed, source)
