"""How often Python's cycle collector runs during stamp's long loops.

A send or an import allocates millions of short-lived dicts, tuples and
futures that reference counting frees at once; they hold no reference cycles,
yet with the default threshold (700 allocations) they set off ~2,000
collections per 100k messages, and the older-generation passes walk every
live object each time: ~3.5 s of a 100k send's ~20 s in the event loop
(measured with ``gc.callbacks``). The cycles that do occur (an exception's
traceback, a closed connection) are few and still collected, just later.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

SEND_THRESHOLD = 50_000  # allocations between young collections while sending (default 700)


@contextlib.contextmanager
def collect_rarely(threshold: int = SEND_THRESHOLD) -> Iterator[None]:
    """Young collections every ``threshold`` allocations; start-up objects left alone.

    ``gc.freeze`` moves what exists now (modules, the campaign, compiled templates)
    out of the collector's sight: it is never garbage, and walking it made every
    full collection slow.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


@contextlib.contextmanager
def collect_never() -> Iterator[None]:
    """No cycle collection at all: for loops whose objects cannot form cycles (imports)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
