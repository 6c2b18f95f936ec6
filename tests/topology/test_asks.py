"""Asks in flight (``topology/asks``): a router that asks two neighbours with
the same records for the same buckets at once receives them once; an ask that
its neighbour settles (answers, or goes away) covers nobody else any more."""

from __future__ import annotations

import random

from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.topology.asks import AsksInFlight
from meshrouter.topology.buckets import bucket_bits, bucket_of, decode_partial_digest
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.topology import Topology
from meshrouter.wire.messages import GossipMsg

from .builders import conn, make_topology, record

X, Y, Z = PeerName(7), PeerName(8), PeerName(9)


def test_a_bucket_asked_of_one_neighbour_at_a_fingerprint_is_not_asked_again() -> None:
    asks = AsksInFlight()
    assert asks.pick(X, 2, [0, 1, 3], (10, 11, 12, 13)) == [0, 1, 3]
    # Y shows bucket 0 and 3 as X did, bucket 1 otherwise: only 1 (and 2) are asked.
    assert asks.pick(Y, 2, [0, 1, 2, 3], (10, 99, 12, 13)) == [1, 2]
    # Another bucket count is another partition of the names: nothing is covered.
    assert asks.pick(Z, 3, [0, 1], (10, 11, 0, 0, 0, 0, 0, 0)) == [0, 1]
    # X answered: what it covered is asked again.
    asks.settled(X)
    assert asks.pick(Z, 2, [0, 3], (10, 11, 12, 13)) == [0, 3]
    # Asking without a neighbour (a test, a tool) notes nothing.
    asks.settled(Y)
    asks.settled(Z)
    assert asks.pick(None, 2, [0], (10, 0, 0, 0)) == [0] and len(asks) == 0


def test_our_next_ask_of_a_neighbour_replaces_its_previous_one() -> None:
    asks = AsksInFlight()
    asks.pick(X, 1, [0, 1], (5, 6))
    asks.pick(X, 1, [1], (5, 6))
    assert asks.pick(Y, 1, [0, 1], (5, 6)) == [0]


def mesh_view(local: int, names: list[int]) -> Topology:
    """Router ``local`` of a converged full mesh of ``names``."""
    topo = make_topology(local, uid=1)
    topo.set_local_connections(conn(p) for p in names if p != local)
    others = [record(n, version=2, connections=[conn(p) for p in names if p != n])
              for n in names if n != local]
    topo.apply(PeerMap.of(*others), random.Random(0))
    return topo


def core_of(topo: Topology) -> GossipCore:
    core = GossipCore(topo.local_name, rng=random.Random(0))
    core.add_channel("topology", TopologyGossiper(topo, random.Random(0)))
    return core


def test_a_joiner_gets_the_topology_once_from_two_contacts() -> None:
    names = list(range(1, 41))
    contacts = {PeerName(1): mesh_view(1, names), PeerName(2): mesh_view(2, names)}
    joiner = make_topology(100, uid=1)
    joiner.set_local_connections([conn(1), conn(2)])
    cores = {name: core_of(topo) for name, topo in contacts.items()}
    joined = core_of(joiner)
    for name, core in cores.items():
        core.neighbour_up(joiner.local_name)
        joined.neighbour_up(name)
    whole_to_joiner = 0
    for _ in range(10):  # rounds of everything queued crossing at once
        to_joiner = [(n, m) for n, c in cores.items()
                     for m in iter(lambda c=c: c.pop_outgoing(joiner.local_name), None)]
        from_joiner = [(n, m) for n in cores
                       for m in iter(lambda n=n: joined.pop_outgoing(n), None)]
        for name, msg in to_joiner:
            if isinstance(msg, GossipMsg):
                whole_to_joiner += len(PeerMap.decode(msg.payload).records)
            joined.handle(name, msg)
        for name, msg in from_joiner:
            cores[name].handle(joiner.local_name, msg)
    # Everything arrived (the contacts' records list the joiner only once it
    # is in their connections, which this test leaves to the router) ...
    assert {r.name for r in joiner.records()} == {PeerName(n) for n in [*names, 100]}
    # ... once: 40 records, not 80 -- but for the bucket of the second
    # contact's own record, which every ask covers (see ``anti_entropy``).
    bits = bucket_bits(len(names))
    own_bucket = [n for n in names if bucket_of(n, bits) == bucket_of(2, bits)]
    assert whole_to_joiner == len(names) + len(own_bucket)


def test_a_joiner_asks_the_second_contact_for_nothing_while_the_first_answers() -> None:
    names = list(range(1, 41))
    first, second = mesh_view(1, names), mesh_view(2, names)
    joiner = make_topology(100, uid=1)
    ask_first = decode_partial_digest(joiner.full_digest_for(first.digest(), PeerName(1)))
    ask_second = decode_partial_digest(joiner.full_digest_for(second.digest(), PeerName(2)))
    # Only the bucket of the second one's own record (which a new connection changes).
    assert len(ask_first.covered) > 1
    assert ask_second.covered == {bucket_of(2, ask_second.bits)}
    # The first one answered: a later summary of the second is asked in full again.
    joiner.digest_settled(PeerName(1))
    again = decode_partial_digest(joiner.full_digest_for(second.digest(), PeerName(2)))
    assert again.covered == ask_first.covered
