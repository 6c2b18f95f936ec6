"""The repair round of ``node/topology_upkeep``: one anti-entropy digest
``repair_delay`` after the first topology change of a burst, then one per
``repair_delay`` while changes keep coming -- never deferred until the burst
ends.  Broadcasts forwarded while views differ can miss a peer; a round
deferred behind a long burst (a heal, a join into a full mesh) left views
disagreeing for seconds, and the IPAM campaign refused allocations meanwhile
(seeds 9, 24, 186).  With bucketed digests a mid-burst round costs only the
buckets that differ, so nothing is saved by waiting.  Simulated time
(MockClock); the oracle is the times written out below."""

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


def test_a_lone_change_gets_one_round_a_repair_delay_later() -> None:
    # The first routes (at start) schedule a round at 1.0; the change at 2.0 is
    # routed at 2.1 (route_coalesce), its round runs at 3.1.
    assert run_changes([2.0], until=10.0) == [1.0, 3.1]


def test_a_burst_that_never_ends_gets_a_round_every_repair_delay() -> None:
    changes = [0.3 * i for i in range(1, 40)]  # 0.3 .. 11.7
    rounds = run_changes(changes, until=20.0)
    # A repair delay after the first routes, not after the burst; then a round
    # a repair delay after the first change routed after each round (a change
    # every 0.3 s, routed 0.1 s later): 1.0, then 1.3 + 1.0, 2.5 + 1.0, ...
    assert rounds == [1.0, 2.3, 3.5, 4.7, 5.9, 7.1, 8.3, 9.5, 10.7, 11.9]
    assert all(b - a <= 1.0 + 0.3 + 0.1 for a, b in itertools.pairwise(rounds))
