"""Theory of operation: BFS trees as distance arrays, patched instead of rebuilt.

Every tree the routes use -- a broadcast tree from an origin, and our own
unicast tree -- follows one rule: the BFS distances from the root over the
symmetric adjacency, and each node's parent is its smallest-named neighbour one
level closer to the root.  The parent is thus a function of the distances, so a
tree is stored as nothing but its distance array (``array('H')``, one entry
per slot, ``INF`` for unreachable), and a node's children are found when asked:
the neighbours one level further out whose first (smallest-named) neighbour at
our level is us.  Adjacency tuples are sorted by name, so "first" is a scan.

Why distances: while a mesh forms, each router's view changes by a link or two
per received message, and building every tree from scratch (a BFS over every
link) per message was most of the simulator's time.  Distances can be
*patched*.  Given the exact distances ``d`` for adjacency ``old`` and the slots
whose neighbour tuples differ in ``new``:

* a removed link can only lengthen distances: a node whose removed link led
  one level closer, with no other neighbour one level closer left, is cut
  loose, and so (level by level) is every node that leaned only on cut nodes;
  every other node keeps its distance, and cut nodes take the best distance
  through the nodes that kept theirs (``_reattach``);
* then an added link can only shorten distances, and any path shorter than
  ``d`` in ``new`` uses an added link (without them ``new`` is the graph ``d``
  is now exact for), so relaxing from the added links' ends, outward over
  ``new``, makes ``d`` exact.

Both steps touch only the region that changes.  The patched array is a new
array; arrays are never modified once returned, so any number of graphs and
routers may share one.  The tests compare every
patch with a BFS from scratch (and with the reference implementation).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence

TYPECODE = "H"
INF = 0xFFFF
"""Distance of an unreachable slot (two bytes per slot: a thousand-peer tree is 2 KiB)."""

Adjacency = Sequence[tuple[int, ...]]
"""Per slot, the neighbours' slots over symmetric links, sorted by name."""

_CHUNK = 32


def bfs_distances(adjacency: Adjacency, root: int) -> array[int]:
    """Exact distances from ``root`` (``INF`` where unreachable), one per slot.

    Level by level with set operations: a level's neighbours are gathered by one
    ``set.union`` over the frontier's tuples and the known nodes taken out in C,
    so Python touches each node once instead of each link twice (2-2.5x faster
    at degree 24).  Only slots with links can be reached, so the search stops
    as soon as it has all of them: the last level's links are never gathered
    (in a full mesh, no link beyond the root's own).
    """
    dist = array(TYPECODE, [INF]) * max(len(adjacency), root + 1)
    dist[root] = 0
    size = len(adjacency)
    if root >= size or not adjacency[root]:
        return dist
    reachable = size - adjacency.count(())  # an upper bound, the root included
    seen = {root}
    frontier: Iterable[int] = (root,)
    level = 0
    while True:
        level += 1
        following = set().union(*[adjacency[node] for node in frontier])
        following -= seen
        if not following:
            return dist
        seen |= following
        for node in following:
            dist[node] = level
        if len(seen) >= reachable:
            return dist
        frontier = following


def differing_slots(old: Adjacency, new: Adjacency) -> list[int]:
    """Slots whose neighbour tuple differs (a missing slot counts as no neighbours).

    Unchanged tuples are usually the same objects (derived graphs reuse them,
    and ``route_slots`` interns them), so equal chunks compare in C at pointer
    speed and only differing chunks are walked.
    """
    size = max(len(old), len(new))
    found: list[int] = []
    for start in range(0, size, _CHUNK):
        stop = start + _CHUNK
        if old[start:stop] == new[start:stop]:
            continue
        for slot in range(start, min(stop, size)):
            before = old[slot] if slot < len(old) else ()
            after = new[slot] if slot < len(new) else ()
            if before != after:
                found.append(slot)
    return found


def patch_distances(dist: array[int], old: Adjacency, new: Adjacency,
                    changed: Sequence[int]) -> array[int]:
    """Distances for ``new`` from ``dist`` (exact for ``old``), given the slots whose
    tuples differ (both ends of every changed link; extra slots are harmless)."""
    before = {slot: old[slot] if slot < len(old) else () for slot in changed}
    return patch_from_before(dist, new, before)


