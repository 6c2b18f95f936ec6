"""The ``ipam`` channel's unicasts: asking for space, and voting on reclaims.

A grant needs no message of its own: the donor splits its entry and broadcasts
the ring, and the recipient finds the new entry there.  A denial may say why
(a fourth field, at most ``MAX_REASON`` characters), so that the requester's
waiting reason can tell the user what the peers' free space is waiting for.

A reclaim is proposed to the ring's owners and written only once owners of a
strict majority of the live addresses accepted it (``reclaim_vote.py``):
``ReclaimMessage`` carries the proposal (the entry's token, owner and version
and the floor the reclaim would freeze it at), the answers, and the
proposer's abandonment.  Every message is a msgpack list whose first field is
its kind; ``decode_unicast`` tells the two families apart, and
``SpaceMessage.decode`` still reads exactly what it always read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.ipam.ring_records import MAX_VERSION, checked_int, checked_name
from meshrouter.names import PeerName

SPACE_REQUEST = "space?"
SPACE_DENIED = "denied"
RECLAIM_PROPOSE = "reclaim?"
RECLAIM_ACCEPT = "reclaim+"
RECLAIM_REFUSE = "reclaim-"
RECLAIM_ABANDON = "reclaim0"
RECLAIM_KINDS = (RECLAIM_PROPOSE, RECLAIM_ACCEPT, RECLAIM_REFUSE, RECLAIM_ABANDON)
MAX_MESSAGE = 512
MAX_REASON = 200


def _reason(value: Any) -> str:
    reason: str = expect(value, str, "reason")
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise MalformedMessageError("ipam message: bad reason")
    return reason


def _fields(data: bytes) -> list[Any]:
    value: list[Any] = expect(unpack(data, max_size=MAX_MESSAGE), list, "ipam message")
    if not value:
        raise MalformedMessageError("ipam message: empty")
    return value


@dataclass(frozen=True, slots=True)
class SpaceMessage:
    """``kind`` is SPACE_REQUEST or SPACE_DENIED, for addresses [start, end)."""

    kind: str
    start: int
    end: int
    reason: str = ""

    def encode(self) -> bytes:
        if self.reason:
            return pack([self.kind, self.start, self.end, self.reason[:MAX_REASON]])
        return pack([self.kind, self.start, self.end])

    @classmethod
    def decode(cls, data: bytes) -> SpaceMessage:
        return cls.from_fields(_fields(data))

    @classmethod
    def from_fields(cls, value: list[Any]) -> SpaceMessage:
        if len(value) not in (3, 4):
            raise MalformedMessageError("ipam message: expected 3 or 4 fields")
        kind = expect(value[0], str, "ipam message kind")
        if kind not in (SPACE_REQUEST, SPACE_DENIED):
            raise MalformedMessageError(f"unknown ipam message {kind!r}")
        start = expect(value[1], int, "start")
        end = expect(value[2], int, "end")
        if not 0 <= start < end <= 1 << 32:
            raise MalformedMessageError("ipam message: bad address range")
        reason = _reason(value[3]) if len(value) == 4 else ""
        return cls(kind, start, end, reason)


@dataclass(frozen=True, slots=True)
class ReclaimTarget:
    """What a reclaim proposal takes: the entry at ``token`` as the proposer
    sees it (``owner``, ``version``), frozen at ``floor`` (everything above
    becomes the proposer's)."""

    token: int
    owner: PeerName
    version: int
    floor: int


@dataclass(frozen=True, slots=True)
class ReclaimMessage:
    """``kind`` is one of ``RECLAIM_KINDS``; ``reason`` only with RECLAIM_REFUSE."""

    kind: str
    target: ReclaimTarget
    reason: str = ""

    def encode(self) -> bytes:
        t = self.target
        fields: list[Any] = [self.kind, t.token, t.owner, t.version, t.floor]
        if self.reason:
            fields.append(self.reason[:MAX_REASON])
        return pack(fields)

    @classmethod
    def from_fields(cls, value: list[Any]) -> ReclaimMessage:
        if len(value) not in (5, 6):
            raise MalformedMessageError("reclaim message: expected 5 or 6 fields")
        kind = expect(value[0], str, "ipam message kind")
        if kind not in RECLAIM_KINDS:
            raise MalformedMessageError(f"unknown ipam message {kind!r}")
        token = checked_int(value[1], "reclaim token", 0, 1 << 32)
        target = ReclaimTarget(
            token, checked_name(value[2]), checked_int(value[3], "reclaim version", 0, MAX_VERSION),
            checked_int(value[4], "reclaim floor", token, (1 << 32) + 1))
        return cls(kind, target, _reason(value[5]) if len(value) == 6 else "")


def decode_unicast(data: bytes) -> SpaceMessage | ReclaimMessage:
    """Either family of ``ipam`` unicast; raises MalformedMessageError."""
    value = _fields(data)
    if isinstance(value[0], str) and value[0] in RECLAIM_KINDS:
        return ReclaimMessage.from_fields(value)
    return SpaceMessage.from_fields(value)
