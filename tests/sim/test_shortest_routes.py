"""The ``unicast-routes-shortest`` invariant: paths as short as the live connections
allow, judged by a BFS over the connections the routers hold (not their records)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from meshrouter.names import PeerName
from sim.invariants import check_all
from sim.runner import SimOptions, Simulation, run_simulation
from tests.sim.support import RedirectedRoutes

OPTIONS = SimOptions(peers=12, seed=3, latency=0.005, heartbeat_interval=2.0,
                     heartbeat_timeout=6.0, conn_limit=3)


def _distances(links: dict[PeerName, set[PeerName]], src: PeerName) -> dict[PeerName, int]:
    dist = {src: 0}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        for peer in links[node]:
            if peer not in dist:
                dist[peer] = dist[node] + 1
                queue.append(peer)
    return dist


def test_a_detour_without_a_loop_is_caught() -> None:
    found: list[str] = []
    detoured: list[bool] = []

    def detour(sim: Simulation) -> None:
        routers = {r.name: r for r in sim.cluster.routers()}
        links = {name: {p for p in r.connections if p in routers} for name, r in routers.items()}
        for src in sorted(routers):
            dist_src = _distances(links, src)
            for dst, d in sorted(dist_src.items()):
                if d < 2:
                    continue
                dist_dst = _distances(links, dst)
                # A neighbour as far from dst as src is: a detour of one hop that
                # can never lead back through src (no loop for unicast-routes).
                for via in sorted(links[src]):
                    if dist_dst.get(via) == d:
                        real = routers[src].topology.routes()
                        fake = RedirectedRoutes(real, dst, via)
                        routers[src].topology.routes = lambda f=fake: f  # type: ignore[method-assign]
                        detoured.append(True)
                        found.extend(str(v) for v in check_all(sim.cluster))
                        return

    result = run_simulation(replace(OPTIONS, scenario="join"), inspect=detour)
    assert not result.violations  # healthy before the injection
    assert detoured, "no detour exists in this mesh: choose another seed"
    assert any("unicast-routes-shortest" in v for v in found), found
    assert not any(v.startswith("[unicast-routes]") for v in found)  # no loop: only this one
