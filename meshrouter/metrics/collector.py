"""The custom collector behind ``GET /metrics``: every family read at scrape time.

Nothing is counted twice: the gossip core, the IPAM core, the DNS server and
the dataplane service already keep their counters; a scrape reads them and
renders Prometheus families (names ``meshrouter_*``, base units, ``_total``
counters, ratios in 0..1).  The few numbers nobody kept -- connection events
by reason, route computations, flow-apply durations -- are kept by the metrics
service itself (``MetricsService``) and read here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from meshrouter.dialing.targets import TargetState
from meshrouter.dns.service import DnsService
from meshrouter.endpoints.service import DataplaneService
from meshrouter.ipam.service import IpamService
from meshrouter.metrics.access import router_of, service_named
from meshrouter.metrics.reasons import REASONS

if TYPE_CHECKING:
    from meshrouter.metrics.service import MetricsService

CONNECTION_STATES = tuple(state.value for state in TargetState)
GOSSIP_DIRECTIONS = (("sent", "sent_messages", "sent_bytes"),
                     ("received", "received_messages", "received_bytes"))


class MeshCollector(Collector):
    """Reads the router and its services each time it is collected."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        yield from self._mesh()
        yield from self._gossip()
        yield from self._ipam()
        yield from self._dns()
        yield from self._dataplane()

    # -- the mesh --------------------------------------------------------------------

    def _mesh(self) -> Iterator[Metric]:
        context = self.service.context
        router = router_of(context)
        events = self.service.events
        states = GaugeMetricFamily(
            "meshrouter_connections", "Connections and connection attempts by state "
            "(established, connecting, retrying, failed, ...).", labels=["state"])
        by_state = dict.fromkeys(CONNECTION_STATES, 0)
        if router is not None:
            for row in router.status.connection_rows():
                by_state[row["state"]] = by_state.get(row["state"], 0) + 1
        for state, count in sorted(by_state.items()):
            states.add_metric([state], count)
        yield states

        ended = CounterMetricFamily(
            "meshrouter_connection_terminations", "Established connections that ended, "
            "by reason.", labels=["reason"])
        for reason in REASONS:
            ended.add_metric([reason], events.terminations.get(reason, 0))
        yield ended

        failed = CounterMetricFamily(
            "meshrouter_connection_failures", "Connections refused or failed before they "
            "were established, by direction and reason.", labels=["direction", "reason"])
        for (direction, reason), count in sorted(events.failures.items()):
            failed.add_metric([direction, reason], count)
        yield failed

        up = CounterMetricFamily("meshrouter_connections_established",
                                 "Connections established, by direction.", labels=["direction"])
        for direction in ("inbound", "outbound"):
            up.add_metric([direction], events.established.get(direction, 0))
        yield up

        topology = context.topology
        yield CounterMetricFamily("meshrouter_topology_changes",
                                  "Changes to the set of peer records we know.",
                                  value=topology.version)
        yield CounterMetricFamily("meshrouter_route_computations",
                                  "Route computations (each one signalled to the services).",
                                  value=self.service.route_computations)
        yield GaugeMetricFamily("meshrouter_peers", "Peers in our topology, ourselves included.",
                                value=len(topology.records()))
        yield GaugeMetricFamily("meshrouter_peers_reachable",
                                "Peers we have a route to, ourselves included.",
                                value=len(context.reachable()))
        if router is not None and router.started_at is not None:
            yield GaugeMetricFamily("meshrouter_uptime_seconds",
                                    "Seconds since the router started.",
                                    value=max(0.0, self.service.now() - router.started_at))

    def _gossip(self) -> Iterator[Metric]:
        stats = self.service.context.gossip.stats
        messages = CounterMetricFamily(
            "meshrouter_gossip_messages", "Gossip messages by channel, direction and kind.",
            labels=["channel", "direction", "kind"])
        sizes = CounterMetricFamily(
            "meshrouter_gossip_bytes", "Gossip payload bytes by channel, direction and kind.",
            labels=["channel", "direction", "kind"])
        dropped = CounterMetricFamily(
            "meshrouter_gossip_dropped", "Gossip messages dropped, by channel and reason.",
            labels=["channel", "reason"])
        relayed = CounterMetricFamily(
            "meshrouter_gossip_relayed", "Gossip messages relayed for others, by channel and kind.",
            labels=["channel", "kind"])
        for channel, entry in sorted(stats.channels.items()):
            for direction, count_field, bytes_field in GOSSIP_DIRECTIONS:
                counts: dict[str, int] = getattr(entry, count_field)
                volumes: dict[str, int] = getattr(entry, bytes_field)
                for kind in sorted(set(counts) | set(volumes)):
                    messages.add_metric([channel, direction, kind], counts.get(kind, 0))
                    sizes.add_metric([channel, direction, kind], volumes.get(kind, 0))
            for reason, count in sorted(entry.dropped.items()):
                dropped.add_metric([channel, reason], count)
            for kind, count in sorted(entry.relayed.items()):
                relayed.add_metric([channel, kind], count)
        yield from (messages, sizes, dropped, relayed)

    # -- the services ----------------------------------------------------------------

    def _ipam(self) -> Iterator[Metric]:
        ipam = service_named(self.service.context, "ipam")
        if not isinstance(ipam, IpamService):
            return
        status: dict[str, Any] = dict(ipam.status())
        mine = next((row for row in status.get("peers", [])
                     if row.get("peer") == self.service.own_name), None)
        addresses = GaugeMetricFamily(
            "meshrouter_ipam_addresses", "Addresses of the ranges this router owns, by state "
            "(used by containers here, free).", labels=["state"])
        addresses.add_metric(["used"], int(status.get("allocated", 0)))
        addresses.add_metric(["free"], int(mine.get("free") or 0) if mine else 0)
        yield addresses
        yield GaugeMetricFamily("meshrouter_ipam_owned_addresses",
                                "Size of the ranges this router owns.",
                                value=int(mine.get("size", 0)) if mine else 0)
        yield GaugeMetricFamily("meshrouter_ipam_unreachable_ratio",
                                "Share of the address range owned by unreachable peers (0..1).",
                                value=float(status.get("unreachable_ratio", 0.0)))
        yield GaugeMetricFamily("meshrouter_ipam_pending_requests",
                                "Allocation or claim requests waiting for space or consensus.",
                                value=len(status.get("pending", [])))
        yield GaugeMetricFamily("meshrouter_ipam_ready", "1 once the IPAM ring is known.",
                                value=1 if status.get("state") == "ready" else 0)
        operations = CounterMetricFamily(
            "meshrouter_ipam_operations", "IPAM operations by kind (allocations, releases, "
            "reclaims, donations, conflicts).", labels=["operation"])
        for name, count in sorted(dict(status.get("counters", {})).items()):
            operations.add_metric([name], int(count))
        yield operations

    def _dns(self) -> Iterator[Metric]:
        dns = service_named(self.service.context, "dns")
        if not isinstance(dns, DnsService):
            return
        stats = dns.stats
        responses = CounterMetricFamily(
            "meshrouter_dns_responses", "DNS responses sent, by response code.",
            labels=["rcode"])
        for rcode in sorted(set(stats.responses) | {"NOERROR", "NXDOMAIN", "SERVFAIL"}):
            responses.add_metric([rcode], stats.responses.get(rcode, 0))
        yield responses
        by_type = getattr(stats, "queries", None)  # a Counter by query type, once kept
        if isinstance(by_type, dict):
            queries = CounterMetricFamily("meshrouter_dns_queries",
                                          "DNS queries received, by query type.", labels=["type"])
            for qtype, count in sorted(by_type.items()):
                queries.add_metric([str(qtype)], int(count))
            yield queries
        dropped = CounterMetricFamily("meshrouter_dns_dropped",
                                      "DNS queries dropped, by reason.", labels=["reason"])
        for reason, count in sorted(stats.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily("meshrouter_dns_forwarded", "DNS queries forwarded upstream.",
                                  value=stats.forwarded)
        yield CounterMetricFamily("meshrouter_dns_forward_failures",
                                  "DNS queries whose upstream did not answer.",
                                  value=stats.forward_failures)
        yield CounterMetricFamily("meshrouter_dns_truncated",
                                  "DNS answers truncated to fit UDP.", value=stats.truncated)
        yield GaugeMetricFamily("meshrouter_dns_names", "Names answerable in the mesh domain.",
                                value=len(dns.view().addresses))

    def _dataplane(self) -> Iterator[Metric]:
        context = self.service.context
        health = context.datapath.health()
        healthy = GaugeMetricFamily("meshrouter_datapath_healthy",
                                    "1 while the datapath forwards as programmed.",
                                    labels=["type"])
        healthy.add_metric([context.datapath.kind], 1 if health.ok else 0)
        yield healthy
        buckets, total, count = self.service.apply_histogram()
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, hits in buckets:
            running += hits
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(
            "meshrouter_flow_apply_duration_seconds",
            "Time to bring the switch's flow table to the desired one.",
            buckets=cumulative, sum_value=total)
        del count
        dataplane = service_named(context, "dataplane")
        if not isinstance(dataplane, DataplaneService):
            return
        yield GaugeMetricFamily("meshrouter_flows", "Flows in the desired table of this host.",
                                value=len(dataplane.flows))
        yield CounterMetricFamily("meshrouter_flow_recomputations",
                                  "Recomputations of the whole desired flow table.",
                                  value=dataplane.recomputes)
        endpoints = GaugeMetricFamily("meshrouter_endpoints",
                                      "Attached containers, on this host and in the mesh.",
                                      labels=["scope"])
        endpoints.add_metric(["local"], len(dataplane.attachments))
        endpoints.add_metric(["mesh"], dataplane.table.live_count())
        yield endpoints
        yield GaugeMetricFamily("meshrouter_unroutable_peers",
                                "Peers with endpoints but no route (their flows are missing).",
                                value=len(dataplane.unroutable))
