"""A tiny in-memory network of IpamCores for core-level tests (no trio).

Every broadcast reaches every peer in the sender's partition group at once;
unicasts likewise.  ``settle`` runs ticks and deliveries until nothing moves.
``noticed`` (when set) is the grouping the cores' ticks are told about, so a
test can open the window between a partition and its detection: messages
already stop at the new groups while every core still believes it reaches the
old ones (a router notices only after the heartbeat timeout).
"""

from __future__ import annotations

import random

from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import FoundingMode
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName, format_peer_name


class CoreNet:
    def __init__(self, names: list[int], mode: FoundingMode, *, cidr: str = "10.32.0.0/24",
                 reclaim_after: float = 60.0, pool: int = 4, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.range = AddressRange.parse(cidr)
        self.cores: dict[PeerName, IpamCore] = {}
        self.groups: dict[PeerName, int] = {}
        self.down: set[PeerName] = set()
        self.noticed: dict[PeerName, int] | None = None  # None: as ``groups``
        for i, name in enumerate(names):
            self.cores[PeerName(name)] = IpamCore(
                PeerName(name), 1000 + i, self.range, mode, reclaim_after=reclaim_after, pool=pool
            )
            self.groups[PeerName(name)] = 0
        for core in self.cores.values():
            core.start(self.now)
        self.exchange_digests()

    def reachable(self, name: PeerName) -> set[PeerName]:
        if name in self.down:
            return {name}
        return {
            other for other in self.cores
            if other not in self.down and self.groups[other] == self.groups[name]
        }

    def believed(self, name: PeerName) -> set[PeerName]:
        """Whom ``name``'s tick is told it reaches (``noticed`` groups, if set)."""
        if self.noticed is None:
            return self.reachable(name)
        if name in self.down:
            return {name}
        groups = self.noticed
        return {other for other in self.cores
                if other not in self.down and groups[other] == groups[name]}

    def deliver(self) -> bool:
        moved = False
        for name, core in list(self.cores.items()):
            if name in self.down:
                continue
            state = core.take_broadcast()
            if state is not None:
                moved = True
                for other in self.reachable(name) - {name}:
                    self.cores[other].receive(IpamState.decode(state.encode()), self.now)
            for dst, payload in core.take_unicasts():
                if dst in self.reachable(name):
                    moved = True
                    self.cores[dst].on_unicast(name, payload, self.now)
        return moved

    def exchange_digests(self) -> None:
        """Neighbours show each other their digests (as on every new connection)."""
        for name, core in self.cores.items():
            if name in self.down:
                continue
            for other in self.reachable(name) - {name}:
                core.neighbour_digest(self.cores[other].digest())

    def step(self, dt: float = 0.1) -> None:
        self.now += dt
        self.exchange_digests()
        for name, core in self.cores.items():
            if name not in self.down:
                core.tick(self.now, self.believed(name), self.rng)
                core.attempt(self.now)
        for _ in range(50):
            if not self.deliver():
                break

    def settle(self, seconds: float = 5.0, dt: float = 0.1) -> None:
        end = self.now + seconds
        while self.now < end:
            self.step(dt)

    def sync_all(self) -> None:
        """Anti-entropy: everyone merges everyone's state within its group."""
        for name, core in self.cores.items():
            if name in self.down:
                continue
            for other in self.reachable(name) - {name}:
                self.cores[other].receive(core.state().copy(), self.now)


def assert_safe(net: CoreNet) -> None:
    """No address is in use at two peers, and every one in use lies in its user's entry."""
    seen: dict[int, PeerName] = {}
    for name, core in net.cores.items():
        assert core.ring is not None
        for address in core.user_of:
            other = seen.setdefault(address, name)
            assert other == name, (
                f"address {address & 0xFF} handed out by {format_peer_name(other)} "
                f"and {format_peer_name(name)}")
            assert core.ring.entry_at(address).owner == name
