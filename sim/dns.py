"""DNS in the simulator: N real Routers, each with a ``DnsService``, on the simulated network.

The scenario checks the issue's three invariants and measures them:

1. After quiescence every live peer answers the same addresses for every name.
2. A detached container's record disappears from every peer's answers as fast
   as a topology change propagates (both travel as one broadcast on the
   origin's tree): we measure the removal and, for comparison, how long the
   mesh takes to learn that a crashed peer is unreachable.
3. A crashed peer stops being answered for as soon as a router cannot reach it
   -- checked at every sample on every router, not only at the end -- and is
   answered for again when it returns (its records come back from its state).

Answers are read from each service's ``NameView`` (the resolver's only input;
the resolver itself is tested byte by byte elsewhere), and at quiescence also
through the resolver, as a client would get them.

``python -m sim.dns 300`` prints the figures (JSON, then the sentence with
the comparison: the same peer's own topology change, timed the same way).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
import trio.testing
from dnslib import EDNS0, QTYPE, DNSRecord

from meshrouter.dns.names import format_ipv4
from meshrouter.dns.service import DnsService
from meshrouter.dns.settings import DnsSettings
from meshrouter.names import PeerName
from sim.cluster import SimCluster, SimHost
from sim.network import LinkProfile

SAMPLE = 0.005
NAMES = 5
EDNS_BUFFER = 4096
CONN_LIMIT = 16
LATENCY = 0.01


@dataclass
class DnsSimResult:
    peers: int
    seed: int
    conn_limit: int = CONN_LIMIT
    latency: float = LATENCY
    joined_after: float = 0.0
    names_agree_after: float = 0.0
    agree_at_quiescence: bool = False
    removal_everywhere_after: float | None = None
    topology_change_everywhere_after: float | None = None
    """For comparison: the same peer's own topology record (a new link) from the
    moment it changed until every live peer holds that version."""
    crash_unreachable_everywhere_after: float | None = None
    crash_unanswered_everywhere_after: float | None = None
    answered_while_unreachable: int = 0
    restart_reachable_everywhere_after: float | None = None
    restart_answered_everywhere_after: float | None = None
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def dns_of(host: SimHost) -> DnsService:
    assert host.router is not None
    service = host.router.service("dns")
    assert isinstance(service, DnsService)
    return service


def container_address(index: int) -> str:
    return f"10.32.{(index + 1) >> 8}.{(index + 1) & 0xFF}"


def answers(host: SimHost) -> dict[str, tuple[int, ...]]:
    return dns_of(host).view().addresses


def resolved(host: SimHost, name: str) -> list[str] | None:
    """What a client of this router gets for ``name`` (through the resolver),
    asking with an EDNS0 buffer of 4,096 bytes as stub resolvers do (without
    it, 512 bytes hold 29 addresses: at N = 300 a name has 60); None if the
    answer is truncated all the same (the client would retry over TCP)."""
    query = DNSRecord.question(name, "A")
    query.add_ar(EDNS0(udp_len=EDNS_BUFFER))
    data = dns_of(host).resolve_bytes(query.pack())
    assert data is not None
    reply = DNSRecord.parse(data)
    if reply.header.tc:
        return None
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def _wait_until(check: Any, limit: float) -> float | None:
    """Seconds until ``check()`` holds (sampled every SAMPLE), or None."""
    start = trio.current_time()
    while trio.current_time() - start < limit:
        if check():
            return trio.current_time() - start
        await trio.sleep(SAMPLE)
    return None


def _agree(cluster: SimCluster) -> bool:
    views = [answers(h) for h in cluster.live()]
    return all(v == views[0] for v in views)


async def scenario(nursery: trio.Nursery, peers: int, seed: int, conn_limit: int,
                   latency: float) -> DnsSimResult:
    result = DnsSimResult(peers, seed, conn_limit, latency)
    # Each router runs the standard services, DNS among them: records and
    # gossip without a server (no sockets in the simulator).
    dns = DnsSettings(enabled=False, overlay_networks=("10.32.0.0/12",))
    cluster = SimCluster(nursery, seed=seed, profile=LinkProfile(latency=latency),
                         router_settings={"conn_limit": conn_limit, "ipam": False, "dns": dns,
                                          "heartbeat_interval": 2.0,
                                          "heartbeat_timeout": 6.0},
                         record_events=False)
    await cluster.start_network()
    hosts = cluster.add_hosts(peers)
    start = trio.current_time()
    for host in hosts:
        running = cluster.live()
        contacts = cluster.rng.sample(running, min(2, len(running)))
        await cluster.start(host, [c.address for c in contacts])
        await trio.sleep(0.02)
    joined = await _wait_until(cluster.converged, 600.0)
    assert joined is not None, "the topology did not converge"
    result.joined_after = trio.current_time() - start

    # 1. Every host publishes one container under one of NAMES names.
    for host in hosts:
        dns_of(host).register(f"c{host.index}", f"svc{host.index % NAMES}",
                              container_address(host.index))
    expected = {f"svc{n}.mesh.local.": tuple(sorted(
        int.from_bytes(bytes(int(o) for o in container_address(h.index).split(".")), "big")
        for h in hosts if h.index % NAMES == n)) for n in range(NAMES)}
    agree = await _wait_until(lambda: all(answers(h) == expected for h in hosts), 120.0)
    result.names_agree_after = agree if agree is not None else -1.0
    await trio.sleep(2.0)
    result.agree_at_quiescence = _agree(cluster) and all(answers(h) == expected for h in hosts)
    for name, addrs in expected.items():
        want = sorted(format_ipv4(a) for a in addrs)
        got = [resolved(h, name) for h in hosts]
        if any(g is None for g in got):
            result.notes.append(f"{name}: {len(want)} addresses do not fit "
                                f"{EDNS_BUFFER} bytes (truncated; TCP would hold them)")
        elif any(g != want for g in got):
            result.agree_at_quiescence = False
            result.notes.append(f"resolver answers differ for {name}")

    # 2. Detach one container: its address leaves every peer's answers.
    gone = hosts[len(hosts) // 2]
    gone_name = f"svc{gone.index % NAMES}.mesh.local."
    gone_address = int.from_bytes(
        bytes(int(o) for o in container_address(gone.index).split(".")), "big")
    dns_of(gone).unregister_container(f"c{gone.index}")
    result.removal_everywhere_after = await _wait_until(
        lambda: all(gone_address not in answers(h).get(gone_name, ()) for h in cluster.live()),
        60.0)

    # 3. Crash a peer: nobody answers for it once it is unreachable; back on restart.
    victim = hosts[-1]
    victim_name = f"svc{victim.index % NAMES}.mesh.local."
    victim_address = int.from_bytes(
        bytes(int(o) for o in container_address(victim.index).split(".")), "big")
    cluster.crash(victim)
    violations = 0
    t0 = trio.current_time()
    unreachable_at: float | None = None
    unanswered_at: float | None = None
    while trio.current_time() - t0 < 60.0:
        all_unreachable = all_unanswered = True
        for host in cluster.live():
            assert host.router is not None
            reachable = victim.name in host.router.reachable_peers()
            answered = victim_address in answers(host).get(victim_name, ())
            if not reachable and answered:
                violations += 1
            all_unreachable &= not reachable
            all_unanswered &= not answered
        now = trio.current_time() - t0
        if all_unreachable and unreachable_at is None:
            unreachable_at = now
        if all_unanswered and unanswered_at is None:
            unanswered_at = now
        if unreachable_at is not None and unanswered_at is not None:
            break
        await trio.sleep(SAMPLE)
    result.crash_unreachable_everywhere_after = unreachable_at
    result.crash_unanswered_everywhere_after = unanswered_at
    result.answered_while_unreachable = violations

    contacts = [h for h in cluster.live()][:2]
    await cluster.start(victim, [c.address for c in contacts])
    result.restart_reachable_everywhere_after = await _wait_until(
        lambda: all(h.router is not None and victim.name in h.router.reachable_peers()
                    for h in cluster.live()), 120.0)
    result.restart_answered_everywhere_after = await _wait_until(
        lambda: all(victim_address in answers(h).get(victim_name, ()) for h in cluster.live()),
        120.0)
    if result.restart_answered_everywhere_after is not None and \
            result.restart_reachable_everywhere_after is not None:
        result.restart_answered_everywhere_after += result.restart_reachable_everywhere_after

    # 4. For comparison with 2: a topology change of the same peer (last, so
    #    that closing a link perturbs none of the checks above).
    await _wait_until(cluster.converged, 60.0)
    result.topology_change_everywhere_after = await _topology_change(cluster, gone)
    return result


async def _topology_change(cluster: SimCluster, origin: SimHost) -> float | None:
    """Seconds a topology change of ``origin`` takes to reach every live peer:
    it closes one of its connections (to its best-connected neighbour: the
    mesh stays whole); timed from the moment its own record changes until
    every live peer holds that version of its record -- the path a DNS change
    also takes (a broadcast on the origin's tree, digests behind it)."""
    router = origin.router
    assert router is not None
    own = router.topology.record(origin.name)
    assert own is not None and router.connections

    def links(name: PeerName) -> int:
        record = router.topology.record(name)
        return len(record.connections) if record is not None else 0

    neighbour = max(sorted(router.connections), key=links)
    before = own.version
    router.connections[neighbour].close("sim.dns: a topology change to time")
    changed = await _wait_until(
        lambda: (r := router.topology.record(origin.name)) is not None and r.version > before,
        30.0)
    if changed is None:
        return None
    current = router.topology.record(origin.name)
    assert current is not None
    version = current.version

    def everywhere() -> bool:
        for host in cluster.live():
            record = host.router.topology.record(origin.name) if host.router else None
            if record is None or record.version < version:
                return False
        return True

    return await _wait_until(everywhere, 60.0)


def figure(result: DnsSimResult) -> str:
    """The issue's sentence, with the comparison."""
    def seconds(value: float | None) -> str:
        return "never (within the limit)" if value is None else f"{value:.3f} s"

    removal, topo = result.removal_everywhere_after, result.topology_change_everywhere_after
    ratio = f" (ratio {removal / topo:.2f})" if removal is not None and topo else ""
    return (f"N = {result.peers}: a detached container's record disappears from every peer's "
            f"answers within {seconds(removal)} of simulated time; a topology change of the "
            f"same peer reaches every peer in {seconds(topo)}{ratio}. A crashed peer is "
            f"unreachable everywhere after {seconds(result.crash_unreachable_everywhere_after)}"
            f" and unanswered after {seconds(result.crash_unanswered_everywhere_after)} "
            f"({result.answered_while_unreachable} answers for it while unreachable); "
            f"samples every {SAMPLE * 1000:.0f} ms, links {result.latency * 1000:.0f} ms, "
            f"connection limit {result.conn_limit}; {result.wall_seconds} s of wall time.")


def run(peers: int, seed: int = 1, conn_limit: int = CONN_LIMIT,
        latency: float = LATENCY) -> DnsSimResult:
    holder: list[DnsSimResult] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            holder.append(await scenario(nursery, peers, seed, conn_limit, latency))
            nursery.cancel_scope.cancel()

    wall = time.perf_counter()
    # Reproducible runs: seed trio's own scheduler randomness (as sim/runner.py).
    trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio._core._run._r.seed(seed)
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    holder[0].wall_seconds = round(time.perf_counter() - wall, 1)
    return holder[0]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    outcome = run(count)
    print(json.dumps(asdict(outcome), indent=2))
    print(figure(outcome))
