"""Theory of operation: packets carried across hosts by their flow tables alone.

Each host is a compiled flow table plus its underlay address.  ``carry``
injects a packet at a host and follows every copy: an output to a container
port is a delivery; an output to the tunnel port is encapsulated toward
``tun_dst`` and, if the underlay connects the two hosts, decapsulated at the
host owning that address (arriving on the tunnel port with the same VNI).
Every copy remembers the hosts it crossed, so a copy that reaches a host
again is reported as a loop (and stopped), and a copy sent over an underlay
link that does not exist is reported as lost.  The fabric decides nothing:
it is the test oracle's window onto what the flows do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from meshrouter.dataplane.core.evaluate import CompiledTable, Packet
from meshrouter.dataplane.core.pipeline import TUNNEL_PORT
from meshrouter.names import PeerName

MAX_COPIES = 100_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """A packet leaving ``host`` on container port ``port`` after crossing ``path``."""

    host: PeerName
    port: int
    packet: Packet
    path: tuple[PeerName, ...]


@dataclass(slots=True)
class Carried:
    """Everything that happened to one injected packet."""

    deliveries: list[Delivery] = field(default_factory=list)
    loops: list[tuple[PeerName, ...]] = field(default_factory=list)
    lost: list[tuple[PeerName, str]] = field(default_factory=list)
    """(host, tun_dst) of copies tunnelled where the underlay does not reach."""


@dataclass(slots=True)
class Fabric:
    """Hosts' flow tables and underlay addresses, and which underlay links work."""

    tables: dict[PeerName, CompiledTable]
    addresses: Mapping[PeerName, str]
    connected: Callable[[PeerName, PeerName], bool]
    _by_address: dict[str, PeerName] = field(init=False)

    def __post_init__(self) -> None:
        self._by_address = {address: host for host, address in self.addresses.items()}

    def carry(self, host: PeerName, packet: Packet) -> Carried:
        """Inject ``packet`` at ``host`` (on ``packet.in_port``) and follow every copy."""
        result = Carried()
        queue: deque[tuple[PeerName, Packet, tuple[PeerName, ...]]] = deque(
            [(host, packet, (host,))])
        copies = 0
        while queue:
            at, pkt, path = queue.popleft()
            table = self.tables.get(at)
            if table is None:
                continue
            for emission in table.process(pkt):
                copies += 1
                if copies > MAX_COPIES:
                    raise RuntimeError("packet storm: more than MAX_COPIES copies")
                if emission.port != TUNNEL_PORT:
                    result.deliveries.append(Delivery(at, emission.port, emission.packet, path))
                    continue
                out = emission.packet
                dst = self._by_address.get(out.tun_dst)
                if dst is None or dst == at or not self.connected(at, dst):
                    result.lost.append((at, out.tun_dst))
                elif dst in path:
                    result.loops.append((*path, dst))
                else:
                    arrived = replace(out, in_port=TUNNEL_PORT, tun_dst="")
                    queue.append((dst, arrived, (*path, dst)))
        return result
