"""The repair round of ``node/topology_upkeep``: one anti-entropy digest after a
burst of topology changes *ends* (each change pushes it back), never later than
``REPAIR_MAX_WAIT`` repair delays after the burst's first change.  Simulated
time (MockClock); the oracle is the times written out below."""

from __future__ import annotations

import itertools
import random

import trio
import trio.testing

from meshrouter.config import RouterConfig
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.node.topology_signal import TopologySignal
from meshrouter.node.topology_upkeep import TopologyUpkeep
from meshrouter.topology.topology import Topology

from .builders import conn

LOCAL = PeerName(1)


class CountingCore(GossipCore):
    """A gossip core that notes when an anti-entropy round is run."""

    def __init__(self) -> None:
        super().__init__(LOCAL, rng=random.Random(1))
        self.rounds: list[float] = []

    def periodic(self, rng: random.Random | None = None) -> None:
        self.rounds.append(trio.current_time())


def run_changes(change_times: list[float], until: float) -> list[float]:
    """Change our connections at each of ``change_times`` (simulated seconds
    after start); return when repair rounds ran, relative to the start."""
    rounds: list[float] = []

    async def main() -> None:
        topology = Topology(local_name=LOCAL, nickname="n1", uid=10, listen_port=6783,
                            rng=random.Random(1), short_id=1)
        gossip = CountingCore()
        config = RouterConfig.from_flat(LOCAL, "n1", ipam=False, route_coalesce=0.1,
                                        repair_delay=1.0)
        upkeep = TopologyUpkeep(topology=topology, gossip=gossip, config=config,
                                rng=random.Random(1), signal=TopologySignal())
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            upkeep.start(nursery)
            for number, at in enumerate(change_times):
                await trio.sleep_until(start + at)
                topology.set_local_connections([conn(p) for p in range(2, 3 + number)])
                upkeep.changed()
            await trio.sleep_until(start + until)
            nursery.cancel_scope.cancel()
        rounds.extend(round(t - start, 6) for t in gossip.rounds)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return rounds


def test_one_repair_round_a_repair_delay_after_the_burst_ends() -> None:
    # Start (t=0) and changes every 0.5 s until 2.0: the routes of the last
    # change are computed at 2.1, so the round runs at 3.1 -- once.
    assert run_changes([0.5, 1.0, 1.5, 2.0], until=10.0) == [3.1]


def test_a_burst_that_never_ends_still_gets_a_round_every_few_seconds() -> None:
    changes = [0.3 * i for i in range(1, 40)]  # 0.3 .. 11.7
    rounds = run_changes(changes, until=20.0)
    # The first burst began at t=0 (the first routes): its round is due at
    # 5.0 at the latest; the next burst starts at the next change after that.
    assert rounds[0] == 5.0
    assert all(b - a <= 5.0 + 0.3 + 0.1 for a, b in itertools.pairwise(rounds))
    assert rounds[-1] == 12.8  # 1 s after the last change's routes (11.8)
