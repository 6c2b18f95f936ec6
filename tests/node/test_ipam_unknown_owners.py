"""A ring entry naming an owner no peer of the mesh knows is logged and shown
(issue 15, item 4): a forged or corrupted owner never spreads silently."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import trio

from meshrouter.ipam.service import ipam_of
from meshrouter.names import PeerName, format_peer_name
from sim.network import SimNetwork
from tests.node.harness import make_router, run_sim

GHOST = PeerName(0x0BAD_0000_0001)


def test_unknown_ring_owner_is_logged_and_listed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="meshrouter.ipam.service")

    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a = make_router(net, 1, ipalloc_init="consensus=1", ipalloc_range="10.9.0.0/24")
        await nursery.start(a.run)
        service = ipam_of(a)
        assert service is not None
        await service.allocate("c1", None, 10)
        assert service.status()["unknown_owners"] == []
        ring = service.core.ring
        assert ring is not None
        token, entry = next(iter(ring.entries.items()))
        ring.entries[token] = replace(entry, owner=GHOST)  # a flipped owner byte
        service.step()
        assert service.status()["unknown_owners"] == [format_peer_name(GHOST)]
        service.step()  # logged once, not on every tick

    run_sim(body)
    warnings = [r for r in caplog.records if format_peer_name(GHOST) in r.getMessage()]
    assert len(warnings) == 1 and "no router of the mesh knows" in warnings[0].getMessage()
