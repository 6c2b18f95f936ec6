"""IPAM under faults: allocation workloads and the ``ipam`` and
``ipam-campaign`` scenarios.

Containers are allocated through each router's own ``IpamService`` -- the code
behind ``POST /ip/...`` -- so requests wait for founding, acknowledgements and
donations exactly as a user's would.  The ``ipam-no-duplicates`` invariant is
checked after every step of a campaign, not only at the end: a duplicate that
exists for a moment is a failure.  Every refused allocation that waited at
least ``DONOR_CHECK_WAIT`` is checked against ``ipam-no-refusal-while-donatable``:
no peer reachable from the requester could have given it an address (by
``sim.invariants.ipam_donors``) both when it asked and when it was refused.
"Reachable" there is the network's view (the partition groups); when the
requester's own mesh did not reach those peers at both moments -- its
connections had not re-formed inside its network component -- IPAM could not
have asked them, and the refusal is recorded as
``ipam-refusal-while-mesh-split`` instead: still a failure of the seed, but
one of topology convergence, counted apart by ``bench/ipam_campaign.py``.
"""

from __future__ import annotations

import trio

from meshrouter.errors import IpamError
from meshrouter.ipam.service import IpamService, ipam_of
from meshrouter.names import PeerName
from sim.cluster import SimHost
from sim.invariants import INVARIANTS, Violation, ipam_donors
from sim.runner import Simulation, _join_phase, scenario

# A refusal after a shorter wait may be the donation chain still in flight, or a
# partition the requester has not noticed yet (heartbeat timeout): not checked.
DONOR_CHECK_WAIT = 20.0


class Workload:
    """Allocations and releases on random live routers, with outcome counts."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.serial = 0
        self.met = 0
        self.unmet = 0
        self.released = 0
        self.latencies: list[float] = []
        self.violations: list[Violation] = []

    def _services(self) -> list[tuple[SimHost, IpamService]]:
        found = []
        for host in self.sim.cluster.live():
            service = ipam_of(host.router) if host.router is not None else None
            if service is not None:
                found.append((host, service))
        return found

    async def allocate(self, count: int, wait: float = 30.0) -> None:
        """``count`` concurrent allocations on random live routers."""
        services = self._services()
        if not services:
            return
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                self.serial += 1
                host, service = self.sim.rng.choice(services)
                nursery.start_soon(self._one, host, service, f"c{self.serial}", wait)

    async def burst(self, count: int, wait: float = 30.0) -> None:
        """``count`` concurrent allocations at one random live router."""
        services = self._services()
        if not services:
            return
        host, service = self.sim.rng.choice(services)
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                self.serial += 1
                nursery.start_soon(self._one, host, service, f"c{self.serial}", wait)

    async def _one(self, host: SimHost, service: IpamService, container: str,
                   wait: float) -> None:
        started = trio.current_time()
        donors = ipam_donors(self.sim.cluster, host.name) if wait >= DONOR_CHECK_WAIT else []
        meshed = _mesh_of(host) & set(donors)
        try:
            await service.allocate(container, None, wait)
        except IpamError as exc:
            self.unmet += 1
            if donors and host.alive:
                still = sorted(set(donors) & set(ipam_donors(self.sim.cluster, host.name)))
                if still:
                    self._refused(host, container, started, still,
                                  meshed & _mesh_of(host), exc)
        else:
            self.met += 1
            self.latencies.append(trio.current_time() - started)

    def _refused(self, host: SimHost, container: str, started: float, still: list[PeerName],
                 meshed: set[PeerName], exc: IpamError) -> None:
        """Record a refusal while peers of the requester's network component could
        have given an address.  It is IPAM's failure when the requester's own
        mesh (its topology) reached one of them both when it asked and when it
        was refused; otherwise the mesh had not re-formed inside the network
        component (dialling, topology convergence) and IPAM could not ask them:
        recorded as a failure of its own kind."""
        cluster = self.sim.cluster
        peers = (cluster.describe(host.name), *(cluster.describe(n) for n in still[:3]))
        waited = f"{container} refused after {trio.current_time() - started:.1f}s"
        if meshed & set(still):
            self.violations.append(Violation(
                "ipam-no-refusal-while-donatable", peers,
                f"{waited} while reachable majority peers could give an address: {exc}",
                self.sim.options.seed))
        else:
            self.violations.append(Violation(
                "ipam-refusal-while-mesh-split", peers,
                f"{waited} while peers of its network component could give an address, but "
                f"its mesh did not reach them when it asked and when it was refused "
                f"(topology convergence, not IPAM): {exc}",
                self.sim.options.seed))


    def release(self, count: int) -> None:
        """Release ``count`` random containers on random live routers."""
        for _ in range(count):
            services = [s for _h, s in self._services() if s.core.allocations]
            if not services:
                return
            service = self.sim.rng.choice(services)
            container = self.sim.rng.choice(sorted(service.core.allocations))
            service.release(container, None)
            self.released += 1

    def check(self, when: str) -> None:
        """Record duplicate allocations right now (with when they were seen)."""
        for violation in INVARIANTS["ipam-no-duplicates"](self.sim.cluster, 0):
            self.violations.append(
                Violation(violation.invariant, violation.peers,
                          f"{violation.message} ({when})", self.sim.options.seed)
            )


def _mesh_of(host: SimHost) -> set[PeerName]:
    """The peers ``host``'s router reaches through its mesh (its topology)."""
    return set(host.router.reachable_peers()) if host.router is not None else set()


def rings_agree(sim: Simulation) -> bool:
    return not INVARIANTS["ipam-rings-agree"](sim.cluster, 0)


