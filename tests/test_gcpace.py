"""gcpace: the collector's settings come back after a send or an import, even on errors."""

from __future__ import annotations

import gc

import pytest

from stampcli.gcpace import SEND_THRESHOLD, collect_never, collect_rarely


def test_collect_rarely_raises_the_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collect_rarely():
        assert gc.get_threshold()[0] == SEND_THRESHOLD
        assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's sight
        raise RuntimeError
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_are_still_collected_while_sending() -> None:
    class Node:
        other: Node

    with collect_rarely(threshold=100):
        gc.collect()
        for _ in range(1000):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        # young collections ran along the way: the thousand cycles are not all still there
        assert sum(isinstance(o, Node) for o in gc.get_objects()) < 500


def test_collect_never_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collect_never():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
