"""Endpoint gossip: mesh-wide bytes for one container start, against N and containers per host.

Prints figures (no asserts).  N real ``GossipCore``s, each with a real
``EndpointTable`` behind the real ``endpoints`` gossiper, over a random
partial mesh (each peer dials ``--degree`` random others, like a connection
limit); routes and broadcast trees from ``topology.routes``.  Every replica
starts with the same endpoints (``containers`` per host, already agreed);
then one host attaches one container and its one-entry delta is broadcast and
pumped through the wire codec until the mesh is quiet.  Counted: every
message and encoded byte sent on the channel, mesh-wide.  The fitted exponent
of bytes against N shows O(N) (1.0), whatever the containers already running.

To fit N = 1,000 x 50 containers in memory, replicas share the (read-only
during the measurement) entry maps of every owner except the one that changes.

    python bench/endpoint_gossip.py [--sizes 100,300,1000] [--containers 1,50]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import deque

from meshrouter.endpoints.gossiper import CHANNEL, EndpointsGossiper
from meshrouter.endpoints.model import Endpoint, make_endpoint
from meshrouter.endpoints.table import EndpointTable
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.topology.records import ConnectionRecord, PeerRecord
from meshrouter.topology.routes import compute_routes
from meshrouter.wire.messages import decode_message, encode_message


def graph_records(nodes: list[int], edges: list[tuple[int, int]]) -> dict[PeerName, PeerRecord]:
    """Peer records where every edge is an established link listed by both ends."""
    links: dict[int, list[ConnectionRecord]] = {n: [] for n in nodes}
    for a, b in edges:
        for x, y in ((a, b), (b, a)):
            address = f"10.0.{y >> 8}.{y & 255}:6783"
            links[x].append(ConnectionRecord(peer=PeerName(y), address=address,
                                             outbound=x < y, established=True))
    return {PeerName(n): PeerRecord(name=PeerName(n), nickname=f"h{n}", uid=1, version=1,
                                    short_id=n % 4096, listen_port=6783,
                                    connections=tuple(sorted(links[n], key=lambda c: c.peer)))
            for n in nodes}

def random_edges(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    edges = {(i, i + 1) for i in range(1, n)}  # a line keeps it connected
    for a in range(1, n + 1):
        for b in rng.sample(range(1, n + 1), min(degree, n - 1)):
            if a != b:
                edges.add((min(a, b), max(a, b)))
    return sorted(edges)


def measure(n: int, per_host: int, degree: int, seed: int) -> tuple[int, int, float]:
    rng = random.Random(seed)
    nodes = list(range(1, n + 1))
    records = graph_records(nodes, random_edges(n, degree, rng))
    shared: dict[PeerName, dict[str, Endpoint]] = {}
    for node in nodes:
        owner = PeerName(node)
        shared[owner] = {
            f"c{i}": make_endpoint(owner, f"c{i}",
                                   f"02:{node >> 8 & 255:02x}:{node & 255:02x}:00:00:{i:02x}",
                                   f"10.{node >> 8 & 255}.{node & 255}.{i + 2}", "", i + 1)
            for i in range(per_host)
        }
    origin = PeerName(1)
    cores: dict[PeerName, GossipCore] = {}
    tables: dict[PeerName, EndpointTable] = {}
    pending: deque[tuple[PeerName, PeerName]] = deque()
    # Every replica holds the same state, so each owner's digest row is the same
    # everywhere: computed once and handed to every replica's cache (a real
    # router computes its own once; 1,000 of them in one process need not).
    probe = EndpointTable(PeerName(0))
    probe.state.by_owner = dict(shared)
    digest_rows = {owner: probe._owner_digest(owner) for owner in shared}
    for node in nodes:
        name = PeerName(node)
        table = EndpointTable(name)
        table.state.by_owner = dict(shared)
        table.state.by_owner[origin] = dict(shared[origin])  # the one map that changes
        table._owner_digests = dict(digest_rows)
        table._counter = per_host
        core = GossipCore(name, rng=random.Random(node))
        core.add_channel(CHANNEL, EndpointsGossiper(table, lambda: 0.0, lambda fresh: None))
        core.set_routes(compute_routes(records, name))
        cores[name], tables[name] = core, table
    for (a, b) in ((c.peer, r) for r, rec in records.items() for c in rec.connections):
        cores[b].neighbour_up(a)
    for name, core in cores.items():  # drop the connection-time digests: state agrees
        for peer in core.neighbours():
            while core.pop_outgoing(peer) is not None:
                pass
        core.stats.__init__()  # type: ignore[misc]
        core.on_outgoing = lambda dst, src=name: pending.append((src, dst))

    t0 = time.perf_counter()
    tables[origin].put_local("new", "02:ff:00:00:00:01", "10.255.0.1", "web")
    delta = tables[origin].take_broadcast()
    assert delta is not None
    cores[origin].originate_broadcast(CHANNEL, delta)
    messages = sent = 0
    while pending:
        src, dst = pending.popleft()
        msg = cores[src].pop_outgoing(dst)
        if msg is None:
            continue
        wire = encode_message(msg)
        messages += 1
        sent += len(wire)
        cores[dst].handle(src, decode_message(wire))
    elapsed = time.perf_counter() - t0
    missing = [n for n, t in tables.items() if t.state.get(origin, "new") is None]
    assert not missing, f"{len(missing)} replicas lack the new endpoint"
    return messages, sent, elapsed


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--containers", default="1,50")
    parser.add_argument("--degree", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'N':>6} {'containers/host':>15} {'messages':>9} {'bytes':>9} {'bytes/peer':>10} "
          f"{'wall s':>7}")
    for per_host in (int(c) for c in args.containers.split(",")):
        points = []
        for n in sizes:
            messages, sent, elapsed = measure(n, per_host, args.degree, args.seed)
            points.append((n, sent))
            print(f"{n:>6} {per_host:>15} {messages:>9} {sent:>9} {sent / (n - 1):>10.1f} "
                  f"{elapsed:>7.2f}", flush=True)
        if len(points) > 1:
            exponent = slope([p[0] for p in points], [p[1] for p in points])
            print(f"fitted exponent (bytes ~ N^k), {per_host} containers/host: k = {exponent:.2f}")


if __name__ == "__main__":
    main()
