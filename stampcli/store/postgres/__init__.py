"""The PostgreSQL store: one database shared by every stamp process that names it.

:class:`PostgresStore` (:mod:`.db`: the pool, the schema and its versions)
implements :class:`stampcli.store.protocols.Store`, with one module per part
beside it (ledger, campaigns and runs, contacts, suppressions, locks, quota,
events),
each holding its SQL as module constants. ``stampcli.store.open_store`` opens
it for a ``postgresql://`` or ``postgres://`` URL.
"""

from __future__ import annotations

from stampcli.store import protocols
from stampcli.store.postgres.db import SCHEMA_VERSION, PostgresStore

__all__ = ["SCHEMA_VERSION", "PostgresStore"]


# mypy checks here that the PostgreSQL store implements every protocol.
def _implements(store: PostgresStore) -> protocols.Store:
    return store
