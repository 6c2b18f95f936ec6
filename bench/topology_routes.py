"""Benchmark: shared route graphs for a 1,000-peer mesh of average degree ~24.

Prints the time to build one ``RouteGraph``, to compute all 1,000 BFS trees
(distance arrays), to patch a tree after one link changed instead of running a
BFS, for 1,000 ``Topology`` instances holding the same records to get their
routes (one graph build, 999 cache hits), and the memory of one graph.

    python bench/topology_routes.py [--peers 1000] [--degree 24] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace

from meshrouter.names import PeerName
from meshrouter.topology.discovery import SHARED_DIAL_ADDRESSES, DialAddresses
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import ConnectionRecord, PeerRecord, records_fingerprint
from meshrouter.topology.route_graph import SHARED_ROUTE_GRAPHS, RouteGraph
from meshrouter.topology.route_trees import bfs_distances, differing_slots, patch_distances
from meshrouter.topology.topology import Topology


def address_of(index: int) -> str:
    return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}:6783"


def random_mesh(peers: int, degree: int, seed: int) -> dict[PeerName, PeerRecord]:
    """Records (version 2, as after one ``set_local_connections``) of a random graph."""
    rng = random.Random(seed)
    names = sorted(PeerName(n) for n in rng.sample(range(1, 1 << 48), peers))
    links: dict[int, set[int]] = {i: set() for i in range(peers)}
    for i in range(peers):  # each peer dials degree/2 others; as many dial it on average
        for j in rng.sample([j for j in range(peers) if j != i], degree // 2):
            links[i].add(j)
            links[j].add(i)
    records = {}
    for i, name in enumerate(names):
        connections = tuple(
            ConnectionRecord(names[j], address_of(j), outbound=i < j, established=True)
            for j in sorted(links[i]))
        records[name] = PeerRecord(name=name, nickname=f"host{i}", uid=i + 1, version=2,
                                   short_id=i % 4096, listen_port=6783, connections=connections)
    return records


def timed(label: str, action: Callable[[], object], repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs, with the cyclic GC off as in ``timeit``."""
    samples = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            action()
            samples.append(time.perf_counter() - start)
        finally:
            gc.enable()
    best = min(samples)
    extra = ""
    if repeat > 1:
        extra = f" (min of {repeat}, median {statistics.median(samples) * 1e3:.2f} ms)"
    print(f"{label:<58} {best * 1e3:10.2f} ms{extra}")
    return best


def topologies_with(records: dict[PeerName, PeerRecord]) -> list[Topology]:
    """One Topology per peer, each holding exactly ``records``."""
    full = PeerMap(records)
    rng = random.Random(0)
    topologies = []
    for name, own in records.items():
        topology = Topology(local_name=name, nickname=own.nickname, uid=own.uid,
                            listen_port=own.listen_port, rng=rng, short_id=own.short_id)
        topology.set_local_connections(own.connections)
        topology.apply(full, rng)
        topologies.append(topology)
    return topologies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--degree", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    records = random_mesh(args.peers, args.degree, args.seed)
    links = sum(len(r.connections) for r in records.values()) // 2
    print(f"{args.peers} peers, {links} links (average degree {2 * links / args.peers:.1f})")
    fingerprint = records_fingerprint(records.values())  # warms the per-record hash caches

    timed("fingerprint of the record set from scratch",
          lambda: records_fingerprint(records.values()), repeat=5)
    timed("build one RouteGraph", lambda: RouteGraph(records, fingerprint), repeat=5)

    origins = list(records)
    changed = dict(records)
    mover = origins[7]
    dropped = records[mover].connections[0].peer
    changed[mover] = replace(records[mover], version=3, connections=tuple(
        c for c in records[mover].connections if c.peer != dropped))
    parent = RouteGraph(records, fingerprint)
    changed_fingerprint = records_fingerprint(changed.values())
    timed("derive a RouteGraph from its parent (one record changed)",
          lambda: RouteGraph(changed, changed_fingerprint, parent=parent), repeat=5)

    graph = RouteGraph(records, fingerprint, max_trees=args.peers)
    slots = [graph.slot_of(o) for o in origins]
    assert all(slot is not None for slot in slots)
    adjacency = graph.symmetric
    bfs = timed("one BFS tree (distance array) from scratch",
                lambda: bfs_distances(adjacency, slots[0] or 0), repeat=5)
    timed(f"all {len(origins)} BFS trees from scratch",
          lambda: [bfs_distances(adjacency, s or 0) for s in slots])
    derived = RouteGraph(changed, changed_fingerprint, parent=parent)
    tree = bfs_distances(adjacency, slots[0] or 0)
    diff = differing_slots(adjacency, derived.symmetric)
    patch = timed("patch that tree for the graph without one link (diff + patch)",
                  lambda: patch_distances(tree, adjacency, derived.symmetric,
                                          differing_slots(adjacency, derived.symmetric)),
                  repeat=5)
    print(f"{'':<58} {len(diff)} slots differ; patch/BFS = {patch / bfs:.2f}")
    back = patch_distances(tree, adjacency, derived.symmetric, diff)
    timed("patch it back (one link added)",
          lambda: patch_distances(back, derived.symmetric, adjacency, diff), repeat=5)
    timed(f"control-plane BFS from {len(origins)} routers (first_hops_any)",
          lambda: [graph.first_hops_any(s or 0) for s in slots])

    print(f"setting up {len(records)} Topology instances with the same records ...", flush=True)
    topologies = topologies_with(records)
    assert len({t.fingerprint for t in topologies}) == 1
    SHARED_ROUTE_GRAPHS.clear()
    timed(f"{len(topologies)} Topology.routes() on the same records (1 build)",
          lambda: [t.routes() for t in topologies])
    built = sum(t.routes_computed for t in topologies)
    shared = sum(t.routes_shared for t in topologies)
    print(f"{'':<58} graphs built {built}, shared {shared}")
    origin = origins[len(origins) // 2]
    timed(f"one broadcast: {len(topologies)} routers' broadcast_next_hops",
          lambda: [t.routes().broadcast_next_hops(origin) for t in topologies])
    timed(f"again (tree cached): {len(topologies)} broadcast_next_hops",
          lambda: [t.routes().broadcast_next_hops(origin) for t in topologies])
    SHARED_DIAL_ADDRESSES.clear()
    timed(f"{len(topologies)} discovery_candidates() on the same records",
          lambda: [t.discovery_candidates() for t in topologies])
    timed("one DialAddresses book (what each router paid before)",
          lambda: DialAddresses(records, fingerprint), repeat=5)

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    graph = RouteGraph(records, fingerprint)
    empty_size = _grown_since(before)
    for o in origins[:graph.max_trees]:
        graph.distances(graph.slot_of(o) or 0)
    full_size = _grown_since(before)
    tracemalloc.stop()
    print(f"{'memory of one RouteGraph (no trees)':<58} {empty_size / 1024:10.1f} KiB")
    print(f"{f'memory of one RouteGraph with {graph.max_trees} trees':<58}"
          f" {full_size / 1024:10.1f} KiB")


def _grown_since(before: tracemalloc.Snapshot) -> int:
    after = tracemalloc.take_snapshot()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


if __name__ == "__main__":
    main()
