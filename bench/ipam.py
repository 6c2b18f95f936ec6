"""IPAM figures:

1. local allocations per second: the sans-IO core alone, and through the
   router's IPAM service with a real data dir (every allocation fsynced before
   it is answered);
2. allocation latency when a donation is needed (simulated, 10 ms links): each
   of N-1 peers that own no space allocates once;
3. time from a peer's death to its space being reusable (simulated): a peer
   crashes; when does its heir reclaim its free space, and when does the first
   allocation land in it?  Default timers (heartbeat timeout 60 s,
   --ipalloc-reclaim-after 600 s) and short ones.

    python bench/ipam.py
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import trio
import trio.testing
from _common import quiet, wait_converged

from meshrouter.gossip.core import GossipCore
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import parse_founding
from meshrouter.ipam.service import IpamService
from meshrouter.names import format_peer_name
from meshrouter.node.datapath import NullDatapath
from meshrouter.node.service import ServiceContext
from meshrouter.storage import FileStorage
from meshrouter.topology.topology import Topology
from sim.runner import SimOptions, Simulation, run_simulation

ME = 0x0A0000000001


def core_rate(count: int = 20000) -> float:
    core = IpamCore(ME, 1, AddressRange.parse("10.32.0.0/16"),
                    parse_founding(f"seed={format_peer_name(ME)}", 0), reclaim_after=600)
    core.start(0.0)
    rng = random.Random(1)
    core.neighbour_digest(b"")  # alone: nothing to learn from peers
    core.tick(0.0, {ME}, rng)
    start = time.perf_counter()
    for i in range(count):
        if core.allocate(f"c{i}", None, 0.0) is None:
            core.tick(0.0, {ME}, rng)
            assert core.allocate(f"c{i}", None, 0.0) is not None
    return count / (time.perf_counter() - start)


def service_rate(count: int = 2000) -> float:
    async def main() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            service = IpamService(
                address_range=AddressRange.parse("10.32.0.0/16"),
                mode=parse_founding(f"seed={format_peer_name(ME)}", 0), reclaim_after=600,
                tick=1.0,
            )
            rng = random.Random(1)

            async def drain(limit: float) -> None:
                return None

            service.attach(ServiceContext(
                name=ME, uid=1, nickname="bench", label="bench", gossip=GossipCore(ME, rng=rng),
                storage=FileStorage(Path(tmp)), rng=rng,
                topology=Topology(local_name=ME, nickname="bench", uid=1, listen_port=0,
                                  rng=rng),
                datapath=NullDatapath(), reachable=lambda: {ME},
                peer_address=lambda peer: None, stop_router=lambda: None,
                leave_mesh=lambda: None, drain_gossip=drain, services=lambda: [service],
            ))
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)
                service.core.neighbour_digest(b"")  # alone: no start-up grace to wait out
                start = time.perf_counter()
                for i in range(count):
                    await service.allocate(f"c{i}", None, 5.0)
                rate = count / (time.perf_counter() - start)
                nursery.cancel_scope.cancel()
            return rate

    return trio.run(main)


def donation_latency(n: int = 20) -> list[float]:
    latencies: list[float] = []

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(n)
        await sim.join_all(hosts)
        await wait_converged(sim)
        founder = hosts[0].router
        assert founder is not None and founder.ipam is not None
        await founder.ipam.allocate("found", None, 30.0)  # h0 founds the ring
        await trio.sleep(5.0)
        for host in hosts[1:]:
            router = host.router
            assert router is not None and router.ipam is not None
            start = trio.current_time()
            await router.ipam.allocate(f"first-{host.index}", None, 30.0)
            latencies.append(trio.current_time() - start)

    run_simulation(SimOptions(peers=n, seed=1, latency=0.01), scenario_fn=scenario,
                   check_invariants=False)
    return latencies


def death_to_reuse(heartbeat_timeout: float, reclaim_after: float) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def scenario(sim: Simulation) -> None:
        hosts = sim.cluster.add_hosts(5)
        await sim.join_all(hosts)
        await wait_converged(sim)
        for host in hosts:
            assert host.router is not None and host.router.ipam is not None
            await host.router.ipam.allocate(f"c{host.index}", None, 30.0)
        await trio.sleep(5.0)
        victim = hosts[3]
        assert victim.router is not None and victim.router.ipam is not None
        ring = victim.router.ipam.core.ring
        assert ring is not None
        owned = [(e.token, end) for e, end in ring.owned_by(victim.name)]
        died = trio.current_time()
        sim.cluster.crash(victim)
        others = [h for h in hosts if h is not victim]
        while trio.current_time() - died < reclaim_after + 10 * heartbeat_timeout:
            await trio.sleep(0.5)
            heirs = [h.router for h in others if h.router is not None and h.router.ipam
                     is not None and h.router.ipam.core.counters.reclaims]
            if not heirs:
                continue
            figures.setdefault("reclaimed_s", trio.current_time() - died)
            heir = heirs[0]
            assert heir.ipam is not None and heir.ipam.core.ring is not None
            # Claim the first address of the old range that is now the heir's.
            for entry, end in heir.ipam.core.ring.owned_by(heir.name):
                inside = [a for a in range(entry.token, end)
                          if any(s <= a < e for s, e in owned) and heir.ipam.core.range.usable(a)]
                if inside:
                    text = heir.ipam.core.range.format(inside[0])
                    await heir.ipam.claim("reuse", text, 30.0)
                    figures["reused_s"] = trio.current_time() - died
                    return

    run_simulation(
        SimOptions(peers=5, seed=1, latency=0.01, heartbeat_interval=heartbeat_timeout / 2,
                   heartbeat_timeout=heartbeat_timeout, reclaim_after=reclaim_after),
        scenario_fn=scenario, check_invariants=False,
    )
    return figures


def main() -> None:
    quiet()
    print(f"local allocations/s, core alone: {core_rate():,.0f}", flush=True)
    print(f"local allocations/s, IPAM service with fsynced data dir: {service_rate():,.0f}",
          flush=True)
    lat = donation_latency()
    print(
        f"allocation needing a donation (19 peers, 10 ms links, simulated): "
        f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms",
        flush=True,
    )
    for heartbeat_timeout, reclaim_after in ((60.0, 600.0), (6.0, 30.0)):
        f = death_to_reuse(heartbeat_timeout, reclaim_after)
        print(
            f"peer death -> space reclaimed {f.get('reclaimed_s', float('nan')):.1f} s, "
            f"first address reused {f.get('reused_s', float('nan')):.1f} s (simulated; "
            f"heartbeat timeout {heartbeat_timeout:g} s, reclaim after {reclaim_after:g} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
