"""Phases and measurements of a simulation run, and the join scenarios.

A run is ``trio.run`` on a ``MockClock`` with autojump, so simulated seconds
cost no wall time; trio's own scheduler randomness is seeded from the run's
seed (``trio._core._run._r`` -- the hook trio itself uses for deterministic
tests), so the same seed and arguments give the same event log, run after run.

Each scenario is a sequence of phases.  A phase performs an action (peers join,
a partition, a heal, crashes, restarts) and then waits until every live peer
agrees on the topology of its component; the time that takes is the phase's
convergence time.  A sampler records the fraction of agreeing peers over
simulated time for the plot.  The fault scenarios (partition-heal,
crash-restart, churn) are in ``sim/scenarios.py``, the IPAM ones in
``sim/ipam_workload.py``; both register here when this module is imported.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
import trio.testing

from meshrouter.ipam.service import ipam_of
from meshrouter.names import format_peer_name
from meshrouter.node.router import Router
from sim.cluster import SimCluster, SimHost, host_name
from sim.collector import collector
from sim.invariants import Violation, check_all
from sim.network import LinkProfile

SCENARIOS: dict[str, Callable[[Simulation], Awaitable[None]]] = {}


@dataclass
class SimOptions:
    """Everything that determines a run (with the seed)."""

    peers: int = 20
    seed: int = 1
    scenario: str = "join"
    latency: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bandwidth: float = float("inf")
    conn_limit: int = 200
    duration: float = 60.0
    join_interval: float = 0.1
    contacts: int = 2
    phase_timeout: float = 1800.0
    sample_interval: float = 0.05
    settle: float = 3.0
    check_sample: int = 64
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 60.0
    gossip_interval: float = 30.0
    record_events: bool = False
    ipam: bool = True
    ipalloc_range: str = "10.32.0.0/16"
    reclaim_after: float = 60.0
    allocations: int = 0
    gc: str = "relaxed"  # the collector's settings for the run (sim/collector.py)

    def router_settings(self) -> dict[str, Any]:
        return {
            "conn_limit": self.conn_limit,
            "heartbeat_interval": self.heartbeat_interval,
            "heartbeat_timeout": self.heartbeat_timeout,
            "gossip_interval": self.gossip_interval,
            "ipam": self.ipam,
            "ipalloc_range": self.ipalloc_range,
            # The first host founds the ring; every other one learns it and
            # gets space by donation -- deterministic whatever the join order.
            "ipalloc_init": f"seed={format_peer_name(host_name(0))}",
            "ipalloc_reclaim_after": self.reclaim_after,
        }

    def profile(self) -> LinkProfile:
        return LinkProfile(
            latency=self.latency,
            jitter=self.jitter,
            loss=self.loss,
            duplicate=self.duplicate,
            reorder=self.reorder,
            bandwidth=self.bandwidth,
        )


@dataclass
class PhaseResult:
    name: str
    started: float
    action_done: float | None = None
    converged: float | None = None
    series: list[tuple[float, float]] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0

    @property
    def convergence_time(self) -> float | None:
        """Simulated seconds from the end of the phase's action to agreement."""
        if self.converged is None or self.action_done is None:
            return None
        return self.converged - self.action_done


@dataclass
class SimResult:
    options: SimOptions
    phases: list[PhaseResult]
    channels: dict[str, dict[str, int]]
    routes_computed: int
    routes_shared: int
    wall_seconds: float
    simulated_seconds: float
    peak_rss_mib: float
    rss_per_peer_kib: float
    event_digest: str
    events: int
    violations: list[Violation]
    ipam: dict[str, Any] | None = None

    @property
    def converged(self) -> bool:
        return all(p.converged is not None for p in self.phases)

    def to_json(self) -> dict[str, Any]:
        peers = max(1, self.options.peers)
        return {
            "options": {
                k: (v if v != float("inf") else None) for k, v in asdict(self.options).items()
            },
            "converged": self.converged,
            "phases": [
                {
                    "name": p.name,
                    "started": p.started,
                    "action_done": p.action_done,
                    "converged": p.converged,
                    "convergence_seconds": p.convergence_time,
                    "messages": p.messages,
                    "bytes": p.bytes,
                }
                for p in self.phases
            ],
            "gossip": {
                channel: {
                    **counts,
                    "messages_per_peer": counts["messages"] / peers,
                    "bytes_per_peer": counts["bytes"] / peers,
                }
                for channel, counts in self.channels.items()
            },
            "routes_computed": self.routes_computed,
            "routes_shared": self.routes_shared,
            "wall_seconds": self.wall_seconds,
            "simulated_seconds": self.simulated_seconds,
            "peak_rss_mib": self.peak_rss_mib,
            "rss_per_peer_kib": self.rss_per_peer_kib,
            "event_digest": self.event_digest,
            "events": self.events,
            "ipam": self.ipam,
            "violations": [str(v) for v in self.violations],
        }


