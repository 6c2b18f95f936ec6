"""Build Routers over the simulated network for shell tests (MockClock, memory streams)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.names import PeerName
from meshrouter.node.assembly import build_router
from meshrouter.node.datapath import Datapath
from meshrouter.node.router import Router
from sim.network import LinkProfile, SimNetwork, SimTransport

FAST = dict(
    heartbeat_interval=1.0,
    heartbeat_timeout=3.0,
    handshake_timeout=2.0,
    dial_timeout=2.0,
    gossip_interval=5.0,
)


def make_router(
    net: SimNetwork,
    index: int,
    *,
    seed: int = 0,
    peers: tuple[str, ...] = (),
    datapath: Datapath | None = None,
    **overrides: Any,
) -> Router:
    host = f"10.0.0.{index}"
    settings: dict[str, Any] = dict(FAST)
    settings.update(overrides)
    config = RouterConfig.from_flat(
        PeerName(0x0200_0000_0000 + index),
        f"host{index}",
        listen_host=host,
        listen_port=6783,
        initial_peers=peers,
        **settings,
    )
    rng = random.Random(seed * 1000 + index)
    return build_router(
        config,
        transport=SimTransport(net, host, 6783),
        rng=rng,
        datapath=datapath,
        key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
    )


def with_config(router: Router, **changes: Any) -> RouterConfig:
    return replace(router.config, **changes)


def run_sim(
    body: Callable[[SimNetwork, trio.Nursery], Awaitable[None]],
    *,
    seed: int = 0,
    profile: LinkProfile | None = None,
) -> None:
    """Run ``body`` in simulated time; cancel everything it started when it returns."""

    async def main() -> None:
        net = SimNetwork(random.Random(seed), profile)
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            await body(net, nursery)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def established(router: Router) -> set[PeerName]:
    return set(router.connections)


def peer_names(router: Router) -> set[PeerName]:
    return {record.name for record in router.topology.records()}
