"""KeySet: first-seen answers are the same in memory and after spilling to disk."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampcli.audience import keyset
from stampcli.audience.keyset import KeySet
from stampcli.audience.resolve import AudienceStats, read_contacts


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.sampled_from([f"k{i}@x.test" for i in range(40)]), max_size=200))
def test_answers_match_a_plain_set(keys: list[str]) -> None:
    seen: set[str] = set()
    with KeySet(limit=7) as ks:
        for key in keys:
            expected = key not in seen
            seen.add(key)
            assert ks.add(key) is expected


def test_spills_to_a_temporary_file_and_removes_it() -> None:
    rng = random.Random(1)
    keys = [f"user{rng.randrange(5000)}@example.com" for _ in range(20_000)]
    ks = KeySet(limit=1000)
    new = sum(ks.add(k) for k in keys)
    assert new == len(set(keys))
    assert ks.spilled == 1001  # the key past the limit moved them all
    path = ks._path
    assert path is not None and os.path.exists(path)
    ks.close()
    assert not os.path.exists(path)


def test_a_list_of_exactly_the_limit_stays_in_memory() -> None:
    with KeySet(limit=100) as ks:
        assert all(ks.add(f"u{i}@example.com") for i in range(100))
        assert ks.spilled == 0 and ks._path is None
        assert not ks.add("u0@example.com")
        assert ks.add("u100@example.com")
        assert ks.spilled == 101 and ks._path is not None


def test_a_long_list_dedupes_the_same_after_spilling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"u{i % 700}@example.com,N{i}" for i in range(2000)]
    path = tmp_path / "list.csv"
    path.write_text("email,name\n" + "\n".join(rows) + "\n")

    def read() -> tuple[list[tuple[str, str]], int]:
        stats = AudienceStats()
        got = [(c.key, c.fields["name"]) for c in read_contacts(path, stats=stats)]
        return got, stats.duplicates

    in_memory = read()
    monkeypatch.setattr(keyset, "DEFAULT_LIMIT", 50)
    spilled = read()
    assert spilled == in_memory
    assert len(in_memory[0]) == 700 and in_memory[1] == 1300
    assert in_memory[0][0] == ("u0@example.com", "N0")  # the first row wins