def current_rss_kib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Simulation:
    """One run: the cluster, the phases so far, and the helpers scenarios use."""

    def __init__(
        self,
        options: SimOptions,
        cluster: SimCluster,
        progress: Callable[[str, float, float], None] | None,
    ) -> None:
        self.options = options
        self.cluster = cluster
        self.rng = cluster.rng
        self.phases: list[PhaseResult] = []
        self.all_routers: list[Router] = []
        self.progress = progress
        self.rss_after_join: float | None = None
        self.ipam_workload: Any = None  # set by the IPAM scenarios (sim.ipam_workload)

    # -- gossip accounting
    def gossip_totals(self) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for router in self.all_routers:
            for channel, stats in router.gossip.stats.as_dict()["channels"].items():
                entry = totals.setdefault(channel, {"messages": 0, "bytes": 0})
                entry["messages"] += sum(stats["sent_messages"].values())
                entry["bytes"] += sum(stats["sent_bytes"].values())
        return totals

    def _sent(self) -> tuple[int, int]:
        totals = self.gossip_totals()
        return (
            sum(t["messages"] for t in totals.values()),
            sum(t["bytes"] for t in totals.values()),
        )

    # -- actions
    async def start_host(self, host: SimHost, contacts: list[SimHost]) -> Router:
        router = await self.cluster.start(host, [c.address for c in contacts])
        self.all_routers.append(router)
        return router

    def random_contacts(
        self, among: list[SimHost], exclude: SimHost | None = None
    ) -> list[SimHost]:
        pool = [h for h in among if h is not exclude]
        count = min(len(pool), max(1, self.options.contacts))
        return sorted(self.rng.sample(pool, count), key=lambda h: h.index)

    async def join_all(self, hosts: list[SimHost]) -> None:
        """Start hosts one after another, each given a few random running peers."""
        for host in hosts:
            running = [h for h in self.cluster.live()]
            contacts = self.random_contacts(running) if running else []
            await self.start_host(host, contacts)
            await trio.sleep(self.options.join_interval)

    # -- phases
    async def phase(
        self, name: str, action: Callable[[], Awaitable[None]] | None = None
    ) -> PhaseResult:
        result = PhaseResult(name, trio.current_time())
        self.phases.append(result)
        messages0, bytes0 = self._sent()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sample, result)
            if action is not None:
                await action()
            result.action_done = trio.current_time()
            # Converged = every live peer agrees, and keeps agreeing for
            # ``settle`` seconds (so a change still in flight -- a deferred dial,
            # a coalesced route update -- cannot pass for quiescence).  The
            # convergence moment is the start of that final streak.
            deadline = result.action_done + self.options.phase_timeout
            agree_since: float | None = None
            while trio.current_time() < deadline:
                now = trio.current_time()
                if self.cluster.converged():
                    agree_since = now if agree_since is None else agree_since
                    if now - agree_since >= self.options.settle:
                        result.converged = agree_since
                        break
                else:
                    agree_since = None
                await trio.sleep(self.options.sample_interval)
            nursery.cancel_scope.cancel()
        # One more sample at the end, and the cost of the phase.
        result.series.append((trio.current_time(), self.cluster.agreement()))
        messages1, bytes1 = self._sent()
        result.messages, result.bytes = messages1 - messages0, bytes1 - bytes0
        return result

    async def _sample(self, result: PhaseResult) -> None:
        while True:
            fraction = self.cluster.agreement()
            now = trio.current_time()
            result.series.append((now, fraction))
            if self.progress is not None:
                self.progress(result.name, now, fraction)
            await trio.sleep(self.options.sample_interval)


