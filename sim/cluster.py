"""A cluster of real Routers on one simulated network, with crash and restart.

Each simulated host has a stable index, IP (10.x.y.z), peer name and storage;
its Router runs in its own cancel scope inside the cluster's nursery, so a crash
is a cancellation (its connections end with EOF at the other side, as when a
process is killed) and a restart builds a new Router with a new UID, keeping the
storage or not.  Every router's randomness and key material come from the one
master seed, so a run is a function of (seed, arguments).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.names import PeerName, format_peer_name
from meshrouter.node.assembly import build_router
from meshrouter.node.router import Router
from meshrouter.storage import MemoryStorage
from sim.network import LinkProfile, SimNetwork, SimTransport

PORT = 6783


def host_ip(index: int) -> str:
    """10.0.0.1, 10.0.0.2, ... wrapping into higher octets for large clusters."""
    value = index + 1
    return f"10.{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def host_name(index: int) -> PeerName:
    return PeerName(0x0A00_0000_0000 + index + 1)


@dataclass
class SimHost:
    index: int
    ip: str
    name: PeerName
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    router: Router | None = None
    scope: trio.CancelScope | None = None
    incarnation: int = 0

    @property
    def address(self) -> str:
        return f"{self.ip}:{PORT}"

    @property
    def alive(self) -> bool:
        return self.router is not None


@dataclass(frozen=True)
class Event:
    time: float
    host: str
    kind: str
    detail: str

    def line(self) -> str:
        return f"{self.time:.6f} {self.host} {self.kind} {self.detail}"


class SimCluster:
    """Hosts, routers and the simulated network they share."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        seed: int,
        profile: LinkProfile | None = None,
        router_settings: dict[str, Any] | None = None,
        record_events: bool = True,
    ) -> None:
        self.nursery = nursery
        self.seed = seed
        self.rng = random.Random(seed)
        self.network = SimNetwork(random.Random(self.rng.getrandbits(64)), profile)
        self.router_settings = dict(router_settings or {})
        self.hosts: list[SimHost] = []
        self.events: list[Event] = []
        self.record_events = record_events
        self._digest = hashlib.sha256()
        self.event_count = 0

    async def start_network(self) -> None:
        await self.nursery.start(self.network.run)

    # -- hosts
    def add_hosts(self, count: int) -> list[SimHost]:
        new = []
        for _ in range(count):
            index = len(self.hosts)
            host = SimHost(index, host_ip(index), host_name(index))
            self.hosts.append(host)
            new.append(host)
        return new

    def live(self) -> list[SimHost]:
        return [h for h in self.hosts if h.alive]

    def routers(self) -> list[Router]:
        return [h.router for h in self.hosts if h.router is not None]

    def host_of(self, name: PeerName) -> SimHost:
        return self.hosts[name - 0x0A00_0000_0001]

    def _observe(self, router: Router, kind: str, detail: str) -> None:
        event = Event(trio.current_time(), router.config.nickname, kind, detail)
        self.event_count += 1
        self._digest.update(event.line().encode() + b"\n")
        if self.record_events:
            self.events.append(event)

    def event_digest(self) -> str:
        return self._digest.copy().hexdigest()

    def _make_router(self, host: SimHost, peers: list[str]) -> Router:
        settings = dict(self.router_settings)
        config = RouterConfig.from_flat(
            host.name,
            f"h{host.index}",
            listen_host=host.ip,
            listen_port=PORT,
            initial_peers=tuple(peers),
            **settings,
        )
        rng = random.Random(self.rng.getrandbits(64))
        return build_router(
            config,
            transport=SimTransport(self.network, host.ip, PORT),
            rng=rng,
            storage=host.storage,
            key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
            observer=self._observe,
        )

    async def start(self, host: SimHost, peers: list[str] | None = None) -> Router:
        """Start (or restart) ``host``'s router, given PEER addresses to dial."""
        if host.alive:
            raise RuntimeError(f"host {host.index} is already running")
        router = self._make_router(host, peers or [])
        scope = trio.CancelScope()
        host.router = router
        host.scope = scope
        host.incarnation += 1

        async def run(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await router.run(task_status=task_status)

        await self.nursery.start(run)
        self._observe(router, "start", f"incarnation {host.incarnation}")
        return router

    def crash(self, host: SimHost, *, lose_data: bool = False) -> None:
        """Kill ``host``'s router (connections see EOF); optionally wipe its storage."""
        if host.router is None or host.scope is None:
            return
        self._observe(host.router, "crash", "data lost" if lose_data else "data kept")
        host.scope.cancel()
        host.router = None
        host.scope = None
        if lose_data:
            host.storage = MemoryStorage()

    # -- views
    def components(self) -> list[list[SimHost]]:
        """Live hosts grouped by network reachability (partition groups)."""
        groups: dict[int, list[SimHost]] = {}
        for host in self.live():
            groups.setdefault(self.network.group_of(host.ip), []).append(host)
        return [groups[k] for k in sorted(groups)]

    def agreement(self) -> float:
        """Fraction of live routers whose topology is the converged one for their
        component: same fingerprint as the component's majority, and that view
        holds exactly the component's live peers."""
        live = self.live()
        if not live:
            return 1.0
        agreeing = 0
        for component in self.components():
            counts: dict[int, int] = {}
            for host in component:
                assert host.router is not None
                fp = host.router.topology.fingerprint
                counts[fp] = counts.get(fp, 0) + 1
            best_fp = max(sorted(counts), key=lambda f: counts[f])
            example = next(
                h
                for h in component
                if h.router is not None and h.router.topology.fingerprint == best_fp
            )
            assert example.router is not None
            if len(example.router.topology) == len(component):
                agreeing += counts[best_fp]
        return agreeing / len(live)

    def converged(self) -> bool:
        return self.agreement() == 1.0

    def describe(self, name: PeerName) -> str:
        return f"{format_peer_name(name)}(h{self.host_of(name).index})"
