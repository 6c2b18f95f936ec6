"""A router does not dial a host whose inbound connection is still in handshake.

In a full-mesh join the mesh dials the (higher-named) joiner at once, and the
joiner's accept throttle lets them in one by one; the joiner's own discovery
dials, deferred by a second, used to reach the peers still waiting in that
throttle.  Each made a duplicate connection, and half of the tie-breaks kept
the later one: the link flipped direction after both ends had announced it,
and both records were broadcast again.
"""

from __future__ import annotations

import random

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.names import PeerName
from meshrouter.node.assembly import build_router
from meshrouter.node.router import Router
from sim.network import SimNetwork, SimTransport
from tests.node.harness import FAST, make_router, peer_names, run_sim

MESH = 6


def test_a_throttled_joiner_makes_no_duplicate_connections() -> None:
    routers: list[Router] = []

    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        for index in range(1, MESH + 1):
            router = make_router(
                net, index, peers=("10.0.0.1:6783",) if index > 1 else (), handshake_timeout=10.0
            )
            await nursery.start(router.run)
            routers.append(router)
        await trio.sleep(8)
        assert all(len(r.connections) == MESH - 1 for r in routers)
        before = [r.connection_terminations for r in routers]
        # One inbound handshake every 0.5 s: the mesh's dials wait in the joiner's
        # throttle past its discovery defer (1 s).
        joiner = make_router(
            net, MESH + 1, peers=("10.0.0.1:6783",), accept_burst=1,
            accept_refill_interval=0.5, handshake_timeout=10.0,
        )
        await nursery.start(joiner.run)
        await trio.sleep(8)
        everyone = {r.name for r in routers} | {joiner.name}
        for router in [*routers, joiner]:
            assert set(router.connections) == everyone - {router.name}
            assert peer_names(router) == everyone
        assert [r.connection_terminations for r in routers] == before
        assert joiner.connection_terminations == 0
        # Every link to the joiner is the one its lower-named end dialled (the
        # joiner dialled only its contact).
        dialled = [r.connections[joiner.name].outbound for r in routers]
        assert dialled == [False] + [True] * (MESH - 1)

    run_sim(body)


def _router_at(net: SimNetwork, index: int, host: str, port: int, peers: tuple[str, ...]) -> Router:
    """A router at any host and port (two routers may share a host)."""
    config = RouterConfig.from_flat(
        PeerName(0x0200_0000_0000 + index), f"host{index}", listen_host=host,
        listen_port=port, initial_peers=peers, **FAST,
    )
    rng = random.Random(index)
    return build_router(
        config, transport=SimTransport(net, host, port), rng=rng,
        key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
    )


def test_the_hold_ends_with_the_handshake_not_the_connection() -> None:
    """b's connection to a comes from 10.0.0.2; c listens on the same host.  a
    learns of c through b and dials it at once (a is lower-named; c defers): an
    established connection from c's host must not hold that dial."""

    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a = make_router(net, 1)
        b = make_router(net, 2, peers=("10.0.0.1:6783",))
        c = _router_at(net, 3, "10.0.0.2", 6784, ("10.0.0.2:6783",))
        for router in (a, b, c):
            await nursery.start(router.run)
        await trio.sleep(5)
        assert set(a.connections) == {b.name, c.name}
        assert a.connections[c.name].outbound, "a did not dial c: c dialled a after its defer"

    run_sim(body)
