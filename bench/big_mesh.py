"""All large-N figures from ONE simulated mesh, because building a 1,000-peer mesh
is the expensive part (tens of minutes of wall time on two cores):

1. join: N peers join one after another (each given a few running peers), with a
   connection limit; simulated seconds to convergence, wall seconds, RSS per peer;
2. cost of one change: mesh-wide gossip messages and bytes for ONE more peer joining;
3. propagation: simulated time for one topology change (a peer drops a link) to
   reach 99.9 % and 100 % of the peers, with 10 ms links.

Each figure is printed (and flushed) as soon as it is known.

    python bench/big_mesh.py [N] [CONN_LIMIT] [SEED] [JOIN_INTERVAL]   # default 1000 16 1 0.1
"""

from __future__ import annotations

import sys
import time

import trio
from _common import quiet, wait_converged

from sim.runner import SimOptions, Simulation, current_rss_kib, run_simulation


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


async def measure_propagation(sim: Simulation) -> tuple[float, float]:
    origin = sim.cluster.live()[0].router
    assert origin is not None
    peer = sorted(origin.connections)[0]
    origin.connections[peer].close("benchmark: drop one link")
    start = trio.current_time()
    target = origin.topology.local_record.version + 1
    others = [h.router for h in sim.cluster.live() if h.router is not origin]
    reached_999 = float("nan")
    while trio.current_time() - start < 30:
        have = sum(
            1 for r in others
            if r is not None and (rec := r.topology.record(origin.name)) is not None
            and rec.version >= target
        )
        if reached_999 != reached_999 and have >= 0.999 * len(others):
            reached_999 = trio.current_time() - start
        if have == len(others):
            return reached_999, trio.current_time() - start
        await trio.sleep(0.001)
    return reached_999, float("nan")


def main() -> None:
    quiet()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    join_interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    wall0 = time.perf_counter()
    rss0 = current_rss_kib()

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n + 1)
        t0 = trio.current_time()
        for i in range(0, n, 100):
            await sim.join_all(hosts[i:min(i + 100, n)])
            rss_mib = current_rss_kib() / 1024
            say(f"{min(n, i + 100)} peers started ({trio.current_time() - t0:.1f} s simulated, "
                f"{time.perf_counter() - wall0:.0f} s wall, RSS {rss_mib:.0f} MiB)")
        joined = trio.current_time()
        say(f"{n} peers started ({joined - t0:.1f} s simulated, "
            f"{time.perf_counter() - wall0:.0f} s wall)")
        converge = await wait_converged(sim, limit=3600)
        rss = current_rss_kib()
        say(f"JOIN N={n} limit={limit}: converged {converge:.1f} s (simulated) after the last "
            f"join; wall {time.perf_counter() - wall0:.0f} s; RSS {rss / 1024:.0f} MiB, "
            f"{(rss - rss0) / n:.0f} KiB per peer")
        msgs0, bytes0 = sim._sent()
        say(f"messages so far {msgs0}, bytes {bytes0}")
        await trio.sleep(5.0)
        msgs0, bytes0 = sim._sent()
        contacts = sim.random_contacts(sim.cluster.live())
        await sim.start_host(hosts[n], contacts)
        converge1 = await wait_converged(sim, limit=600)
        msgs1, bytes1 = sim._sent()
        say(f"ONE JOIN at N={n}: {msgs1 - msgs0} messages, {bytes1 - bytes0} bytes "
            f"({(msgs1 - msgs0) / n:.1f} msgs/N, {(bytes1 - bytes0) / n:.0f} bytes/N); "
            f"converged {converge1:.2f} s")
        await trio.sleep(5.0)  # past the broadcast batch window
        p999, full = await measure_propagation(sim)
        say(f"PROPAGATION N={n + 1}: 99.9% in {p999 * 1000:.0f} ms, all in {full * 1000:.0f} ms "
            "(simulated, 10 ms links)")

    result = run_simulation(
        SimOptions(peers=n + 1, seed=seed, conn_limit=limit, latency=0.01,
                   join_interval=join_interval, ipam=False),
        scenario_fn=scenario, check_invariants=False,
    )
    say(f"done: wall {result.wall_seconds:.0f} s, peak RSS {result.peak_rss_mib:.0f} MiB, "
        f"routes computed {result.routes_computed}")


if __name__ == "__main__":
    main()
