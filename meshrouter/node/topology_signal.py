"""The one topology-change signal.

After each (coalesced) route computation the Router publishes one
``TopologyChange``; every consumer -- the removed-peer events, discovery, each
service -- subscribes here instead of comparing version numbers around calls.
Subscribers run synchronously in subscription order, so a consumer never sees
a change before one subscribed earlier has (the order is part of the
simulator's deterministic event log).
"""

from __future__ import annotations

from collections.abc import Callable

from meshrouter.node.service import TopologyChange

Subscriber = Callable[[TopologyChange], None]


class TopologySignal:
    """Fan-out of ``TopologyChange`` to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.last: TopologyChange | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, change: TopologyChange) -> None:
        self.last = change
        for subscriber in self._subscribers:
            subscriber(change)
