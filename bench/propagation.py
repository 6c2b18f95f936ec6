"""Propagation: with 10 ms links, the simulated time for ONE topology change (a
peer drops one of its links, so its record changes) to reach every peer of a
converged mesh of N peers (connection limit 16).  Serf's published model needs
about 2 s for 99.9 % at 1,000 nodes; the aim is under 0.2 s.

    python bench/propagation.py [N]            # default 1000
"""

from __future__ import annotations

import sys
import time

import trio
from _common import quiet, wait_converged

from sim.runner import SimOptions, Simulation, run_simulation


def measure(n: int, seed: int = 1) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n)
        await sim.join_all(hosts)
        await wait_converged(sim)
        await trio.sleep(5.0)  # past the broadcast batch window
        origin = hosts[0].router
        assert origin is not None
        peer = sorted(origin.connections)[0]
        origin.connections[peer].close("benchmark: drop one link")
        start = trio.current_time()
        target = origin.topology.local_record.version + 1
        others = [h.router for h in sim.cluster.live() if h.router is not origin]
        reached_999 = None
        while trio.current_time() - start < 30:
            have = sum(
                1 for r in others
                if r is not None and (rec := r.topology.record(origin.name)) is not None
                and rec.version >= target
            )
            if reached_999 is None and have >= 0.999 * len(others):
                reached_999 = trio.current_time() - start
            if have == len(others):
                figures["all_s"] = trio.current_time() - start
                break
            await trio.sleep(0.001)
        figures["p999_s"] = reached_999 if reached_999 is not None else float("nan")

    start = time.perf_counter()
    run_simulation(SimOptions(peers=n, seed=seed, conn_limit=16, latency=0.01, ipam=False),
                   scenario_fn=scenario, check_invariants=False)
    figures["wall_s"] = time.perf_counter() - start
    return figures


def main() -> None:
    quiet()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    f = measure(n)
    print(f"N={n}: one change reached 99.9% of peers in {f['p999_s'] * 1000:.0f} ms, "
          f"all peers in {f.get('all_s', float('nan')) * 1000:.0f} ms (simulated; 10 ms links); "
          f"wall {f['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
