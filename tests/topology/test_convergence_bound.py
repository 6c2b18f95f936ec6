"""Convergence guarantees of the topology's gossip, on real Routers over the
simulated network (MockClock, 10 ms links):

1. A link both ends list is *direct* in both views as soon as it is up: the
   new connection's digest exchange carries each end's record (listing the
   link) at once, not the next batched broadcast (up to ``topology_batch``
   later).  The three-process test once saw a peer "relayed" in a full mesh
   because a digest answer left our own record to that broadcast.
2. After a join or a restart every router holds the same record set within a
   bound of the last connection change, the repair round included: a round is
   never deferred behind a burst of changes that keeps going.

The oracle is the definition: equal record-set fingerprints, and a next hop
equal to the destination for every pair of connected routers.
"""

from __future__ import annotations

import trio

from meshrouter.node.router import Router
from sim.network import LinkProfile, SimNetwork
from tests.node.harness import make_router, run_sim

LINK = LinkProfile(latency=0.01)
SAMPLE = 0.005


def full_mesh(routers: list[Router]) -> bool:
    """What ``status`` shows as a full mesh: every router has every other as a
    connection and knows every record."""
    names = {r.name for r in routers}
    return all(set(r.connections) == names - {r.name}
               and {rec.name for rec in r.topology.records()} == names for r in routers)


def all_direct(routers: list[Router]) -> bool:
    return all(r.topology.routes().next_hop(o.name) == o.name
               for r in routers for o in routers if o is not r)


def views_agree(routers: list[Router]) -> bool:
    return len({r.topology.fingerprint for r in routers}) == 1


async def first(condition: object, limit: float) -> float | None:
    """Simulated seconds until ``condition()`` holds (sampled), or None."""
    assert callable(condition)
    start = trio.current_time()
    while trio.current_time() - start < limit:
        if condition():
            return trio.current_time() - start
        await trio.sleep(SAMPLE)
    return None


def direct_after_full_mesh(size: int, seed: int) -> tuple[float, float]:
    """Start ``size`` routers, all given the first as their contact, 0.3 s
    apart; return (when status first shows the full mesh, how long after that
    until every route is direct)."""
    out: list[float] = []

    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        routers = [make_router(net, 1, seed=seed)]
        await nursery.start(routers[0].run)
        for index in range(2, size + 1):
            await trio.sleep(0.3)
            router = make_router(net, index, seed=seed, peers=("10.0.0.1:6783",))
            routers.append(router)
            await nursery.start(router.run)
        full = await first(lambda: full_mesh(routers), 30.0)
        assert full is not None
        direct = await first(lambda: all_direct(routers), 5.0)
        assert direct is not None
        out.extend((full, direct))

    run_sim(body, seed=seed, profile=LINK)
    return out[0], out[1]


def test_a_full_mesh_is_direct_as_soon_as_status_shows_it() -> None:
    # Three links of 10 ms each way after a connection is counted: the summary,
    # the digest answer, the data.  A broadcast deferred by the batch window
    # would take up to a second.
    for seed in range(4):
        for size in (3, 5):
            _full, direct = direct_after_full_mesh(size, seed)
            assert direct <= 0.1, (size, seed, direct)


def restart_converges_after(size: int, seed: int) -> float:
    """A full mesh of ``size``; the last router crashes and restarts with one
    contact; seconds from its restart until every view agrees and is direct."""
    out: list[float] = []

    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        routers: list[Router] = []
        scopes: list[trio.CancelScope] = []

        async def run(router: Router, *, task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                scopes.append(scope)
                await router.run(task_status=task_status)

        for index in range(1, size + 1):
            peers = ("10.0.0.1:6783",) if index > 1 else ()
            router = make_router(net, index, seed=seed, peers=peers)
            routers.append(router)
            await nursery.start(run, router)
        assert await first(lambda: full_mesh(routers) and views_agree(routers), 30.0) is not None
        scopes[-1].cancel()  # a crash: the others see its connections close
        survivors = routers[:-1]
        assert await first(lambda: full_mesh(survivors) and views_agree(survivors), 30.0)
        again = make_router(net, size, seed=seed + 100, peers=("10.0.0.1:6783",))
        routers[-1] = again
        await nursery.start(run, again)
        took = await first(lambda: full_mesh(routers) and views_agree(routers)
                           and all_direct(routers), 30.0)
        assert took is not None
        out.append(took)

    run_sim(body, seed=seed, profile=LINK)
    return out[0]


def test_views_agree_soon_after_a_restart() -> None:
    # The restarted router dials its contact, learns the mesh, and discovery
    # connects it to the rest (``discovery_defer`` 1 s on the higher-named
    # end); after that, digests on each new connection and one repair round
    # must settle every view.
    for seed in range(3):
        took = restart_converges_after(6, seed)
        assert took <= 1.6, (seed, took)
