"""IPAM in the simulator: the ``ipam`` scenario (partition long enough for a
reclaim, crashes with and without data, restarts) and a small seeded campaign of
random fault schedules keep the invariants "no address allocated on two live
peers" and "rings agree"; an injected duplicate is caught and reported with
the seed.  The 200-seed campaign runs locally: ``python bench/ipam_campaign.py``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meshrouter.ipam.service import ipam_of
from sim.invariants import check_all
from sim.runner import SimOptions, Simulation, run_simulation
from tests.sim.support import run_ok

BASE = SimOptions(
    peers=10, seed=3, latency=0.005, heartbeat_interval=2.0, heartbeat_timeout=6.0,
    reclaim_after=20.0,
)


def ipam_figures(options: SimOptions) -> dict[str, float]:
    result = run_ok(options)
    assert result.ipam is not None
    return result.ipam


def test_ipam_scenario_allocates_through_partition_crash_and_restart() -> None:
    figures = ipam_figures(replace(BASE, scenario="ipam"))
    assert figures["allocations_met"] > 80
    assert figures["duplicates_seen"] == 0
    assert figures["reclaims"] > 0, "the partition and the crashes should cause reclaims"
    assert figures["donations"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_ipam_campaign_seeds(seed: int) -> None:
    figures = ipam_figures(
        replace(BASE, peers=7, seed=seed, scenario="ipam-campaign", duration=80.0)
    )
    assert figures["duplicates_seen"] == 0
    assert figures["allocations_met"] > 0


def test_injected_duplicate_is_caught_and_reported_with_the_seed() -> None:
    found: list[object] = []

    def duplicate(sim: Simulation) -> None:
        routers = [h.router for h in sim.cluster.live() if h.router and ipam_of(h.router)]
        a, b = routers[0], routers[1]
        assert ipam_of(a) is not None and ipam_of(b) is not None
        taken = next(iter(ipam_of(a).core.user_of))
        ipam_of(b).core.user_of[taken] = "intruder"  # b now "has" a's address too
        found.extend(check_all(sim.cluster))

    result = run_simulation(replace(BASE, scenario="ipam", peers=6), inspect=duplicate)
    assert not result.violations  # the run was healthy before the injection
    texts = [str(v) for v in found]
    assert any("ipam-no-duplicates" in t and "allocated on 2 peers" in t for t in texts), texts
    assert all(f"seed {BASE.seed}" in t for t in texts)