def patch_from_before(dist: array[int], new: Adjacency,
                      before: Mapping[int, tuple[int, ...]]) -> array[int]:
    """Distances for ``new`` from ``dist``, which is exact for the adjacency that
    equals ``new`` except that each slot of ``before`` held the tuple given there
    (every slot that differs must be a key; extra keys are harmless).

    Only the changed slots' old tuples are needed, so a router that journals
    what each of its graphs changed (``route_graph``) can patch a tree many
    versions old without keeping those versions' adjacency lists.  Removals
    first, on the old graph minus the removed links (``_reattach``), then
    additions, relaxed outward over ``new``.
    """
    size = max(len(dist), len(new), max(before, default=-1) + 1)
    patched = array(TYPECODE, dist)
    if len(patched) < size:
        patched.extend(array(TYPECODE, [INF]) * (size - len(patched)))
    kept: dict[int, tuple[int, ...]] = {}  # changed slots' links that stayed
    loose: list[int] = []  # deeper ends of removed links between two levels
    added: list[tuple[int, int]] = []
    for slot, was in before.items():
        before_links = set(was)
        after = set(new[slot]) if slot < len(new) else set()
        kept[slot] = tuple(before_links & after)
        for peer in before_links - after:
            if slot < peer:
                if patched[slot] == patched[peer] + 1:
                    loose.append(slot)
                elif patched[peer] == patched[slot] + 1:
                    loose.append(peer)
        added.extend((slot, peer) for peer in after - before_links if slot < peer)
    if loose:
        _reattach(patched, new, kept, loose)
    if added:
        _relax(patched, new, added)
    return patched


def _reattach(dist: array[int], new: Adjacency, kept: dict[int, tuple[int, ...]],
              loose: list[int]) -> None:
    """Make ``dist`` exact for the graph without the removed links (``kept`` holds
    the changed slots' remaining links; other slots' are in ``new``).

    A node whose removed link led one level closer is cut loose if no other
    neighbour one level closer still holds it; level by level, so is every node
    one level further that leaned only on cut nodes.  Every other node keeps its
    distance (it keeps a chain of closer neighbours down to the root, and
    removing links never shortens one).  Cut nodes then take the best distance
    through a kept neighbour, relaxed outward among themselves.
    """
    def links(node: int) -> tuple[int, ...]:
        found = kept.get(node)
        if found is None:
            found = new[node] if node < len(new) else ()
        return found

    by_level: dict[int, list[int]] = {}
    for node in loose:
        by_level.setdefault(dist[node], []).append(node)
    cut: set[int] = set()
    level = min(by_level)
    while by_level:
        for node in by_level.pop(level, ()):
            if node in cut or any(dist[peer] == level - 1 and peer not in cut
                                  for peer in links(node)):
                continue
            cut.add(node)
            further = [peer for peer in links(node) if dist[peer] == level + 1]
            if further:
                by_level.setdefault(level + 1, []).extend(further)
        level += 1
    for node in cut:
        dist[node] = INF
    frontier: list[int] = []
    for node in cut:
        best = min((dist[peer] for peer in links(node) if peer not in cut), default=INF)
        if best != INF:
            dist[node] = best + 1
            frontier.append(node)
    while frontier:
        following: list[int] = []
        for node in frontier:
            closer = dist[node] + 1
            for peer in links(node):
                if closer < dist[peer]:
                    dist[peer] = closer
                    following.append(peer)
        frontier = following


def _relax(dist: array[int], adjacency: Adjacency, added: list[tuple[int, int]]) -> None:
    """Shorten distances through the added links, outward (label-correcting BFS)."""
    queue: list[int] = []
    for a, b in added:
        if dist[a] + 1 < dist[b]:
            dist[b] = dist[a] + 1
            queue.append(b)
        elif dist[b] + 1 < dist[a]:
            dist[a] = dist[b] + 1
            queue.append(a)
    while queue:
        following: list[int] = []
        for node in queue:
            closer = dist[node] + 1
            for peer in adjacency[node]:
                if closer < dist[peer]:
                    dist[peer] = closer
                    following.append(peer)
        queue = following


def children(dist: array[int], adjacency: Adjacency, node: int) -> list[int]:
    """Slots of ``node``'s children in the tree of ``dist`` (in name order).

    A neighbour one level further out is our child when we are its first
    (smallest-named) neighbour at our level.
    """
    if node >= len(adjacency) or node >= len(dist):
        return []
    level = dist[node]
    if level == INF:
        return []
    below = level + 1
    found = []
    for child in adjacency[node]:
        if dist[child] == below:
            for peer in adjacency[child]:
                if dist[peer] == level:
                    if peer == node:
                        found.append(child)
                    break
    return found


def parent_of(dist: array[int], adjacency: Adjacency, node: int) -> int | None:
    """``node``'s parent (its first neighbour one level closer); None for the root
    and unreachable slots."""
    if node >= len(dist) or dist[node] in (0, INF):
        return None
    want = dist[node] - 1
    for peer in adjacency[node]:
        if dist[peer] == want:
            return peer
    raise AssertionError("distances inconsistent with their adjacency")


def reached(dist: array[int]) -> int:
    """How many slots ``dist`` reaches (its root included)."""
    return len(dist) - dist.count(INF)
