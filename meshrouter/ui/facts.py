"""What the picture shows, gathered from the router and its services as plain data.

The shell half of the picture: reads the topology (peers, their links), our
own connection attempts (so a failing dial shows as a red link with its
address), the routes (direct or relayed data path to each peer, as the
dataplane programs them), the IPAM ring (addresses per peer) and the endpoint
table (containers per peer).  ``ui.graph`` turns the result into SVG.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from meshrouter.dialing.targets import TargetState
from meshrouter.endpoints.service import DataplaneService
from meshrouter.ipam.service import IpamService
from meshrouter.metrics.access import router_of, service_named
from meshrouter.names import format_peer_name
from meshrouter.node.service import ServiceContext

FAILING = {TargetState.FAILED.value, TargetState.RETRYING.value}


def graph_facts(context: ServiceContext) -> dict[str, Any]:
    """``{"local", "peers", "links", "paths"}`` for ``ui.graph.render_svg``."""
    local = format_peer_name(context.name)
    topology = context.topology
    addresses: dict[str, int] = {}
    ipam = service_named(context, "ipam")
    if isinstance(ipam, IpamService):
        for row in (ipam.report() or {}).get("peers", []):
            addresses[str(row["peer"])] = int(row["size"])
    containers: Counter[str] = Counter()
    dataplane = service_named(context, "dataplane")
    if isinstance(dataplane, DataplaneService):
        containers.update(format_peer_name(e.owner) for e in dataplane.table.live())
    peers = []
    links = []
    for record in topology.records():
        name = format_peer_name(record.name)
        peers.append({
            "name": name,
            "nickname": record.nickname,
            "addresses": addresses.get(name, 0) if ipam is not None else None,
            "containers": containers.get(name, 0) if dataplane is not None else None,
        })
        for conn in record.connections:
            links.append({"a": name, "b": format_peer_name(conn.peer),
                          "state": "established" if conn.established else "connecting"})
    router = router_of(context)
    if router is not None:
        for row in router.status.connection_rows():
            if row["state"] == TargetState.ESTABLISHED.value:
                continue
            other = row["peer"] or row["address"]
            state = "failed" if row["state"] in FAILING else "connecting"
            links.append({"a": local, "b": other, "state": state, "why": row["info"]})
    routes = topology.routes()
    paths = []
    for peer in sorted(routes.reachable() - {context.name}):
        hop = routes.next_hop(peer)
        if hop is not None:
            paths.append({"peer": format_peer_name(peer),
                          "path": "direct" if hop == peer else "relayed",
                          "via": format_peer_name(hop)})
    return {"local": local, "peers": peers, "links": links, "paths": paths}
