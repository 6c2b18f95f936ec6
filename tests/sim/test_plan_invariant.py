"""The ``broadcast-plan-exactly-once`` invariant: the tree a router's broadcast
carries reaches every peer of its component once, over live connections."""

from __future__ import annotations

from typing import Any

from meshrouter.names import PeerName
from sim.invariants import check_all
from sim.runner import SimOptions, Simulation, run_simulation


class PlannedRoutes:
    """Real routes, except for the broadcast plan the test chose."""

    def __init__(self, real: Any, plan: list[tuple[PeerName, bytes]]) -> None:
        self._real, self._plan = real, plan

    def broadcast_plan(self, direct: frozenset[PeerName]) -> list[tuple[PeerName, bytes]]:
        return list(self._plan)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


OPTIONS = SimOptions(peers=12, seed=3, latency=0.005, heartbeat_interval=2.0,
                     heartbeat_timeout=6.0, conn_limit=3, scenario="join")


def _break_plans(edit: str) -> list[str]:
    found: list[str] = []

    def inspect(sim: Simulation) -> None:
        for router in sim.cluster.routers():
            routes = router.topology.routes()
            plan = routes.broadcast_plan(frozenset(router.topology.local_record
                                                    .established_peers()))
            assert plan is not None
            deep = [(child, forest) for child, forest in plan if forest]
            if not deep:
                continue
            child, forest = deep[0]
            if edit == "drop":  # the child's subtree is never sent
                broken = [item for item in plan if item[0] != child]
            elif edit == "twice":  # a child and its subtree planned twice
                broken = [*plan, (child, forest)]
            else:  # a hop over no live connection: a stranger under the child
                broken = [(c, f + (0xFFFF_0000_0001).to_bytes(6, "big") + b"\x00\x01"
                           if c == child else f) for c, f in plan]
            fake = PlannedRoutes(routes, broken)
            router.topology.routes = lambda f=fake: f  # type: ignore[method-assign]
            found.extend(str(v) for v in check_all(sim.cluster, sample=64))
            return

    result = run_simulation(OPTIONS, inspect=inspect)
    assert not result.violations, result.violations  # healthy before the injection
    return found


def test_a_plan_missing_a_subtree_is_caught() -> None:
    found = _break_plans("drop")
    assert any("broadcast-plan-exactly-once" in v and "peers never" in v
               and " 0 peers never" not in v for v in found), found


def test_a_peer_planned_twice_is_caught() -> None:
    found = _break_plans("twice")
    assert any("broadcast-plan-exactly-once" in v and "0 more than once" not in v
               for v in found), found


def test_a_hop_over_no_connection_is_caught() -> None:
    found = _break_plans("stranger")
    assert any("broadcast-plan-exactly-once" in v and "1 hops over no live" in v
               for v in found), found
