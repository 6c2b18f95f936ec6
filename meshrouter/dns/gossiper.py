"""Theory of operation: the ``dns`` channel's adapter to the gossip core.

The gossip core moves bytes; this adapter decodes them into ``DnsRecords`` and
merges them through ``DnsCore``, whose delta (only what was new) is what the
core relays.  Gossip and broadcast are handled alike, since the merge is
idempotent.  Digests come in two steps (``digest.py``).  The channel sends no
unicasts.  ``on_change`` lets the shell broadcast a re-asserted record of ours
at once instead of at its next tick.
"""

from __future__ import annotations

from collections.abc import Callable

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName

from . import digest as digests
from .core import DnsCore
from .records import DnsRecords

CHANNEL = "dns"


class DnsGossiper:
    """Plugs a ``DnsCore`` into the gossip core as the ``dns`` channel."""

    channel = CHANNEL

    def __init__(self, core: DnsCore, on_change: Callable[[], None] | None = None) -> None:
        self.core = core
        self._on_change = on_change

    def decode(self, payload: bytes) -> DnsRecords:
        return DnsRecords.decode(payload)

    def on_gossip(self, src: PeerName, data: DnsRecords) -> DnsRecords | None:
        delta = self.core.receive(data)
        if self._on_change is not None and self.core.has_broadcast:
            self._on_change()  # a re-asserted record of ours is waiting to go out
        return delta

    def on_broadcast(self, src: PeerName, data: DnsRecords) -> DnsRecords | None:
        return self.on_gossip(src, data)

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        raise MalformedMessageError(f"dns channel got a unicast from {src:012x}; it has none")

    def full_state(self) -> DnsRecords | None:
        return self.core.full_state()

    def digest(self) -> bytes:
        return digests.summary(self.core.records)

    def full_digest(self) -> bytes:
        return digests.full(self.core.records)

    def wants_full_digest(self, digest: bytes) -> bool:
        return digests.is_summary(digest) and digest != self.digest()

    def newer_than(self, digest: bytes) -> DnsRecords | None:
        return digests.newer_than(self.core.records, digest)

    def lacks_from(self, digest: bytes) -> bool:
        return digests.lacks_from(self.core.records, digest)
