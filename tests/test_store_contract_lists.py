"""The store contract for deleting lists and contacts, ``--replace`` and ``forget``.

Runs once per backend (the fixtures of ``test_store_contract``), through the
protocol only.
"""

from __future__ import annotations

import pytest
from test_store_contract import _claim_all, _event, _fields, _plan, backend, store

from stampcli.compliance import erasure
from stampcli.errors import InputError
from stampcli.records import Contact, EventRow, Outcome
from stampcli.store import protocols

__all__ = ["backend", "store"]  # the fixtures, imported for pytest


def _contacts(*keys: str) -> list[Contact]:
    return [
        Contact(key=k, email=k, fields={"name": k.split("@")[0]}, row=i) for i, k in enumerate(keys)
    ]


def test_delete_list_removes_it_and_its_contacts_only(store: protocols.Store) -> None:
    store.contacts.upsert_contacts("news", _contacts("a@x.test", "b@x.test"))
    store.contacts.upsert_contacts("other", _contacts("a@x.test"))
    assert store.contacts.delete_list("news") == 2
    assert not store.contacts.list_exists("news")
    assert store.contacts.list_keys("other") == {"a@x.test"}
    with pytest.raises(InputError, match="no list named 'news'"):
        store.contacts.delete_list("news")


def test_remove_contacts_and_keep_only(store: protocols.Store) -> None:
    keys = [f"u{i}@x.test" for i in range(30)]
    store.contacts.upsert_contacts("news", _contacts(*keys))
    assert store.contacts.remove_contacts("news", ["u0@x.test", "u0@x.test", "nobody@x.test"]) == 1
    assert store.contacts.keep_only("news", iter(keys[10:])) == 9  # u1..u9 go
    assert store.contacts.list_keys("news") == set(keys[10:])
    assert store.contacts.keep_only("news", keys[10:]) == 0  # twice: nothing more
    assert [c.key for c in store.contacts.iter_list("news")] == keys[10:]  # order kept


def test_forget_erases_the_address_everywhere_and_keeps_a_hashed_suppression(
    store: protocols.Store,
) -> None:
    key = "ann@x.test"
    store.contacts.upsert_contacts("news", _contacts(key, "bob@x.test"))
    store.contacts.upsert_contacts("vip", _contacts(key))
    cid = store.campaigns.ensure("c").id
    _plan(store, cid, [key, "bob@x.test"])
    ids = _claim_all(store, cid)
    store.ledger.record([Outcome(i, "sent", "sg", f"m{i}") for i in ids])
    store.suppressions.add(key, "unsubscribed", "link")
    store.events.add(
        [EventRow(**{**_fields(_event(1, recipient=key, url="https://x.test/?e=ann@x.test")),
                     "campaign_id": cid})],
        received_at=1.0,
    )  # fmt: skip
    hashed = erasure.hashed(key)

    done = store.contacts.forget(key, hashed, "stamp forget")

    assert (done.contacts, done.ledger, done.events, done.suppressions) == (2, 1, 1, 1)
    assert done.lists == ["news", "vip"]
    assert store.contacts.list_keys("news") == {"bob@x.test"} and not store.contacts.list_keys(
        "vip"
    )
    rows = {r.key: r for r in store.ledger.rows(cid)}
    assert key not in rows and rows[hashed].email == hashed and rows[hashed].fields == "{}"
    assert rows[hashed].state == "sent"  # the campaign's counts do not change
    (event,) = store.events.rows(cid)
    assert event.recipient == hashed and event.url is None and key not in event.raw
    assert store.suppressions.get(key) is None
    kept = store.suppressions.get(hashed)
    assert kept is not None and kept.reason == "forgotten"
    # the address comes back in a later import: it is still never mailed
    store.contacts.upsert_contacts("news", _contacts(key))
    assert store.suppressions.suppressed([key, "bob@x.test"]) == {key}
    assert store.suppressions.suppressed([key], ["news"]) == {key}
    # forgetting again finds nothing more and leaves one suppression
    again = store.contacts.forget(key, hashed, "stamp forget")
    assert (again.ledger, again.events, again.suppressions) == (0, 0, 0)
    assert store.suppressions.count().get("forgotten") == 1
