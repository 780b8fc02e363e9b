"""``opened``: a use case's store, given open or as a ``StoreChoice`` opened only when needed.

(The library opens a store with ``stampcli.store.open_store``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from stampcli.store.location import StoreChoice
from stampcli.store.protocols import Store as StoreLike

StoreArg = StoreLike | StoreChoice
OnOpen = Callable[[StoreChoice], None]


@contextlib.contextmanager
def opened(
    store: StoreArg, *, readonly: bool = False, on_open: OnOpen | None = None
) -> Iterator[StoreLike]:
    """``store`` itself when it is open; else open the chosen one for the block and close it.

    Use cases take a ``StoreChoice`` to open the store only once their input is
    known good (a bad file must not create a store); ``on_open`` is told first
    (the CLI says when that creates a new store).
    """
    if not isinstance(store, StoreChoice):
        yield store
        return
    if on_open is not None:
        on_open(store)
    with store.open(readonly=readonly) as fresh:
        yield fresh
