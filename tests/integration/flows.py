"""Hand-written flow tables for the lab (the ovs-lab/NOTES.md pipeline), as core ``Flow``s.

Independent of the flow-table builder on purpose: these tests judge the OVS
shell (does it install what it is given, atomically, and keep it installed), not
the builder.  Table 0 admits our VNI from the tunnel and anything from local
ports; table 1 answers ARP for every container and forwards on the destination
MAC, locally or into the tunnel toward ``via`` (the owner, or a relay).
"""

from __future__ import annotations

from meshrouter.dataplane.core.flow import (
    ArpReply,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import ETH_TYPE_ARP, TUNNEL_PORT, Category, cookie
from tests.integration.lab import Container, Host

VNI = 4242


def lab_flows(
    host: Host,
    containers: list[Container],
    ports: dict[str, int],
    relay: dict[tuple[int, int], Host] | None = None,
) -> list[Flow]:
    """Flows of ``host`` for ``containers`` (all hosts'); ``ports`` maps a local
    container's name to its OpenFlow port; ``relay[(from, to)]`` names the host that
    traffic from host index ``from`` to host index ``to`` goes through."""
    relay = relay or {}
    base = cookie(Category.BASE)
    flows = [
        Flow(0, 100, Match(in_port=TUNNEL_PORT, tun_id=VNI), (GotoTable(1),), base),
        Flow(0, 90, Match(in_port=TUNNEL_PORT), (), base),
        Flow(0, 10, Match(), (GotoTable(1),), base),
        Flow(1, 0, Match(), (), base),
    ]
    for i, c in enumerate(containers):
        ck = cookie(Category.ENDPOINT, i)
        arp = Match(dl_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=c.ip)
        flows.append(Flow(1, 200, arp, (ArpReply(c.mac, c.ip), OutputInPort()), ck))
        if c.host is host:
            flows.append(Flow(1, 100, Match(dl_dst=c.mac), (Output(ports[c.name]),), ck))
            continue
        via = relay.get((host.index, c.host.index), c.host)
        flows.append(Flow(1, 100, Match(dl_dst=c.mac), (
            SetTunnelDst(via.ip), SetTunnelId(VNI), Output(TUNNEL_PORT)), ck))
        for (src, dst), middle in relay.items():
            if middle is host and dst == c.host.index and src != host.index:
                flows.append(Flow(1, 150, Match(in_port=TUNNEL_PORT, dl_dst=c.mac), (
                    SetTunnelDst(c.host.ip), SetTunnelId(VNI), OutputInPort()), ck))
                break
    return flows
