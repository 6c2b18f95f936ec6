"""TopologyGossiper: the adapter between the gossip core and Topology."""

from __future__ import annotations

import random

import pytest

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.peer_map import PeerMap

from .builders import conn, make_topology, record


def make_gossiper() -> TopologyGossiper:
    topo = make_topology(1, uid=1)
    topo.set_local_connections([conn(2)])
    return TopologyGossiper(topo, random.Random(1))


def test_gossip_and_broadcast_apply_and_return_the_delta() -> None:
    gossiper = make_gossiper()
    two = record(2, connections=[conn(1)])
    payload = PeerMap.of(two).encode()
    data = gossiper.decode(payload)
    assert gossiper.on_gossip(PeerName(2), data) == PeerMap.of(two)
    assert gossiper.on_gossip(PeerName(2), data) is None
    newer = record(2, version=2, connections=[conn(1)])
    assert gossiper.on_broadcast(PeerName(2), PeerMap.of(newer)) == PeerMap.of(newer)
    full = gossiper.full_state()
    assert full is not None and sorted(full.records) == [1, 2]


def test_unicast_and_garbage_are_protocol_errors() -> None:
    gossiper = make_gossiper()
    with pytest.raises(MalformedMessageError):
        gossiper.on_unicast(PeerName(2), b"anything")
    with pytest.raises(MalformedMessageError):
        gossiper.decode(b"\x93\x01")
    with pytest.raises(MalformedMessageError):
        gossiper.lacks_from(b"\x01")


def test_anti_entropy_passthrough() -> None:
    left, right = make_gossiper(), make_gossiper()
    right.topology.apply(PeerMap.of(record(2, connections=[conn(1)])), random.Random(0))
    assert left.lacks_from(right.full_digest())
    missing = right.newer_than(left.full_digest())
    assert missing == PeerMap.of(record(2, connections=[conn(1)]))
    assert left.on_gossip(PeerName(2), missing) is not None
    assert left.full_digest() == right.full_digest()
    assert left.newer_than(right.full_digest()) is None

    # The summary digest (fingerprints) says "equal" in 26 bytes (few records: one bucket)...
    assert left.digest() == right.digest() and len(left.digest()) == 26
    assert not left.wants_full_digest(right.digest())
    right.topology.apply(PeerMap.of(record(2, version=9, connections=[conn(1)])), random.Random(0))
    # ...and "different" (ask for the full digest) otherwise; it never claims data.
    assert left.wants_full_digest(right.digest())
    assert left.newer_than(right.digest()) is None and not left.lacks_from(right.digest())


def test_gossip_relays_only_records_of_previously_unknown_peers() -> None:
    gossiper = make_gossiper()
    first = PeerMap.of(record(2, connections=[conn(1)]))
    assert gossiper.on_gossip(PeerName(2), first) == first
    # A newer version of a peer we already know is merged but not relayed.
    newer = PeerMap.of(record(2, version=7, connections=[conn(1)]))
    assert gossiper.on_gossip(PeerName(2), newer) is None
    assert gossiper.topology.record(PeerName(2)).version == 7  # type: ignore[union-attr]
