"""Theory of operation: a host's flow table evaluated for one packet.

This is OpenFlow 1.3 semantics for exactly the match fields and actions of
``flow``, so the simulator and the tests check the *same* flows the OVS shell
installs:

* A lookup picks the highest-priority flow that matches; two matching flows
  of equal priority are an error (``AmbiguousFlowError``), as OVS's choice
  between them would be arbitrary.  No match drops (the OpenFlow 1.3 miss).
* Actions run in order on a working copy of the packet.  ``output`` emits a
  copy, except to the packet's current in_port, which OVS silently skips
  (lab pitfall P2); ``IN_PORT`` emits to the in_port; ``dec_ttl`` at TTL <= 1
  stops the action list (the packet dies); ``goto_table`` must go forward.
* Lookups use a tuple-space classifier: flows of one table are grouped by
  the set of fields they match ("shape") and hashed by their values, so one
  lookup costs a dict probe per shape, not a scan of the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from meshrouter.dataplane.core.flow import (
    ArpReply,
    ClearInPort,
    DecTtl,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import ETH_TYPE_IP

MAX_STEPS = 64
ARP_REPLY = 2


class AmbiguousFlowError(Exception):
    """Two flows of one priority match one packet (a flow-table bug)."""


@dataclass(frozen=True, slots=True)
class Packet:
    """The header fields the pipeline reads or writes (absent fields are 0/"")."""

    in_port: int
    eth_src: str
    eth_dst: str
    eth_type: int
    arp_op: int = 0
    arp_sha: str = ""
    arp_spa: str = ""
    arp_tha: str = ""
    arp_tpa: str = ""
    ip_src: str = ""
    ip_dst: str = ""
    ttl: int = 64
    tun_id: int = 0
    tun_dst: str = ""
    payload: str = ""
    """An opaque tag the simulator uses to recognise its probe packets."""


@dataclass(frozen=True, slots=True)
class Emission:
    """A copy of the packet leaving the switch on ``port``."""

    port: int
    packet: Packet


# Match field -> (packet attribute, is a MAC)
_FIELDS: dict[str, tuple[str, bool]] = {
    "in_port": ("in_port", False),
    "dl_type": ("eth_type", False),
    "dl_src": ("eth_src", True),
    "dl_dst": ("eth_dst", True),
    "arp_op": ("arp_op", False),
    "arp_spa": ("arp_spa", False),
    "arp_tpa": ("arp_tpa", False),
    "arp_sha": ("arp_sha", True),
    "nw_src": ("ip_src", False),
    "nw_dst": ("ip_dst", False),
    "tun_id": ("tun_id", False),
}
_ORDER = tuple(_FIELDS)


def _mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16) if mac else -1


Shape = tuple[tuple[str, int | None], ...]
"""(field, mask) for each matched field; the mask only for a masked dl_dst."""


def _shape_and_key(match: Match) -> tuple[Shape, tuple[object, ...]]:
    shape: list[tuple[str, int | None]] = []
    key: list[object] = []
    for name in _ORDER:
        value = getattr(match, name)
        if value is None:
            continue
        if name == "dl_dst" and match.dl_dst_mask is not None:
            mask = _mac_int(match.dl_dst_mask)
            shape.append((name, mask))
            key.append(_mac_int(value) & mask)
        else:
            shape.append((name, None))
            key.append(value)
    return tuple(shape), tuple(key)


def _packet_key(packet: Packet, shape: Shape) -> tuple[object, ...]:
    key: list[object] = []
    for name, mask in shape:
        attr, _ = _FIELDS[name]
        value = getattr(packet, attr)
        if mask is not None:
            value = _mac_int(value) & mask
        key.append(value)
    return tuple(key)


class CompiledTable:
    """A flow table indexed for lookups (build once per ``apply``)."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        self._tables: dict[int, dict[Shape, dict[tuple[object, ...], list[Flow]]]] = {}
        for flow in flows:
            shape, key = _shape_and_key(flow.match)
            bucket = self._tables.setdefault(flow.table, {}).setdefault(shape, {})
            bucket.setdefault(key, []).append(flow)

    def lookup(self, table: int, packet: Packet) -> Flow | None:
        """The flow that handles ``packet`` in ``table``; None is a miss."""
        best: Flow | None = None
        for shape, bucket in self._tables.get(table, {}).items():
            for flow in bucket.get(_packet_key(packet, shape), ()):
                if best is None or flow.priority > best.priority:
                    best = flow
                elif flow.priority == best.priority and flow.key() != best.key():
                    raise AmbiguousFlowError(
                        f"{flow.match_text()} and {best.match_text()} both match {packet}")
        return best

    def process(self, packet: Packet) -> list[Emission]:
        """Run ``packet`` (arriving on ``packet.in_port``) through the pipeline."""
        emitted: list[Emission] = []
        table = 0
        current = packet
        for _ in range(MAX_STEPS):
            flow = self.lookup(table, current)
            if flow is None:
                return emitted
            next_table: int | None = None
            for action in flow.actions:
                if isinstance(action, Output):
                    if action.port != current.in_port:
                        emitted.append(Emission(action.port, current))
                elif isinstance(action, OutputInPort):
                    emitted.append(Emission(current.in_port, current))
                elif isinstance(action, ClearInPort):
                    current = replace(current, in_port=0)
                elif isinstance(action, SetTunnelDst):
                    current = replace(current, tun_dst=action.ip)
                elif isinstance(action, SetTunnelId):
                    current = replace(current, tun_id=action.vni)
                elif isinstance(action, DecTtl):
                    if current.eth_type == ETH_TYPE_IP:
                        if current.ttl <= 1:
                            return emitted
                        current = replace(current, ttl=current.ttl - 1)
                elif isinstance(action, ArpReply):
                    current = _arp_reply(current, action)
                elif isinstance(action, GotoTable):
                    if action.table <= table:
                        raise ValueError(f"goto_table:{action.table} from table {table}")
                    next_table = action.table
            if next_table is None:
                return emitted
            table = next_table
        raise RuntimeError("pipeline did not finish")


def _arp_reply(packet: Packet, action: ArpReply) -> Packet:
    return replace(
        packet,
        eth_dst=packet.eth_src,
        eth_src=action.mac,
        arp_op=ARP_REPLY,
        arp_tha=packet.arp_sha,
        arp_tpa=packet.arp_spa,
        arp_sha=action.mac,
        arp_spa=action.ip,
    )
