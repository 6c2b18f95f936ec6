"""Theory of operation: a broadcast that carries its own tree (protocol 6).

Forwarding a broadcast used to mean computing the origin's spanning tree at
every forwarder: a BFS over the whole graph whenever the forwarder's view had
changed since it last forwarded for that origin, which while a mesh forms is
nearly always (a 1,000-peer mesh: ~2 ms per BFS, over a million of them).  And
each forwarder computed the tree from its *own* view, so while views differed
the forwarders' trees disagreed: 30-40 % of the broadcasts a router received
were copies it already had.

Instead the origin, which holds its own tree anyway (its unicast routes), sends
each child the part of the tree below it: a *forest*.  A forwarder does no
route computation at all: it slices the forest it received into its children's
forests and passes each on.  Every peer in the plan is sent the broadcast
exactly once, by the parent the origin chose; a peer the plan says is our child
but is not our neighbour (the origin's view of a link was stale) is counted and
left to the anti-entropy repair, as a tree hop to a non-neighbour always was.

Encoding: the forest is the preorder of its trees, one 8-byte entry per peer --
the 48-bit peer name and a 16-bit subtree size (the peer and everything below
it) -- so a child's forest is a plain byte slice of its parent's, and the total
a broadcast carries is (peers x depth x 8) bytes.  Sizes make the structure
checkable in one pass: ``split_forest`` validates the whole forest (every size
fits inside its parent, every peer listed once) before anything is forwarded,
so a lying origin cannot make honest forwarders pass on a route their
neighbours would refuse, and never costs more than one pass per hop.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName

ENTRY = struct.Struct(">HIH")
"""One planned peer: name (high 16 bits, low 32 bits) and its subtree size."""

ENTRY_SIZE = ENTRY.size
MAX_SUBTREE = 0xFFFF
"""The largest subtree one entry can describe (the size field's range)."""


def encode_preorder(entries: Sequence[tuple[int, int]]) -> bytes:
    """``(name, subtree size)`` pairs in preorder -> forest bytes."""
    pack = ENTRY.pack
    return b"".join(pack(name >> 32, name & 0xFFFF_FFFF, size) for name, size in entries)


def split_forest(forest: bytes) -> list[tuple[PeerName, bytes]]:
    """The forest's top-level peers, each with the forest below it.

    Raises ``MalformedMessageError`` unless the whole forest is well formed:
    a whole number of entries, sizes from 1 up that nest exactly, and no peer
    listed twice.
    """
    if len(forest) % ENTRY_SIZE:
        raise MalformedMessageError(
            f"broadcast plan of {len(forest)} bytes is not a whole number of "
            f"{ENTRY_SIZE}-byte entries")
    count = len(forest) // ENTRY_SIZE
    ends: list[int] = []  # where each open subtree ends (entry index), innermost last
    seen: set[int] = set()
    top: list[tuple[PeerName, bytes]] = []
    for index, (high, low, size) in enumerate(ENTRY.iter_unpack(forest)):
        while ends and ends[-1] == index:
            ends.pop()
        name = high << 32 | low
        if size < 1:
            raise MalformedMessageError(f"broadcast plan entry {index} has subtree size 0")
        end = index + size
        if end > (ends[-1] if ends else count):
            raise MalformedMessageError(
                f"broadcast plan entry {index} (size {size}) overruns its parent's subtree")
        if name in seen:
            raise MalformedMessageError(f"broadcast plan lists peer {name:012x} twice")
        seen.add(name)
        if not ends:
            top.append((PeerName(name), forest[(index + 1) * ENTRY_SIZE:end * ENTRY_SIZE]))
        ends.append(end)
    return top