async def wait_rings_agree(sim: Simulation, limit: float = 120.0) -> float | None:
    """Simulated seconds until every component agrees on its ring (held 2 s)."""
    start = trio.current_time()
    since: float | None = None
    while trio.current_time() - start < limit:
        if rings_agree(sim):
            since = trio.current_time() if since is None else since
            if trio.current_time() - since >= 2.0:
                return since - start
        else:
            since = None
        await trio.sleep(0.1)
    return None


async def wait_quiet(sim: Simulation, limit: float = 300.0) -> float | None:
    """Until topology and rings both agree, held for 3 s: the invariants are
    checked at quiescence, not while a late redial is still propagating."""
    start = trio.current_time()
    since: float | None = None
    while trio.current_time() - start < limit:
        if sim.cluster.converged() and rings_agree(sim):
            since = trio.current_time() if since is None else since
            if trio.current_time() - since >= 3.0:
                return since - start
        else:
            since = None
        await trio.sleep(0.1)
    return None


def _partition_groups(sim: Simulation, hosts: list[SimHost], parts: int) -> list[list[str]]:
    shuffled = list(hosts)
    sim.rng.shuffle(shuffled)
    groups: list[list[str]] = [[] for _ in range(parts)]
    for i, host in enumerate(shuffled):
        groups[i % parts].append(host.ip)
    return [sorted(g) for g in groups]


@scenario("ipam")
async def ipam_scenario(sim: Simulation) -> None:
    """Allocate through join, a majority/minority partition (long enough for
    the majority to reclaim the minority's free space), heal, crashes (half of
    them losing their data) past the reclaim delay, and restarts."""
    await _join_phase(sim)
    work = Workload(sim)
    sim.ipam_workload = work  # type: ignore[attr-defined]
    n = len(sim.cluster.hosts)
    per_phase = sim.options.allocations or 2 * n
    reclaim = sim.options.reclaim_after

    async def allocate() -> None:
        await work.allocate(per_phase)
        work.check("after the first allocations")

    await sim.phase("allocate", allocate)
    hosts = list(sim.cluster.hosts)
    sim.rng.shuffle(hosts)
    minority = hosts[: max(1, (2 * n) // 5)]
    majority = hosts[len(minority):]

    async def split() -> None:
        sim.cluster.network.partition([sorted(h.ip for h in majority),
                                       sorted(h.ip for h in minority)])
        await work.allocate(per_phase, wait=5.0)
        work.check("during the partition")
        await trio.sleep(reclaim * 1.5)
        work.check("after reclaim in the partition")
        await work.allocate(per_phase // 2, wait=5.0)
        work.check("allocating after reclaim")

    async def heal() -> None:
        sim.cluster.network.heal()
        await work.allocate(per_phase)
        work.release(per_phase // 4)
        work.check("after heal")

    await sim.phase("partition", split)
    await sim.phase("heal", heal)
    victims = sorted(sim.rng.sample(sim.cluster.live(), max(1, n // 5)), key=lambda h: h.index)

    async def crash() -> None:
        for number, host in enumerate(victims):
            sim.cluster.crash(host, lose_data=number % 2 == 1)
        await trio.sleep(reclaim * 1.5)
        await work.allocate(per_phase)
        work.check("after crashes and reclaim")

    async def restart() -> None:
        for host in victims:
            survivors = [h for h in sim.cluster.live() if h not in victims]
            contacts = [] if host.storage.blobs else sim.random_contacts(survivors)
            await sim.start_host(host, contacts)
        await work.allocate(per_phase)
        work.check("after restarts")

    await sim.phase("crash", crash)
    await sim.phase("restart", restart)
    await wait_quiet(sim)


@scenario("ipam-campaign")
async def ipam_campaign_scenario(sim: Simulation) -> None:
    """A random schedule of partitions, heals, crashes (with or without data),
    restarts, allocation bursts and releases, then everything healed; the
    no-duplicates invariant is checked after every step."""
    await _join_phase(sim)
    work = Workload(sim)
    sim.ipam_workload = work  # type: ignore[attr-defined]
    rng = sim.rng
    reclaim = sim.options.reclaim_after
    steps = max(4, int(sim.options.duration // 10))

    async def run_schedule() -> None:
        await work.allocate(len(sim.cluster.hosts))
        for step in range(steps):
            choice = rng.random()
            if choice < 0.25:
                parts = rng.choice([2, 2, 3])
                sim.cluster.network.partition(_partition_groups(sim, sim.cluster.hosts, parts))
            elif choice < 0.4:
                sim.cluster.network.heal()
            elif choice < 0.55:
                live = sim.cluster.live()
                if len(live) > 2:
                    sim.cluster.crash(rng.choice(live), lose_data=rng.random() < 0.3)
            elif choice < 0.7:
                dead = [h for h in sim.cluster.hosts if not h.alive]
                if dead:
                    host = rng.choice(dead)
                    contacts = [] if host.storage.blobs else sim.random_contacts(
                        sim.cluster.live())
                    await sim.start_host(host, contacts)
            elif choice < 0.85:
                # Many containers starting at once on one host.
                await work.burst(rng.randint(5, 30))
                work.check(f"burst at step {step}")
            else:
                work.release(rng.randint(0, 3))
            await work.allocate(rng.randint(1, 6), wait=rng.uniform(1.0, 10.0))
            work.check(f"step {step}")
            await trio.sleep(rng.uniform(0.5, 2.0) * reclaim)
            work.check(f"after step {step}")
        sim.cluster.network.heal()
        for host in [h for h in sim.cluster.hosts if not h.alive]:
            contacts = [] if host.storage.blobs else sim.random_contacts(sim.cluster.live())
            await sim.start_host(host, contacts)
        await work.allocate(len(sim.cluster.hosts))
        work.check("after the final heal")

    await sim.phase("campaign", run_schedule)
    await wait_quiet(sim)
    work.check("at the end")
