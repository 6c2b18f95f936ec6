"""What the IPAM core's parts owe the shell: a stale state file, a ring edit to
broadcast, unicasts to send.  One ``Outbox`` is shared by the coordinator and
its parts, so each part reports its own effects and the shell drains them in
one place (``IpamCore.take_broadcast``/``take_unicasts``/``dirty``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshrouter.names import PeerName


@dataclass(slots=True)
class Outbox:
    dirty: bool = False  # the persisted blob (``dump``) is stale
    broadcast: bool = False  # our own edits changed the state since the last broadcast
    unicasts: list[tuple[PeerName, bytes]] = field(default_factory=list)

    def changed(self) -> None:
        """We edited the ring: save it, and tell the others."""
        self.dirty = True
        self.broadcast = True


@dataclass(slots=True)
class Counters:
    """Figures shown by ``status ipam`` and summed by the simulator."""

    allocations: int = 0
    releases: int = 0
    reclaims: int = 0
    donations_given: int = 0
    donations_asked: int = 0
    acks_given: int = 0
    conflicts: int = 0
    last_reclaim_at: float | None = None
    reclaim_log: list[tuple[float, str]] = field(default_factory=list)
