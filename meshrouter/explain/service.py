"""The explain Service: ``GET /explain?src=&dst=`` walks the layers from this router's view.

Gathers the facts ``explain.core`` needs -- the endpoint table, the peers and
their established links, our own flow table (the only one a router holds) and
datapath health, the DNS names -- and hands them to the pure walk.
"""

from __future__ import annotations

from typing import Any

from meshrouter.dataplane.core.pipeline import Table
from meshrouter.dns.names import format_ipv4
from meshrouter.dns.service import DnsService
from meshrouter.endpoints.service import DataplaneService
from meshrouter.errors import InvalidRequestError
from meshrouter.explain.core import explain
from meshrouter.metrics.access import service_named
from meshrouter.names import format_peer_name
from meshrouter.node.service import ApiRequest, ApiRoute, ServiceBase

MAX_ARGUMENT = 256


class ExplainService(ServiceBase):
    """Answers "why can't SRC reach DST?" from this router's view."""

    name = "explain"

    def facts(self) -> dict[str, Any]:
        """This router's view as plain data (see ``explain.core``)."""
        context = self.context
        local = format_peer_name(context.name)
        peers: dict[str, str] = {}
        links: list[list[str]] = []
        for record in context.topology.records():
            name = format_peer_name(record.name)
            peers[name] = record.nickname
            links += [[name, format_peer_name(c.peer)] for c in record.connections
                      if c.established]
        facts: dict[str, Any] = {"local": local, "peers": peers, "links": links,
                                 "endpoints": [], "flows": {}, "dns": None}
        dataplane = service_named(context, "dataplane")
        if isinstance(dataplane, DataplaneService):
            facts["endpoints"] = dataplane.endpoints()
            health = context.datapath.health()
            healthy, reason = health.ok, health.reason
            if context.datapath.kind == "none":
                healthy, reason = False, ("this router runs without a datapath "
                                          "(--datapath none): no flow is installed")
            facts["flows"][local] = {
                "healthy": healthy, "reason": reason,
                "macs": sorted({f.match.dl_dst for f in dataplane.flows
                                if f.table == Table.FORWARD and f.match.dl_dst is not None
                                and f.match.dl_dst_mask is None}),
            }
        dns = service_named(context, "dns")
        if isinstance(dns, DnsService):
            view = dns.view()
            facts["dns"] = {"domain": dns.settings.domain,
                            "names": {name: [format_ipv4(a) for a in addresses]
                                      for name, addresses in view.addresses.items()}}
        return facts

    def explain(self, src: str, dst: str) -> dict[str, Any]:
        return explain(self.facts(), src, dst)

    def report(self) -> dict[str, Any] | None:
        return {"path": "/explain?src=CONTAINER&dst=CONTAINER"}

    def api_routes(self) -> list[ApiRoute]:
        return [ApiRoute("GET", "/explain", self._api_explain)]

    async def _api_explain(self, request: ApiRequest) -> Any:
        src, dst = request.query.get("src", ""), request.query.get("dst", "")
        if not src or not dst:
            raise InvalidRequestError("expected /explain?src=CONTAINER&dst=CONTAINER "
                                      "(a container name, ID or IP address each)")
        if len(src) > MAX_ARGUMENT or len(dst) > MAX_ARGUMENT:
            raise InvalidRequestError(f"a container is named in at most {MAX_ARGUMENT} characters")
        return self.explain(src, dst)
