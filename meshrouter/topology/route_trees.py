"""Theory of operation: BFS trees as distance arrays, patched instead of rebuilt.

Every tree the routes use -- a broadcast tree from an origin, and our own
unicast tree -- follows one rule: the BFS distances from the root over the
symmetric adjacency, and each node's parent is its smallest-named neighbour one
level closer to the root.  The parent is thus a function of the distances, so a
tree is stored as nothing but its distance array (``array('i')``, one entry
per slot, ``INF`` for unreachable), and a node's children are found when asked:
the neighbours one level further out whose first (smallest-named) neighbour at
our level is us.  Adjacency tuples are sorted by name, so "first" is a scan.

Why distances: while a mesh forms, each router's view changes by a link or two
per received message, and building every tree from scratch (a BFS over every
link) per message was most of the simulator's time.  Distances can be
*patched*.  Given the exact distances ``d`` for adjacency ``old`` and the slots
whose neighbour tuples differ in ``new``:

* a removed link can only lengthen distances, and only for its deeper end, and
  only if that end has no other neighbour one level closer in ``new``.  If
  every removed link passes that test, ``d`` is still an upper bound in ``new``
  (each node keeps a neighbour one level closer; induction on the level); if
  one fails we give up and rebuild (rare: it takes losing one's last link
  toward the root);
* an added link can only shorten distances, and any path shorter than ``d``
  in ``new`` uses an added link (without them ``new`` is a subgraph of ``old``,
  where ``d`` is exact), so relaxing from the added links' ends, outward over
  ``new``, makes ``d`` exact.

The patched array is a new array; arrays are never modified once returned,
so any number of graphs and routers may share one.  The tests compare every
patch with a BFS from scratch (and with the reference implementation).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

INF = 1 << 30
"""Distance of an unreachable slot (never added to: only finite values are)."""

Adjacency = Sequence[tuple[int, ...]]
"""Per slot, the neighbours' slots over symmetric links, sorted by name."""

_CHUNK = 32


def bfs_distances(adjacency: Adjacency, root: int) -> array[int]:
    """Exact distances from ``root`` (``INF`` where unreachable), one per slot."""
    dist = array("i", [INF]) * max(len(adjacency), root + 1)
    dist[root] = 0
    frontier = [root]
    level = 0
    while frontier:
        level += 1
        following: list[int] = []
        for node in frontier:
            for peer in adjacency[node]:
                if dist[peer] == INF:
                    dist[peer] = level
                    following.append(peer)
        frontier = following
    return dist


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
                    changed: Sequence[int]) -> array[int] | None:
    """Distances for ``new`` from ``dist`` (exact for ``old``), given the slots whose
    tuples differ; None when a removed link may lengthen a distance (rebuild).

    ``changed`` must list every slot whose neighbours differ (both ends of
    every changed link); extra slots are harmless.
    """
    size = max(len(dist), len(new))
    patched = array("i", dist)
    if len(patched) < size:
        patched.extend(array("i", [INF]) * (size - len(patched)))
    added: list[tuple[int, int]] = []
    for slot in changed:
        before = set(old[slot]) if slot < len(old) else set()
        after = set(new[slot]) if slot < len(new) else set()
        for peer in before - after:
            if slot < peer:
                near, far = (slot, peer) if patched[slot] < patched[peer] else (peer, slot)
                if patched[far] == patched[near] + 1 and not _has_closer(patched, new, far):
                    return None
        added.extend((slot, peer) for peer in after - before if slot < peer)
    if added:
        _relax(patched, new, added)
    return patched


def _has_closer(dist: array[int], adjacency: Adjacency, node: int) -> bool:
    """True if ``node`` has a neighbour in ``adjacency`` one level closer to the root."""
    want = dist[node] - 1
    return node < len(adjacency) and any(dist[peer] == want for peer in adjacency[node])


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
