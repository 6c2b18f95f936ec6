"""The ``ipam`` channel's unicasts: asking a peer for space, and its refusal.

A grant needs no message of its own: the donor splits its entry and broadcasts
the ring, and the recipient finds the new entry there.  A denial may say why
(a fourth field, at most ``MAX_REASON`` characters), so that the requester's
waiting reason can tell the user what the peers' free space is waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError

SPACE_REQUEST = "space?"
SPACE_DENIED = "denied"
MAX_MESSAGE = 512
MAX_REASON = 200


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
        value: list[Any] = expect(unpack(data, max_size=MAX_MESSAGE), list, "ipam message")
        if len(value) not in (3, 4):
            raise MalformedMessageError("ipam message: expected 3 or 4 fields")
        kind = expect(value[0], str, "ipam message kind")
        if kind not in (SPACE_REQUEST, SPACE_DENIED):
            raise MalformedMessageError(f"unknown ipam message {kind!r}")
        start = expect(value[1], int, "start")
        end = expect(value[2], int, "end")
        if not 0 <= start < end <= 1 << 32:
            raise MalformedMessageError("ipam message: bad address range")
        reason = expect(value[3], str, "reason") if len(value) == 4 else ""
        if len(reason) > MAX_REASON or not reason.isprintable():
            raise MalformedMessageError("ipam message: bad reason")
        return cls(kind, start, end, reason)
