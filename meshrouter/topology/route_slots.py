"""Theory of operation: one numbering of peer names for every route graph in the process.

Route graphs keep adjacency and trees in lists indexed by a dense integer per
peer (a *slot*), because lists are far cheaper than dicts in a BFS.  If every
graph numbered its own peers (say, in name order), a new peer would shift the
numbers and nothing could be carried from one graph to the next.  So slots are
handed out once per name, process-wide, in order of first sight, and never
change: a graph derived from another keeps every unchanged neighbour tuple, a
tree of one router's view can be patched into the tree of another router's
view, and a peer that appears costs a new slot rather than a renumbering.
Name order, which decides the tree tie-breaks, lives in the tuples themselves
(each is sorted by name), not in the slot numbers.

Neighbour tuples are interned (equal tuples are one object), so comparing two
adjacency lists -- two routers' views, one version and the next -- finds the
differing slots at pointer speed.

A registry only grows.  To stay bounded when names come and go for a long
time (or across the many unrelated topologies of a test run) it is replaced by
a fresh one once it holds far more names than any graph uses; graphs of the
old registry keep working, and the next graph built is numbered anew (graphs
and trees are only ever combined within one registry).  Single-threaded use is
assumed, like the rest of the sans-IO core.
"""

from __future__ import annotations

from meshrouter.names import PeerName

_SPARE_NAMES = 4096
_SPARE_TUPLES = 16384


class SlotRegistry:
    """Process-wide slot per peer name, and the interned neighbour tuples."""

    __slots__ = ("_tuples", "index", "names")

    def __init__(self) -> None:
        self.index: dict[PeerName, int] = {}
        self.names: list[PeerName] = []
        self._tuples: dict[tuple[int, ...], tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def slot(self, name: PeerName) -> int:
        """The slot of ``name``, handed out on first sight."""
        slot = self.index.get(name)
        if slot is None:
            slot = self.index[name] = len(self.names)
            self.names.append(name)
        return slot

    def intern(self, neighbours: tuple[int, ...]) -> tuple[int, ...]:
        """The one shared tuple equal to ``neighbours``."""
        tuples = self._tuples
        shared = tuples.get(neighbours)
        if shared is None:
            if len(tuples) > _SPARE_TUPLES + 8 * len(self.names):
                tuples.clear()  # identity is only a speed-up: equal tuples still compare equal
            shared = tuples[neighbours] = neighbours
        return shared

    def roomy_for(self, live: int) -> bool:
        """False once this registry holds far more names than a graph of ``live`` needs."""
        return len(self.names) <= _SPARE_NAMES + 4 * live


_current = SlotRegistry()


def registry_for(live: int) -> SlotRegistry:
    """The registry a graph of ``live`` peers built now numbers its peers in."""
    global _current
    if not _current.roomy_for(live):
        _current = SlotRegistry()
    return _current
