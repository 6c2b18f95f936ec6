"""Cost of one change: mesh-wide gossip messages and bytes for ONE peer joining a
converged mesh of N peers (connection limit 16, or ``--conn-limit``), for several
N, and the fitted exponent of bytes against N.  O(N) per change is the goal in a
limited mesh (Weave's topology gossip was O(N^2) per change); in a full mesh
(``--conn-limit 200``) one join adds N links, each a fact every peer must learn,
so O(N^2) is the floor -- whole records made it O(N^3) before per-link deltas.

    python bench/change_cost.py [N ...]                     # default: 100 300 1000
    python bench/change_cost.py --conn-limit 200 25 50 100  # full mesh
    python bench/change_cost.py --breakdown --conn-limit 200 50  # bytes by kind

``--breakdown`` also prints the join's topology bytes by message kind, what
the digest answers carried (whole records vs per-link deltas), the bytes of
link entries that arrived at a router already holding them (by the message
kind that brought them: the floor is none), and how many connections ended
during the join (duplicate connections; the floor is none).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from _common import fit_exponent, quiet, wait_converged

from meshrouter.codec import pack
from meshrouter.names import PeerName
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import connection_to_wire, encode_record_bytes
from meshrouter.topology.topology import Topology
from sim.runner import SimOptions, Simulation, run_simulation

ANSWERS: Counter[str] = Counter()
"""Bytes by what the join's topology messages carried (``count_answers``, ``count_held_links``)."""


def count_answers() -> None:
    """Wrap ``Topology.newer_than`` to add up what digest answers carry."""
    real = Topology.newer_than

    def counting(self: Topology, digest: bytes) -> PeerMap | None:
        answer = real(self, digest)
        if answer is not None:
            ANSWERS["answer whole records"] += sum(
                len(encode_record_bytes(r)) for r in answer.records.values())
            ANSWERS["answer deltas"] += sum(len(d.encode()) for d in answer.delta_list())
        return answer

    Topology.newer_than = counting  # type: ignore[method-assign]


def held_links(topology: Topology, data: PeerMap) -> int:
    """Bytes of the link entries in ``data`` that ``topology`` already holds as they
    are (same incarnation; for a delta, a version at or above its base)."""
    total = 0
    for name, record in data.records.items():
        held = topology.record(name)
        if held is not None and held.uid == record.uid:
            have = set(held.connections)
            total += sum(len(pack(connection_to_wire(c))) for c in record.connections
                         if c in have)
    for name, deltas in data.deltas.items():
        held = topology.record(name)
        for delta in deltas:
            if held is None or held.uid != delta.uid or held.version < delta.base:
                continue
            have = set(held.connections)
            total += sum(len(pack(connection_to_wire(c))) for c in delta.changed if c in have)
    return total


def count_held_links() -> None:
    """Wrap the topology channel's receive paths to add up ``held_links``."""
    gossip, broadcast = TopologyGossiper.on_gossip, TopologyGossiper.on_broadcast

    def on_gossip(self: TopologyGossiper, src: PeerName, data: PeerMap) -> PeerMap | None:
        ANSWERS["links already held, gossip"] += held_links(self.topology, data)
        return gossip(self, src, data)

    def on_broadcast(self: TopologyGossiper, src: PeerName, data: PeerMap) -> PeerMap | None:
        ANSWERS["links already held, broadcast"] += held_links(self.topology, data)
        return broadcast(self, src, data)

    TopologyGossiper.on_gossip = on_gossip  # type: ignore[method-assign]
    TopologyGossiper.on_broadcast = on_broadcast  # type: ignore[method-assign]


def by_kind(sim: Simulation) -> Counter[str]:
    """Topology-channel bytes sent, by message kind, over every router."""
    out: Counter[str] = Counter()
    for router in sim.all_routers:
        stats: dict[str, Any] = router.gossip.stats.as_dict()["channels"].get("topology", {})
        for kind, sent in stats.get("sent_bytes", {}).items():
            out[kind] += sent
    return out


def measure(n: int, seed: int = 1, conn_limit: int = 16) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n + 1)
        await sim.join_all(hosts[:n])
        await wait_converged(sim)
        msgs0, bytes0 = sim._sent()
        kinds0, answers0 = by_kind(sim), Counter(ANSWERS)
        ended0 = sum(r.connection_terminations for r in sim.all_routers)
        contacts = sim.random_contacts(sim.cluster.live())
        await sim.start_host(hosts[n], contacts)
        figures["converge_s"] = await wait_converged(sim)
        msgs1, bytes1 = sim._sent()
        figures["messages"] = msgs1 - msgs0
        figures["bytes"] = bytes1 - bytes0
        figures["connections ended"] = (
            sum(r.connection_terminations for r in sim.all_routers) - ended0)
        for kind, sent in (by_kind(sim) - kinds0).items():
            figures[f"topology {kind}"] = sent
        for what, sent in (ANSWERS - answers0).items():
            figures[what] = sent

    start = time.perf_counter()
    options = SimOptions(peers=n + 1, seed=seed, conn_limit=conn_limit, latency=0.01, ipam=False)
    result = run_simulation(options, scenario_fn=scenario, check_invariants=False)
    figures["wall_s"] = time.perf_counter() - start
    figures["rss_per_peer_kib"] = result.rss_per_peer_kib
    return figures


def main() -> None:
    quiet()
    args = sys.argv[1:]
    conn_limit = 16
    breakdown = args[:1] == ["--breakdown"]
    if breakdown:
        args = args[1:]
        count_answers()
        count_held_links()
    if args[:1] == ["--conn-limit"]:
        conn_limit, args = int(args[1]), args[2:]
    sizes = [int(a) for a in args] or [100, 300, 1000]
    rows = []
    header = ("N", "messages", "bytes", "msgs/N", "bytes/N", "converge s", "wall s")
    print(" ".join(f"{h:>10}" for h in header))
    for n in sizes:
        f = measure(n, conn_limit=conn_limit)
        rows.append((n, f))
        print(f"{n:>10} {f['messages']:>10.0f} {f['bytes']:>10.0f} {f['messages'] / n:>10.1f} "
              f"{f['bytes'] / n:>10.0f} {f['converge_s']:>10.2f} {f['wall_s']:>10.1f}", flush=True)
        if breakdown:
            keys = ("topology ", "answer ", "links ", "connections ")
            for key in sorted(k for k in f if k.startswith(keys)):
                print(f"{'':>10} {key:>32} {f[key]:>10.0f}", flush=True)
    if len(rows) >= 2:
        xs = [float(n) for n, _ in rows]
        msg_exp = fit_exponent(xs, [f["messages"] for _, f in rows])
        byte_exp = fit_exponent(xs, [f["bytes"] for _, f in rows])
        print(f"fitted exponent: messages ~ N^{msg_exp:.2f}, bytes ~ N^{byte_exp:.2f}")


if __name__ == "__main__":
    main()