def scenario(
    name: str,
) -> Callable[[Callable[[Simulation], Awaitable[None]]], Callable[[Simulation], Awaitable[None]]]:
    def register(
        fn: Callable[[Simulation], Awaitable[None]],
    ) -> Callable[[Simulation], Awaitable[None]]:
        SCENARIOS[name] = fn
        return fn

    return register


async def _join_phase(sim: Simulation) -> None:
    hosts = sim.cluster.add_hosts(sim.options.peers)
    await sim.phase("join", lambda: sim.join_all(hosts))
    sim.rss_after_join = current_rss_kib()


@scenario("join")
async def join_scenario(sim: Simulation) -> None:
    await _join_phase(sim)


@scenario("conn-limit")
async def conn_limit_scenario(sim: Simulation) -> None:
    await _join_phase(sim)


def run_simulation(
    options: SimOptions,
    *,
    progress: Callable[[str, float, float], None] | None = None,
    scenario_fn: Callable[[Simulation], Awaitable[None]] | None = None,
    check_invariants: bool = True,
    inspect: Callable[[Simulation], None] | None = None,
) -> SimResult:
    """Run one scenario to the end and return its measurements."""
    if scenario_fn is None and options.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {options.scenario!r}; choose from {sorted(SCENARIOS)}")
    fn = scenario_fn or SCENARIOS[options.scenario]
    # Deterministic task scheduling: trio orders each batch of runnable tasks by
    # creation order and shuffles it with its own RNG when this flag is set (the
    # hook trio provides for Hypothesis); we seed that RNG with the run's seed.
    # Without it, ties between equal deadlines are broken by object addresses.
    trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio._core._run._r.seed(options.seed)
    rss_before = current_rss_kib()
    wall_start = time.perf_counter()
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cluster = SimCluster(
                nursery,
                seed=options.seed,
                profile=options.profile(),
                router_settings=options.router_settings(),
                record_events=options.record_events,
            )
            await cluster.start_network()
            sim = Simulation(options, cluster, progress)
            holder["sim"] = sim
            start = trio.current_time()
            await fn(sim)
            holder["simulated"] = trio.current_time() - start
            holder["violations"] = (
                check_all(cluster, sample=options.check_sample) if check_invariants else []
            )
            if sim.ipam_workload is not None:
                holder["violations"] += sim.ipam_workload.violations
            if inspect is not None:
                inspect(sim)
            nursery.cancel_scope.cancel()

    with collector(options.gc):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.perf_counter() - wall_start
    sim: Simulation = holder["sim"]
    rss_join = sim.rss_after_join if sim.rss_after_join is not None else current_rss_kib()
    return SimResult(
        options=options,
        phases=sim.phases,
        channels=sim.gossip_totals(),
        routes_computed=sum(r.topology.routes_computed for r in sim.all_routers),
        routes_shared=sum(getattr(r.topology, "routes_shared", 0) for r in sim.all_routers),
        wall_seconds=wall,
        simulated_seconds=holder["simulated"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_per_peer_kib=max(0.0, rss_join - rss_before) / max(1, options.peers),
        event_digest=sim.cluster.event_digest(),
        events=sim.cluster.event_count,
        violations=holder["violations"],
        ipam=_ipam_figures(sim),
    )


def _ipam_figures(sim: Simulation) -> dict[str, Any] | None:
    work = sim.ipam_workload
    if work is None:
        return None
    latencies = sorted(work.latencies)

    def percentile(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    # Every incarnation: a router's counters live in memory, so a crashed and
    # restarted peer's reclaims and donations are on its previous Router only.
    services = [s for s in map(ipam_of, sim.all_routers) if s is not None]
    return {
        "allocations_met": work.met,
        "allocations_unmet": work.unmet,
        "released": work.released,
        "latency_p50_s": percentile(0.5),
        "latency_p99_s": percentile(0.99),
        "latency_max_s": latencies[-1] if latencies else None,
        "reclaims": sum(s.core.counters.reclaims for s in services),
        "donations": sum(s.core.counters.donations_given for s in services),
        "duplicates_seen": sum(1 for v in work.violations if v.invariant == "ipam-no-duplicates"),
    }


# The fault and IPAM scenarios register themselves here (they use Simulation,
# defined above).
import sim.ipam_workload  # noqa: E402
import sim.scenarios  # noqa: E402, F401
