"""Cost of one change: mesh-wide gossip messages and bytes for ONE peer joining a
converged mesh of N peers (connection limit 16, or ``--conn-limit``), for several
N, and the fitted exponent of bytes against N.  O(N) per change is the goal in a
limited mesh (Weave's topology gossip was O(N^2) per change); in a full mesh
(``--conn-limit 200``) one join adds N links, each a fact every peer must learn,
so O(N^2) is the floor -- whole records made it O(N^3) before per-link deltas.

    python bench/change_cost.py [N ...]                     # default: 100 300 1000
    python bench/change_cost.py --conn-limit 200 25 50 100  # full mesh
"""

from __future__ import annotations

import sys
import time

from _common import fit_exponent, quiet, wait_converged

from sim.runner import SimOptions, Simulation, run_simulation


def measure(n: int, seed: int = 1, conn_limit: int = 16) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n + 1)
        await sim.join_all(hosts[:n])
        await wait_converged(sim)
        msgs0, bytes0 = sim._sent()
        contacts = sim.random_contacts(sim.cluster.live())
        await sim.start_host(hosts[n], contacts)
        figures["converge_s"] = await wait_converged(sim)
        msgs1, bytes1 = sim._sent()
        figures["messages"] = msgs1 - msgs0
        figures["bytes"] = bytes1 - bytes0

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
    if len(rows) >= 2:
        xs = [float(n) for n, _ in rows]
        msg_exp = fit_exponent(xs, [f["messages"] for _, f in rows])
        byte_exp = fit_exponent(xs, [f["bytes"] for _, f in rows])
        print(f"fitted exponent: messages ~ N^{msg_exp:.2f}, bytes ~ N^{byte_exp:.2f}")


if __name__ == "__main__":
    main()
