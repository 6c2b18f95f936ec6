"""The metrics Service: ``GET /metrics`` in the Prometheus text format.

Built on ``prometheus_client`` with one custom collector (``MeshCollector``)
in a registry of its own, so each scrape reads the router's and the services'
live counters and nothing is counted twice.  This service keeps only what no
one else counts: connection events by reason (it chains the Router's
``observer`` callback), route computations (it subscribes to the topology
signal like every service) and the flow-apply durations (fed from the
datapath's recent applies).
"""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from meshrouter.metrics.collector import MeshCollector
from meshrouter.metrics.events import ConnectionEvents
from meshrouter.metrics.histogram import ApplyLog
from meshrouter.names import format_peer_name
from meshrouter.node.service import (
    ApiRequest,
    ApiRoute,
    RawResponse,
    ServiceBase,
    ServiceContext,
    TopologyChange,
)

# The classic text format: every name here is a legacy-valid name, and every
# Prometheus server version reads it (newer clients default to 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsService(ServiceBase):
    """Serves the router's metrics; counts the few events nobody else does."""

    name = "metrics"

    def __init__(self) -> None:
        self.events = ConnectionEvents()
        self.route_computations = 0
        self.applies = ApplyLog()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MeshCollector(self))
        self.own_name = ""

    def attach(self, context: ServiceContext) -> None:
        super().attach(context)
        self.own_name = format_peer_name(context.name)
        context.subscribe_events(self.events.observe)

    def on_topology_changed(self, change: TopologyChange) -> None:
        self.route_computations += 1
        self._feed_applies()

    def now(self) -> float:
        return trio.current_time()

    def _feed_applies(self) -> None:
        recent = self.context.datapath.status().get("recent_applies")
        if isinstance(recent, list):
            self.applies.feed(recent)

    def apply_histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        """The flow-apply histogram, brought up to date first."""
        self._feed_applies()
        return self.applies.buckets(), self.applies.total, self.applies.count

    def render(self) -> bytes:
        """The Prometheus text exposition of every family."""
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any] | None:
        return None

    def report(self) -> dict[str, Any] | None:
        return {"path": "/metrics", "route_computations": self.route_computations,
                "connection_terminations": dict(self.events.terminations),
                "flow_applies_observed": self.applies.count}

    def api_routes(self) -> list[ApiRoute]:
        return [ApiRoute("GET", "/metrics", self._api_metrics)]

    async def _api_metrics(self, request: ApiRequest) -> Any:
        return RawResponse(self.render(), CONTENT_TYPE)
