"""Theory of operation: what the ``ipam`` gossip channel carries.

One value: the ring once a cluster is founded, and before that the Paxos
knowledge of the founding vote.  Both are CRDTs, so the channel's data merges
like any other gossip.  The ring is always sent whole (as Weave does): a peer
that learns an entry then also learns every token that existed when it was
written, which the heir rules in ``ring.py`` rely on.  Once a ring exists the
vote is over and its knowledge is no longer sent.
"""

from __future__ import annotations

from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.ipam.paxos import Knowledge
from meshrouter.ipam.ring import MAX_ENCODED, Ring


class IpamState:
    """The channel's gossip data: a ring, or the founding vote, or both."""

    def __init__(self, ring: Ring | None = None, paxos: Knowledge | None = None) -> None:
        self.ring = ring
        self.paxos = paxos if ring is None else None

    def encode(self) -> bytes:
        return pack([
            self.ring.to_wire() if self.ring is not None else None,
            self.paxos.encode() if self.paxos is not None else None,
        ])

    @classmethod
    def decode(cls, data: bytes) -> IpamState:
        value = unpack(data, max_size=MAX_ENCODED)
        fields: list[Any] = expect(value, list, "ipam state")
        if len(fields) != 2:
            raise MalformedMessageError("ipam state: expected 2 fields")
        ring = Ring.from_wire(fields[0]) if fields[0] is not None else None
        paxos = None
        if fields[1] is not None:
            paxos = Knowledge.decode(expect(fields[1], bytes, "paxos"))
        return cls(ring, paxos)

    def merge(self, other: IpamState) -> IpamState | None:
        """Merge ``other`` in place; return the whole new state if anything changed."""
        changed = False
        if other.ring is not None:
            if self.ring is None:
                self.ring = other.ring.copy()
                changed = True
            else:
                changed = self.ring.merge(other.ring)
            self.paxos = None
        elif other.paxos is not None and self.ring is None:
            if self.paxos is None:
                self.paxos = other.paxos.copy()
                changed = True
            else:
                changed = self.paxos.merge(other.paxos)
        return self.copy() if changed else None

    def copy(self) -> IpamState:
        return IpamState(
            self.ring.copy() if self.ring is not None else None,
            self.paxos.copy() if self.paxos is not None else None,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IpamState):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]
