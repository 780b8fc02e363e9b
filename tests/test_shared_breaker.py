"""The circuit breaker shared by the workers of one campaign (issue #22, item 3).

Two routers sharing a store stand for two workers of one campaign. The first
finds its provider down (five provider-down answers: its circuit opens) and
publishes it; the second then sends nothing to that provider at all, fails
its messages over to its other provider, and shows the circuit open with the
first worker's reason. A probe that succeeds clears the shared entry. Both
store backends; a router that does not share (no ``rates``) ignores the entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_router import Scripted, always, campaign, message
from test_store_contract import BACKENDS, Backend

from stampcli.clock import FakeClock
from stampcli.delivery.router import Router
from stampcli.providers.base import Outcome


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


async def test_one_workers_down_provider_stops_the_others_sending_there(
    backend: Backend,
) -> None:
    with backend.open() as store_a, backend.open() as store_b:
        down_a = Scripted("relay", always(Outcome.PROVIDER_DOWN, detail="421 down"))
        spare_a = Scripted("spare")
        a = Router(campaign(), store_a, adapters=[down_a, spare_a], rates=store_a.rates)
        for i in range(8):
            assert (await a.send(message(f"a{i}"))).provider == "spare"
        assert down_a.sent == 5  # its own circuit opened after five
        opened = store_b.rates.open_breakers()
        assert set(opened) == {"breaker:relay"}
        left, reason = opened["breaker:relay"]
        assert 25 < left <= 30 and "421 down" in reason  # the default 30 s cool-down

        relay_b = Scripted("relay")  # would accept: worker b must not even try it
        spare_b = Scripted("spare")
        b = Router(campaign(), store_b, adapters=[relay_b, spare_b], rates=store_b.rates)
        for i in range(20):
            assert (await b.send(message(f"b{i}"))).provider == "spare"
        assert relay_b.sent == 0 and spare_b.sent == 20
        state = b.states()[0]
        assert state.state == "open" and "another worker found it down" in state.reason

        alone = Scripted("relay")  # not sharing the campaign: its own circuit only
        solo = Router(campaign(), store_b, adapters=[alone])
        assert (await solo.send(message("solo"))).provider == "relay"


async def test_a_probe_that_succeeds_clears_the_shared_breaker(backend: Backend) -> None:
    clock = FakeClock()
    with backend.open() as store:
        calls = {"n": 0}

        def down_then_up(_m: object, n: int) -> object:
            calls["n"] = n
            from stampcli.providers.base import Result

            return Result(Outcome.PROVIDER_DOWN) if n <= 5 else Result(Outcome.ACCEPTED)

        relay = Scripted("relay", down_then_up)  # type: ignore[arg-type]
        r = Router(campaign(), store, adapters=[relay, Scripted("spare")], clock=clock,
                   rates=store.rates)  # fmt: skip
        for i in range(5):
            await r.send(message(i))
        assert "breaker:relay" in store.rates.open_breakers()
        clock.advance(31)  # its cool-down is over: the next message probes, and succeeds
        assert (await r.send(message("probe"))).provider == "relay"
        assert r.states()[0].state == "closed"
        assert store.rates.open_breakers() == {}
