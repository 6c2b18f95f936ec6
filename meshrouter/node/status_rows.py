"""What a router says about itself: the rows behind ``status`` and ``report``.

Read-only views of the Router's state, shaped for the API (JSON-able dicts).
Each service contributes its own section (``Service.summary``/``report``) under
its name, so this module names no feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from meshrouter import __version__
from meshrouter.dialing.targets import TargetState
from meshrouter.names import format_peer_name

if TYPE_CHECKING:
    from meshrouter.node.router import Router

REFUSAL_SHOWN_FOR = 600.0


class RouterStatus:
    """Status rows of one router (``router.status``)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def connection_rows(self) -> list[dict[str, Any]]:
        """Every connection and attempt with its state and why (the API's view)."""
        router = self.router
        now = trio.current_time()
        rows: list[dict[str, Any]] = []
        for conn in sorted(router.connections.values(), key=lambda c: c.peer):
            encryption = "encrypted" if conn.session.encrypted else "unencrypted"
            rows.append(
                {
                    "peer": format_peer_name(conn.peer),
                    "nickname": conn.remote.nickname,
                    "address": conn.address,
                    "state": TargetState.ESTABLISHED.value,
                    "outbound": conn.outbound,
                    "info": f"{encryption}, protocol v{conn.protocol_version}, "
                    f"up {now - conn.started_at:.0f}s",
                }
            )
        shown = {conn.target for conn in router.connections.values() if conn.target}
        for status in router.targets.statuses(now):
            if status.address in shown or status.state == TargetState.ESTABLISHED.value:
                continue
            rows.append(
                {
                    "peer": format_peer_name(status.peer) if status.peer is not None else "",
                    "nickname": "",
                    "address": status.address,
                    "state": status.state,
                    "outbound": True,
                    "info": status.info,
                }
            )
        for pending in sorted(router.handshaking, key=lambda p: p.address):
            if not pending.outbound:
                rows.append(
                    {
                        "peer": "",
                        "nickname": "",
                        "address": pending.address,
                        "state": TargetState.CONNECTING.value,
                        "outbound": False,
                        "info": "inbound handshake in progress",
                    }
                )
        for refusal in router.inbound.refusals:
            if now - refusal.at > REFUSAL_SHOWN_FOR:
                continue
            rows.append(
                {
                    "peer": format_peer_name(refusal.peer) if refusal.peer is not None else "",
                    "nickname": "",
                    "address": refusal.address,
                    "state": TargetState.FAILED.value,
                    "outbound": False,
                    "info": f"inbound connection {'ended' if refusal.ended else 'refused'} "
                    f"{now - refusal.at:.0f}s ago: {refusal.reason}",
                }
            )
        return rows

    def peer_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "name": format_peer_name(record.name),
                "nickname": record.nickname,
                "uid": record.uid,
                "short_id": record.short_id,
                "version": record.version,
                "connections": [
                    {
                        "peer": format_peer_name(c.peer),
                        "address": c.address,
                        "outbound": c.outbound,
                        "established": c.established,
                    }
                    for c in record.connections
                ],
            }
            for record in self.router.topology.records()
        ]

    def target_rows(self) -> list[dict[str, Any]]:
        now = trio.current_time()
        return [
            {
                "address": s.address,
                "direct": s.direct,
                "state": s.state,
                "info": s.info,
                "attempts": s.attempts,
                "next_attempt_in": s.next_attempt_in,
                "peer": format_peer_name(s.peer) if s.peer is not None else "",
            }
            for s in self.router.targets.statuses(now)
        ]

    def report(self) -> dict[str, Any]:
        """The full JSON report (``meshrouter report``)."""
        router = self.router
        section: dict[str, Any] = {
            "name": format_peer_name(router.name),
            "nickname": router.config.nickname,
            "uid": router.uid,
            "version": __version__,
            "protocol": "meshrouter",
            "listen": router.listen_address,
            "encryption": router.config.mesh.password is not None,
            "cluster_id": router.cluster_id,
            "conn_limit": router.config.mesh.conn_limit,
            "discovery": router.config.mesh.discovery,
            "peers": self.peer_rows(),
            "connections": self.connection_rows(),
            "targets": self.target_rows(),
            "routes": {
                format_peer_name(dst): format_peer_name(hop)
                for dst, hop in sorted(router.topology.routes().unicast_table().items())
            },
            "gossip": router.gossip.stats.as_dict(),
            "datapath": router.datapath.status(),
        }
        for service in router.services:
            section[service.name] = service.report()
        return {"router": section}

    def summary(self) -> dict[str, Any]:
        """The short summary behind ``meshrouter status``."""
        router = self.router
        established_links = sum(
            1 for record in router.topology.records() for c in record.connections if c.established
        )
        by_state: dict[str, int] = {}
        for row in self.connection_rows():
            by_state[row["state"]] = by_state.get(row["state"], 0) + 1
        summary: dict[str, Any] = {
            "version": __version__,
            "name": format_peer_name(router.name),
            "nickname": router.config.nickname,
            "listen": router.listen_address,
            "encryption": router.config.mesh.password is not None,
            "discovery": router.config.mesh.discovery,
            "cluster_id": router.cluster_id,
            "conn_limit": router.config.mesh.conn_limit,
            "peers": len(router.topology.records()),
            "established_links": established_links,
            "connections": len(router.connections),
            "connection_states": by_state,
            "targets": len(router.targets.direct_addresses()),
            "connection_terminations": router.connection_terminations,
            "uptime": trio.current_time() - (router.started_at or trio.current_time()),
            "datapath": router.datapath.status(),
            "services": [service.name for service in router.services],
        }
        for service in router.services:
            section = service.summary()
            if section is not None:
                summary[service.name] = section
        return summary
