"""Theory of operation: the rows behind ``meshrouter ps`` and ``status peers``.

Pure functions of the endpoint table and the routes, so the service's shell
only gathers its inputs: which endpoints are live (``ps``), and per reachable
peer whether the data path is direct or relayed, via whom, on which underlay
address and VNI (``status peers``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from meshrouter.endpoints.model import Endpoint
from meshrouter.names import PeerName, format_peer_name
from meshrouter.topology.routes import Routes


def endpoint_rows(live: Iterable[Endpoint], local: PeerName) -> list[dict[str, Any]]:
    """Every live endpoint, by owner then container ID."""
    return [{"container_id": e.container_id, "mac": e.mac, "ip": e.ip, "name": e.name,
             "host": format_peer_name(e.owner), "local": e.owner == local}
            for e in sorted(live, key=lambda e: (e.owner, e.container_id))]


def peer_rows(routes: Routes, local: PeerName, ids: Mapping[PeerName, int],
              address: Callable[[PeerName], str | None]) -> list[dict[str, Any]]:
    """Per reachable peer: is the data path direct or relayed, and via whom."""
    rows = []
    for peer in sorted(routes.reachable() - {local}):
        hop = routes.next_hop(peer)
        if hop is None:
            continue
        underlay = address(hop)
        rows.append({
            "peer": format_peer_name(peer),
            "path": "direct" if hop == peer else "relayed",
            "via": format_peer_name(hop),
            "underlay": underlay,
            "vni": ids.get(peer),
            "programmed": underlay is not None,
        })
    return rows
