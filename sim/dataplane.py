"""The data plane in the simulator: containers, memory datapaths, and the reachability invariant.

``DataplaneCluster`` is a ``SimCluster`` whose routers get a ``MemoryDatapath``
and a ``DataplaneService`` (the one hook the lead may fold into
``SimCluster``/``build_router``: a datapath factory and extra services).
Containers are attached through the service's own ``attach_container``, the
flows are the ones the service computed and the datapath installed, and a
packet is carried host to host by ``core.fabric``: a tunnel output arrives at
the host with that underlay IP only if the simulated network connects the two.

The invariant, checked at quiescence: every container reaches every other
container of its network component through the flows -- exactly one copy, at
the right port, along a path that visits no host twice -- and nothing else is
delivered: not across a partition, not with a spoofed source, not to an
unknown MAC; an ARP request is answered with the right MAC; a broadcast
reaches every other container of the component exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.dataplane.core.evaluate import Packet
from meshrouter.dataplane.core.fabric import Fabric
from meshrouter.dataplane.core.pipeline import ETH_TYPE_ARP, ETH_TYPE_IP
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.endpoints.requests import AttachRequest, parse_cidr
from meshrouter.endpoints.service import DataplaneService
from meshrouter.names import PeerName
from meshrouter.node.assembly import standard_services
from meshrouter.node.router import Router
from sim.cluster import PORT, SimCluster, SimHost
from sim.invariants import Violation
from sim.network import SimTransport
from sim.runner import SimOptions, Simulation

FLOW_DELAY = 0.5
"""Simulated seconds a router gathers changes before recomputing its flows: free
under MockClock, and it turns a join storm into a few recomputations."""


class DataplaneCluster(SimCluster):
    """A SimCluster whose routers have a memory datapath and the dataplane service."""

    def _make_router(self, host: SimHost, peers: list[str]) -> Router:
        config = RouterConfig.from_flat(host.name, f"h{host.index}", listen_host=host.ip,
                                        listen_port=PORT, initial_peers=tuple(peers),
                                        **self.router_settings)
        rng = random.Random(self.rng.getrandbits(64))
        return Router(
            config,
            transport=SimTransport(self.network, host.ip, PORT),
            rng=rng,
            storage=host.storage,
            datapath=MemoryDatapath(),
            services=[*(s for s in standard_services(config)
                        if not isinstance(s, DataplaneService)),
                      DataplaneService(flow_delay=FLOW_DELAY)],
            observer=self._observe,
            key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
        )


def service_of(router: Router) -> DataplaneService:
    found = router.service(DataplaneService.name)
    assert isinstance(found, DataplaneService)
    return found


def datapath_of(router: Router) -> MemoryDatapath:
    assert isinstance(router.datapath, MemoryDatapath)
    return router.datapath


@dataclass(frozen=True)
class SimContainer:
    host: SimHost
    cid: str
    port: int
    mac: str
    ip: str


def containers_of(cluster: SimCluster) -> list[SimContainer]:
    out = []
    for host in cluster.live():
        assert host.router is not None
        for cid, a in sorted(service_of(host.router).attachments.items()):
            out.append(SimContainer(host, cid, a.port.port, a.port.mac, a.ip))
    return out


async def attach_containers(cluster: SimCluster, per_host: int) -> int:
    """Attach ``per_host`` containers on every live host (addresses 10.128.H.I)."""
    count = 0
    for host in cluster.live():
        assert host.router is not None
        service = service_of(host.router)
        for i in range(per_host):
            ip, _ = parse_cidr(f"10.{128 + (host.index >> 8)}.{host.index & 255}.{i + 2}")
            await service.attach_container(AttachRequest(
                f"h{host.index}-c{i}", "sim", ip=ip, prefix=8, name=f"h{host.index}-c{i}"))
            count += 1
    return count


def dataplane_still(cluster: SimCluster) -> bool:
    """Views agree, endpoints agree, and every live router's flows are built from
    the routes of its current view (none has a topology change pending)."""
    if not cluster.converged() or not endpoints_agree(cluster):
        return False
    for router in cluster.routers():
        routes = service_of(router).forwarding_routes
        if routes is None or routes.graph.fingerprint != router.topology.fingerprint:
            return False
    return True


def endpoints_agree(cluster: SimCluster) -> bool:
    """Every live router knows every live container of its component, and no other."""
    by_group: dict[int, set[tuple[PeerName, str]]] = {}
    for c in containers_of(cluster):
        by_group.setdefault(cluster.network.group_of(c.host.ip), set()).add(
            (c.host.name, c.cid))
    for host in cluster.live():
        assert host.router is not None
        known = {e.key for e in service_of(host.router).table.live()}
        if not by_group.get(cluster.network.group_of(host.ip), set()) <= known:
            return False
    return True


def fabric_of(cluster: SimCluster) -> Fabric:
    tables = {}
    addresses = {}
    for host in cluster.live():
        assert host.router is not None
        tables[host.name] = datapath_of(host.router).compiled
        addresses[host.name] = host.ip

    def connected(a: PeerName, b: PeerName) -> bool:
        return cluster.network.connected(cluster.host_of(a).ip, cluster.host_of(b).ip)

    return Fabric(tables, addresses, connected)


def _ip(src: SimContainer, dst_mac: str, dst_ip: str, src_mac: str | None = None) -> Packet:
    return Packet(in_port=src.port, eth_src=src_mac or src.mac, eth_dst=dst_mac,
                  eth_type=ETH_TYPE_IP, ip_src=src.ip, ip_dst=dst_ip)


def check_reachability(cluster: SimCluster, *, sample: int = 12, seed: int = 0
                       ) -> list[Violation]:
    """The data-plane invariant (module docstring) for every source and ``sample``
    destinations each (all when ``sample`` is 0)."""
    violations: list[Violation] = []
    fabric = fabric_of(cluster)
    containers = containers_of(cluster)
    rng = random.Random(seed)

    def fail(what: str, detail: str, *hosts: SimHost) -> None:
        violations.append(Violation("dataplane_reachability", tuple(f"h{h.index}" for h in hosts),
                                    f"{what}: {detail}", seed))

    for s in containers:
        group = cluster.network.group_of(s.host.ip)
        others = [d for d in containers if d != s]
        targets = others if not sample or sample >= len(others) else rng.sample(others, sample)
        for d in targets:
            allowed = cluster.network.group_of(d.host.ip) == group
            got = fabric.carry(s.host.name, _ip(s, d.mac, d.ip))
            where = [(x.host, x.port) for x in got.deliveries]
            if got.loops:
                fail("loop", f"{s.cid}->{d.cid} {got.loops[0]}", s.host, d.host)
            if where != ([(d.host.name, d.port)] if allowed else []):
                fail("unicast", f"{s.cid}->{d.cid} delivered at {where}, allowed={allowed}, "
                                f"lost={got.lost[:2]}", s.host, d.host)
            arp = fabric.carry(s.host.name, Packet(
                in_port=s.port, eth_src=s.mac, eth_dst="ff:ff:ff:ff:ff:ff",
                eth_type=ETH_TYPE_ARP, arp_op=1, arp_sha=s.mac, arp_spa=s.ip, arp_tpa=d.ip))
            answers = [(x.host, x.port, x.packet.arp_sha) for x in arp.deliveries]
            if answers != ([(s.host.name, s.port, d.mac)] if allowed else []):
                fail("arp", f"{s.cid} asks {d.ip}: {answers}", s.host, d.host)
            spoofed = fabric.carry(s.host.name, _ip(s, d.mac, d.ip, src_mac=d.mac))
            if spoofed.deliveries:
                fail("spoofed", f"{s.cid} as {d.mac} delivered {len(spoofed.deliveries)}",
                     s.host)
        stranger = fabric.carry(s.host.name, _ip(s, "02:7e:00:00:00:01", "10.250.0.1"))
        if stranger.deliveries:
            fail("unknown MAC", f"{s.cid} delivered {len(stranger.deliveries)}", s.host)
        bcast = fabric.carry(s.host.name, _ip(s, "ff:ff:ff:ff:ff:ff", "255.255.255.255"))
        got_b = sorted((x.host, x.port) for x in bcast.deliveries)
        want_b = sorted((d.host.name, d.port) for d in others
                        if cluster.network.group_of(d.host.ip) == group)
        if got_b != want_b or bcast.loops:
            fail("broadcast", f"{s.cid}: {len(got_b)} copies, {len(want_b)} expected, "
                              f"loops={bcast.loops[:1]}", s.host)
    return violations


@dataclass
class DataplaneRun:
    """What a data-plane simulation found, phase by phase."""

    containers: int = 0
    phases: dict[str, list[Violation]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)


def run_dataplane_simulation(
    options: SimOptions, *, per_host: int = 2, partition: bool = True, sample: int = 12,
    inspect: Callable[[SimCluster], Any] | None = None,
) -> DataplaneRun:
    """Join, attach containers, check; partition, check; attach one container on
    each side; heal, check."""
    result = DataplaneRun()

    async def quiesce(sim: Simulation, name: str, action: Callable[[], Any] | None) -> None:
        async def act() -> None:
            if action is not None:
                action()

        phase = await sim.phase(name, act)
        start = trio.current_time()
        # Check a still mesh: after a partition, routers that lost links dial
        # new peers on their side (with backoff), so views may agree for the
        # phase's ``settle`` and then change again; during that change
        # broadcasts legitimately meet trees of two versions.  So wait until
        # views agree, endpoints agree and every router forwards by the routes
        # of its current view, continuously for ``settle`` (the flow tasks
        # apply the last change meanwhile).
        still_since: float | None = None
        while trio.current_time() - start < 120:
            now = trio.current_time()
            if dataplane_still(sim.cluster):
                still_since = now if still_since is None else still_since
                if now - still_since >= options.settle:
                    break
            else:
                still_since = None
            await trio.sleep(0.5)
        result.seconds[name] = (phase.converged or trio.current_time()) - phase.started
        if inspect is not None:
            inspect(sim.cluster)
        found = check_reachability(sim.cluster, sample=sample, seed=options.seed)
        if phase.converged is None:  # say so first: flows over a moving topology may loop
            found.insert(0, Violation("dataplane_reachability", (),
                                      f"topology did not converge in phase {name}",
                                      options.seed))
        result.phases[name] = found
        result.flows[name] = sum(len(datapath_of(r).installed) for r in sim.cluster.routers())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cluster = DataplaneCluster(nursery, seed=options.seed, profile=options.profile(),
                                       router_settings=options.router_settings(),
                                       record_events=False)
            await cluster.start_network()
            sim = Simulation(options, cluster, None)
            hosts = cluster.add_hosts(options.peers)
            await sim.phase("join", lambda: sim.join_all(hosts))
            result.containers = await attach_containers(cluster, per_host)
            await quiesce(sim, "attached", None)
            if partition:
                shuffled = list(cluster.hosts)
                sim.rng.shuffle(shuffled)
                half = len(shuffled) // 2
                groups = [sorted(h.ip for h in shuffled[:half]),
                          sorted(h.ip for h in shuffled[half:])]
                await quiesce(sim, "partition", lambda: cluster.network.partition(groups))
                # One container starts on each side while they are apart: after the
                # heal, each side learns it only through the digest exchange of the
                # new connections (the broadcast could not cross).
                for host in (shuffled[0], shuffled[half]):
                    assert host.router is not None
                    ip, _ = parse_cidr(f"10.200.{host.index & 255}.2")
                    await service_of(host.router).attach_container(AttachRequest(
                        f"late-h{host.index}", "sim", ip=ip, prefix=8))
                    result.containers += 1
                await quiesce(sim, "heal", cluster.network.heal)
            nursery.cancel_scope.cancel()

    # Reproducible runs whatever ran before in the process: seed trio's own
    # scheduler randomness, as sim/runner.py does.  Without it a run inherited
    # the scheduler state (or the unseeded default) of whatever ran before, so
    # a CI run of the whole suite met a schedule a run on its own never did.
    trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio._core._run._r.seed(options.seed)
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result
