"""Flow values render to exactly the ovs-ofctl text the OVS lab verified."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
from meshrouter.dataplane.core.pipeline import (
    COOKIE_MASK,
    COOKIE_PREFIX,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    Category,
    cookie,
)

ARP_RESPONDER = Flow(
    table=10,
    priority=200,
    match=Match(dl_type=ETH_TYPE_ARP, arp_op=1, arp_tpa="10.40.2.2"),
    actions=(ArpReply(mac="02:40:00:00:02:02", ip="10.40.2.2"), OutputInPort()),
    cookie=cookie(Category.ENDPOINT, 7),
)

SAMPLES = [
    ARP_RESPONDER,
    Flow(0, 100, Match(in_port=1000, dl_type=ETH_TYPE_IP, dl_src="02:40:00:00:01:02",
                       nw_src="10.40.1.2"), (GotoTable(20),), cookie(Category.PORT, 1)),
    Flow(30, 100, Match(dl_type=ETH_TYPE_IP, tun_id=5),
         (ClearInPort(), DecTtl(), GotoTable(50)), cookie(Category.ROUTE, 5)),
    Flow(50, 100, Match(tun_id=5), (SetTunnelDst("192.168.100.2"), Output(100)),
         cookie(Category.ROUTE, 5)),
    Flow(20, 100, Match(dl_dst="01:00:00:00:00:00", dl_dst_mask="01:00:00:00:00:00"),
         (Output(1000), SetTunnelDst("192.168.100.3"), SetTunnelId(0x800001), Output(100)),
         cookie(Category.BROADCAST, 1)),
    Flow(0, 0, Match(), (), cookie(Category.BASE)),
]


def test_arp_responder_text_is_the_lab_flow() -> None:
    assert ARP_RESPONDER.to_ofctl() == (
        "cookie=0x6d72000300000007,table=10,priority=200,arp,arp_op=1,arp_tpa=10.40.2.2 "
        "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:40:00:00:02:02->eth_src,"
        "set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:40:00:00:02:02->arp_sha,"
        "set_field:10.40.2.2->arp_spa,IN_PORT"
    )
    assert ARP_RESPONDER.match_text() == "table=10,priority=200,arp,arp_op=1,arp_tpa=10.40.2.2"


def test_exact_texts() -> None:
    assert [f.to_ofctl() for f in SAMPLES[1:]] == [
        "cookie=0x6d72000200000001,table=0,priority=100,ip,in_port=1000,"
        "dl_src=02:40:00:00:01:02,nw_src=10.40.1.2 actions=goto_table:20",
        "cookie=0x6d72000400000005,table=30,priority=100,ip,tun_id=0x5 "
        "actions=load:0->NXM_OF_IN_PORT[],dec_ttl,goto_table:50",
        "cookie=0x6d72000400000005,table=50,priority=100,tun_id=0x5 "
        "actions=set_field:192.168.100.2->tun_dst,output:100",
        "cookie=0x6d72000500000001,table=20,priority=100,"
        "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:1000,"
        "set_field:192.168.100.3->tun_dst,set_field:0x800001->tun_id,output:100",
        "cookie=0x6d72000100000000,table=0,priority=0 actions=drop",
    ]


def test_key_ignores_actions_and_cookie() -> None:
    a = SAMPLES[3]
    b = Flow(a.table, a.priority, a.match, (Output(7),), cookie(Category.BASE))
    assert a.key() == b.key() and a.match_text() == b.match_text() and a != b


def test_cookie_layout() -> None:
    c = cookie(Category.ROUTE, 0x1_2345_6789)
    assert c & COOKIE_MASK == COOKIE_PREFIX
    assert (c >> 32) & 0xFF == Category.ROUTE
    assert c & 0xFFFFFFFF == 0x2345_6789


@pytest.mark.parametrize("bad", [
    lambda: Match(arp_tpa="10.0.0.1"),
    lambda: Match(dl_type=ETH_TYPE_ARP, nw_src="10.0.0.1"),
    lambda: Match(dl_dst_mask="01:00:00:00:00:00"),
    lambda: Flow(0, 1, Match(), (GotoTable(1), Output(2)), 0),
    lambda: Flow(0, 70000, Match(), (), 0),
])
def test_invalid_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="ovs-ofctl not installed")
def test_ovs_ofctl_parses_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "flows.txt"
    path.write_text("".join(f.to_ofctl() + "\n" for f in SAMPLES))
    result = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "parse-flows", str(path)],
        capture_output=True, text=True, timeout=10, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("OFPT_FLOW_MOD") == len(SAMPLES)
