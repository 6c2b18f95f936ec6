"""Theory of operation: our own broadcast tree, written out for the forwarders.

A broadcast we originate carries its tree (``gossip/broadcast_plan``): each of
our children gets the forest below it.  The tree is our unicast tree -- the
same BFS distances, each peer's parent its smallest-named neighbour one level
closer (``route_trees``) -- which the routes hold anyway, so planning costs one
pass over the reachable peers per routes version, not a BFS per forwarder.

Peers we send the broadcast to directly although they are not our neighbours in
the symmetric graph (``direct``: links our record lists that the other end's
record does not confirm yet) become our children too, taking their subtree
with them, so no peer is listed twice; one the graph does not reach at all is a
leaf.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Sequence

from meshrouter.gossip.broadcast_plan import ENTRY_SIZE, encode_preorder
from meshrouter.topology.route_trees import INF, Adjacency, parent_of


def plan_forests(dist: array[int], adjacency: Adjacency, root: int,
                 names: Sequence[int], direct: Collection[int],
                 unreached: Sequence[int] = ()) -> list[tuple[int, bytes]]:
    """``(child name, forest bytes)`` for each of ``root``'s children in the tree
    of ``dist`` (exact BFS distances from ``root`` over ``adjacency``).

    ``direct``: slots to re-parent under the root; ``unreached``: names (not
    slots) of direct peers outside the graph, planned as leaves.
    """
    reached = sorted((slot for slot, d in enumerate(dist) if 0 < d < INF),
                     key=dist.__getitem__)
    parent: dict[int, int] = {}
    for slot in reached:
        up = parent_of(dist, adjacency, slot)
        assert up is not None
        parent[slot] = up
    for slot in direct:
        if slot in parent:
            parent[slot] = root
    children: dict[int, list[int]] = {}
    for slot in reached:  # BFS order, so each child list is in a fixed order
        children.setdefault(parent[slot], []).append(slot)
    size: dict[int, int] = {}
    for slot in reversed(reached):  # deeper first; a re-parented slot keeps its depth
        size[slot] = 1 + sum(size[child] for child in children.get(slot, ()))
    entries: list[tuple[int, int]] = []
    stack = list(reversed(children.get(root, [])))
    while stack:
        slot = stack.pop()
        entries.append((names[slot], size[slot]))
        stack.extend(reversed(children.get(slot, ())))
    preorder = encode_preorder(entries)
    plan: list[tuple[int, bytes]] = []
    position = 0
    for slot in children.get(root, ()):
        end = position + size[slot]
        plan.append((names[slot], preorder[(position + 1) * ENTRY_SIZE:end * ENTRY_SIZE]))
        position = end
    plan.extend((name, b"") for name in unreached)
    return plan
