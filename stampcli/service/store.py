"""``open_store``: the library's way to the SQLite store a campaign or list lives in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from stampcli.store.db import Store
from stampcli.store.location import StoreChoice, standalone
from stampcli.store.protocols import Store as StoreLike


def open_store(path: str | Path | StoreChoice | None = None, *, readonly: bool = False) -> Store:
    """Open (creating it unless ``readonly``) the store at ``path``.

    ``None``: ``$STAMP_DB``, else ``./stamp.db`` (``store.location.standalone``);
    a campaign's own store is ``store.location.for_campaign(campaign).path``.
    Use it as a context manager, so it is closed.
    """
    if isinstance(path, StoreChoice):
        return Store(path.path, readonly=readonly)
    choice = standalone(None if path is None else Path(path))
    return Store(choice.path, readonly=readonly)


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
    with Store(store.path, readonly=readonly) as fresh:
        yield fresh
