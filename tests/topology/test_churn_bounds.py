"""A long-lived router whose peers churn (each leaver replaced by a new name):
its route numbering and its address book stay the size of the live mesh."""

from __future__ import annotations

import random

import pytest

from meshrouter.topology import route_slots
from meshrouter.topology.peer_map import PeerMap
from tests.topology.builders import conn, make_topology, record

LIVE = 20
STEPS = 300


def test_churn_does_not_grow_the_slot_registry_or_the_address_book(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route_slots, "_SPARE_NAMES", 16)  # reach the bound in a few steps
    monkeypatch.setattr(route_slots, "_current", route_slots.SlotRegistry())
    rng = random.Random(1)
    topo = make_topology(1)
    live = list(range(2, 2 + LIVE))
    next_name = 1000
    largest = 0
    for _ in range(STEPS):
        live[rng.randrange(len(live))] = next_name
        next_name += 1
        topo.set_local_connections([conn(p) for p in live])
        topo.apply(PeerMap.of(*(record(p, connections=[conn(1)]) for p in live)), rng)
        topo.routes().unicast_table()
        topo.discovery_candidates()
        graph = topo.routes().graph
        largest = max(largest, len(graph.registry), len(graph.symmetric))
    # a registry is replaced once it holds more than 16 + 4 x live names
    assert largest <= 16 + 4 * (LIVE + 1) + LIVE + 1
    book = topo._dial._book
    assert all(book._contrib.values()), "a peer nobody lists kept an empty entry"
    assert len(book._contrib) <= LIVE + 1
