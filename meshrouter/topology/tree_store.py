"""Theory of operation: per root, the latest BFS tree computed anywhere in the process.

Routers' views differ only by the changes still in flight, so a tree one router
computed is usually a few links away from the tree another needs.  The store
keeps, per root, the distance array most recently computed (or patched) in the
process together with the adjacency it is exact for.  Asked for a root's
distances over an adjacency, it returns the entry if that adjacency is the very
same object, patches it by the slots whose tuples differ
(``route_trees.patch_distances``) when few enough do, and runs a BFS
otherwise; the answer becomes the root's entry.  An entry is only ever used
through that comparison, so it can never answer for another view.

One store (``SHARED_TREES``) serves every ``RouteGraph``; entries are numbered
by a ``SlotRegistry`` and dropped when a graph of another registry asks.  In
production one router runs per process and the store merely holds its own
latest trees.  Single-threaded use is assumed (no locks).
"""

from __future__ import annotations

from array import array

from meshrouter.topology.route_slots import SlotRegistry
from meshrouter.topology.route_trees import (
    Adjacency,
    bfs_distances,
    differing_slots,
    patch_distances,
)

Tree = tuple[Adjacency, "array[int]"]
"""A distance array and the adjacency it is exact for."""

MIN_PATCH = 16
"""A patch is tried when at most this many slots, or an eighth of them, differ."""


def worth_patching(changed: int, size: int) -> bool:
    """Whether ``changed`` differing slots of ``size`` are few enough to patch."""
    return changed <= max(MIN_PATCH, size // 8)


class TreeStore:
    """Per root, the latest distance array computed in the process and the
    adjacency it is exact for; see the module docstring."""

    __slots__ = ("_entries", "_registry", "built", "patched", "reused")

    def __init__(self) -> None:
        self._registry: SlotRegistry | None = None
        self._entries: dict[int, Tree] = {}
        self.built = 0    # BFS from scratch
        self.patched = 0  # patched from another view's (or an earlier version's) tree
        self.reused = 0   # the entry was already exact for the asking adjacency

    def distances(self, registry: SlotRegistry, adjacency: Adjacency, root: int) -> array[int]:
        """Exact distances from ``root`` over ``adjacency`` (a list of ``registry``).

        (A graph first tries the root's tree from its own lineage, patched by
        its journal, and only then asks here.)
        """
        if registry is not self._registry:
            self._registry = registry
            self._entries = {}
        dist = None
        candidate = self._entries.get(root)
        if candidate is not None:
            known, known_dist = candidate
            if known is adjacency:
                self.reused += 1
                dist = known_dist
            else:
                changed = differing_slots(known, adjacency)
                if worth_patching(len(changed), len(adjacency)):
                    dist = patch_distances(known_dist, known, adjacency, changed)
                    self.patched += 1
        if dist is None:
            dist = bfs_distances(adjacency, root)
            self.built += 1
        self._entries[root] = (adjacency, dist)
        return dist

    def remember_patched(self, registry: SlotRegistry, adjacency: Adjacency, root: int,
                         dist: array[int]) -> None:
        """Keep ``dist``, a graph's own patch exact for ``adjacency``, as the
        root's latest tree (counted as patched)."""
        self.patched += 1
        if registry is not self._registry:
            self._registry = registry
            self._entries = {}
        self._entries[root] = (adjacency, dist)

    def clear(self) -> None:
        self._entries = {}


SHARED_TREES = TreeStore()
"""The process-wide tree store every ``RouteGraph`` uses."""
