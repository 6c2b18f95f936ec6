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

    # The summary digest (fingerprints) says "equal" in 22 bytes (few records: one bucket)...
    assert left.digest() == right.digest() and len(left.digest()) == 22
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


def test_the_answer_to_our_own_ask_is_catch_up_and_is_not_relayed() -> None:
    # Neighbour 2 holds records we lack; its summary differs, so we ask it.
    gossiper = make_gossiper()
    theirs = make_topology(2, uid=1)
    theirs.set_local_connections([conn(1), conn(3)])
    theirs.apply(PeerMap.of(record(3, connections=[conn(2), conn(4)]),
                            record(4, connections=[conn(3)])), random.Random(0))
    gossiper.full_digest_for(PeerName(2), theirs.digest())  # our ask
    answer = theirs.newer_than(gossiper.full_digest())
    assert answer is not None and sorted(answer.records) == [2, 3, 4]
    assert gossiper.on_gossip(PeerName(2), answer) is None  # merged, not relayed
    assert gossiper.topology.record(PeerName(4)) is not None
    # The ask is settled: the next unknown record from 2 is news again.
    five = PeerMap.of(record(5, connections=[conn(4)]),
                      record(4, version=2, connections=[conn(3), conn(5)]))
    relayed = gossiper.on_gossip(PeerName(2), five)
    assert relayed is not None and sorted(relayed.records) == [5]
    # An ask of another neighbour does not silence what 2 sends.
    gossiper.full_digest_for(PeerName(3), theirs.digest())
    six = PeerMap.of(record(6, connections=[conn(5)]),
                     record(5, version=2, connections=[conn(4), conn(6)]))
    relayed = gossiper.on_gossip(PeerName(2), six)
    assert relayed is not None and sorted(relayed.records) == [6]


def test_a_relay_leaves_out_what_each_neighbour_holds_by_its_links() -> None:
    # We (1) are linked to 2, 3 and 4; 2's record lists a link to 5 (5's own,
    # older record does not list 2 yet), and the relayed record of 6 lists a
    # link to 3 (7's link to 6 is not established).
    # Relaying the records of 2, 5, 6 and 7: neighbour 2 gets neither its own
    # record nor 5's (its record lists 5); 3 gets all but 6's (6 lists 3); 4 is
    # linked to none of them and gets the relay as it is.
    gossiper = make_gossiper()
    topo = gossiper.topology
    topo.set_local_connections([conn(2), conn(3), conn(4)])
    topo.apply(PeerMap.of(record(2, connections=[conn(1), conn(5)]),
                          record(3, connections=[conn(1)]),
                          record(4, connections=[conn(1)])), random.Random(0))
    five, six, seven = (record(5, connections=[conn(8)]), record(6, connections=[conn(3)]),
                        record(7, connections=[conn(6, established=False)]))
    relayed = PeerMap.of(topo.record(PeerName(2)), five, six, seven)  # type: ignore[arg-type]
    assert gossiper.relay_for(PeerName(2), relayed) == PeerMap.of(six, seven)
    assert gossiper.relay_for(PeerName(3), relayed) == PeerMap.of(
        topo.record(PeerName(2)), five, seven)  # type: ignore[arg-type]
    assert gossiper.relay_for(PeerName(4), relayed) is relayed
    assert gossiper.relay_for(PeerName(2), PeerMap.of(five)) is None


def test_a_broadcast_names_its_origins_links_only_at_the_version_we_hold() -> None:
    from meshrouter.topology.deltas import make_delta

    gossiper = make_gossiper()  # we are 1, linked to 2
    topo = gossiper.topology
    two = record(2, version=3, connections=[conn(1), conn(5), conn(6, established=False)])
    gossiper.on_broadcast(PeerName(2), PeerMap.of(two))
    assert gossiper.origin_links(PeerName(2), PeerMap.of(two)) == {1, 5}
    # A stale copy (we hold 3), one we do not hold (it lost, or GC), no data of
    # the origin at all: nothing known exactly, nothing skipped.
    assert gossiper.origin_links(PeerName(2), PeerMap.of(record(2, version=2))) == frozenset()
    assert gossiper.origin_links(PeerName(2), PeerMap.of(record(2, version=4))) == frozenset()
    assert gossiper.origin_links(PeerName(2), PeerMap.of(record(3))) == frozenset()
    # Our own broadcast, a delta to the version we hold: our links now.
    before = topo.local_record.version
    topo.set_local_connections([conn(2), conn(3), conn(4, established=False)])
    ours = topo.own_update_since(before)
    assert ours.deltas and make_delta(topo.local_record, before) is not None
    assert gossiper.origin_links(PeerName(1), ours) == {2, 3}
