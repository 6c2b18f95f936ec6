"""The scale figures that regress first, in CI-sized time: for N = 100 and 300
peers, in a limited mesh (connection limit 16) and a full mesh (limit above N),

* the cost of ONE peer joining the converged mesh: gossip messages and bytes
  mesh-wide, and per peer (the "cost per change");
* propagation: simulated time for one topology change (a peer drops a link) to
  reach every peer, with 10 ms links;
* convergence of the initial build (simulated seconds after the last start),
  the build's simulated seconds in all and its CPU seconds;
* wall seconds, CPU seconds (user + system of the row's process: less
  inflated than wall time when other work shares the machine), peak RSS, and
  RSS per peer.

How the mesh is *built* (``--schedule``; the figures above are all taken on
the converged mesh, so the schedule changes their cost, not their meaning: the
one join cost 3,656 messages after a simultaneous and 3,687 after a sequential
build at N = 150 limited, 11,440 and 11,434 at N = 100 full):

* limited mesh: ``sequential``, one start every 0.1 s (``--join-interval``),
  contacts among the running peers, as ``python -m sim --scenario join`` does.
  Starting every peer at once (``simultaneous``, the old default) cost 3-4x the
  CPU: everyone dials the peers it discovers at the same moment and overshoots
  the limit, so connections are made and dropped 8x as often (101,514 closes
  against 12,192 at N = 150), each drop changes a record (3.7x the broadcasts
  handled), and with views changing that fast a broadcast's tree cannot be
  patched from the receiver's previous one (11x the full BFS recomputations).
  Its RSS per peer is inflated by that transient state (1,347 against 396
  KiB/peer at N = 150).  CPU s of the N = 150 row (same seed and commit):
  simultaneous 128.7, sequential every 0.05 s 65.4, every 0.1 s 58.2, every
  0.2 s 87.4, ``waves`` of 4 72.1; at N = 300, 1,640 (simultaneous, cc31ab5)
  -> 216.
* full mesh: ``simultaneous``.  No limit means no churn, and a simultaneous
  start lets each router batch its N link changes into a few broadcasts (one per
  ``topology_batch``), where a sequential build makes every existing record
  change at every join.  N = 50: simultaneous 18.6, ``waves`` (4 groups, each
  started at once, converging in between, contacts among the earlier groups)
  24.6, sequential 26.2 CPU s; N = 100: simultaneous 216 (RSS 3,194 KiB/peer),
  sequential 238 (2,129 KiB/peer).
  What it costs is route computation on a dense graph (a route graph and the
  broadcast trees of the senders, O(N^2) each, per topology version seen), which
  grows ~N^3.5: N = 300 would be ~3 hours of CPU, so full-mesh rows above
  ``--full-max`` (100) are skipped unless asked for.

``--schedule simultaneous`` reproduces the old schedule for both meshes.

Each row runs in its own process (so that peak RSS is that row's) and is
printed as soon as it is known, with the load average and a calibration: the
wall seconds of a fixed pure-Python loop measured in the same process
(``calib s``), so that ``wall / calib`` compares rows measured on a loaded and
on a quiet machine; ``--json`` prints one JSON object per row
instead.  Not a test: nothing here asserts a time.

    python bench/scale.py                      # N = 100 and 300 limited, 100 full
    python bench/scale.py --sizes 300 --meshes full --full-max 300   # hours
    python bench/scale.py --sizes 100 --meshes full
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import trio
from _common import quiet, wait_converged

from sim.cluster import SimHost
from sim.runner import SimOptions, Simulation, current_rss_kib, run_simulation

LIMITED = 16
SCHEDULES = ("sequential", "waves", "simultaneous")
FULL_MAX = 100  # a full mesh costs ~N^3.5 CPU to build: N = 300 is hours
DEFAULT_SCHEDULE = {"limited": "sequential", "full": "simultaneous"}


@dataclass(frozen=True)
class Schedule:
    """How the mesh is built before anything is measured.

    ``sequential``: one start every ``interval`` seconds, contacts among the
    peers already running (the simulator's join).  ``simultaneous``: the same
    with ``interval`` 0 (the old default).  ``waves``: ``waves`` groups started
    at once each, the build converging between groups; a peer of a later wave is
    given contacts among the peers of earlier (converged) waves.
    """

    kind: str = "sequential"
    interval: float = 0.1
    waves: int = 4

    def groups(self, n: int) -> list[range]:
        """Host indices 0..n-1 in start groups; a group is started at once
        (``interval`` apart), and the build converges before the next one."""
        if self.kind != "waves" or n == 0:
            return [range(n)] if n else []
        count = max(1, min(self.waves, n))
        bounds = [i * n // count for i in range(count + 1)]  # count <= n: none empty
        return [range(a, b) for a, b in itertools.pairwise(bounds)]

    def describe(self) -> str:
        if self.kind == "waves":
            return f"waves/{self.waves}"
        return "simultaneous" if self.kind == "simultaneous" else f"seq/{self.interval:g}s"


def schedule_for(mesh: str, kind: str | None, interval: float, waves: int) -> Schedule:
    """The schedule a row is built with: ``kind`` if given, else the mesh's default."""
    kind = kind or DEFAULT_SCHEDULE[mesh]
    if kind == "simultaneous":
        interval = 0.0
    return Schedule(kind, interval, waves)


async def build(sim: Simulation, hosts: list[SimHost], schedule: Schedule) -> None:
    """Start ``hosts`` by ``schedule``; the caller waits for the final convergence."""
    groups = schedule.groups(len(hosts))
    for number, group in enumerate(groups):
        earlier = hosts[: group.start]
        for index in group:
            # Contacts among the converged earlier groups; in the first group,
            # among the peers started before this one (as the simulator does).
            pool = earlier or hosts[group.start:index]
            await sim.start_host(hosts[index], sim.random_contacts(pool) if pool else [])
            await trio.sleep(schedule.interval)  # 0 still yields, as sim.join_all does
        if number < len(groups) - 1:
            await wait_converged(sim)


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


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(n: int, mesh: str, schedule: Schedule, seed: int = 1) -> dict[str, Any]:
    calib = calibrate()
    limit = LIMITED if mesh == "limited" else n + 2
    figures: dict[str, Any] = {"n": n, "mesh": mesh, "conn_limit": limit,
                               "schedule": schedule.describe()}
    rss0 = current_rss_kib()

    async def scenario(sim: Simulation) -> None:
        start_sim = trio.current_time()
        hosts = sim.cluster.add_hosts(n + 1)
        await build(sim, hosts[:n], schedule)
        figures["join_converge_s"] = round(await wait_converged(sim), 2)
        figures["build_sim_s"] = round(trio.current_time() - start_sim, 1)
        figures["rss_per_peer_kib"] = round((current_rss_kib() - rss0) / n)
        figures["build_cpu_s"] = round(cpu_seconds() - cpu0, 1)
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
    cpu0 = cpu_seconds()
    result = run_simulation(
        SimOptions(peers=n + 1, seed=seed, conn_limit=limit, latency=0.01, ipam=False,
                   join_interval=schedule.interval),
        scenario_fn=scenario, check_invariants=False,
    )
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    figures["cpu_s"] = round(cpu_seconds(), 1)
    figures["calib_s"] = round((calib + calibrate()) / 2, 3)
    figures["wall_per_calib"] = round(figures["wall_s"] / figures["calib_s"])
    figures["load"] = round(os.getloadavg()[0], 1)
    figures["peak_rss_mib"] = round(result.peak_rss_mib)
    figures["routes_computed"] = result.routes_computed
    return figures


COLUMNS = (
    ("n", "N", 5), ("mesh", "mesh", 8), ("schedule", "schedule", 12),
    ("one_join_messages", "join msgs", 10),
    ("one_join_bytes", "join bytes", 11), ("one_join_bytes_per_peer", "bytes/peer", 10),
    ("propagation_ms", "prop ms", 8), ("join_converge_s", "build s", 8),
    ("build_sim_s", "build sim s", 11), ("build_cpu_s", "build CPU s", 11),
    ("wall_s", "wall s", 7), ("cpu_s", "CPU s", 7), ("load", "load", 5), ("calib_s", "calib s", 8),
    ("wall_per_calib", "wall/calib", 10), ("rss_per_peer_kib", "KiB/peer", 9),
    ("peak_rss_mib", "peak MiB", 9),
)


def row_figures(n: int, mesh: str, row: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The figures a row's process printed; if it failed, why (the end of its
    stderr, which also holds the mesh's own log lines) instead of a bare exit code."""
    lines = row.stdout.strip().splitlines()
    if row.returncode == 0 and lines:
        figures: dict[str, Any] = json.loads(lines[-1])
        return figures
    tail = "\n".join(row.stderr.strip().splitlines()[-15:])
    raise SystemExit(f"the N = {n} {mesh} row failed (exit status {row.returncode}):\n{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--meshes", nargs="+", choices=["limited", "full"],
                        default=["limited", "full"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="how the mesh is built (default: sequential for the limited "
                        "mesh, simultaneous for the full one; 'simultaneous' for both is "
                        "the old schedule)")
    parser.add_argument("--join-interval", type=float, default=0.1,
                        help="seconds between starts of a sequential build (default 0.1; "
                        "0 = simultaneous)")
    parser.add_argument("--waves", type=int, default=4,
                        help="start groups of a waves build (default 4)")
    parser.add_argument("--full-max", type=int, default=FULL_MAX,
                        help=f"largest N of a full-mesh row (default {FULL_MAX}: see the "
                        "module docstring for what N = 300 costs)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--row", nargs=2, metavar=("N", "MESH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.row is not None:
        schedule = schedule_for(args.row[1], args.schedule, args.join_interval, args.waves)
        print(json.dumps(measure(int(args.row[0]), args.row[1], schedule, args.seed)))
        return
    if not args.json:
        print(" ".join(f"{title:>{width}}" for _, title, width in COLUMNS), flush=True)
    for n in args.sizes:
        for mesh in args.meshes:
            if mesh == "full" and n > args.full_max:
                print(f"# N = {n} full mesh skipped (above --full-max {args.full_max}: "
                      f"hours of CPU at N = 300)", file=sys.stderr, flush=True)
                continue
            extra = ["--schedule", args.schedule] if args.schedule else []
            row = subprocess.run(
                [sys.executable, __file__, "--row", str(n), mesh, "--seed", str(args.seed),
                 "--join-interval", str(args.join_interval), "--waves", str(args.waves),
                 *extra],
                check=False, capture_output=True, text=True)
            figures = row_figures(n, mesh, row)
            if args.json:
                print(json.dumps(figures), flush=True)
            else:
                print(" ".join(f"{figures[key]!s:>{width}}" for key, _, width in COLUMNS),
                      flush=True)


if __name__ == "__main__":
    main()
