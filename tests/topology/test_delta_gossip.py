"""Topology deltas through real gossip cores: a broadcast carries only the changed
link, and a router that missed it is repaired by the digest exchange with a
delta (the gossip core must send a deltas-only answer: it has no records)."""

from __future__ import annotations

import random

from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.topology.current_routes import CurrentRoutes
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.topology import Topology
from meshrouter.wire.messages import BroadcastMsg, GossipMsg, decode_message, encode_message

from .builders import conn

CHANNEL = "topology"


class Node:
    def __init__(self, name: int) -> None:
        self.name = PeerName(name)
        self.topology = Topology(local_name=self.name, nickname=f"n{name}", uid=name * 10,
                                 listen_port=6783, rng=random.Random(name), short_id=name)
        self.gossip = GossipCore(self.name, rng=random.Random(name))
        self.gossip.add_channel(CHANNEL, TopologyGossiper(self.topology, random.Random(name)))
        self.gossip.set_routes(CurrentRoutes(self.topology))


def pump(nodes: dict[PeerName, Node], *, lose: set[tuple[int, int]] | None = None,
         log: list[tuple[int, int, object]] | None = None) -> None:
    """Deliver every queued message (through the wire codec) until all are idle;
    messages on the (src, dst) pairs in ``lose`` are dropped."""
    busy = True
    while busy:
        busy = False
        for node in nodes.values():
            for peer in sorted(node.gossip.neighbours()):
                msg = node.gossip.pop_outgoing(peer)
                if msg is None:
                    continue
                busy = True
                if log is not None:
                    log.append((node.name, peer, msg))
                if lose is not None and (node.name, peer) in lose:
                    continue
                nodes[peer].gossip.handle(node.name, decode_message(encode_message(msg)))


def full_mesh(count: int) -> dict[PeerName, Node]:
    nodes = {PeerName(n): Node(n) for n in range(1, count + 1)}
    for node in nodes.values():
        others = [p for p in nodes if p != node.name]
        node.topology.set_local_connections([conn(p) for p in others])
        for peer in others:
            node.gossip.neighbour_up(peer)
    pump(nodes)
    return nodes


def test_one_new_link_is_broadcast_as_a_delta_and_a_missed_one_is_repaired() -> None:
    nodes = full_mesh(12)
    reference = nodes[PeerName(1)].topology.fingerprint
    assert all(n.topology.fingerprint == reference for n in nodes.values())
    # Node 1 gains a link to a peer outside the mesh (named 99, unknown to all).
    one = nodes[PeerName(1)]
    sent_at = one.topology.local_record.version
    one.topology.set_local_connections([conn(p) for p in range(2, 13)] + [conn(99)])
    one.gossip.originate_broadcast(CHANNEL, one.topology.own_update_since(sent_at))
    log: list[tuple[int, int, object]] = []
    pump(nodes, lose={(1, 5)}, log=log)  # node 5 misses it
    broadcasts = [m for _, _, m in log if isinstance(m, BroadcastMsg)]
    assert len(broadcasts) == 11
    whole = len(one.topology.peer_map.encode()) // 12
    assert all(len(m.payload) * 4 < whole for m in broadcasts)  # one link, not 12
    target = one.topology.local_record
    assert nodes[PeerName(5)].topology.record(one.name) != target
    assert all(n.topology.record(one.name) == target for name, n in nodes.items() if name != 5)
    # Node 5's anti-entropy round: the answer is the one-link delta, and it is sent.
    five = nodes[PeerName(5)]
    log.clear()
    five.gossip.periodic()
    pump(nodes, log=log)
    assert five.topology.record(one.name) == target
    assert five.topology.fingerprint == one.topology.fingerprint
    answers = [m for _, dst, m in log if dst == 5 and isinstance(m, GossipMsg)]
    assert answers and all(len(m.payload) * 4 < whole for m in answers)
