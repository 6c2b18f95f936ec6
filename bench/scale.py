"""The scale figures that regress first, in CI-sized time: for N = 100 and 300
peers, in a limited mesh (connection limit 16) and a full mesh (limit above N),

* the cost of ONE peer joining the converged mesh: gossip messages and bytes
  mesh-wide, and per peer (the "cost per change");
* propagation: simulated time for one topology change (a peer drops a link) to
  reach every peer, with 10 ms links;
* convergence of the initial build (simulated seconds after the last start);
* wall seconds, CPU seconds (user + system of the row's process: less
  inflated than wall time when other work shares the machine), peak RSS, and
  RSS per peer.

The mesh is *built* by starting every peer at once (``--join-interval 0``, each
given two running contacts), not one every 100 ms: joining a full mesh costs
O(N^2) messages per join, so N sequential joins cost O(N^3) -- hours at
N = 300 -- while a simultaneous start lets every router batch its link changes
(one broadcast per ``topology_batch``).  The figures this bench exists for --
one join, one change -- are measured on the converged mesh either way.

Each row runs in its own process (so that peak RSS is that row's) and is
printed as soon as it is known, with the load average and a calibration: the
wall seconds of a fixed pure-Python loop measured in the same process
(``calib s``), so that ``wall / calib`` compares rows measured on a loaded and
on a quiet machine; ``--json`` prints one JSON object per row
instead.  Not a test: nothing here asserts a time.

    python bench/scale.py                      # N = 100 and 300, both meshes
    python bench/scale.py --sizes 100 --meshes full
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import trio
from _common import quiet, wait_converged

from sim.runner import SimOptions, Simulation, current_rss_kib, run_simulation

LIMITED = 16


async def propagation(sim: Simulation) -> float:
    """Simulated seconds until a dropped link's new record reaches every peer."""
    origin = sim.cluster.live()[0].router
    assert origin is not None
    peer = sorted(origin.connections)[0]
    origin.connections[peer].close("benchmark: drop one link")
    start = trio.current_time()
    target = origin.topology.local_record.version + 1
    others = [h.router for h in sim.cluster.live() if h.router is not origin]
    while trio.current_time() - start < 30:
        if all(
            r is not None and (rec := r.topology.record(origin.name)) is not None
            and rec.version >= target
            for r in others
        ):
            return trio.current_time() - start
        await trio.sleep(0.001)
    return float("nan")


def calibrate() -> float:
    """Wall seconds of a fixed pure-Python workload (dict and list churn, like the
    simulator's): the machine's current speed for this kind of code."""
    start = time.perf_counter()
    table: dict[int, list[int]] = {}
    for i in range(300_000):
        table.setdefault(i % 5_000, []).append(i)
    sum(len(v) for v in table.values())
    return time.perf_counter() - start


def measure(n: int, mesh: str, seed: int = 1, join_interval: float = 0.0) -> dict[str, Any]:
    calib = calibrate()
    limit = LIMITED if mesh == "limited" else n + 2
    figures: dict[str, Any] = {"n": n, "mesh": mesh, "conn_limit": limit}
    rss0 = current_rss_kib()

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n + 1)
        await sim.join_all(hosts[:n])
        figures["join_converge_s"] = round(await wait_converged(sim), 2)
        figures["rss_per_peer_kib"] = round((current_rss_kib() - rss0) / n)
        msgs0, bytes0 = sim._sent()
        await sim.start_host(hosts[n], sim.random_contacts(sim.cluster.live()))
        figures["one_join_converge_s"] = round(await wait_converged(sim), 2)
        msgs1, bytes1 = sim._sent()
        figures["one_join_messages"] = msgs1 - msgs0
        figures["one_join_bytes"] = bytes1 - bytes0
        figures["one_join_bytes_per_peer"] = round((bytes1 - bytes0) / n)
        await trio.sleep(5.0)  # past the broadcast batch window
        figures["propagation_ms"] = round(await propagation(sim) * 1000)

    start = time.perf_counter()
    result = run_simulation(
        SimOptions(peers=n + 1, seed=seed, conn_limit=limit, latency=0.01, ipam=False,
                   join_interval=join_interval),
        scenario_fn=scenario, check_invariants=False,
    )
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    figures["calib_s"] = round((calib + calibrate()) / 2, 3)
    figures["wall_per_calib"] = round(figures["wall_s"] / figures["calib_s"])
    figures["load"] = round(os.getloadavg()[0], 1)
    figures["peak_rss_mib"] = round(result.peak_rss_mib)
    figures["routes_computed"] = result.routes_computed
    return figures


COLUMNS = (
    ("n", "N", 5), ("mesh", "mesh", 8), ("one_join_messages", "join msgs", 10),
    ("one_join_bytes", "join bytes", 11), ("one_join_bytes_per_peer", "bytes/peer", 10),
    ("propagation_ms", "prop ms", 8), ("join_converge_s", "build s", 8),
    ("wall_s", "wall s", 7), ("cpu_s", "CPU s", 7), ("load", "load", 5), ("calib_s", "calib s", 8),
    ("wall_per_calib", "wall/calib", 10), ("rss_per_peer_kib", "KiB/peer", 9),
    ("peak_rss_mib", "peak MiB", 9),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--meshes", nargs="+", choices=["limited", "full"],
                        default=["limited", "full"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--join-interval", type=float, default=0.0,
                        help="seconds between starts while building the mesh (default 0)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--row", nargs=2, metavar=("N", "MESH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.row is not None:
        print(json.dumps(measure(int(args.row[0]), args.row[1], args.seed, args.join_interval)))
        return
    if not args.json:
        print(" ".join(f"{title:>{width}}" for _, title, width in COLUMNS), flush=True)
    for n in args.sizes:
        for mesh in args.meshes:
            row = subprocess.run(
                [sys.executable, __file__, "--row", str(n), mesh, "--seed", str(args.seed),
                 "--join-interval", str(args.join_interval)],
                check=True, capture_output=True, text=True)
            figures = json.loads(row.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(figures), flush=True)
            else:
                print(" ".join(f"{figures[key]!s:>{width}}" for key, _, width in COLUMNS),
                      flush=True)


if __name__ == "__main__":
    main()
