"""Theory of operation: the ``ipam`` channel's adapter to the gossip core.

The gossip core moves bytes; this adapter decodes them into ``IpamState`` and
hands them to ``IpamCore``.  The state is small and always merged whole, so
gossip and broadcast are handled alike, and a digest is just a fingerprint:
two neighbours whose fingerprints differ send each other their state, and the
merge sorts out who was behind.  The core cannot read a clock, so the shell
passes one in; ``on_change`` lets the shell react at once (acknowledge a
reservation, answer a waiting request) instead of at its next tick.
"""

from __future__ import annotations

from collections.abc import Callable

from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName

CHANNEL = "ipam"


class IpamGossiper:
    """Plugs an ``IpamCore`` into the gossip core as the ``ipam`` channel."""

    channel = CHANNEL

    def __init__(
        self, core: IpamCore, clock: Callable[[], float], on_change: Callable[[], None]
    ) -> None:
        self.core = core
        self._clock = clock
        self._on_change = on_change

    def decode(self, payload: bytes) -> IpamState:
        return IpamState.decode(payload)

    def on_gossip(self, src: PeerName, data: IpamState) -> IpamState | None:
        delta = self.core.receive(data, self._clock())
        if delta is not None:
            self._on_change()
        return delta

    def on_broadcast(self, src: PeerName, data: IpamState) -> IpamState | None:
        return self.on_gossip(src, data)

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        self.core.on_unicast(src, payload, self._clock())
        self._on_change()

    def full_state(self) -> IpamState | None:
        state = self.core.state()
        return state if state.ring is not None or state.paxos is not None else None

    def digest(self) -> bytes:
        return self.core.digest()

    def full_digest(self) -> bytes:
        """The ring's digest is a fingerprint, and the only one there is."""
        return self.core.digest()

    def wants_full_digest(self, digest: bytes) -> bool:
        """Never: a differing fingerprint is answered with state (``newer_than``)."""
        return False

    def newer_than(self, digest: bytes) -> IpamState | None:
        self.core.neighbour_digest(digest)
        if digest == self.core.digest():
            return None
        return self.full_state()

    def lacks_from(self, digest: bytes) -> bool:
        self.core.neighbour_digest(digest)
        return bool(digest) and digest != self.core.digest()
